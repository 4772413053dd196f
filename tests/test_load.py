"""Load: many small jobs and a few large ones, two service processes on one queue.

The service runs as it does in production: ``recording-storage -c app.yaml run --drain`` in two
child processes (4 workers each) sharing one SQS queue, against moto and the DRACOON emulator
in this process. Afterwards every recording must be in its room exactly once (the exact names
the job implies: no second copy, no "(1)" or clash suffix), decrypt to its source, the sources
must be gone from S3 and the queue and DLQ empty.

Memory: each service process reports its peak RSS; the growth over a service process that
only started and found the queue empty must stay within the streaming budget (see
``memory_budget_mib``), which a process holding whole recordings in memory would exceed.
Throughput is printed for information; the scaling benchmark is ``bench/load_bench.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.load_bench import (
    ChildReport,
    LoadRun,
    cpu_ceiling,
    job_body,
    run_service_processes,
    write_config,
)
from recording_storage.jobs import parse_job_message
from recording_storage.s3 import S3Source
from recording_storage.sqs import JobQueue
from recording_storage.targets import file_name_for
from tests.fixtures.service import DOMAIN, Stack

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
WORKERS = 4
CHUNK = MIB  # S3 range and proxy upload chunk of the service processes
PARALLEL_RANGES = 3


def memory_budget_mib(workers: int = WORKERS) -> float:
    """Peak RSS growth allowed over an idle service process (one that started, found the queue
    empty and stopped).

    Streaming keeps per transfer at most ``parallel_ranges`` S3 ranges read ahead, the chunk being
    encrypted and two proxy upload chunks (one being POSTed, the next filling up behind it):
    ``(ranges + 3) x chunk``, 6 MiB here; a process
    runs ``workers`` transfers. 16 MiB on top cover what does not depend on recordings (the DRACOON
    login and unlocked key pair, botocore's S3 operation models, connection buffers); measured:
    4 MiB for small jobs only, 19 MiB with 4 x 32 MiB recordings in flight. Holding one 24 MiB
    recording (plus its ciphertext) in memory would alone need 48 MiB.
    """
    return workers * (PARALLEL_RANGES + 3) * CHUNK / MIB + 16


@dataclass(frozen=True)
class Recording:
    key: str
    data: bytes
    body: str
    room: tuple[str, str]
    name: str


def _recordings(stack: Stack, small: int, large: int, large_size: int) -> list[Recording]:
    out = []
    for i in range(small + large):
        is_large = i >= small
        size = large_size if is_large else 1024 + (i * 37) % 4096
        seed = hashlib.sha256(f"rec-{i}".encode()).digest()
        data = (seed * (size // len(seed) + 1))[:size]
        key = f"load/{'large' if is_large else 'small'}/{i}.mp4"
        room = ("Load", "Large" if is_large else f"R{i % 7}")
        body = job_body(stack.bucket, key, "/".join(room), 10_000 + i, DOMAIN)
        name = file_name_for(parse_job_message(body), key, "video/mp4", key_count=1)
        out.append(Recording(key, data, body, room, name))
    return out


def _service_config(stack: Stack, path: Path) -> Path:
    cfg = stack.config
    return write_config(path, {
        "log": {"level": "warning", "format": "json"},
        "aws": {"endpoint_url": cfg.aws.endpoint_url, "region": cfg.aws.region, "max_attempts": 5},
        "s3": {"chunk_size": CHUNK, "parallel_ranges": PARALLEL_RANGES},
        "queue": {"name": cfg.queue.name, "dlq_name": cfg.queue.dlq_name, "topics_file": None,
                  "wait_seconds": 0, "visibility_timeout": 120, "heartbeat_interval": 30,
                  "retry_backoff_base": 0, "retry_backoff_max": 0},
        "workers": {"count": WORKERS, "shutdown_grace": 10, "progress_interval": 3600},
        "dracoon": {"upload_chunk_size": CHUNK, "max_retries": 3, "upload_mode": "proxy"},
        "instances": {"source": "file", "file": str(cfg.resolve(cfg.instances.file)), "cache_ttl": 3600},
        "sharer": {"enabled": False},
        "health": {"enabled": False},
    })


async def _publish(stack: Stack, recordings: list[Recording]) -> None:
    sem = asyncio.Semaphore(16)
    async with S3Source(stack.config.aws, stack.config.s3) as s3:

        async def put(r: Recording) -> None:
            async with sem:
                await s3.put(stack.bucket, r.key, r.data, content_type="video/mp4")

        await asyncio.gather(*(put(r) for r in recordings))
    # Large jobs spread among the small ones, so they overlap with other work.
    small = [r for r in recordings if r.room[1] != "Large"]
    large = [r for r in recordings if r.room[1] == "Large"]
    order = list(small)
    for n, r in enumerate(large):
        order.insert((n + 1) * len(small) // (len(large) + 1), r)
    async with JobQueue(stack.config.aws, stack.config.queue, base_dir=stack.config.base_dir) as queue:
        for start in range(0, len(order), 16):  # 16 sends at a time: roughly in order, much faster
            await asyncio.gather(*(queue.send(r.body) for r in order[start : start + 16]))


async def _remaining_objects(stack: Stack) -> list[str]:
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        listing = await s3._client.list_objects_v2(Bucket=stack.bucket)  # test-only listing
    return [o["Key"] for o in listing.get("Contents", [])]


def _check_children(reports: list[ChildReport]) -> None:
    for report in reports:
        assert report.returncode == 0, report.stderr
        for marker in ("job_crashed", "Traceback", "job_failed"):
            assert marker not in report.stderr, report.stderr


async def run_load(
    stack: Stack, tmp_path: Path, *, small: int, large: int, large_size: int
) -> dict[str, Any]:
    """Publish, run two service processes, verify everything landed once; returns figures."""
    configs = [_service_config(stack, tmp_path / f"app-{n}.yaml") for n in range(2)]
    (idle,) = await run_service_processes(configs[:1])  # empty queue: the idle baseline
    _check_children([idle])
    recordings = _recordings(stack, small, large, large_size)
    await _publish(stack, recordings)

    started = time.perf_counter()
    reports = await run_service_processes(configs)
    seconds = time.perf_counter() - started
    _check_children(reports)

    by_room: dict[tuple[str, str], dict[str, Recording]] = {}
    for r in recordings:
        by_room.setdefault(r.room, {})[r.name] = r
    for room, expected in by_room.items():
        files = {f.name: f for f in stack.files(*room)}
        assert set(files) == set(expected), (room, sorted(set(files) ^ set(expected))[:5])
        for name, r in expected.items():
            assert files[name].size == len(r.data), name
    for r in recordings[:: max(1, small // 10)] + recordings[small:]:
        (node,) = [f for f in stack.files(*r.room) if f.name == r.name]
        assert stack.decrypt(node, stack.dracoon.service_user) == r.data, r.key
    assert await _remaining_objects(stack) == []
    assert await stack.queue_counts() == (0, 0, 0)

    growth = max(r.peak_rss_mib for r in reports) - idle.peak_rss_mib
    total = sum(len(r.data) for r in recordings)
    figures = {
        "jobs": len(recordings), "seconds": round(seconds, 2),
        "jobs_per_s": round(len(recordings) / seconds, 1),
        "mb_per_s": round(total / seconds / 1e6, 2), "idle_rss_mib": round(idle.peak_rss_mib, 1),
        "peak_rss_mib": [round(r.peak_rss_mib, 1) for r in reports], "growth_mib": round(growth, 1),
        "budget_mib": memory_budget_mib(),
    }
    print(json.dumps(figures))
    assert growth < memory_budget_mib(), figures
    return figures


async def test_100_jobs_two_processes_land_exactly_once(stack: Stack, tmp_path: Path) -> None:
    """100 small jobs and 2 x 24 MiB, two service processes x 4 workers on one queue: every
    recording once, decryptable, sources gone, queues empty, memory within the streaming budget."""
    await run_load(stack, tmp_path, small=100, large=2, large_size=24 * MIB)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_1000_jobs_and_large_ones_two_processes(stack: Stack, tmp_path: Path) -> None:
    """The issue's load: 1,000 small jobs and 4 x 32 MiB (larger than a process's whole memory
    budget per worker), two processes x 4 workers: exactly once, bounded memory."""
    await run_load(stack, tmp_path, small=1000, large=4, large_size=32 * MIB)


def test_cpu_ceiling_is_the_busiest_process_or_the_cores() -> None:
    """The load bench's ceiling: 1 worker pays every process's CPU per job in turn; 8 workers at
    best pay the busiest process's, or the total spread over the cores, whichever is larger."""
    one = LoadRun(workers=1, jobs=10, seconds=1.0, cpu={})  # 0.1 s/job
    many = LoadRun(workers=8, jobs=10, seconds=0.5, cpu={"service": 0.3, "moto": 0.2, "emulator": 0.1})
    assert cpu_ceiling(one, many, cores=2) == pytest.approx(0.1 / 0.03)  # all on 2 cores
    assert cpu_ceiling(one, many, cores=8) == pytest.approx(0.1 / 0.03)  # service-bound
    assert cpu_ceiling(one, many, cores=1) == pytest.approx(0.1 / 0.06)


