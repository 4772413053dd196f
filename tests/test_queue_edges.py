"""The edges of a message's life, against the real service (moto's server, the DRACOON emulator).

Every message that leaves the queue carries its reason: a failure that keeps recurring is
dead-lettered by the service itself at ``queue.max_receives`` (never by the queue's redrive,
which drops the reason), and a dead letter too large for the DLQ still arrives with its reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.awsproxy import AwsFaultProxy, running_proxy, via_proxy
from tests.fixtures.service import Stack, job_message

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
    await stack.put(KEY, b"recording")
    await stack.send(job_message(stack.bucket, [KEY]))

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
