"""The emulated tenant: users, the node tree with room permissions, files with their keys.

This is both the server's store and the Python API tests use to seed and inspect it (through
``DracoonEmulator.state``). Rules that belong to the data live here: permission inheritance,
case-insensitive names, quota usage, encryption inheritance.

Decisions where DRACOON's documentation is silent (**[inferred]**):

* A room's effective permissions for a user are its own grants united with the parent room's
  effective permissions when ``inheritPermissions`` is on. Folders and files use their room's.
* A room created inside an encrypted room is encrypted too (DRACOON sub-rooms inherit encryption
  in practice); encrypting an empty room also encrypts its (empty) sub-rooms.
* A room quota counts every file below the room, sub-rooms included.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .errors import ApiError
from .model import (
    KEY_PAIR_VERSION,
    KEY_PAIR_VERSIONS,
    Clock,
    Node,
    NodeType,
    Token,
    UploadChannel,
    User,
    iso,
    perms,
)
from .names import check_name, fold

PermSpec = str | frozenset[str] | set[str] | list[str] | tuple[str, ...]

FIRST_USER_ID = 1
FIRST_NODE_ID = 1001  # distinct ranges make a user id passed as a node id (or back) fail loudly


class EmulatorState:
    """In-memory model of one DRACOON tenant."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.tenant_uuid = str(uuid.uuid4())
        self.users: dict[int, User] = {}
        self.nodes: dict[int, Node] = {}
        # parent id -> child id -> node; nodes never move, so this index only changes on create/delete
        self._children: dict[int | None, dict[int, Node]] = {}
        self.uploads: dict[str, UploadChannel] = {}
        self.upload_tokens: dict[str, str] = {}  # token -> upload id
        self.download_tokens: dict[str, int] = {}  # token -> file id
        self.access_tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self._next_user = FIRST_USER_ID
        self._next_node = FIRST_NODE_ID
        self._branch = 0

    # ---- users -------------------------------------------------------------------------------

    def add_user(
        self,
        login: str,
        password: str,
        key_pair: Mapping[str, Any] | None = None,
        *,
        key_pairs: Iterable[Mapping[str, Any]] = (),
        first_name: str | None = None,
        last_name: str = "Emulated",
        email: str | None = None,
        room_manager: bool = False,
        user_id: int | None = None,
    ) -> User:
        """Create a user; ``key_pair``/``key_pairs`` are ``UserKeyPairContainer`` JSON objects."""
        if any(u.login.casefold() == login.casefold() for u in self.users.values()):
            raise ValueError(f"user {login!r} exists")
        uid = self._take_id(user_id, self.users, "_next_user")
        user = User(
            uid,
            login,
            password,
            first_name or login,
            last_name,
            email or f"{login}@example.com",
            room_manager=room_manager,
        )
        self.users[uid] = user
        for pair in ([key_pair] if key_pair is not None else []) + list(key_pairs):
            self.set_key_pair(uid, pair)
        return user

    def set_key_pair(self, user_id: int, key_pair: Mapping[str, Any]) -> None:
        """Store a key pair container for the user (replacing one of the same version)."""
        user = self.users[user_id]
        version = str(key_pair["publicKeyContainer"]["version"])
        if version not in KEY_PAIR_VERSIONS or key_pair["privateKeyContainer"]["version"] != version:
            raise ValueError(f"unsupported or mismatched key pair version {version!r}")
        now = iso(self.clock.utcnow())
        stored = {
            "privateKeyContainer": {
                "createdAt": now,
                "createdBy": user_id,
                **key_pair["privateKeyContainer"],
            },
            "publicKeyContainer": {"createdAt": now, "createdBy": user_id, **key_pair["publicKeyContainer"]},
        }
        user.key_pairs[version] = stored

    def remove_key_pair(self, user_id: int, version: str) -> None:
        """Delete a key pair and every file key wrapped for it (as DRACOON does)."""
        self.users[user_id].key_pairs.pop(version)
        for node in self.nodes.values():
            node.file_keys.get(user_id, {}).pop(version, None)

    def user_by_login(self, login: str) -> User | None:
        return next((u for u in self.users.values() if u.login.casefold() == login.casefold()), None)

    # ---- nodes -------------------------------------------------------------------------------

    def add_room(
        self,
        name: str,
        parent_id: int | None = None,
        *,
        encrypted: bool | None = None,
        admins: Iterable[int] = (),
        members: Mapping[int, PermSpec] | None = None,
        inherit_permissions: bool | None = None,
        quota: int | None = None,
        classification: int = 2,
        created_by: int | None = None,
        node_id: int | None = None,
    ) -> Node:
        """Create a room; ``encrypted=None`` inherits the parent's state (False at the top level)."""
        parent = self._container(parent_id, rooms_only=True) if parent_id is not None else None
        inherit = parent is not None if inherit_permissions is None else inherit_permissions
        if parent is None and inherit:
            raise ValueError("top-level rooms cannot inherit permissions")
        admin_ids = list(admins)
        creator = created_by or (admin_ids[0] if admin_ids else 0)
        node = self._new_node("room", name, parent_id, creator, node_id)
        node.encrypted = (parent.encrypted if parent else False) if encrypted is None else encrypted
        node.inherit_permissions = inherit
        node.quota = quota
        node.classification = classification
        for uid in admin_ids:
            self.add_member(node.id, uid, "all")
        for uid, spec in (members or {}).items():
            self.add_member(node.id, uid, spec)
        return node

    def add_folder(
        self, name: str, parent_id: int, *, created_by: int = 0, node_id: int | None = None
    ) -> Node:
        self._container(parent_id)
        return self._new_node("folder", name, parent_id, created_by, node_id)

    def add_member(self, room_id: int, user_id: int, spec: PermSpec) -> None:
        """Grant (replace) a user's permissions on a room."""
        room = self.nodes[room_id]
        if room.type != "room":
            raise ValueError("members belong to rooms")
        if user_id not in self.users:
            raise KeyError(f"no user {user_id}")
        room.members[user_id] = perms(spec)

    def add_file(
        self,
        parent_id: int,
        name: str,
        content: bytes = b"",
        *,
        file_keys: Mapping[int, Mapping[str, str]] | None = None,
        created_by: int = 0,
        classification: int | None = None,
        notes: str | None = None,
        expire_at: str | None = None,
    ) -> Node:
        """Store a finished file directly (seeding); ``file_keys`` maps user id -> FileKey JSON."""
        room = self.room_of(self._container(parent_id))
        node = self._new_node("file", name, parent_id, created_by)
        node.content = bytes(content)
        node.hash = hashlib.md5(node.content).hexdigest()
        node.classification = classification or room.classification
        node.notes, node.expire_at = notes, expire_at
        for uid, key in (file_keys or {}).items():
            self.set_file_key(node.id, uid, dict(key))
        return node

    def set_file_key(self, file_id: int, user_id: int, file_key: dict[str, str]) -> None:
        """Store a user's encrypted file key under the key pair version it was made for."""
        version = KEY_PAIR_VERSION[file_key["version"]]
        self.nodes[file_id].file_keys.setdefault(user_id, {})[version] = dict(file_key)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def children(self, parent_id: int | None) -> list[Node]:
        return list(self._children.get(parent_id, {}).values())

    def descendants(self, node_id: int) -> Iterator[Node]:
        for child in self.children(node_id):
            yield child
            yield from self.descendants(child.id)

    def find_child(self, parent_id: int | None, name: str) -> Node | None:
        """The child whose name equals ``name`` ignoring case (DRACOON's uniqueness rule)."""
        key = fold(name)
        return next((n for n in self.children(parent_id) if fold(n.name) == key), None)

    def room_of(self, node: Node) -> Node:
        """The room a node belongs to (itself for a room)."""
        while node.type != "room":
            assert node.parent_id is not None  # folders and files always have a parent
            node = self.nodes[node.parent_id]
        return node

    def parent_path(self, node: Node) -> str:
        """``/`` for top-level rooms, else ``/a/b/`` (the names of the ancestors)."""
        names: list[str] = []
        parent_id = node.parent_id
        while parent_id is not None:
            parent = self.nodes[parent_id]
            names.append(parent.name)
            parent_id = parent.parent_id
        return "/" + "".join(f"{n}/" for n in reversed(names))

    def delete_node(self, node_id: int) -> None:
        for child in list(self.descendants(node_id)):
            self.nodes.pop(child.id, None)
            self._children.pop(child.id, None)
        node = self.nodes.pop(node_id)
        self._children.pop(node_id, None)
        self._children.get(node.parent_id, {}).pop(node_id, None)
        self.touch(node.parent_id)

    def usage(self, room: Node) -> int:
        """Bytes stored below a room (for its quota)."""
        return sum(n.size for n in self.descendants(room.id) if n.type == "file")

    def touch(self, node_id: int | None) -> None:
        """Bump ``branchVersion`` on the node's ancestors, as a change below them does."""
        self._branch += 1
        while node_id is not None and node_id in self.nodes:
            self.nodes[node_id].branch_version = self._branch
            node_id = self.nodes[node_id].parent_id

    # ---- permissions -------------------------------------------------------------------------

    def permissions(self, user_id: int, node: Node) -> frozenset[str]:
        """The user's effective permissions on the node's room (inheritance applied)."""
        room = self.room_of(node)
        granted = set(room.members.get(user_id, frozenset()))
        if room.inherit_permissions and room.parent_id is not None:
            granted |= self.permissions(user_id, self.nodes[room.parent_id])
        return frozenset(granted)

    def can(self, user_id: int, node: Node, permission: str) -> bool:
        return permission in self.permissions(user_id, node)

    def visible(self, user_id: int, node: Node) -> bool:
        """Listable: readable, or a room leading to a readable room below it (not browsable)."""
        if self.can(user_id, node, "read"):
            return True
        return node.type == "room" and any(
            d.type == "room" and self.can(user_id, d, "read") for d in self.descendants(node.id)
        )

    def readers(self, room: Node) -> list[User]:
        """Users with read permission on the room, by id."""
        return [u for uid, u in sorted(self.users.items()) if self.can(uid, room, "read")]

    # ---- inspection (tests) ------------------------------------------------------------------

    def files_in(self, room_id: int, *, recursive: bool = False) -> list[Node]:
        """Files directly in a room or folder (or anywhere below it), by id."""
        pool = self.descendants(room_id) if recursive else iter(self.children(room_id))
        return sorted((n for n in pool if n.type == "file"), key=lambda n: n.id)

    def file_content(self, file_id: int) -> bytes:
        return self.nodes[file_id].content

    def file_keys(self, file_id: int, version: str | None = None) -> dict[int, dict[str, str]]:
        """User id -> FileKey JSON; ``version`` (a key pair version) picks one copy, else the newest."""
        result: dict[int, dict[str, str]] = {}
        for uid, by_version in self.nodes[file_id].file_keys.items():
            if version is not None:
                if version in by_version:
                    result[uid] = by_version[version]
                continue
            best = max(by_version, key=KEY_PAIR_VERSIONS.index, default=None)
            if best is not None:
                result[uid] = by_version[best]
        return result

    def expire_tokens(self, user_id: int | None = None) -> int:
        """Make access tokens (of one user, or all) expired now; returns how many."""
        count = 0
        for token in self.access_tokens.values():
            if user_id is None or token.user_id == user_id:
                token.expires_at = min(token.expires_at, self.clock.now() - 1)
                count += 1
        return count

    def summary(self) -> dict[str, Any]:
        """Secret-free overview for ``GET /_emulator/state`` and debugging."""
        now = self.clock.now()
        return {
            "users": [
                {"id": u.id, "login": u.login, "keyPairs": u.key_pair_versions()} for u in self.users.values()
            ],
            "nodes": [
                {
                    "id": n.id,
                    "type": n.type,
                    "name": n.name,
                    "parentId": n.parent_id,
                    "size": n.size,
                    "isEncrypted": self.room_of(n).encrypted,
                    "fileKeyUsers": sorted(n.file_keys),
                }
                for n in self.nodes.values()
            ],
            "uploads": [
                {
                    "id": c.id,
                    "status": c.status,
                    "userId": c.user_id,
                    "parentId": c.parent_id,
                    "name": c.name,
                    "received": c.received + sum(p.size for p in c.parts.values()),
                }
                for c in self.uploads.values()
            ],
            "activeAccessTokens": sum(1 for t in self.access_tokens.values() if t.expires_at > now),
        }

    # ---- internals ---------------------------------------------------------------------------

    def _container(self, node_id: int | None, *, rooms_only: bool = False) -> Node:
        node = self.nodes.get(node_id) if node_id is not None else None
        if node is None or node.type == "file" or (rooms_only and node.type != "room"):
            raise KeyError(f"no {'room' if rooms_only else 'room or folder'} {node_id}")
        return node

    def _new_node(
        self, kind: NodeType, name: str, parent_id: int | None, by: int, node_id: int | None = None
    ) -> Node:
        try:
            check_name(name)
        except ApiError as exc:  # seeding is Python API: a plain ValueError, not an HTTP answer
            raise ValueError(exc.debug_info) from None
        if self.find_child(parent_id, name) is not None:
            raise ValueError(f"a node named {name!r} exists in {parent_id}")
        nid = self._take_id(node_id, self.nodes, "_next_node")
        now = self.clock.utcnow()
        node = Node(nid, kind, name, parent_id, now, by, now, by)
        self.nodes[nid] = node
        self._children.setdefault(parent_id, {})[nid] = node
        self.touch(nid)
        return node

    def _take_id(self, wanted: int | None, taken: Mapping[int, Any], counter: str) -> int:
        if wanted is not None:
            if wanted in taken:
                raise ValueError(f"id {wanted} is taken")
            setattr(self, counter, max(getattr(self, counter), wanted + 1))
            return wanted
        value: int = getattr(self, counter)
        setattr(self, counter, value + 1)
        return value
