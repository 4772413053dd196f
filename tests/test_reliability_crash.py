"""Crash and restart: the real service as a child process, killed or stopped at each step of a job.

No test hook exists in the service: each step is held from outside (a request parked at the S3/SQS
proxy, or emulator latency on a DRACOON call) and recognised from outside (what the proxy and the
emulator saw), then the process gets SIGKILL or SIGTERM. After a SIGKILL nothing of the dead
process may act any more; its message comes back when its lease (10 s, heartbeat 3 s) runs out
(in the fast variants the test ends that lease itself, as SQS would, with the receipt handle the
proxy saw), and a restarted ``run --drain`` must finish the job exactly once: one file per target (no
``(1)`` copies), the key served to the room's reader, the source deleted only after the file is
complete, no message visible or in flight, an empty DLQ.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dracoon_emulator.model import Node
from recording_storage.config import AppConfig, load_config
from recording_storage.service import serve
from tests.fixtures.awsproxy import AwsCall, AwsFaultProxy, end_leases, running_proxy, via_proxy
from tests.fixtures.procs import ServiceProcess, Spawner, config_to_yaml, wait_until
from tests.fixtures.service import Stack, job_message

pytestmark = pytest.mark.integration

KEY = "rec/crash.mp4"
LEASE = 10  # seconds: queue.visibility_timeout of the child
GRACE = 1.0  # seconds: workers.shutdown_grace of the child
HOLD_MS = 60_000  # emulator latency that parks a DRACOON call for longer than any test


def blob(size: int, seed: int = 5) -> bytes:
    return bytes((i * 17 + seed) % 253 for i in range(size))


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[AwsFaultProxy]:
    async with running_proxy(moto_server) as started:
        yield started


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path)
    try:
        yield spawner
    finally:
        spawner.kill_all()


def child_config(stack: Stack, proxy: AwsFaultProxy, *, wait_seconds: int = 1) -> AppConfig:
    """The stack's config for a child process: AWS through the proxy, short leases, JSON logs."""
    cfg = via_proxy(stack.config, proxy, max_attempts=2)
    queue = cfg.queue.model_copy(
        update={"visibility_timeout": LEASE, "heartbeat_interval": 3.0, "wait_seconds": wait_seconds}
    )
    return cfg.model_copy(
        update={
            "queue": queue,
            "workers": cfg.workers.model_copy(update={"shutdown_grace": GRACE}),
            "log": cfg.log.model_copy(update={"format": "json", "level": "info"}),
        }
    )


def files(stack: Stack) -> list[Node]:
    """Files in the target room, or none if the room does not exist yet."""
    room = stack.dracoon.state.find_child(stack.dracoon.parent_room_id, "Calls")
    return [] if room is None else stack.dracoon.state.files_in(room.id)


def channels(stack: Stack) -> set[str]:
    return {c.id for c in stack.dracoon.state.uploads.values() if c.status in ("transfer", "finishing")}


def upload_under_way(stack: Stack) -> bool:
    return any(c.received > 0 for c in stack.dracoon.state.uploads.values())


async def publish(stack: Stack, data: bytes) -> None:
    await stack.put(KEY, data)
    await stack.send(job_message(stack.bucket, [KEY]))


def events(proc: ServiceProcess, name: str) -> list[dict[str, object]]:
    return [e for e in proc.events() if e.get("event") == name]


async def restart_and_check(
    stack: Stack, config: AppConfig, spawn: Spawner, data: bytes, *, orphans: set[str]
) -> ServiceProcess:
    """Run ``run --drain`` once the message is visible again; the job must land exactly once."""
    second = spawn(config, "run", "--drain")
    assert await second.wait(60) == 0, second.tail()
    assert [e.get("outcome") for e in events(second, "job_finished")] == ["success"], second.tail()
    landed = files(stack)
    assert len(landed) == 1, [f.name for f in landed]
    (file,) = landed
    assert " (" not in file.name
    assert stack.decrypt(file, stack.dracoon.service_user) == data
    reader = stack.dracoon.state.user_by_login("reader")
    assert reader is not None and reader.id in stack.dracoon.state.file_keys(file.id)
    assert channels(stack) <= orphans  # the restarted process left no channel open
    assert not await stack.exists(KEY)
    assert await stack.queue_counts() == (0, 0, 0)
    return second


def test_child_config_round_trips(stack: Stack, proxy: AwsFaultProxy, tmp_path: Path) -> None:
    """The child loads exactly the configuration the test meant (secrets and paths included)."""
    config = child_config(stack, proxy)
    assert load_config(config_to_yaml(config, tmp_path / "app.yaml"), env={}) == config


# -- SIGKILL at each step ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """How to park the job at one step, and what must hold when the process dies there."""

    name: str
    arm: Callable[[Stack, AwsFaultProxy], Callable[[], Awaitable[None]]]
    file_complete: bool = False
    source_deleted: bool = False


