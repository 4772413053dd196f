"""Where a source's file goes in each target room, and whether it is there already.

Decided by names and by the source marker in a file's notes, never by trust: a file counts as
ours only when its marker names this source version and its size matches. Shared by ``run``
(which then uploads) and the dry run (which only reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..dracoon import DracoonClient, Node
from ..errors import PermanentError
from ..instances import DracoonAccount
from ..targets import ResolvedTarget, TransferJob, node_name_key, parse_source_marker, source_marker

__all__ = [
    "NameClashPolicy",
    "PlannedUpload",
    "clash_name",
    "ensure_room",
    "existing_room",
    "find_file",
    "is_ours",
    "landed_earlier",
    "place",
]

NameClashPolicy = Literal["keep_both", "overwrite", "fail"]  # dracoon.name_clash


@dataclass(frozen=True)
class PlannedUpload:
    """One upload to make: into ``room`` under ``name``, completed with ``resolution``."""

    room: Node
    target: ResolvedTarget
    name: str
    resolution: Literal["fail", "overwrite"]


def clash_name(name: str, marker: str) -> str:
    """Deterministic "keep both" name: the same source always gets the same alternative."""
    digest = marker.split("src=")[-1][:8] if "src=" in marker else marker[-8:]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({digest})"
    return f"{stem} ({digest}).{ext}"


async def find_file(client: DracoonClient, room_id: int, name: str) -> Node | None:
    """The named child with its notes (list responses may leave notes out)."""
    node = await client.find_child(room_id, name)
    if node is not None and node.type == "file" and node.notes is None:
        node = await client.get_node(node.id)
    return node


def is_ours(node: Node, marker: str, size: int) -> bool:
    return node.type == "file" and node.size == size and parse_source_marker(node.notes or "") == marker


async def place(
    client: DracoonClient,
    room: Node,
    target: ResolvedTarget,
    names: tuple[str, ...],
    marker: str,
    size: int,
    *,
    name_clash: NameClashPolicy,
) -> tuple[Node | None, PlannedUpload | None]:
    """Decide per target: already ours (done), upload under ``names[0]``, or resolve a clash.

    ``names[1:]`` are earlier releases' names for this source: a file there counts as done
    when it is ours, and is otherwise no concern of this upload.
    """
    name = names[0]
    node = await find_file(client, room.id, name)
    if node is None:
        for earlier in names[1:]:
            found = await find_file(client, room.id, earlier)
            if found is not None and is_ours(found, marker, size):
                return found, None
        return None, PlannedUpload(room, target, name, "fail")
    if is_ours(node, marker, size):
        return node, None
    if name_clash == "fail":
        raise PermanentError(
            f"a different file named {name!r} already exists in room {room.id}", code="name_clash"
        )
    if name_clash == "overwrite" and node.type == "file":
        return None, PlannedUpload(room, target, name, "overwrite")
    alt = clash_name(name, marker)
    other = await find_file(client, room.id, alt)
    if other is None:
        return None, PlannedUpload(room, target, alt, "fail")
    if is_ours(other, marker, size):
        return other, None
    raise PermanentError(
        f"both {name!r} and {alt!r} exist in room {room.id} and are not this recording", code="name_clash"
    )


async def landed_earlier(
    job: TransferJob, key: str, client: DracoonClient, rooms: Sequence[Node]
) -> list[Node]:
    """The file made from ``key`` in each target (any version; its name may carry a clash
    suffix, or be the name an earlier release gave it); empty unless every target has one."""
    src = source_marker(job.bucket, key, "").partition(":etag=")[0] + ":etag="
    names = (job.file_name(key, None), *job.earlier_file_names(key, None))
    stems = tuple(node_name_key(name.rpartition(".")[0] or name) for name in names)
    held: list[Node] = []
    for room in rooms:
        async for node in client.iter_children(room.id, types=("file",)):
            if node_name_key(node.name).startswith(stems):
                full = node if node.notes is not None else await client.get_node(node.id)
                if (parse_source_marker(full.notes) or "").startswith(src):
                    held.append(full)
                    break
        else:
            return []
    return held


async def ensure_room(client: DracoonClient, account: DracoonAccount, target: ResolvedTarget) -> Node:
    """The target room, created if missing; it must be encrypted."""
    room = await client.ensure_room_path(account.parent_room_id, target.segments)
    if not room.is_encrypted:
        raise PermanentError(
            f"target room {'/'.join(target.segments) or '<parent room>'} (id {room.id}) is not encrypted",
            code="room_not_encrypted",
        )
    return room


async def existing_room(
    client: DracoonClient, account: DracoonAccount, target: ResolvedTarget
) -> tuple[Node | None, tuple[str, ...]]:
    """The target room if it exists, else None and the segments that would be created."""
    current = await client.get_node(account.parent_room_id)
    for depth, segment in enumerate(target.segments):
        child = await client.find_child(current.id, segment.strip(), types=("room",))
        if child is None:
            return None, target.segments[depth:]
        current = child
    if not current.is_encrypted:
        raise PermanentError(
            f"target room {target.path or '<parent room>'} (id {current.id}) is not encrypted",
            code="room_not_encrypted")
    return current, ()
