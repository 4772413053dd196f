"""DRACOON's list query language: ``filter``, ``sort``, ``offset``/``limit`` and the ``range`` reply.

Filters are ``FIELD:OPERATOR:VALUE[:VALUE...]`` joined by ``|`` (AND); several values of one
filter are OR-ed. Supported fields: ``type:eq``, ``name:eq|cn``, ``encrypted:eq``, ``perm:eq`` /
``childPerm:eq``, ``parentPath:eq`` (search), ``branchVersion:ge|le``. ``name`` comparisons ignore
case **[inferred]**, matching DRACOON's case-insensitive name uniqueness. Anything else is a 400
``-92001`` (Invalid parameter value), so a client typo cannot silently widen a listing. Results
are grouped by type (rooms, folders, files) and then sorted (default ``name:asc``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from .context import int_param
from .errors import ApiError
from .model import Node
from .names import fold
from .state import EmulatorState

MAX_LIMIT = 500
BAD_PARAM = -92001
_TYPE_ORDER = {"room": 0, "folder": 1, "file": 2}
_PERM_ALIASES = {
    "canReadRecycleBin": "readRecycleBin",
    "canRestoreRecycleBin": "restoreRecycleBin",
    "canDeleteRecycleBin": "deleteRecycleBin",
}

Predicate = Callable[[Node], bool]


def page_range(request: web.Request, *, cap: int = MAX_LIMIT) -> tuple[int, int]:
    """``(offset, limit)``; a limit above ``cap`` is cut to it, negative values are 400 ``-80024``."""
    offset = int_param(request, "offset", 0)
    limit = int_param(request, "limit", cap)
    assert offset is not None and limit is not None
    if offset < 0 or limit <= 0:
        raise ApiError(400, "Invalid range parameters", -80024)
    return offset, min(limit, cap)


def page(items: Sequence[Any], offset: int, limit: int) -> tuple[list[Any], dict[str, int]]:
    return list(items[offset : offset + limit]), {"offset": offset, "limit": limit, "total": len(items)}


def parse_filter(state: EmulatorState, user_id: int, text: str | None) -> list[Predicate]:
    if not text:
        return []
    return [_one_filter(state, user_id, part) for part in text.split("|") if part]


def _one_filter(state: EmulatorState, user_id: int, part: str) -> Predicate:
    field, _, rest = part.partition(":")
    op, _, raw = rest.partition(":")
    values = raw.split(":") if raw else []
    if not values:
        raise ApiError(400, f"Invalid filter: {part!r}", BAD_PARAM)
    if field == "type" and op == "eq" and set(values) <= set(_TYPE_ORDER):
        return lambda n: n.type in values
    if field == "name" and op in ("eq", "cn"):
        wanted = fold(":".join(values))
        if op == "eq":
            return lambda n: fold(n.name) == wanted
        return lambda n: wanted in fold(n.name)
    if field == "encrypted" and op == "eq" and values[0] in ("true", "false"):
        flag = values[0] == "true"
        return lambda n: state.room_of(n).encrypted == flag
    if field in ("perm", "childPerm") and op == "eq":
        names = {_PERM_ALIASES.get(v, v) for v in values}
        return lambda n: bool(names & state.permissions(user_id, n))
    if field == "parentPath" and op == "eq":
        wanted = fold(":".join(values))
        return lambda n: fold(state.parent_path(n)) == wanted
    if field == "branchVersion" and op in ("ge", "le") and values[0].lstrip("-").isdigit():
        bound = int(values[0])
        if op == "ge":
            return lambda n: n.branch_version >= bound
        return lambda n: n.branch_version <= bound
    raise ApiError(400, f"Invalid filter: {part!r}", BAD_PARAM)


_SORT_KEYS: dict[str, Callable[[Node], Any]] = {
    "name": lambda n: fold(n.name),
    "createdAt": lambda n: n.created_at,
    "updatedAt": lambda n: n.updated_at,
    "size": lambda n: n.size,
    "fileType": lambda n: n.name.rsplit(".", 1)[-1].lower() if "." in n.name else "",
    "classification": lambda n: n.classification or 0,
    "expireAt": lambda n: n.expire_at or "",
}


def sort_nodes(nodes: list[Node], text: str | None) -> list[Node]:
    """Sort by the given keys (stable, last key first), then group by type."""
    specs = [s for s in (text or "name:asc").split("|") if s]
    result = sorted(nodes, key=lambda n: n.id)
    for spec in reversed(specs):
        field, _, direction = spec.partition(":")
        if field not in _SORT_KEYS or direction not in ("", "asc", "desc"):
            raise ApiError(400, f"Invalid sort: {spec!r}", BAD_PARAM)
        result.sort(key=_SORT_KEYS[field], reverse=direction == "desc")
    result.sort(key=lambda n: _TYPE_ORDER[n.type])
    return result


def collect(state: EmulatorState, parent_id: int | None, depth: int) -> list[Node]:
    """Children of ``parent_id`` and, for ``depth`` n > 0, n levels further down (-1: all)."""
    found: list[Node] = []
    level = state.children(parent_id)
    remaining = depth
    while level:
        found.extend(level)
        if remaining == 0:
            break
        remaining -= 1
        level = [c for n in level for c in state.children(n.id)]
    return found