def _after_receive(stack: Stack, proxy: AwsFaultProxy) -> Callable[[], Awaitable[None]]:
    rule = stack.dracoon.emulator.faults.add(
        method="POST", path=r"^/oauth/token$", latency_ms=HOLD_MS, count=1
    )

    async def reached() -> None:
        await wait_until(lambda: rule.fired == 1, what="first DRACOON call (login) of the job")
        assert proxy.receipts, "the message was received before the job talked to DRACOON"

    return reached


def _mid_download(stack: Stack, proxy: AwsFaultProxy) -> Callable[[], Awaitable[None]]:
    def third_range(call: AwsCall) -> bool:
        return (call.range or "").startswith("bytes=131072-")

    rule = proxy.add("s3:GetObject", "hold", when=third_range, count=1, forward=False)

    async def reached() -> None:
        await proxy.wait_for(lambda: rule.fired == 1)

    return reached


def _mid_upload(stack: Stack, proxy: AwsFaultProxy) -> Callable[[], Awaitable[None]]:
    rule = stack.dracoon.emulator.faults.add(
        method="POST", path=r"^/api/v4/uploads/", latency_ms=HOLD_MS, after=1, count=1
    )

    async def reached() -> None:
        await wait_until(lambda: rule.fired == 1 and upload_under_way(stack), what="second chunk in flight")

    return reached


def _after_complete(stack: Stack, proxy: AwsFaultProxy) -> Callable[[], Awaitable[None]]:
    rule = stack.dracoon.emulator.faults.add(
        method="GET", path=r"^/api/v4/nodes/missingFileKeys$", latency_ms=HOLD_MS, count=1
    )

    async def reached() -> None:
        await wait_until(lambda: rule.fired == 1 and len(files(stack)) == 1, what="file stored, keys pending")

    return reached


def _after_s3_delete(stack: Stack, proxy: AwsFaultProxy) -> Callable[[], Awaitable[None]]:
    rule = proxy.add("sqs:DeleteMessageBatch", "hold", count=1, forward=False)

    async def reached() -> None:
        await proxy.wait_for(lambda: rule.fired == 1)

    return reached


STEPS = [
    Step("after-receive", _after_receive),
    Step("mid-download", _mid_download),
    Step("mid-upload", _mid_upload),
    Step("after-complete-before-key-share", _after_complete, file_complete=True),
    Step("after-s3-delete-before-ack", _after_s3_delete, file_complete=True, source_deleted=True),
]


def _kill_cases() -> list[Any]:
    """Every step twice: the dead process's lease ended at once by the test (as SQS ends it when
    the visibility timeout passes), and really timing out (~10 s; one step in the default suite)."""
    cases = []
    for step in STEPS:
        cases.append(pytest.param(step, False, id=f"{step.name}"))
        slow = () if step.name == "mid-upload" else (pytest.mark.slow,)
        cases.append(pytest.param(step, True, id=f"{step.name}-lease-timeout", marks=slow))
    return cases


@pytest.mark.parametrize(("step", "lease_timeout"), _kill_cases())
async def test_sigkill_at_each_step_then_restart_lands_exactly_once(
    stack: Stack, proxy: AwsFaultProxy, spawn: Spawner, step: Step, lease_timeout: bool
) -> None:
    """SIGKILL with the job parked at ``step``; at that moment no file is visible before its
    completion and the source still exists before its delete. A restart lands the job once."""
    stack.dracoon.add_user("reader")
    data = blob(300_000)
    await publish(stack, data)
    config = child_config(stack, proxy)
    reached = step.arm(stack, proxy)

    first = spawn(config, "run")
    await reached()
    first.kill()
    assert await first.wait(10) == -9

    assert len(files(stack)) == (1 if step.file_complete else 0)
    assert await stack.exists(KEY) is not step.source_deleted
    assert await stack.queue_counts() == (0, 1, 0)
    orphans = channels(stack)

    stack.dracoon.emulator.faults.clear()
    proxy.clear()
    if lease_timeout:

        async def lease_ran_out() -> bool:
            return (await stack.queue_counts())[0] == 1

        await wait_until(lease_ran_out, timeout=LEASE + 5, interval=0.25, what="the dead process's lease")
    else:
        assert await end_leases(stack.config, proxy) == 1
    await restart_and_check(stack, config, spawn, data, orphans=orphans)


# -- SIGTERM ----------------------------------------------------------------------------------


async def _terminate(proc: ServiceProcess, *, within: float) -> float:
    """SIGTERM, then the exit status must be 0 within ``within`` seconds; returns the time taken."""
    proc.terminate()
    started = time.monotonic()
    assert await proc.wait(within + 10) == 0, proc.tail()
    took = time.monotonic() - started
    assert took <= within, f"exit took {took:.1f}s, more than {within}s"
    return took


