"""S3 event notifications -> object records, validated in one pass with JSON field paths.

The format is AWS's "event message structure" (version 2.x), which S3-compatible stores such as
MinIO also send. What is read, and why:

* ``Records[].eventName``: only ``ObjectCreated:*`` records become jobs; others (removals,
  restores, replication, lifecycle) are returned as ignored, for one log line each.
* ``s3.bucket.name`` and ``s3.object.key``: the key arrives URL-encoded with ``+`` for a space
  (S3 encodes it like an HTML form), so it is decoded with ``unquote_plus``; a key that does not
  decode to valid UTF-8 is a problem, not a guess.
* ``size``, ``eTag``, ``versionId``, ``sequencer`` and ``eventTime`` are optional: the transfer
  HEADs the object and pins what is there, and these only feed names, notes and logs.
* Several records for one key in one message collapse into one (the last by ``sequencer``):
  a single transfer pins the current version anyway.

Problems never echo keys (they may name people); every problem has its field path, prefixed
with ``Message.`` when the event came wrapped in an SNS envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from ..errors import InvalidJobMessage, JobProblem
from ..jobs.model import json_kind
from ..jobs.parse import ProblemCollector
from ..logs import key_digest

__all__ = [
    "CREATED_PREFIX",
    "MAX_RECORDS",
    "ObjectRecord",
    "S3Event",
    "is_test_event",
    "key_digest",
    "parse_s3_event",
]

CREATED_PREFIX = "ObjectCreated:"
MAX_RECORDS = 1000
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class ObjectRecord:
    """One created object as the event described it; the key is kept out of the repr."""

    bucket: str
    key: str = field(repr=False)
    event_name: str = "ObjectCreated:Put"
    event_time: datetime | None = None
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    index: int = 0

    @property
    def key_hash(self) -> str:
        return key_digest(self.bucket, self.key)


@dataclass(frozen=True)
class S3Event:
    """The created-object records of one notification and the (event, bucket) pairs ignored."""

    records: tuple[ObjectRecord, ...]
    ignored: tuple[tuple[str, str], ...] = ()


def is_test_event(data: dict[str, Any]) -> bool:
    """S3 sends ``s3:TestEvent`` once when a notification is configured; it names no object."""
    return data.get("Event") == "s3:TestEvent"


def parse_s3_event(data: dict[str, Any], *, prefix: str = "") -> S3Event:
    """Validate a decoded notification; raise ``InvalidJobMessage`` listing every problem."""
    p = ProblemCollector(prefix)
    raw = data.get("Records")
    if not isinstance(raw, list) or not raw:
        shown = "is required" if raw is None else (
            "must not be empty" if raw == [] else f"must be an array, got {json_kind(raw)}")
        raise InvalidJobMessage([JobProblem(prefix + "Records", shown)])
    if len(raw) > MAX_RECORDS:
        raise InvalidJobMessage([JobProblem(prefix + "Records", f"has too many records ({len(raw)}, "
                                                                f"at most {MAX_RECORDS})")])
    records: dict[tuple[str, str], ObjectRecord] = {}
    ignored: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        where = f"Records[{i}]"
        if not isinstance(item, dict):
            p.add(where, f"must be an object, got {json_kind(item)}")
            continue
        name = p.text(item.get("eventName"), f"{where}.eventName", required=True)
        if name is None:
            continue
        if not name.startswith(CREATED_PREFIX):
            ignored.append((name, _bucket_name(item)))
            continue
        record = _record(p, item, where, i, name)
        if record is None:
            continue
        slot = (record.bucket, record.key)
        earlier = records.get(slot)
        if earlier is None or not _older(record.sequencer, earlier.sequencer):
            records[slot] = record
    if p.problems:
        raise InvalidJobMessage(p.all())
    ordered = sorted(records.values(), key=lambda r: r.index)
    return S3Event(tuple(ordered), tuple(ignored))


def _bucket_name(item: dict[str, Any]) -> str:
    s3 = item.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    name = bucket.get("name") if isinstance(bucket, dict) else None
    return name if isinstance(name, str) else ""


def _older(a: str | None, b: str | None) -> bool:
    """Whether sequencer ``a`` is before ``b``: hex strings compared after right-padding the
    shorter with zeros (AWS's documented rule); a missing sequencer counts as oldest."""
    if not a or not b:
        return not a and bool(b)
    width = max(len(a), len(b))
    return a.ljust(width, "0").upper() < b.ljust(width, "0").upper()


def _record(
    p: ProblemCollector, item: dict[str, Any], where: str, index: int, name: str
) -> ObjectRecord | None:
    before = len(p.problems)
    s3 = p.obj(item, "s3", f"{where}.s3", required=True)
    if s3 is None:
        return None
    bucket_obj = p.obj(s3, "bucket", f"{where}.s3.bucket", required=True)
    obj = p.obj(s3, "object", f"{where}.s3.object", required=True)
    bucket = p.text(bucket_obj.get("name"), f"{where}.s3.bucket.name", required=True) if bucket_obj else None
    key = _key(p, obj.get("key"), f"{where}.s3.object.key") if obj else None
    size = etag = version = sequencer = None
    if obj is not None:
        raw_size = obj.get("size")
        bad_size = not isinstance(raw_size, int) or isinstance(raw_size, bool) or raw_size < 0
        if raw_size is not None and bad_size:
            p.add(f"{where}.s3.object.size", f"must be a non-negative integer, got {json_kind(raw_size)}")
        elif raw_size is not None:
            size = raw_size
        etag = p.text(obj.get("eTag"), f"{where}.s3.object.eTag", required=False, max_len=128)
        version = p.text(obj.get("versionId"), f"{where}.s3.object.versionId", required=False, max_len=1024)
        sequencer = p.text(obj.get("sequencer"), f"{where}.s3.object.sequencer", required=False, max_len=128)
    event_time = _time(p, item.get("eventTime"), f"{where}.eventTime")
    if len(p.problems) > before or bucket is None or key is None:
        return None
    return ObjectRecord(bucket, key, name, event_time, size, etag, version, sequencer, index)


def _key(p: ProblemCollector, value: object, path: str) -> str | None:
    raw = p.text(value, path, required=True, max_len=4 * MAX_KEY_BYTES)
    if raw is None:
        return None
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        p.add(path, "is not valid URL-encoded UTF-8")
        return None
    try:
        # A lone surrogate (JSON "\udc80") is no S3 key; it would fail later, in key hashing.
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        p.add(path, "is not valid UTF-8 (contains a lone surrogate)")
        return None
    if size > MAX_KEY_BYTES:
        p.add(path, f"is too long ({size} bytes decoded, S3 allows at most {MAX_KEY_BYTES})")
    elif "\x00" in key:
        p.add(path, "contains a NUL character")
    else:
        return key
    return None


def _time(p: ProblemCollector, value: object, path: str) -> datetime | None:
    text = p.text(value, path, required=False, max_len=64)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        p.add(path, 'must be an ISO 8601 time, e.g. "2026-04-22T09:15:02.123Z"')
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
