"""Health, readiness and metrics endpoints that report real state, not just "the process exists".

The original service answered ``/healthcheck`` from a throwaway client with a hard-coded bucket,
the *test* DRACOON config and an unauthenticated ping, and its "no running workers" check could
never trip (bugs 31, 32). Here the workers report into a ``HealthState`` as they run, and the
service registers one probe per real dependency (S3 HeadBucket, SQS GetQueueAttributes, an
authenticated DRACOON call per instance). Probe results are cached and shared between concurrent
requests, so a busy load balancer or a tight Kubernetes probe period never hammers a dependency.

Endpoints: ``/healthcheck`` and ``/api/v1/healthcheck`` (the original's JSON, codes and CORS
headers), ``/livez`` (no downstream calls), ``/readyz`` and ``/metrics``. Nothing served here may
carry a secret or PII: probe errors are redacted, stripped of URL queries and e-mail addresses,
and truncated; handler errors never leak a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Final

import structlog

__all__ = [
    "CORS_HEADERS", "DEP_S3", "DEP_SQS", "ERROR_DRACOON", "ERROR_S3", "ERROR_WORKERS", "HealthVerdict",
    "LOG_CODE", "HealthState", "ProbeFn", "ProbeResult", "describe_error", "dracoon_dependency",
]

log = structlog.get_logger(__name__)

# The original's error codes, in the original's check order.
ERROR_WORKERS: Final = "worker_error_file_transferer"
ERROR_S3: Final = "storage_amazon_s3"
ERROR_DRACOON: Final = "storage_dracoon"
_ORDER: Final = {ERROR_WORKERS: 0, ERROR_S3: 1, ERROR_DRACOON: 2}

DEP_SQS: Final = "sqs"
DEP_S3: Final = "s3"

CORS_HEADERS: Final = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET,POST,PATCH,DELETE",
    "Access-Control-Allow-Headers": "Authorization,Content-type,Accept-Language",
}
DEFAULT_PROBE_TIMEOUT: Final = 5.0
MAX_DESCRIPTION: Final = 300
LOG_CODE: Final = 15014  # the original's "health check error"

ProbeFn = Callable[[], Awaitable[None]]


def dracoon_dependency(domain: str) -> str:
    """The dependency / probe name of one DRACOON instance."""
    return f"dracoon:{domain}"


# -- descriptions without secrets -------------------------------------------------------------

_URL_QUERY = re.compile(r"(?i)\b((?:https?|s3)://[^\s?#'\"<>]*)[?#][^\s'\"<>]*")
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+")


def _logs_redact(text: str) -> str:
    """``recording_storage.logs.redact``: registered secret values, tokens, credential pairs.

    Imported lazily so this module never fails to load because of the logs module.
    """
    try:
        redact: Callable[[str], object] = importlib.import_module("recording_storage.logs").redact
    except Exception:  # absent or mid-edit: the pattern scrubbing below still applies
        return text
    try:
        return str(redact(text))
    except Exception:
        return "<description withheld>"


def describe_error(error: BaseException | str) -> str:
    """A short, secret-free, PII-free description of an error for the health endpoints.

    The logs module masks registered secrets, tokens and credential pairs (on the whole,
    unflattened text: its header rules are line based); any URL query (presigned signatures)
    and e-mail address is stripped here too, since PII rules are not the logs module's.
    """
    if isinstance(error, BaseException):
        text = str(error).strip()
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        text = error
    text = " ".join(_logs_redact(text).split())[: MAX_DESCRIPTION * 8]
    text = _EMAIL.sub("<email>", _URL_QUERY.sub(r"\1?<redacted>", text))
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 3] + "..."


# -- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthVerdict:
    """Verdict of liveness, readiness or the health check (one HTTP answer); ``error`` is a machine
    code, ``description`` is safe text. Not ``checks.CheckResult``: that is a line of ``check``."""

    ok: bool
    error: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe run, cached until ``at + cache_seconds``."""

    ok: bool
    description: str
    at: float


@dataclass
class _Probe:
    name: str
    error_code: str
    fn: ProbeFn
    index: int
    result: ProbeResult | None = None
    inflight: asyncio.Task[ProbeResult] | None = None


@dataclass
class _Worker:
    last_activity: float
    busy: bool = False


