"""DRACOON authentication trouble against the real service (emulator and moto, real sockets).

Trouble with tokens is transient: a 401 right after a fresh login is retried with backoff and a
new renewal, never a reason to dead-letter a recording.
"""

from __future__ import annotations

import pytest

from tests.fixtures.service import Stack, job_message

pytestmark = pytest.mark.integration

KEY = "rec/call.mp4"


async def test_two_token_expiries_in_a_row_do_not_dead_letter_the_job(stack: Stack) -> None:
    """Login succeeds, then the room lookup is answered 401 ``-10012`` twice in a row (the
    token is expired again right after its renewal). The job is retried with backoff, renews
    once more and lands on its first receive; nothing goes to the DLQ."""
    rule = stack.dracoon.emulator.faults.add(
        method="GET", path=r"^/api/v4/nodes$", expire_token=True, count=2, name="expire-twice"
    )
    await stack.put(KEY, b"recording bytes")
    await stack.send(job_message(stack.bucket, [KEY]))

    stats = await stack.drain()

    assert rule.fired == 2
    assert stats.outcomes == {"success": 1}
    assert [f.name for f in stack.files("Calls")] != []
    assert await stack.queue_counts() == (0, 0, 0)
    assert not await stack.exists(KEY)
