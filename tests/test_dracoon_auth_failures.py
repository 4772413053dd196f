"""DRACOON authentication trouble against the real service (emulator and moto, real sockets).

Trouble with tokens is transient: a 401 right after a fresh login is retried with backoff and a
new renewal, never a reason to dead-letter a recording.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from recording_storage.config import DracoonConfig
from recording_storage.dracoon import AuthenticationFailed, DracoonClient
from tests.fixtures.dracoon import DracoonEnv, emulator_config
from tests.fixtures.service import Stack, job_message

pytestmark = pytest.mark.integration

KEY = "rec/call.mp4"
ODD_CLIENT_ID, ODD_CLIENT_SECRET = "rs client+1", "se+cret%41:x"  # space, '+', '%41', ':'


@pytest.mark.parametrize(
    "dracoon_emulator_config", [emulator_config().with_client(ODD_CLIENT_ID, ODD_CLIENT_SECRET)]
)
@pytest.mark.parametrize(("encoding", "accepted"), [("form", True), ("raw", False)])
async def test_client_credentials_are_form_encoded_before_basic_auth(
    dracoon_emulator: DracoonEnv, encoding: str, accepted: bool
) -> None:
    """The emulator decodes HTTP Basic client credentials as RFC 6749 section 2.3.1 says, like a
    standard OAuth server: a ``+`` sent raw becomes a space and ``%41`` an ``A``. Form-encoded
    (the default) the login works; ``raw`` (the compatibility setting) is refused here."""
    account = dracoon_emulator.account(
        client_id=ODD_CLIENT_ID, client_secret=SecretStr(ODD_CLIENT_SECRET)
    )
    async with DracoonClient(account, DracoonConfig(client_auth_encoding=encoding)) as client:
        if accepted:
            user = await client.ping_authenticated()
            assert user.id == dracoon_emulator.service_user.id
        else:
            with pytest.raises(AuthenticationFailed, match="unauthorized_client"):
                await client.ping_authenticated()


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
