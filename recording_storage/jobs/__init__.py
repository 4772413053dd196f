"""Job messages: the original service's JSON (original-service.md §1.1), validated in one pass.

``parse_job_message`` either returns a frozen ``JobMessage`` or raises one ``InvalidJobMessage``
listing every problem with its JSON path (``storage.extra.aws.s3.keys[2]``: the ``aws.s3`` key is
written as is). It never raises anything else, whatever the input: the original panicked on
wrong types (bugs 1-3), killing the process and poisoning the queue. Problem messages describe
bad values by type and length only, never echoing them, since messages carry names and e-mails.

Field decisions (compatible with what the original accepted, except where noted):

* Required: ``storage.type`` (only ``"dracoon"``), ``storage.extra["aws.s3"].bucket`` and
  ``.keys``, ``meeting`` with ``id`` (> 0) and ``date`` (RFC 3339 *with* an offset: a date
  without one is ambiguous), and ``instance.domain``.
* ``meeting.user.email`` is optional, unlike the original where it prefixed the file name:
  producers should be able to leave personal data out (data minimisation); the file name then
  uses ``meeting-<id>`` instead (see ``targets.naming``). All of ``user``, ``guest`` and ``type``
  are optional.
* ``keys`` elements are strings or arrays of strings (one level, flattened); empty strings are
  dropped, duplicates removed keeping the first; at least one key must remain, at most 1000, each
  at most 1024 UTF-8 bytes (S3's limit) and without NUL.
* ``storage.extra.dracoon.targets`` may be missing, ``null`` or empty: the instance's configured
  targets apply then (the original required the array). A target's ``expiration`` may be
  missing or ``null`` (no expiry; the original panicked). Paths and expirations are checked here
  already, so a bad template is reported with its exact field path.
* ``extra.customerId`` may be a string or an integer (the original panicked on non-strings).
* ``meeting.timezone`` must be an IANA name; missing or ``""`` means UTC, as in the original.
* ``instance.domain`` is restricted to host-name characters: it becomes part of the instance
  configurator's URL and of room names. It is lower-cased and loses a trailing dot.
* Unknown fields are ignored, so producers can add fields before this service reads them.
* Limits: body <= 256 KiB, <= 50 targets, bounded string lengths; at most 50 problems listed.
* An S3 event notification (or an SNS envelope) is recognised and reported as such.

``job_message_body`` writes a message (the inverse of the parser); every
producer in this repository (tests, bench, ``local-stack``) builds its jobs with them.
"""

from __future__ import annotations

from .build import job_message_body
from .model import Instance, JobMessage, Meeting, MeetingType, Person, S3Objects, looks_like_s3_event
from .parse import MAX_BODY_BYTES, MAX_KEY_BYTES, MAX_KEYS, MAX_PROBLEMS, MAX_TARGETS, parse_job_message

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_KEY_BYTES",
    "MAX_KEYS",
    "MAX_PROBLEMS",
    "MAX_TARGETS",
    "Instance",
    "JobMessage",
    "Meeting",
    "MeetingType",
    "Person",
    "S3Objects",
    "job_message_body",
    "looks_like_s3_event",
    "parse_job_message",
]
