"""Emulator: node rules (names, case-insensitive uniqueness, permissions, encryption), listing,
and request-body validation against the OpenAPI schemas."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.dracoon import DracoonEnv, EmulatorApi

pytestmark = pytest.mark.integration


async def _room(
    api: EmulatorApi, token: str, name: str, parent_id: int | None, **extra: object
) -> tuple[int, Any]:
    return await api.call(
        "POST", "/api/v4/nodes/rooms", token, json={"name": name, "parentId": parent_id, **extra}
    )


@pytest.mark.parametrize(
    "name",
    [
        "CON",
        "nul.txt",
        "Lpt9",
        "a/b",
        "a:b",
        "what?",
        "star*",
        'q"',
        "pipe|",
        "-lead",
        "dot.",
        "x" * 151,
        " ",
        "a\tb",
    ],
)
async def test_bad_names_rejected(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi, name: str) -> None:
    """DRACOON's naming rules: reserved names, forbidden characters, '-' start, '.' end, length."""
    token = await dracoon_api.login_as(dracoon_emulator.service_user)
    status, body = await _room(dracoon_api, token, name, dracoon_emulator.parent_room_id)
    assert (status, body["errorCode"]) == (400, -40755)


async def test_room_creation_and_case_insensitive_conflict(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """A sub-room inherits permissions and encryption; a case-only clash is a 409 with null errorCode."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    status, room = await _room(dracoon_api, token, "Sales 2024", env.parent_room_id)
    assert status == 201
    assert room["type"] == "room" and room["parentId"] == env.parent_room_id
    assert room["inheritPermissions"] is True and room["isEncrypted"] is True
    assert room["parentPath"] == "/Recordings/" and room["permissions"]["manage"] is True
    status, body = await _room(dracoon_api, token, "sales 2024", env.parent_room_id)
    assert status == 409 and body == {
        "code": 409,
        "message": "Conflict",
        "debugInfo": "Node with specified name already exists",
    }
    status, _ = await dracoon_api.call(
        "POST", "/api/v4/nodes/folders", token, json={"name": "SALES 2024", "parentId": env.parent_room_id}
    )
    assert status == 409


async def test_room_permission_rules(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Top-level needs Room Manager; inherit on top level -40017; no admin when not inheriting -40006;
    a reader cannot create sub-rooms (403)."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    status, body = await _room(dracoon_api, token, "Top", None, adminIds=[env.service_user.id])
    assert status == 403 and "errorCode" not in body  # DRACOON leaves it out, never null
    env.state.users[env.service_user.id].room_manager = True
    status, body = await _room(dracoon_api, token, "Top", None, inheritPermissions=True)
    assert (status, body["errorCode"]) == (400, -40017)
    status, body = await _room(dracoon_api, token, "Top", None)
    assert (status, body["errorCode"]) == (400, -40006)
    status, top = await _room(dracoon_api, token, "Top", None, adminIds=[env.service_user.id])
    assert status == 201 and top["isEncrypted"] is False and top["inheritPermissions"] is False
    status, body = await _room(dracoon_api, token, "Sub", env.parent_room_id, inheritPermissions=False)
    assert (status, body["errorCode"]) == (400, -40006)
    reader = env.add_user("reader", None)
    reader_token = await dracoon_api.login_as(reader)
    status, _ = await _room(dracoon_api, reader_token, "Nope", env.parent_room_id)
    assert status == 403
    status, _ = await _room(dracoon_api, token, "Missing parent", 999_999)
    assert status == 404


async def test_inherited_permissions_and_encryption_info(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """A member of the parent sees a sub-room through inheritance; GET node has encryptionInfo."""
    env = dracoon_emulator
    member = env.add_user("member")
    sub = env.state.add_room("Sub", env.parent_room_id)
    detached = env.state.add_room(
        "Detached", env.parent_room_id, inherit_permissions=False, admins=[env.service_user.id]
    )
    token = await dracoon_api.login_as(member)
    status, node = await dracoon_api.call("GET", f"/api/v4/nodes/{sub.id}", token)
    assert status == 200 and node["permissions"]["read"] is True and node["permissions"]["manage"] is False
    assert node["encryptionInfo"] == {
        "userKeyState": "available",
        "roomKeyState": "none",
        "dataSpaceKeyState": "none",
    }
    status, _ = await dracoon_api.call("GET", f"/api/v4/nodes/{detached.id}", token)
    assert status == 403
    status, body = await dracoon_api.call("GET", "/api/v4/nodes/123456789", token)
    assert (status, body["errorCode"]) == (404, -41000)


async def test_list_filter_sort_and_paging(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Filters (name:eq ignoring case, type OR), paging with range, grouping rooms before folders."""
    env = dracoon_emulator
    for name in ("b-room", "A-room", "c-room"):
        env.state.add_room(name, env.parent_room_id)
    env.state.add_folder("a-folder", env.parent_room_id)
    token = await dracoon_api.login_as(env.service_user)
    path = "/api/v4/nodes"
    status, body = await dracoon_api.call("GET", path, token, params={"parent_id": env.parent_room_id})
    assert status == 200
    assert [n["name"] for n in body["items"]] == ["A-room", "b-room", "c-room", "a-folder"]
    assert body["range"] == {"offset": 0, "limit": 500, "total": 4}
    assert all("encryptionInfo" not in n for n in body["items"])
    params = {"parent_id": env.parent_room_id, "filter": "name:eq:B-ROOM|type:eq:room:folder"}
    _, body = await dracoon_api.call("GET", path, token, params=params)
    assert [n["name"] for n in body["items"]] == ["b-room"]
    params = {"parent_id": env.parent_room_id, "offset": 1, "limit": 2, "sort": "name:desc"}
    _, body = await dracoon_api.call("GET", path, token, params=params)
    assert [n["name"] for n in body["items"]] == ["b-room", "A-room"]
    assert body["range"] == {"offset": 1, "limit": 2, "total": 4}
    _, body = await dracoon_api.call(
        "GET", path, token, params={"parent_id": env.parent_room_id, "limit": 9999}
    )
    assert body["range"]["limit"] == 500
    status, body = await dracoon_api.call(
        "GET", path, token, params={"parent_id": env.parent_room_id, "offset": -1}
    )
    assert (status, body["errorCode"]) == (400, -80024)
    status, body = await dracoon_api.call("GET", path, token, params={"filter": "nme:eq:x"})
    assert (status, body["errorCode"]) == (400, -92001)
    _, body = await dracoon_api.call("GET", path, token)
    assert [n["id"] for n in body["items"]] == [env.parent_room_id]
    status, _ = await dracoon_api.call("GET", path, token, params={"parent_id": 4242})
    assert status == 404


async def test_listing_hides_rooms_without_access(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Rooms a user cannot read (and that lead to nothing readable) are not listed."""
    env = dracoon_emulator
    env.state.add_room("Private", env.parent_room_id, inherit_permissions=False, admins=[env.service_user.id])
    env.state.add_room("Shared", env.parent_room_id)
    outsider = env.add_user("outsider", None, room_ids=[])
    member = env.add_user("member", None)
    outsider_token = await dracoon_api.login_as(outsider)
    _, body = await dracoon_api.call("GET", "/api/v4/nodes", outsider_token)
    assert body["items"] == []
    status, _ = await dracoon_api.call(
        "GET", "/api/v4/nodes", outsider_token, params={"parent_id": env.parent_room_id}
    )
    assert status == 404
    member_token = await dracoon_api.login_as(member)
    _, body = await dracoon_api.call(
        "GET", "/api/v4/nodes", member_token, params={"parent_id": env.parent_room_id}
    )
    assert [n["name"] for n in body["items"]] == ["Shared"]


async def test_search(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    env = dracoon_emulator
    sub = env.state.add_room("Team", env.parent_room_id)
    env.state.add_file(sub.id, "Weekly Call.mp4", b"x")
    token = await dracoon_api.login_as(env.service_user)
    params = {"search_string": "weekly*", "depth_level": -1, "parent_id": env.parent_room_id}
    status, body = await dracoon_api.call("GET", "/api/v4/nodes/search", token, params=params)
    assert status == 200 and [n["name"] for n in body["items"]] == ["Weekly Call.mp4"]
    assert body["items"][0]["parentPath"] == "/Recordings/Team/"


async def test_encrypt_room_rules(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Only empty rooms switch; already-encrypted -40002; a caller without key pair -70020."""
    env = dracoon_emulator
    env.state.users[env.service_user.id].room_manager = True
    token = await dracoon_api.login_as(env.service_user)
    _, top = await _room(dracoon_api, token, "Plain", None, adminIds=[env.service_user.id])
    child = env.state.add_room("Child", top["id"])
    url = f"/api/v4/nodes/rooms/{top['id']}/encrypt"
    status, node = await dracoon_api.call("PUT", url, token, json={"isEncrypted": True})
    assert status == 200 and node["isEncrypted"] is True and child.encrypted is True
    status, body = await dracoon_api.call("PUT", url, token, json={"isEncrypted": True})
    assert (status, body["errorCode"]) == (400, -40002)
    env.state.add_file(child.id, "f.bin", b"data")
    status, body = await dracoon_api.call("PUT", url, token, json={"isEncrypted": False})
    assert (status, body["errorCode"]) == (400, -40003)
    nokey = env.add_user("nokey", None, perms="all")
    nokey_token = await dracoon_api.login_as(nokey)
    plain = env.state.add_room("Plain2", None, admins=[nokey.id])
    status, body = await dracoon_api.call(
        "PUT", f"/api/v4/nodes/rooms/{plain.id}/encrypt", nokey_token, json={"isEncrypted": True}
    )
    assert (status, body["errorCode"]) == (403, -70020)


async def test_delete_nodes(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    env = dracoon_emulator
    sub = env.state.add_room("Sub", env.parent_room_id)
    f1 = env.state.add_file(sub.id, "a.bin", b"1")
    f2 = env.state.add_file(sub.id, "b.bin", b"2")
    token = await dracoon_api.login_as(env.service_user)
    status, _ = await dracoon_api.call("DELETE", "/api/v4/nodes", token, json={"nodeIds": [f1.id, f2.id]})
    assert status == 204 and env.state.files_in(sub.id) == []
    status, _ = await dracoon_api.call("DELETE", f"/api/v4/nodes/{sub.id}", token)
    assert status == 204 and sub.id not in env.state.nodes
    status, body = await dracoon_api.call("DELETE", f"/api/v4/nodes/{sub.id}", token)
    assert (status, body["errorCode"]) == (404, -41000)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "X", "parentId": 1, "colour": "red"}, -80013),  # unknown field
        ({"parentId": 1}, -80000),  # missing required
        ({"name": None, "parentId": 1}, -80000),  # null for a required field
        ({"name": "X", "parentId": "1"}, -80002),  # wrong type (string for int64)
        ({"name": "X", "parentId": True}, -80002),  # a bool is not a number
        ({"name": 5, "parentId": 1}, -80013),  # wrong type (number for string)
        ({"name": "X", "parentId": 1, "classification": 7}, -40756),  # enum
        ({"name": "X", "parentId": 1, "recycleBinRetentionPeriod": 10000}, -80018),  # maximum
        ({"name": "X", "parentId": 1, "hasActivitiesLog": "yes"}, -80005),  # boolean
        ({"name": "X", "parentId": 1, "timestampCreation": "yesterday"}, -80013),  # date-time
        (["not", "an", "object"], -80013),
    ],
)
async def test_request_validation(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi, body: object, code: int
) -> None:
    """Bodies are checked against the OpenAPI schema: 400 with DRACOON's error codes."""
    token = await dracoon_api.login_as(dracoon_emulator.service_user)
    status, answer = await dracoon_api.call("POST", "/api/v4/nodes/rooms", token, json=body)
    assert (status, answer["errorCode"]) == (400, code)
    assert dracoon_emulator.state.children(dracoon_emulator.parent_room_id) == []


async def test_validation_nested_and_content_type(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Nested objects ($ref) are closed too; a non-JSON content type is 415; bad JSON is 400."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    body = {"parentId": env.parent_room_id, "name": "f", "expiration": {"enableExpiration": True, "typo": 1}}
    status, answer = await dracoon_api.call("POST", "/api/v4/nodes/files/uploads", token, json=body)
    assert status == 400 and "expiration.typo" in answer["debugInfo"]
    status, _ = await dracoon_api.call(
        "POST", "/api/v4/nodes/rooms", token, data=b'{"name": "x"}', headers={"Content-Type": "text/plain"}
    )
    assert status == 415
    status, answer = await dracoon_api.call(
        "POST", "/api/v4/nodes/rooms", token, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (status, answer["errorCode"]) == (400, -80013)
