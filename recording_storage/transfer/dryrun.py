"""The dry run (``recording-storage plan``, ``send-job --dry-run``): what a job would do.

Decided by the same placement and proof rules as a real run, reading only: the instance, a
DRACOON login, room and file lookups, S3 HEADs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import PermanentError
from ..instances import InstanceProvider
from ..pool import DracoonPool
from ..s3 import S3Source
from ..targets import TransferJob, source_marker
from .placement import NameClashPolicy, existing_room, place
from .streaming import choose_verification

__all__ = ["JobPlan", "KeyPlan", "TargetPlan", "plan_job"]


async def plan_job(
    job: TransferJob,
    *,
    s3: S3Source,
    pool: DracoonPool,
    instances: InstanceProvider,
    name_clash: NameClashPolicy,
    now: datetime | None = None,
) -> JobPlan:
    """What ``Transferer.run`` would do for ``job``, decided by the same rules, without writing anything.

    Reads only: the instance, a DRACOON login, room and file lookups, S3 HEADs. Rooms that
    do not exist are reported as to be created; a permanent failure ``run`` would meet is
    raised the same way (so the caller can say how the job would be dead-lettered).
    """
    account = await instances.get(job.instance_domain)
    if account.storage != "dracoon":
        raise PermanentError(f"instance storage is {account.storage!r}, not 'dracoon'",
                             code="wrong_storage")
    targets = job.targets(account, now or datetime.now(UTC))
    client = await pool.client(account)
    rooms = [await existing_room(client, account, t) for t in targets]
    plan = JobPlan(job.instance_domain, account.login, account.base_url, job.bucket,
                   [TargetPlan(t.path, t.expire_at, t.expiration_text, room.id if room else None, missing)
                    for t, (room, missing) in zip(targets, rooms, strict=True)])
    for key in job.keys:
        info = await s3.head(job.bucket, key)  # SourceMissing: run would dead-letter it too
        name = job.file_name(key, info.content_type)
        names = (name, *job.earlier_file_names(key, info.content_type))
        marker = source_marker(info.bucket, info.key, info.etag)
        check = await choose_verification(s3, info)  # s3.verify required and no proof: raised here too
        actions = []
        for target, (room, _) in zip(targets, rooms, strict=True):
            if room is None:
                actions.append(f"upload as {name!r} (new room)")
                continue
            existing, step = await place(client, room, target, names, marker, info.size,
                                         name_clash=name_clash)
            if existing is not None:
                actions.append(f"already there as file {existing.id} {existing.name!r}")
            elif step is not None:
                verb = "overwrite" if step.resolution == "overwrite" else "upload as"
                actions.append(f"{verb} {step.name!r}")
        plan.keys.append(KeyPlan(key, info.size, info.content_type, name, marker, check.name, actions))
    return plan


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
