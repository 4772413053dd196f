"""S3 event notifications as jobs, for producers that cannot write our job message (Kazoo & co).

Pieces, in the order a message meets them after ``intake.decode`` (job messages and S3
events, also SNS-wrapped, on one queue; ``s3:TestEvent`` ignored; unmatched objects logged,
counted, left in S3) recognised it as an S3 event (operator docs: ``docs/s3-events.md``):

* ``records``: an S3 notification -> validated ``ObjectRecord`` s (keys URL-decoded).
* ``rules`` / ``loader``: routing rules (bucket + key glob/regex with named captures, ``vars``
  with lookups, instance, targets, file name), validated at start-up; first match wins.
* ``templates``: ``{name}`` templates for instance, room paths and file names.
* ``job``: ``EventJob``, one object as a ``TransferJob``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .job import EventJob
from .loader import compile_rules, glob_to_regex, load_routes
from .records import ObjectRecord, S3Event, is_test_event, key_digest, parse_s3_event
from .rules import BUILTIN_VARIABLES, InvalidRoute, RouteMatch, Routes, Rule

if TYPE_CHECKING:
    from ..config import AppConfig

__all__ = [
    "BUILTIN_VARIABLES",
    "EventJob",
    "InvalidRoute",
    "ObjectRecord",
    "RouteMatch",
    "Routes",
    "Rule",
    "S3Event",
    "compile_rules",
    "glob_to_regex",
    "is_test_event",
    "key_digest",
    "load_routes",
    "parse_s3_event",
    "routed_buckets",
]


def routed_buckets(cfg: AppConfig) -> list[str]:
    """Exact bucket names of the routing rules (glob rules name no single bucket)."""
    return load_routes(cfg).buckets
