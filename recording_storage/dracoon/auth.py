"""OAuth2 tokens for one DRACOON account: password grant, refresh grant, early renewal.

DRACOON hands out access tokens with an ``expires_in`` that differs per server (1 h to 12 h);
we renew a little before it runs out so long uploads never see a 401, and still recover from
one (the server may revoke or shorten tokens) by renewing once and retrying. One renewal runs
at a time per account; concurrent callers wait for it and reuse its result instead of each
logging in. The password is only ever sent in the token request body.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote_plus

import aiohttp
import structlog
from pydantic import SecretStr

from .errors import (
    AuthenticationFailed,
    DracoonPermanentError,
    DracoonTransientError,
    error_for_response,
    parse_error_body,
    transport_error,
)

__all__ = ["Credentials", "TokenManager"]

log = structlog.get_logger(__name__)

TOKEN_PATH = "/oauth/token"
# Renew this long before expiry: 10 % of the lifetime, at most a minute.
_EARLY_FRACTION = 0.1
_EARLY_MAX = 60.0
# A token response without expires_in: assume a short life, the 401 path covers the rest.
_DEFAULT_LIFETIME = 600.0

class DracoonMetrics(Protocol):
    """What the DRACOON client reports (``metrics.Metrics`` fits): each response, each retry."""

    def dracoon_request(self, method: str, path: str, status: int | None) -> None: ...
    def retry(self, system: str) -> None: ...


def notify(report: Callable[..., None], *args: Any) -> None:
    """Call a ``DracoonMetrics`` method; a metrics bug must never break a request or a transfer."""
    try:
        report(*args)
    except Exception:
        log.exception("dracoon_metrics_hook_failed")


@dataclass(frozen=True)
class Credentials:
    """What the password grant needs; ``repr`` hides the secrets (dataclass fields are SecretStr)."""

    base_url: str
    login: str
    password: SecretStr
    client_id: str
    client_secret: SecretStr
    # RFC 6749 2.3.1: form-encode id and secret before Basic; False for servers that do not decode.
    form_encode: bool = True

    @property
    def who(self) -> str:
        return f"{self.login} @ {self.base_url}"


class TokenManager:
    """Keeps one valid access token; ``token()`` is cheap when the current one is fresh."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        creds: Credentials,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: DracoonMetrics | None = None,
    ) -> None:
        self._session = session
        self._creds = creds
        self._clock = clock
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        self.logins = 0
        self.refreshes = 0

    def _fresh(self) -> bool:
        return self._access is not None and self._clock() < self._renew_at

    async def token(self) -> str:
        """A token valid for a while yet, obtaining or renewing it first if needed."""
        if self._fresh():
            assert self._access is not None
            return self._access
        async with self._lock:
            if not self._fresh():
                try:
                    await self._renew()
                except DracoonTransientError:
                    # Renewal is early by design: while the old token still lives, keep working.
                    if self._access is None or self._clock() >= self._expires_at:
                        raise
                    log.warning("dracoon_token_renewal_deferred", account=self._creds.who)
            assert self._access is not None
            return self._access

    async def unauthorized(self, used: str) -> None:
        """The server rejected ``used``: renew, unless another caller already did."""
        async with self._lock:
            if self._access == used or self._access is None:
                self._renew_at = self._expires_at = 0.0
                await self._renew()

    def forget(self) -> None:
        """Drop every token (e.g. on close); the next call logs in again."""
        self._access = self._refresh = None
        self._renew_at = self._expires_at = 0.0

    async def _renew(self) -> None:
        if self._refresh is not None:
            try:
                await self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                self.refreshes += 1
                log.debug("dracoon_token_refreshed", account=self._creds.who)
                return
            except DracoonPermanentError as exc:
                # Refresh token expired or revoked: a fresh login is the documented way out.
                log.info("dracoon_refresh_failed", account=self._creds.who, error_code=exc.code)
                self._refresh = None
        await self._grant(
            {
                "grant_type": "password",
                "username": self._creds.login,
                "password": self._creds.password.get_secret_value(),
            }
        )
        self.logins += 1
        log.debug("dracoon_logged_in", account=self._creds.who)

    async def _grant(self, form: dict[str, str]) -> None:
        grant = form["grant_type"]
        what = f"POST {TOKEN_PATH} ({grant} grant)"
        headers = {"Accept": "application/json", "Authorization": self._basic_auth()}
        try:
            async with self._session.post(
                self._creds.base_url + TOKEN_PATH,
                data=form,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                status, body = resp.status, await resp.read()
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._report(None)
            raise transport_error(exc, what) from None
        self._report(status)
        if status == 200:
            self._store(body, what)
            return
        if status in (400, 401, 403):
            info = parse_error_body(body)
            reason = info.error or info.message or f"HTTP {status}"
            detail = f" ({info.error_description})" if info.error_description else ""
            raise AuthenticationFailed(
                f"DRACOON login failed for {self._creds.who}: {reason}{detail}",
                code="authentication_failed",
                status=status,
                error_code=info.error_code,
            )
        raise error_for_response(status, body, what=what, retry_after=retry_after)

    def _basic_auth(self) -> str:
        """HTTP Basic client authentication as RFC 6749 section 2.3.1 prescribes.

        Id and secret are each application/x-www-form-urlencoded first, so a ``+``, ``%`` or
        ``:`` in them survives the server's decoding (a raw ``+`` would arrive as a space). For
        id and secret made of letters, digits and ``-._~`` both forms are the same bytes, which
        is why the official SDKs' raw form usually works; ``dracoon.client_auth_encoding: raw``
        restores it for a server that does not decode.
        """
        client_id, secret = self._creds.client_id, self._creds.client_secret.get_secret_value()
        if self._creds.form_encode:
            client_id, secret = quote_plus(client_id, safe=""), quote_plus(secret, safe="")
        return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")

    def _store(self, body: bytes, what: str) -> None:
        try:
            data: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
            raise DracoonTransientError(
                f"DRACOON {what}: token response is not JSON", code="bad_response"
            ) from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise DracoonTransientError(
                f"DRACOON {what}: token response without access_token", code="bad_response"
            )
        lifetime = data.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = _DEFAULT_LIFETIME
        refresh = data.get("refresh_token")
        self._access = token
        # Always keep the newest refresh token: DRACOON may rotate it on every refresh.
        if isinstance(refresh, str) and refresh:
            self._refresh = refresh
        now = self._clock()
        self._expires_at = now + float(lifetime)
        self._renew_at = self._expires_at - min(_EARLY_MAX, _EARLY_FRACTION * float(lifetime))

    def _report(self, status: int | None) -> None:
        if self._metrics is not None:
            notify(self._metrics.dracoon_request, "POST", TOKEN_PATH, status)
