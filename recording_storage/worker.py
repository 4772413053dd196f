"""The worker pool: receive jobs from SQS, run them, and decide each message's fate once.

A message is acknowledged (deleted) only after its job succeeded. While a job runs, a heartbeat
keeps the message invisible with short leases, so a crashed process's job reappears within one
lease and a slow job never gets a second copy. Transient failures are released with a backoff
that grows with the receive count, until ``queue.max_receives``; permanent ones, and transient
ones on that last receive, go to the dead-letter queue with their reason.
On shutdown the pool stops receiving, releases what it has not started, gives running jobs a
grace period and then cancels and releases them: nothing is acked while its work is unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

from .config import QueueConfig, WorkersConfig
from .errors import InstanceHeld, PermanentError, TransientError
from .intake import JobResult
from .logs import Code
from .sqs import QueueMessage

__all__ = ["PoolStats", "QueueLike", "WorkerHealth", "WorkerMetrics", "WorkerPool", "backoff_seconds"]

log = structlog.get_logger(__name__)

SQS_MAX_VISIBILITY = 43200  # 12 h: SQS rejects leases beyond this from the first receive
LEASE_MARGIN = 60  # seconds kept free below SQS_MAX_VISIBILITY so the last extension is accepted
# A failed receive (SQS down, credentials expired) is retried after RECEIVE_BACKOFF_BASE * 2^n
# seconds, capped: soon enough to recover at once, slow enough not to hammer a broken endpoint.
RECEIVE_BACKOFF_BASE = 0.5
RECEIVE_BACKOFF_MAX = 30.0
Outcome = Literal["success", "transient", "permanent", "cancelled"]


class QueueLike(Protocol):
    """What the pool needs from ``sqs.JobQueue`` (a fake in unit tests)."""

    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]: ...
    async def delete(self, msg: QueueMessage) -> None: ...
    async def change_visibility(self, msg: QueueMessage, seconds: int) -> None: ...
    async def dead_letter(self, msg: QueueMessage, reason_code: str, reason: str) -> None: ...
    async def hold(self, msg: QueueMessage, delay: float) -> int: ...


class WorkerHealth(Protocol):
    """What the pool tells the health state (``health.HealthState`` fits)."""

    def worker_started(self, worker_id: str) -> None: ...
    def worker_stopped(self, worker_id: str) -> None: ...
    def worker_polled(self, worker_id: str) -> None: ...
    def worker_busy(self, worker_id: str) -> None: ...
    def receive_failed(self, error: BaseException) -> None: ...
    def instance_held(self, instance: str, error: BaseException) -> None: ...
    def instance_recovered(self, instance: str) -> None: ...


class WorkerMetrics(Protocol):
    """What the pool reports (``metrics.Metrics`` fits)."""

    def job_in_flight(self) -> AbstractContextManager[None]: ...
    def job_finished(self, outcome: Outcome, seconds: float | None = None) -> None: ...
    def queue_receive_error(self) -> None: ...
    def dlq_message(self, reason: str) -> None: ...
    def job_held(self, instance: str) -> None: ...
    def dead_letter_failed(self) -> None: ...


Handler = Callable[[QueueMessage], Awaitable[JobResult]]


@dataclass
class PoolStats:
    """Counters a bounded run (drain / max_messages) returns, so tests need no sleeps."""

    received: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # message id -> its latest outcome, kept only in a bounded run (a service would grow it
    # forever): a job that failed transiently and then succeeded in the same run is done.
    last_outcome: dict[str, Outcome] | None = None

    def count(self, outcome: Outcome, message_id: str = "") -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.last_outcome is not None:
            self.last_outcome[message_id] = outcome

    def unfinished(self, outcome: Outcome) -> int:
        """How many messages of a bounded run ended with ``outcome`` as their latest attempt."""
        return sum(last == outcome for last in (self.last_outcome or {}).values())


def backoff_seconds(receive_count: int, cfg: QueueConfig, retry_after: float | None = None) -> int:
    """Release delay for a transient failure: grows with the receive count, honours Retry-After."""
    delay = cfg.retry_backoff_base * (2 ** max(0, receive_count - 1))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return int(min(delay, cfg.retry_backoff_max, SQS_MAX_VISIBILITY))


async def _until(task: asyncio.Task[None], event: asyncio.Event) -> None:
    """Wait until ``task`` ends or ``event`` is set, whichever comes first."""
    waiter = asyncio.create_task(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


class WorkerPool:
    """Runs up to ``workers.count`` jobs at once from one queue.

    ``drain=True`` returns once a receive comes back empty and nothing is running;
    ``max_messages`` returns after that many messages were received and finished. Both run the
    real loop, which is how tests and ``recording-storage run --drain`` use it.
    """

    def __init__(
        self,
        queue: QueueLike,
        handler: Handler,
        *,
        queue_cfg: QueueConfig,
        workers_cfg: WorkersConfig,
        health: WorkerHealth,
        metrics: WorkerMetrics,
        drain: bool = False,
        max_messages: int | None = None,
        worker_id: str = "pool",
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._qcfg = queue_cfg
        self._wcfg = workers_cfg
        self._health = health
        self._metrics = metrics
        self._drain = drain
        self._max_messages = max_messages
        self._id = worker_id
        self._running: set[asyncio.Task[None]] = set()
        self._acks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self.stats = PoolStats(last_outcome={} if drain or max_messages is not None else None)

    async def run(self, stop: asyncio.Event, force: asyncio.Event | None = None) -> PoolStats:
        """Receive and run jobs until ``stop`` is set (or the bounded mode is satisfied).

        ``force`` (a second Ctrl-C) ends the wait: a long poll in progress is abandoned (what
        it returned reappears after its lease) and running jobs are cancelled and released now
        instead of after the grace period.
        """
        force = force or asyncio.Event()
        self._health.worker_started(self._id)
        log.info("worker_pool_started", workers=self._wcfg.count, code=Code.APP_START)
        receiving = asyncio.create_task(self._receive_loop(stop), name="receive-loop")
        try:
            await _until(receiving, force)
            if not receiving.done():
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiving
            else:
                receiving.result()
            # Bounded mode: the last jobs finish (they are not shut down) unless stop is set.
            while self._running and not stop.is_set():
                await self._wait_for_slot(stop)
        finally:
            receiving.cancel()
            await self._shutdown(force)
            if self._acks:  # finished jobs whose deletes are still on their way: never dropped
                log.info("waiting_for_acks", pending=len(self._acks))
                await asyncio.wait(set(self._acks))
            self._health.worker_stopped(self._id)
            log.info("worker_pool_stopped", outcomes=self.stats.outcomes)
        return self.stats

    def _done(self) -> bool:
        return self._max_messages is not None and self.stats.received >= self._max_messages

    async def _receive_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set() and not self._done():
            free = self._wcfg.count - len(self._running)
            if free <= 0:
                # Not polling because every slot is busy is healthy, not stale.
                self._health.worker_busy(self._id)
                await self._wait_for_slot(stop)
                continue
            want = min(10, free)
            if self._max_messages is not None:
                want = min(want, self._max_messages - self.stats.received)
            # Long polls are not cancelled on stop (that would not cancel the HTTP request);
            # whatever arrives after stop is released at once below.
            wait = 0 if self._drain else self._qcfg.wait_seconds
            try:
                messages = await self._queue.receive(want, wait)
            except (TransientError, PermanentError) as exc:
                failures += 1
                self._health.receive_failed(exc)
                self._metrics.queue_receive_error()
                delay = min(RECEIVE_BACKOFF_MAX, RECEIVE_BACKOFF_BASE * 2 ** min(failures, 6))
                log.warning("queue_receive_failed", error=str(exc), retry_in=delay, code=Code.SQS_ERROR)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            failures = 0
            self._health.worker_polled(self._id)
            if not messages:
                if self._drain and not self._running:
                    return
                if self._drain:
                    await self._wait_for_slot(stop)
                continue
            for msg in messages:
                if stop.is_set():
                    await self._release_unstarted(msg)
                    continue
                self.stats.received += 1
                task = asyncio.create_task(self._process(msg), name=f"job-{msg.message_id}")
                self._running.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_freed.set()

    async def _wait_for_slot(self, stop: asyncio.Event) -> None:
        self._slot_freed.clear()
        stop_wait = asyncio.create_task(stop.wait())
        slot_wait = asyncio.create_task(self._slot_freed.wait())
        try:
            await asyncio.wait({stop_wait, slot_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            slot_wait.cancel()

    async def _release_unstarted(self, msg: QueueMessage) -> None:
        log.info("message_released_unstarted", message_id=msg.message_id)
        await self._release(msg, 0)

    async def _shutdown(self, force: asyncio.Event) -> None:
        if not self._running:
            return
        log.info("draining_jobs", running=len(self._running), grace=self._wcfg.shutdown_grace)
        deadline = asyncio.get_running_loop().time() + self._wcfg.shutdown_grace
        forced = asyncio.create_task(force.wait())
        try:
            while self._running and not force.is_set():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await asyncio.wait(set(self._running) | {forced}, timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        pending = set(self._running)
        for task in pending:
            task.cancel()
        if pending:
            event = "jobs_cancelled_on_second_signal" if force.is_set() else "jobs_cancelled_after_grace"
            log.warning(event, cancelled=len(pending))
            await asyncio.wait(pending)

    async def _process(self, msg: QueueMessage) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(message_id=msg.message_id, receive_count=msg.receive_count)
        started = time.monotonic()
        with self._metrics.job_in_flight():
            outcome, result, error_code = await self._run_job(msg, started)
        transferred = result.bytes_transferred
        self.stats.count(outcome, msg.message_id)
        self._metrics.job_finished(outcome, time.monotonic() - started)
        log.info(
            "job_finished",
            outcome=outcome,
            error_code=error_code,
            bytes=transferred,
            seconds=round(time.monotonic() - started, 3),
            mb_per_s=round(transferred / max(time.monotonic() - started, 1e-6) / 1e6, 2),
            code=Code.TRANSFER_SUMMARY,
            **result.summary,
        )

    async def _run_job(self, msg: QueueMessage, started: float) -> tuple[Outcome, JobResult, str | None]:
        """Run the handler and settle the message: (outcome, its result, the failure's error code)."""
        heartbeat = asyncio.create_task(self._heartbeat(msg, started))
        outcome: Outcome = "transient"
        result = JobResult()
        error_code: str | None = None
        try:
            result = await self._handler(msg)
            outcome = "success"
            for instance in result.instances:
                self._health.instance_recovered(instance)
        except asyncio.CancelledError:
            outcome = "cancelled"
        except PermanentError as exc:
            outcome, error_code = "permanent", exc.code
            await self._settle(self._dead_letter(msg, exc))
        except InstanceHeld as exc:
            error_code = exc.code
            await self._settle(self._hold(msg, exc))
        except TransientError as exc:
            error_code = exc.code
            outcome = await self._retry_or_give_up(msg, exc, exc.code, exc.retry_after)
        except Exception as exc:
            # A bug, not an input problem: retried like a transient failure, and dead-lettered
            # with its reason after queue.max_receives like one.
            error_code = "internal_error"
            log.exception("job_crashed", code=Code.TRANSFERER_ERROR)
            outcome = await self._retry_or_give_up(msg, exc, "internal_error", None)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if outcome == "success":
            # The slot is free at once: the delete may wait a moment to share a batch call
            # (sqs.DELETE_LINGER). The pool waits for every ack before it stops.
            ack = asyncio.create_task(self._ack(msg))
            self._acks.add(ack)
            ack.add_done_callback(self._acks.discard)
        elif outcome == "cancelled":
            # Shutdown: give the message back at once; a redelivery repeats only idempotent steps.
            await self._settle(self._release(msg, 0))
        return outcome, result, error_code

    async def _retry_or_give_up(
        self, msg: QueueMessage, exc: Exception, code: str, retry_after: float | None
    ) -> Outcome:
        """Release a transient failure for a retry, or dead-letter it on its last receive.

        The service gives up itself (at ``queue.max_receives``) rather than leaving it to the
        queue's RedrivePolicy, because only this way the DLQ copy carries the last reason.
        """
        if msg.receive_count >= self._qcfg.max_receives:
            gave_up = PermanentError(
                f"failed transiently on each of {msg.receive_count} receives (queue.max_receives "
                f"{self._qcfg.max_receives}); last error: {exc}",
                code=code,
            )
            await self._settle(self._dead_letter(msg, gave_up))
            return "permanent"
        delay = backoff_seconds(msg.receive_count, self._qcfg, retry_after)
        await self._settle(self._release(msg, delay, exc))
        return "transient"

    @staticmethod
    async def _settle(action: Awaitable[None]) -> None:
        """Finish a queue action even if shutdown cancels the job task around it (arq's shield)."""
        task = asyncio.ensure_future(action)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task

    async def _ack(self, msg: QueueMessage) -> None:
        try:
            await self._queue.delete(msg)
        except (TransientError, PermanentError) as exc:
            # The work is done and idempotent: a redelivery finds it done and deletes then.
            log.warning("message_delete_failed", error=str(exc), code=Code.SQS_ERROR)

    async def _release(self, msg: QueueMessage, delay: int, exc: BaseException | None = None) -> None:
        """Make the message visible again after ``delay`` seconds (0: at once)."""
        if exc is not None:
            log.warning(
                "job_failed_transient",
                error=str(exc),
                error_code=getattr(exc, "code", "internal_error"),
                retry_in=delay,
                code=Code.TRANSFERER_ERROR,
            )
        try:
            await self._queue.change_visibility(msg, delay)
        except (TransientError, PermanentError) as err:
            log.warning(
                "message_release_failed", message_id=msg.message_id, error=str(err), code=Code.SQS_ERROR
            )

    async def _hold(self, msg: QueueMessage, exc: InstanceHeld) -> None:
        """Hold a job whose instance cannot work at all (its login is refused): no dead letter.

        Every job of the instance fails alike until an operator fixes the account, so none is
        dead-lettered and none counts toward ``queue.max_receives``; the backoff grows with how
        often this job was held (or received). /readyz and the metrics name the instance.
        """
        # A FIFO queue only releases a held job (no re-send): its held count stays, its receive
        # count grows, and the backoff must grow with that before the RedrivePolicy runs out.
        delay = backoff_seconds(max(msg.held_count + 1, msg.receive_count), self._qcfg)
        self._health.instance_held(exc.instance, exc)
        self._metrics.job_held(exc.instance)
        log.error("job_held_instance_unavailable", instance=exc.instance, error=str(exc),
                  error_code=exc.code, retry_in=delay, code=Code.TRANSFERER_ERROR)
        try:
            held = await self._queue.hold(msg, delay)
        except (TransientError, PermanentError) as err:
            log.warning("message_hold_failed", error=str(err), code=Code.SQS_ERROR)
            await self._release(msg, delay)
            return
        log.info("message_held", held_count=held, retry_in=delay)

    async def _dead_letter(self, msg: QueueMessage, exc: PermanentError) -> None:
        log.error("job_failed_permanent", error=str(exc), error_code=exc.code, code=Code.TRANSFERER_ERROR)
        try:
            await self._queue.dead_letter(msg, exc.code, str(exc))
            self._metrics.dlq_message(exc.code)  # only once it is there: the counter means the DLQ
        except (TransientError, PermanentError) as err:
            # Never a silent loop: logged and counted each time, retried after the backoff (the
            # RedrivePolicy still applies), with the reason in this log line.
            delay = backoff_seconds(msg.receive_count, self._qcfg)
            log.error("dead_letter_failed", error=str(err), error_code=err.code, reason_code=exc.code,
                      retry_in=delay, code=Code.SQS_ERROR)
            self._metrics.dead_letter_failed()
            await self._release(msg, delay)

    async def _heartbeat(self, msg: QueueMessage, started: float) -> None:
        interval = self._qcfg.heartbeat_interval
        lease = self._qcfg.visibility_timeout
        while True:
            await asyncio.sleep(interval)
            elapsed = time.monotonic() - started
            remaining = SQS_MAX_VISIBILITY - elapsed - LEASE_MARGIN
            if remaining <= 0:
                log.warning("lease_limit_reached", elapsed=int(elapsed))
                return
            try:
                await self._queue.change_visibility(msg, int(min(lease, remaining)))
            except TransientError as exc:
                log.warning("heartbeat_failed", error=str(exc), code=Code.SQS_ERROR)
            except PermanentError as exc:
                log.error("heartbeat_lease_lost", error=str(exc), code=Code.SQS_ERROR)
                return
