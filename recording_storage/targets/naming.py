"""File names and upload notes for recordings in DRACOON.

File name, compatible with the original (original-service.md §3 "File name")::

    {email}--{customerId}--{2006-01-02_15-04_MST}.{ext}

with the date in the meeting's time zone. Differences, each on purpose:

* No e-mail in the message (it is optional here, see ``jobs``): ``meeting-{id}`` takes its
  place, so recordings of different meetings at the same minute do not share a name.
* Several S3 keys in one job: ``--{key stem}`` is appended before the extension so each key gets
  its own name; when two keys share a stem (as DRACOON compares names), ``-{8 hex of
  sha256(key)}`` is added to both. The stem is the key's as it is, spaces included (DRACOON
  allows them); only forbidden and control characters go. Releases before 2026-12 turned its
  spaces into ``_``: ``earlier_file_names_for`` gives those names, so a job that release
  uploaded is still recognised (by its notes marker) when it is delivered again.
* The extension comes from the content type first, then from the key's *last* suffix (the
  original took the first and crashed without one, bug 4), else ``mp4`` as the original did:
  producers of this service upload meeting recordings, which are MP4 unless they say otherwise.
* Lengths are counted in characters (UTF-16 units), never splitting one; the whole name is at
  most 150. The customer id keeps the original's budget of ``100 - len(email) - len(ext)``.

The name depends only on the job and the key, so a redelivered job produces the same names.

Notes carry a machine marker ``rs:src=<16 hex>:etag=<etag>`` identifying the S3 source, which
lets the transfer recognise its own earlier upload after a redelivery. Names and e-mails go
into notes only when asked (``include_pii``), unlike the original, which always wrote them.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import TYPE_CHECKING

from ..node_names import (
    MAX_NAME_LENGTH,
    name_length,
    node_name_key,
    replace_bad_chars,
    replace_control_chars,
    sanitize_node_name,
    truncate_name,
)

if TYPE_CHECKING:
    from datetime import datetime

    from ..jobs import JobMessage, Person

__all__ = [
    "DEFAULT_EXTENSION",
    "MAX_NOTES_LENGTH",
    "earlier_file_names_for",
    "extension_for",
    "file_name_for",
    "notes_with_sha256",
    "parse_content_sha256",
    "parse_source_marker",
    "source_marker",
    "upload_notes",
]

DEFAULT_EXTENSION = "mp4"
MAX_NOTES_LENGTH = 255
_STEM_LENGTH = 40
_CONTENT_TYPES = {
    "video/mp4": "mp4",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/ogg": "ogg",
    "video/ogg": "ogv",
    "audio/opus": "opus",
    "video/webm": "webm",
    "audio/webm": "webm",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
    "audio/aac": "aac",
    "audio/flac": "flac",
    "video/mp2t": "ts",
}
_SUFFIX = re.compile(r"[A-Za-z0-9]{1,10}", re.ASCII)
_ETAG_CHARS = re.compile(r"[^0-9A-Za-z-]", re.ASCII)
_MARKER = re.compile(r"rs:src=[0-9a-f]{16}:etag=[0-9A-Za-z-]{1,64}(?![0-9A-Za-z-])", re.ASCII)
_MARKER_SHA256 = re.compile(_MARKER.pattern + r":sha256=([0-9a-f]{64})(?![0-9a-f])", re.ASCII)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _basename(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def extension_for(key: str, content_type: str | None) -> str:
    """The file extension: known content type, else the key's last suffix, else ``mp4``."""
    if content_type:
        mapped = _CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
        if mapped:
            return mapped
    stem, dot, suffix = _basename(key).rpartition(".")
    if dot and stem and _SUFFIX.fullmatch(suffix):
        return suffix.lower()
    return DEFAULT_EXTENSION


def _strip_chars(text: str, *, space: str) -> str:
    """The original's RemoveSpecialChars (plus control characters), spaces replaced."""
    return replace_bad_chars(text, "").strip().replace(" ", space)


# What a stem's spaces become: kept now; "_" in releases before 2026-12 (earlier_file_names_for).
_SPACE, _EARLIER_SPACE = " ", "_"


def _stem(key: str, space: str = _SPACE) -> str:
    base = _basename(key)
    stem, dot, _ = base.rpartition(".")
    stem = truncate_name(_strip_chars(stem if dot and stem else base, space=space), _STEM_LENGTH)
    # A cut can end on a space ("{stem} .mp4" is legal but looks broken); earlier names stay exact.
    return stem.rstrip() if space == _SPACE else stem


@functools.lru_cache(maxsize=16)
def _shared_stems(keys: tuple[str, ...], space: str = _SPACE) -> frozenset[str]:
    """Stems (as ``node_name_key``) that several keys of one job share, worked out once per job:
    comparing every key with every other took seconds for a 1,000-key job."""
    seen: set[str] = set()
    shared: set[str] = set()
    for key in keys:
        stem = node_name_key(_stem(key, space))
        (shared if stem in seen else seen).add(stem)
    return frozenset(shared)


def _tzname(date: datetime) -> str:
    return _strip_chars(date.tzname() or "UTC", space="_")


