"""Emulator: fault injection (status, 429 + Retry-After, rate, latency, resets, token expiry) by the
Python API, by config and by the ``/_emulator`` control endpoints."""

from __future__ import annotations

import time

import aiohttp
import pytest

from dracoon_emulator import EmulatorConfig, FaultInjector, FaultRule
from tests.fixtures.dracoon import DracoonEnv, EmulatorApi

pytestmark = pytest.mark.integration

ACCOUNT = "/api/v4/user/account"


async def test_status_fault_fires_count_times(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """``count`` limits firing; the answer is DRACOON's ErrorResponse with the configured code."""
    token = await dracoon_api.login_as(dracoon_emulator.service_user)
    rule = dracoon_emulator.emulator.faults.add(
        path="^/api/v4/user/account$", status=504, error_code=-90027, count=2
    )
    statuses = []
    for _ in range(3):
        status, body = await dracoon_api.call("GET", ACCOUNT, token)
        statuses.append(status)
    assert statuses == [504, 504, 200] and (rule.seen, rule.fired) == (3, 2)
    status, body = await dracoon_api.call("GET", "/api/v4/user/ping", token)
    assert status == 200  # other paths are untouched


async def test_429_carries_retry_after(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    dracoon_emulator.emulator.faults.add(
        path="/oauth/token", method="POST", status=429, retry_after=7, count=1
    )
    async with dracoon_api.session.post(f"{dracoon_emulator.base_url}/oauth/token", data={}) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        assert (await resp.json())["code"] == 429
    await dracoon_api.login_as(dracoon_emulator.service_user)  # the next attempt passes


def test_rate_is_reproducible_with_a_seed() -> None:
    """Rate-based firing draws from a seeded RNG: the same seed gives the same pattern."""
    patterns = []
    for _ in range(2):
        faults = FaultInjector([FaultRule(path="/x", status=503, rate=0.5)], seed=42)
        patterns.append([bool(faults.fire("GET", "/x")) for _ in range(40)])
    assert patterns[0] == patterns[1] and 5 < sum(patterns[0]) < 35
    other = FaultInjector([FaultRule(path="/x", status=503, rate=0.5)], seed=7)
    assert [bool(other.fire("GET", "/x")) for _ in range(40)] != patterns[0]


def test_after_and_method_matching() -> None:
    faults = FaultInjector(seed=0)
    rule = faults.add(path="^/api/v4/nodes", method="POST", status=500, after=2, count=1)
    fired = [bool(faults.fire(m, "/api/v4/nodes/rooms")) for m in ("GET", "POST", "POST", "POST", "POST")]
    assert fired == [False, False, False, True, False] and rule.seen == 4
    with pytest.raises(ValueError, match="needs status"):
        FaultRule(path="/x")
    with pytest.raises(ValueError, match="unknown fault rule field"):
        FaultRule.from_dict({"path": "/x", "status": 500, "sttaus": 1})


async def test_latency(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    dracoon_emulator.emulator.faults.add(path="^/api/v4/public/", latency_ms=150, count=1)
    started = time.monotonic()
    status, _ = await dracoon_api.call("GET", "/api/v4/public/system/info")
    assert status == 200 and time.monotonic() - started >= 0.15


async def test_reset_mid_request_body_stores_nothing(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """The connection drops after part of the chunk arrived; the chunk is not appended."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    channel = await dracoon_api.open_channel(token, env.parent_room_id, "f.bin")
    env.emulator.faults.add(path="^/api/v4/uploads/", method="POST", reset="request", count=1)
    with pytest.raises(aiohttp.ClientError):
        await dracoon_api.call("POST", channel["uploadUrl"], data=b"a" * 200_000)
    upload = env.state.uploads[channel["uploadId"]]
    assert len(upload.data) == 0
    status, _ = await dracoon_api.call("POST", channel["uploadUrl"], data=b"b" * 10)
    assert status == 201 and bytes(upload.data) == b"b" * 10


async def test_reset_mid_response_body(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Status and headers arrive, then the body stops short: the client sees a payload error."""
    env = dracoon_emulator
    node = env.state.add_file(env.parent_room_id, "big.bin", b"z" * 100_000)
    token = await dracoon_api.login_as(env.service_user)
    env.emulator.faults.add(
        path=r"/downloads$", method="GET", reset="response", reset_after_bytes=1000, count=1
    )
    url = f"{env.base_url}/api/v4/nodes/files/{node.id}/downloads"
    async with dracoon_api.session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200 and resp.content_length == 100_000
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_token_expires_after_n_requests(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """``expire_token`` after 2 requests: the third gets 401 -10012, a fresh login works again."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    env.emulator.faults.add(path="^/api/v4/", expire_token=True, after=2, count=1)
    assert (await dracoon_api.call("GET", ACCOUNT, token))[0] == 200
    assert (await dracoon_api.call("GET", ACCOUNT, token))[0] == 200
    status, body = await dracoon_api.call("GET", ACCOUNT, token)
    assert (status, body["errorCode"]) == (401, -10012)
    fresh = await dracoon_api.login_as(env.service_user)
    assert (await dracoon_api.call("GET", ACCOUNT, fresh))[0] == 200


async def test_s3_faults_answer_in_xml(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    dracoon_emulator.emulator.faults.add(path="^/_s3/", status=503, count=1)
    async with dracoon_api.session.put(f"{dracoon_emulator.base_url}/_s3/x/1", data=b"x") as resp:
        assert resp.status == 503 and b"<Code>SlowDown</Code>" in await resp.read()


async def test_control_endpoints(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Faults can be added, listed and cleared over HTTP; state and clock are reachable too."""
    env = dracoon_emulator
    rules = {"seed": 3, "rules": [{"path": "^/api/v4/public/", "status": 503, "count": 1, "name": "flaky"}]}
    status, body = await dracoon_api.call("POST", "/_emulator/faults", json=rules)
    assert status == 201 and body["rules"][0]["name"] == "flaky"
    assert (await dracoon_api.call("GET", "/api/v4/public/system/info"))[0] == 503
    _, listed = await dracoon_api.call("GET", "/_emulator/faults")
    assert listed["rules"][0]["fired"] == 1
    status, body = await dracoon_api.call("POST", "/_emulator/faults", json={"path": "/x"})
    assert status == 400
    assert (await dracoon_api.call("DELETE", "/_emulator/faults"))[0] == 204
    assert env.emulator.faults.rules == []
    token = await dracoon_api.login_as(env.service_user)
    status, summary = await dracoon_api.call("GET", "/_emulator/state")
    assert status == 200 and summary["activeAccessTokens"] == 1
    assert token not in str(summary) and env.service_user.password not in str(summary)
    assert (await dracoon_api.call("POST", "/_emulator/clock", json={"advance": 7200}))[0] == 200
    assert (await dracoon_api.call("GET", ACCOUNT, token))[0] == 401


async def test_requests_counted_by_route_template(dracoon_emulator: DracoonEnv,
                                                  dracoon_api: EmulatorApi) -> None:
    """The emulator counts API requests by method and route template (ids and tokens stay out of
    the keys), faulted ones too, control calls not; DELETE resets the count."""
    env = dracoon_emulator
    assert (await dracoon_api.call("DELETE", "/_emulator/requests"))[0] == 204
    token = await dracoon_api.login_as(env.service_user)
    env.emulator.faults.add(path="^/api/v4/user/account$", status=503, count=1)
    for _ in range(2):
        await dracoon_api.call("GET", ACCOUNT, token)
    await dracoon_api.call("GET", "/api/v4/nodes/4711", token)
    await dracoon_api.call("GET", "/api/v4/nodes/4712", token)
    status, counts = await dracoon_api.call("GET", "/_emulator/requests")
    assert status == 200
    assert counts["GET /api/v4/user/account"] == 2
    assert counts["GET /api/v4/nodes/{node_id}"] == 2
    assert not any("_emulator" in key or "4711" in key for key in counts)
    assert (await dracoon_api.call("DELETE", "/_emulator/requests"))[0] == 204
    assert (await dracoon_api.call("GET", "/_emulator/requests"))[1] == {}


@pytest.mark.parametrize(
    "dracoon_emulator_config",
    [
        EmulatorConfig.from_dict(
            {
                "control_api": False,
                "fault_seed": 1,
                "faults": [{"path": "^/api/v4/user/ping$", "status": 502, "count": 1}],
            }
        )
    ],
)
async def test_faults_from_config_and_control_api_off(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Rules from the config apply from the start; without the control API /_emulator is a 404."""
    status, _ = await dracoon_api.call("GET", "/_emulator/state")
    assert status == 404
    async with dracoon_api.session.post(
        f"{dracoon_emulator.base_url}/oauth/token",
        data={
            "grant_type": "password",
            "username": dracoon_emulator.service_user.login,
            "password": dracoon_emulator.service_user.password,
            "client_id": "dracoon_legacy_scripting",
        },
    ) as resp:
        access = (await resp.json())["access_token"]
    assert (await dracoon_api.call("GET", "/api/v4/user/ping", access))[0] == 502
    assert (await dracoon_api.call("GET", "/api/v4/user/ping", access))[0] == 200
