"""Long-lived DRACOON clients and unlocked key pairs, one per service account.

Logging in, fetching the key pair and unlocking it (PBKDF2 with up to 1.3 M iterations) are the
expensive parts of talking to DRACOON. The original did all three for every message; here each
account gets one client (one HTTP session, one token) and one unlocked key pair for the life of
the process, shared by workers and the sharer.

An account may hold two key pairs (the legacy "A" and RSA-4096, during DRACOON's migration).
Uploads wrap new file keys for the stronger one, but files stored before the migration carry
our file key under "A", and the sharer can only hand those on with the "A" private key: the pool
unlocks every pair the account has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TypeVar

import structlog

from .config import DracoonConfig
from .crypto import KeyPairVersion, UnlockedKeyPair, UserKeyPair, unlock_key_pair
from .dracoon import DracoonClient, DracoonMetrics
from .errors import CryptoError, PermanentError
from .instances import DracoonAccount
from .logs import Code

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

__all__ = ["DracoonPool", "preferred_key_pair"]

def preferred_key_pair(pairs: list[UserKeyPair]) -> UserKeyPair:
    """Use the strongest key pair the account has (RSA-4096 over the legacy "A")."""
    if not pairs:
        raise PermanentError("the DRACOON account has no key pair", code="no_key_pair")
    for pair in pairs:
        if pair.public_key_container.version == KeyPairVersion.RSA_4096:
            return pair
    return pairs[0]


class DracoonPool:
    """Hands out one entered ``DracoonClient`` per account and caches its unlocked key pair."""

    def __init__(
        self,
        settings: DracoonConfig,
        *,
        metrics: DracoonMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._stack = AsyncExitStack()
        self._clients: dict[str, DracoonClient] = {}
        self._keys: dict[str, UnlockedKeyPair] = {}
        self._older: dict[str, list[UserKeyPair]] = {}  # still locked; see key_ring
        self._rings: dict[str, tuple[UnlockedKeyPair, ...]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> DracoonPool:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._clients.clear()
        for cache in (self._keys, self._older, self._rings):
            cache.clear()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _once(self, cache: dict[str, _T], key: str, make: Callable[[], Awaitable[_T]]) -> _T:
        """``cache[key]``, made at most once however many workers ask at the same moment."""
        found = cache.get(key)
        if found is not None:
            return found
        async with self._locks.setdefault(f"{id(cache)}:{key}", asyncio.Lock()):
            found = cache.get(key)
            if found is None:
                found = cache[key] = await make()
            return found

    async def client(self, account: DracoonAccount) -> DracoonClient:
        """The account's client, created and entered on first use."""

        async def make() -> DracoonClient:
            client = DracoonClient(account, self._settings, metrics=self._metrics)
            return await self._stack.enter_async_context(client)

        return await self._once(self._clients, account.account_key, make)

    async def key_pair(self, account: DracoonAccount) -> UnlockedKeyPair:
        """The key pair new file keys are wrapped for: the strongest one the account has,
        unlocked once and off the event loop (the other pairs wait for ``key_ring``)."""

        async def make() -> UnlockedKeyPair:
            pairs = await (await self.client(account)).get_key_pairs()
            first = preferred_key_pair(pairs)
            password = account.encryption_password.get_secret_value()
            unlocked = await asyncio.to_thread(unlock_key_pair, first, password)
            self._older[account.account_key] = [p for p in pairs if p is not first]
            return unlocked

        return await self._once(self._keys, account.account_key, make)

    async def key_ring(self, account: DracoonAccount) -> tuple[UnlockedKeyPair, ...]:
        """``key_pair`` first, then every other pair of the account that unlocks.

        Only the sharer needs the others (files from before a migration), so uploads never wait
        for their PBKDF2. One that does not unlock, e.g. left with an older encryption password,
        is logged once and left out: only the old files whose keys it holds stay unserved.
        """

        async def make() -> tuple[UnlockedKeyPair, ...]:
            ring = [await self.key_pair(account)]
            password = account.encryption_password.get_secret_value()
            for pair in self._older.get(account.account_key, []):
                try:
                    ring.append(await asyncio.to_thread(unlock_key_pair, pair, password))
                except CryptoError as exc:
                    log.warning("key_pair_unlock_failed", instance=account.domain,
                                version=pair.public_key_container.version.value,
                                error=str(exc), code=Code.SHARER_ERROR)
            return tuple(ring)

        return await self._once(self._rings, account.account_key, make)

    def forget(self, account: DracoonAccount) -> None:
        """Drop the cached key pairs (e.g. after the account's key pair changed on the server)."""
        for cache in (self._keys, self._older, self._rings):
            cache.pop(account.account_key, None)