def file_name_for(job: JobMessage, key: str, content_type: str | None, *, key_count: int) -> str:
    """The DRACOON file name for one S3 key of ``job`` (see the module docstring)."""
    return _file_name(job, key, content_type, key_count=key_count, space=_SPACE)


def earlier_file_names_for(
    job: JobMessage, key: str, content_type: str | None, *, key_count: int
) -> tuple[str, ...]:
    """Names earlier releases gave this key that differ from today's (to recognise, never to create)."""
    earlier = _file_name(job, key, content_type, key_count=key_count, space=_EARLIER_SPACE)
    return () if earlier == file_name_for(job, key, content_type, key_count=key_count) else (earlier,)


def _file_name(job: JobMessage, key: str, content_type: str | None, *, key_count: int, space: str) -> str:
    ext = extension_for(key, content_type)
    date = job.meeting.date
    date_part = f"{date:%Y-%m-%d_%H-%M}_{_tzname(date)}"
    suffix = ""
    if key_count > 1:
        stem = _stem(key, space)
        clash = node_name_key(stem) in _shared_stems(job.s3.keys, space)
        if clash or not stem:
            stem = f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}".lstrip("-")
        suffix = f"--{stem}"
    # Date, stem and extension always survive (<= ~90 units); prefix and extra share the rest.
    head_room = MAX_NAME_LENGTH - name_length(f"----{date_part}{suffix}.{ext}")
    email = _strip_chars(job.meeting.user.email or "", space="")
    prefix = email or f"meeting-{job.meeting.id}"
    extra_budget = min(100 - name_length(email) - name_length(ext), head_room - name_length(prefix))
    extra = _strip_chars(job.customer_id or "", space="+")
    extra = truncate_name(extra, extra_budget) if extra_budget > 0 else ""
    prefix = truncate_name(prefix, head_room - name_length(extra))
    # Only changes names that would otherwise be refused (e.g. an e-mail starting with '-').
    return sanitize_node_name(f"{prefix}--{extra}--{date_part}{suffix}.{ext}")


def source_marker(bucket: str, key: str, etag: str) -> str:
    """The notes marker identifying one version of one S3 object, without revealing the key."""
    digest = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]
    clean = _ETAG_CHARS.sub("", etag)[:64] or "none"
    return f"rs:src={digest}:etag={clean}"


def parse_source_marker(notes: str | None) -> str | None:
    """The marker found in a node's notes, or ``None``; compare it with ``source_marker``."""
    if not notes:
        return None
    m = _MARKER.search(notes)
    return m.group(0) if m else None


def notes_with_sha256(notes: str, sha256: str) -> str:
    """``notes`` with the content's SHA-256 added to its marker (``...:etag=<etag>:sha256=<hex>``).

    The marker still parses as before (``parse_source_marker`` stops at the ``:``), so files
    with and without the digest are recognised alike; the human summary is cut to keep the
    notes within 255 characters. Notes without a marker are returned unchanged.
    """
    found = _MARKER.search(notes)
    if found is None:
        return notes
    marker = f"{found.group(0)}:sha256={sha256}"
    human = truncate_name(notes[: found.start()].rstrip("\n"), MAX_NOTES_LENGTH - name_length(marker) - 1)
    return f"{human}\n{marker}" if human else marker


def parse_content_sha256(notes: str | None) -> str | None:
    """The content SHA-256 recorded in a marker by ``notes_with_sha256``, or ``None``."""
    found = _MARKER_SHA256.search(notes or "")
    return found.group(1) if found else None


def _person(label: str, person: Person) -> str | None:
    name = person.name or ""
    email = person.email or ""
    text = f"{name} ({email})" if name and email else name or email
    return f"{label}: {text}." if text else None


def _clean_line(text: str) -> str:
    """Notes are free text: only control characters (and line breaks inside a value) go."""
    return replace_control_chars(text, " ")


def upload_notes(job: JobMessage, obj_key: str, bucket: str, etag: str, *, include_pii: bool = False) -> str:
    """Notes for the uploaded file: a short human summary, then the source marker line.

    At most 255 characters (DRACOON's limit); the marker always survives, the summary is cut.
    """
    m = job.meeting
    d = m.date
    lines = [f"Meeting ID: {m.id}."]
    if m.type.name:
        minutes = f" ({m.type.duration} min)" if m.type.duration is not None else ""
        lines.append(f"Type: {m.type.name}{minutes}.")
    lines.append(f"Date: {_DAYS[d.weekday()]}, {d.day} {_MONTHS[d.month - 1]} {d:%Y %H:%M:%S} {_tzname(d)}.")
    if include_pii:
        lines.extend(x for x in (_person("User", m.user), _person("Guest", m.guest)) if x)
        if job.customer_id:
            lines.append(f"Extra info: {job.customer_id}.")
    marker = source_marker(bucket, obj_key, etag)
    human = "\n".join(_clean_line(line) for line in lines)
    human = truncate_name(human, MAX_NOTES_LENGTH - name_length(marker) - 1)
    return f"{human}\n{marker}"
