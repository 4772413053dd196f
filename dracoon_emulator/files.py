"""Turning an upload into a file: completion checks, name conflicts, quotas, file-key checks.

Shared by the proxy and the S3-direct path. Completion is validated when the request arrives
(:func:`plan_completion`) and applied when the bytes are final (:func:`store_file`); for S3 the
second step happens when the client polls (see ``s3.py``), so a name clash under ``fail`` then shows
up as ``status: error`` with a 409 in ``errorDetails``.

**[inferred]** behaviour: ``overwrite`` replaces the old file by a new node (new id; DRACOON's
``keepShareLinks`` exists because share links would otherwise point at the old node) and needs
``delete`` permission; ``autorename`` yields ``"name (1).ext"``, ``"name (2).ext"``, ...; a
completed file records the uploader's file key under the uploader's key pair version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

from .config import EmulatorConfig
from .errors import (
    ApiError,
    bad_request,
    container_not_found,
    customer_quota_exceeded,
    forbidden,
    no_key_pair,
    room_quota_exceeded,
)
from .model import KEY_PAIR_VERSION, Node, UploadChannel, User
from .names import autorename, check_name, fold
from .state import EmulatorState

_RSA_BYTES = {"A": 256, "RSA-4096": 512}


def invalid_file_key(why: str) -> ApiError:
    return bad_request(-80062, f"Invalid File key: {why}")


def check_file_key(file_key: dict[str, Any], owner: User) -> str:
    """Validate a ``FileKey`` for ``owner``; returns the key pair version it belongs to.

    The version must match a key pair the owner has ("A" <-> "A", "RSA-4096/AES-256-GCM" <->
    "RSA-4096"); ``key``/``iv``/``tag`` must be standard base64 of the right lengths (RSA block,
    12-byte IV, 16-byte tag). DRACOON may check less; a malformed key is a client bug either way.
    """
    kp_version = KEY_PAIR_VERSION.get(str(file_key.get("version")))
    if kp_version is None:
        raise invalid_file_key(f"unknown version {file_key.get('version')!r}")
    if not owner.key_pairs:
        raise no_key_pair()
    if kp_version not in owner.key_pairs:
        raise invalid_file_key(f"user {owner.id} has no {kp_version} key pair for this file key")
    for name, size in (("key", _RSA_BYTES[kp_version]), ("iv", 12), ("tag", 16)):
        try:
            raw = base64.b64decode(str(file_key[name]), validate=True)
        except (binascii.Error, ValueError):
            raise invalid_file_key(f"{name} is not base64") from None
        if len(raw) != size:
            raise invalid_file_key(f"{name} must be {size} bytes, got {len(raw)}")
    return kp_version


def check_quota(
    state: EmulatorState, config: EmulatorConfig, parent: Node, extra: int, replaced: Node | None = None
) -> None:
    """507 if ``extra`` more bytes would exceed a room quota on the way up or the customer quota."""
    freed = replaced.size if replaced is not None else 0
    node: Node | None = state.room_of(parent)
    while node is not None:
        if node.type == "room" and node.quota is not None and state.usage(node) - freed + extra > node.quota:
            raise room_quota_exceeded()
        node = state.nodes.get(node.parent_id) if node.parent_id is not None else None
    if config.customer_quota is not None:
        used = sum(n.size for n in state.nodes.values() if n.type == "file")
        if used - freed + extra > config.customer_quota:
            raise customer_quota_exceeded()


@dataclass
class Completion:
    """A validated completion request, applied later by :func:`store_file`."""

    name: str
    strategy: str
    file_key: dict[str, str] | None = field(default=None, repr=False)
    user_file_keys: list[dict[str, Any]] = field(default_factory=list, repr=False)


def plan_completion(state: EmulatorState, channel: UploadChannel, body: dict[str, Any]) -> Completion:
    """Check a ``CompleteUploadRequest``/``CompleteS3FileUploadRequest`` against the channel."""
    parent = state.nodes.get(channel.parent_id)
    if parent is None:
        raise container_not_found()
    strategy = body.get("resolutionStrategy") or "autorename"
    if body.get("keepShareLinks") and strategy != "overwrite":
        raise bad_request(-80034, "Keeping Share Links is only allowed with conflict mode overwrite")
    name = body.get("fileName") or channel.name
    check_name(name)
    encrypted = state.room_of(parent).encrypted
    file_key = body.get("fileKey")
    listed: list[dict[str, Any]] = (body.get("userFileKeyList") or {}).get("items") or []
    if encrypted and file_key is None and not listed:
        raise bad_request(-40763, "File key must be set for an upload into encrypted room")
    if not encrypted and (file_key is not None or listed):
        raise bad_request(-40001, "(Target) room is not encrypted")
    uploader = state.users[channel.user_id]
    if file_key is not None:
        check_file_key(file_key, uploader)
    for item in listed:
        target = state.users.get(item["userId"])
        if target is None:
            raise ApiError(404, "User not found", -70501)
        check_file_key(item["fileKey"], target)
    return Completion(name, strategy, file_key, listed)


def store_file(
    state: EmulatorState,
    config: EmulatorConfig,
    channel: UploadChannel,
    plan: Completion,
    content: bytes,
    *,
    size: int | None = None,
    sha256: str | None = None,
) -> Node:
    """Resolve the name per strategy, check quota, create the file node with its keys.

    ``size`` (and ``sha256``) describe discarded content (``EmulatorConfig.discard_content``);
    ``content`` is then empty.
    """
    parent = state.nodes.get(channel.parent_id)
    if parent is None:
        raise container_not_found()
    uploader = state.users[channel.user_id]
    name, replaced = plan.name, None
    existing = state.find_child(parent.id, name)
    if existing is not None:
        if plan.strategy == "autorename":
            name = autorename(name, {fold(n.name) for n in state.children(parent.id)})
        elif existing.type != "file":
            raise ApiError(409, "Container cannot be overwritten", -40010)
        elif plan.strategy == "fail":
            raise ApiError(409, "File cannot be overwritten", None)
        elif not state.can(uploader.id, parent, "delete"):
            raise forbidden("Overwriting needs the delete permission")
        else:
            replaced = existing
    check_quota(state, config, parent, len(content) if size is None else size, replaced)
    if replaced is not None:
        state.delete_node(replaced.id)
    node = state.add_file(
        parent.id,
        name,
        content,
        created_by=uploader.id,
        classification=channel.classification,
        notes=channel.notes,
        expire_at=channel.expire_at,
    )
    node.timestamp_creation = channel.timestamp_creation
    node.timestamp_modification = channel.timestamp_modification
    node.hash = hashlib.md5(content).hexdigest() if size is None else None
    node.stored_size, node.sha256 = size, sha256
    if plan.file_key is not None:
        state.set_file_key(node.id, uploader.id, plan.file_key)
    for item in plan.user_file_keys:
        state.set_file_key(node.id, item["userId"], item["fileKey"])
    return node
