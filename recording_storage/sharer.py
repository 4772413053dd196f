"""Serving missing file keys: after each upload, and periodically for users added later.

A file in an encrypted room is readable only by users holding a copy of its file key wrapped
with their public key. The uploader holds one; everybody else gets theirs when some client
serves DRACOON's ``missingFileKeys`` list. We unwrap each file key once with our private key and
re-wrap it per user and key-pair version. Serving is idempotent (DRACOON ignores keys that are
already set), so any number of replicas may run the sharer at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from .config import SharerConfig
from .crypto import CryptoError, PlainFileKey, UnlockedKeyPair, encrypt_file_key
from .dracoon import DracoonClient, FileKeyItem
from .errors import PermanentError, RecordingStorageError
from .instances import InstanceProvider
from .logs import Code
from .pool import DracoonPool

__all__ = ["ShareStats", "Sharer", "serve_missing_keys"]

log = structlog.get_logger(__name__)

MAX_PAGES = 10_000  # a runaway guard, far above any real backlog (100 pairs per page)


@dataclass
class ShareStats:
    """What one serving run did; ``failed`` pairs stay missing and are retried next pass."""

    served: int = 0
    failed: int = 0
    pages: int = 0


async def serve_missing_keys(
    client: DracoonClient,
    keys: UnlockedKeyPair,
    *,
    file_id: int | None = None,
    room_id: int | None = None,
    batch_size: int = 100,
) -> ShareStats:
    """Serve every missing file key visible to us (optionally for one file or room).

    Pages are re-read from offset 0 because served pairs drop out of the list; pairs we could
    not serve are skipped by advancing the offset, so a bad key never loops forever.
    """
    stats = ShareStats()
    attempted: set[tuple[int, int]] = set()
    plain_keys: dict[int, PlainFileKey | None] = {}
    offset = 0
    while stats.pages < MAX_PAGES:
        page = await client.missing_file_keys(file_id=file_id, room_id=room_id, offset=offset, limit=100)
        stats.pages += 1
        if not page.items:
            break
        fresh = [it for it in page.items if (it.user_id, it.file_id) not in attempted]
        if not fresh:
            offset += len(page.items)
            continue
        users = {u.id: u.public_key_container for u in page.users}
        files = {f.id: f.file_key_container for f in page.files}
        batch: list[FileKeyItem] = []
        for item in fresh:
            attempted.add((item.user_id, item.file_id))
            if item.file_id not in plain_keys:
                enc = files.get(item.file_id)
                plain_keys[item.file_id] = _unwrap(keys, enc, item.file_id) if enc is not None else None
            plain = plain_keys[item.file_id]
            public = users.get(item.user_id)
            if plain is None or public is None:
                stats.failed += 1
                continue
            try:
                batch.append(FileKeyItem(file_id=item.file_id, user_id=item.user_id,
                                         file_key=encrypt_file_key(plain, public)))
            except CryptoError as exc:
                stats.failed += 1
                log.warning("file_key_wrap_failed", file_id=item.file_id, user_id=item.user_id,
                            error=str(exc), code=Code.SHARER_ERROR)
        for start in range(0, len(batch), batch_size):
            chunk: Sequence[FileKeyItem] = batch[start:start + batch_size]
            await client.set_file_keys(chunk)
            stats.served += len(chunk)
        if not batch:
            offset += len(page.items)
    return stats


def _unwrap(keys: UnlockedKeyPair, enc: object, file_id: int) -> PlainFileKey | None:
    from .crypto import EncryptedFileKey

    assert isinstance(enc, EncryptedFileKey)
    try:
        return keys.decrypt_file_key(enc)
    except CryptoError as exc:
        log.warning("file_key_unwrap_failed", file_id=file_id, error=str(exc), code=Code.SHARER_ERROR)
        return None


class Sharer:
    """Periodic pass over every configured instance; one failing instance never stops the loop."""

    def __init__(
        self,
        instances: InstanceProvider,
        pool: DracoonPool,
        cfg: SharerConfig,
        *,
        on_pass: object | None = None,
    ) -> None:
        self._instances = instances
        self._pool = pool
        self._cfg = cfg
        self._on_pass = on_pass

    async def run_once(self, *, only: str | None = None) -> dict[str, ShareStats]:
        """One pass; returns per-instance stats (instances that failed are logged and absent)."""
        results: dict[str, ShareStats] = {}
        domains = [only] if only else await self._instances.list_domains()
        seen_accounts: set[str] = set()
        for domain in domains:
            try:
                account = await self._instances.get(domain)
                if account.storage != "dracoon" or account.account_key in seen_accounts:
                    continue
                seen_accounts.add(account.account_key)
                client = await self._pool.client(account)
                keys = await self._pool.key_pair(account)
                stats = await serve_missing_keys(client, keys, batch_size=self._cfg.batch_size)
            except (RecordingStorageError, CryptoError) as exc:
                log.error("sharer_instance_failed", instance=domain, error=str(exc),
                          permanent=isinstance(exc, PermanentError), code=Code.SHARER_ERROR)
                continue
            results[domain] = stats
            log.info("sharer_instance_done", instance=domain, served=stats.served, failed=stats.failed,
                     pages=stats.pages, code=Code.SHARER_STATUS)
        return results

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop``: first pass soon after start, then every interval (+ jitter)."""
        delay = self._cfg.first_delay
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            started = time.monotonic()
            ok = True
            try:
                await self.run_once()
            except Exception:
                ok = False
                log.exception("sharer_pass_failed", code=Code.SHARER_ERROR)
            callback = self._on_pass
            if callable(callback):
                callback(ok)
            elapsed = time.monotonic() - started
            delay = max(1.0, self._cfg.interval - elapsed + random.uniform(0, self._cfg.jitter))
