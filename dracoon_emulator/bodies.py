"""Upload bodies received piece by piece and hashed on a worker thread while they arrive.

The emulator shares the machine with the client under test. Hashing a 32 MiB chunk or a 5 MiB
part on the event loop (MD5 for the answer, SHA-256 for discarded content) made the emulator's
one core the bottleneck of every upload benchmark: the figures measured the emulator, not the
client. ``hashlib`` releases the GIL on large buffers, so one thread per large body hashes in
parallel with the loop receiving the next pieces and serving other requests; the answer leaves
as soon as the last piece is hashed, with no 32 MiB join in between when content is discarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["Received", "digest", "one_piece", "receive"]

# Below this, a thread hop costs more than hashing inline on the loop.
_THREADED_FROM = 1 << 20


@dataclass(frozen=True)
class Received:
    data: bytes  # empty unless kept
    size: int
    md5: str | None  # None when not asked for


async def one_piece(data: bytes) -> AsyncIterator[bytes]:
    """A body that is already in memory (a multipart part), for ``digest``."""
    yield data


def _feed(pieces: queue.SimpleQueue[bytes | None], hashers: Sequence[Any]) -> None:
    while (piece := pieces.get()) is not None:
        for hasher in hashers:
            hasher.update(piece)


async def receive(
    request: web.Request, *, keep: bool, also: Sequence[Any] = (), md5: bool = True
) -> Received:
    """Read the whole body; see ``digest``."""
    pieces = request.content.iter_any()
    return await digest(pieces, request.content_length or 0, keep=keep, also=also, md5=md5)


async def digest(
    pieces: AsyncIterable[bytes],
    size_hint: int,
    *,
    keep: bool,
    also: Sequence[Any] = (),
    md5: bool = True,
) -> Received:
    """Consume ``pieces``; their MD5 (unless ``md5`` is false), and every hasher in ``also``
    updated with them, in order.

    ``also`` is updated even if the caller later rejects the body: pass a ``copy()`` of a
    running digest and adopt it only on success.
    """
    body_md5 = hashlib.md5() if md5 else None
    hashers = [body_md5, *also] if body_md5 is not None else list(also)

    def hash_inline(piece: bytes) -> None:
        for hasher in hashers:
            hasher.update(piece)

    handoff: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threaded = bool(hashers) and size_hint >= _THREADED_FROM
    worker = asyncio.ensure_future(asyncio.to_thread(_feed, handoff, hashers)) if threaded else None
    consume = handoff.put if threaded else hash_inline
    kept: list[bytes] = []
    size = 0
    try:
        async for piece in pieces:
            consume(piece)
            size += len(piece)
            if keep:
                kept.append(piece)
    finally:
        handoff.put(None)  # the thread always ends, also when the client went away mid-body
    if worker is not None:
        await worker
    return Received(b"".join(kept), size, body_md5.hexdigest() if body_md5 is not None else None)
