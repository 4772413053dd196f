"""``parse_job_message``: one validating pass over a decoded body, collecting every problem."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import InvalidJobMessage, JobProblem
from ..expiration import ExpirationError, parse_expiration
from ..instances import TargetSpec
from ..node_names import MAX_TEMPLATE_LENGTH, check_path_template
from .model import (
    Instance,
    JobMessage,
    Meeting,
    MeetingType,
    Person,
    S3Objects,
    json_kind,
    looks_like_s3_event,
)

__all__ = ["MAX_BODY_BYTES", "MAX_KEY_BYTES", "MAX_KEYS", "MAX_PROBLEMS", "MAX_TARGETS", "parse_job_message"]

MAX_BODY_BYTES = 256 * 1024
MAX_KEYS = 1000
MAX_KEY_BYTES = 1024
MAX_TARGETS = 50
MAX_PROBLEMS = 50
_SHORT = 256
_S3 = "storage.extra.aws.s3"
_TARGETS = "storage.extra.dracoon.targets"

_DATE_EXAMPLE = '"2019-04-22T17:54:00+02:00"'
_TOKEN = re.compile(r"[A-Za-z0-9._+-]{1,32}", re.ASCII)
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,252}", re.ASCII)
# Letters/digits at both ends and no "..": a bucket of "." or ".." would make the path-style
# request "/../other-bucket/key", which a normalising proxy or S3-compatible store serves from
# (and the transfer then deletes in) a bucket the message never named.
_BUCKET = re.compile(r"[A-Za-z0-9](?:(?:[A-Za-z0-9_-]|\.(?!\.)){0,253}[A-Za-z0-9])?", re.ASCII)
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,3}", re.ASCII)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))", re.ASCII
)


def _token(value: str) -> str:
    """Echo short identifier-like values (storage types, zone names); describe anything else."""
    return repr(value) if _TOKEN.fullmatch(value) else f"({json_kind(value)})"


class ProblemCollector:
    """Collects problems while reading fields; every reader returns ``None`` when unusable.

    Shared by job messages and S3 event notifications (``prefix`` roots the paths of a wrapped
    message), so both report bad input in the same words.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.problems: list[JobProblem] = []
        self.dropped = 0

    def add(self, path: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(JobProblem(self.prefix + path, message))
        else:
            self.dropped += 1

    def all(self) -> list[JobProblem]:
        extra = [JobProblem("", f"{self.dropped} more problem(s) not listed")] if self.dropped else []
        return self.problems + extra

    def obj(self, parent: dict[str, Any], name: str, path: str, *, required: bool) -> dict[str, Any] | None:
        value = parent.get(name)
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, dict):
            self.add(path, f"must be an object, got {json_kind(value)}")
            return None
        return value

    def text(self, value: object, path: str, *, required: bool, max_len: int = _SHORT) -> str | None:
        if value is None or value == "":
            if required:
                self.add(path, "is required" if value is None else "must not be empty")
            return None
        if not isinstance(value, str):
            self.add(path, f"must be a string, got {json_kind(value)}")
            return None
        if len(value) > max_len:
            self.add(path, f"is too long ({len(value)} characters, at most {max_len})")
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.add(path, "is not valid Unicode (contains a lone surrogate escape)")
            return None
        return value

    def integer(self, value: object, path: str, *, required: bool, minimum: int) -> int | None:
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(path, f"must be an integer, got {json_kind(value)}")
            return None
        if not minimum <= value < 2**63:
            self.add(path, f"must be between {minimum} and 2^63-1")
            return None
        return value


def parse_job_message(body: str | bytes) -> JobMessage:
    """Validate a queue message body; raises ``InvalidJobMessage`` with every problem found."""
    data = _decode(body)
    if not isinstance(data, dict):
        raise InvalidJobMessage([JobProblem("", f"must be a JSON object, got {json_kind(data)}")])
    if looks_like_s3_event(data):
        raise InvalidJobMessage(
            "this is an S3 event notification, not a job message; S3 events are not accepted as jobs "
            "yet: send a job message as documented"
        )
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        raise InvalidJobMessage(
            "this is an SNS notification envelope, not a job message; enable raw message delivery"
        )
    c = ProblemCollector()
    storage_type, s3, targets = _storage(c, data)
    meeting = _meeting(c, data)
    instance = _instance(c, data)
    customer_id = _customer_id(c, data)
    if c.problems or storage_type is None or s3 is None or meeting is None or instance is None:
        raise InvalidJobMessage(c.all() or [JobProblem("", "is incomplete")])
    return JobMessage(storage_type, s3, targets, meeting, instance, customer_id)


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadConstant(name)


