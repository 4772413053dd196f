"""Node endpoints: list, search, get, create rooms and folders, (un)encrypt rooms, delete.

Permission rules follow DRACOON: creating a sub-room needs ``manage`` on the parent room, a
top-level room needs the Room Manager role; folders need ``create``; deleting files and folders
needs ``delete``, deleting a room ``manage`` on its parent (Room Manager at the top level).
"""

from __future__ import annotations

import fnmatch

from aiohttp import web

from .context import ctx, current_user, int_param, path_id
from .errors import (
    ApiError,
    bad_request,
    container_not_found,
    forbidden,
    json_response,
    name_exists,
    no_key_pair,
)
from .listing import collect, page, page_range, parse_filter, sort_nodes
from .model import Node, User
from .names import check_name, fold
from .openapi import normalize_datetime, read_json
from .render import node_json
from .state import EmulatorState

MAX_NOTES = 255


async def list_nodes(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes`` (``EncryptionInfo`` is not included, as in DRACOON)."""
    state, user = ctx(request).state, current_user(request)
    parent_id = int_param(request, "parent_id", 0) or None
    depth = int_param(request, "depth_level", 0)
    assert depth is not None
    _visible_container(state, user, parent_id)
    filters = parse_filter(state, user.id, request.query.get("filter"))
    offset, limit = page_range(request)
    nodes = [
        n
        for n in collect(state, parent_id, depth)
        if state.visible(user.id, n) and all(f(n) for f in filters)
    ]
    items, rng = page(sort_nodes(nodes, request.query.get("sort")), offset, limit)
    return json_response({"range": rng, "items": [node_json(state, n, user.id) for n in items]})


async def search_nodes(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes/search`` (minimal: ``*`` wildcard or substring, case-insensitive)."""
    state, user = ctx(request).state, current_user(request)
    text = request.query.get("search_string")
    if not text:
        raise bad_request(-80000, "Mandatory fields cannot be empty: search_string")
    parent_id = int_param(request, "parent_id", 0) or None
    depth = int_param(request, "depth_level", 0)
    assert depth is not None
    _visible_container(state, user, parent_id)
    pattern = fold(text) if "*" in text else f"*{fold(text)}*"
    filters = parse_filter(state, user.id, request.query.get("filter"))
    offset, limit = page_range(request)
    nodes = [
        n
        for n in collect(state, parent_id, depth)
        if fnmatch.fnmatchcase(fold(n.name), pattern)
        and state.visible(user.id, n)
        and all(f(n) for f in filters)
    ]
    items, rng = page(sort_nodes(nodes, request.query.get("sort")), offset, limit)
    return json_response({"range": rng, "items": [node_json(state, n, user.id) for n in items]})


def _visible_container(state: EmulatorState, user: User, parent_id: int | None) -> Node | None:
    if parent_id is None:
        return None
    parent = state.nodes.get(parent_id)
    if parent is None or parent.type == "file" or not state.visible(user.id, parent):
        raise container_not_found()
    return parent


async def get_node(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes/{node_id}`` with ``encryptionInfo`` and the caller's permissions."""
    state, user = ctx(request).state, current_user(request)
    node = state.nodes.get(path_id(request, "node_id"))
    if node is None:
        raise ApiError(404, "Node not found", -41000)
    if not state.visible(user.id, node):
        raise forbidden()
    return json_response(node_json(state, node, user.id, with_encryption_info=True))


def _check_notes(notes: object) -> None:
    if isinstance(notes, str) and len(notes) > MAX_NOTES:
        raise bad_request(-80007, f"Maximum allowed length is exceeded: notes ({MAX_NOTES})")


async def create_room(request: web.Request) -> web.Response:
    """``POST /api/v4/nodes/rooms`` -> 201 Node."""
    body = await read_json(request, "CreateRoomRequest")
    state, user = ctx(request).state, current_user(request)
    parent_id = body.get("parentId")
    parent = state.nodes.get(parent_id) if parent_id is not None else None
    if parent_id is not None and (parent is None or parent.type != "room"):
        raise container_not_found()
    if parent is not None and not state.can(user.id, parent, "manage"):
        raise forbidden()
    if parent is None and not user.room_manager:
        raise forbidden("Only room managers may create top-level rooms")
    inherit = body.get("inheritPermissions")
    inherit = parent is not None if inherit is None else inherit
    if parent is None and inherit:
        raise bad_request(-40017, "Inheritance of permissions cannot be enabled for top level rooms")
    if body.get("adminGroupIds"):
        raise ApiError(404, "Group not found", -30000)
    admins: list[int] = body.get("adminIds") or []
    if any(a not in state.users for a in admins):
        raise ApiError(404, "User not found", -70501)
    if not inherit and not admins:
        raise bad_request(-40006, "At least one non-expiring admin user / group required")
    if (body.get("quota") or 0) < 0:
        raise bad_request(-80001, "Invalid positive number: quota")
    _check_notes(body.get("notes"))
    check_name(body["name"])
    if state.find_child(parent_id, body["name"]) is not None:
        raise name_exists()
    room = state.add_room(
        body["name"],
        parent_id,
        admins=admins,
        inherit_permissions=inherit,
        quota=body.get("quota") or None,
        classification=body.get("classification") or 2,
        created_by=user.id,
    )
    room.notes = body.get("notes")
    room.timestamp_creation = normalize_datetime(body.get("timestampCreation"))
    room.timestamp_modification = normalize_datetime(body.get("timestampModification"))
    room.recycle_bin_retention = body.get("recycleBinRetentionPeriod") or 0
    room.has_activities_log = body.get("hasActivitiesLog", True) is not False
    return json_response(node_json(state, room, user.id), status=201)


async def create_folder(request: web.Request) -> web.Response:
    """``POST /api/v4/nodes/folders`` -> 201 Node."""
    body = await read_json(request, "CreateFolderRequest")
    state, user = ctx(request).state, current_user(request)
    parent = state.nodes.get(body["parentId"])
    if parent is None or parent.type == "file":
        raise container_not_found()
    if not state.can(user.id, parent, "create"):
        raise forbidden()
    _check_notes(body.get("notes"))
    check_name(body["name"])
    if state.find_child(parent.id, body["name"]) is not None:
        raise name_exists()
    folder = state.add_folder(body["name"], parent.id, created_by=user.id)
    folder.notes = body.get("notes")
    folder.timestamp_creation = normalize_datetime(body.get("timestampCreation"))
    folder.timestamp_modification = normalize_datetime(body.get("timestampModification"))
    return json_response(node_json(state, folder, user.id), status=201)


async def update_file(request: web.Request) -> web.Response:
    """``PUT /api/v4/nodes/files/{file_id}`` (``UpdateFileRequest``): notes and classification;
    other fields are accepted and ignored (not modelled). Needs ``change`` on the file."""
    body = await read_json(request, "UpdateFileRequest")
    state, user = ctx(request).state, current_user(request)
    node = state.nodes.get(path_id(request, "file_id"))
    if node is None or node.type != "file":
        raise ApiError(404, "File not found", -40751)
    if not state.can(user.id, node, "change"):
        raise forbidden()
    _check_notes(body.get("notes"))
    if "notes" in body:
        node.notes = body["notes"] or None
    if body.get("classification") is not None:
        node.classification = body["classification"]
    return json_response(node_json(state, node, user.id))


async def encrypt_room(request: web.Request) -> web.Response:
    """``PUT /api/v4/nodes/rooms/{room_id}/encrypt``: only empty rooms; sub-rooms follow **[inferred]**.

    Rescue keys in the body are validated for shape and otherwise ignored (not modelled).
    """
    body = await read_json(request, "EncryptRoomRequest")
    c, user = ctx(request), current_user(request)
    room = c.state.nodes.get(path_id(request, "room_id"))
    if room is None or room.type != "room":
        raise container_not_found()
    if not c.state.can(user.id, room, "manage"):
        raise forbidden()
    wanted: bool = body["isEncrypted"]
    if wanted and not c.config.crypto_enabled:
        raise bad_request(-90020, "Client-side encryption is not enabled")
    if wanted and not user.key_pairs:
        raise no_key_pair()
    rescue = body.get("dataRoomRescueKey")
    if rescue is not None:
        if "BEGIN PUBLIC KEY" not in rescue["publicKeyContainer"]["publicKey"]:
            raise bad_request(-70022, "Invalid public key format")
        if "PRIVATE KEY" not in rescue["privateKeyContainer"]["privateKey"]:
            raise bad_request(-70023, "Invalid private key format")
    if room.encrypted == wanted:
        raise (
            bad_request(-40002, "(Target) room is encrypted")
            if wanted
            else bad_request(-40001, "(Target) room is not encrypted")
        )
    if any(n.type == "file" for n in c.state.descendants(room.id)):
        raise (
            bad_request(-40008, "Room with files cannot be encrypted")
            if wanted
            else bad_request(-40003, "Room with files cannot be unencrypted")
        )
    for node in [room, *c.state.descendants(room.id)]:
        if node.type == "room":
            node.encrypted = wanted
    c.state.touch(room.id)
    return json_response(node_json(c.state, room, user.id, with_encryption_info=True))


def _check_delete(state: EmulatorState, user: User, node: Node) -> None:
    if node.type == "room":
        allowed = (
            user.room_manager
            if node.parent_id is None
            else state.can(user.id, state.nodes[node.parent_id], "manage")
        )
    else:
        allowed = state.can(user.id, node, "delete")
    if not allowed:
        raise forbidden()


async def delete_node(request: web.Request) -> web.Response:
    """``DELETE /api/v4/nodes/{node_id}`` -> 204 (the whole subtree goes)."""
    state, user = ctx(request).state, current_user(request)
    node = state.nodes.get(path_id(request, "node_id"))
    if node is None:
        raise ApiError(404, "Node not found", -41000)
    _check_delete(state, user, node)
    state.delete_node(node.id)
    return web.Response(status=204)


async def delete_nodes(request: web.Request) -> web.Response:
    """``DELETE /api/v4/nodes`` body ``{"nodeIds": [...]}`` -> 204; all or nothing, one parent."""
    body = await read_json(request, "DeleteNodesRequest")
    state, user = ctx(request).state, current_user(request)
    ids: list[int] = body["nodeIds"]
    if not ids:
        raise bad_request(-80000, "Mandatory fields cannot be empty: nodeIds")
    nodes = [state.nodes.get(i) for i in ids]
    found = [n for n in nodes if n is not None]
    if len(found) != len(nodes):
        raise ApiError(404, "Node not found", -41000)
    if len({n.parent_id for n in found}) > 1:
        raise bad_request(-41054, "Nodes of a copy, move or delete operation must be in same parent")
    for node in found:
        _check_delete(state, user, node)
    for node in found:
        if node.id in state.nodes:
            state.delete_node(node.id)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v4/nodes", list_nodes, allow_head=False),
        web.delete("/api/v4/nodes", delete_nodes),
        web.get("/api/v4/nodes/search", search_nodes, allow_head=False),
        web.post("/api/v4/nodes/rooms", create_room),
        web.post("/api/v4/nodes/folders", create_folder),
        web.put("/api/v4/nodes/rooms/{room_id:\\d+}/encrypt", encrypt_room),
        web.put("/api/v4/nodes/files/{file_id:-?\\d+}", update_file),
        web.get("/api/v4/nodes/{node_id:-?\\d+}", get_node, allow_head=False),
        web.delete("/api/v4/nodes/{node_id:-?\\d+}", delete_node),
    ]
