"""The DRACOON objects the service reads, as small frozen dataclasses.

Parsing is defensive: DRACOON adds fields between versions and leaves optional ones out of list
responses, so unknown fields are ignored and missing optional ones become ``None``. Only the
fields without which the object is meaningless (a node's id, type and name) are required; a
response lacking them is a protocol error, not something to guess around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..crypto import EncryptedFileKey, PublicKeyContainer, UserKeyPair
from ..errors import CryptoError
from .errors import DracoonPermanentError

__all__ = [
    "FileKeyContainer",
    "FileKeyItem",
    "MissingKeyItem",
    "MissingKeys",
    "Node",
    "SystemInfo",
    "UserAccount",
    "UserPublicKey",
    "bad_response",
]

log = structlog.get_logger(__name__)

_PERMISSIONS = (
    "manage",
    "read",
    "create",
    "change",
    "delete",
    "manageDownloadShare",
    "manageUploadShare",
    "readRecycleBin",
    "restoreRecycleBin",
    "deleteRecycleBin",
)


def bad_response(what: str, why: str) -> DracoonPermanentError:
    """A 2xx answer we cannot use: the server (or something in between) broke the contract."""
    return DracoonPermanentError(f"DRACOON {what}: unexpected response ({why})", code="bad_response")


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise bad_response(what, f"expected a JSON object, got {type(data).__name__}")
    return data


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _req_int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = _int(data, key)
    if value is None:
        raise bad_response(what, f"'{key}' missing or not an integer")
    return value


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Node:
    """A room, folder or file. ``permissions`` holds the names of the granted permissions."""

    id: int
    type: str
    name: str
    parent_id: int | None = None
    parent_path: str | None = None
    size: int | None = None
    is_encrypted: bool = False
    classification: int | None = None
    expire_at: str | None = None
    notes: str | None = None
    hash: str | None = None
    quota: int | None = None
    inherit_permissions: bool | None = None
    permissions: frozenset[str] = frozenset()
    user_key_state: str | None = None

    @property
    def is_room(self) -> bool:
        return self.type == "room"

    @classmethod
    def from_json(cls, data: Any, *, what: str = "node") -> Node:
        d = _mapping(data, what)
        node_type = _str(d, "type")
        name = _str(d, "name")
        if node_type is None or name is None:
            raise bad_response(what, "node without 'type' or 'name'")
        perms = d.get("permissions")
        granted = frozenset(p for p in _PERMISSIONS if isinstance(perms, Mapping) and perms.get(p) is True)
        enc = d.get("encryptionInfo")
        return cls(
            id=_req_int(d, "id", what),
            type=node_type,
            name=name,
            parent_id=_int(d, "parentId"),
            parent_path=_str(d, "parentPath"),
            size=_int(d, "size"),
            is_encrypted=_bool(d, "isEncrypted") is True,
            classification=_int(d, "classification"),
            expire_at=_str(d, "expireAt"),
            notes=_str(d, "notes"),
            hash=_str(d, "hash"),
            quota=_int(d, "quota"),
            inherit_permissions=_bool(d, "inheritPermissions"),
            permissions=granted,
            user_key_state=_str(enc, "userKeyState") if isinstance(enc, Mapping) else None,
        )


@dataclass(frozen=True)
class UserAccount:
    """The authenticated user (the service account)."""

    id: int
    user_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    customer_id: int | None = None
    is_encryption_enabled: bool | None = None

    @classmethod
    def from_json(cls, data: Any) -> UserAccount:
        d = _mapping(data, "GET /user/account")
        return cls(
            id=_req_int(d, "id", "GET /user/account"),
            user_name=_str(d, "userName") or _str(d, "login"),
            first_name=_str(d, "firstName"),
            last_name=_str(d, "lastName"),
            customer_id=_int(d, "customerId"),
            is_encryption_enabled=_bool(d, "isEncryptionEnabled"),
        )


@dataclass(frozen=True)
class SystemInfo:
    """What decides proxy versus S3-direct upload."""

    use_s3_storage: bool = False
    s3_enforce_direct_upload: bool = False

    @classmethod
    def from_json(cls, data: Any) -> SystemInfo:
        d = _mapping(data, "GET /public/system/info")
        return cls(
            use_s3_storage=_bool(d, "useS3Storage") is True,
            s3_enforce_direct_upload=_bool(d, "s3EnforceDirectUpload") is True,
        )


@dataclass(frozen=True)
class MissingKeyItem:
    """One (user, file) pair still lacking a file key."""

    user_id: int
    file_id: int


@dataclass(frozen=True)
class UserPublicKey:
    """A user's public key; a user may appear once per key pair version."""

    id: int
    public_key_container: PublicKeyContainer


