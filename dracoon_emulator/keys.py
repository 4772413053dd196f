"""Key endpoints: the caller's key pairs, missing file keys, setting file keys, the user file key.

The emulator never holds a private key in the clear: it stores the containers and encrypted file
keys clients send. ``missingFileKeys`` is computed from room membership: for every file in an
encrypted room for which the *caller* holds a file key, every user with ``read`` on that room who
has a key pair lacks a key for one of its versions is an item. Items are ordered by file id, then
user id (deterministic; no rescue keys are modelled, which DRACOON would list first), at most 100
per call, with ``total`` the exact count.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .context import ctx, current_user, int_param, path_id
from .errors import (
    ApiError,
    bad_request,
    file_not_found,
    forbidden,
    json_response,
    no_key_pair,
    user_not_found,
)
from .files import check_file_key
from .listing import page_range
from .model import KEY_PAIR_VERSIONS, Node, User
from .openapi import read_json
from .render import key_pair_json
from .state import EmulatorState

MISSING_KEYS_CAP = 100
_USE_KEYS = (
    "room_rescue_key",
    "system_rescue_key",
    "previous_user_key",
    "previous_room_rescue_key",
    "previous_system_rescue_key",
)


def _no_pair() -> ApiError:
    return ApiError(404, "User does not have a keypair", -70020)


async def get_key_pair(request: web.Request) -> web.Response:
    """``GET /api/v4/user/account/keypair[?version=]``; without a version the oldest algorithm ("A" first)."""
    user = current_user(request)
    version = request.query.get("version")
    if version is None:
        version = next((v for v in KEY_PAIR_VERSIONS if v in user.key_pairs), None)
    if version is None or version not in user.key_pairs:
        raise _no_pair()
    return json_response(key_pair_json(user, version))


async def list_key_pairs(request: web.Request) -> web.Response:
    """``GET /api/v4/user/account/keypairs`` -> JSON array."""
    user = current_user(request)
    if not user.key_pairs:
        raise _no_pair()
    return json_response([key_pair_json(user, v) for v in KEY_PAIR_VERSIONS if v in user.key_pairs])


async def set_key_pair(request: web.Request) -> web.Response:
    """``POST /api/v4/user/account/keypair`` -> 204; one pair per version, never overwritten."""
    body = await read_json(request, "UserKeyPairContainer")
    c, user = ctx(request), current_user(request)
    if not c.config.crypto_enabled:
        raise bad_request(-70027, "Customer encryption is not enabled")
    private, public = body["privateKeyContainer"], body["publicKeyContainer"]
    if public["version"] not in KEY_PAIR_VERSIONS or "BEGIN PUBLIC KEY" not in public["publicKey"]:
        raise bad_request(-70022, "Invalid public key format")
    if private["version"] != public["version"] or "PRIVATE KEY" not in private["privateKey"]:
        raise bad_request(-70023, "Invalid private key format")
    if public["version"] in user.key_pairs:
        raise ApiError(409, "User does already have a keypair", -70021)
    c.state.set_key_pair(
        user.id,
        {
            "privateKeyContainer": {"version": private["version"], "privateKey": private["privateKey"]},
            "publicKeyContainer": {"version": public["version"], "publicKey": public["publicKey"]},
        },
    )
    return web.Response(status=204)


async def delete_key_pair(request: web.Request) -> web.Response:
    """``DELETE /api/v4/user/account/keypair[?version=]`` (default "A"); drops that pair's file keys."""
    c, user = ctx(request), current_user(request)
    version = request.query.get("version", "A")
    if version not in user.key_pairs:
        raise _no_pair()
    c.state.remove_key_pair(user.id, version)
    return web.Response(status=204)


def _caller_key(node: Node, user: User) -> dict[str, str] | None:
    """The caller's own copy of a file key, newest key pair version first."""
    held = node.file_keys.get(user.id, {})
    return next((held[v] for v in user.key_pair_versions() if v in held), None)


def missing_items(
    state: EmulatorState,
    caller: User,
    *,
    file_id: int | None = None,
    room_id: int | None = None,
    user_id: int | None = None,
) -> list[tuple[int, int, list[str]]]:
    """All ``(file id, user id, key pair versions lacking a key)``, ordered by file then user."""
    items: list[tuple[int, int, list[str]]] = []
    for node in sorted(state.nodes.values(), key=lambda n: n.id):
        if node.type != "file" or (file_id is not None and node.id != file_id):
            continue
        room = state.room_of(node)
        if not room.encrypted or (room_id is not None and room.id != room_id):
            continue
        if _caller_key(node, caller) is None or not state.can(caller.id, node, "read"):
            continue
        for reader in state.readers(room):
            if user_id is not None and reader.id != user_id:
                continue
            held = node.file_keys.get(reader.id, {})
            lacking = [v for v in reader.key_pair_versions() if v not in held]
            if lacking:
                items.append((node.id, reader.id, lacking))
    return items


