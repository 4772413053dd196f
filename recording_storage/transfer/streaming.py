"""One object into its planned uploads: read once, encrypt once, fan out, prove, complete.

The content is proven against the store's own digest (``integrity``) before any upload
completes, so a file whose bytes differ from the source never lands. A broken upload channel
restarts the file (proxy uploads cannot be resumed); a completion cut off for one target lets
the others finish and serves their keys before the failure is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import structlog

from ..crypto import EncryptedFileKey, FileEncryptor, UnlockedKeyPair, encrypt_file_key, generate_file_key
from ..dracoon import DracoonClient, NameConflict, Node, Upload
from ..errors import PermanentError, RecordingStorageError, TransientError
from ..integrity import ContentDigest, IntegrityMismatch, Proof, candidate_proofs
from ..keyshare import serve_missing_keys
from ..logs import Code
from ..s3 import ObjectInfo, S3Source, SourceChanged
from ..targets import notes_with_sha256, parse_content_sha256
from .placement import PlannedUpload, find_file, is_ours
from .report import TransferReport

__all__ = ["STREAM_ATTEMPTS", "StreamRequest", "Streamer", "TransferMetrics", "Verification",
           "choose_verification", "fan_out", "serve_file_keys"]

log = structlog.get_logger(__package__)  # one logger for the whole pipeline, as before the split
T = TypeVar("T")
STREAM_ATTEMPTS = 3  # a broken proxy upload cannot be resumed (append semantics): restart the file
# A one-chunk object up to this size is hashed on the event loop: a thread hand-off costs more.
INLINE_HASH_LIMIT = 256 * 1024


class TransferMetrics(Protocol):
    """What the pipeline reports (``metrics.Metrics`` fits)."""

    def add_bytes(self, count: int) -> None: ...
    def integrity_check(self, proof: str, verified: bool) -> None: ...


@dataclass(frozen=True)
class StreamRequest:
    """One object to stream: where it goes, how it is proven, where the outcome is reported."""

    info: ObjectInfo
    client: DracoonClient
    keys: UnlockedKeyPair
    plans: list[PlannedUpload]
    notes: str  # the files' notes (marker included) as they are opened
    marker: str
    report: TransferReport
    check: Verification


@dataclass(frozen=True)
class Verification:
    """How one object's content is proven: ``proof`` None means ``integrity=none``."""

    proof: Proof | None
    part_sizes: tuple[int, ...] = ()
    hash: bool = True  # False with s3.verify off: no digest at all

    @property
    def name(self) -> str:
        return self.proof.name if self.proof is not None else "none"


# How much lower than the event loop's the hashing thread's scheduling priority is (a nice
# increment, Linux only; the kernel caps the result at 19, the lowest). The loop serves every
# job's network traffic, lease heartbeats and the health endpoints; hashing is bulk work that
# can wait a moment, and a stream waits for at most one chunk's hash. On busy cores a hash at
# the loop's priority takes its full share from whatever else is runnable. make bench,
# integrity_overhead, four runs each, interleaved: +0 1.07-1.17 (mean 1.12), +10 1.06-1.15
# (1.10), +19 1.00-1.08 (1.04); the CPU spent is the same. Nice values weigh threads within
# their cgroup (a container, a systemd service with CPU accounting): on a host where the
# service shares a cgroup with busy processes, hashing waits for their idle time.
HASH_NICE_INCREMENT: Final = 19


def hash_threads(count: int) -> ThreadPoolExecutor:
    """The threads every content digest runs in, ``count`` of them (one per worker: a stream
    hashes one chunk at a time), each below the event loop's priority. The caller owns them
    (``with``): ``service.open_runtime`` makes them once per process. Threads of their own, not
    asyncio's default pool: a thread's priority once lowered cannot be raised back."""
    return ThreadPoolExecutor(count, thread_name_prefix="content-digest", initializer=_lower_priority)


