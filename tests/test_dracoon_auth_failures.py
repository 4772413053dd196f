"""DRACOON authentication trouble against the real service (emulator and moto, real sockets).

Trouble with tokens is transient: a 401 right after a fresh login is retried with backoff and a
new renewal, never a reason to dead-letter a recording. Trouble with the service account itself
(its login refused) is the instance's, not the job's: its jobs are held, never dead-lettered, and
/readyz and /metrics say which instance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import aiohttp
import pytest
import structlog
import yaml
from pydantic import SecretStr

from recording_storage.config import DracoonConfig
from recording_storage.dracoon import AuthenticationFailed, DracoonClient
from recording_storage.service import serve
from tests.fixtures.dracoon import DracoonEnv, emulator_config
from tests.fixtures.procs import wait_until
from tests.fixtures.service import DOMAIN, Stack, job_message

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


def set_login_password(stack: Stack, password: str) -> None:
    """Rewrite the instance's login password in the instances file the service reads."""
    path = Path(stack.config.instances.file)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["instances"][DOMAIN]["dracoon"]["password"] = password
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_login_holds_the_instances_jobs_and_says_so(stack: Stack) -> None:
    """The service account's password is wrong (DRACOON: 400 ``invalid_grant``). The job is not
    dead-lettered: it is held (put back with a fresh receive count, so neither
    ``queue.max_receives`` nor the RedrivePolicy ends it), /readyz fails naming the instance and
    ``recording_storage_jobs_held_total`` counts it. Once the password is fixed the same job
    lands and /readyz recovers."""
    set_login_password(stack, "Wrong-Login-Pw-77")
    port = free_port()
    config = stack.config.model_copy(update={
        "health": stack.config.health.model_copy(
            update={"enabled": True, "port": port, "cache_seconds": 0}),
        "instances": stack.config.instances.model_copy(update={"cache_ttl": 0}),
    })
    svc = dataclasses.replace(stack, config=config)
    await stack.put(KEY, b"recording bytes")
    await stack.send(job_message(stack.bucket, [KEY]))
    url = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    task = asyncio.create_task(serve(svc.config, stop=stop, install_signals=False))
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, str]:
                try:
                    async with http.get(url + path) as resp:
                        return resp.status, await resp.text()
                except aiohttp.ClientConnectionError:
                    return 0, ""

            async def held_more_than(times: int) -> bool:
                status, text = await get("/metrics")
                prefix = f'recording_storage_jobs_held_total{{instance="{DOMAIN}"}} '
                lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
                return status == 200 and bool(lines) and float(lines[0].split()[-1]) > times

            await wait_until(lambda: held_more_than(3), timeout=30, what="the job held several times")
            status, body = await get("/readyz")
            assert status == 503 and "instances_held" in body and f"dracoon:{DOMAIN}" in body
            assert "invalid_grant" in body and "Wrong-Login-Pw-77" not in body
            visible, in_flight, dead = await stack.queue_counts()
            assert dead == 0 and visible + in_flight >= 1  # held (copy sent, original deleted)
            assert await stack.exists(KEY)

            set_login_password(stack, stack.dracoon.service_user.password)
            await wait_until(lambda: _gone(stack), timeout=30,
                             what="the held job landing once the password is fixed")
            await wait_until(lambda: _ready(get), timeout=30, what="/readyz recovering")
    finally:
        stop.set()
        stats = await task
    assert stats.outcomes.get("permanent", 0) == 0
    assert stats.outcomes["success"] == 1 and stats.outcomes["transient"] >= 3
    assert len(stack.files("Calls")) == 1
    assert await stack.queue_counts() == (0, 0, 0)


async def _gone(stack: Stack) -> bool:
    return not await stack.exists(KEY)


async def _ready(get: object) -> bool:
    status, _ = await get("/readyz")  # type: ignore[operator]
    return bool(status == 200)


def set_encryption_password(stack: Stack, password: str) -> None:
    path = Path(stack.config.instances.file)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["instances"][DOMAIN]["dracoon"]["encryption_password"] = password
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


async def test_wrong_encryption_password_holds_the_job_too(stack: Stack) -> None:
    """An encryption password that does not unlock the account's key pair fails every job of the
    instance alike: the job is held (twice here, a bounded run), never dead-lettered. Each
    ``job_finished`` names the reason, as for any other failure."""
    set_encryption_password(stack, "Not-The-Right-Pw-1")
    await stack.put(KEY, b"recording bytes")
    await stack.send(job_message(stack.bucket, [KEY]))

    with structlog.testing.capture_logs() as logs:
        stats = await serve(stack.config, max_messages=2, install_signals=False)

    assert stats.outcomes == {"transient": 2}
    finished = [(e["outcome"], e["error_code"]) for e in logs if e["event"] == "job_finished"]
    assert finished == [("transient", "wrong_password")] * 2
    visible, in_flight, dead = await stack.queue_counts()
    assert (visible + in_flight, dead) == (1, 0)  # the held copy waits; nothing in the DLQ
    assert await stack.exists(KEY)
