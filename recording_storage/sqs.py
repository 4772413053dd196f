"""The SQS job queue and its dead-letter queue.

Leases are short and extended by the worker's heartbeat (``change_visibility``), so a crashed
worker's job comes back within a minute instead of the original's 12 hours. A message's fate
is decided by the worker; this module only carries it out: ``delete`` (done), ``release``
(retry later) or ``dead_letter`` (permanent failure, with the reason attached for an operator).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from botocore.exceptions import ClientError

from .aws import (
    AWS_ERRORS,
    ClientOwner,
    client_kwargs,
    error_codes,
    make_client_config,
    scrub,
    translate_error,
)
from .config import AwsConfig, QueueConfig, load_yaml_file
from .errors import ConfigError, ConfigProblem, PermanentError, RecordingStorageError, TransientError

__all__ = [
    "DLQ_ATTRIBUTES", "HELD_ATTRIBUTE", "OVERFLOW_ATTRIBUTES", "BodyStore", "JobQueue", "LeaseLost",
    "QueueMessage", "message_size",
]

log = structlog.get_logger(__name__)

MAX_VISIBILITY = 43200  # SQS's 12 h cap
MAX_WAIT = 20
MAX_BATCH = 10
# How long a delete waits for others to share its DeleteMessageBatch call. An AWS call costs the
# service about as much CPU as a small job's whole DRACOON part; at 8 workers, deletes within
# 50 ms of each other are common, and a message's lease outlasts the wait many times over.
DELETE_LINGER = 0.05
MAX_MESSAGE_ATTRIBUTES = 10
REASON_LIMIT = 1024  # bytes of UTF-8
# Long polls must never hit the HTTP read timeout, whatever aws.read_timeout says.
SQS_READ_TIMEOUT_FLOOR = MAX_WAIT + 10.0
# Names of the message attributes a dead-lettered copy carries.
DLQ_ATTRIBUTES = ("rs-reason-code", "rs-reason", "rs-source-message-id", "rs-receive-count")
# How often a job was held back for an account-wide problem (see ``JobQueue.hold``).
HELD_ATTRIBUTE = "rs-held-count"
MAX_DELAY = 900  # SQS's DelaySeconds cap
# Attributes a dead letter too large for the DLQ carries in addition (see ``_overflow``).
OVERFLOW_ATTRIBUTES = ("rs-body-bytes", "rs-body-sha256", "rs-body-location")
CLASSIC_MAX_SIZE = 262144  # SQS's MaximumMessageSize before 2025, and many queues' setting
OVERFLOW_MARGIN = 64  # bytes kept free below the DLQ's limit, against counting differences
# Stores a dead letter's full body: (bucket, key, body) -> its location (``s3://bucket/key``).
BodyStore = Callable[[str, str, bytes], Awaitable[str]]

_LEASE_CODES = frozenset({
    "ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight",
})
_ATTRIBUTE_FIELDS = ("DataType", "StringValue", "BinaryValue")
# Characters SQS rejects in message bodies and attribute values.
_SQS_INVALID_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class LeaseLost(TransientError):
    """Our receipt handle no longer holds the message (lease expired, redelivered or deleted).

    The job must stop acting on the message; SQS will (or did) hand it out again.
    """

    code = "lease_lost"


@dataclass(frozen=True)
class QueueMessage:
    """One received message; the body (personal data) and receipt handle stay out of reprs."""

    message_id: str
    receipt_handle: str = field(repr=False)
    body: str = field(repr=False)
    receive_count: int = 1
    # System attributes (ApproximateReceiveCount, SentTimestamp, ...), as SQS returns them.
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # Message attributes in SQS's shape: name -> {"DataType", "StringValue" | "BinaryValue"}.
    message_attributes: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, hash=False, compare=False, repr=False)

    def attribute(self, name: str) -> str | None:
        """The string value of a message attribute, or None."""
        value = self.message_attributes.get(name)
        return None if value is None else value.get("StringValue")

    @property
    def held_count(self) -> int:
        """How often the job was held back already (``JobQueue.hold``); 0 if never."""
        value = self.attribute(HELD_ATTRIBUTE) or "0"
        return max(0, int(value)) if value.isdigit() else 0


def _clean_text(text: str, limit: int) -> str:
    """Make free text safe as an SQS attribute: no URL queries, valid characters, bounded bytes."""
    text = _SQS_INVALID_CHARS.sub("?", scrub(text, limit * 4)) or "-"
    raw = text.encode("utf-8")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


_DLQ_SIZE_ERRORS: tuple[type[BaseException], ...] = (*AWS_ERRORS, KeyError, ValueError)


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """A message's size as SQS counts it against MaximumMessageSize: the body's UTF-8 bytes plus,
    per attribute, its name, its data type and its value."""
    size = len(body.encode("utf-8"))
    for name, attr in attributes.items():
        value = attr.get("StringValue")
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(attr.get("BinaryValue") or b"")
        size += len(name.encode("utf-8")) + len(str(attr.get("DataType", "")).encode("utf-8")) + len(raw)
    return size


def _string_attr(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _lease_error(exc: ClientError, what: str) -> RecordingStorageError:
    """Visibility/delete failures that mean "this handle is stale" become LeaseLost."""
    codes, _ = error_codes(exc)
    message = str((exc.response.get("Error") or {}).get("Message") or "").lower()
    if codes & _LEASE_CODES or ("receipt handle" in message and "expired" in message):
        shown = "/".join(sorted(codes)) or "expired"
        return LeaseLost(f"{what}: the receipt handle no longer holds the message ({shown})")
    if "beyond the limit" in message:
        return TransientError(f"{what}: the 12 h total visibility limit is reached", code="visibility_limit")
    return translate_error(exc, what=what, resource="queue")


def _settle_future(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class JobQueue(ClientOwner):
    """The job queue client: ``async with JobQueue(aws, queue_cfg, base_dir) as q``.

    Queue URLs come from the topics file (name -> URL, relative to ``base_dir``), else from
    GetQueueUrl. They are resolved on entry, so a wrong name fails at start-up; pass
    ``resolve_on_enter=False`` to create the queues first (``create_queues``).
    """

    _what = "JobQueue"

    def __init__(
        self,
        aws: AwsConfig,
        queue: QueueConfig,
        base_dir: Path = Path("."),
        *,
        resolve_on_enter: bool = True,
        body_store: BodyStore | None = None,
    ) -> None:
        super().__init__()
        self._aws = aws
        self._cfg = queue
        self._body_store = body_store
        self._dlq_max_size: int | None = None
        self._base_dir = base_dir
        self._resolve_on_enter = resolve_on_enter
        self._url: str | None = None
        self._dlq_url: str | None = None
        self._resolved = False
        self._resolve_lock = asyncio.Lock()
        self._deletes: list[tuple[QueueMessage, asyncio.Future[None]]] = []
        self._delete_timer: asyncio.TimerHandle | None = None
        self._delete_batches: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> JobQueue:
        kwargs = client_kwargs(self._aws)
        read_timeout = max(self._aws.read_timeout, SQS_READ_TIMEOUT_FLOOR)
        config = make_client_config(self._aws, read_timeout=read_timeout)
        await self._open("sqs", config, kwargs)
        return self

    async def _after_open(self) -> None:
        if self._resolve_on_enter:
            await self.resolve()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Deletes still lingering go out before the client closes: each is a finished job.
        self._send_deletes()
        if self._delete_batches:
            await asyncio.gather(*self._delete_batches, return_exceptions=True)
        await super().__aexit__(exc_type, exc, tb)

    @property
    def url(self) -> str:
        """The job queue's URL (resolved on entry or by ``resolve``/``create_queues``)."""
        if self._url is None:
            raise RuntimeError("queue URL not resolved yet; call resolve() or create_queues()")
        return self._url

    @property
    def dlq_url(self) -> str | None:
        """The dead-letter queue's URL, or None when no DLQ is configured."""
        if not self._resolved:
            raise RuntimeError("queue URL not resolved yet; call resolve() or create_queues()")
        return self._dlq_url

    # -- URL resolution ----------------------------------------------------------------------

    async def resolve(self) -> tuple[str, str | None]:
        """Resolve (once) and return the queue and DLQ URLs."""
        async with self._resolve_lock:
            if not self._resolved:
                topics = await self._load_topics()
                self._url = await self._resolve_name(self._cfg.name, topics, "queue.name")
                if self._cfg.dlq_name is not None:
                    self._dlq_url = await self._resolve_name(self._cfg.dlq_name, topics, "queue.dlq_name")
                self._resolved = True
                log.info("sqs_queue_resolved", queue=self._cfg.name, dlq=self._cfg.dlq_name)
        return self.url, self._dlq_url

    async def _load_topics(self) -> dict[str, str]:
        """The topics file as a name -> URL map; a missing file is an empty map."""
        if self._cfg.topics_file is None:
            return {}
        path = self._cfg.topics_file
        path = path if path.is_absolute() else self._base_dir / path
        if not await asyncio.to_thread(path.is_file):
            log.debug("sqs_topics_file_absent", path=str(path))
            return {}
        data = await asyncio.to_thread(load_yaml_file, path, what="topics file")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError([ConfigProblem("", "must be a mapping of queue name to queue URL", str(path))])
        problems = [ConfigProblem(str(name), "queue URL must be a non-empty string", str(path))
                    for name, url in data.items() if not isinstance(url, str) or not url.strip()]
        if problems:
            raise ConfigError(problems)
        return {str(name): url.strip() for name, url in data.items()}

    async def _resolve_name(self, name: str, topics: Mapping[str, str], key: str) -> str:
        if name in topics:
            return topics[name]
        try:
            resp = await self._client.get_queue_url(QueueName=name)
        except AWS_ERRORS as exc:
            error = translate_error(exc, what=f"SQS GetQueueUrl {name}", resource="queue")
            if error.code == "queue_missing":
                raise PermanentError(
                    f"{key}: queue {name!r} does not exist (not in the topics file, and unknown to "
                    f"GetQueueUrl in region {self._aws.region})", code="queue_missing") from exc
            raise error from exc
        return str(resp["QueueUrl"])

    # -- messages ----------------------------------------------------------------------------

    async def receive(self, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        """Long-poll for up to ``max_messages`` (clamped 1..10), leased for visibility_timeout."""
        url = (await self.resolve())[0]
        try:
            resp = await self._client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(max(max_messages, 1), MAX_BATCH),
                WaitTimeSeconds=min(max(wait_seconds, 0), MAX_WAIT),
                VisibilityTimeout=self._cfg.visibility_timeout,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS ReceiveMessage {self._cfg.name}", resource="queue") from exc
        return [_queue_message(raw) for raw in resp.get("Messages") or []]

    async def delete(self, msg: QueueMessage) -> None:
        """Acknowledge: the message is done. A stale handle raises LeaseLost.

        Deletes issued within ``DELETE_LINGER`` of each other share one DeleteMessageBatch call
        (up to 10); each caller still gets its own message's outcome.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deletes.append((msg, future))
        if len(self._deletes) >= MAX_BATCH:
            self._send_deletes()
        elif self._delete_timer is None:
            self._delete_timer = asyncio.get_running_loop().call_later(DELETE_LINGER, self._send_deletes)
        # Shielded: a caller cancelled while waiting must not cancel its batch-mates' outcome.
        await asyncio.shield(future)

    def _send_deletes(self) -> None:
        if self._delete_timer is not None:
            self._delete_timer.cancel()
            self._delete_timer = None
        batch, self._deletes = self._deletes, []
        if batch:
            task = asyncio.create_task(self._delete_batch(batch))
            self._delete_batches.add(task)
            task.add_done_callback(self._delete_batches.discard)

    async def _delete_batch(self, batch: list[tuple[QueueMessage, asyncio.Future[None]]]) -> None:
        entries = [{"Id": str(n), "ReceiptHandle": msg.receipt_handle} for n, (msg, _) in enumerate(batch)]
        try:
            resp = await self._client.delete_message_batch(QueueUrl=self.url, Entries=entries)
        except ClientError as exc:
            for msg, future in batch:
                _settle_future(future, _lease_error(exc, f"SQS DeleteMessageBatch {msg.message_id}"))
            return
        except AWS_ERRORS as exc:
            for msg, future in batch:
                _settle_future(future, translate_error(exc, what=f"SQS DeleteMessageBatch {msg.message_id}",
                                                       resource="queue"))
            return
        except BaseException as exc:  # a bug or cancellation: no caller may wait forever
            for _, future in batch:
                if isinstance(exc, Exception):
                    _settle_future(future, exc)
                else:
                    future.cancel()
            raise
        failed = {str(f.get("Id")): f for f in resp.get("Failed") or []}
        for n, (msg, future) in enumerate(batch):
            entry = failed.get(str(n))
            if entry is None:
                _settle_future(future, None)
                continue
            # The entry's own error, classified as if DeleteMessage had answered it.
            status = 400 if entry.get("SenderFault") else 500
            error = ClientError({"Error": {"Code": str(entry.get("Code") or ""),
                                           "Message": str(entry.get("Message") or "")},
                                 "ResponseMetadata": {"HTTPStatusCode": status}}, "DeleteMessageBatch")
            _settle_future(future, _lease_error(error, f"SQS DeleteMessage {msg.message_id}"))

    async def change_visibility(self, msg: QueueMessage, seconds: float) -> None:
        """Restart the lease at ``seconds`` from now (clamped 0..12 h); LeaseLost if it is gone."""
        what = f"SQS ChangeMessageVisibility {msg.message_id}"
        timeout = int(min(max(seconds, 0), MAX_VISIBILITY))
        try:
            await self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=msg.receipt_handle, VisibilityTimeout=timeout)
        except ClientError as exc:
            raise _lease_error(exc, what) from exc
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=what, resource="queue") from exc

    async def release(self, msg: QueueMessage, delay: float = 0) -> None:
        """Hand the message back for another attempt after ``delay`` seconds.

        A lost lease is not an error here: the message is already visible (or redelivered),
        which is what releasing wants.
        """
        try:
            await self.change_visibility(msg, delay)
        except LeaseLost:
            log.info("sqs_release_lease_already_lost", message_id=msg.message_id)

    async def dead_letter(self, msg: QueueMessage, reason_code: str, reason: str) -> None:
        """Move a permanently failed message to the DLQ with its reason, then delete it.

        The DLQ copy is sent first: a crash in between leaves a duplicate in the DLQ rather
        than losing the job. Without a configured DLQ the message is released for the longest
        backoff and the queue's redrive policy (if any) becomes its only way out.
        """
        code = _clean_text(reason_code or "unknown", 256)
        text = _clean_text(reason, REASON_LIMIT)
        dlq_url = (await self.resolve())[1]
        if dlq_url is None:
            log.error("sqs_no_dlq_permanent_failure_released", message_id=msg.message_id,
                      receive_count=msg.receive_count, reason_code=code,
                      delay=self._cfg.retry_backoff_max)
            await self.release(msg, self._cfg.retry_backoff_max)
            return
        attributes: dict[str, Any] = {
            "rs-reason-code": _string_attr(code),
            "rs-reason": _string_attr(text),
            "rs-source-message-id": _string_attr(msg.message_id),
            "rs-receive-count": {"DataType": "Number", "StringValue": str(msg.receive_count)},
        }
        own = dict(attributes)
        room = MAX_MESSAGE_ATTRIBUTES - len(attributes)
        for name, value in msg.message_attributes.items():
            if room > 0 and not name.startswith("rs-"):
                attributes[name] = {k: v for k, v in value.items() if k in _ATTRIBUTE_FIELDS}
                room -= 1
        body = msg.body
        limit = await self._dlq_limit(dlq_url)
        if message_size(body, attributes) > limit:
            body, attributes = await self._overflow(msg, own, limit)
        params: dict[str, Any] = {
            "QueueUrl": dlq_url, "MessageBody": body, "MessageAttributes": attributes,
        }
        if dlq_url.endswith(".fifo"):
            params["MessageGroupId"] = msg.attributes.get("MessageGroupId") or "dead-letter"
            params["MessageDeduplicationId"] = msg.message_id
        try:
            await self._client.send_message(**params)
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS SendMessage to DLQ {self._cfg.dlq_name}",
                                  resource="queue") from exc
        log.warning("sqs_dead_lettered", message_id=msg.message_id, receive_count=msg.receive_count,
                    reason_code=code)
        try:
            await self.delete(msg)
        except LeaseLost:
            # Redelivered meanwhile; the next attempt fails the same way and dead-letters again.
            log.warning("sqs_dead_letter_delete_lease_lost", message_id=msg.message_id)

    async def _dlq_limit(self, dlq_url: str) -> int:
        """The DLQ's MaximumMessageSize (read once); SQS's classic 256 KiB if it cannot be read."""
        if self._dlq_max_size is None:
            try:
                resp = await self._client.get_queue_attributes(
                    QueueUrl=dlq_url, AttributeNames=["MaximumMessageSize"])
                self._dlq_max_size = int(resp["Attributes"]["MaximumMessageSize"])
            except _DLQ_SIZE_ERRORS as exc:
                log.warning("sqs_dlq_size_unknown", error=scrub(str(exc), 200), assumed=CLASSIC_MAX_SIZE)
                return CLASSIC_MAX_SIZE
        return self._dlq_max_size

    async def _overflow(
        self, msg: QueueMessage, attributes: dict[str, Any], limit: int
    ) -> tuple[str, dict[str, Any]]:
        """A dead letter too large for the DLQ: keep the reason, cut the body to fit.

        SQS counts attributes toward the size limit, so even a body just under it can be refused
        once the reason is attached. The full body goes to ``queue.dlq_overflow_bucket`` first
        (if set; a failure there fails the dead letter, to be retried, rather than lose the
        body); the DLQ copy then carries as much of the body as fits and says where the rest
        is, how long it was and its SHA-256.
        """
        raw = msg.body.encode("utf-8")
        attributes = dict(attributes)  # the reason first: the source's own attributes make way
        attributes["rs-body-bytes"] = {"DataType": "Number", "StringValue": str(len(raw))}
        attributes["rs-body-sha256"] = _string_attr(hashlib.sha256(raw).hexdigest())
        location = None
        if self._body_store is not None and self._cfg.dlq_overflow_bucket:
            key = f"{self._cfg.dlq_overflow_prefix}{msg.message_id}"
            location = await self._body_store(self._cfg.dlq_overflow_bucket, key, raw)
            attributes["rs-body-location"] = _string_attr(location)
        budget = max(0, limit - message_size("", attributes) - OVERFLOW_MARGIN)
        body = raw[:budget].decode("utf-8", "ignore")
        log.warning("sqs_dead_letter_body_truncated", message_id=msg.message_id, body_bytes=len(raw),
                    kept_bytes=len(body.encode("utf-8")), dlq_max_size=limit, location=location)
        return body, attributes

    async def hold(self, msg: QueueMessage, delay: float) -> int:
        """Put a job back for later with a fresh receive count; returns how often it was held.

        For account-wide trouble (the instance's login is refused) that no retry of the job can
        fix: releasing would count receives until the RedrivePolicy moves the job to the DLQ
        without a reason. A copy is sent first (``rs-held-count`` + 1, delayed up to SQS's
        15 minutes), then the original is deleted: a crash in between leaves a duplicate job,
        which is idempotent, never a lost one. FIFO queues take no per-message delay, and there
        the message is only released.
        """
        held = msg.held_count + 1
        url = (await self.resolve())[0]
        if url.endswith(".fifo"):
            await self.release(msg, delay)
            return held
        attributes: dict[str, Any] = {HELD_ATTRIBUTE: {"DataType": "Number", "StringValue": str(held)}}
        for name, value in msg.message_attributes.items():
            if len(attributes) < MAX_MESSAGE_ATTRIBUTES and name != HELD_ATTRIBUTE:
                attributes[name] = {k: v for k, v in value.items() if k in _ATTRIBUTE_FIELDS}
        try:
            await self._client.send_message(
                QueueUrl=url, MessageBody=msg.body, MessageAttributes=attributes,
                DelaySeconds=int(min(max(delay, 0), MAX_DELAY)))
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS SendMessage {self._cfg.name} (hold)",
                                  resource="queue") from exc
        try:
            await self.delete(msg)
        except LeaseLost:
            log.warning("sqs_hold_delete_lease_lost", message_id=msg.message_id)
        return held

    async def send(
        self, body: str, attributes: Mapping[str, str] | None = None, *, delay_seconds: int = 0,
        group_id: str | None = None,
    ) -> str:
        """Publish a job (demo, tests, tools); returns the new message id.

        ``group_id`` is for FIFO queues, which then get a random deduplication id.
        """
        params: dict[str, Any] = {"QueueUrl": (await self.resolve())[0], "MessageBody": body}
        if attributes:
            params["MessageAttributes"] = {k: _string_attr(v) for k, v in attributes.items()}
        if delay_seconds:
            params["DelaySeconds"] = delay_seconds
        if params["QueueUrl"].endswith(".fifo"):
            params["MessageGroupId"] = group_id or "default"
            params["MessageDeduplicationId"] = uuid.uuid4().hex
        try:
            resp = await self._client.send_message(**params)
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS SendMessage {self._cfg.name}", resource="queue") from exc
        return str(resp["MessageId"])

    async def attributes(self) -> dict[str, str]:
        """All queue attributes (depth, in flight, redrive policy): health checks and tests."""
        try:
            resp = await self._client.get_queue_attributes(
                QueueUrl=(await self.resolve())[0], AttributeNames=["All"])
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS GetQueueAttributes {self._cfg.name}",
                                  resource="queue") from exc
        return {str(k): str(v) for k, v in (resp.get("Attributes") or {}).items()}

    async def create_queues(
        self, with_dlq: bool = True, redrive_max_receive_count: int = 5
    ) -> tuple[str, str | None]:
        """Create the queue (and its DLQ with a RedrivePolicy) for a local stack or tests.

        Idempotent with identical attributes. With ``with_dlq=False`` only the main queue is
        made and this client then runs without a DLQ.
        """
        dlq_url: str | None = None
        attrs: dict[str, str] = {"VisibilityTimeout": str(self._cfg.visibility_timeout)}
        try:
            if with_dlq:
                if self._cfg.dlq_name is None:
                    raise ValueError("create_queues(with_dlq=True) needs queue.dlq_name")
                dlq = self._cfg.dlq_name
                created = await self._client.create_queue(QueueName=dlq, Attributes=self._fifo_attrs(dlq))
                dlq_url = str(created["QueueUrl"])
                arn_resp = await self._client.get_queue_attributes(
                    QueueUrl=dlq_url, AttributeNames=["QueueArn"])
                attrs["RedrivePolicy"] = json.dumps({
                    "deadLetterTargetArn": arn_resp["Attributes"]["QueueArn"],
                    "maxReceiveCount": str(redrive_max_receive_count),
                })
            attrs.update(self._fifo_attrs(self._cfg.name))
            created = await self._client.create_queue(QueueName=self._cfg.name, Attributes=attrs)
            url = str(created["QueueUrl"])
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS CreateQueue {self._cfg.name}", resource="queue") from exc
        async with self._resolve_lock:
            self._url, self._dlq_url, self._resolved = url, dlq_url, True
        log.info("sqs_queues_created", queue=self._cfg.name, dlq=self._cfg.dlq_name if with_dlq else None)
        return url, dlq_url

    @staticmethod
    def _fifo_attrs(name: str) -> dict[str, str]:
        return {"FifoQueue": "true"} if name.endswith(".fifo") else {}

    # -- the dead-letter queue, for `recording-storage dlq` ----------------------------------

    async def receive_dead_letters(self, max_messages: int, lease: int) -> list[QueueMessage]:
        """Take up to ``max_messages`` (clamped 1..10) from the DLQ for ``lease`` seconds.

        A tool walks the DLQ by receiving until nothing comes back (what it holds stays
        invisible meanwhile), then releases what it keeps with ``release_dead_letter``.
        """
        dlq_url = (await self.resolve())[1]
        if dlq_url is None:
            raise ConfigError([ConfigProblem("queue.dlq_name", "no dead-letter queue is configured")])
        try:
            resp = await self._client.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=min(max(max_messages, 1), MAX_BATCH),
                # 1 s long poll: a short poll samples only some SQS servers and may miss messages.
                WaitTimeSeconds=1, VisibilityTimeout=int(min(max(lease, 0), MAX_VISIBILITY)),
                MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS ReceiveMessage {self._cfg.dlq_name}",
                                  resource="queue") from exc
        return [_queue_message(raw) for raw in resp.get("Messages") or []]

    async def release_dead_letter(self, msg: QueueMessage) -> None:
        """Make a DLQ message visible again at once (a listing must not hide dead letters)."""
        dlq_url = (await self.resolve())[1]
        try:
            await self._client.change_message_visibility(
                QueueUrl=dlq_url, ReceiptHandle=msg.receipt_handle, VisibilityTimeout=0)
        except ClientError as exc:
            err = _lease_error(exc, f"SQS ChangeMessageVisibility {msg.message_id}")
            if not isinstance(err, LeaseLost):  # a lost lease is already visible again
                raise err from exc
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS ChangeMessageVisibility {msg.message_id}",
                                  resource="queue") from exc

    async def redrive(self, msg: QueueMessage, marks: Mapping[str, str]) -> str:
        """Send a dead letter's body back to the job queue, then delete it from the DLQ.

        The body is sent unchanged; the message keeps its own attributes (not our ``rs-*``
        reason, which no longer applies) plus ``marks`` saying where it came from. Sent first,
        deleted second: a crash in between leaves a duplicate job (idempotent), never none.
        Returns the new message id.
        """
        url, dlq_url = await self.resolve()
        attributes: dict[str, Any] = {k: _string_attr(_clean_text(v, 256)) for k, v in marks.items()}
        for name, value in msg.message_attributes.items():
            if len(attributes) < MAX_MESSAGE_ATTRIBUTES and not name.startswith("rs-"):
                attributes[name] = {k: v for k, v in value.items() if k in _ATTRIBUTE_FIELDS}
        params: dict[str, Any] = {"QueueUrl": url, "MessageBody": msg.body, "MessageAttributes": attributes}
        if url.endswith(".fifo"):
            params["MessageGroupId"] = msg.attributes.get("MessageGroupId") or "redrive"
            params["MessageDeduplicationId"] = f"redrive-{msg.message_id}"[:128]
        try:
            resp = await self._client.send_message(**params)
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS SendMessage {self._cfg.name}", resource="queue") from exc
        new_id = str(resp["MessageId"])
        try:
            await self._client.delete_message(QueueUrl=dlq_url, ReceiptHandle=msg.receipt_handle)
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"SQS DeleteMessage {self._cfg.dlq_name} {msg.message_id}",
                                  resource="queue") from exc
        log.info("dlq_redriven", message_id=msg.message_id, new_message_id=new_id,
                 reason_code=msg.attribute("rs-reason-code"))
        return new_id


def _queue_message(raw: Mapping[str, Any]) -> QueueMessage:
    """A ReceiveMessage entry as a QueueMessage."""
    attributes = {str(k): str(v) for k, v in (raw.get("Attributes") or {}).items()}
    return QueueMessage(
        message_id=str(raw["MessageId"]),
        receipt_handle=str(raw["ReceiptHandle"]),
        body=str(raw.get("Body") or ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        attributes=attributes,
        message_attributes=dict(raw.get("MessageAttributes") or {}),
    )
