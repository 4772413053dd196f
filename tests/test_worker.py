"""Worker pool: message outcomes, concurrency bounds, heartbeat and graceful shutdown (unit, fake queue)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from recording_storage.config import QueueConfig, WorkersConfig
from recording_storage.errors import InstanceHeld, PermanentError, TransientError
from recording_storage.intake import JobResult
from recording_storage.sqs import QueueMessage
from recording_storage.worker import WorkerPool, backoff_seconds
from tests.fixtures.memory import MemoryQueue


def msg(i: int, receive_count: int = 1) -> QueueMessage:
    return QueueMessage(
        message_id=f"m{i}",
        receipt_handle=f"rh{i}",
        body=f"job-{i}",
        receive_count=receive_count,
        attributes={},
    )


class FakeHealth:
    def __init__(self) -> None:
        self.polls = 0
        self.receive_errors = 0

    def worker_started(self, worker_id: str) -> None: ...
    def worker_stopped(self, worker_id: str) -> None: ...

    def worker_busy(self, worker_id: str) -> None: ...

    def worker_polled(self, worker_id: str) -> None:
        self.polls += 1

    def receive_failed(self, error: BaseException) -> None:
        self.receive_errors += 1

    def instance_held(self, instance: str, error: BaseException) -> None: ...
    def instance_recovered(self, instance: str) -> None: ...


class FakeMetrics:
    def __init__(self) -> None:
        self.finished: list[str] = []
        self.in_flight = 0
        self.dead_lettered: list[str] = []
        self.dead_letter_failures = 0

    @contextlib.contextmanager
    def job_in_flight(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def job_finished(self, outcome: str, seconds: float | None = None) -> None:
        self.finished.append(outcome)

    def queue_receive_error(self) -> None: ...
    def dlq_message(self, reason: str) -> None:
        self.dead_lettered.append(reason)

    def job_held(self, instance: str) -> None: ...

    def dead_letter_failed(self) -> None:
        self.dead_letter_failures += 1


QCFG = QueueConfig(
    visibility_timeout=30, heartbeat_interval=0.05, retry_backoff_base=30, retry_backoff_max=900
)


def pool(queue: MemoryQueue, handler, *, count: int = 2, grace: float = 1.0, **kw) -> WorkerPool:  # type: ignore[no-untyped-def]
    return WorkerPool(
        queue,
        handler,
        queue_cfg=QCFG,
        workers_cfg=WorkersConfig(count=count, shutdown_grace=grace),
        health=FakeHealth(),
        metrics=FakeMetrics(),
        **kw,
    )


async def test_outcomes_are_decided_per_exception_class() -> None:
    """Success deletes, transient releases with backoff, permanent dead-letters, a bug releases."""
    queue = MemoryQueue([msg(1), msg(2, receive_count=3), msg(3), msg(4)])

    async def handler(m: QueueMessage) -> JobResult:
        if m.message_id == "m2":
            raise TransientError("dracoon 503")
        if m.message_id == "m3":
            raise PermanentError("bad message", code="invalid_message")
        if m.message_id == "m4":
            raise KeyError("bug")
        return JobResult(bytes_transferred=10)

    stats = await pool(queue, handler, drain=True).run(asyncio.Event())
    assert queue.deleted == ["m1"]
    assert queue.dead == [("m3", "invalid_message")]
    released = dict(queue.visibility)
    assert released["m2"] == 120  # 30 s x 2^(3-1)
    assert released["m4"] == 30
    assert stats.outcomes == {"success": 1, "transient": 2, "permanent": 1}


async def test_failures_on_the_last_receive_are_dead_lettered_with_their_own_code() -> None:
    """On receive ``queue.max_receives`` a transient failure and a bug are dead-lettered, each
    with its last error's code; one receive earlier they are still released."""
    last = QCFG.max_receives
    queue = MemoryQueue([msg(1, receive_count=last), msg(2, receive_count=last), msg(3, last - 1)])

    async def handler(m: QueueMessage) -> JobResult:
        if m.message_id == "m2":
            raise KeyError("bug")
        raise TransientError("dracoon 503", code="server_error")

    stats = await pool(queue, handler, drain=True).run(asyncio.Event())
    assert sorted(queue.dead) == [("m1", "server_error"), ("m2", "internal_error")]
    assert [m for m, _ in queue.visibility] == ["m3"]
    assert stats.outcomes == {"permanent": 2, "transient": 1}


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    """Backoff doubles per receive, never exceeds the cap, and a longer Retry-After wins."""
    assert [backoff_seconds(n, QCFG) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff_seconds(20, QCFG) == 900
    assert backoff_seconds(1, QCFG, retry_after=75) == 75


async def test_concurrency_never_exceeds_worker_count_and_asks_only_for_free_slots() -> None:
    """At most ``count`` jobs run at once; receives request only as many messages as free slots."""
    queue = MemoryQueue([msg(i) for i in range(7)])
    running = peak = 0

    async def handler(m: QueueMessage) -> JobResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return JobResult()

    stats = await pool(queue, handler, count=3, drain=True).run(asyncio.Event())
    assert peak == 3
    assert max(queue.asked) <= 3
    assert sorted(queue.deleted) == sorted(f"m{i}" for i in range(7))
    assert stats.received == 7


async def test_heartbeat_extends_the_lease_while_a_job_runs() -> None:
    """A job longer than the heartbeat interval gets its visibility extended, then is deleted."""
    queue = MemoryQueue([msg(1)])

    async def handler(m: QueueMessage) -> JobResult:
        await asyncio.sleep(0.2)
        return JobResult()

    await pool(queue, handler, drain=True).run(asyncio.Event())
    extensions = [s for mid, s in queue.visibility if mid == "m1"]
    assert len(extensions) >= 2 and all(s == 30 for s in extensions)
    assert queue.deleted == ["m1"]


async def test_shutdown_cancels_jobs_after_grace_and_releases_them() -> None:
    """On stop, a job that outlives the grace period is cancelled and its message released (not acked)."""
    queue = MemoryQueue([msg(1)])
    started = asyncio.Event()

    async def handler(m: QueueMessage) -> JobResult:
        started.set()
        await asyncio.sleep(60)
        return JobResult()

    stop = asyncio.Event()
    p = pool(queue, handler, grace=0.1)
    task = asyncio.create_task(p.run(stop))
    await started.wait()
    stop.set()
    stats = await asyncio.wait_for(task, 5)
    assert queue.deleted == []
    assert ("m1", 0) in queue.visibility
    assert stats.outcomes == {"cancelled": 1}


async def test_jobs_finishing_within_grace_are_acked_on_shutdown() -> None:
    """A job that completes inside the grace period is still deleted after stop."""
    queue = MemoryQueue([msg(1)])
    started = asyncio.Event()

    async def handler(m: QueueMessage) -> JobResult:
        started.set()
        await asyncio.sleep(0.1)
        return JobResult()

    stop = asyncio.Event()
    task = asyncio.create_task(pool(queue, handler, grace=5).run(stop))
    await started.wait()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert queue.deleted == ["m1"]


async def test_messages_arriving_after_stop_are_released_unstarted() -> None:
    """A long poll that returns after stop hands its messages back at once (visibility 0)."""
    stop = asyncio.Event()

    class LateQueue(MemoryQueue):
        async def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
            stop.set()  # the signal arrives while the poll is in flight
            return await super().receive(max_messages, wait_seconds)

    queue = LateQueue([msg(1), msg(2)])
    handled: list[str] = []

    async def handler(m: QueueMessage) -> JobResult:
        handled.append(m.message_id)
        return JobResult()

    await pool(queue, handler).run(stop)
    assert handled == []
    assert sorted(queue.visibility) == [("m1", 0), ("m2", 0)]


async def test_receive_errors_are_retried_not_fatal() -> None:
    """A failing ReceiveMessage is logged and retried; the pool keeps serving afterwards."""
    queue = MemoryQueue([msg(1)], fail_receives=1)

    async def handler(m: QueueMessage) -> JobResult:
        return JobResult()

    p = pool(queue, handler, drain=True)
    await asyncio.wait_for(p.run(asyncio.Event()), 10)
    assert queue.deleted == ["m1"]


@pytest.mark.parametrize("limit", [1, 3])
async def test_max_messages_bounds_a_run(limit: int) -> None:
    """``max_messages`` stops the loop after that many messages, leaving the rest queued."""
    queue = MemoryQueue([msg(i) for i in range(5)])

    async def handler(m: QueueMessage) -> JobResult:
        return JobResult()

    stats = await pool(queue, handler, max_messages=limit).run(asyncio.Event())
    assert stats.received == limit
    assert len(queue.pending) == 5 - limit


async def test_a_dead_letter_the_dlq_refuses_is_not_counted_as_dead_lettered() -> None:
    """``dlq_messages_total`` counts messages that reached the DLQ: a refused dead letter (the
    message stays in the job queue for another attempt) counts as a failure only."""

    class RefusingQueue(MemoryQueue):
        async def dead_letter(self, m: QueueMessage, reason_code: str, reason: str) -> None:
            raise TransientError("dlq refused", code="access_denied")

    queue = RefusingQueue([msg(1)])
    metrics = FakeMetrics()

    async def handler(m: QueueMessage) -> JobResult:
        raise PermanentError("bad message", code="invalid_message")

    workers = WorkerPool(queue, handler, queue_cfg=QCFG, workers_cfg=WorkersConfig(count=1),
                         health=FakeHealth(), metrics=metrics, drain=True)
    await workers.run(asyncio.Event())

    assert queue.dead == [] and [m for m, _ in queue.visibility] == ["m1"]
    assert metrics.dead_lettered == [] and metrics.dead_letter_failures == 1


async def test_a_job_held_again_and_again_backs_off_by_its_receives_too() -> None:
    """A FIFO queue cannot re-send a held job (no per-message delay): it is only released, so
    ``rs-held-count`` never grows there while its receive count does. The hold's backoff must
    grow with that, or the job comes back every ``retry_backoff_base`` and the RedrivePolicy
    moves it to the DLQ, without a reason, within minutes of an instance's login breaking."""
    queue = MemoryQueue([msg(1, receive_count=5)])

    async def handler(m: QueueMessage) -> JobResult:
        raise InstanceHeld("meet.example.com", PermanentError("login refused", code="authentication_failed"))

    await pool(queue, handler, drain=True).run(asyncio.Event())

    assert queue.visibility == [("m1", backoff_seconds(5, QCFG))]
