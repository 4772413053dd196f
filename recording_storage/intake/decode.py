"""One queue, two message kinds: job messages and S3 event notifications, also SNS-wrapped.

``decode_message`` is the ``MessageHandler``'s decoder. What happens to each kind:

* a job message (``docs/job-message.md``) -> one ``MessageJob``, parsed by ``parse_job_message``
  with all its checks; also when wrapped in an SNS envelope (raw delivery off);
* an S3 event -> one ``EventJob`` per created object that a rule claims. Other event names are
  logged and skipped. An object no rule claims is logged (bucket and key hash; the key itself
  only with ``log.include_pii``) and counted (``unmatched_objects_total``) and is *not* a job:
  it stays in S3, never deleted, and the message is acknowledged, since retrying cannot change
  the answer. Exception: with no rules configured at all, an event carrying created objects is
  a permanent ``no_routing_rules`` error, so it waits in the DLQ until rules exist;
* ``s3:TestEvent`` (sent once when a notification is configured) -> no jobs, logged at info;
* an EventBridge "Object Created" event -> permanent error: the format is not supported, route
  S3 event notifications to SQS (directly or through SNS) instead.

A malformed event raises ``InvalidJobMessage`` listing every problem with its field path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..errors import InvalidJobMessage, JobProblem, PermanentError
from ..events import EventJob, Routes, is_test_event, load_routes, parse_s3_event
from ..jobs import MAX_BODY_BYTES, looks_like_s3_event, parse_job_message
from ..targets import MessageJob, TransferJob

if TYPE_CHECKING:
    from ..config import AppConfig

__all__ = ["DecodeMetrics", "Decoder", "decode_message", "make_decoder"]

log = structlog.get_logger(__name__)

Decoder = Callable[[str], list[TransferJob]]


class DecodeMetrics(Protocol):
    """What decoding reports (``metrics.Metrics`` fits): each S3 object no rule claims."""

    def unmatched_object(self) -> None: ...


def _json_object(text: str | bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` (the job parser then reports precisely why)."""
    if len(text) > MAX_BODY_BYTES:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _is_sns(data: dict[str, Any]) -> bool:
    return data.get("Type") == "Notification" and isinstance(data.get("Message"), str)


def decode_message(
    body: str | bytes,
    routes: Routes,
    *,
    include_pii: bool = False,
    metrics: DecodeMetrics | None = None,
) -> list[TransferJob]:
    """The jobs a queue message asks for (possibly none); raises permanent errors when invalid."""
    data = _json_object(body)
    if data is None:
        return [MessageJob(parse_job_message(body), include_pii=include_pii)]
    prefix = ""
    if _is_sns(data):
        inner_text: str = data["Message"]
        inner = _json_object(inner_text)
        if inner is None:
            raise InvalidJobMessage([JobProblem("Message", "the SNS envelope does not carry a JSON object")])
        if not looks_like_s3_event(inner):
            return [MessageJob(parse_job_message(inner_text), include_pii=include_pii)]
        data, prefix = inner, "Message."
    elif not looks_like_s3_event(data):
        return [MessageJob(parse_job_message(body), include_pii=include_pii)]
    if is_test_event(data):
        bucket = data.get("Bucket")
        log.info("s3_test_event_ignored", bucket=bucket if isinstance(bucket, str) else None)
        return []
    if data.get("source") == "aws.s3" and "detail" in data:
        raise InvalidJobMessage(
            "this is an EventBridge S3 event, which is not supported; send S3 event notifications "
            "to the queue (directly or through SNS) instead"
        )
    event = parse_s3_event(data, prefix=prefix)
    for event_name, bucket in event.ignored:
        log.info("s3_event_ignored", event_name=event_name, bucket=bucket)
    if event.records and not routes.rules:
        raise PermanentError(
            "an S3 event arrived but no routing rules are configured (routing.rules / routing.file); "
            "the message is kept in the DLQ for redrive once rules exist",
            code="no_routing_rules",
        )
    jobs: list[TransferJob] = []
    for record in event.records:
        match = routes.route(record)
        if match is None:
            extra = {"key": record.key} if include_pii else {}
            log.warning("s3_object_unmatched", bucket=record.bucket, key_hash=record.key_hash,
                        key_length=len(record.key), event_name=record.event_name, **extra)
            if metrics is not None:
                metrics.unmatched_object()
            continue
        jobs.append(EventJob(record, match, include_pii=include_pii))
    return jobs


def make_decoder(
    cfg: AppConfig, *, metrics: DecodeMetrics | None = None, routes: Routes | None = None
) -> Decoder:
    """The decoder for ``MessageHandler``: loads and validates the rules now (``ConfigError``)."""
    routes = load_routes(cfg) if routes is None else routes
    if routes.rules:
        log.info("routing_rules_loaded", rules=len(routes.rules), buckets=routes.buckets)
    return partial(decode_message, routes=routes, include_pii=cfg.log.include_pii, metrics=metrics)
