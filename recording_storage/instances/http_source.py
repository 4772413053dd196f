"""Instances from the HTTP configurator; the wire format is in ``recording_storage.instances``."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from pydantic import SecretStr

from ..errors import ConfigProblem, PermanentError, TransientError
from ..logs import redact, register_secrets
from .model import (
    DracoonAccount,
    InstanceConfigInvalid,
    UnknownInstance,
    _is_loopback,
    normalise_domain,
    parse_instance,
)

if TYPE_CHECKING:
    from ..config import DracoonConfig

log = structlog.get_logger(__name__)

MAX_BODY = 1024 * 1024  # an instance is a few hundred bytes; anything huge is not a configurator
_TRANSIENT_4XX = {401, 403, 408, 425, 429}


class HttpInstanceProvider:
    """InstanceProvider asking the configurator over HTTP; owns one aiohttp session.

    The session is created on first use, inside the running loop, so the provider can be
    built synchronously at start-up.
    """

    def __init__(
        self,
        url: str,
        *,
        defaults: DracoonConfig,
        auth_token: SecretStr | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._base = url.strip().rstrip("/")
        self._source = redact(self._base)
        parts = urllib.parse.urlsplit(self._base)
        if parts.scheme not in ("http", "https") or not parts.hostname or (
            parts.scheme == "http" and not _is_loopback(parts.hostname)
        ):
            # It receives auth_token and answers with DRACOON passwords: never in clear.
            raise InstanceConfigInvalid([ConfigProblem(
                "instances.url", "must be an https:// URL (plain http only to 127.0.0.0/8, ::1, localhost)"
            )])
        self._defaults = defaults
        self._headers = {"Accept": "application/json"}
        if auth_token is not None and auth_token.get_secret_value():
            register_secrets(auth_token)
            self._headers["Authorization"] = f"Bearer {auth_token.get_secret_value()}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("HttpInstanceProvider is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def _get_json(self, path: str, what: str) -> Any:
        """GET one resource; map every failure onto UnknownInstance / Transient / Permanent."""
        url = f"{self._base}{path}"
        body, retry_after = b"", None
        try:
            async with self._client().get(url, allow_redirects=False) as resp:
                status = resp.status
                if status == 200:
                    body = await _read_bounded(resp)
                else:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(
                f"configurator unreachable for {what}: {type(exc).__name__}: {redact(str(exc))}",
                code="configurator_unavailable",
            ) from None
        if status == 200:
            try:
                return json.loads(body)
            except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError, too deep, number too long
                reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
                raise InstanceConfigInvalid(
                    [ConfigProblem(what, f"configurator answered with invalid JSON ({reason})", self._source)]
                ) from None
        if status == 404:
            return _NOT_FOUND
        if status >= 500 or status in _TRANSIENT_4XX:
            raise TransientError(f"configurator answered HTTP {status} for {what}",
                                 code="configurator_unavailable", retry_after=retry_after)
        raise PermanentError(f"configurator answered HTTP {status} for {what}", code="configurator_rejected")

    async def get(self, domain: str) -> DracoonAccount:
        """``GET {url}/instances/{domain}`` validated like a file entry."""
        key = normalise_domain(domain)
        if not key:
            raise UnknownInstance(domain)
        where = f"instances[{key}]"
        data = await self._get_json(f"/instances/{urllib.parse.quote(key, safe='')}", where)
        if data is _NOT_FOUND:
            raise UnknownInstance(domain)
        if not isinstance(data, dict):
            raise InstanceConfigInvalid([ConfigProblem(where, "configurator answer must be a JSON object",
                                                       self._source)])
        entry = dict(data)
        answered = entry.pop("domain", key)
        if not isinstance(answered, str) or normalise_domain(answered) != key:
            raise InstanceConfigInvalid([ConfigProblem(f"{where}.domain",
                                                       "configurator answered for a different domain",
                                                       self._source)])
        return parse_instance(key, entry, defaults=self._defaults, source=self._source, where=where)

    async def list_domains(self) -> list[str]:
        """``GET {url}/instances``: ``{"instances": [...]}`` or a bare list of domain strings."""
        data = await self._get_json("/instances", "instances")
        if data is _NOT_FOUND:
            raise PermanentError("configurator has no /instances resource (HTTP 404)",
                                 code="configurator_rejected")
        items = data.get("instances") if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(d, str) and d.strip() for d in items):
            shape = 'must be {"instances": ["domain", ...]} or a list of domain strings'
            raise InstanceConfigInvalid([ConfigProblem("instances", shape, self._source)])
        return sorted({normalise_domain(d) for d in items})

    async def aclose(self) -> None:
        """Close the session; later calls fail."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


_NOT_FOUND: Any = object()


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > MAX_BODY:
            raise PermanentError(f"configurator answer exceeds {MAX_BODY} bytes",
                                 code="configurator_rejected")
    return bytes(buf)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