def _lower_priority() -> None:
    """Runs in the hash thread as it starts: raise that thread's nice value (Linux schedules
    threads on their own; elsewhere the call would reach the whole process, so nothing happens).
    Best effort: a sandbox that forbids it leaves the thread at the loop's priority."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + HASH_NICE_INCREMENT)


class _HashBehind:
    """The content digest, computed in a hash thread beside the chunk's encryption and upload.

    A chunk's hash is awaited before the next chunk's starts (the digest needs the bytes in
    order), and only then is the chunk handed back to the S3 source for reuse: until then the
    thread reads it. Without a digest a chunk goes back as soon as it is encrypted.
    """

    def __init__(
        self, digest: ContentDigest | None, recycle: Callable[[memoryview], None], threads: Executor
    ) -> None:
        self.digest = digest
        self._recycle = recycle
        self._threads = threads  # hash_threads
        self._running: asyncio.Future[None] | None = None
        self._chunk: memoryview | None = None

    async def start(self, chunk: memoryview) -> None:
        """Wait for the previous chunk's hash, then hash ``chunk`` in the background."""
        await self.settle()
        if self.digest is not None:
            # Handed to a thread here and now. asyncio.to_thread would only hand it over at the
            # event loop's next turn, after the chunk's encryption and the start of its upload:
            # the hash began that much later, and the next chunk waited for it longer (on the
            # bench's busy cores, 110-165 ms of a 0.8 s transfer of 256 MiB; 30-135 ms when
            # handed over at once).
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(self._threads, self.digest.update, chunk)
            self._chunk = chunk

    def encrypted(self, chunk: memoryview) -> None:
        """``chunk`` is encrypted: with no hash reading it, it can be reused now."""
        if self.digest is None:
            self._recycle(chunk)

    async def settle(self) -> None:
        """Wait for the hash in flight (if any) and hand its chunk back."""
        running, chunk, self._running, self._chunk = self._running, self._chunk, None, None
        if running is not None:
            await running
        if chunk is not None:
            self._recycle(chunk)

    def abandon(self) -> None:
        """The stream failed: the thread finishes its chunk, nobody waits for it or reuses it."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
        self._running = self._chunk = None


async def choose_verification(s3: S3Source, info: ObjectInfo) -> Verification:
    """The cheapest proof the store offers for ``info``, or none if ``s3.verify`` allows it."""
    mode = s3.settings(info.bucket).verify
    if mode == "off" or info.digests is None:
        return Verification(None, hash=False)
    for proof in candidate_proofs(info.digests):
        if not proof.parts:
            return Verification(proof)
        sizes = await s3.part_sizes(info, proof.parts)
        if sizes is not None:
            return Verification(proof, sizes)
    if mode == "required":
        raise PermanentError(
            f"s3.verify is 'required' but the store states no verifiable digest for "
            f"{info.bucket}/{info.key} (no checksum, and the ETag is no MD5 or multipart MD5)",
            code="integrity_unverifiable",
        )
    return Verification(None)


async def fan_out(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_as_coro(a)) for a in awaitables]
    except BaseExceptionGroup as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw


async def serve_file_keys(
    client: DracoonClient, keys: UnlockedKeyPair, node: Node, *, batch_size: int
) -> None:
    """Serve the new file's missing keys; a failure is transient (the file itself is safe)."""
    try:
        await serve_missing_keys(client, (keys,), file_id=node.id, batch_size=batch_size)
    except RecordingStorageError as exc:
        # The file is safe; a redelivery finds it present and serves the keys again.
        raise TransientError(
            f"serving file keys for file {node.id} failed: {exc}", code="share_failed"
        ) from exc


def _check_read(got: int, size: int) -> None:
    """A source that ended early (or ran long) is read again, never uploaded as it came."""
    if got != size:
        raise TransientError(f"read {got} of {size} bytes of the source", code="short_read")


async def _cancel_all(uploads: Sequence[Upload]) -> None:
    """Cancel every open upload channel, even while the caller itself is being cancelled."""
    await asyncio.shield(asyncio.gather(*(u.cancel() for u in uploads), return_exceptions=True))


def _account(request: StreamRequest, sha256: str | None) -> None:
    """Report the object once its files are complete: a restarted stream proves it again."""
    report = request.report
    report.bytes_read += request.info.size
    report.integrity.append(request.check.name)
    if sha256 is not None:
        report.sha256.append(sha256)


