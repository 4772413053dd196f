"""Node endpoints: lookups with full pagination, and room paths created on demand.

DRACOON names are case-insensitive, and several workers (in several processes) may create
the same room at the same moment; both are handled here so callers just ask for a path. Names
are compared with ``node_name_key``, the one node identity the service uses, and room names go
out in NFC, so a decomposed spelling finds the room instead of creating a look-alike beside it.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import AsyncIterator, Sequence

import structlog

from ..node_names import node_name_key
from .base import ApiBase
from .errors import DracoonPermanentError, DracoonTransientError, NameConflict, NotFound
from .models import Node, bad_response

__all__ = ["PAGE_LIMIT", "NodeOps"]

log = structlog.get_logger(__name__)

PAGE_LIMIT = 500  # DRACOON's maximum for node lists


class NodeOps(ApiBase):
    """Node calls of ``DracoonClient``; keeps a short-lived cache of resolved room names."""

    def __init__(self, *, room_cache_ttl: float) -> None:
        self._room_ttl = room_cache_ttl
        self._rooms: dict[tuple[int, str], tuple[int, float]] = {}
        # The last room of a resolved path as the server described it: a path served wholly
        # from the cache needs no GET /nodes/{id}. A room deleted meanwhile shows up at the
        # first call on it (see iter_children), which drops every cached room.
        self._room_nodes: dict[int, tuple[Node, float]] = {}

    async def get_node(self, node_id: int) -> Node:
        return Node.from_json(await self._get("/nodes/{id}", f"/nodes/{node_id}"), what="GET /nodes/{id}")

    async def set_file_notes(self, file_id: int, notes: str) -> Node:
        """Replace a file's notes (``PUT /nodes/files/{id}``; idempotent, so retried freely)."""
        what = "PUT /nodes/files/{id}"
        reply = await self.http.request("PUT", "/nodes/files/{id}", path=f"/nodes/files/{file_id}",
                                        json_body={"notes": notes})
        return Node.from_json(reply.json(what), what=what)

    async def iter_children(
        self, parent_id: int, *, name: str | None = None, types: Sequence[str] | None = None
    ) -> AsyncIterator[Node]:
        """Direct children of ``parent_id`` (0 = top level), every page, optionally filtered."""
        filters = []
        if name is not None:
            filters.append(f"name:eq:{name}")
        if types:
            filters.append("type:eq:" + ":".join(types))
        offset = 0
        while True:
            params: dict[str, str | int] = {
                "parent_id": parent_id,
                "depth_level": 0,
                "offset": offset,
                "limit": PAGE_LIMIT,
            }
            if filters:
                params["filter"] = "|".join(filters)
            try:
                data = await self._get("/nodes", "/nodes", params)
            except NotFound as exc:
                if self._room_nodes.pop(parent_id, None) is None:
                    raise
                # A room we handed out from the cache is gone: forget every cached room, and
                # let the retry resolve (and, if need be, create) the path afresh.
                self._forget_rooms()
                raise DracoonTransientError(
                    f"room {parent_id} was deleted after it was resolved; resolving it again",
                    code="room_gone",
                ) from exc
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise bad_response("GET /nodes", "no 'items' list")
            for item in items:
                yield Node.from_json(item, what="GET /nodes")
            rng = data.get("range")
            total = rng.get("total") if isinstance(rng, dict) else None
            offset += len(items)
            if not items or (isinstance(total, int) and offset >= total):
                return

    async def find_child(
        self, parent_id: int, name: str, *, types: Sequence[str] | None = None
    ) -> Node | None:
        """The child named ``name``, compared as DRACOON compares names (``node_name_key``)."""
        wanted = node_name_key(name)
        found: Node | None = None
        async for node in self.iter_children(parent_id, name=name, types=types):
            if node.name == name:
                return node
            if found is None and node_name_key(node.name) == wanted:
                found = node
        return found

    async def ensure_room_path(self, parent_room_id: int, segments: Sequence[str]) -> Node:
        """Resolve ``segments`` below ``parent_room_id``, creating missing rooms; returns the last room.

        Safe against concurrent creators (a 409 is answered by re-reading). Resolved rooms are
        cached briefly, the last one's node too: a path resolved within the cache's lifetime
        costs no request. A stale entry (the room was deleted) costs one retry without the cache
        here, or, if only the node came from the cache, a transient ``room_gone`` at the first
        call on the room (``iter_children``), after which the path is resolved afresh.
        """
        names = [self._segment(s) for s in segments]
        for attempt in (1, 2):
            used_cache = False
            try:
                current = parent_room_id
                all_cached = True
                for name in names:
                    cached = self._cached_room(current, name)
                    if cached is not None:
                        current, used_cache = cached, True
                        continue
                    all_cached = False
                    room = await self._room_child(current, name)
                    self._rooms[(current, node_name_key(name))] = (room.id, time.monotonic() + self._room_ttl)
                    current = room.id
                known = self._room_nodes.get(current)
                if all_cached and known is not None and known[1] >= time.monotonic():
                    return known[0]
                node = await self.get_node(current)
                self._room_nodes[current] = (node, time.monotonic() + self._room_ttl)
                return node
            except NotFound:
                if attempt == 2 or not used_cache:
                    raise
                self._forget_rooms()
        raise AssertionError("unreachable")

    def _forget_rooms(self) -> None:
        self._rooms.clear()
        self._room_nodes.clear()

    @staticmethod
    def _segment(segment: str) -> str:
        name = unicodedata.normalize("NFC", segment.strip())
        if not name:
            raise DracoonPermanentError("room path contains an empty segment", code="bad_node_name")
        return name

    def _cached_room(self, parent: int, name: str) -> int | None:
        hit = self._rooms.get((parent, node_name_key(name)))
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    async def _room_child(self, parent: int, name: str) -> Node:
        node = await self.find_child(parent, name)
        if node is None:
            try:
                reply = await self.http.request(
                    "POST",
                    "/nodes/rooms",
                    ok=(200, 201),
                    json_body={"name": name, "parentId": parent, "inheritPermissions": True},
                )
                node = Node.from_json(reply.json("POST /nodes/rooms"), what="POST /nodes/rooms")
                log.info("dracoon_room_created", room_id=node.id, parent_id=parent)
            except NameConflict:
                # Someone else created it between our lookup and our POST: use theirs. Should
                # the server's name:eq filter be case-sensitive (undocumented), a name differing
                # only in case is invisible to it, so fall back to scanning every child.
                node = await self.find_child(parent, name) or await self._scan_child(parent, name)
                if node is None:
                    raise DracoonTransientError(
                        f"room creation below {parent} hit a conflict, but no such child is visible",
                        code="room_race",
                    ) from None
        if not node.is_room:
            raise DracoonPermanentError(
                f"a {node.type} (id {node.id}) below room {parent} has the name of a target room",
                code="not_a_room",
            )
        return node

    async def _scan_child(self, parent: int, name: str) -> Node | None:
        wanted = node_name_key(name)
        async for node in self.iter_children(parent):
            if node_name_key(node.name) == wanted:
                return node
        return None

    @staticmethod
    def ensure_encrypted_room(node: Node) -> Node:
        """``node`` if it is an encrypted room; else a PermanentError the operator can act on.

        Rooms are never switched to encryption here: a new sub-room of an encrypted room
        inherits encryption, and an unencrypted target means the parent room is misconfigured.
        """
        if not node.is_room:
            raise DracoonPermanentError(f"node {node.id} is a {node.type}, not a room", code="not_a_room")
        if not node.is_encrypted:
            raise DracoonPermanentError(
                f"room {node.id} is not encrypted; enable encryption on the parent room",
                code="room_not_encrypted",
            )
        return node

    async def delete_nodes(self, ids: Sequence[int]) -> None:
        if ids:
            await self.http.request("DELETE", "/nodes", json_body={"nodeIds": list(ids)}, ok=(200, 204))
