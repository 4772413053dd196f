"""The edges of a message's life, against the real service (moto's server, the DRACOON emulator).

Every message that leaves the queue carries its reason: a failure that keeps recurring is
dead-lettered by the service itself at ``queue.max_receives`` (never by the queue's redrive,
which drops the reason), and a dead letter too large for the DLQ still arrives with its reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from recording_storage.s3 import S3Source
from recording_storage.sqs import JobQueue, message_size
from tests.fixtures.awsproxy import AwsFaultProxy, limit_message_size, running_proxy, via_proxy
from tests.fixtures.service import Stack

pytestmark = pytest.mark.integration

KEY = "rec/call.mp4"


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[AwsFaultProxy]:
    async with running_proxy(moto_server) as started:
        yield started


def changed(stack: Stack, proxy: AwsFaultProxy | None = None, **queue: Any) -> Stack:
    """The stack with queue settings changed and, given a proxy, S3/SQS traffic through it."""
    config = stack.config.model_copy(update={"queue": stack.config.queue.model_copy(update=queue)})
    if proxy is not None:
        config = via_proxy(config, proxy, max_attempts=1)
    return dataclasses.replace(stack, config=config)


def reason_of(message: dict[str, Any]) -> tuple[str, str]:
    attrs = message["MessageAttributes"]
    return attrs["rs-reason-code"]["StringValue"], attrs["rs-reason"]["StringValue"]


async def test_recurring_transient_failure_is_dead_lettered_with_its_last_reason(
    stack: Stack, proxy: AwsFaultProxy
) -> None:
    """S3 answers every HeadObject with 500: each receive fails transiently. On the receive
    ``queue.max_receives`` the service dead-letters the job itself, naming the last error, one
    receive before the queue's RedrivePolicy (maxReceiveCount 5) would have moved it bare."""
    svc = changed(stack, proxy, max_receives=3)
    rule = proxy.add("s3:HeadObject", "error", status=500, code="InternalError")
    await stack.publish(KEY, b"recording")

    stats = await svc.drain()

    assert stats.outcomes == {"transient": 2, "permanent": 1}
    assert rule.fired == 3
    assert await stack.queue_counts() == (0, 0, 1)
    (dead,) = await stack.dlq_messages()
    code, reason = reason_of(dead)
    assert code == "aws_unavailable"  # the last error's own code
    assert "each of 3 receives" in reason and "queue.max_receives" in reason
    assert "HeadObject" in reason  # the last error itself, not just that one happened
    assert dead["MessageAttributes"]["rs-receive-count"]["StringValue"] == "3"
    assert await stack.exists(KEY)  # the source stays for a redrive


DLQ_LIMIT = 262144  # 256 KiB: the classic SQS maximum, still many queues' setting


async def limit_dlq(stack: Stack, proxy: AwsFaultProxy) -> None:
    """The DLQ takes at most 256 KiB, counted as real SQS counts it (body plus attributes): moto
    gets the queue attribute, the proxy enforces the counting (moto checks the body alone)."""
    async with JobQueue(stack.config.aws, stack.config.queue) as queue:
        assert queue.dlq_url is not None
        await queue._client.set_queue_attributes(  # test set-up: a size-limited DLQ
            QueueUrl=queue.dlq_url, Attributes={"MaximumMessageSize": str(DLQ_LIMIT)})
    assert stack.config.queue.dlq_name is not None
    limit_message_size(proxy, stack.config.queue.dlq_name, DLQ_LIMIT)


@pytest.mark.parametrize("size", [300_000, DLQ_LIMIT - 200], ids=["300KB", "just-under-limit"])
@pytest.mark.parametrize("overflow", [False, True], ids=["no-bucket", "overflow-bucket"])
async def test_dead_letter_too_large_for_the_dlq_still_arrives_with_its_reason(
    stack: Stack, proxy: AwsFaultProxy, size: int, overflow: bool
) -> None:
    """An invalid body of 300 KB, or one just under the DLQ's 256 KiB that the reason attributes
    push over it: the DLQ copy carries the reason, the body cut to fit, its full length and
    SHA-256 and, with ``queue.dlq_overflow_bucket``, where the full body was written. Nothing
    is refused, nothing loops, the job queue is empty."""
    await limit_dlq(stack, proxy)
    prefix = "dead-letters/"
    svc = changed(stack, proxy, dlq_overflow_bucket=stack.bucket if overflow else None,
                  dlq_overflow_prefix=prefix)
    body = "not a job " + "x" * (size - 10)
    assert message_size(body, {}) == size
    sent_id = await stack.send(body)

    stats = await svc.drain()

    assert stats.outcomes == {"permanent": 1}
    assert await stack.queue_counts() == (0, 0, 1)
    (dead,) = await stack.dlq_messages()
    attrs = dead["MessageAttributes"]
    code, reason = reason_of(dead)
    assert code == "invalid_message" and "invalid job message" in reason
    assert attrs["rs-source-message-id"]["StringValue"] == sent_id
    assert attrs["rs-body-bytes"]["StringValue"] == str(size)
    assert attrs["rs-body-sha256"]["StringValue"] == hashlib.sha256(body.encode()).hexdigest()
    assert body.startswith(dead["Body"]) and len(dead["Body"]) < size
    shape = {k: {f: v for f, v in a.items() if f in ("DataType", "StringValue")} for k, a in attrs.items()}
    assert message_size(dead["Body"], shape) <= DLQ_LIMIT
    if overflow:
        location = attrs["rs-body-location"]["StringValue"]
        assert location == f"s3://{stack.bucket}/{prefix}{sent_id}"
        async with S3Source(stack.config.aws, stack.config.s3) as s3:
            chunks = [c async for c in s3.iter_chunks(await s3.head(stack.bucket, prefix + sent_id))]
        assert b"".join(chunks) == body.encode()
    else:
        assert "rs-body-location" not in attrs


async def test_dead_letter_whose_body_cannot_be_kept_is_retried_not_lost(
    stack: Stack, proxy: AwsFaultProxy
) -> None:
    """The overflow bucket refuses the full body (403): the dead letter fails loudly (logged and
    counted), the message stays in the job queue for a retry, and once the bucket takes it the
    dead letter arrives with its reason and the full body's location."""
    await limit_dlq(stack, proxy)
    svc = changed(stack, proxy, dlq_overflow_bucket=stack.bucket)
    refuse = proxy.add("s3:PutObject", "error", status=403, code="AccessDenied")
    body = "y" * 300_000
    await stack.send(body)

    stats = await svc.drain(max_messages=2)

    assert refuse.fired == 2 and stats.outcomes == {"permanent": 2}
    visible, in_flight, dead = await stack.queue_counts()
    assert (visible + in_flight, dead) == (1, 0)  # released for a retry, not lost, not looping

    proxy.clear()
    stats = await svc.drain()

    assert stats.outcomes == {"permanent": 1}
    assert await stack.queue_counts() == (0, 0, 1)
    (dead_letter,) = await stack.dlq_messages()
    assert reason_of(dead_letter)[0] == "invalid_message"
    assert dead_letter["MessageAttributes"]["rs-body-location"]["StringValue"].startswith("s3://")
