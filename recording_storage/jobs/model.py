"""The frozen job-message model (see ``recording_storage.jobs`` for the wire format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..instances import TargetSpec

__all__ = [
    "Instance",
    "JobMessage",
    "Meeting",
    "MeetingType",
    "Person",
    "S3Objects",
    "json_kind",
    "looks_like_s3_event",
]


@dataclass(frozen=True)
class Person:
    """A meeting participant; both fields are personal data and kept out of reprs."""

    name: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MeetingType:
    """``id`` is normalised to a string, the form instance target rules compare against."""

    name: str | None = None
    duration: int | None = None
    id: str | None = None


@dataclass(frozen=True)
class Meeting:
    """``date`` is timezone-aware and already converted to ``timezone``."""

    id: int
    date: datetime
    timezone: str = "UTC"
    type: MeetingType = MeetingType()
    user: Person = Person()
    guest: Person = Person()
    description: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Instance:
    domain: str
    alias: str | None = None


@dataclass(frozen=True)
class S3Objects:
    """Where the recordings are; keys may name people, so the repr shows only their count."""

    bucket: str
    keys: tuple[str, ...]

    def __repr__(self) -> str:
        return f"S3Objects(bucket={self.bucket!r}, keys=<{len(self.keys)} key(s)>)"


@dataclass(frozen=True)
class JobMessage:
    """One validated job: move every S3 key to every target room."""

    storage_type: str
    s3: S3Objects
    targets: tuple[TargetSpec, ...]
    meeting: Meeting
    instance: Instance
    customer_id: str | None = field(default=None, repr=False)

    @property
    def bucket(self) -> str:
        """Shorthand for ``s3.bucket``."""
        return self.s3.bucket

    @property
    def keys(self) -> tuple[str, ...]:
        """Shorthand for ``s3.keys``: every S3 key, flattened, de-duplicated, in message order."""
        return self.s3.keys

    @property
    def instance_domain(self) -> str:
        """Shorthand for ``instance.domain`` (lower-case, no trailing dot)."""
        return self.instance.domain

    def describe(self) -> dict[str, object]:
        """Non-personal summary fields for log lines."""
        return {
            "instance": self.instance.domain,
            "meeting_id": self.meeting.id,
            "meeting_type_id": self.meeting.type.id,
            "bucket": self.s3.bucket,
            "key_count": len(self.s3.keys),
            # Named in the message; 0 when the instance's rules choose the rooms ("targets" below).
            "message_targets": len(self.targets),
        }


def looks_like_s3_event(obj: object) -> bool:
    """Whether a decoded body is an S3 event notification (direct, test event or EventBridge)."""
    if not isinstance(obj, dict):
        return False
    if obj.get("Event") == "s3:TestEvent" or (obj.get("source") == "aws.s3" and "detail" in obj):
        return True
    records = obj.get("Records")
    if not isinstance(records, list):
        return False
    return "storage" not in obj or any(
        isinstance(r, dict) and (r.get("eventSource") == "aws:s3" or "s3" in r) for r in records[:10]
    )


def json_kind(value: object) -> str:
    """A JSON type description for problem messages; never includes the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "an array" if isinstance(value, list) else "an object"
