"""The periodic sharer: serves missing file keys for users added to rooms after an upload.

Each pass runs ``keyshare.serve_missing_keys`` per configured instance; serving is idempotent,
so any number of replicas may run the sharer at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Protocol

import structlog

from .config import SharerConfig
from .errors import PermanentError, RecordingStorageError
from .instances import InstanceProvider
from .keyshare import ShareStats, serve_missing_keys
from .logs import Code
from .metrics import SharerOutcome
from .pool import DracoonPool

__all__ = ["Sharer", "SharerHealth", "SharerMetrics"]

log = structlog.get_logger(__name__)


class SharerMetrics(Protocol):
    """What the sharer reports (``metrics.Metrics`` fits)."""

    def sharer_keys_served(self, count: int) -> None: ...

    def sharer_pass(self, outcome: SharerOutcome) -> None: ...


class SharerHealth(Protocol):
    """What the sharer tells the health state (``health.HealthState`` fits)."""

    def sharer_pass(self, ok: bool) -> None: ...


class Sharer:
    """Periodic pass over every configured instance; one failing instance never stops the loop.

    ``metrics`` gets the keys served and each pass's outcome; ``health`` learns whether the
    last pass served everything it could.
    """

    def __init__(
        self,
        instances: InstanceProvider,
        pool: DracoonPool,
        cfg: SharerConfig,
        *,
        metrics: SharerMetrics | None = None,
        health: SharerHealth | None = None,
    ) -> None:
        self._instances = instances
        self._pool = pool
        self._cfg = cfg
        self._metrics = metrics
        self._health = health
        # Why each instance of the last pass failed (or "" if the listing itself failed), for
        # ``recording-storage share`` to print; the log has the same lines.
        self.failures: dict[str, str] = {}

    async def run_once(self, *, only: str | None = None) -> dict[str, ShareStats]:
        """One pass; per-instance stats. Instances that failed are logged and absent.

        A domain that shares its account with an earlier one, or is not stored in DRACOON,
        gets empty stats: there is nothing (more) to do for it.
        """
        try:
            results, outcome = await self._pass(only)
        except Exception:
            self._report("failure")
            raise
        self._report(outcome)
        return results

    async def _pass(self, only: str | None) -> tuple[dict[str, ShareStats], SharerOutcome]:
        results: dict[str, ShareStats] = {}
        self.failures = {}
        try:
            domains = [only] if only else await self._instances.list_domains()
        except RecordingStorageError as exc:
            log.error("sharer_instances_unavailable", error=str(exc), code=Code.SHARER_ERROR)
            self.failures[""] = f"listing instances failed: {exc}"
            return results, "failure"
        # Several domains may share one account: serve it once; a failure fails them all.
        accounts: dict[str, bool] = {}
        for domain in domains:
            try:
                stats = await self._serve_instance(domain, accounts)
            except RecordingStorageError as exc:
                self.failures[domain] = str(exc)
                log.error("sharer_instance_failed", instance=domain, error=str(exc), error_code=exc.code,
                          permanent=isinstance(exc, PermanentError), code=Code.SHARER_ERROR)
                continue
            except Exception as exc:  # a bug for one instance must not starve the others
                self.failures[domain] = f"unexpected error {type(exc).__name__} (details in the log)"
                log.error("sharer_instance_failed", instance=domain, error=repr(exc), error_code="unexpected",
                          exc_info=exc, code=Code.SHARER_ERROR)
                continue
            results[domain] = stats
        if self.failures and not results:
            return results, "failure"
        if self.failures or any(s.failed for s in results.values()):
            return results, "partial"
        return results, "success"

    async def _serve_instance(self, domain: str, accounts: dict[str, bool]) -> ShareStats:
        account = await self._instances.get(domain)
        if account.storage != "dracoon":
            return ShareStats()
        key = account.account_key
        if key in accounts:
            if not accounts[key]:
                raise PermanentError("its DRACOON account failed for another instance this pass",
                                     code="account_failed")
            return ShareStats()
        accounts[key] = False
        stats = ShareStats()
        try:
            client = await self._pool.client(account)
            keys = await self._pool.key_ring(account)
            await serve_missing_keys(client, keys, batch_size=self._cfg.batch_size, stats=stats)
        finally:
            # Keys served before a failure were served all the same.
            if self._metrics is not None:
                self._metrics.sharer_keys_served(stats.served)
        accounts[key] = True
        log.info("sharer_instance_done", instance=domain, served=stats.served, failed=stats.failed,
                 conflicts=stats.conflicts, pages=stats.pages, code=Code.SHARER_STATUS)
        return stats

    def _report(self, outcome: SharerOutcome) -> None:
        if self._metrics is not None:
            self._metrics.sharer_pass(outcome)
        if self._health is not None:
            self._health.sharer_pass(outcome == "success")

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``: first pass soon after start, then once per interval (+ jitter).

        Passes are scheduled on a fixed grid (start + n * interval), so a slow pass does not
        push every later one back; slots a pass overran are skipped, not caught up. Jitter
        spreads replicas that started together. ``stop`` also cancels a running pass: serving
        is idempotent, so the next process simply continues.
        """
        loop = asyncio.get_running_loop()
        cfg = self._cfg
        first = cfg.first_delay + random.uniform(0, min(cfg.jitter, cfg.first_delay))
        grid = loop.time() + first
        slot = 0
        delay = first
        while not await _wait(stop, delay):
            await self._guarded_pass(stop)
            if stop.is_set():
                return
            now = loop.time()
            slot = _next_slot(grid, slot, now, cfg.interval)
            delay = max(0.0, grid + slot * cfg.interval + random.uniform(0, cfg.jitter) - now)

    async def _guarded_pass(self, stop: asyncio.Event) -> None:
        """One pass that never raises; cancelled as soon as ``stop`` is set."""
        task = asyncio.create_task(self.run_once(), name="sharer-pass")
        stopper = asyncio.create_task(stop.wait(), name="sharer-stop")
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()  # no-op once done
            stopper.cancel()
            await asyncio.gather(task, stopper, return_exceptions=True)
        if task.cancelled():
            log.info("sharer_pass_cancelled", code=Code.SHARER_STATUS)
        elif (exc := task.exception()) is not None:
            log.error("sharer_pass_failed", exc_info=exc, code=Code.SHARER_ERROR)


def _next_slot(grid: float, slot: int, now: float, interval: float) -> int:
    """The next slot on the grid that has not started yet (missed slots are skipped)."""
    return max(slot + 1, math.ceil((now - grid) / interval))


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``; True if it is set."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