async def missing_file_keys(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes/missingFileKeys`` (snake_case query; hard cap of 100 items per call)."""
    state, caller = ctx(request).state, current_user(request)
    if not caller.key_pairs:
        raise no_key_pair()
    file_id, room_id = int_param(request, "file_id"), int_param(request, "room_id")
    user_id = int_param(request, "user_id")
    use_key = request.query.get("use_key")
    if use_key is not None and use_key not in _USE_KEYS:
        raise bad_request(-92001, "Invalid parameter value: use_key")
    if file_id is not None:
        node = state.nodes.get(file_id)
        if node is None or node.type != "file":
            raise file_not_found()
        if not state.room_of(node).encrypted:
            raise bad_request(-40001, "(Target) room is not encrypted")
    if room_id is not None:
        room = state.nodes.get(room_id)
        if room is None or room.type != "room":
            raise ApiError(404, "Container not found", -40000)
        if not room.encrypted:
            raise bad_request(-40001, "(Target) room is not encrypted")
    if user_id is not None and user_id not in state.users:
        raise user_not_found()
    if use_key in ("room_rescue_key", "system_rescue_key"):
        raise bad_request(-40024, "Room is not configured with Room Rescue Key")
    offset, limit = page_range(request, cap=MISSING_KEYS_CAP)
    everything = (
        []
        if use_key is not None
        else missing_items(state, caller, file_id=file_id, room_id=room_id, user_id=user_id)
    )
    window = everything[offset : offset + limit]
    users: dict[tuple[int, str], dict[str, Any]] = {}
    files: dict[int, dict[str, Any]] = {}
    for fid, uid, lacking in window:
        for version in lacking:
            public = state.users[uid].key_pairs[version]["publicKeyContainer"]
            users[(uid, version)] = {"id": uid, "publicKeyContainer": dict(public)}
        files[fid] = {"id": fid, "fileKeyContainer": dict(_caller_key(state.nodes[fid], caller) or {})}
    return json_response(
        {
            "range": {"offset": offset, "limit": limit, "total": len(everything)},
            "items": [{"userId": uid, "fileId": fid} for fid, uid, _ in window],
            "users": list(users.values()),
            "files": list(files.values()),
        }
    )


async def set_file_keys(request: web.Request) -> web.Response:
    """``POST /api/v4/nodes/files/keys`` -> 204; all items checked first; existing keys are kept."""
    body = await read_json(request, "UserFileKeySetBatchRequest")
    state, caller = ctx(request).state, current_user(request)
    if not caller.key_pairs:
        raise no_key_pair()
    checked: list[tuple[int, int, dict[str, str], str]] = []
    for item in body["items"]:
        node = state.nodes.get(item["fileId"])
        if node is None or node.type != "file":
            raise file_not_found()
        if not state.room_of(node).encrypted:
            raise bad_request(-40001, "(Target) room is not encrypted")
        if not state.can(caller.id, node, "read"):
            raise forbidden()
        if _caller_key(node, caller) is None:
            raise ApiError(403, "File key not found", -40761)
        target = state.users.get(item["userId"])
        if target is None:
            raise user_not_found()
        if not state.can(target.id, node, "read"):
            raise ApiError(403, f"Illegal user ID: user {target.id} cannot read file {node.id}", -70029)
        version = check_file_key(item["fileKey"], target)
        checked.append((node.id, target.id, item["fileKey"], version))
    for fid, uid, key, version in checked:
        if version not in state.nodes[fid].file_keys.get(uid, {}):
            state.set_file_key(fid, uid, key)
    return web.Response(status=204)


async def user_file_key(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes/files/{file_id}/user_file_key[?version=]`` -> the caller's ``FileKey``."""
    state, caller = ctx(request).state, current_user(request)
    node = state.nodes.get(path_id(request, "file_id"))
    if node is None or node.type != "file":
        raise file_not_found()
    if not state.can(caller.id, node, "read"):
        raise forbidden()
    if not caller.key_pairs:
        raise no_key_pair()
    version = request.query.get("version")
    held = node.file_keys.get(caller.id, {})
    key = held.get(version) if version is not None else _caller_key(node, caller)
    if key is None:
        raise ApiError(404, "File key not found", -40761)
    return json_response(dict(key))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v4/user/account/keypair", get_key_pair, allow_head=False),
        web.post("/api/v4/user/account/keypair", set_key_pair),
        web.delete("/api/v4/user/account/keypair", delete_key_pair),
        web.get("/api/v4/user/account/keypairs", list_key_pairs, allow_head=False),
        web.get("/api/v4/nodes/missingFileKeys", missing_file_keys, allow_head=False),
        web.post("/api/v4/nodes/files/keys", set_file_keys),
        web.get("/api/v4/nodes/files/{file_id:-?\\d+}/user_file_key", user_file_key, allow_head=False),
    ]
