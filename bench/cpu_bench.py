"""CPU per GiB moved (issue 17): the service against a floor and against a peer.

``pipeline_cpu``: one object on the bench stack (moto, the DRACOON emulator, a sink; each in a
process of its own), four candidates interleaved, the least CPU of N runs each:

* ``service``: the real ``Transferer.run`` (S3 -> encrypt -> proxy upload), this process's CPU;
* ``floor``: a minimal relay written for the bench with the same shape -- plain aiohttp ranged
  GETs (of one presigned URL) of the same object from the same moto server, in the same range
  size and read-ahead, AES-GCM (cryptography) over each range, each ciphertext POSTed to the sink. No
  signing, checks or retries: the least a Python relay of this shape can cost here;
* ``download``: ``S3Source.iter_chunks`` into nothing (HEAD included), this process's CPU;
* ``rclone``: ``rclone cat`` of the same object from the same moto server to /dev/null, the
  rclone process's CPU (skipped, with the reason printed, when rclone is not installed:
  ``apt-get install rclone`` on Debian/Ubuntu, see docs/operations.md).

``pipeline_cpu_vs_floor`` = service / floor (goal <= 1.5) and ``download_cpu_vs_rclone`` =
download / rclone (goal <= 1.0). CPU time, unlike wall time, is little disturbed by a busy
machine, but the servers' share of the cores still shifts caches; both ratios come from one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import shutil
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench import _stack
from bench._stack import (
    BUCKET,
    MIB,
    Stack,
    TransferPipeline,
    download_only,
    job_for,
    put_generated_object,
    quiet_logs,
    running_stack,
)
from bench._timing import info, load_note, sizes
from bench.common import BenchOptions, Result, benchmark
from recording_storage.aws import client_kwargs, make_session
from recording_storage.config import AppConfig

__all__ = ["cpu", "relay_floor", "rclone_command"]

GIB = 1024**3


async def relay_floor(session: aiohttp.ClientSession, source_url: str, size: int, chunk: int, ahead: int,
                      sink_url: str) -> int:
    """GET ``source_url`` (presigned) in ``chunk`` ranges, ``ahead`` in flight; encrypt; POST to the sink.

    Returns the bytes relayed. Kept as plain as a relay can be: what it costs is the floor.
    """
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.GCM(os.urandom(12))).encryptor()
    ranges = iter(range(0, size, chunk))

    async def get(first: int) -> bytes:
        last = min(first + chunk, size) - 1
        async with session.get(source_url, headers={"Range": f"bytes={first}-{last}"}) as resp:
            resp.raise_for_status()
            return await resp.read()

    pending: deque[asyncio.Task[bytes]] = deque()

    def schedule() -> None:
        first = next(ranges, None)
        if first is not None:
            pending.append(asyncio.create_task(get(first)))

    for _ in range(ahead):
        schedule()
    relayed = 0
    while pending:
        data = await pending.popleft()
        schedule()
        ciphertext = encryptor.update(data)
        async with session.post(sink_url, data=ciphertext) as resp:
            resp.raise_for_status()
        relayed += len(data)
    encryptor.finalize()
    return relayed


def rclone_command(endpoint: str, key: str) -> tuple[list[str], dict[str, str]]:
    """``rclone cat`` of ``key`` from the bench bucket on ``endpoint``, configured by environment."""
    # A CA bundle set for AWS SDKs (AWS_CA_BUNDLE) breaks rclone on plain http: not needed here.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env |= {"RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
           "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint, "RCLONE_CONFIG_BENCH_REGION": "eu-west-1",
           "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": "bench-key",
           "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": "bench-secret", "RCLONE_CONFIG": os.devnull}
    return ["rclone", "cat", f"bench:{BUCKET}/{key}"], env


CpuCandidate = Callable[[], Coroutine[Any, Any, None]]


async def presigned_get(config: AppConfig, key: str) -> str:
    """A presigned GetObject URL: the floor's ranged GETs carry no signing work of their own."""
    async with make_session().create_client("s3", **client_kwargs(config.aws)) as client:
        url: str = await client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600)
    return url


