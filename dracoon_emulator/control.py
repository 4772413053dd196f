"""Test-only control API under ``/_emulator/`` (not part of DRACOON; disable with ``control_api=False``).

``GET /_emulator/state`` (secret-free summary), ``GET|POST|DELETE /_emulator/faults`` (list, add
one rule or ``{"rules": [...], "seed": n}``, clear), ``GET|DELETE /_emulator/requests`` (API
requests counted by method and route template; reset), ``POST /_emulator/clock`` ``{"advance": s}``
and ``POST /_emulator/expire_tokens`` ``{"userId": n}`` (optional) let an out-of-process test
(or the local stack's demo) steer the emulator like the Python API does.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .context import ctx
from .errors import bad_request, json_response
from .faults import FaultRule


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise bad_request(None, "body is not JSON") from None


async def get_state(request: web.Request) -> web.Response:
    return json_response(ctx(request).state.summary())


async def list_faults(request: web.Request) -> web.Response:
    return json_response({"rules": [r.to_dict() for r in ctx(request).faults.rules]})


async def add_faults(request: web.Request) -> web.Response:
    body = await _body(request)
    faults = ctx(request).faults
    specs = body.get("rules", []) if isinstance(body, dict) and "rules" in body else [body]
    try:
        rules = [FaultRule.from_dict(dict(s)) for s in specs]
    except (TypeError, ValueError) as exc:
        raise bad_request(None, f"bad fault rule: {exc}") from None
    if isinstance(body, dict) and isinstance(body.get("seed"), int):
        faults.seed(body["seed"])
    for rule in rules:
        faults.add(rule)
    return json_response({"rules": [r.to_dict() for r in rules]}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    ctx(request).faults.clear()
    return web.Response(status=204)


async def list_requests(request: web.Request) -> web.Response:
    return json_response(dict(ctx(request).faults.requests))


async def clear_requests(request: web.Request) -> web.Response:
    ctx(request).faults.requests.clear()
    return web.Response(status=204)


async def clock(request: web.Request) -> web.Response:
    body = await _body(request)
    advance = body.get("advance", 0) if isinstance(body, dict) else None
    if not isinstance(advance, int | float):
        raise bad_request(None, "advance must be a number of seconds")
    state = ctx(request).state
    state.clock.advance(float(advance))
    return json_response({"now": state.clock.now(), "offset": state.clock.offset})


async def expire_tokens(request: web.Request) -> web.Response:
    body = await _body(request)
    user_id = body.get("userId") if isinstance(body, dict) else None
    return json_response({"expired": ctx(request).state.expire_tokens(user_id)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/_emulator/state", get_state, allow_head=False),
        web.get("/_emulator/faults", list_faults, allow_head=False),
        web.post("/_emulator/faults", add_faults),
        web.delete("/_emulator/faults", clear_faults),
        web.get("/_emulator/requests", list_requests, allow_head=False),
        web.delete("/_emulator/requests", clear_requests),
        web.post("/_emulator/clock", clock),
        web.post("/_emulator/expire_tokens", expire_tokens),
    ]
