"""The emulator's in-memory records: users, nodes, upload channels, tokens, and a settable clock.

Plain mutable dataclasses: the emulator is single-threaded (one event loop), and every mutation
happens between awaits, so no locking is needed. Secrets (passwords, key containers, file keys,
content, tokens) are excluded from ``repr`` so a failing test never prints them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

NodeType = Literal["room", "folder", "file"]
UploadStatus = Literal["transfer", "finishing", "done", "error"]

PERMISSIONS = (
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
ALL_PERMISSIONS = frozenset(PERMISSIONS)
READ_PERMISSIONS = frozenset({"read"})
EDIT_PERMISSIONS = frozenset({"read", "create", "change", "delete"})

KEY_PAIR_VERSIONS = ("A", "RSA-4096")
# File key version per key pair version and back: "A" <-> "A", "RSA-4096" <-> "RSA-4096/AES-256-GCM".
FILE_KEY_VERSION = {"A": "A", "RSA-4096": "RSA-4096/AES-256-GCM"}
KEY_PAIR_VERSION = {v: k for k, v in FILE_KEY_VERSION.items()}
GCM_MAX_PLAINTEXT = 2**36 - 32  # bytes; AES-GCM's limit of 2^39 - 256 bits


def perms(spec: str | frozenset[str] | set[str] | list[str] | tuple[str, ...]) -> frozenset[str]:
    """Normalise a permission spec: ``"all"``, ``"read"``, ``"edit"``, one name, or an iterable of names."""
    if isinstance(spec, str):
        named = {"all": ALL_PERMISSIONS, "admin": ALL_PERMISSIONS, "edit": EDIT_PERMISSIONS}
        spec = named.get(spec, frozenset({spec}))
    result = frozenset(spec)
    unknown = result - ALL_PERMISSIONS
    if unknown:
        raise ValueError(f"unknown permission(s): {sorted(unknown)}")
    return result


class Clock:
    """Wall clock with an offset, so tests can expire tokens and dates without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def iso(moment: datetime) -> str:
    """DRACOON's date-time rendering: UTC with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class User:
    id: int
    login: str
    password: str = field(repr=False)
    first_name: str
    last_name: str
    email: str
    room_manager: bool = False
    key_pairs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # version -> container

    def key_pair_versions(self) -> list[str]:
        """Versions held, newest algorithm first (RSA-4096 before A)."""
        return sorted(self.key_pairs, key=lambda v: KEY_PAIR_VERSIONS.index(v), reverse=True)


@dataclass
class Node:
    id: int
    type: NodeType
    name: str
    parent_id: int | None
    created_at: datetime
    created_by: int
    updated_at: datetime
    updated_by: int
    timestamp_creation: str | None = None
    timestamp_modification: str | None = None
    notes: str | None = None
    classification: int | None = None
    branch_version: int = 0
    # rooms
    encrypted: bool = False
    inherit_permissions: bool = False
    quota: int | None = None
    members: dict[int, frozenset[str]] = field(default_factory=dict)
    recycle_bin_retention: int = 0
    has_activities_log: bool = True
    # files
    content: bytes = field(default=b"", repr=False)
    hash: str | None = None
    expire_at: str | None = None
    file_keys: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict, repr=False)
    # Set instead of ``content`` when the bytes were discarded (EmulatorConfig.discard_content).
    stored_size: int | None = None
    sha256: str | None = None

    @property
    def size(self) -> int:
        return self.stored_size if self.stored_size is not None else len(self.content)


@dataclass
class S3Part:
    """One multipart part: the presigned URLs issued for it and the bytes received (if any)."""

    # signature -> (signed Content-Length, expiry time)
    urls: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)
    data: bytes | None = field(default=None, repr=False)
    etag: str | None = None
    size: int = 0  # bytes received, also when ``data`` was discarded


@dataclass
class UploadChannel:
    id: str
    token: str = field(repr=False)
    user_id: int
    parent_id: int
    name: str
    size: int | None
    classification: int | None
    expire_at: str | None
    notes: str | None
    direct_s3: bool
    timestamp_creation: str | None = None
    timestamp_modification: str | None = None
    data: bytearray = field(default_factory=bytearray, repr=False)
    chunks: int = 0
    parts: dict[int, S3Part] = field(default_factory=dict)
    status: UploadStatus = "transfer"
    finishing_polls_left: int = 0
    completion: dict[str, Any] | None = field(default=None, repr=False)
    node_id: int | None = None
    error: dict[str, Any] | None = None
    # Proxy bytes counted and hashed but not kept (EmulatorConfig.discard_content).
    discarded: int = 0
    digest: Any = field(default=None, repr=False)

    @property
    def received(self) -> int:
        return len(self.data) + self.discarded

    def running_digest(self) -> Any:
        """A copy of the SHA-256 over the discarded chunks so far, for the next chunk to extend."""
        return self.digest.copy() if self.digest is not None else hashlib.sha256()

    def discard(self, size: int, digest: Any) -> None:
        """Account for an accepted chunk without keeping it: its length and the extended digest."""
        self.digest = digest
        self.discarded += size


@dataclass
class Token:
    user_id: int
    client_id: str
    expires_at: float
