"""Jobs that only partly work out: overlapping deliveries, missing sources, a failing target.

A standard SQS queue may deliver one job twice at once; a source of a job may be missing; one
target room of a fan-out may refuse the file. None of these may dead-letter a job that in fact
succeeded, leave part of a dead-lettered job's recordings in DRACOON, or leave a stored file
without the file keys its room's members need (docs/operations.md, "Overlapping deliveries" and
"Partial jobs").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import structlog

from recording_storage.s3 import S3Source
from tests.fixtures.awsproxy import AwsCall, AwsFaultProxy, running_proxy
from tests.fixtures.service import Stack, blob, dead_letters, job_message, live_channels, proxied

pytestmark = pytest.mark.integration

A, B = "m/a.mp4", "m/b.mp4"


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[AwsFaultProxy]:
    async with running_proxy(moto_server) as started:
        yield started


def on_key(key: str) -> Callable[[AwsCall], bool]:
    return lambda call: call.key == key


def decrypted(stack: Stack, room: str = "Calls") -> list[bytes]:
    return sorted(stack.decrypt(f, stack.dracoon.service_user) for f in stack.files(room))


@pytest.mark.parametrize("vanishes", ["404-on-range", "changed-then-gone"])
async def test_overlapping_delivery_of_a_finished_job_is_a_success(
    stack: Stack, proxy: AwsFaultProxy, vanishes: str
) -> None:
    """One 2-key job delivered twice at once. Copy 1 (through the proxy) pins both keys and
    uploads the first; its read of the second is parked. Copy 2 runs the whole job meanwhile and
    deletes both sources. When copy 1 goes on, the second key is gone (a 404 on its ranged GET,
    or a changed ETag and then a 404 on the re-HEAD): every target already holds it, so copy 1
    succeeds too. No dead letter, one file per key."""
    a, b = blob(30_000, 1), blob(40_000, 2)
    await stack.put(A, a)
    await stack.put(B, b)
    body = job_message(stack.bucket, [A, B])
    await stack.send(body)
    await stack.send(body)  # the duplicate delivery
    read_b = proxy.add("s3:GetObject", "hold", when=on_key(B), count=1)
    rehead_b = proxy.add("s3:HeadObject", "hold", when=on_key(B), after=1, count=1)

    first = asyncio.create_task(proxied(stack, proxy).drain(max_messages=1))
    await proxy.wait_for(lambda: read_b.fired == 1)
    b_landed = b
    if vanishes == "changed-then-gone":
        b_landed = blob(40_000, 3)
        await stack.put(B, b_landed)  # a new version: copy 1's parked read fails its pin
        read_b.release()
        await proxy.wait_for(lambda: rehead_b.fired == 1)
    second = await stack.drain()
    read_b.release()
    rehead_b.release()

    assert (await asyncio.wait_for(first, 60)).outcomes == {"success": 1}
    assert second.outcomes == {"success": 1}
    assert await dead_letters(stack) == []
    assert decrypted(stack) == sorted([a, b_landed])
    assert not await stack.exists(A) and not await stack.exists(B)
    assert live_channels(stack) == []
    assert await stack.queue_counts() == (0, 0, 0)


async def test_source_vanishing_mid_transfer_without_earlier_upload_is_source_missing(
    stack: Stack, proxy: AwsFaultProxy
) -> None:
    """The documented outcome when nothing holds the vanished source: ``source_missing``."""
    a = blob(30_000, 1)
    await stack.put(A, a)
    read = proxy.add("s3:GetObject", "hold", when=on_key(A), count=1)
    await stack.send(job_message(stack.bucket, [A]))

    job = asyncio.create_task(proxied(stack, proxy).drain())
    await proxy.wait_for(lambda: read.fired == 1)
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        await s3._client.delete_object(Bucket=stack.bucket, Key=A)  # someone else removes it
    read.release()

    assert (await asyncio.wait_for(job, 60)).outcomes == {"permanent": 1}
    assert [code for code, _ in await dead_letters(stack)] == ["source_missing"]
    assert stack.files("Calls") == [] and live_channels(stack) == []


@pytest.mark.parametrize("keys", [[A, B], [B, A]], ids=["present-missing", "missing-present"])
async def test_a_missing_source_means_nothing_is_uploaded(stack: Stack, keys: list[str]) -> None:
    """Every source is HEADed before the first upload: a job with a missing source uploads
    nothing, whatever the order of its keys, and its present source stays for a retry."""
    await stack.put(A, blob(30_000, 1))
    await stack.send(job_message(stack.bucket, keys))

    stats = await stack.drain()

    assert stats.outcomes == {"permanent": 1}
    assert [code for code, _ in await dead_letters(stack)] == ["source_missing"]
    assert stack.dracoon.state.files_in(stack.dracoon.parent_room_id, recursive=True) == []
    assert live_channels(stack) == []
    assert await stack.exists(A)


async def test_files_completed_before_a_target_fails_get_their_keys(stack: Stack) -> None:
    """Fan-out to two rooms; the second completion is refused for good (507, room quota). The job
    is dead-lettered, but the file that did land is readable by the room's members: its keys were
    served before the job gave up, and ``job_finished`` lists it in ``node_ids``."""
    reader = stack.dracoon.add_user("reader")
    refuse = stack.dracoon.emulator.faults.add(
        method="PUT", path=r"^/api/v4/uploads/", status=507, after=1, count=1
    )
    data = blob(70_000)
    await stack.put(A, data)
    await stack.send(job_message(stack.bucket, [A], [{"path": "One"}, {"path": "Two"}]))

    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        stats = await stack.drain()

    assert refuse.fired == 1
    assert stats.outcomes == {"permanent": 1}
    assert [code for code, _ in await dead_letters(stack)] == ["quota"]
    stored = stack.files("One") + stack.files("Two")
    assert len(stored) == 1
    assert [e["node_ids"] for e in logs if e["event"] == "job_finished"] == [[stored[0].id]]
    assert reader.id in stack.dracoon.state.file_keys(stored[0].id), "the reader cannot open the file"
    assert stack.decrypt(stored[0], reader) == data
    assert live_channels(stack) == []
    assert await stack.exists(A)
