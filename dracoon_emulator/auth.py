"""OAuth 2.0 token endpoint (password + refresh_token grants) and the Bearer check on ``/api/v4``.

As DRACOON: client authentication by HTTP Basic or ``client_id``/``client_secret`` form fields;
JSON token responses with ``expires_in``; 400 ``invalid_grant`` for bad user credentials or a bad
refresh token, 401 ``unauthorized_client`` for a bad client. Refresh tokens rotate: the old one
stops working once used, so a client that does not keep the newest one fails here first.
Tokens expire by the emulator's clock (``state.clock.advance(...)`` in tests).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from multidict import MultiDictProxy

from .context import USER, ctx
from .errors import json_response, wrong_token
from .model import Token, User

PUBLIC_PREFIXES = ("/api/v4/public/", "/api/v4/uploads/", "/api/v4/downloads/")


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return json_response(
        {"error": error, "error_description": description},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


def _client_credentials(request: web.Request, form: MultiDictProxy[Any]) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        return (unquote_plus(client_id), unquote_plus(secret)) if sep else None
    if "client_id" in form:
        return str(form["client_id"]), str(form.get("client_secret", ""))
    return None


def _client_ok(request: web.Request, creds: tuple[str, str] | None) -> bool:
    if creds is None:
        return False
    expected = ctx(request).config.clients.get(creds[0])
    return expected is not None and secrets.compare_digest(expected.encode(), creds[1].encode())


async def token(request: web.Request) -> web.Response:
    """``POST /oauth/token``."""
    form = await request.post()
    creds = _client_credentials(request, form)
    if not _client_ok(request, creds):
        return _oauth_error(401, "unauthorized_client", "Bad client credentials")
    assert creds is not None
    grant = form.get("grant_type")
    state = ctx(request).state
    if grant == "password":
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return _oauth_error(400, "invalid_request", "Missing username or password")
        user = state.user_by_login(username)
        if user is None or not secrets.compare_digest(user.password.encode(), password.encode()):
            return _oauth_error(400, "invalid_grant", "Bad credentials")
        return _issue(request, user.id, creds[0])
    if grant == "refresh_token":
        presented = form.get("refresh_token")
        entry = state.refresh_tokens.get(presented) if isinstance(presented, str) else None
        if entry is None or entry.client_id != creds[0] or entry.expires_at <= state.clock.now():
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        assert isinstance(presented, str)
        del state.refresh_tokens[presented]
        return _issue(request, entry.user_id, creds[0])
    if grant is None:
        return _oauth_error(400, "invalid_request", "Missing grant type")
    return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")


def _issue(request: web.Request, user_id: int, client_id: str) -> web.Response:
    c = ctx(request)
    now = c.state.clock.now()
    access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    c.state.access_tokens[access] = Token(user_id, client_id, now + c.config.access_token_ttl)
    c.state.refresh_tokens[refresh] = Token(user_id, client_id, now + c.config.refresh_token_ttl)
    body = {
        "access_token": access,
        "token_type": "bearer",
        "refresh_token": refresh,
        "expires_in": int(c.config.access_token_ttl),
        "scope": "all",
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


async def revoke(request: web.Request) -> web.Response:
    """``POST /oauth/revoke``: forget the token (200 even if unknown, as RFC 7009)."""
    form = await request.post()
    if not _client_ok(request, _client_credentials(request, form)):
        return _oauth_error(401, "unauthorized_client", "Bad client credentials")
    value = form.get("token")
    if isinstance(value, str):
        state = ctx(request).state
        state.access_tokens.pop(value, None)
        state.refresh_tokens.pop(value, None)
    return web.Response(status=200)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def authenticate(request: web.Request) -> User:
    """Resolve the Bearer token to a user or raise DRACOON's 401 ``-10012``."""
    presented = bearer_token(request)
    if not presented:
        raise wrong_token("Missing token")
    state = ctx(request).state
    entry = state.access_tokens.get(presented)
    if entry is None or entry.expires_at <= state.clock.now():
        raise wrong_token()
    return state.users[entry.user_id]


@web.middleware
async def bearer_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Authenticate ``/api/v4`` requests except the public, upload-token and download-token URLs."""
    path = request.path
    if path.startswith("/api/") and not path.startswith(PUBLIC_PREFIXES):
        request[USER] = authenticate(request)
    return await handler(request)  # type: ignore[no-any-return]


def expire_caller_token(request: web.Request) -> None:
    """Fault action: expire the presented access token, or every token if none was presented."""
    state = ctx(request).state
    presented = bearer_token(request)
    entry = state.access_tokens.get(presented) if presented else None
    if entry is not None:
        entry.expires_at = state.clock.now() - 1
    else:
        state.expire_tokens()


def routes() -> list[web.RouteDef]:
    return [web.post("/oauth/token", token), web.post("/oauth/revoke", revoke)]
