"""DRACOON failures, classified once where the HTTP response (or its absence) is seen.

Everything the client raises on purpose is one of these, so callers decide with ``isinstance``
(transient -> retry later, permanent -> give up) and never look at aiohttp exceptions or status
codes. Messages name the operation and DRACOON's own explanation but never a token, password,
upload URL or presigned URL: they end up in logs and DLQ attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from ..errors import PermanentError, TransientError

__all__ = [
    "RETRY_AFTER_CAP",
    "AuthenticationFailed",
    "DracoonError",
    "DracoonPermanentError",
    "DracoonTransientError",
    "NameConflict",
    "NotFound",
    "QuotaExceeded",
    "ErrorBody",
    "error_for_response",
    "parse_error_body",
    "parse_retry_after",
    "transport_error",
]

# DRACOON's errorCode values we give a short, stable code (DLQ attribute, metrics label).
_KNOWN_CODES: dict[int, str] = {
    -40755: "bad_node_name",
    -41200: "path_too_long",
    -40001: "room_not_encrypted",
    -40763: "file_key_required",
    -40761: "no_file_key",
    -70020: "no_key_pair",
    -80006: "expiry_in_past",
    -80037: "too_large_for_encryption",
    -90033: "s3_direct_enforced",
    -90030: "s3_disabled",
    -20501: "upload_not_found",
    -20502: "bad_upload_token",
    -10103: "eula_not_accepted",
    -10104: "password_change_required",
    -10106: "email_required",
}

_MAX_DETAIL = 200


class DracoonError:
    """Mixin carrying the HTTP status and DRACOON's ``errorCode`` (both optional)."""

    status: int | None = None
    error_code: int | None = None


class DracoonTransientError(DracoonError, TransientError):
    """Worth retrying: network trouble, timeouts, 5xx (except 507), 429.

    ``retry_safe`` says the server certainly did not act on the request (429, or the connection
    was never established), so even a non-idempotent request may be sent again. A 503 does not
    qualify: some gateways answer it after the backend has already seen the body.
    """

    code = "dracoon_unavailable"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        error_code: int | None = None,
        retry_after: float | None = None,
        retry_safe: bool = False,
    ) -> None:
        super().__init__(message, code=code, retry_after=retry_after)
        self.status = status
        self.error_code = error_code
        self.retry_safe = retry_safe


class DracoonPermanentError(DracoonError, PermanentError):
    """Retrying the same request cannot help: 4xx, quota, bad name, unexpected answers."""

    code = "dracoon_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        error_code: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.error_code = error_code


class NotFound(DracoonPermanentError):
    """The node, channel, key pair or file key does not exist (404)."""

    code = "not_found"


class NameConflict(DracoonPermanentError):
    """A node with that name already exists where we wanted to create one (409)."""

    code = "name_conflict"


class QuotaExceeded(DracoonPermanentError):
    """Room quota, customer quota or disk space exhausted (507); waiting rarely helps."""

    code = "quota"


class AuthenticationFailed(DracoonPermanentError):
    """Login refused, or a fresh token still answered with 401: credentials or client are wrong."""

    code = "authentication_failed"


