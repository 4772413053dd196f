"""The shared benchmark harness: a registry, a runner, one table and one results file.

Each bench module decorates functions with ``@benchmark("name")``; a function takes the
:class:`BenchOptions` and returns :class:`Result` entries (one function may report several
numbers). ``python -m bench`` imports the modules listed in ``bench/__main__.py``, runs them,
prints a table and writes ``bench/results.json`` as
``{"<result name>": {"value": <number>, "goal": "<e.g. >= 0.9 | info>", "unit": "<x|MB/s|MiB|s>"}}``.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import operator
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RESULTS_PATH",
    "BenchOptions",
    "Result",
    "benchmark",
    "check_goal",
    "interleaved_best",
    "registered",
    "run",
]

RESULTS_PATH = Path(__file__).with_name("results.json")
INFO = "info"
_GOAL = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class BenchOptions:
    """What every benchmark may look at; ``quick`` means smaller sizes and fewer repetitions."""

    quick: bool = False


@dataclass(frozen=True)
class Result:
    """One reported number; ``goal`` is ``"<op> <number>"`` (a gate) or ``"info"``."""

    name: str
    value: float
    goal: str
    unit: str

    def __post_init__(self) -> None:
        check_goal(self.value, self.goal)  # reject malformed goals where they are written

    @property
    def passed(self) -> bool | None:
        return check_goal(self.value, self.goal)


BenchFn = Callable[[BenchOptions], Iterable[Result]]
_REGISTRY: dict[str, BenchFn] = {}


def benchmark(name: str) -> Callable[[BenchFn], BenchFn]:
    """Register a benchmark under ``name`` (what ``--only`` selects)."""

    def register(fn: BenchFn) -> BenchFn:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return register


def registered() -> Mapping[str, BenchFn]:
    return dict(_REGISTRY)


def check_goal(value: float, goal: str) -> bool | None:
    """True/False for a gate such as ``">= 0.9"``, None for ``"info"``."""
    if goal.strip() == INFO:
        return None
    match = _GOAL.match(goal)
    if match is None:
        raise ValueError(f"goal {goal!r} is neither 'info' nor '<op> <number>'")
    return _OPS[match.group(1)](value, float(match.group(2)))


def interleaved_best(candidates: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` wall time per candidate, run in alternating order each round.

    Interleaving exposes every candidate to the same background noise (CPU frequency, other
    processes); the minimum is the least disturbed run, the usual estimator for throughput.
    """
    best = dict.fromkeys(candidates, float("inf"))
    names = list(candidates)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            start = time.perf_counter()
            candidates[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _format(value: float) -> str:
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


def _print_table(results: Sequence[Result]) -> None:
    rows = [("name", "value", "goal", "unit", "result")]
    for r in results:
        verdict = {None: "info", True: "PASS", False: "FAIL"}[r.passed]
        rows.append((r.name, _format(r.value), r.goal, r.unit, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])] + [
            c.ljust(w) for c, w in zip(row[2:], widths[2:], strict=True)
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _write_results(path: Path, results: Sequence[Result], *, merge: bool) -> None:
    existing: dict[str, object] = {}
    if merge and path.exists():
        try:
            loaded = json.loads(path.read_text())
            existing = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            existing = {}
    for r in results:
        existing[r.name] = {"value": float(f"{r.value:.6g}"), "goal": r.goal, "unit": r.unit}
    path.write_text(json.dumps(dict(sorted(existing.items())), indent=2) + "\n")


def run(modules: Sequence[str], argv: Sequence[str] | None = None) -> int:
    """Entry point behind ``python -m bench``; exit status 1 if a gate fails or a bench crashes."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--only", action="append", metavar="NAME", help="benchmark name or glob; repeatable")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file to write")
    args = parser.parse_args(argv)

    for module in modules:
        importlib.import_module(module)
    available = registered()
    if args.list:
        print("\n".join(available))
        return 0
    patterns: list[str] = args.only or ["*"]
    selected = {n: fn for n, fn in available.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    if not selected:
        parser.error(f"no benchmark matches {patterns}; known: {', '.join(available)}")

    options = BenchOptions(quick=args.quick)
    results: list[Result] = []
    crashed = []
    for name, fn in selected.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results.extend(fn(options))
        except Exception:
            traceback.print_exc()
            crashed.append(name)
    _print_table(results)
    _write_results(args.results, results, merge=args.only is not None)
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed or any(r.passed is False for r in results) else 0
