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
from collections.abc import Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from ..config import DracoonConfig, S3Config, SharerConfig, WorkersConfig
from ..crypto import UnlockedKeyPair
from ..dracoon import DracoonClient, Node
from ..errors import PermanentError
from ..instances import InstanceProvider
from ..integrity import IntegrityMismatch
from ..logs import Code
from ..pool import DracoonPool
from ..s3 import ObjectInfo, S3Source, SourceChanged, SourceMissing
from ..targets import ResolvedTarget, TransferJob, notes_with_sha256, source_marker
from .placement import PlannedUpload, ensure_room, landed_earlier, place
from .report import TransferReport
from .streaming import Streamer, StreamRequest, TransferMetrics, choose_verification, serve_file_keys

__all__ = ["Transferer"]

log = structlog.get_logger(__package__)  # one logger for the whole pipeline, as before the split
T = TypeVar("T")


async def _discard(task: asyncio.Future[T]) -> None:
    """Cancel ``task`` and wait for it, whatever it raised: its result is no longer wanted."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class Transferer:
    """Runs jobs; one instance serves every worker of the process.

    Reads four config sections: ``s3`` (delete after transfer), ``dracoon`` (name clashes, file
    classification), ``workers`` (progress interval) and ``sharer`` (key batch size).
    ``metrics`` learns the bytes moved and each content proof's result.
    """

    def __init__(
        self,
        s3: S3Source,
        pool: DracoonPool,
        instances: InstanceProvider,
        *,
        hash_threads: Executor,
        s3_cfg: S3Config,
        dracoon_cfg: DracoonConfig,
        workers_cfg: WorkersConfig,
        sharer_cfg: SharerConfig,
        metrics: TransferMetrics | None = None,
    ) -> None:
        self._s3 = s3
        self._pool = pool
        self._instances = instances
        self._delete_sources = s3_cfg.delete_after_transfer
        self._name_clash = dracoon_cfg.name_clash
        self._share_batch_size = sharer_cfg.batch_size
        self._streamer = Streamer(
            s3,
            hash_threads=hash_threads,
            classification=dracoon_cfg.classification,
            progress_interval=workers_cfg.progress_interval,
            share_batch_size=sharer_cfg.batch_size,
            metrics=metrics,
        )

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
        rooms = [await ensure_room(client, account, t) for t in targets]
        report = TransferReport(keys=len(job.keys), targets=len(targets))
        if files is not None:
            report.files = files
        structlog.contextvars.bind_contextvars(targets=len(targets))
        if self._delete_sources:
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
                held = await self._gone(job, key, client, rooms, exc)
                report.already_present += len(rooms)
                report.add_files(node.id for node in held)
        pairs = list(zip(rooms, targets, strict=True))
        sources: list[ObjectInfo] = []
        for info in pinned:
            transferred = await self._transfer_verified(job, info, client, keys, pairs, report)
            if transferred is not None:
                sources.append(transferred)
        if self._delete_sources:
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
    ) -> list[Node]:
        """A source that is not there (at the start or since mid-transfer): done if every target
        already holds it (an overlapping or earlier delivery transferred and deleted it), and
        those files are returned; else ``missing`` is raised."""
        held = await landed_earlier(job, key, client, rooms)
        if not held:
            raise missing
        log.info("source_gone_already_transferred", s3_key=key)
        return held

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
        plans: list[PlannedUpload] = []
        # Choosing the proof may take a HEAD per part (multipart layouts): it runs while the
        # targets are looked up in DRACOON, not after.
        choosing = asyncio.ensure_future(choose_verification(self._s3, info))
        try:
            for room, target in rooms:
                existing, plan = await place(client, room, target, (name, *earlier), marker, info.size,
                                             name_clash=self._name_clash)
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
                nodes = await self._streamer.stream(
                    StreamRequest(info, client, keys, plans, notes, marker, report, check))
            except SourceMissing as exc:
                held = await self._gone(job, info.key, client, [room for room, _ in rooms], exc)
                report.already_present += len(plans)
                report.add_files(node.id for node in held)
                return False
            done.extend(nodes)
            report.uploaded += len(nodes)
        for node in done:
            report.add_files([node.id])
            await serve_file_keys(client, keys, node, batch_size=self._share_batch_size)
        return True
