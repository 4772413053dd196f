"""Timing helpers of the pipeline benchmarks: interleaved runs with CPU accounting, and notes.

Every run of every candidate is kept (printed as raw times) together with the CPU seconds each
process of the stack spent in it, so a ratio can be read next to its cause: a saturated server,
an idle one, or a busy machine (the load average is printed first).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench._stack import cpu_seconds
from bench.common import BenchOptions, interleaved_best

__all__ = ["Candidate", "Samples", "info", "load_note", "report", "sizes", "timed"]

Candidate = Callable[[], Coroutine[Any, Any, None]]


def info(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def load_note() -> None:
    """The 1-minute load average: these timings assume otherwise idle cores, so show if they were not."""
    load = os.getloadavg()[0]
    note = " (busy machine: expect noise)" if load > 0.5 else ""
    info(f"load average {load:.2f} on {os.cpu_count()} CPUs{note}")


def sizes(options: BenchOptions, *, tiny: int, quick: int, full: int) -> int:
    """``tiny`` is the smoke test's size (BENCH_TINY=1), not a benchmark setting."""
    if os.environ.get("BENCH_TINY"):
        return tiny
    return quick if options.quick else full


@dataclass
class Samples:
    """Wall times of every run of one candidate, and the CPU seconds each process spent in it."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)

    def best(self) -> float:
        return min(self.seconds)

    def cpu_of_best(self) -> dict[str, float]:
        return self.cpu[self.seconds.index(self.best())]


def timed(
    runner: asyncio.Runner, candidates: Mapping[str, Candidate], rounds: int, pids: Mapping[str, int]
) -> dict[str, Samples]:
    """Warm each candidate up once, then ``interleaved_best`` rounds, recording every run."""
    samples = {name: Samples() for name in candidates}

    def call(name: str) -> Callable[[], None]:
        def run() -> None:
            cpu_before = cpu_seconds(pids)
            started = time.perf_counter()
            runner.run(candidates[name]())
            samples[name].seconds.append(time.perf_counter() - started)
            cpu_after = cpu_seconds(pids)
            samples[name].cpu.append({k: cpu_after[k] - cpu_before[k] for k in cpu_after})

        return run

    for name in candidates:  # warm-up: connections, room paths, first-use allocations
        runner.run(candidates[name]())
    interleaved_best({name: call(name) for name in candidates}, rounds)
    return samples


def report(samples: Mapping[str, Samples], size: int | None = None) -> None:
    """Raw times, then per candidate the best run with each process's CPU seconds in it."""
    for name, s in samples.items():
        info(f"{name}: runs " + ", ".join(f"{t:.3f}" for t in s.seconds) + " s")
    for name, s in samples.items():
        best, cpu = s.best(), s.cpu_of_best()
        rate = f" ({size / best / 1e6:.0f} MB/s)" if size else ""
        busy = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        info(f"{name}: best {best:.3f} s{rate}; CPU s {busy}; cores busy {sum(cpu.values()) / best:.2f}")
