"""Load benchmarks (issue 7): throughput of the whole service, and how it scales with workers.

The service runs for real (``service.serve`` in drain mode: SQS receive, heartbeat, HEAD, rooms,
upload, key serving, S3 delete, message delete) against the bench stack (``bench/_stack.py``:
moto and the DRACOON emulator, each in a helper process, so the service's interpreter is alone).

* ``load_jobs``: the same number of small jobs with 1 worker and with 8 workers, interleaved.
  With 20 ms DRACOON and 5 ms S3/SQS round trips injected: ``load_scaling_8w_vs_1w_rtt``
  (goal >= 6). On the plain local stack: ``load_jobs_per_s_8w``, ``load_jobs_per_s_1w``,
  ``load_scaling_8w_vs_1w`` with its CPU ceiling (information), the CPU milliseconds per job of
  each process (service: goal <= 6) and the HTTP requests per job of each system (SQS, S3,
  DRACOON), as the servers counted them. Every figure is the steady state: each measured run
  is preceded by a warm-up run of one job per worker (its own fresh room), and the warm-up's
  time, CPU and requests are subtracted from the run's. That removes exactly what a service
  pays once per process or per room and never per job: start-up, log-in, fetching, unlocking
  and validating the RSA-4096 key pair (about 0.35 CPU-s here), creating the room, the first
  connections. With 200 jobs those one-time costs were 1.5-2 ms of "CPU per job" and, with
  latency injected, a 0.4 s first round that an 8-worker run of 2.5 s cannot amortise.
* ``load_large``: a handful of large objects with 4 workers: ``load_mb_per_s``.

Also home of the helpers ``tests/test_load.py`` shares: job messages, service configs as YAML,
and ``run_service_processes`` (the real CLI, ``recording-storage run --drain``, in child
processes that report their peak RSS). ``python -m bench.load_bench child CONFIG`` is that child.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import BenchOptions, Result, benchmark
from recording_storage.jobs import job_message_body

__all__ = [
    "ChildReport", "LoadRun", "cpu_ceiling", "job_body", "main", "run_service_processes", "write_config",
]

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


# -- shared with tests/test_load.py ---------------------------------------------------------------


def job_body(bucket: str, key: str, room: str, meeting_id: int, domain: str) -> str:
    """A job message (the original's wire format) for one key and one room; no e-mail, so the
    file name is ``meeting-<id>--...`` and unique per meeting."""
    return json.dumps(job_message_body(
        bucket, [key], domain=domain, targets=[{"path": room, "expiration": ""}],
        meeting={"id": meeting_id, "date": "2026-11-20T10:15:00+01:00", "timezone": "Europe/Berlin",
                 "type": {"name": "Load", "duration": 30, "id": 1}},
    ))


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """A service configuration file (what ``recording-storage -c`` reads)."""
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def write_instances(path: Path, domain: str, dracoon: Mapping[str, Any]) -> Path:
    """An instances file with one instance (``dracoon``: base_url, login, passwords, room, client)."""
    path.write_text(yaml.safe_dump({"instances": {domain: {"storage": "dracoon", "dracoon": dict(dracoon)}}}),
                    encoding="utf-8")
    return path


@dataclass(frozen=True)
class ChildReport:
    """What one service process reported: exit status, peak RSS, wall time, its stderr tail."""

    returncode: int
    peak_rss_mib: float
    seconds: float
    stderr: str


async def run_service_processes(configs: Sequence[Path], *, timeout: float = 600) -> list[ChildReport]:
    """Run ``recording-storage -c CONFIG run --drain`` once per config, all at the same time."""

    async def one(config: Path) -> ChildReport:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load_bench", "child", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
        lines = out.decode().strip().splitlines()
        report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
        return ChildReport(proc.returncode if proc.returncode is not None else -1,
                           float(report.get("peak_rss_mib", 0.0)), float(report.get("seconds", 0.0)),
                           err.decode(errors="replace")[-4000:])

    return list(await asyncio.gather(*(one(c) for c in configs)))


def peak_rss_mib() -> float:
    """This process's peak RSS since its ``exec`` (VmHWM), in MiB.

    Not ``getrusage().ru_maxrss``: Linux carries that over from the pre-exec image, i.e. from
    the forked copy of the parent, so a child of a big test process would report the parent's
    size (measured: both children of a 300 MiB pytest process reported 873 MiB).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def _child(config: str) -> int:
    """The service process: the real CLI, then one JSON line with its peak RSS."""
    from recording_storage import cli

    started = time.perf_counter()
    status = cli.main(["-c", config, "run", "--drain"])
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "seconds": time.perf_counter() - started}), flush=True)
    return status


