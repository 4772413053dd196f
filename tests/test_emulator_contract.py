"""Emulator: answers follow DRACOON's description (the response contract) and it is lenient where
DRACOON is (offset-less date-times, a general-purpose client's default connect)."""

from __future__ import annotations

from typing import Any

import pytest

from dracoon_emulator import DracoonEmulator, EmulatorConfig
from dracoon_emulator.contract import (
    ResponseContract,
    Tally,
    described_operations,
    route_template,
)
from dracoon_emulator.errors import error_body
from tests.fixtures.dracoon import DracoonEnv, EmulatorApi, basic_auth

pytestmark = pytest.mark.integration

NODE_PATH = "/api/v4/nodes/{node_id:-?\\d+}"
OFFSETLESS = "2026-12-06T10:00:00"


def _contract() -> ResponseContract:
    return ResponseContract(shared=None)  # its own tally: these violations are the point


def _room(**extra: Any) -> dict[str, Any]:
    """A minimal valid ``Node`` answer for a top-level room."""
    return {
        "id": 1001,
        "type": "room",
        "name": "R",
        "parentPath": "/",
        "isEncrypted": False,
        "timestampCreation": "2026-12-06T10:00:00Z",
        **extra,
    }


def test_contract_reports_what_the_description_forbids() -> None:
    """Explicit nulls, writeOnly echoes, bad formats, missing required properties, undocumented
    statuses and bodies where none is documented are violations; a valid answer is not."""
    contract = _contract()
    contract.check("GET", NODE_PATH, "/api/v4/nodes/1001", 200, _room())
    assert contract.tally.violations == []
    cases: list[tuple[str, str, int, Any, str]] = [
        ("GET", NODE_PATH, 200, _room(parentId=None), "parentId: None for not nullable"),
        ("GET", NODE_PATH, 200, _room(expireAt=None), "expireAt: None for not nullable"),
        ("GET", NODE_PATH, 200, _room(timestampCreation=OFFSETLESS), "is not a 'date-time'"),
        ("GET", NODE_PATH, 200, {"id": 1, "type": "room"}, "'name' is a required property"),
        ("GET", NODE_PATH, 404, error_body(404, "x", None) | {"errorCode": None}, "errorCode: None"),
        ("GET", NODE_PATH, 418, error_body(418, "teapot", None), "status 418 is not documented"),
        ("DELETE", NODE_PATH, 204, {"unexpected": True}, "a JSON body where the description documents none"),
        (
            "GET",
            "/api/v4/user/account/keypair",
            200,
            {
                "privateKeyContainer": {
                    "version": "A",
                    "privateKey": "k",
                    "expireAt": "2027-01-01T00:00:00Z",
                },
                "publicKeyContainer": {"version": "A", "publicKey": "p"},
            },
            "write-only",
        ),
    ]
    for method, route, status, body, expected in cases:
        contract.tally.violations.clear()
        contract.check(method, route, route, status, body)
        problems = [v.problem for v in contract.tally.violations]
        assert any(expected in p for p in problems), (method, route, status, problems)
    assert contract.tally.checked == 1 + len(cases)


def test_contract_skips_what_the_description_does_not_cover() -> None:
    """OAuth and the emulator's own routes are outside the description; they are not counted."""
    contract = _contract()
    for route in ("/oauth/token", "/_emulator/state", "/_s3/{upload_id}/{part:\\d+}"):
        contract.check("POST", route, route, 200, {"anything": None})
    assert contract.tally == Tally()


