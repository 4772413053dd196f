"""``EventJob``: one created S3 object, claimed by a routing rule, as a ``TransferJob``.

Decisions, each on purpose:

* One job per object. S3 sends one record per notification in practice; when a message holds
  several, they run one after another in record order, each idempotent on its own.
* Retention counts from the event time (when S3 created the object), like job messages count
  from the meeting date, so a backlog or a redelivery does not extend it; without an event time,
  from the moment of the transfer. An expiry already past is ``ExpirationPassed`` (permanent),
  exactly as for job messages.
* Rooms listed twice (after expansion, as DRACOON compares names: NFC, ignoring case) are
  uploaded once, keeping the longest retention, exactly as for job messages (``merge_same_rooms``).
* The file name depends only on the key and the rule, so a redelivery produces the same name
  and the upload marker in the notes recognises the earlier upload.
* Notes carry the rule and event time, plus the source marker; the key only with
  ``log.include_pii`` (keys may name people).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..instances import DracoonAccount
from ..node_names import replace_control_chars
from ..targets import (
    MAX_NOTES_LENGTH,
    ExpirationPassed,
    ResolvedTarget,
    merge_same_rooms,
    name_length,
    source_marker,
    truncate_name,
)
from .records import ObjectRecord
from .rules import InvalidRoute, RouteMatch
from .templates import render_file_name

__all__ = ["EventJob"]


@dataclass(frozen=True)
class EventJob:
    """A TransferJob for one object of an S3 event notification."""

    record: ObjectRecord
    match: RouteMatch
    include_pii: bool = False

    @property
    def instance_domain(self) -> str:
        return self.match.instance_domain

    @property
    def bucket(self) -> str:
        return self.record.bucket

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.record.key,)

    def describe(self) -> dict[str, object]:
        """Non-personal summary fields for log lines (the key only as its hash)."""
        return {
            "source": "s3_event",
            "route": self.match.rule.name,
            "instance": self.instance_domain,
            "bucket": self.record.bucket,
            "key_hash": self.record.key_hash,
            "event_name": self.record.event_name,
            "key_count": 1,
        }

    def targets(self, account: DracoonAccount, now: datetime) -> list[ResolvedTarget]:
        """The rule's rooms for this object; raises ``InvalidRoute`` or ``ExpirationPassed``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        base = self.record.event_time or now
        rule = self.match.rule
        problems: list[str] = []
        listed: list[tuple[str, ResolvedTarget]] = []
        for i, route in enumerate(rule.targets):
            segments, found = route.path.expand(self.match.values)
            if found:
                problems.extend(f"targets[{i}].path: {p}" for p in found)
                continue
            expire_at = route.expiration.expire_at(base) if route.expiration is not None else None
            target = ResolvedTarget(segments, expire_at, route.expiration_text if expire_at else None)
            listed.append((f"{rule.where}.targets[{i}]", target))
        if problems:
            raise InvalidRoute(f"{rule.where}: " + "; ".join(problems))
        targets = merge_same_rooms(listed)
        expired = [t for t in targets if t.expire_at is not None and t.expire_at <= now]
        if expired:
            first = expired[0]
            assert first.expire_at is not None
            raise ExpirationPassed(
                f"{len(expired)} target(s) already expired: {first.expiration_text!r} after the event time "
                f"ended at {first.expire_at.isoformat()}"
            )
        return targets

    def file_name(self, key: str, content_type: str | None) -> str:
        """The rule's file name template for this object (``{basename}`` unless configured)."""
        name, problems = render_file_name(self.match.rule.file_name, self.match.values)
        if problems:
            raise InvalidRoute(f"{self.match.rule.where}: file_name: " + "; ".join(problems))
        return name

    def earlier_file_names(self, key: str, content_type: str | None) -> tuple[str, ...]:
        """None: routed names have not changed between releases."""
        return ()

    def notes(self, key: str, bucket: str, etag: str) -> str:
        """A short human summary, then the source marker line (at most 255 characters)."""
        lines = [f"S3 object routed by rule {self.match.rule.name}."]
        if self.record.event_time is not None:
            lines.append(f"Created: {self.record.event_time:%Y-%m-%d %H:%M:%S %Z}.".replace(" .", "."))
        if self.include_pii:
            lines.append(f"Source: {bucket}/{key}")
        marker = source_marker(bucket, key, etag)
        human = "\n".join(replace_control_chars(line, " ") for line in lines)
        human = truncate_name(human, MAX_NOTES_LENGTH - name_length(marker) - 1)
        return f"{human}\n{marker}"
