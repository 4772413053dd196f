"""The service's own decisions, without sockets: what it wires together and what it answers.

``open_runtime`` enters real clients (S3, SQS, DRACOON, the health server), so it is covered by
the end-to-end tests (tests/fixtures/service.py's ``Stack``). What lies after it is tested here
against the in-memory doubles: a runtime's queue reaches the pipeline through the decoder and
the worker pool (a bounded run), the exit status a bounded run reports, the two-signal
shutdown, and the one-line start-up errors.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any, cast

import pytest

from bench._stack import StaticInstances
from recording_storage import service
from recording_storage.config import AppConfig
from recording_storage.crypto import KeyPairVersion
from recording_storage.errors import ExitCode, RecordingStorageError, StartupError
from recording_storage.health import HealthState
from recording_storage.metrics import Metrics
from recording_storage.pool import DracoonPool
from recording_storage.s3 import S3Source
from recording_storage.sqs import JobQueue, QueueMessage
from recording_storage.worker import PoolStats
from tests.fixtures.accounts import offline_account
from tests.fixtures.keys import make_test_keypair
from tests.fixtures.memory import MemoryDracoon, MemoryPool, MemoryQueue, MemoryS3, shared_hash_threads
from tests.fixtures.service import blob, job_dict

BUCKET = "recordings"
PARENT = 1
OURS = make_test_keypair(KeyPairVersion.A)


def message(i: int, body: str) -> QueueMessage:
    return QueueMessage(message_id=f"m{i}", receipt_handle=f"rh{i}", body=body)


def runtime(queue: MemoryQueue, s3: MemoryS3, dracoon: MemoryDracoon) -> service.Runtime:
    config = AppConfig.model_validate({"queue": {"topics_file": None}, "health": {"enabled": False}})
    return service.Runtime(
        config,
        StaticInstances(offline_account(parent_room_id=PARENT)),
        # The doubles have what the pipeline and the pool call, not the clients' set-up.
        cast(S3Source, s3),
        cast(JobQueue, queue),
        cast(DracoonPool, MemoryPool(dracoon, OURS.unlocked)),
        shared_hash_threads(),
        Metrics(),
        HealthState(),
    )


async def test_a_bounded_run_takes_each_message_through_decoder_pipeline_and_ack() -> None:
    s3, dracoon = MemoryS3(), MemoryDracoon(PARENT)
    body = blob(3000)
    s3.put(BUCKET, "a.mp4", body)
    queue = MemoryQueue([
        message(1, json.dumps(job_dict(BUCKET, ["a.mp4"]))),
        message(2, "{not json"),
        message(3, json.dumps(job_dict(BUCKET, ["never-uploaded.mp4"]))),
    ])
    rt = runtime(queue, s3, dracoon)

    stats = await service._serve(rt, asyncio.Event(), drain=True, max_messages=None)

    assert stats.received == 3
    assert queue.deleted == ["m1"]
    assert sorted(queue.dead) == [("m2", "invalid_message"), ("m3", "source_missing")]
    [stored] = dracoon.files.values()
    assert dracoon.decrypt(stored.node.id, OURS.unlocked) == body
    assert [d.key for d in s3.deleted] == ["a.mp4"]
    assert rt.health.config_valid


@pytest.mark.parametrize(
    ("outcomes", "stopped", "forced", "status"),
    [
        ({"m1": "ok"}, False, False, ExitCode.OK),
        ({"m1": "ok", "m2": "permanent"}, False, False, ExitCode.JOBS_DEAD_LETTERED),
        ({"m1": "transient"}, False, False, ExitCode.JOBS_LEFT_FOR_RETRY),
        ({"m1": "permanent", "m2": "transient"}, False, False, ExitCode.JOBS_DEAD_LETTERED),
        ({"m1": "ok"}, True, False, ExitCode.INTERRUPTED),
        ({"m1": "ok"}, True, True, ExitCode.INTERRUPTED),
    ],
)
async def test_a_bounded_runs_exit_status_says_what_is_left(
    monkeypatch: pytest.MonkeyPatch, outcomes: dict[str, Any], stopped: bool, forced: bool, status: ExitCode
) -> None:
    async def finished_run(config: AppConfig, *, stop: asyncio.Event, force: asyncio.Event,
                           **_: object) -> PoolStats:
        if stopped:
            stop.set()
        if forced:
            force.set()
        return PoolStats(received=len(outcomes), last_outcome=dict(outcomes))

    monkeypatch.setattr(service, "serve", finished_run)
    assert await service.run(AppConfig(), drain=True) == status


async def test_an_unbounded_run_stopped_by_one_signal_ends_normally(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stopped_service(config: AppConfig, *, stop: asyncio.Event, **_: object) -> PoolStats:
        stop.set()
        return PoolStats()

    monkeypatch.setattr(service, "serve", stopped_service)
    assert await service.run(AppConfig()) == ExitCode.OK


def test_the_first_signal_drains_and_the_second_forces() -> None:
    stop, force = asyncio.Event(), asyncio.Event()
    service._on_signal(signal.SIGTERM, AppConfig(), stop, force)
    assert stop.is_set() and not force.is_set()
    service._on_signal(signal.SIGINT, AppConfig(), stop, force)
    assert force.is_set()


@pytest.mark.parametrize(
    ("code", "hint"),
    [("queue_missing", "create the queue"), ("access_denied", "iam-policy.json"),
     ("something_else", "recording-storage check")],
)
def test_a_startup_failure_is_one_line_with_its_code_and_what_to_do(code: str, hint: str) -> None:
    error = service._startup_error(RecordingStorageError("queue  'jobs'\n  not found", code=code))
    assert isinstance(error, StartupError) and error.code == code
    text = str(error)
    assert "\n" not in text and "queue 'jobs' not found" in text
    assert f"[{code}]" in text and hint in text


def test_a_startup_error_is_passed_on_as_it_is() -> None:
    original = StartupError("port 8080 in use", code="port_in_use")
    assert service._startup_error(original) is original