def test_every_served_dracoon_route_is_described() -> None:
    """A new route needs its operation in the extracted description, or its answers go unchecked."""
    app = DracoonEmulator(EmulatorConfig()).make_app()
    served = {
        (route.method, route_template(route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    assert served, "no API routes found"
    assert served - described_operations() == set()


def test_contract_follows_config_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """On in the test suite (environment), off by default elsewhere, explicit config wins."""
    assert DracoonEmulator(EmulatorConfig()).contract is not None  # conftest sets the switch
    assert DracoonEmulator(EmulatorConfig(response_contract=False)).contract is None
    monkeypatch.delenv("DRACOON_EMULATOR_RESPONSE_CONTRACT")
    assert DracoonEmulator(EmulatorConfig()).contract is None
    assert DracoonEmulator(EmulatorConfig.from_dict({"response_contract": True})).contract is not None


async def test_a_general_client_connects_with_its_defaults_and_uploads(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """A general client's default connect (system info, AD and OpenID login options, OAuth with the
    legacy scripting client, account, general info, defaults, infrastructure, algorithms, key pair)
    then an upload carrying offset-less timestamps, which come back as UTC."""
    env = dracoon_emulator
    contract = env.emulator.contract
    assert contract is not None
    checked_before = contract.tally.checked
    for path in ("info", "info/auth/ad", "info/auth/openid"):
        status, body = await dracoon_api.call("GET", f"/api/v4/public/system/{path}")
        assert status == 200, (path, body)
    async with dracoon_api.session.post(
        f"{env.base_url}/oauth/token",
        data={
            "grant_type": "password",
            "username": env.service_user.login,
            "password": env.service_user.password,
        },
        headers=basic_auth("dracoon_legacy_scripting", ""),
    ) as resp:
        assert resp.status == 200
        token = str((await resp.json())["access_token"])
    answers: dict[str, Any] = {}
    for path in (
        "user/account",
        "config/info/general",
        "config/info/defaults",
        "config/info/infrastructure",
        "config/info/policies/algorithms",
        "user/account/keypair",
    ):
        status, answers[path] = await dracoon_api.call("GET", f"/api/v4/{path}", token)
        assert status == 200, (path, answers[path])
    assert answers["config/info/defaults"]["languageDefault"] == "en-US"
    assert answers["config/info/infrastructure"]["tenantUuid"] == env.state.tenant_uuid
    assert "homeRoomId" not in answers["user/account"]
    assert "expireAt" not in answers["user/account/keypair"]["privateKeyContainer"]

    plain = env.state.add_room("Plain", admins=[env.service_user.id])
    stamps = {"timestampCreation": OFFSETLESS, "timestampModification": "2026-12-06T11:30:00.250"}
    channel = await dracoon_api.open_channel(token, plain.id, "call.mp4", **stamps)
    status, _ = await dracoon_api.call("POST", channel["uploadUrl"], data=b"recording")
    assert status == 201
    status, node = await dracoon_api.call("PUT", channel["uploadUrl"], json={})
    assert status == 201, node
    assert node["timestampCreation"] == "2026-12-06T10:00:00Z"
    assert node["timestampModification"] == "2026-12-06T11:30:00.250Z"
    assert "expireAt" not in node and node["parentId"] == plain.id
    assert env.state.file_content(node["id"]) == b"recording"
    assert contract.tally.checked - checked_before == 12 and contract.tally.violations == []


@pytest.mark.parametrize("kind", ["rooms", "folders"])
async def test_offsetless_timestamps_on_containers(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi, kind: str
) -> None:
    """Room and folder creation take offset-less timestamps as UTC too; explicit offsets stay."""
    token = await dracoon_api.login_as(dracoon_emulator.service_user)
    status, node = await dracoon_api.call(
        "POST",
        f"/api/v4/nodes/{kind}",
        token,
        json={
            "name": "Dated",
            "parentId": dracoon_emulator.parent_room_id,
            "timestampCreation": OFFSETLESS,
            "timestampModification": "2026-12-06T10:00:00+02:00",
        },
    )
    assert status == 201, node
    assert node["timestampCreation"] == "2026-12-06T10:00:00Z"
    assert node["timestampModification"] == "2026-12-06T10:00:00+02:00"


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-12-06",
        "2026-12-06 10:00:00",
        "20261206T100000",
        "2026-13-06T10:00:00",
        "06.12.2026 10:00",
        "now",
    ],
)
async def test_what_is_no_date_time_stays_rejected(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi, stamp: str
) -> None:
    """Leniency covers the missing offset only: other malformed date-times are still 400 -80013."""
    token = await dracoon_api.login_as(dracoon_emulator.service_user)
    status, body = await dracoon_api.call(
        "POST",
        "/api/v4/nodes/files/uploads",
        token,
        json={"parentId": dracoon_emulator.parent_room_id, "name": "f", "timestampCreation": stamp},
    )
    assert (status, body["errorCode"]) == (400, -80013)
