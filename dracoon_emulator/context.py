"""What every handler needs: the tenant state, the server config, the fault rules, the caller."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .config import EmulatorConfig
from .errors import ApiError
from .faults import FaultInjector
from .model import Node, User
from .state import EmulatorState


@dataclass
class Context:
    state: EmulatorState
    config: EmulatorConfig
    faults: FaultInjector


CTX = web.AppKey("dracoon_emulator", Context)
USER = web.RequestKey("dracoon_user", User)


def ctx(request: web.Request) -> Context:
    return request.app[CTX]


def current_user(request: web.Request) -> User:
    """The authenticated caller (set by the bearer middleware)."""
    return request[USER]


def origin(request: web.Request) -> str:
    """Base for absolute URLs handed to clients (upload/download/S3 part URLs)."""
    configured = ctx(request).config.public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def int_param(
    request: web.Request, name: str, default: int | None = None, *, source: str = "query"
) -> int | None:
    """An integer path/query parameter; a non-number is DRACOON's 400 ``-80002``."""
    raw = request.match_info.get(name) if source == "path" else request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid number: {name}", -80002) from None


def path_id(request: web.Request, name: str) -> int:
    value = int_param(request, name, source="path")
    assert value is not None  # the route guarantees the segment
    if value <= 0:
        raise ApiError(400, f"Invalid positive number: {name}", -80001)
    return value


def lookup(request: web.Request, node_id: int) -> Node | None:
    return ctx(request).state.nodes.get(node_id)
