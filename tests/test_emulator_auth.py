"""Emulator: OAuth grants, token expiry and the Bearer check, plus the account/config reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fixtures.dracoon import TEST_CLIENT_ID, TEST_CLIENT_SECRET, DracoonEnv, EmulatorApi, basic_auth

pytestmark = pytest.mark.integration


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _token(
    session: aiohttp.ClientSession, env: DracoonEnv, *, auth: dict[str, str] | None = None, **form: str
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{env.base_url}/oauth/token", data=form, headers=auth or basic_auth()) as resp:
        return resp.status, await resp.json()


async def test_password_grant_returns_bearer_token(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    """A password grant answers DRACOON's JSON token response with the configured lifetime."""
    svc = dracoon_emulator.service_user
    status, body = await _token(
        session, dracoon_emulator, grant_type="password", username=svc.login, password=svc.password
    )
    assert status == 200
    assert body["token_type"] == "bearer" and body["scope"] == "all"
    assert body["expires_in"] == 3600 and body["access_token"] and body["refresh_token"]


async def test_login_is_case_insensitive_and_client_may_authenticate_in_form(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    """client_id/client_secret in the form body work like HTTP Basic (the Python SDK does that)."""
    svc = dracoon_emulator.service_user
    async with session.post(
        f"{dracoon_emulator.base_url}/oauth/token",
        data={
            "grant_type": "password",
            "username": svc.login.upper(),
            "password": svc.password,
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
        },
    ) as resp:
        assert resp.status == 200


async def test_default_scripting_client_with_empty_secret(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    svc = dracoon_emulator.service_user
    status, _ = await _token(
        session,
        dracoon_emulator,
        auth=basic_auth("dracoon_legacy_scripting", ""),
        grant_type="password",
        username=svc.login,
        password=svc.password,
    )
    assert status == 200


async def test_bad_credentials_and_bad_client(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    """Wrong password -> 400 invalid_grant; wrong client secret -> 401 unauthorized_client."""
    svc = dracoon_emulator.service_user
    status, body = await _token(
        session, dracoon_emulator, grant_type="password", username=svc.login, password="nope"
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await _token(
        session,
        dracoon_emulator,
        auth=basic_auth(TEST_CLIENT_ID, "wrong"),
        grant_type="password",
        username=svc.login,
        password=svc.password,
    )
    assert (status, body["error"]) == (401, "unauthorized_client")
    status, body = await _token(session, dracoon_emulator, grant_type="client_credentials")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await _token(session, dracoon_emulator, grant_type="password", username=svc.login)
    assert (status, body["error"]) == (400, "invalid_request")


async def test_refresh_rotates_refresh_token(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    """A refresh issues new tokens; the used refresh token stops working (keep the newest)."""
    svc = dracoon_emulator.service_user
    _, first = await _token(
        session, dracoon_emulator, grant_type="password", username=svc.login, password=svc.password
    )
    status, second = await _token(
        session, dracoon_emulator, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200 and second["access_token"] != first["access_token"]
    status, body = await _token(
        session, dracoon_emulator, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, _ = await _token(
        session, dracoon_emulator, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert status == 200


async def test_refresh_token_bound_to_client(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    svc = dracoon_emulator.service_user
    _, first = await _token(
        session, dracoon_emulator, grant_type="password", username=svc.login, password=svc.password
    )
    status, body = await _token(
        session,
        dracoon_emulator,
        auth=basic_auth("dracoon_legacy_scripting", ""),
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_bearer_check_and_expiry(dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession) -> None:
    """No/unknown/expired token -> 401 -10012; refreshing after expiry gives a working token."""
    api = EmulatorApi(session, dracoon_emulator.base_url)
    svc = dracoon_emulator.service_user
    status, body = await api.call("GET", "/api/v4/user/account")
    assert (status, body["errorCode"], body["code"]) == (401, -10012, 401)
    status, body = await api.call("GET", "/api/v4/user/account", token="forged")
    assert (status, body["errorCode"]) == (401, -10012)
    token = await api.login(svc.login, svc.password)
    status, body = await api.call("GET", "/api/v4/user/account", token=token)
    assert status == 200 and body["id"] == svc.id and body["userName"] == svc.login
    assert body["isEncryptionEnabled"] is True
    dracoon_emulator.state.clock.advance(3601)
    status, body = await api.call("GET", "/api/v4/user/account", token=token)
    assert (status, body["errorCode"]) == (401, -10012)


async def test_revoke_invalidates_access_token(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    api = EmulatorApi(session, dracoon_emulator.base_url)
    svc = dracoon_emulator.service_user
    token = await api.login(svc.login, svc.password)
    async with session.post(
        f"{dracoon_emulator.base_url}/oauth/revoke",
        data={"token_type_hint": "access_token", "token": token},
        headers=basic_auth(),
    ) as resp:
        assert resp.status == 200
    status, _ = await api.call("GET", "/api/v4/user/ping", token=token)
    assert status == 401


async def test_public_and_config_reads(dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession) -> None:
    """system/info needs no auth; config/info and the algorithm policy need a token."""
    api = EmulatorApi(session, dracoon_emulator.base_url)
    status, info = await api.call("GET", "/api/v4/public/system/info")
    assert status == 200 and info["useS3Storage"] is False and info["s3EnforceDirectUpload"] is False
    token = await api.login(dracoon_emulator.service_user.login, dracoon_emulator.service_user.password)
    status, general = await api.call("GET", "/api/v4/config/info/general", token=token)
    assert status == 200 and general["cryptoEnabled"] is True and general["useS3Storage"] is False
    status, algos = await api.call("GET", "/api/v4/config/info/policies/algorithms", token=token)
    required = [a["version"] for a in algos["keyPairAlgorithms"] if a["status"] == "REQUIRED"]
    assert status == 200 and required == ["RSA-4096"]
    assert {a["version"] for a in algos["fileKeyAlgorithms"]} == {"A", "RSA-4096/AES-256-GCM"}
    status, text = await api.call("GET", "/api/v4/user/ping", token=token)
    assert (status, text) == (200, "test")


async def test_unknown_route_is_json_error(
    dracoon_emulator: DracoonEnv, session: aiohttp.ClientSession
) -> None:
    api = EmulatorApi(session, dracoon_emulator.base_url)
    token = await api.login(dracoon_emulator.service_user.login, dracoon_emulator.service_user.password)
    status, body = await api.call("GET", "/api/v4/no/such/thing", token=token)
    assert status == 404 and body["code"] == 404 and "debugInfo" in body and "errorCode" not in body
