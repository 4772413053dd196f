"""The content digest runs beside the chunk's encryption, not after it, and below the loop.

``_HashBehind.start`` must hand the chunk to a thread before it returns: the transfer encrypts
the chunk next, synchronously, and a hash first handed over at the event loop's next turn began
only after that, so the next chunk waited for it (make bench, integrity_overhead). The threads
(``hash_threads``) run below the event loop's priority, which serves every job's traffic.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading

import pytest

from recording_storage.integrity import ContentDigest
from recording_storage.transfer import hash_threads
from recording_storage.transfer.streaming import HASH_NICE_INCREMENT, _HashBehind


class _WatchedDigest(ContentDigest):
    def __init__(self) -> None:
        super().__init__()
        self.began = threading.Event()
        self.nice: list[int] = []  # the hashing thread's nice value at each update

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.began.set()
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        super().update(data)


async def test_a_chunk_is_being_hashed_when_start_returns() -> None:
    digest, recycled = _WatchedDigest(), list[bytes]()
    with hash_threads(1) as threads:
        hasher = _HashBehind(digest, lambda chunk: recycled.append(bytes(chunk)), threads)
        chunk = memoryview(bytearray(b"recording" * 1000))
        await hasher.start(chunk)
        # No await from here on: the event loop does not turn, as while the transfer encrypts.
        assert digest.began.wait(timeout=5), "the hash had not begun before the loop turned"
        await hasher.settle()
    assert recycled == [b"recording" * 1000]
    assert digest.finish().sha256 == hashlib.sha256(b"recording" * 1000).hexdigest()


@pytest.mark.skipif(sys.platform != "linux", reason="threads have priorities of their own on Linux")
async def test_hashing_runs_below_the_event_loops_priority() -> None:
    """The loop serves every job's traffic and the health endpoints; the bulk hash yields to it."""
    digest = _WatchedDigest()
    with hash_threads(2) as threads:
        hasher = _HashBehind(digest, lambda chunk: None, threads)
        for piece in (b"a" * 10, b"b" * 10, b"c" * 10):
            await hasher.start(memoryview(bytearray(piece)))
        await hasher.settle()
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert digest.nice == [min(loop_nice + HASH_NICE_INCREMENT, 19)] * 3


async def test_hashing_works_where_priorities_cannot_be_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox that forbids setpriority leaves the threads as they are; the digest is still made."""
    def forbidden(*args: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", forbidden)
    digest = _WatchedDigest()
    with hash_threads(1) as threads:
        hasher = _HashBehind(digest, lambda chunk: None, threads)
        await hasher.start(memoryview(bytearray(b"recording")))
        await hasher.settle()
    assert digest.finish().sha256 == hashlib.sha256(b"recording").hexdigest()
