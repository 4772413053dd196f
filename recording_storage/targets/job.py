"""``TransferJob``: what the pipeline needs from a job, and ``MessageJob``, a job message as one.

The protocol lives with the target rules because everything it asks beyond where the sources
are (instance, bucket, keys) is a target decision: rooms, file names, notes. Both message kinds
provide it (``MessageJob`` here, ``events.EventJob`` for S3 event notifications), so the
pipeline never looks at a message format, and neither kind depends on the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..instances import DracoonAccount
from ..jobs import JobMessage
from .naming import earlier_file_names_for, file_name_for, upload_notes
from .resolve import ResolvedTarget, resolve_targets

__all__ = ["MessageJob", "TransferJob"]


class TransferJob(Protocol):
    """What the pipeline needs from a job, whatever message kind it came from.

    Job messages (``MessageJob``) and S3 event notifications both provide it; the pipeline
    never looks at the message format itself.
    """

    @property
    def instance_domain(self) -> str: ...
    @property
    def bucket(self) -> str: ...
    @property
    def keys(self) -> tuple[str, ...]: ...
    def describe(self) -> dict[str, object]: ...
    def targets(self, account: DracoonAccount, now: datetime) -> list[ResolvedTarget]: ...
    def file_name(self, key: str, content_type: str | None) -> str: ...
    def earlier_file_names(self, key: str, content_type: str | None) -> tuple[str, ...]:
        """Names earlier releases gave this key, so their uploads are still recognised (by marker)."""
        ...
    def notes(self, key: str, bucket: str, etag: str) -> str: ...


@dataclass(frozen=True)
class MessageJob:
    """A parsed job message (the original's wire format) as a TransferJob."""

    job: JobMessage
    include_pii: bool = False

    @property
    def instance_domain(self) -> str:
        return self.job.instance_domain

    @property
    def bucket(self) -> str:
        return self.job.bucket

    @property
    def keys(self) -> tuple[str, ...]:
        return self.job.keys

    def describe(self) -> dict[str, object]:
        return self.job.describe()

    def targets(self, account: DracoonAccount, now: datetime) -> list[ResolvedTarget]:
        return resolve_targets(self.job, account, now=now)

    def file_name(self, key: str, content_type: str | None) -> str:
        return file_name_for(self.job, key, content_type, key_count=len(self.job.keys))

    def earlier_file_names(self, key: str, content_type: str | None) -> tuple[str, ...]:
        return earlier_file_names_for(self.job, key, content_type, key_count=len(self.job.keys))

    def notes(self, key: str, bucket: str, etag: str) -> str:
        return upload_notes(self.job, key, bucket, etag, include_pii=self.include_pii)