class ErrorBody:
    """The parts of a DRACOON (or OAuth) error body we use; every field may be missing."""

    __slots__ = ("code", "debug_info", "error", "error_code", "error_description", "message")

    def __init__(self, data: Mapping[str, Any] | None) -> None:
        data = data or {}
        self.code = _int_or_none(data.get("code"))
        self.error_code = _int_or_none(data.get("errorCode"))
        self.message = _text(data.get("message"))
        self.debug_info = _text(data.get("debugInfo"))
        self.error = _text(data.get("error"))
        self.error_description = _text(data.get("error_description"))

    def describe(self) -> str:
        """One short line: message, debug info and error code, whichever are present."""
        parts = [p for p in (self.message, self.debug_info) if p]
        if self.error:
            parts.append(self.error + (f" ({self.error_description})" if self.error_description else ""))
        if self.error_code is not None:
            parts.append(f"errorCode {self.error_code}")
        return "; ".join(parts)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        return int(value)
    return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = " ".join(value.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def parse_error_body(body: bytes | str | Mapping[str, Any] | None) -> ErrorBody:
    """Parse an error body that may be JSON, HTML from a proxy, or empty; never raises."""
    if isinstance(body, Mapping):
        return ErrorBody(body)
    if not body:
        return ErrorBody(None)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        return ErrorBody(None)
    return ErrorBody(data if isinstance(data, Mapping) else None)


# Retry-After values are capped at this many seconds: a server's longer (or bogus far-future)
# wish cannot hold a request, or the release of a failed job, for longer.
RETRY_AFTER_CAP = 60.0


def parse_retry_after(
    value: str | None, *, now: datetime | None = None, cap: float = RETRY_AFTER_CAP
) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP-date), capped; None if absent or junk."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None = None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), cap)


def error_for_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    what: str,
    retry_after: str | None = None,
    retry_after_cap: float = RETRY_AFTER_CAP,
) -> DracoonTransientError | DracoonPermanentError:
    """Map one non-success HTTP answer to the exception the caller should see.

    ``what`` names the operation (``"PUT /uploads/{token}"``): the template, never the URL.
    """
    info = parse_error_body(body)
    detail = info.describe()
    message = f"DRACOON {what}: HTTP {status}" + (f" ({detail})" if detail else "")
    ec = info.error_code
    known = _KNOWN_CODES.get(ec) if ec is not None else None
    if status == 429:
        return DracoonTransientError(
            message,
            code="rate_limited",
            status=status,
            error_code=ec,
            retry_after=parse_retry_after(retry_after, cap=retry_after_cap),
            retry_safe=True,
        )
    if status == 507:
        return QuotaExceeded(message, code="quota", status=status, error_code=ec)
    if 500 <= status <= 599:
        return DracoonTransientError(
            message,
            code="server_error",
            status=status,
            error_code=ec,
            retry_after=parse_retry_after(retry_after, cap=retry_after_cap),
        )
    if status == 401:
        return AuthenticationFailed(message, code=known or "unauthorized", status=status, error_code=ec)
    if status == 404:
        return NotFound(message, code=known or "not_found", status=status, error_code=ec)
    if status == 409:
        return NameConflict(message, code="name_conflict", status=status, error_code=ec)
    if status == 403:
        return DracoonPermanentError(message, code=known or "forbidden", status=status, error_code=ec)
    return DracoonPermanentError(message, code=known or f"http_{status}", status=status, error_code=ec)


def transport_error(exc: BaseException, what: str) -> DracoonTransientError | DracoonPermanentError:
    """Map an aiohttp/timeout exception; the message never repeats a URL (it may hold a token)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return DracoonPermanentError(
            f"DRACOON {what}: TLS verification failed ({type(exc).__name__}); "
            "check dracoon.ca_bundle or the server certificate",
            code="tls_error",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DracoonTransientError(
            f"DRACOON {what}: cannot connect to {exc.host}:{exc.port} ({_os_reason(exc)})",
            code="network",
            retry_safe=True,
        )
    if isinstance(exc, TimeoutError):
        return DracoonTransientError(f"DRACOON {what}: timed out", code="timeout")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.ClientResponseError):
        # Both render the URL in str(); only the class is safe to show.
        return DracoonPermanentError(f"DRACOON {what}: {type(exc).__name__}", code="bad_url")
    if isinstance(exc, OSError):
        return DracoonTransientError(
            f"DRACOON {what}: {type(exc).__name__} ({_os_reason(exc)})", code="network"
        )
    reason = _text(str(exc)) or type(exc).__name__
    return DracoonTransientError(f"DRACOON {what}: {type(exc).__name__}: {reason}", code="network")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