class Streamer:
    """Streams objects into planned uploads; one instance serves every job of the process.

    ``metrics`` learns the bytes of each chunk once every target took it, and each proof's result.
    ``hash_threads`` (made by ``hash_threads``) run every content digest.
    """

    def __init__(
        self,
        s3: S3Source,
        *,
        hash_threads: Executor,
        classification: int,
        progress_interval: float,
        share_batch_size: int,
        metrics: TransferMetrics | None = None,
    ) -> None:
        self._s3 = s3
        self._hash_threads = hash_threads
        self._classification = classification  # dracoon.classification of every new file
        self._progress_interval = progress_interval  # workers.progress_interval
        self._share_batch_size = share_batch_size  # sharer.batch_size
        self._metrics = metrics

    async def stream(self, request: StreamRequest) -> list[Node]:
        """Upload ``info`` to every planned target, restarted on a broken upload; a changed source
        is looked at once more.

        SourceChanged is left to the redelivery (which pins the new version from a fresh HEAD),
        unless the key is gone by now: then SourceMissing lets the caller ask the targets, as
        for a source missing from the start.
        """
        info = request.info
        for attempt in range(1, STREAM_ATTEMPTS + 1):
            try:
                return await self._stream(request)
            except SourceChanged:
                await self._s3.head(info.bucket, info.key)  # raises SourceMissing if it is gone
                raise
            except TransientError as exc:
                if attempt == STREAM_ATTEMPTS or exc.code not in {"upload_interrupted", "network"}:
                    raise
                log.warning("upload_restarting", s3_key=info.key, attempt=attempt, error=str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _stream(self, request: StreamRequest) -> list[Node]:
        info, client, plans = request.info, request.client, request.plans
        notes, check = request.notes, request.check
        if check.hash and info.size <= self._s3.settings(info.bucket).chunk_size \
                and parse_content_sha256(notes) is None:
            return await self._stream_one_chunk(request)
        uploads: list[Upload] = []
        hasher = _HashBehind(ContentDigest(check.proof, check.part_sizes) if check.hash else None,
                             self._s3.recycle, self._hash_threads)
        sha256: str | None = None
        try:
            await self._open_uploads(client, info, plans, notes, uploads)
            encryptor = FileEncryptor(generate_file_key(), size=info.size)
            done_bytes = 0
            started = last_progress = time.monotonic()
            # Each chunk's ciphertext goes into this one buffer: every upload copies what it is
            # written before its write returns, and a fresh buffer per chunk cost a page fault
            # per 4 KiB on first touch.
            sealed = bytearray()
            # aclosing: a failed upload cancels the read-ahead GETs at once, not at garbage collection.
            async with contextlib.aclosing(self._s3.iter_chunks(info)) as chunks:
                async for chunk in chunks:
                    await hasher.start(chunk)
                    size = len(chunk)
                    if len(sealed) < size:
                        sealed = bytearray(size)
                    encryptor.update_into(chunk, sealed)
                    hasher.encrypted(chunk)
                    with memoryview(sealed)[:size] as ciphertext:
                        await fan_out([u.write(ciphertext) for u in uploads])
                    done_bytes += size
                    if self._metrics is not None:
                        self._metrics.add_bytes(size)
                    now = time.monotonic()
                    if now - last_progress >= self._progress_interval:
                        last_progress = now
                        rate = done_bytes / max(now - started, 1e-6) / 1e6
                        log.info(
                            "transfer_progress",
                            s3_key=info.key,
                            bytes_done=done_bytes,
                            bytes_total=info.size,
                            mb_per_s=round(rate, 2),
                            code=Code.TRANSFERER_STATUS,
                        )
            _check_read(done_bytes, info.size)
            await hasher.settle()
            sha256 = self._verify(info, check, hasher.digest)
            nodes = await self._seal_and_complete(request, uploads, encryptor)
        except BaseException:
            hasher.abandon()
            await _cancel_all(uploads)
            raise
        _account(request, sha256)
        if sha256 is not None and parse_content_sha256(notes) != sha256:
            await self._record_sha256(client, nodes, notes, sha256)
        return nodes

    async def _stream_one_chunk(self, request: StreamRequest) -> list[Node]:
        """``_stream`` for an object that fits in one read chunk: read and prove it first, then open.

        The whole content is in hand before any upload channel opens, so its SHA-256 goes into
        the notes the files are opened with, and no notes update follows the completion (one
        DRACOON request less per recording). Nothing overlaps here that one chunk could overlap
        anyway. A mismatch raises before any upload exists.
        """
        info, check = request.info, request.check
        digest = ContentDigest(check.proof, check.part_sizes)
        pieces: list[bytes] = []
        async with contextlib.aclosing(self._s3.iter_chunks(info)) as chunks:
            async for chunk in chunks:
                # Copied out of the reader's buffer, which goes back for reuse: the content
                # outlives this loop (upload opening).
                pieces.append(bytes(chunk))
                self._s3.recycle(chunk)
        content = b"".join(pieces)
        _check_read(len(content), info.size)
        if len(content) > INLINE_HASH_LIMIT:
            # Off the event loop, which serves the other jobs meanwhile.
            await asyncio.get_running_loop().run_in_executor(self._hash_threads, digest.update, content)
        else:
            digest.update(content)
        sha256 = self._verify(info, check, digest)
        assert sha256 is not None  # a digest always yields the plaintext SHA-256
        notes = notes_with_sha256(request.notes, sha256)
        uploads: list[Upload] = []
        try:
            await self._open_uploads(request.client, info, request.plans, notes, uploads)
            encryptor = FileEncryptor(generate_file_key(), size=info.size)
            if content:
                ciphertext = encryptor.update(content)
                await fan_out([u.write(ciphertext) for u in uploads])
                if self._metrics is not None:
                    self._metrics.add_bytes(len(content))
            nodes = await self._seal_and_complete(request, uploads, encryptor)
        except BaseException:
            await _cancel_all(uploads)
            raise
        _account(request, sha256)
        return nodes

    async def _open_uploads(
        self, client: DracoonClient, info: ObjectInfo, plans: Sequence[PlannedUpload], notes: str,
        uploads: list[Upload],
    ) -> None:
        """One upload channel per planned file, each appended to ``uploads`` as it opens, so a
        failure part-way still finds (and cancels) the ones already open."""
        for plan in plans:
            uploads.append(await client.open_upload(
                plan.room.id, plan.name, info.size, expire_at=plan.target.expire_at,
                classification=self._classification, notes=notes))

    async def _seal_and_complete(
        self, request: StreamRequest, uploads: list[Upload], encryptor: FileEncryptor
    ) -> list[Node]:
        """Finish the encryption, wrap its file key for the account and complete every upload.

        If one target fails, the others still finish (a completion cut off half-way is in an
        unknown state) and their files get their keys served, and are reported, before the
        failure is raised, so room members can open what did land.
        """
        client, keys, marker, size = request.client, request.keys, request.marker, request.info.size
        encryptor.finalize()
        file_key = encrypt_file_key(encryptor.file_key(), keys.public_key_container)
        completions = [self._complete(client, upload, plan, file_key, marker, size)
                       for upload, plan in zip(uploads, request.plans, strict=True)]
        results = await asyncio.gather(*completions, return_exceptions=True)
        nodes = [r for r in results if isinstance(r, Node)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None:
            return nodes
        for node in nodes:
            request.report.add_files([node.id])
            try:
                await serve_file_keys(client, keys, node, batch_size=self._share_batch_size)
            except TransientError as exc:  # the sharer's next pass serves them; report the real failure
                log.warning("share_after_failure_failed", file_id=node.id, error=str(exc),
                            code=Code.TRANSFERER_ERROR)
        raise failure

    @staticmethod
    async def _record_sha256(client: DracoonClient, nodes: Sequence[Node], notes: str, sha256: str) -> None:
        """Add the proven content SHA-256 to each new file's notes (DRACOON takes notes only when
        the upload opens, before a multi-chunk object's digest is known, or in a node update).

        Best effort: the file is complete and proven, and the digest is in the job's log line;
        a failed update is logged, not retried by redelivering the whole job.
        """
        for node in nodes:
            try:
                await client.set_file_notes(node.id, notes_with_sha256(notes, sha256))
            except RecordingStorageError as exc:
                log.warning("notes_sha256_not_recorded", file_id=node.id, error_code=exc.code, error=str(exc))

    def _verify(self, info: ObjectInfo, check: Verification, digest: ContentDigest | None) -> str | None:
        """Compare the content's digest with the store's; a mismatch raises before any completion.

        Returns the plaintext SHA-256 (None when ``s3.verify`` is off).
        """
        if digest is None:  # s3.verify off
            log.info("object_integrity", s3_key=info.key, integrity=check.name, bytes=info.size,
                     code=Code.TRANSFERER_STATUS)
            return None
        result = digest.finish()
        proof = check.proof
        if proof is not None and result.actual != proof.expected:
            if self._metrics is not None:
                self._metrics.integrity_check(proof.name, False)
            what = f"S3 object {info.bucket}/{info.key} (etag {info.etag})"
            raise IntegrityMismatch(what, proof, result.actual or "", result.sha256)
        if self._metrics is not None:
            self._metrics.integrity_check(check.name, True)
        log.info("object_integrity", s3_key=info.key, integrity=check.name, sha256=result.sha256,
                 bytes=info.size, code=Code.TRANSFERER_STATUS)
        return result.sha256

    async def _complete(
        self,
        client: DracoonClient,
        upload: Upload,
        plan: PlannedUpload,
        file_key: EncryptedFileKey,
        marker: str,
        size: int,
    ) -> Node:
        try:
            return await upload.complete(file_key, resolution=plan.resolution, file_name=plan.name)
        except NameConflict as exc:
            # Another worker finished the same source first (redelivery overlap): verify it is ours.
            node = await find_file(client, plan.room.id, plan.name)
            if node is not None and is_ours(node, marker, size):
                await upload.cancel()
                return node
            # A different file took the name after we planned: a race, not a bad job. The
            # redelivery plans again and applies dracoon.name_clash.
            raise TransientError(
                f"{plan.name!r} was taken in room {plan.room.id} during the upload", code="name_race"
            ) from exc