def test_steady_state_is_the_run_less_its_warm_up() -> None:
    """One-time costs (log-in, key unlock, room creation) sit in both drains and cancel out."""
    run = LoadRun(workers=8, jobs=208, seconds=3.5, cpu={"transfer": 1.85, "moto": 2.0}, requests={
        "dracoon:POST /oauth/token": 1, "dracoon:POST /api/v4/nodes/rooms": 1, "s3:HeadObject": 416})
    warmup = LoadRun(workers=8, jobs=8, seconds=0.5, cpu={"transfer": 0.45, "moto": 0.1}, requests={
        "dracoon:POST /oauth/token": 1, "dracoon:POST /api/v4/nodes/rooms": 1, "s3:HeadObject": 16,
        "sqs:GetQueueUrl": 1})
    steady = run.minus(warmup)
    assert (steady.workers, steady.jobs, steady.seconds) == (8, 200, 3.0)
    assert steady.rate() == pytest.approx(200 / 3.0)
    assert steady.cpu == pytest.approx({"transfer": 1.4, "moto": 1.9})
    assert steady.requests_per_job("dracoon") == 0
    assert steady.requests_per_job("s3") == 2.0
    assert steady.requests["sqs:GetQueueUrl"] == -1  # visible, not hidden, if the drains differ


def test_requests_per_job_by_system() -> None:
    """The load bench's request figures: what the servers counted, per job, per system."""
    run = LoadRun(workers=8, jobs=4, seconds=1.0, cpu={}, requests={
        "sqs:ReceiveMessage": 2, "sqs:DeleteMessageBatch": 1, "s3:HeadObject": 4, "s3:GetObject": 4,
        "dracoon:GET /api/v4/nodes": 6})
    assert run.requests_per_job("sqs") == 0.75
    assert run.requests_per_job("s3") == 2.0
    assert run.requests_per_job("dracoon") == 1.5
    assert run.requests_per_job() == 4.25