@dataclass(frozen=True)
class FileKeyContainer:
    """Our own encrypted copy of a file's key (the one to unwrap and re-wrap)."""

    id: int
    file_key_container: EncryptedFileKey


@dataclass(frozen=True)
class MissingKeys:
    """One page of ``GET /nodes/missingFileKeys``; ``total`` is only a lower bound."""

    items: tuple[MissingKeyItem, ...] = ()
    users: tuple[UserPublicKey, ...] = ()
    files: tuple[FileKeyContainer, ...] = ()
    offset: int = 0
    limit: int = 0
    total: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> MissingKeys:
        what = "GET /nodes/missingFileKeys"
        d = _mapping(data, what)
        items = tuple(
            MissingKeyItem(user_id=u, file_id=f)
            for it in _list(d, "items")
            if isinstance(it, Mapping)
            for u, f in [(_int(it, "userId"), _int(it, "fileId"))]
            if u is not None and f is not None
        )
        users: list[UserPublicKey] = []
        for u in _list(d, "users"):
            uid = _int(u, "id") if isinstance(u, Mapping) else None
            pub = parse_public_key(u.get("publicKeyContainer")) if uid is not None else None
            if uid is not None and pub is not None:
                users.append(UserPublicKey(uid, pub))
        files: list[FileKeyContainer] = []
        for f in _list(d, "files"):
            fid = _int(f, "id") if isinstance(f, Mapping) else None
            key = parse_file_key(f.get("fileKeyContainer")) if fid is not None else None
            if fid is not None and key is not None:
                files.append(FileKeyContainer(fid, key))
        rng = d.get("range")
        rng = rng if isinstance(rng, Mapping) else {}
        return cls(
            items=items,
            users=tuple(users),
            files=tuple(files),
            offset=_int(rng, "offset") or 0,
            limit=_int(rng, "limit") or 0,
            total=_int(rng, "total"),
        )


@dataclass(frozen=True)
class FileKeyItem:
    """One file key to hand to a user (``POST /nodes/files/keys``)."""

    file_id: int
    user_id: int
    file_key: EncryptedFileKey = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"fileId": self.file_id, "userId": self.user_id, "fileKey": self.file_key.to_json()}


def parse_public_key(data: Any) -> PublicKeyContainer | None:
    """A public key container, or None (logged) for versions or shapes we cannot use."""
    if not isinstance(data, Mapping):
        return None
    try:
        return PublicKeyContainer.from_json(dict(data))
    except (CryptoError, ValueError, KeyError, TypeError):
        log.warning("dracoon_unusable_public_key", version=_str(data, "version"))
        return None


def parse_file_key(data: Any) -> EncryptedFileKey | None:
    """An encrypted file key, or None when the container is incomplete or of unknown version."""
    if not isinstance(data, Mapping):
        return None
    try:
        return EncryptedFileKey.from_json(dict(data))
    except (CryptoError, ValueError, KeyError, TypeError):
        log.warning("dracoon_bad_file_key", version=_str(data, "version"))
        return None


def parse_key_pair(data: Any, what: str) -> UserKeyPair | None:
    """A key pair container, or None (logged) when its version is not one we can use."""
    d = _mapping(data, what)
    try:
        return UserKeyPair.from_json(dict(d))
    except (CryptoError, ValueError, KeyError, TypeError):
        pub = d.get("publicKeyContainer")
        log.warning(
            "dracoon_unusable_key_pair", version=_str(pub, "version") if isinstance(pub, Mapping) else None
        )
        return None
