"""The one place DRACOON HTTP requests are sent: auth header, 401 recovery, error mapping, retries.

Every request names a path *template* (``/nodes/{id}``): it labels metrics, logs and error
messages, so a node id never becomes a metric series and an upload token or presigned URL never
reaches a log line. Retries are a per-request decision because DRACOON's calls differ: reads,
room creation (409-safe), key uploads and status polls may be repeated freely, while a proxy
chunk POST appends and may only be repeated when the server certainly did not act on it.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import structlog
from multidict import CIMultiDictProxy
from yarl import URL

from ..config import DracoonConfig
from .auth import DracoonMetrics, TokenManager, notify
from .errors import (
    RETRY_AFTER_CAP,
    AuthenticationFailed,
    DracoonPermanentError,
    DracoonTransientError,
    error_for_response,
    transport_error,
)

__all__ = [
    "RETRY_BACKOFF_BASE", "RETRY_BACKOFF_MAX",
    "HttpCore", "Reply", "Retry", "check_base_url", "make_ssl", "redact_url",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

# SlicedBytes' write size. aiohttp's writer drains after every write above 64 KiB, so the
# transport holds at most one slice; 1 MiB rather than 64 KiB makes an 8 MiB chunk 8 sends
# instead of 128, each a syscall plus aiohttp's and asyncio's bookkeeping (measured: the
# proxy-upload pipeline 0.12 CPU-s/GiB cheaper, bench pipeline_cpu).
_SLICE = 1024 * 1024
# Between attempts of one request: jittered exponential waits from RETRY_BACKOFF_BASE up to
# RETRY_BACKOFF_MAX seconds (a server's Retry-After instead, up to errors.RETRY_AFTER_CAP).
RETRY_BACKOFF_BASE = 0.5
RETRY_BACKOFF_MAX = 30.0


class SlicedBytes(aiohttp.payload.Payload):
    """A bytes body written in ``_SLICE`` slices of one memoryview, with an exact Content-Length.

    Raw bytes go out in one write (the whole chunk lands in the transport buffer at once), and
    ``io.BytesIO`` makes aiohttp copy the whole body first (32 MiB per proxy chunk). Slicing a
    memoryview keeps the writer's flow control with no copy of the body.
    """

    _value: bytes | bytearray

    def __init__(self, value: bytes | bytearray) -> None:
        super().__init__(value, content_type="application/octet-stream")
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), _SLICE):
            await writer.write(view[start : start + _SLICE])


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_insecure_warned: set[str] = set()


class Retry(enum.Enum):
    """When a failed request may be sent again."""

    ALWAYS = "always"  # idempotent: any transient failure
    REFUSED = "refused"  # only when the server certainly did not act (429, no connection)
    NEVER = "never"

    def allows(self, exc: DracoonTransientError) -> bool:
        """Whether the request that failed with ``exc`` may be sent again."""
        return self is Retry.ALWAYS or (self is Retry.REFUSED and exc.retry_safe)


@dataclass(frozen=True)
class Reply:
    """A successful response, read completely (JSON calls are small)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self, what: str) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
            raise DracoonTransientError(
                f"DRACOON {what}: response is not JSON", code="bad_response", status=self.status
            ) from None


