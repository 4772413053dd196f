"""One job: S3 objects -> one AES-256-GCM stream each -> every target room in DRACOON.

Per-job state machine (each step idempotent, so a redelivery after a crash only repeats work):
resolve or create the rooms; HEAD and pin every source's ETag before the first upload (a job is
all or nothing for missing sources); recognise an earlier upload of the same source by the
marker in its notes; download once, encrypt once and fan the ciphertext out to every remaining
target's upload channel; complete with ``resolutionStrategy=fail`` (a 409 is re-checked, never
auto-renamed); serve the new file's missing keys; only when every target of every key is done,
delete exactly the transferred versions of the sources. The caller deletes the SQS message last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

import structlog

from .config import AppConfig
from .crypto import (
    EncryptedFileKey,
    FileEncryptor,
    UnlockedKeyPair,
    encrypt_file_key,
    generate_file_key,
)
from .dracoon import DracoonClient, NameConflict, Node, Upload
from .errors import PermanentError, RecordingStorageError, TransientError
from .instances import DracoonAccount, InstanceProvider
from .integrity import ContentDigest, IntegrityMismatch, Proof, candidate_proofs
from .keyshare import serve_missing_keys
from .logs import Code
from .pool import DracoonPool
from .s3 import ObjectInfo, S3Source, SourceChanged, SourceMissing
from .targets import (
    ResolvedTarget,
    TransferJob,
    node_name_key,
    notes_with_sha256,
    parse_content_sha256,
    parse_source_marker,
    source_marker,
)

__all__ = ["JobPlan", "KeyPlan", "TargetPlan", "TransferReport", "Transferer", "clash_name"]

log = structlog.get_logger(__name__)
T = TypeVar("T")
STREAM_ATTEMPTS = 3  # a broken proxy upload cannot be resumed (append semantics): restart the file


@dataclass
class TransferReport:
    """Summary of one job, for the per-job log line and metrics."""

    keys: int = 0
    targets: int = 0
    bytes_read: int = 0
    uploaded: int = 0
    already_present: int = 0
    deleted_sources: int = 0
    files: list[int] = field(default_factory=list)
    # Per transferred object, in job order: the plaintext SHA-256 (absent with s3.verify off)
    # and the proof its content was checked with.
    sha256: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Verification:
    """How one object's content is proven: ``proof`` None means ``integrity=none``."""

    proof: Proof | None
    part_sizes: tuple[int, ...] = ()
    hash: bool = True  # False with s3.verify off: no digest at all

    @property
    def name(self) -> str:
        return self.proof.name if self.proof is not None else "none"


@dataclass(frozen=True)
class _Plan:
    room: Node
    target: ResolvedTarget
    name: str
    resolution: Literal["fail", "overwrite"]


def clash_name(name: str, marker: str) -> str:
    """Deterministic "keep both" name: the same source always gets the same alternative."""
    digest = marker.split("src=")[-1][:8] if "src=" in marker else marker[-8:]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({digest})"
    return f"{stem} ({digest}).{ext}"


