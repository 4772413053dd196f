"""Which rooms a job's recordings go to, and when they expire.

Rules, each chosen on purpose:

* Targets in the message win. Only when the message has none (missing, ``null`` or ``[]``) do
  the instance's configured rules apply: every rule whose ``meetingTypeId`` equals the meeting's
  ``type.id`` (compared as strings) or is ``*any*``; the union of their ``copyTo`` lists.
* No target at all is a ``NoTargets`` permanent error. The original meant "upload into the
  parent room" here but crashed (bug 2); sending a recording somewhere nobody configured is
  worse than a visible DLQ entry. To target the parent room itself, use the path ``""`` or
  ``"/"`` (the original silently dropped such entries).
* The same room listed twice (after expansion, compared as DRACOON compares names: NFC, ignoring
  case; see ``names.node_name_key``) is uploaded once, under the first listing's spelling, keeping
  the *longest* retention: no expiry beats any expiry, a later date beats an earlier one. This is
  independent of rule order and never deletes a recording earlier than some rule asked to keep
  it. A merge that drops a retention is logged (``targets_merged``), naming both listings.
* Expirations count from the meeting date (``meeting.date`` is required), not from "now" as in
  the original, so a redelivery or a backlog does not extend retention. A target whose expiry is
  already at or before ``now`` is an ``ExpirationPassed`` permanent error for the whole job:
  DRACOON refuses such uploads (-80006), and silently skipping a target is the silent-loss class
  of bug this service exists to avoid.

Problems in message targets raise ``InvalidJobMessage`` (field paths into the message);
problems in configured targets raise ``InvalidTargetConfig`` (paths into the instance config).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from ..errors import InvalidJobMessage, JobProblem, PermanentError
from ..expiration import ExpirationError, parse_expiration
from ..instances import ANY_MEETING_TYPE, DracoonAccount, TargetSpec
from ..node_names import expand_path_template, node_name_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..jobs import JobMessage

__all__ = [
    "ExpirationPassed",
    "InvalidTargetConfig",
    "NoTargets",
    "ResolvedTarget",
    "merge_same_rooms",
    "resolve_targets",
    "template_variables",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ResolvedTarget:
    """One destination room, as segments below the parent room (``()`` = the parent room)."""

    segments: tuple[str, ...]
    expire_at: datetime | None
    expiration_text: str | None

    @property
    def path(self) -> str:
        """For logs: the relative path, ``""`` for the parent room."""
        return "/".join(self.segments)


class NoTargets(PermanentError):
    """Neither the message nor the instance configuration names a room for this meeting."""

    code = "no_targets"


class ExpirationPassed(PermanentError):
    """A target's expiry is already in the past: the upload would be refused or deleted at once."""

    code = "expiration_passed"


class InvalidTargetConfig(PermanentError):
    """The instance's configured targets are unusable for this meeting; lists every problem."""

    code = "invalid_target_config"

    def __init__(self, problems: Sequence[JobProblem]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configured targets: " + "; ".join(str(p) for p in self.problems))


def template_variables(job: JobMessage) -> dict[str, str | None]:
    """Values for path templates; dates are the meeting date in the meeting's time zone."""
    d = job.meeting.date
    return {
        "instance": job.instance.domain,
        "meetingType": job.meeting.type.name or None,
        "meetingId": str(job.meeting.id),
        "year": f"{d.year:04d}",
        "month": f"{d.month:02d}",
        "day": f"{d.day:02d}",
    }


def _selected(job: JobMessage, account: DracoonAccount) -> tuple[list[tuple[str, TargetSpec]], bool]:
    """(field path, spec) pairs and whether they came from the message."""
    if job.targets:
        return [(f"storage.extra.dracoon.targets[{i}]", t) for i, t in enumerate(job.targets)], True
    type_id = job.meeting.type.id
    chosen: list[tuple[str, TargetSpec]] = []
    for r, rule in enumerate(account.targets):
        rule_id = rule.meeting_type_id.strip()
        if rule_id == ANY_MEETING_TYPE or (type_id is not None and rule_id == type_id):
            base = f"instances[{account.domain}].targets[{r}].copyTo"
            chosen.extend((f"{base}[{c}]", spec) for c, spec in enumerate(rule.copy_to))
    if not chosen:
        shown = type_id if type_id is not None else "(none given)"
        raise NoTargets(
            f"no targets: the message has none and instance {account.domain} has no rule for "
            f"meeting type {shown} or {ANY_MEETING_TYPE}"
        )
    return chosen, False


def _longer(a: ResolvedTarget, b: ResolvedTarget) -> ResolvedTarget:
    """The one that keeps the recording longer; ``a`` on a tie (earlier listing wins)."""
    if a.expire_at is None:
        return a
    if b.expire_at is None or b.expire_at > a.expire_at:
        return b
    return a


def merge_same_rooms(listed: Iterable[tuple[str, ResolvedTarget]]) -> list[ResolvedTarget]:
    """One target per DRACOON room, in first-listing order, keeping the longest retention.

    ``listed`` pairs each target with where it was listed (a field path, for the log line; room
    paths are not logged, as templates can put names into them). Job messages and routing rules
    both merge here, so a room has one identity everywhere.
    """
    merged: dict[tuple[str, ...], tuple[str, ResolvedTarget]] = {}
    for where, target in listed:
        key = tuple(node_name_key(s) for s in target.segments)
        if key not in merged:
            merged[key] = (where, target)
            continue
        first_where, first = merged[key]
        kept = _longer(first, target)
        if first.expire_at != target.expire_at:
            kept_where, dropped_where, dropped = (
                (first_where, where, target) if kept is first else (where, first_where, first)
            )
            log.info(
                "targets_merged",
                kept_target=kept_where,
                dropped_target=dropped_where,
                kept_expiration=kept.expiration_text,
                dropped_expiration=dropped.expiration_text,
            )
            merged[key] = (kept_where, replace(kept, segments=first.segments))
    return [target for _, target in merged.values()]


def resolve_targets(job: JobMessage, account: DracoonAccount, *, now: datetime) -> list[ResolvedTarget]:
    """The rooms (relative to ``account.parent_room_id``) this job uploads to, in listing order.

    Raises ``InvalidJobMessage``, ``InvalidTargetConfig``, ``NoTargets`` or ``ExpirationPassed``
    (all permanent). ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    specs, from_message = _selected(job, account)
    variables = template_variables(job)
    problems: list[JobProblem] = []
    listed: list[tuple[str, ResolvedTarget]] = []
    for where, spec in specs:
        segments, found = expand_path_template(spec.path, variables)
        problems.extend(JobProblem(f"{where}.path", p) for p in found)
        expire_at = None
        text = (spec.expiration or "").strip() or None
        try:
            exp = parse_expiration(text)
            expire_at = exp.expire_at(job.meeting.date) if exp else None
        except ExpirationError as e:
            problems.append(JobProblem(f"{where}.expiration", str(e)))
        if found:
            continue
        listed.append((where, ResolvedTarget(segments, expire_at, text if expire_at else None)))
    if problems:
        raise InvalidJobMessage(problems) if from_message else InvalidTargetConfig(problems)
    targets = merge_same_rooms(listed)
    expired = [(t, t.expire_at) for t in targets if t.expire_at is not None and t.expire_at <= now]
    if expired:
        first, at = expired[0]
        raise ExpirationPassed(
            f"{len(expired)} target(s) already expired: e.g. {first.expiration_text!r} after the meeting "
            f"date ended at {at.isoformat()}"
        )
    return targets
