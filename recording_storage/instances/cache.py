"""A TTL cache in front of any InstanceProvider, with single-flight look-ups.

The Go original held one global mutex across the remote fetch, so one slow configurator call
stalled every worker (its bug 27). Here concurrent look-ups of one domain share one in-flight
task, look-ups of other domains proceed independently, and no lock is held across I/O.
Failures are not cached: the next look-up asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from .model import DracoonAccount, InstanceProvider, normalise_domain

_LIST_KEY = "\x00list"  # cannot collide with a domain


class CachingInstanceProvider:
    """InstanceProvider that remembers answers of ``inner`` for ``ttl`` seconds.

    ``clock`` is monotonic seconds; tests pass a fake. ``ttl <= 0`` disables caching but keeps
    the single-flight behaviour.
    """

    def __init__(
        self, inner: InstanceProvider, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._accounts: dict[str, tuple[float, DracoonAccount]] = {}
        self._domains: tuple[float, list[str]] | None = None
        self._inflight: dict[str, asyncio.Task[Any]] = {}

    @property
    def inner(self) -> InstanceProvider:
        """The wrapped provider."""
        return self._inner

    async def get(self, domain: str) -> DracoonAccount:
        """The cached account, or one shared fetch from ``inner`` when missing or expired."""
        key = normalise_domain(domain)
        hit = self._accounts.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        return cast(DracoonAccount, await self._single_flight(key, lambda: self._fetch_account(key)))

    async def list_domains(self) -> list[str]:
        """The cached domain list (a copy), or one shared fetch from ``inner``."""
        hit = self._domains
        if hit is not None and hit[0] > self._clock():
            return list(hit[1])
        return list(cast(list[str], await self._single_flight(_LIST_KEY, self._fetch_domains)))

    def invalidate(self, domain: str | None = None) -> None:
        """Forget one domain (e.g. after DRACOON rejected its password) or everything."""
        if domain is None:
            self._accounts.clear()
            self._domains = None
        else:
            self._accounts.pop(normalise_domain(domain), None)

    async def aclose(self) -> None:
        """Cancel look-ups in flight, then close ``inner``."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        await self._inner.aclose()

    async def _fetch_account(self, key: str) -> DracoonAccount:
        account = await self._inner.get(key)
        if self._ttl > 0:
            self._accounts[key] = (self._clock() + self._ttl, account)
        return account

    async def _fetch_domains(self) -> list[str]:
        domains = list(await self._inner.list_domains())
        if self._ttl > 0:
            self._domains = (self._clock() + self._ttl, domains)
        return domains

    async def _single_flight(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(key, fetch))
            task.add_done_callback(_mark_retrieved)
            self._inflight[key] = task
        # shield: one caller's cancellation (its job timed out) must not fail the others.
        return await asyncio.shield(task)

    async def _run(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fetch()
        finally:
            # Leaves before any waiter resumes, so a failed look-up is never handed out again.
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]


def _mark_retrieved(task: asyncio.Task[Any]) -> None:
    # If every waiter was cancelled, nobody reads the error; asyncio would log it at GC.
    if not task.cancelled():
        task.exception()
