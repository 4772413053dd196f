"""JSON renderings of the model in DRACOON's response schemas (``Node``, ``UserInfo``, ...)."""

from __future__ import annotations

import mimetypes
from typing import Any

from .model import PERMISSIONS, Node, User, iso
from .names import split_extension
from .state import EmulatorState


def user_info(state: EmulatorState, user_id: int) -> dict[str, Any]:
    """``UserInfo`` (createdBy/updatedBy); a seeded node may name user 0, the system."""
    user = state.users.get(user_id)
    if user is None:
        return {
            "id": user_id,
            "userType": "system",
            "avatarUuid": "",
            "userName": "system",
            "firstName": "System",
            "lastName": "",
            "displayName": "System",
        }
    return {
        "id": user.id,
        "userType": "internal",
        "avatarUuid": f"avatar-{user.id}",
        "userName": user.login,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "email": user.email,
        "displayName": f"{user.first_name} {user.last_name}",
    }


def permissions_json(granted: frozenset[str]) -> dict[str, bool]:
    return {name: name in granted for name in PERMISSIONS}


def node_json(
    state: EmulatorState, node: Node, user_id: int, *, with_encryption_info: bool = False
) -> dict[str, Any]:
    """A ``Node`` as seen by ``user_id``; ``encryptionInfo`` only on single-node reads (as DRACOON)."""
    room = state.room_of(node)
    out: dict[str, Any] = {
        "id": node.id,
        "type": node.type,
        "name": node.name,
        "parentPath": state.parent_path(node),
        "createdAt": iso(node.created_at),
        "createdBy": user_info(state, node.created_by),
        "updatedAt": iso(node.updated_at),
        "updatedBy": user_info(state, node.updated_by),
        "timestampCreation": node.timestamp_creation or iso(node.created_at),
        "timestampModification": node.timestamp_modification or iso(node.updated_at),
        "isEncrypted": room.encrypted,
        "permissions": permissions_json(state.permissions(user_id, node)),
        "branchVersion": node.branch_version,
        "notes": node.notes or "",
        "cntDeletedVersions": 0,
        "cntComments": 0,
        "cntDownloadShares": 0,
        "cntUploadShares": 0,
        "isFavorite": False,
    }
    # The description allows no null: DRACOON leaves absent values out (top-level rooms have no
    # parent, files no expiry unless set, a file whose content was discarded unhashed no hash).
    if node.parent_id is not None:
        out["parentId"] = node.parent_id
    if node.type == "file":
        ext = split_extension(node.name)[1]
        out.update(
            {
                "size": node.size,
                "classification": node.classification,
                "fileType": ext[1:].lower(),
                "mediaType": mimetypes.guess_type(node.name)[0] or "application/octet-stream",
            }
        )
        out.update({k: v for k, v in (("hash", node.hash), ("expireAt", node.expire_at)) if v is not None})
    else:
        kids = state.children(node.id)
        out.update(
            {
                "size": state.usage(node)
                if node.type == "room"
                else sum(d.size for d in state.descendants(node.id) if d.type == "file"),
                "cntRooms": sum(1 for k in kids if k.type == "room"),
                "cntFolders": sum(1 for k in kids if k.type == "folder"),
                "cntFiles": sum(1 for k in kids if k.type == "file"),
                "cntChildren": len(kids),
                "isBrowsable": state.can(user_id, node, "read"),
            }
        )
    if node.type == "room":
        out.update(
            {
                "classification": node.classification,
                "inheritPermissions": node.inherit_permissions,
                "quota": node.quota if node.quota is not None else 0,
                "recycleBinRetentionPeriod": node.recycle_bin_retention,
                "hasActivitiesLog": node.has_activities_log,
                "hasRecycleBin": True,
                "authParentId": _auth_parent(state, node),
            }
        )
    if with_encryption_info:
        out["encryptionInfo"] = _encryption_info(state, node, user_id)
    return out


def _auth_parent(state: EmulatorState, room: Node) -> int:
    """The room whose grants are the root of this room's inherited permissions."""
    while room.inherit_permissions and room.parent_id is not None:
        room = state.nodes[room.parent_id]
    return room.id


def _encryption_info(state: EmulatorState, node: Node, user_id: int) -> dict[str, str]:
    user = state.users.get(user_id)
    if not state.room_of(node).encrypted or user is None or not user.key_pairs:
        user_state = "none"
    elif node.type != "file" or node.file_keys.get(user_id):
        user_state = "available"
    else:
        user_state = "pending"
    return {"userKeyState": user_state, "roomKeyState": "none", "dataSpaceKeyState": "none"}


def key_pair_json(user: User, version: str) -> dict[str, Any]:
    """A stored ``UserKeyPairContainer`` (copied so callers cannot mutate the store).

    ``privateKeyContainer.expireAt`` is ``writeOnly`` in the description: stored, never returned.
    """
    pair = user.key_pairs[version]
    private = {k: v for k, v in pair["privateKeyContainer"].items() if k != "expireAt"}
    return {"privateKeyContainer": private, "publicKeyContainer": dict(pair["publicKeyContainer"])}