def _decode(body: object) -> Any:
    def fail(message: str) -> InvalidJobMessage:
        return InvalidJobMessage([JobProblem("", message)])

    too_big = f"is too large (more than {MAX_BODY_BYTES} bytes)"
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        if len(raw) > MAX_BODY_BYTES:
            raise fail(too_big)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise fail(f"is not valid UTF-8 (at byte {e.start})") from None
    elif isinstance(body, str):
        if len(body) > MAX_BODY_BYTES or len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
            raise fail(too_big)
        text = body
    else:
        raise fail(f"must be text, got {type(body).__name__}")
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise fail("is empty")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise fail(f"is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except _BadConstant:
        raise fail("is not valid JSON: NaN and Infinity are not allowed") from None
    except (ValueError, RecursionError):
        raise fail("is not valid JSON: nested too deeply or a number too long") from None


def _storage(
    c: ProblemCollector, data: dict[str, Any]
) -> tuple[str | None, S3Objects | None, tuple[TargetSpec, ...]]:
    storage = c.obj(data, "storage", "storage", required=True)
    if storage is None:
        return None, None, ()
    stype = c.text(storage.get("type"), "storage.type", required=True, max_len=64)
    if stype is not None and stype != "dracoon":
        c.add("storage.type", f'unsupported storage type {_token(stype)}; only "dracoon" is supported')
        stype = None
    extra = c.obj(storage, "extra", "storage.extra", required=True)
    if extra is None:
        return stype, None, ()
    s3_obj = c.obj(extra, "aws.s3", _S3, required=True)
    s3 = _s3(c, s3_obj) if s3_obj is not None else None
    dracoon = c.obj(extra, "dracoon", "storage.extra.dracoon", required=False)
    targets = _targets(c, dracoon.get("targets")) if dracoon is not None else ()
    return stype, s3, targets


def _s3(c: ProblemCollector, s3: dict[str, Any]) -> S3Objects | None:
    bucket = c.text(s3.get("bucket"), f"{_S3}.bucket", required=True)
    if bucket is not None and not _BUCKET.fullmatch(bucket):
        c.add(f"{_S3}.bucket", "must be a bucket name (letters, digits, '.', '-', '_', no '..', "
              "a letter or digit first and last)")
        bucket = None
    raw = s3.get("keys")
    path = f"{_S3}.keys"
    if not isinstance(raw, list):
        c.add(path, "is required" if raw is None else f"must be an array, got {json_kind(raw)}")
        return None
    before = len(c.problems) + c.dropped
    keys: list[str] = []
    for i, item in enumerate(raw):
        if isinstance(item, list):
            for j, sub in enumerate(item):
                _key(c, sub, f"{path}[{i}][{j}]", keys)
        else:
            _key(c, item, f"{path}[{i}]", keys)
    unique = tuple(dict.fromkeys(keys))
    if len(unique) > MAX_KEYS:
        c.add(path, f"has too many keys ({len(unique)}, at most {MAX_KEYS})")
    elif not unique and len(c.problems) + c.dropped == before:
        c.add(path, "must contain at least one non-empty key")
    return S3Objects(bucket, unique) if bucket is not None and unique else None


def _key(c: ProblemCollector, value: object, path: str, keys: list[str]) -> None:
    if value == "":
        return
    if not isinstance(value, str):
        c.add(path, f"must be a string, got {json_kind(value)}")
        return
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        c.add(path, "is not valid Unicode (contains a lone surrogate escape)")
        return
    if size > MAX_KEY_BYTES:
        c.add(path, f"is too long ({size} bytes, S3 allows at most {MAX_KEY_BYTES})")
    elif "\x00" in value:
        c.add(path, "contains a NUL character")
    else:
        keys.append(value)


def _targets(c: ProblemCollector, raw: object) -> tuple[TargetSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.add(_TARGETS, f"must be an array, got {json_kind(raw)}")
        return ()
    if len(raw) > MAX_TARGETS:
        c.add(_TARGETS, f"has too many targets ({len(raw)}, at most {MAX_TARGETS})")
        return ()
    specs = []
    for i, item in enumerate(raw):
        where = f"{_TARGETS}[{i}]"
        if not isinstance(item, dict):
            c.add(where, f"must be an object, got {json_kind(item)}")
            continue
        path = item.get("path")
        if path == "":
            path_ok = True  # the parent room itself
        else:
            path = c.text(path, f"{where}.path", required=True, max_len=MAX_TEMPLATE_LENGTH)
            path_ok = path is not None
            for problem in check_path_template(path) if path is not None else []:
                c.add(f"{where}.path", problem)
                path_ok = False
        expiration = c.text(item.get("expiration"), f"{where}.expiration", required=False)
        try:
            parse_expiration(expiration)
        except ExpirationError as e:
            c.add(f"{where}.expiration", str(e))
        if path_ok and isinstance(path, str):
            specs.append(TargetSpec(path, (expiration or "").strip() or None))
    return tuple(specs)


def _meeting(c: ProblemCollector, data: dict[str, Any]) -> Meeting | None:
    m = c.obj(data, "meeting", "meeting", required=True)
    if m is None:
        return None
    meeting_id = c.integer(m.get("id"), "meeting.id", required=True, minimum=1)
    tz_name = c.text(m.get("timezone"), "meeting.timezone", required=False, max_len=64) or "UTC"
    zone = _zone(tz_name)
    if zone is None:
        c.add("meeting.timezone", f'unknown IANA time zone {_token(tz_name)} (e.g. "Europe/Berlin")')
    date_text = c.text(m.get("date"), "meeting.date", required=True, max_len=64)
    date = _parse_date(c, date_text) if date_text is not None else None
    mtype = _meeting_type(c, c.obj(m, "type", "meeting.type", required=False) or {})
    user = _person(c, c.obj(m, "user", "meeting.user", required=False) or {}, "meeting.user")
    guest = _person(c, c.obj(m, "guest", "meeting.guest", required=False) or {}, "meeting.guest")
    description = c.text(m.get("description"), "meeting.description", required=False, max_len=64 * 1024)
    if meeting_id is None or zone is None or date is None:
        return None
    return Meeting(meeting_id, date.astimezone(zone), tz_name, mtype, user, guest, description)


def _zone(name: str) -> ZoneInfo | None:
    if not _ZONE.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _parse_date(c: ProblemCollector, text: str) -> datetime | None:
    m = _RFC3339.fullmatch(text)
    if m is None:
        c.add("meeting.date", f"must be an RFC 3339 date-time with an offset, e.g. {_DATE_EXAMPLE}")
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    if m.group(8):
        tz: tzinfo = UTC
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            c.add("meeting.date", "has an invalid offset")
            return None
        tz = timezone((-1 if m.group(9) == "-" else 1) * timedelta(hours=oh, minutes=om))
    if not 1970 <= year <= 9899:
        c.add("meeting.date", "is out of range (years 1970 to 9899)")
        return None
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        c.add("meeting.date", "is not a valid date-time (a field is out of range)")
        return None


def _meeting_type(c: ProblemCollector, t: dict[str, Any]) -> MeetingType:
    name = c.text(t.get("name"), "meeting.type.name", required=False)
    duration = c.integer(t.get("duration"), "meeting.type.duration", required=False, minimum=0)
    raw_id = t.get("id")
    type_id: str | None = None
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        type_id = str(raw_id)
    elif isinstance(raw_id, str) or raw_id is None:
        type_id = (c.text(raw_id, "meeting.type.id", required=False, max_len=64) or "").strip() or None
    else:
        c.add("meeting.type.id", f"must be an integer or a string, got {json_kind(raw_id)}")
    return MeetingType(name, duration, type_id)


def _person(c: ProblemCollector, p: dict[str, Any], path: str) -> Person:
    name = c.text(p.get("name"), f"{path}.name", required=False)
    email = c.text(p.get("email"), f"{path}.email", required=False, max_len=254)
    return Person(name, email)


def _instance(c: ProblemCollector, data: dict[str, Any]) -> Instance | None:
    inst = c.obj(data, "instance", "instance", required=True)
    if inst is None:
        return None
    domain = c.text(inst.get("domain"), "instance.domain", required=True, max_len=253)
    if domain is not None and not _DOMAIN.fullmatch(domain):
        c.add("instance.domain", "must be a host name (letters, digits, '-', '_' and single dots)")
        domain = None
    if domain is not None:
        # Host names are case-insensitive: one instance, one config entry, one $instance room.
        domain = domain.rstrip(".").lower()
    alias = c.text(inst.get("alias"), "instance.alias", required=False)
    return Instance(domain, alias) if domain is not None else None


def _customer_id(c: ProblemCollector, data: dict[str, Any]) -> str | None:
    extra = c.obj(data, "extra", "extra", required=False)
    if extra is None:
        return None
    value = extra.get("customerId")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return c.text(value, "extra.customerId", required=False)
