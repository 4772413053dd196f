"""The content digest runs beside the chunk's encryption, not after it.

``_HashBehind.start`` must hand the chunk to a thread before it returns: the transfer encrypts
the chunk next, synchronously, and a hash first handed over at the event loop's next turn began
only after that, so the next chunk waited for it (make bench, integrity_overhead).
"""

from __future__ import annotations

import hashlib
import threading

from recording_storage.integrity import ContentDigest
from recording_storage.transfer.streaming import _HashBehind


class _WatchedDigest(ContentDigest):
    def __init__(self) -> None:
        super().__init__()
        self.began = threading.Event()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.began.set()
        super().update(data)


async def test_a_chunk_is_being_hashed_when_start_returns() -> None:
    digest, recycled = _WatchedDigest(), list[bytes]()
    hasher = _HashBehind(digest, lambda chunk: recycled.append(bytes(chunk)))
    chunk = memoryview(bytearray(b"recording" * 1000))
    await hasher.start(chunk)
    # No await from here on: the event loop does not turn, as while the transfer encrypts.
    assert digest.began.wait(timeout=5), "the hash had not begun before the loop turned"
    await hasher.settle()
    assert recycled == [b"recording" * 1000]
    assert digest.finish().sha256 == hashlib.sha256(b"recording" * 1000).hexdigest()