async def _fan_out(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure itself."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_as_coro(a)) for a in aws]
    except BaseExceptionGroup as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw


async def _discard(task: asyncio.Future[T]) -> None:
    """Cancel ``task`` and wait for it, whatever it raised: its result is no longer wanted."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class Transferer:
    """Runs jobs; one instance serves every worker of the process."""

    def __init__(
        self,
        s3: S3Source,
        pool: DracoonPool,
        instances: InstanceProvider,
        cfg: AppConfig,
        *,
        on_bytes: Callable[[int], None] | None = None,
        on_integrity: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._on_integrity = on_integrity
        self._s3 = s3
        self._on_bytes = on_bytes  # bytes of each chunk once every target took it (metrics)
        self._pool = pool
        self._instances = instances
        self._cfg = cfg

    async def run(
        self, job: TransferJob, *, now: datetime | None = None, files: list[int] | None = None
    ) -> TransferReport:
        """Run one job. ``files`` (appended to as each target file is done) may be shared by
        the caller across jobs, so it still knows the finished files when a later step fails."""
        account = await self._instances.get(job.instance_domain)
        if account.storage != "dracoon":
            raise PermanentError(
                f"instance storage is {account.storage!r}, not 'dracoon'", code="wrong_storage"
            )
        targets = job.targets(account, now or datetime.now(UTC))
        client = await self._pool.client(account)
        keys = await self._pool.key_pair(account)
        rooms = [await self._room(client, account, t) for t in targets]
        report = TransferReport(keys=len(job.keys), targets=len(targets))
        if files is not None:
            report.files = files
        structlog.contextvars.bind_contextvars(targets=len(targets))
        if self._cfg.s3.delete_after_transfer:
            self._s3.check_deletable(job.bucket)
        # Every source is pinned before the first upload, so a job is all-or-nothing for missing
        # sources: a dead-lettered job leaves no part of its recordings behind.
        pinned: list[ObjectInfo] = []
        for key in job.keys:
            try:
                pinned.append(await self._s3.head(job.bucket, key))
            except SourceMissing as exc:
                # Our own delete ran but the ack did not (crash, failed DeleteMessage): only the
                # targets can tell that redelivery from a job whose source never existed.
                await self._gone(job, key, client, rooms, exc)
                report.already_present += len(rooms)
        pairs = list(zip(rooms, targets, strict=True))
        sources: list[ObjectInfo] = []
        for info in pinned:
            transferred = await self._transfer_verified(job, info, client, keys, pairs, report)
            if transferred is not None:
                sources.append(transferred)
        if self._cfg.s3.delete_after_transfer:
            for info in sources:
                try:
                    await self._s3.delete(info)
                    report.deleted_sources += 1
                except SourceChanged:
                    # Overwritten after we copied it: the new version is not ours to delete.
                    log.warning("source_changed_not_deleted", s3_key=info.key, code=Code.TRANSFERER_ERROR)
        return report

    async def _gone(
        self,
        job: TransferJob,
        key: str,
        client: DracoonClient,
        rooms: Sequence[Node],
        missing: SourceMissing,
    ) -> None:
        """A source that is not there (at the start or since mid-transfer): done if every target
        already holds it (an overlapping or earlier delivery transferred and deleted it), else
        ``missing`` is raised."""
        if not await self._landed_earlier(job, key, client, rooms):
            raise missing
        log.info("source_gone_already_transferred", s3_key=key)

    async def _transfer_verified(
        self,
        job: TransferJob,
        info: ObjectInfo,
        client: DracoonClient,
        keys: UnlockedKeyPair,
        rooms: list[tuple[Node, ResolvedTarget]],
        report: TransferReport,
    ) -> ObjectInfo | None:
        """Transfer one object; a content mismatch restarts it once from a fresh HEAD.

        The same pinned version read twice to the same wrong digest means the store's bytes and
        its stated digest disagree for good: permanent (``integrity_mismatch``), the source
        stays. Anything else (other bytes the second time, a new version) stays transient.
        Returns the version that was transferred (the one the delete must pin), or None when
        the source vanished but every target holds it already (nothing of ours to delete).
        """
        try:
            return info if await self._transfer_object(job, info, client, keys, rooms, report) else None
        except IntegrityMismatch as exc:
            first = exc
            log.warning("integrity_mismatch_restarting", s3_key=info.key, integrity=exc.proof.name,
                        error=str(exc), code=Code.TRANSFERER_ERROR)
        try:
            fresh = await self._s3.head(info.bucket, info.key)
        except SourceMissing as exc:
            await self._gone(job, info.key, client, [room for room, _ in rooms], exc)
            return None
        try:
            landed = await self._transfer_object(job, fresh, client, keys, rooms, report)
        except IntegrityMismatch as again:
            if (fresh.etag, again.proof, again.actual) == (info.etag, first.proof, first.actual):
                raise PermanentError(
                    f"{again} (read twice with the same result)", code="integrity_mismatch"
                ) from again
            raise
        return fresh if landed else None

    async def _verification(self, info: ObjectInfo) -> _Verification:
        """The cheapest proof the store offers for ``info``, or none if ``s3.verify`` allows it."""
        mode = self._s3.settings(info.bucket).verify
        if mode == "off" or info.digests is None:
            return _Verification(None, hash=False)
        for proof in candidate_proofs(info.digests):
            if not proof.parts:
                return _Verification(proof)
            sizes = await self._s3.part_sizes(info, proof.parts)
            if sizes is not None:
                return _Verification(proof, sizes)
        if mode == "required":
            raise PermanentError(
                f"s3.verify is 'required' but the store states no verifiable digest for "
                f"{info.bucket}/{info.key} (no checksum, and the ETag is no MD5 or multipart MD5)",
                code="integrity_unverifiable",
            )
        return _Verification(None)

    async def _landed_earlier(
        self, job: TransferJob, key: str, client: DracoonClient, rooms: Sequence[Node]
    ) -> bool:
        """Every target holds a file made from ``key`` (any version; its name may carry a clash
        suffix, or be the name an earlier release gave it)."""
        src = source_marker(job.bucket, key, "").partition(":etag=")[0] + ":etag="
        names = (job.file_name(key, None), *job.earlier_file_names(key, None))
        stems = tuple(node_name_key(name.rpartition(".")[0] or name) for name in names)
        for room in rooms:
            async for node in client.iter_children(room.id, types=("file",)):
                if node_name_key(node.name).startswith(stems):
                    full = node if node.notes is not None else await client.get_node(node.id)
                    if (parse_source_marker(full.notes) or "").startswith(src):
                        break
            else:
                return False
        return bool(rooms)

    async def _room(self, client: DracoonClient, account: DracoonAccount, target: ResolvedTarget) -> Node:
        room = await client.ensure_room_path(account.parent_room_id, target.segments)
        if not room.is_encrypted:
            raise PermanentError(
                f"target room {'/'.join(target.segments) or '<parent room>'} (id {room.id}) is not encrypted",
                code="room_not_encrypted",
            )
        return room

    async def _transfer_object(
        self,
        job: TransferJob,
        info: ObjectInfo,
        client: DracoonClient,
        keys: UnlockedKeyPair,
        rooms: list[tuple[Node, ResolvedTarget]],
        report: TransferReport,
    ) -> bool:
        """Bring ``info`` into every target; False when the source vanished meanwhile but every
        target holds it already (an overlapping delivery finished first), so there is nothing
        of ours to delete."""
        name = job.file_name(info.key, info.content_type)
        earlier = job.earlier_file_names(info.key, info.content_type)
        marker = source_marker(info.bucket, info.key, info.etag)
        done: list[Node] = []
        plans: list[_Plan] = []
        # Choosing the proof may take a HEAD per part (multipart layouts): it runs while the
        # targets are looked up in DRACOON, not after.
        choosing = asyncio.ensure_future(self._verification(info))
        try:
            for room, target in rooms:
                existing, plan = await self._plan(client, room, target, (name, *earlier), marker, info.size)
                if existing is not None:
                    done.append(existing)
                    report.already_present += 1
                elif plan is not None:
                    plans.append(plan)
        except BaseException:
            await _discard(choosing)
            raise
        if not plans:
            await _discard(choosing)  # nothing to upload, nothing to prove
        else:
            notes = job.notes(info.key, info.bucket, info.etag)
            check = await choosing
            if check.proof is not None and check.proof.name == "sha256":
                # The store states the SHA-256 and no upload completes unless the content
                # matches it: it can go into the notes now, saving the update afterwards.
                notes = notes_with_sha256(notes, base64.b64decode(check.proof.expected).hex())
            try:
                nodes = await self._stream_with_restarts(
                    info, client, keys, plans, notes, marker, report, check
                )
            except SourceMissing as exc:
                await self._gone(job, info.key, client, [room for room, _ in rooms], exc)
                report.already_present += len(plans)
                return False
            done.extend(nodes)
            report.uploaded += len(nodes)
        for node in done:
            report.files.append(node.id)
            await self._serve_keys(client, keys, node)
        return True

    async def _stream_with_restarts(
        self,
        info: ObjectInfo,
        client: DracoonClient,
        keys: UnlockedKeyPair,
        plans: list[_Plan],
        notes: str,
        marker: str,
        report: TransferReport,
        check: _Verification,
    ) -> list[Node]:
        """``_stream``, restarted on a broken upload; a changed source is looked at once more.

        SourceChanged is left to the redelivery (which pins the new version from a fresh HEAD),
        unless the key is gone by now: then SourceMissing lets the caller ask the targets, as
        for a source missing from the start.
        """
        for attempt in range(1, STREAM_ATTEMPTS + 1):
            try:
                return await self._stream(info, client, keys, plans, notes, marker, report, check)
            except SourceChanged:
                await self._s3.head(info.bucket, info.key)  # raises SourceMissing if it is gone
                raise
            except TransientError as exc:
                if attempt == STREAM_ATTEMPTS or exc.code not in {"upload_interrupted", "network"}:
                    raise
                log.warning("upload_restarting", s3_key=info.key, attempt=attempt, error=str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _serve_keys(self, client: DracoonClient, keys: UnlockedKeyPair, node: Node) -> None:
        try:
            await serve_missing_keys(client, (keys,), file_id=node.id, batch_size=self._cfg.sharer.batch_size)
        except RecordingStorageError as exc:
            # The file is safe; a redelivery finds it present and serves the keys again.
            raise TransientError(
                f"serving file keys for file {node.id} failed: {exc}", code="share_failed"
            ) from exc

    async def _plan(
        self,
        client: DracoonClient,
        room: Node,
        target: ResolvedTarget,
        names: tuple[str, ...],
        marker: str,
        size: int,
    ) -> tuple[Node | None, _Plan | None]:
        """Decide per target: already ours (done), upload under ``names[0]``, or resolve a clash.

        ``names[1:]`` are earlier releases' names for this source: a file there counts as done
        when it is ours, and is otherwise no concern of this upload.
        """
        name = names[0]
        node = await self._child(client, room.id, name)
        if node is None:
            for earlier in names[1:]:
                found = await self._child(client, room.id, earlier)
                if found is not None and self._is_ours(found, marker, size):
                    return found, None
            return None, _Plan(room, target, name, "fail")
        if self._is_ours(node, marker, size):
            return node, None
        policy = self._cfg.dracoon.name_clash
        if policy == "fail":
            raise PermanentError(
                f"a different file named {name!r} already exists in room {room.id}", code="name_clash"
            )
        if policy == "overwrite" and node.type == "file":
            return None, _Plan(room, target, name, "overwrite")
        alt = clash_name(name, marker)
        other = await self._child(client, room.id, alt)
        if other is None:
            return None, _Plan(room, target, alt, "fail")
        if self._is_ours(other, marker, size):
            return other, None
        raise PermanentError(
            f"both {name!r} and {alt!r} exist in room {room.id} and are not this recording", code="name_clash"
        )

    @staticmethod
    async def _child(client: DracoonClient, room_id: int, name: str) -> Node | None:
        """The named child with its notes (list responses may leave notes out)."""
        node = await client.find_child(room_id, name)
        if node is not None and node.type == "file" and node.notes is None:
            node = await client.get_node(node.id)
        return node

    @staticmethod
    def _is_ours(node: Node, marker: str, size: int) -> bool:
        return node.type == "file" and node.size == size and parse_source_marker(node.notes or "") == marker

    async def _stream(
        self,
        info: ObjectInfo,
        client: DracoonClient,
        keys: UnlockedKeyPair,
        plans: list[_Plan],
        notes: str,
        marker: str,
        report: TransferReport,
        check: _Verification,
    ) -> list[Node]:
        uploads: list[Upload] = []
        digest = ContentDigest(check.proof, check.part_sizes) if check.hash else None
        hashing: asyncio.Future[None] | None = None
        sha256: str | None = None
        try:
            for plan in plans:
                uploads.append(
                    await client.open_upload(
                        plan.room.id,
                        plan.name,
                        info.size,
                        expire_at=plan.target.expire_at,
                        classification=self._cfg.dracoon.classification,
                        notes=notes,
                    )
                )
            encryptor = FileEncryptor(generate_file_key(), size=info.size)
            done_bytes = 0
            started = last_progress = time.monotonic()
            # aclosing: a failed upload cancels the read-ahead GETs at once, not at garbage collection.
            async with contextlib.aclosing(self._s3.iter_chunks(info)) as chunks:
                async for chunk in chunks:
                    if digest is not None:
                        # In a worker thread, overlapping this chunk's encryption and upload;
                        # awaited before the next chunk so the hash sees the bytes in order.
                        if hashing is not None:
                            await hashing
                        hashing = asyncio.ensure_future(asyncio.to_thread(digest.update, chunk))
                    ciphertext = encryptor.update(chunk)
                    await _fan_out([u.write(ciphertext) for u in uploads])
                    done_bytes += len(chunk)
                    if self._on_bytes is not None:
                        self._on_bytes(len(chunk))
                    now = time.monotonic()
                    if now - last_progress >= self._cfg.workers.progress_interval:
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
            if done_bytes != info.size:
                raise TransientError(
                    f"read {done_bytes} of {info.size} bytes of the source", code="short_read"
                )
            if hashing is not None:
                await hashing
            sha256 = self._verify(info, check, digest, report)
            encryptor.finalize()
            file_key = encrypt_file_key(encryptor.file_key(), keys.public_key_container)
            nodes = await self._complete_all(client, keys, uploads, plans, file_key, marker, info.size)
        except BaseException:
            if hashing is not None and not hashing.done():
                hashing.cancel()  # the thread finishes its chunk; nobody waits for it
            await asyncio.shield(asyncio.gather(*(u.cancel() for u in uploads), return_exceptions=True))
            raise
        report.bytes_read += info.size
        if sha256 is not None and parse_content_sha256(notes) != sha256:
            await self._record_sha256(client, nodes, notes, sha256)
        return nodes

    async def _complete_all(
        self,
        client: DracoonClient,
        keys: UnlockedKeyPair,
        uploads: list[Upload],
        plans: list[_Plan],
        file_key: EncryptedFileKey,
        marker: str,
        size: int,
    ) -> list[Node]:
        """Complete every upload; if one target fails, the others still finish (a completion cut
        off half-way is in an unknown state) and their files get their keys served before the
        failure is raised, so room members can open what did land."""
        completions = [
            self._complete(client, u, p, file_key, marker, size) for u, p in zip(uploads, plans, strict=True)
        ]
        results = await asyncio.gather(*completions, return_exceptions=True)
        nodes = [r for r in results if isinstance(r, Node)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None:
            return nodes
        for node in nodes:
            try:
                await self._serve_keys(client, keys, node)
            except TransientError as exc:  # the sharer's next pass serves them; report the real failure
                log.warning("share_after_failure_failed", file_id=node.id, error=str(exc),
                            code=Code.TRANSFERER_ERROR)
        raise failure

    @staticmethod
    async def _record_sha256(client: DracoonClient, nodes: Sequence[Node], notes: str, sha256: str) -> None:
        """Add the proven content SHA-256 to each new file's notes (DRACOON takes notes only when
        the upload opens, before the digest is known, or in a node update).

        Best effort: the file is complete and proven, and the digest is in the job's log line;
        a failed update is logged, not retried by redelivering the whole job.
        """
        for node in nodes:
            try:
                await client.set_file_notes(node.id, notes_with_sha256(notes, sha256))
            except RecordingStorageError as exc:
                log.warning("notes_sha256_not_recorded", file_id=node.id, error_code=exc.code, error=str(exc))

    def _verify(
        self, info: ObjectInfo, check: _Verification, digest: ContentDigest | None, report: TransferReport
    ) -> str | None:
        """Compare the content's digest with the store's; a mismatch raises before any completion.

        Returns the plaintext SHA-256 (None when ``s3.verify`` is off).
        """
        if digest is None:  # s3.verify off
            report.integrity.append(check.name)
            log.info("object_integrity", s3_key=info.key, integrity=check.name, bytes=info.size,
                     code=Code.TRANSFERER_STATUS)
            return None
        result = digest.finish()
        proof = check.proof
        if proof is not None and result.actual != proof.expected:
            if self._on_integrity is not None:
                self._on_integrity(proof.name, False)
            what = f"S3 object {info.bucket}/{info.key} (etag {info.etag})"
            raise IntegrityMismatch(what, proof, result.actual or "", result.sha256)
        if self._on_integrity is not None:
            self._on_integrity(check.name, True)
        report.sha256.append(result.sha256)
        report.integrity.append(check.name)
        log.info("object_integrity", s3_key=info.key, integrity=check.name, sha256=result.sha256,
                 bytes=info.size, code=Code.TRANSFERER_STATUS)
        return result.sha256

    async def _complete(
        self,
        client: DracoonClient,
        upload: Upload,
        plan: _Plan,
        file_key: EncryptedFileKey,
        marker: str,
        size: int,
    ) -> Node:
        try:
            return await upload.complete(file_key, resolution=plan.resolution, file_name=plan.name)
        except NameConflict as exc:
            # Another worker finished the same source first (redelivery overlap): verify it is ours.
            node = await self._child(client, plan.room.id, plan.name)
            if node is not None and self._is_ours(node, marker, size):
                await upload.cancel()
                return node
            # A different file took the name after we planned: a race, not a bad job. The
            # redelivery plans again and applies dracoon.name_clash.
            raise TransientError(
                f"{plan.name!r} was taken in room {plan.room.id} during the upload", code="name_race"
            ) from exc

    # -- dry run (`recording-storage plan`, `send-job --dry-run`) ----------------------------

    async def plan(self, job: TransferJob, *, now: datetime | None = None) -> JobPlan:
        """What ``run`` would do for ``job``, decided by the same rules, without writing anything.

        Reads only: the instance, a DRACOON login, room and file lookups, S3 HEADs. Rooms that
        do not exist are reported as to be created; a permanent failure ``run`` would meet is
        raised the same way (so the caller can say how the job would be dead-lettered).
        """
        account = await self._instances.get(job.instance_domain)
        if account.storage != "dracoon":
            raise PermanentError(f"instance storage is {account.storage!r}, not 'dracoon'",
                                 code="wrong_storage")
        targets = job.targets(account, now or datetime.now(UTC))
        client = await self._pool.client(account)
        rooms = [await self._existing_room(client, account, t) for t in targets]
        plan = JobPlan(job.instance_domain, account.login, account.base_url, job.bucket,
                       [TargetPlan(t.path, t.expire_at, t.expiration_text, room.id if room else None, missing)
                        for t, (room, missing) in zip(targets, rooms, strict=True)])
        for key in job.keys:
            info = await self._s3.head(job.bucket, key)  # SourceMissing: run would dead-letter it too
            name = job.file_name(key, info.content_type)
            names = (name, *job.earlier_file_names(key, info.content_type))
            marker = source_marker(info.bucket, info.key, info.etag)
            check = await self._verification(info)  # s3.verify required and no proof: raised here too
            actions = []
            for target, (room, _) in zip(targets, rooms, strict=True):
                if room is None:
                    actions.append(f"upload as {name!r} (new room)")
                    continue
                existing, step = await self._plan(client, room, target, names, marker, info.size)
                if existing is not None:
                    actions.append(f"already there as file {existing.id} {existing.name!r}")
                elif step is not None:
                    verb = "overwrite" if step.resolution == "overwrite" else "upload as"
                    actions.append(f"{verb} {step.name!r}")
            plan.keys.append(KeyPlan(key, info.size, info.content_type, name, marker, check.name, actions))
        return plan

    @staticmethod
    async def _existing_room(
        client: DracoonClient, account: DracoonAccount, target: ResolvedTarget
    ) -> tuple[Node | None, tuple[str, ...]]:
        """The target room if it exists, else None and the segments that would be created."""
        current = await client.get_node(account.parent_room_id)
        for depth, segment in enumerate(target.segments):
            child = await client.find_child(current.id, segment.strip(), types=("room",))
            if child is None:
                return None, target.segments[depth:]
            current = child
        if not current.is_encrypted:
            raise PermanentError(
                f"target room {target.path or '<parent room>'} (id {current.id}) is not encrypted",
                code="room_not_encrypted")
        return current, ()


@dataclass
class TargetPlan:
    """One target room of a planned job."""

    path: str
    expire_at: datetime | None
    expiration_text: str | None
    room_id: int | None  # None: to be created
    to_create: tuple[str, ...]


@dataclass
class KeyPlan:
    """One source object of a planned job and what would happen to it per target."""

    key: str
    size: int
    content_type: str | None
    file_name: str
    marker: str  # the source marker (bucket/key hash and ETag) the file's notes would carry
    integrity: str  # the proof its content would be checked with (the integrity= value)
    actions: list[str]


@dataclass
class JobPlan:
    """``Transferer.plan``'s answer."""

    instance: str
    login: str
    base_url: str
    bucket: str
    targets: list[TargetPlan]
    keys: list[KeyPlan] = field(default_factory=list)