class _Candidates:
    def __init__(self, rt: TransferPipeline, stack: Stack, key: str, size: int,
                 session: aiohttp.ClientSession) -> None:
        self.rt, self.stack, self.key, self.size, self.session = rt, stack, key, size, session
        self.source_url = ""
        self._counter = itertools.count()

    async def service(self) -> None:
        report = await self.rt.transferer.run(job_for(self.key, f"Bench/cpu-{next(self._counter)}"))
        if report.uploaded != 1 or report.bytes_read != self.size:
            raise RuntimeError(f"end-to-end transfer incomplete: {report}")

    async def floor(self) -> None:
        assert self.stack.sink_url is not None
        s3 = self.rt.config.s3
        got = await relay_floor(self.session, self.source_url, self.size,
                                s3.chunk_size, s3.parallel_ranges, self.stack.sink_url)
        if got != self.size:
            raise RuntimeError(f"floor relay moved {got} of {self.size} bytes")

    async def download(self) -> None:
        await download_only(self.rt.s3, self.key, self.size)

    async def rclone(self) -> None:
        assert self.stack.aws_endpoint is not None
        argv, env = rclone_command(self.stack.aws_endpoint, self.key)
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"rclone failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    """The floor's HTTP client, made inside the runner's loop (aiohttp binds to the running one)."""
    async with aiohttp.ClientSession() as session:
        yield session


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(
    runner: asyncio.Runner, candidates: dict[str, CpuCandidate], rounds: int
) -> dict[str, list[float]]:
    """CPU seconds of each run: this process's, or (``rclone``) the finished child's."""
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for name in candidates:  # warm-up: connections, room paths, first-use allocations
        runner.run(candidates[name]())
    names = list(candidates)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            own, children, wall = time.process_time(), _children_cpu(), time.perf_counter()
            runner.run(candidates[name]())
            spent = _children_cpu() - children if name == "rclone" else time.process_time() - own
            cpu[name].append(spent)
            info(f"{name}: {spent:.3f} CPU s in {time.perf_counter() - wall:.3f} s")
    return cpu


@benchmark("pipeline_cpu")
def cpu(options: BenchOptions) -> list[Result]:
    """CPU-s per GiB: the service's transfer vs a minimal relay, its download vs rclone's."""
    quiet_logs()
    size = sizes(options, tiny=2 * MIB, quick=64 * MIB, full=512 * MIB)
    rounds = 1 if os.environ.get("BENCH_TINY") else 3
    key = f"bench/cpu-{size}.bin"
    rclone = shutil.which("rclone")
    if rclone is None:
        info("rclone not installed: download_cpu_vs_rclone skipped (Debian/Ubuntu: apt-get install rclone)")
    load_note()
    with running_stack(with_sink=True) as stack, asyncio.Runner() as runner:
        config = stack.app_config()
        runner.run(_stack.create_bucket(config))
        runner.run(put_generated_object(config, key, size))
        exits = AsyncExitStack()
        try:
            rt = runner.run(exits.enter_async_context(_stack.transfer_pipeline(stack, config)))
            session = runner.run(exits.enter_async_context(_session()))
            c = _Candidates(rt, stack, key, size, session)
            c.source_url = runner.run(presigned_get(config, key))
            candidates: dict[str, CpuCandidate] = {
                "service": c.service, "floor": c.floor, "download": c.download}
            if rclone is not None:
                candidates["rclone"] = c.rclone
            cpu_s = _measure(runner, candidates, rounds)
        finally:
            runner.run(exits.aclose())
    per_gib = {name: min(runs) / (size / GIB) for name, runs in cpu_s.items()}
    info(f"object {size // MIB} MiB, s3 chunk {config.s3.chunk_size // MIB} MiB x {config.s3.parallel_ranges}"
         " ranges; CPU s/GiB " + ", ".join(f"{n} {v:.2f}" for n, v in per_gib.items()))
    results = [
        Result("relay_floor_cpu_s_per_gib", per_gib["floor"], "info", "s/GiB"),
        Result("pipeline_cpu_s_per_gib", per_gib["service"], "info", "s/GiB"),
        Result("pipeline_cpu_vs_floor", per_gib["service"] / per_gib["floor"], "<= 1.5", "x"),
        Result("download_cpu_s_per_gib", per_gib["download"], "info", "s/GiB"),
    ]
    if "rclone" in per_gib:
        results += [
            Result("rclone_download_cpu_s_per_gib", per_gib["rclone"], "info", "s/GiB"),
            Result("download_cpu_vs_rclone", per_gib["download"] / per_gib["rclone"], "<= 1.0", "x"),
        ]
    return results