class HealthState:
    """What the service knows about its own health; written by workers and the service.

    ``clock`` is injectable (``time.monotonic`` by default) so staleness and caching are tested
    without sleeping. ``require_workers=False`` is for a process that runs no worker pool (e.g.
    sharer only), where "no running workers" is not an error.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        require_workers: bool = True,
    ) -> None:
        self._clock = clock
        self.probe_timeout = probe_timeout
        self.require_workers = require_workers
        self._workers: dict[Hashable, _Worker] = {}
        self._had_workers = False
        self.last_receive_ok: float | None = None
        self.last_receive_error: str | None = None
        self._receive_failing = False
        self.last_sharer_ok: bool | None = None
        self.config_valid = False
        self.shutting_down = False
        self._required: set[str] = set()
        self._reached: set[str] = set()
        self._probes: dict[str, _Probe] = {}
        self._last_ok: bool | None = None
        self._held: dict[str, str] = {}  # instance -> why its jobs are held

    # -- written by workers ---------------------------------------------------------------

    def worker_started(self, worker_id: Hashable) -> None:
        """A worker task began; its start counts as activity until its first poll returns."""
        self._workers[worker_id] = _Worker(self._clock())
        self._had_workers = True

    def worker_stopped(self, worker_id: Hashable) -> None:
        """A worker task ended (call it from ``finally``, so a crash is seen too)."""
        self._workers.pop(worker_id, None)

    def worker_polled(self, worker_id: Hashable) -> None:
        """A receive returned (empty or not): the worker is alive and SQS answered."""
        now = self._clock()
        self._workers[worker_id] = _Worker(now)
        self._had_workers = True
        self.last_receive_ok = now
        self._receive_failing = False
        self._reached.add(DEP_SQS)

    def worker_busy(self, worker_id: Hashable) -> None:
        """The worker is running a job; a long transfer does not poll, yet is not stale."""
        worker = self._workers.setdefault(worker_id, _Worker(self._clock()))
        worker.busy = True
        self._had_workers = True

    def receive_failed(self, error: BaseException | str) -> None:
        """A receive call failed; /healthcheck reports it until the next successful poll."""
        self.last_receive_error = describe_error(error)
        self._receive_failing = True

    def instance_held(self, instance: str, error: BaseException | str) -> None:
        """Jobs of ``instance`` are held: its account cannot work (login refused, encryption
        password wrong). /readyz fails, naming the instance, until one of its jobs succeeds."""
        self._held[instance] = describe_error(error)

    def instance_recovered(self, instance: str) -> None:
        """A job of ``instance`` succeeded: whatever held its jobs is fixed."""
        if self._held.pop(instance, None) is not None:
            log.info("instance_hold_cleared", instance=instance)

    def sharer_pass(self, ok: bool) -> None:
        """A sharer pass ended (reported by /readyz details; not part of the original's checks)."""
        self.last_sharer_ok = ok

    # -- written by the service -----------------------------------------------------------

    def mark_config_valid(self) -> None:
        """The configuration was loaded and validated."""
        self.config_valid = True

    def require_dependency(self, name: str) -> None:
        """Readiness waits for ``name`` to be reached once (probes are required implicitly)."""
        self._required.add(name)

    def mark_dependency_ok(self, name: str) -> None:
        """``name`` was reached successfully at least once (by the service or by a probe)."""
        self._reached.add(name)

    def add_probe(self, name: str, error_code: str, probe: ProbeFn) -> None:
        """Register a dependency probe; it must raise on failure and prove authentication where
        there is any (a DRACOON probe logs in, it does not just ping)."""
        if name in self._probes:
            raise ValueError(f"probe {name!r} is already registered")
        self._probes[name] = _Probe(name, error_code, probe, len(self._probes))

    # -- derived state --------------------------------------------------------------------

    @property
    def running_workers(self) -> int:
        """Workers started and not stopped."""
        return len(self._workers)

    @property
    def ready(self) -> bool:
        """Config valid, every required dependency reached once, and not shutting down."""
        return self.config_valid and not self.shutting_down and not self._pending_dependencies()

    def _pending_dependencies(self) -> list[str]:
        return sorted((self._required | self._probes.keys()) - self._reached)

    def liveness(self) -> HealthVerdict:
        """Alive unless every worker task has ended outside a shutdown; no downstream calls."""
        if self.require_workers and self._had_workers and not self._workers and not self.shutting_down:
            return HealthVerdict(False, "workers_dead", "No running workers")
        return HealthVerdict(True)

    def _check_workers(self, stale_after: float) -> HealthVerdict:
        if not self.require_workers:
            return HealthVerdict(True)
        if not self._workers:
            return HealthVerdict(False, ERROR_WORKERS, "No running workers")
        if any(w.busy for w in self._workers.values()):
            return HealthVerdict(True)
        idle_for = self._clock() - max(w.last_activity for w in self._workers.values())
        if idle_for > stale_after:
            return HealthVerdict(False, ERROR_WORKERS, f"workers have not polled for {int(idle_for)}s")
        return HealthVerdict(True)

    async def healthcheck(self, *, cache_seconds: float, stale_after: float) -> HealthVerdict:
        """The original's aggregate check: workers, SQS, S3, DRACOON; the first failure wins.

        Local checks come first and short-circuit; the probes then run concurrently (each one
        cached and single-flight) and are reported in the original's order.
        """
        result = self._check_workers(stale_after)
        if result.ok and self._receive_failing:
            result = HealthVerdict(False, ERROR_WORKERS, f"SQS receive failed: {self.last_receive_error}")
        if result.ok:
            probes = sorted(self._probes.values(), key=lambda p: (_ORDER.get(p.error_code, 9), p.index))
            outcomes = await asyncio.gather(*(self.probe(p.name, cache_seconds) for p in probes))
            failed = next(((p, r) for p, r in zip(probes, outcomes, strict=True) if not r.ok), None)
            if failed is not None:
                result = HealthVerdict(False, failed[0].error_code, failed[1].description)
        if result.ok != self._last_ok:
            if result.ok and self._last_ok is not None:
                log.info("healthcheck_recovered")
            elif not result.ok:
                log.warning(
                    "healthcheck_failed", code=LOG_CODE, error=result.error, description=result.description
                )
            self._last_ok = result.ok
        return result

    async def readiness(self, *, cache_seconds: float) -> HealthVerdict:
        """Ready once config is valid and each dependency was reached once; probes run only for
        dependencies not reached yet, so a ready process makes no downstream calls here."""
        if self.shutting_down:
            return HealthVerdict(False, "shutting_down", "shutting down")
        if not self.config_valid:
            return HealthVerdict(False, "config_not_valid", "configuration not validated yet")
        if self._held:  # before "not reached": a held instance's probe fails too, less clearly
            held = "; ".join(f"{dracoon_dependency(i)}: {why}" for i, why in sorted(self._held.items()))
            return HealthVerdict(False, "instances_held", "jobs held for " + held)
        pending = self._pending_dependencies()
        await asyncio.gather(*(self.probe(name, cache_seconds) for name in pending if name in self._probes))
        pending = self._pending_dependencies()
        if pending:
            return HealthVerdict(False, "dependencies_not_reached", "not reached yet: " + ", ".join(pending))
        return HealthVerdict(True)


    async def probe(self, name: str, cache_seconds: float) -> ProbeResult:
        """Run probe ``name``, or return its result if younger than ``cache_seconds``.

        Concurrent callers share one run; the run is shielded so a caller that goes away does
        not cancel it for the others.
        """
        p = self._probes[name]
        if p.result is not None and self._clock() - p.result.at < cache_seconds:
            return p.result
        if p.inflight is None:
            task = asyncio.create_task(self._run_probe(p), name=f"health-probe-{name}")
            p.inflight = task
            task.add_done_callback(lambda _t: setattr(p, "inflight", None))
        task = p.inflight
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # cancel_probes() at shutdown: answer, rather than drop, the waiting requests.
                return ProbeResult(False, "probe cancelled: shutting down", self._clock())
            raise

    async def _run_probe(self, p: _Probe) -> ProbeResult:
        try:
            async with asyncio.timeout(self.probe_timeout):
                await p.fn()
        except TimeoutError:
            result = ProbeResult(False, f"timed out after {self.probe_timeout:g}s", self._clock())
        except Exception as exc:  # any probe failure is a health result, never a server error
            result = ProbeResult(False, describe_error(exc), self._clock())
        else:
            result = ProbeResult(True, "", self._clock())
            self._reached.add(p.name)
        p.result = result
        return result

    async def cancel_probes(self) -> None:
        """Cancel probe runs still in flight (server shutdown) and wait for them to end."""
        tasks = [p.inflight for p in self._probes.values() if p.inflight is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- HTTP -------------------------------------------------------------------------------------