def is_loopback(host: str) -> bool:
    """Plain http is tolerated only for these (tests, the local stack)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, *, who: str) -> str:
    """Normalise ``https://host[:port][/prefix]`` and refuse plain http to anything but loopback.

    A trailing ``/api/v4`` (the original service's convention) is tolerated and removed.
    """
    url = base_url.strip().rstrip("/")
    for suffix in ("/api/v4", "/api"):
        if url.lower().endswith(suffix):
            url = url[: -len(suffix)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DracoonPermanentError(
            f"DRACOON account {who}: base URL must be https://host[:port][/path]", code="bad_base_url"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise DracoonPermanentError(
            f"DRACOON account {who}: base URL must not contain credentials, a query or a fragment",
            code="bad_base_url",
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise DracoonPermanentError(
            f"DRACOON account {who}: plain http is only allowed for loopback hosts; use https",
            code="insecure_url",
        )
    return url


def make_ssl(settings: DracoonConfig, verify: bool, *, who: str) -> ssl.SSLContext:
    """Verifying context (optionally with the configured CA bundle), or an explicit insecure one."""
    if verify:
        cafile = str(settings.ca_bundle) if settings.ca_bundle is not None else None
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise DracoonPermanentError(
                f"cannot load dracoon.ca_bundle {cafile}: {exc}", code="bad_ca_bundle"
            ) from None
    if who not in _insecure_warned:
        _insecure_warned.add(who)
        log.warning("dracoon_tls_verification_disabled", account=who)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def redact_url(url: str) -> str:
    """Scheme, host and path with tokens and signatures removed: safe for a log line."""
    parts = urlsplit(url)
    path = parts.path
    for marker in ("/uploads/", "/downloads/"):
        head, sep, _tail = path.partition(marker)
        if sep:
            path = head + sep + "***"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}"


class HttpCore:
    """Sends requests for one account's session; see the module docstring for the policy."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: TokenManager,
        *,
        max_retries: int,
        backoff_base: float = RETRY_BACKOFF_BASE,
        backoff_max: float = RETRY_BACKOFF_MAX,
        retry_after_cap: float = RETRY_AFTER_CAP,
        metrics: DracoonMetrics | None = None,
    ) -> None:
        self.session = session
        self.api = base_url + "/api/v4"
        self.auth = auth
        self.max_retries = max_retries
        self.retry_after_cap = retry_after_cap
        self._metrics = metrics
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max

    def report(self, method: str, template: str, status: int | None) -> None:
        if self._metrics is not None:
            notify(self._metrics.dracoon_request, method, template, status)

    def backoff(self, attempt: int, exc: DracoonTransientError) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based).

        The server's Retry-After (already capped) when it sent one; else "full jitter": uniform
        in [0, backoff_base * 2**(attempt-1)], the window capped at backoff_max, so clients that
        failed together do not come back together.
        """
        if exc.retry_after is not None:
            return exc.retry_after
        window = min(self.backoff_base * 2.0 ** min(attempt - 1, 64), self.backoff_max)
        return random.uniform(0.0, max(window, 0.0))

    async def call_with_retries(self, policy: Retry, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` until it succeeds, ``policy`` refuses a resend or max_retries ran out.

        Only DracoonTransientError is retried; anything else, and the last transient error,
        propagates as raised. Callers use it for multi-step idempotent work too. A plain loop
        rather than a retry library: nearly every request succeeds at once, and the first
        attempt must cost no more than the call itself.
        """
        attempt = 1
        while True:
            try:
                return await call()
            except DracoonTransientError as exc:
                if attempt > self.max_retries or not policy.allows(exc):
                    raise
                wait = self.backoff(attempt, exc)
                log.warning(
                    "dracoon_retry",
                    request=what,
                    attempt=attempt,
                    wait=round(wait, 3),
                    error=str(exc),
                    error_code=exc.code,
                )
                if self._metrics is not None:
                    notify(self._metrics.retry, "dracoon")
            await asyncio.sleep(wait)
            attempt += 1

    async def request(
        self,
        method: str,
        template: str,
        *,
        url: str | None = None,
        path: str | None = None,
        ok: Collection[int] = (200,),
        auth: bool = True,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        data: bytes | bytearray | None = None,
        headers: Mapping[str, str] | None = None,
        retry: Retry = Retry.ALWAYS,
    ) -> Reply:
        """Send ``method`` to ``url`` (absolute) or ``path`` (below /api/v4); return a 2xx reply in ``ok``.

        Raises the mapped DracoonTransientError / DracoonPermanentError after retries ran out.
        """
        # encoded=True: a presigned URL's signature covers its exact query string; never re-quote it.
        raw = url if url is not None else self.api + (path if path is not None else template)
        target = URL(raw, encoded=True)
        what = f"{method} {template}"
        return await self.call_with_retries(
            retry,
            what,
            lambda: self._once(
                method,
                target,
                template,
                what,
                ok=ok,
                auth=auth,
                params=params,
                json_body=json_body,
                data=data,
                headers=headers,
            ),
        )

    async def _once(
        self,
        method: str,
        target: URL,
        template: str,
        what: str,
        *,
        ok: Collection[int],
        auth: bool,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        data: bytes | bytearray | None,
        headers: Mapping[str, str] | None,
    ) -> Reply:
        renewed = False
        while True:
            hdrs = {"Accept": "application/json", **(headers or {})}
            token = None
            if auth:
                try:
                    token = await self.auth.token()
                except DracoonTransientError as exc:
                    exc.retry_safe = True  # our request itself was never sent
                    raise
                hdrs["Authorization"] = f"Bearer {token}"
            try:
                async with self.session.request(
                    method,
                    target,
                    params=params,
                    json=json_body,
                    data=SlicedBytes(data) if data is not None else None,
                    headers=hdrs,
                    allow_redirects=False,
                ) as resp:
                    status, body, resp_headers = resp.status, await resp.read(), resp.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.report(method, template, None)
                raise transport_error(exc, what) from None
            self.report(method, template, status)
            if status in ok:
                return Reply(status, resp_headers, body)
            if status == 401 and token is not None and not renewed:
                # Token revoked or expired early: renew once (shared by concurrent callers), resend.
                renewed = True
                await self.auth.unauthorized(token)
                continue
            if 200 <= status < 300:
                raise DracoonPermanentError(
                    f"DRACOON {what}: unexpected HTTP {status}", code="bad_response", status=status
                )
            if 300 <= status < 400:
                raise DracoonPermanentError(
                    f"DRACOON {what}: unexpected redirect (HTTP {status})", code="bad_response", status=status
                )
            err = error_for_response(
                status,
                body,
                what=what,
                retry_after=resp_headers.get("Retry-After"),
                retry_after_cap=self.retry_after_cap,
            )
            if isinstance(err, AuthenticationFailed) and renewed:
                # A token issued a moment ago was refused too (revoked again, a cluster node that
                # has not seen it yet, a clock step): not proof that anything is wrong with the
                # account, whose login just worked. Retry with backoff; the next attempt renews
                # again. The server refused the request, so even an appending one may be resent.
                raise DracoonTransientError(
                    f"{err} even with a fresh token",
                    code="unauthorized",
                    status=err.status,
                    error_code=err.error_code,
                    retry_safe=True,
                )
            raise err

    @asynccontextmanager
    async def stream(self, method: str, template: str, *, url: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a streaming response (no auth header: download URLs carry their own token).

        Opening is retried like a GET; errors while the caller reads the body are mapped but not
        retried (the caller has already consumed part of it).
        """
        what = f"{method} {template}"

        async def open_once() -> aiohttp.ClientResponse:
            try:
                resp = await self.session.request(method, URL(url, encoded=True), headers={"Accept": "*/*"})
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.report(method, template, None)
                raise transport_error(exc, what) from None
            self.report(method, template, resp.status)
            if resp.status not in (200, 206):
                body = await resp.read()
                resp.release()
                raise error_for_response(
                    resp.status,
                    body,
                    what=what,
                    retry_after=resp.headers.get("Retry-After"),
                    retry_after_cap=self.retry_after_cap,
                )
            return resp

        resp = await self.call_with_retries(Retry.ALWAYS, what, open_once)
        try:
            yield resp
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, what) from None
        finally:
            resp.release()