# -- the benchmarks -------------------------------------------------------------------------------


def _info(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class _Bench:
    """One bench stack, its bucket, queue and instance; runs the service in this process."""

    def __init__(self, stack: Any, directory: Path) -> None:
        from bench._stack import BUCKET, DOMAIN

        self.stack = stack
        self.bucket, self.domain = BUCKET, DOMAIN
        account = stack.account()
        instances = write_instances(directory / "instances.yml", DOMAIN, {
            "base_url": account.base_url, "login": account.login,
            "password": account.password.get_secret_value(),
            "encryption_password": account.encryption_password.get_secret_value(),
            "parent_room_id": account.parent_room_id, "client_id": account.client_id,
            "client_secret": account.client_secret.get_secret_value(),
        })
        name = f"load-{os.getpid()}-{int(time.time())}"
        self.data = stack.config_data({
            "queue": {"name": name, "dlq_name": f"{name}-dlq", "topics_file": None, "wait_seconds": 0,
                      "visibility_timeout": 120, "heartbeat_interval": 30, "retry_backoff_base": 0,
                      "retry_backoff_max": 0},
            "instances": {"source": "file", "file": str(instances), "cache_ttl": 3600},
            "s3": {"chunk_size": 8 * MIB, "parallel_ranges": 4, "delete_after_transfer": True},
            "dracoon": {"upload_mode": "proxy", "max_retries": 2, "upload_chunk_size": 8 * MIB},
            "health": {"enabled": False},
            "log": {"level": "warning"},
        })

    def config(self, workers: int) -> Any:
        from bench._stack import app_config

        data = {**self.data, "workers": {**self.data.get("workers", {}), "count": workers}}
        return app_config(data)

    async def setup(self) -> None:
        from bench._stack import create_bucket
        from recording_storage.sqs import JobQueue

        cfg = self.config(1)
        await create_bucket(cfg)
        async with JobQueue(cfg.aws, cfg.queue, resolve_on_enter=False) as queue:
            await queue.create_queues(with_dlq=True, redrive_max_receive_count=5)

    async def publish(self, count: int, size: int, room: str, first_id: int) -> None:
        """``count`` objects of ``size`` bytes and one job each (not timed)."""
        from bench._stack import put_generated_object
        from recording_storage.sqs import JobQueue

        cfg = self.config(1)
        sem = asyncio.Semaphore(16)

        async def put(i: int) -> None:
            async with sem:
                await put_generated_object(cfg, f"load/{room}/{i}.mp4", size)

        await asyncio.gather(*(put(i) for i in range(count)))
        async with JobQueue(cfg.aws, cfg.queue) as queue:
            for i in range(count):
                key = f"load/{room}/{i}.mp4"
                await queue.send(job_body(self.bucket, key, room, first_id + i, self.domain))

    async def drain(
        self, workers: int, *, profile: cProfile.Profile | None = None
    ) -> tuple[float, dict[str, int]]:
        from recording_storage.service import serve

        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            stats = await serve(self.config(workers), drain=True, install_signals=False)
        finally:
            if profile is not None:
                profile.disable()
        return time.perf_counter() - started, dict(stats.outcomes)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@dataclass
class LoadRun:
    """A drain's jobs, wall time, CPU seconds by process and requests by "system:operation".

    ``minus`` turns a run into its steady state: the run less its warm-up run.
    """

    workers: int
    jobs: int
    seconds: float
    cpu: dict[str, float]
    requests: dict[str, int] = field(default_factory=dict)

    def minus(self, warmup: LoadRun) -> LoadRun:
        keys = self.requests.keys() | warmup.requests.keys()
        return LoadRun(
            self.workers, self.jobs - warmup.jobs, self.seconds - warmup.seconds,
            {k: v - warmup.cpu.get(k, 0.0) for k, v in self.cpu.items()},
            {k: self.requests.get(k, 0) - warmup.requests.get(k, 0) for k in keys},
        )

    def requests_per_job(self, system: str | None = None) -> float:
        """Requests per job, of one system ("sqs", "s3", "dracoon") or of all."""
        chosen = [n for op, n in self.requests.items() if system is None or op.startswith(f"{system}:")]
        return sum(chosen) / max(self.jobs, 1)

    def rate(self) -> float:
        return self.jobs / max(self.seconds, 1e-6)


def cpu_ceiling(one: LoadRun, many: LoadRun, cores: int) -> float:
    """The most ``many`` could gain over ``one`` on this machine, from the CPU each job costs.

    One worker waits for each request in turn, so its jobs take the sum of every process's CPU
    per job (plus any waiting). Many workers can at best keep every core busy, and each process
    here is one interpreter (one GIL, one core at most): a job then costs at least the larger of
    the busiest process's CPU per job and the total CPU per job spread over the cores. On a
    local stack with no network latency this caps scaling near the core count, whatever the
    service does; the figure says whether a shortfall is the machine's or the service's.
    """
    per_job = [cpu / many.jobs for cpu in many.cpu.values()]
    floor = max(max(per_job), sum(per_job) / max(cores, 1))
    return (1 / one.rate()) / floor


async def _request_counts(stack: Any, *, reset: bool) -> dict[str, int]:
    """What moto and the emulator counted (``bench/_motopatch.py``, ``/_emulator/requests``)."""
    import aiohttp

    method = "DELETE" if reset else "GET"
    counts: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{stack.aws_endpoint}/_bench/requests") as resp:
            resp.raise_for_status()
            counts.update(await resp.json())
        async with session.request(method, f"{stack.dracoon_url}/_emulator/requests") as resp:
            resp.raise_for_status()
            if not reset:
                counts.update({f"dracoon:{op}": n for op, n in (await resp.json()).items()})
    return counts


def _measure(bench: _Bench, workers: int, jobs: int, room: str, first_id: int,
             profile: cProfile.Profile | None = None) -> LoadRun:
    """The steady state of ``jobs`` jobs: a drain of them less a warm-up drain of one per worker.

    The warm-up goes to a fresh room of its own, so both drains pay the same one-time costs.
    """
    warmup = _drain_jobs(bench, workers, workers, f"{room}-warmup", first_id + jobs)
    return _drain_jobs(bench, workers, jobs, room, first_id, profile).minus(warmup)


def _drain_jobs(bench: _Bench, workers: int, jobs: int, room: str, first_id: int,
                profile: cProfile.Profile | None = None) -> LoadRun:
    from bench._stack import cpu_seconds

    _run(bench.publish(jobs, 2 * 1024, room, first_id))
    _run(_request_counts(bench.stack, reset=True))
    before = cpu_seconds(bench.stack.server_pids)
    seconds, outcomes = _run(bench.drain(workers, profile=profile))
    after = cpu_seconds(bench.stack.server_pids)
    requests = _run(_request_counts(bench.stack, reset=False))
    if outcomes != {"success": jobs}:
        raise RuntimeError(f"{workers} worker(s): expected {jobs} successes, got {outcomes}")
    return LoadRun(workers, jobs, seconds, {k: after[k] - before[k] for k in after}, requests)


def _profile_top(profile: cProfile.Profile, limit: int = 15) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


def _scaling(jobs: int, rounds: int, emulator: Mapping[str, Any] | None, profile: cProfile.Profile | None,
             label: str, *, aws_rtt_ms: float = 0) -> dict[int, LoadRun]:
    """Best 1-worker and 8-worker steady states (interleaved rounds)."""
    import tempfile

    from bench._stack import running_stack

    runs: dict[int, list[LoadRun]] = {1: [], 8: []}
    with (tempfile.TemporaryDirectory() as tmp,
          running_stack(emulator, aws_rtt_ms=aws_rtt_ms, aws_keep_alive=True) as stack):
        bench = _Bench(stack, Path(tmp))
        _run(bench.setup())
        next_id = 1
        for i in range(rounds):
            for workers in (1, 8) if i % 2 == 0 else (8, 1):
                prof = profile if workers == 8 else None
                runs[workers].append(_measure(bench, workers, jobs, f"R{i}-{workers}w", next_id, prof))
                next_id += jobs + workers
    best = {w: max(runs[w], key=LoadRun.rate) for w in runs}
    for w, run in best.items():
        per_job = {_NAMES.get(k, k): round(v / run.jobs * 1000, 1) for k, v in run.cpu.items()}
        busy = {_NAMES.get(k, k): f"{v / max(run.seconds, 1e-6):.0%}" for k, v in run.cpu.items()}
        _info(f"{label}, {w} worker(s): {run.jobs} jobs in {run.seconds:.2f} s after the warm-up "
              f"-> {run.rate():.1f} jobs/s; CPU ms/job {per_job}; CPU busy {busy}")
    requests = best[8].requests
    _info(f"{label}, requests per job (8 workers, after the warm-up): "
          + ", ".join(f"{op} {n / best[8].jobs:.2f}" for op, n in sorted(requests.items()) if n))
    return best


_NAMES = {"transfer": "service"}  # bench._stack.cpu_seconds calls this process "transfer"
DRACOON_RTT_MS = 20
AWS_RTT_MS = 5
SYSTEMS = ("sqs", "s3", "dracoon")


@benchmark("load_jobs")
def load_jobs(options: BenchOptions) -> list[Result]:
    """Small jobs through the whole service: 1 vs 8 workers, interleaved, best of N.

    Run twice. With a realistic network (the gate): ``DRACOON_RTT_MS`` on every DRACOON request
    (the emulator's latency rule) and ``AWS_RTT_MS`` on every S3/SQS request (the bench moto
    server's delay), ``load_scaling_8w_vs_1w_rtt``. On the plain local stack (information, with
    its CPU ceiling: every process there is CPU-bound, so 2 cores cap the scaling whatever the
    service does); its CPU per job of each process and the requests per job of each system come
    from this run. ``BENCH_PROFILE=1`` prints a cProfile of the service during the 8-worker plain run.
    """
    from bench._stack import quiet_logs

    quiet_logs()
    jobs, rtt_jobs = (40, 24) if options.quick else (200, 80)
    rounds = 1 if options.quick else 2
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    best = _scaling(jobs, rounds, None, profile, "local stack")
    if profile is not None:
        _info("service process profile, 8 workers (by own time):\n" + _profile_top(profile))
    latency = {"faults": [{"path": ".*", "latency_ms": DRACOON_RTT_MS, "name": "rtt"}]}
    label = f"DRACOON +{DRACOON_RTT_MS} ms, AWS +{AWS_RTT_MS} ms"
    slow = _scaling(rtt_jobs, 1, latency, None, label, aws_rtt_ms=AWS_RTT_MS)
    scaling_rtt = slow[8].rate() / slow[1].rate()
    rate1, rate8 = best[1].rate(), best[8].rate()
    cores = os.cpu_count() or 1
    ceiling = cpu_ceiling(best[1], best[8], cores)
    _info(f"CPU ceiling for 8 vs 1 worker on {cores} cores (local stack): {ceiling:.2f}x")
    return [
        Result("load_scaling_8w_vs_1w_rtt", scaling_rtt, ">= 6", "x"),
        Result("load_jobs_per_s_8w_rtt", slow[8].rate(), "info", "jobs/s"),
        Result("load_jobs_per_s_8w", rate8, "info", "jobs/s"),
        Result("load_jobs_per_s_1w", rate1, "info", "jobs/s"),
        Result("load_scaling_8w_vs_1w", rate8 / rate1, "info", "x"),
        Result("load_scaling_cpu_ceiling", ceiling, "info", "x"),
        Result("load_cpu_count", float(os.cpu_count() or 0), "info", "cores"),
        *(Result(f"load_cpu_ms_per_job_8w_{_NAMES.get(name, name)}", cpu / best[8].jobs * 1000,
                 "<= 6" if name == "transfer" else "info", "ms")
          for name, cpu in sorted(best[8].cpu.items())),
        *(Result(f"load_requests_per_job_{system}", best[8].requests_per_job(system), "info", "requests")
          for system in SYSTEMS),
    ]


@benchmark("load_large")
def load_large(options: BenchOptions) -> list[Result]:
    """A handful of large objects with 4 workers: aggregate MB/s of the whole service."""
    import tempfile

    from bench._stack import quiet_logs, running_stack

    quiet_logs()
    count, size = (4, 32 * MIB) if options.quick else (4, 256 * MIB)
    with tempfile.TemporaryDirectory() as tmp, running_stack() as stack:
        bench = _Bench(stack, Path(tmp))
        _run(bench.setup())
        startup = _run(bench.drain(4))[0]
        _run(bench.publish(count, size, "Large", 1))
        seconds, outcomes = _run(bench.drain(4))
    if outcomes != {"success": count}:
        raise RuntimeError(f"expected {count} successes, got {outcomes}")
    rate = count * size / max(seconds - startup, 1e-6) / 1e6
    _info(f"{count} x {size // MIB} MiB with 4 workers in {seconds:.2f} s (start-up {startup:.2f} s)")
    return [Result("load_mb_per_s", rate, "info", "MB/s")]


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "child":
        return _child(argv[1])
    print("usage: python -m bench.load_bench child CONFIG", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
