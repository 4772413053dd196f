"""Fault injection: make the emulator fail the way real networks and real DRACOON servers do.

A :class:`FaultRule` matches requests by method and a path regex and then, when it fires, does any
of: add latency, answer with a status (5xx, 429 with ``Retry-After``, ...), reset the connection
after reading part of the request body or after writing part of the response body, or expire the
caller's access token (so the request gets DRACOON's 401 ``-10012``). Firing is governed by
``after`` (let the first N matches pass), ``count`` (fire at most N times) and ``rate`` (a
probability drawn from a seeded RNG, so runs are reproducible). Rules come from the config, the
Python API (``emulator.faults.add(...)``) or ``POST /_emulator/faults``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import structlog
from aiohttp import web

from .errors import ApiError

log = structlog.get_logger(__name__)

ResetWhen = Literal["request", "response"]
_S3_CODES = {500: "InternalError", 501: "NotImplemented", 503: "SlowDown", 403: "AccessDenied"}


@dataclass
class FaultRule:
    """One injected fault; the counters ``seen``/``fired`` are kept for inspection."""

    path: str = ".*"
    method: str = "*"
    status: int | None = None
    error_code: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    reset: ResetWhen | None = None
    reset_after_bytes: int | None = None
    expire_token: bool = False
    rate: float = 1.0
    count: int | None = None
    after: int = 0
    name: str = ""
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        re.compile(self.path)
        if self.reset not in (None, "request", "response"):
            raise ValueError(f"reset must be 'request' or 'response', not {self.reset!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.status is None and self.reset is None and not self.expire_token and not self.latency_ms:
            raise ValueError("a fault rule needs status, reset, expire_token or latency_ms")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)} - {"seen", "fired"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method == "*" or self.method.upper() == method.upper()
        return method_ok and re.search(self.path, path) is not None


class FaultInjector:
    """The active rules and the seeded RNG that decides rate-based firing."""

    def __init__(self, rules: list[FaultRule] | tuple[FaultRule, ...] = (), *, seed: int = 0) -> None:
        self.rules: list[FaultRule] = list(rules)
        self._rng = random.Random(seed)
        # Every API request seen, by "METHOD /route/{template}" (tokens and ids stay out of the
        # keys): how many calls a client makes per operation, as the server counts them.
        self.requests: Counter[str] = Counter()

    def add(self, rule: FaultRule | None = None, /, **kwargs: Any) -> FaultRule:
        """Add a rule (an instance, or ``FaultRule`` keyword arguments) and return it."""
        if rule is None:
            rule = FaultRule(**kwargs)
        elif kwargs:
            raise TypeError("pass a FaultRule or keyword arguments, not both")
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def seed(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def fire(self, method: str, path: str) -> list[FaultRule]:
        """The rules that fire for this request (counters updated)."""
        fired: list[FaultRule] = []
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            rule.seen += 1
            if rule.seen <= rule.after or (rule.count is not None and rule.fired >= rule.count):
                continue
            if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                continue
            rule.fired += 1
            fired.append(rule)
        return fired


FAULTS_KEY = web.AppKey("faults", FaultInjector)


def fault_middleware(expire: Any) -> Any:
    """Build the outermost middleware; ``expire(request)`` expires the caller's token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)  # type: ignore[no-any-return]
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "(no route)"
        request.app[FAULTS_KEY].requests[f"{request.method} {route}"] += 1
        fired = request.app[FAULTS_KEY].fire(request.method, request.path)
        if not fired:
            return await handler(request)  # type: ignore[no-any-return]
        log.debug(
            "fault_fired",
            method=request.method,
            path=_redacted(request.path),
            rules=[r.name or r.path for r in fired],
        )
        delay = sum(r.latency_ms for r in fired)
        if delay:
            await asyncio.sleep(delay / 1000)
        if any(r.expire_token for r in fired):
            expire(request)
        for rule in fired:
            if rule.reset == "request":
                return await _reset_request(request, rule.reset_after_bytes)
            if rule.status is not None:
                return _status_response(request, rule)
        response: web.StreamResponse = await handler(request)
        cut = next((r for r in fired if r.reset == "response"), None)
        if cut is not None and isinstance(response, web.Response) and isinstance(response.body, bytes):
            return await _truncated(request, response, response.body, cut.reset_after_bytes)
        return response

    return middleware


def _redacted(path: str) -> str:
    """Upload/download tokens and S3 part paths are credentials: keep only the route shape."""
    parts = path.split("/")
    if len(parts) > 3 and parts[3] in ("uploads", "downloads"):
        return "/".join(parts[:4]) + "/***"
    return path


def _status_response(request: web.Request, rule: FaultRule) -> web.Response:
    assert rule.status is not None
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
    if request.path.startswith("/_s3/"):
        code = _S3_CODES.get(rule.status, "ServiceUnavailable")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>Injected fault</Message><RequestId>emulator</RequestId></Error>"
        )
        return web.Response(
            status=rule.status, body=body.encode(), content_type="application/xml", headers=headers
        )
    return ApiError(rule.status, "Injected fault", rule.error_code, headers=headers).response()


async def _reset_request(request: web.Request, after_bytes: int | None) -> web.Response:
    """Read part of the body (default: half of it), then drop the connection without answering."""
    length = request.content_length or 0
    want = min(length, after_bytes if after_bytes is not None else length // 2)
    if want:
        await request.content.readexactly(want)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never delivered: the transport is gone


async def _truncated(
    request: web.Request, response: web.Response, body: bytes, after_bytes: int | None
) -> web.StreamResponse:
    """Send the real status and headers, part of the body (default: half), then drop the connection."""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: after_bytes if after_bytes is not None else len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return stream