async def test_sigterm_during_long_poll_releases_what_arrives_and_exits(
    stack: Stack, proxy: AwsFaultProxy, spawn: Spawner
) -> None:
    """SIGTERM while a 20 s long poll is open; a job arrives before it returns. The poll is let
    return, its message released at once (not started, not held for a lease), exit 0 in time."""
    stack.dracoon.add_user("reader")
    config = child_config(stack, proxy, wait_seconds=20)
    proc = spawn(config, "run")
    await proxy.wait_for(lambda: proxy.inflight["sqs:ReceiveMessage"] >= 1)

    proc.terminate()
    started = time.monotonic()
    data = blob(10_000)
    await publish(stack, data)
    assert await proc.wait(20 + GRACE + 15) == 0, proc.tail()
    assert time.monotonic() - started <= 20 + GRACE + 5

    assert len(events(proc, "message_released_unstarted")) == 1, proc.tail()
    assert events(proc, "job_finished") == []
    assert await stack.queue_counts() == (1, 0, 0)  # visible at once: no lease to wait for
    assert await stack.exists(KEY) and files(stack) == []
    await restart_and_check(stack, config, spawn, data, orphans=set())


@pytest.mark.parametrize("wait_seconds", [2, pytest.param(20, marks=pytest.mark.slow)])
async def test_sigterm_while_idle_exits_within_wait_plus_grace(
    stack: Stack, proxy: AwsFaultProxy, spawn: Spawner, wait_seconds: int
) -> None:
    """An idle service (long poll open, nothing to do) exits 0 within wait_seconds + grace + 5 s."""
    proc = spawn(child_config(stack, proxy, wait_seconds=wait_seconds), "run")
    await proxy.wait_for(lambda: proxy.inflight["sqs:ReceiveMessage"] >= 1)
    await _terminate(proc, within=wait_seconds + GRACE + 5)
    assert await stack.queue_counts() == (0, 0, 0)


async def test_sigterm_mid_part_cancels_releases_and_restart_lands_once(
    stack: Stack, proxy: AwsFaultProxy, spawn: Spawner
) -> None:
    """SIGTERM while a chunk hangs: after the grace period the job is cancelled, its channel
    deleted and its message released at once; the restart lands the recording once."""
    stack.dracoon.add_user("reader")
    data = blob(300_000)
    await publish(stack, data)
    config = child_config(stack, proxy)
    stack.dracoon.emulator.faults.add(
        method="POST", path=r"^/api/v4/uploads/", latency_ms=HOLD_MS, after=1, count=1
    )
    proc = spawn(config, "run")
    await wait_until(lambda: upload_under_way(stack), what="upload under way")

    await _terminate(proc, within=1 + GRACE + 5)

    assert [e.get("outcome") for e in events(proc, "job_finished")] == ["cancelled"], proc.tail()
    assert channels(stack) == set()  # the process cancelled its channel on the way out
    assert files(stack) == [] and await stack.exists(KEY)
    assert await stack.queue_counts() == (1, 0, 0)  # released with visibility 0
    stack.dracoon.emulator.faults.clear()
    await restart_and_check(stack, config, spawn, data, orphans=set())


async def test_sigterm_between_complete_and_ack_finishes_the_ack(
    stack: Stack, proxy: AwsFaultProxy, spawn: Spawner
) -> None:
    """SIGTERM while the delete is slow: the job counts as done and its acknowledgement runs
    outside the job, so shutdown waits for it instead of cancelling it; the process exits 0 with
    nothing left behind."""
    stack.dracoon.add_user("reader")
    data = blob(50_000)
    await publish(stack, data)
    rule = proxy.add("sqs:DeleteMessageBatch", "hold", count=1)
    proc = spawn(child_config(stack, proxy), "run")
    await proxy.wait_for(lambda: rule.fired == 1)
    assert len(files(stack)) == 1 and not await stack.exists(KEY)

    proc.terminate()
    await wait_until(lambda: bool(events(proc, "waiting_for_acks")), what="shutdown waiting for the ack")
    assert proc.running()  # still waiting for its acknowledgement
    rule.release()
    assert await proc.wait(10) == 0, proc.tail()

    assert [e.get("outcome") for e in events(proc, "job_finished")] == ["success"], proc.tail()
    assert events(proc, "message_delete_failed") == []
    assert await stack.queue_counts() == (0, 0, 0)
    assert len(files(stack)) == 1


# -- bounded runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack_overrides", [{"workers": {"shutdown_grace": 0.2}}], ids=["grace-0.2s"])
async def test_bounded_run_finishes_its_last_job_instead_of_cancelling_it(stack: Stack) -> None:
    """``run --max-messages 1`` stops receiving after one message, but nobody asked it to stop:
    its job must finish (and be acknowledged), not be cancelled when the shutdown grace runs out."""
    stack.dracoon.add_user("reader")
    stack.dracoon.emulator.faults.add(method="POST", path=r"^/api/v4/uploads/", latency_ms=1_000, count=1)
    data = blob(20_000)
    await publish(stack, data)

    stats = await serve(stack.config, max_messages=1, install_signals=False)

    assert stats.outcomes == {"success": 1}
    assert len(files(stack)) == 1 and not await stack.exists(KEY)
    assert await stack.queue_counts() == (0, 0, 0)
