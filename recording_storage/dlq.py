"""``recording-storage dlq list|redrive``: see why jobs were dead-lettered, and send them back.

The service dead-letters with the reason in message attributes (``rs-reason-code``,
``rs-reason``, ``rs-receive-count``, see ``sqs.JobQueue.dead_letter``); messages the queue's own
RedrivePolicy moved carry none and are shown as ``redrive_policy``. Listing receives every DLQ
message for a short lease and releases it again at once, so it leaves the DLQ as it was (SQS
only counts one more receive). Redrive sends the body unchanged to the job queue with marks
saying where it came from, then deletes the dead letter, and prints one line per message, so
the terminal (or a CI log) records what was redriven. Bodies are never printed: they hold names
and e-mail addresses.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from .config import AppConfig
from .errors import InvalidJobMessage
from .jobs import parse_job_message
from .logs import redact_text
from .sqs import JobQueue, QueueMessage

__all__ = ["DeadLetter", "list_dead_letters", "redrive_dead_letters"]

LEASE = 60  # seconds a listed message stays hidden if this process dies before releasing it
POLICY_REASON = "redrive_policy"  # moved by the queue's RedrivePolicy, not by the service


@dataclass(frozen=True)
class DeadLetter:
    """What ``dlq list`` shows of one message (nothing personal)."""

    message_id: str
    reason_code: str
    error: str
    age_seconds: float
    receive_count: str
    instance: str
    keys: tuple[str, ...]

    @classmethod
    def of(cls, msg: QueueMessage, now: float) -> DeadLetter:
        sent = int(msg.attributes.get("SentTimestamp", "0") or 0) / 1000
        reason = msg.attribute("rs-reason-code") or POLICY_REASON
        error = (msg.attribute("rs-reason") or "moved by the queue's RedrivePolicy (maxReceiveCount reached)")
        instance, keys = _job_summary(msg.body)
        receives = msg.attribute("rs-receive-count") or msg.attributes.get("ApproximateReceiveCount", "?")
        first_line = error.strip().splitlines()[0] if error.strip() else "-"
        return cls(msg.message_id, reason, redact_text(first_line),
                   max(0.0, now - sent) if sent else 0.0, receives, instance, keys)

    def as_json(self) -> str:
        return json.dumps({"message_id": self.message_id, "reason": self.reason_code, "error": self.error,
                           "age_seconds": round(self.age_seconds), "receive_count": self.receive_count,
                           "instance": self.instance, "keys": list(self.keys)})


def _job_summary(body: str) -> tuple[str, tuple[str, ...]]:
    """The instance and S3 keys of a job body, or what can be read of an invalid one."""
    try:
        job = parse_job_message(body)
    except InvalidJobMessage:
        try:
            data = json.loads(body)
            domain = str(((data.get("instance") or {}).get("domain")) or "-")
        except (ValueError, AttributeError):
            domain = "-"
        return domain, ()
    return job.instance_domain, job.keys


async def _walk(queue: JobQueue, limit: int | None) -> AsyncIterator[QueueMessage]:
    """Every DLQ message once (each leased for LEASE seconds), up to ``limit``."""
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        batch = await queue.receive_dead_letters(10, LEASE)
        fresh = [m for m in batch if m.message_id not in seen]
        if not fresh:
            return
        for msg in fresh:
            if limit is not None and len(seen) >= limit:
                await queue.release_dead_letter(msg)
                continue
            seen.add(msg.message_id)
            yield msg


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


async def list_dead_letters(
    config: AppConfig, out: IO[str], *, reason: str | None = None, limit: int = 1000, as_json: bool = False
) -> int:
    """Print the dead letters (optionally of one reason code); returns how many were shown."""
    shown: list[DeadLetter] = []
    held: list[QueueMessage] = []
    now = time.time()
    async with JobQueue(config.aws, config.queue, base_dir=config.base_dir) as queue:
        try:
            async for msg in _walk(queue, limit):
                held.append(msg)
                letter = DeadLetter.of(msg, now)
                if reason is None or letter.reason_code == reason:
                    shown.append(letter)
        finally:
            for msg in held:
                await queue.release_dead_letter(msg)
    if as_json:
        for letter in shown:
            print(letter.as_json(), file=out)
        return len(shown)
    if not shown:
        print(f"no dead letters{f' with reason {reason}' if reason else ''} in {config.queue.dlq_name!r}",
              file=out)
        return 0
    header = f"{'MESSAGE ID':<36}  {'REASON':<22} {'AGE':>5} {'RECV':>4}  {'INSTANCE':<24} KEYS / ERROR"
    print(header, file=out)
    for d in shown:
        keys = ", ".join(d.keys[:3]) + (f" (+{len(d.keys) - 3})" if len(d.keys) > 3 else "") or "-"
        print(f"{d.message_id:<36}  {d.reason_code:<22} {_age(d.age_seconds):>5} {d.receive_count:>4}  "
              f"{d.instance:<24} {keys}\n{'':<38}{d.error}", file=out)
    print(f"{len(shown)} dead letter(s){f' with reason {reason}' if reason else ''}", file=out)
    return len(shown)


async def redrive_dead_letters(
    config: AppConfig, out: IO[str], *, reason: str | None = None, limit: int | None = None
) -> int:
    """Move dead letters (of one reason code, at most ``limit``) back to the job queue; returns
    how many were moved. The others are released untouched."""
    moved = 0
    skipped: list[QueueMessage] = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    async with JobQueue(config.aws, config.queue, base_dir=config.base_dir) as queue:
        try:
            async for msg in _walk(queue, None):
                code = msg.attribute("rs-reason-code") or POLICY_REASON
                if limit is not None and moved >= limit:
                    skipped.append(msg)
                    break
                if reason is not None and code != reason:
                    skipped.append(msg)
                    continue
                marks = {"rs-redriven-from": msg.message_id, "rs-redriven-reason-code": code,
                         "rs-redriven-at": now}
                new_id = await queue.redrive(msg, marks)
                moved += 1
                print(f"redriven {msg.message_id} -> {new_id} (was {code})", file=out, flush=True)
        finally:
            for msg in skipped:
                await queue.release_dead_letter(msg)
    print(f"{moved} dead letter(s) redriven to {config.queue.name!r}", file=out)
    return moved
