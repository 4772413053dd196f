"""Serving missing file keys: a DRACOON operation the pipeline (after each upload) and the
periodic sharer (for users added later) both run.

A file in an encrypted room is readable only by users holding a copy of its file key wrapped
with their public key. The uploader holds one; everybody else gets theirs when some client
serves DRACOON's ``missingFileKeys`` list. We unwrap each file key once with our private key (the
one of the copy's version) and re-wrap it per user and key-pair version. Serving is idempotent
(DRACOON ignores keys that are already set), so any number of replicas may serve at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from .crypto import (
    CryptoError,
    EncryptedFileKey,
    PlainFileKey,
    PublicKeyContainer,
    UnlockedKeyPair,
    encrypt_file_key,
)
from .dracoon import AuthenticationFailed, DracoonClient, FileKeyItem, MissingKeys, NameConflict
from .errors import PermanentError
from .logs import Code

__all__ = ["ShareStats", "serve_missing_keys"]

log = structlog.get_logger(__name__)

MAX_PAGES = 10_000  # a runaway guard, far above any real backlog (100 pairs per page)
PAGE_LIMIT = 100  # DRACOON's hard cap for missingFileKeys
# Failures of POST /nodes/files/keys that say nothing about the individual items: splitting
# the batch cannot help, so the instance's pass ends instead.
_SYSTEMIC_CODES = frozenset({"authentication_failed", "no_key_pair"})

Pair = tuple[int, int]  # (user id, file id)


@dataclass
class ShareStats:
    """What one serving run did.

    ``served`` counts file keys set (one per user and key-pair version); ``failed`` counts
    (user, file) pairs that stayed missing and are retried next pass; ``conflicts`` counts pairs
    whose POST another writer answered first (409), which is not a failure. ``files_unusable``
    holds files whose key we could not unwrap, ``files_without_key`` files listed without our copy.
    """

    served: int = 0
    failed: int = 0
    conflicts: int = 0
    pages: int = 0
    files_unusable: set[int] = field(default_factory=set, repr=False)
    files_without_key: set[int] = field(default_factory=set, repr=False)


@dataclass
class _Wrapped:
    """One page turned into POST items, off the event loop."""

    pairs: dict[Pair, list[FileKeyItem]] = field(default_factory=dict)
    failed: list[Pair] = field(default_factory=list)


def _wrap_page(
    page: MissingKeys,
    fresh: Sequence[Pair],
    keys: Sequence[UnlockedKeyPair],
    plain_keys: dict[int, PlainFileKey | None],
    stats: ShareStats,
) -> _Wrapped:
    """Unwrap each file key once (cached across pages) and wrap it per recipient key version.

    A user may be listed once per key-pair version (during a key migration); each listed
    public key gets its own copy, or the pair stays missing for the other version.
    """
    publics: dict[int, list[PublicKeyContainer]] = {}
    for user in page.users:
        publics.setdefault(user.id, []).append(user.public_key_container)
    ours: dict[int, EncryptedFileKey] = {f.id: f.file_key_container for f in page.files}
    out = _Wrapped()
    for user_id, file_id in fresh:
        if file_id not in plain_keys:
            plain_keys[file_id] = _unwrap(keys, ours.get(file_id), file_id, stats)
        plain = plain_keys[file_id]
        targets = publics.get(user_id, [])
        if plain is None or not targets:
            out.failed.append((user_id, file_id))
            continue
        try:
            made = [FileKeyItem(file_id=file_id, user_id=user_id, file_key=encrypt_file_key(plain, pub))
                    for pub in targets]
        except CryptoError as exc:
            log.warning("file_key_wrap_failed", file_id=file_id, user_id=user_id, error=str(exc),
                        code=Code.SHARER_ERROR)
            out.failed.append((user_id, file_id))
            continue
        out.pairs[(user_id, file_id)] = made
    return out


def _unwrap(
    keys: Sequence[UnlockedKeyPair], enc: EncryptedFileKey | None, file_id: int, stats: ShareStats
) -> PlainFileKey | None:
    """Our copy of a file key in the clear, or None when unusable (logged once per run).

    The copy is unwrapped with the pair of its own version: a file stored before the account
    moved from "A" to RSA-4096 still has only an "A" copy.
    """
    if enc is None:
        stats.files_without_key.add(file_id)
        return None
    # Without a pair of that version, the strongest one refuses the copy with the reason.
    fitting = next((k for k in keys if k.version is enc.version.key_pair_version), keys[0])
    try:
        return fitting.decrypt_file_key(enc)
    except CryptoError as exc:
        log.debug("file_key_unusable", file_id=file_id, error=str(exc))
        stats.files_unusable.add(file_id)
        return None


async def serve_missing_keys(
    client: DracoonClient,
    keys: Sequence[UnlockedKeyPair],
    *,
    file_id: int | None = None,
    room_id: int | None = None,
    batch_size: int = 100,
    stats: ShareStats | None = None,
) -> ShareStats:
    """Serve every missing file key visible to us (optionally for one file or room).

    Served pairs drop out of the list, so the offset only moves past pairs already tried in
    this run (they are still listed, hence unservable now); every page either serves a new
    pair or moves the offset, so a bad key never loops forever. Reading a page fails the run
    (raised); a rejected POST only fails its own pairs (see ``_post``). Pass ``stats`` to keep
    the counts of a run that raised.
    """
    stats = stats if stats is not None else ShareStats()
    attempted: set[Pair] = set()
    plain_keys: dict[int, PlainFileKey | None] = {}
    offset = 0
    while stats.pages < MAX_PAGES:
        page = await client.missing_file_keys(
            file_id=file_id, room_id=room_id, offset=offset, limit=PAGE_LIMIT
        )
        stats.pages += 1
        if not page.items:
            break
        listed = [(it.user_id, it.file_id) for it in page.items]
        fresh = list(dict.fromkeys(p for p in listed if p not in attempted))
        if not fresh:
            offset += len(listed)
            continue
        attempted.update(fresh)
        wrapped = await asyncio.to_thread(_wrap_page, page, fresh, keys, plain_keys, stats)
        stats.failed += len(wrapped.failed)
        await _post_all(client, wrapped, batch_size, stats)
        offset += len(listed) - len(fresh)
    else:
        log.error("sharer_page_limit_reached", pages=stats.pages, code=Code.SHARER_ERROR)
    # One line per run, not per file: the same broken keys come back every pass.
    if stats.files_unusable:
        log.warning("file_key_unwrap_failed", files=len(stats.files_unusable),
                    file_ids=sorted(stats.files_unusable)[:20], code=Code.SHARER_ERROR)
    if stats.files_without_key:
        log.warning("file_key_missing_in_listing", files=len(stats.files_without_key),
                    file_ids=sorted(stats.files_without_key)[:20], code=Code.SHARER_ERROR)
    return stats


async def _post_all(client: DracoonClient, wrapped: _Wrapped, batch_size: int, stats: ShareStats) -> None:
    """POST whole pairs (every version of one user's copy together) in batches of ~batch_size."""
    batch: list[list[FileKeyItem]] = []
    size = 0
    for made in wrapped.pairs.values():
        if batch and size + len(made) > batch_size:
            await _post(client, batch, stats)
            batch, size = [], 0
        batch.append(made)
        size += len(made)
    if batch:
        await _post(client, batch, stats)


async def _post(client: DracoonClient, groups: list[list[FileKeyItem]], stats: ShareStats) -> None:
    """POST one batch; a rejected batch is halved to isolate the pair DRACOON refuses.

    If both halves are rejected as well, the rejection is about the batch rather than one
    item, and the whole batch is given up for this pass: at most 2*log2(n) extra requests, and
    3 for a systematic failure. Transient errors (after the client's own retries) and
    rejections that no item causes (login, no key pair) end the run instead.
    """
    error = await _try_post(client, groups, stats)
    while error is not None and len(groups) > 1:
        half = len(groups) // 2
        left, right = groups[:half], groups[half:]
        left_error = await _try_post(client, left, stats)
        right_error = await _try_post(client, right, stats)
        if left_error is not None and right_error is not None:
            stats.failed += len(groups)
            log.warning("file_keys_batch_rejected", pairs=len(groups), error=str(error),
                        code=Code.SHARER_ERROR)
            return
        groups, error = (left, left_error) if left_error is not None else (right, right_error)
    if error is not None:
        item = groups[0][0]
        stats.failed += 1
        log.warning("file_key_rejected", file_id=item.file_id, user_id=item.user_id, error=str(error),
                    code=Code.SHARER_ERROR)


async def _try_post(
    client: DracoonClient, groups: list[list[FileKeyItem]], stats: ShareStats
) -> PermanentError | None:
    items = [item for group in groups for item in group]
    try:
        await client.set_file_keys(items)
    except NameConflict:
        # Another replica set some of these keys at the same moment: not an error. Whatever is
        # still missing is listed again and served next pass.
        stats.conflicts += len(groups)
        log.info("file_keys_conflict", pairs=len(groups), code=Code.SHARER_STATUS)
        return None
    except PermanentError as exc:
        if isinstance(exc, AuthenticationFailed) or exc.code in _SYSTEMIC_CODES:
            raise
        return exc
    stats.served += len(items)
    return None
