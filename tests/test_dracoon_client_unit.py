"""DRACOON client against a tiny fake server (real sockets) for cases the emulator does not model.

Covers the request core (error mapping, retries, Retry-After, HTML bodies), OAuth (login,
refresh, 401 recovery, failures), TLS/base-URL rules, model parsing and key/node pagination.
The fake is deliberately dumb: each test installs the handlers it needs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr

from recording_storage.config import DracoonConfig
from recording_storage.crypto import EncryptedFileKey, FileKeyVersion
from recording_storage.dracoon import (
    AuthenticationFailed,
    DracoonClient,
    DracoonPermanentError,
    DracoonTransientError,
    FileKeyItem,
    MissingKeys,
    NameConflict,
    Node,
    NotFound,
    QuotaExceeded,
)
from recording_storage.dracoon.auth import Credentials, TokenManager
from recording_storage.dracoon.errors import error_for_response, parse_retry_after
from recording_storage.dracoon.http import _SLICE, Retry, SlicedBytes, check_base_url, make_ssl, redact_url
from recording_storage.dracoon.s3upload import MIN_PART_SIZE, part_size_for
from recording_storage.dracoon.upload import format_expiry
from recording_storage.instances import DracoonAccount
from tests.fixtures.clock import FakeClock
from tests.fixtures.fake_dracoon import CLIENT_SECRET, PASSWORD, FakeDracoon, Handler, api_error, start
from tests.fixtures.keys import TestKeyPair
from tests.fixtures.metrics import RecordedMetrics

# -- pure functions -----------------------------------------------------------------------------


class _RecordingWriter:
    """aiohttp's payload writer, reduced to what a payload calls: ``write``."""

    def __init__(self) -> None:
        self.pieces: list[memoryview] = []

    async def write(self, chunk: memoryview) -> None:
        self.pieces.append(chunk)


async def test_a_chunk_body_goes_out_in_bounded_slices_of_itself() -> None:
    """No copy of the body, and no write larger than a slice: the writer drains after each
    one, so the transport never holds more than a slice of an 8 MiB chunk."""
    body = bytearray(range(256)) * (8 * 4096 + 3)  # 8 MiB and a bit: a short last slice
    writer = _RecordingWriter()
    await SlicedBytes(body).write_with_length(writer, len(body) - 5)
    assert max(len(p) for p in writer.pieces) == _SLICE
    assert len(writer.pieces) == -(-(len(body) - 5) // _SLICE)
    assert all(p.obj is body for p in writer.pieces)  # views of the chunk itself
    assert b"".join(writer.pieces) == bytes(body[:-5])


def test_retry_after_accepts_seconds_dates_and_caps() -> None:
    """Retry-After is honoured as delta-seconds or HTTP-date, capped, and junk is ignored."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("3600", now=now, cap=60) == 60.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (429, {}, DracoonTransientError, "rate_limited"),
        (500, api_error(500), DracoonTransientError, "server_error"),
        (502, "<html><body>Bad gateway</body></html>", DracoonTransientError, "server_error"),
        (504, api_error(504, -90027), DracoonTransientError, "server_error"),
        (507, api_error(507, -90200), QuotaExceeded, "quota"),
        (404, {"code": 404, "errorCode": -40000}, NotFound, "not_found"),
        (409, api_error(409, None, "Conflict"), NameConflict, "name_conflict"),
        (400, api_error(400, -40755, "Bad node name"), DracoonPermanentError, "bad_node_name"),
        (400, "", DracoonPermanentError, "http_400"),
        (403, api_error(403, -70020), DracoonPermanentError, "no_key_pair"),
        (401, api_error(401, -10012), AuthenticationFailed, "unauthorized"),
        (412, "[1, 2]", DracoonPermanentError, "http_412"),
    ],
)
def test_error_mapping(status: int, body: Any, cls: type[Exception], code: str) -> None:
    """Each status lands in the documented class with a short code; odd bodies never break parsing."""
    raw = body if isinstance(body, str) else json.dumps(body).encode()
    err = error_for_response(status, raw, what="GET /nodes/{id}")
    assert type(err) is cls
    assert err.code == code
    assert err.status == status
    assert f"HTTP {status}" in str(err) and "GET /nodes/{id}" in str(err)
    assert "<html>" not in str(err)


def test_507_is_permanent_and_5xx_transient() -> None:
    """Quota is not worth an immediate retry; other 5xx are."""
    assert isinstance(error_for_response(507, b"", what="x"), DracoonPermanentError)
    for status in (500, 501, 502, 503, 504, 599):
        assert isinstance(error_for_response(status, b"", what="x"), DracoonTransientError)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://dracoon.example", "https://dracoon.example"),
        ("https://dracoon.example:8443/prefix/", "https://dracoon.example:8443/prefix"),
        ("https://dracoon.example/api/v4", "https://dracoon.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.10.0.3", "http://127.10.0.3"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("http://localhost:1234", "http://localhost:1234"),
    ],
)
def test_base_url_accepted(given: str, expected: str) -> None:
    """https anywhere and plain http on loopback are accepted and normalised."""
    assert check_base_url(given, who="t") == expected


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ("http://dracoon.example", "insecure_url"),
        ("http://10.0.0.1", "insecure_url"),
        ("ftp://dracoon.example", "bad_base_url"),
        ("dracoon.example", "bad_base_url"),
        ("https://user:pw@dracoon.example", "bad_base_url"),
    ],
)
def test_base_url_rejected(given: str, code: str) -> None:
    """Plain http to a non-loopback host is refused at construction with a clear message."""
    with pytest.raises(DracoonPermanentError) as info:
        check_base_url(given, who="svc (acme)")
    assert info.value.code == code
    assert "pw" not in str(info.value)


def test_insecure_tls_is_explicit_and_warned_once(tmp_path: Any) -> None:
    """verify_tls=False gives a non-verifying context and one warning per account."""
    settings = DracoonConfig()
    assert make_ssl(settings, True, who="a").verify_mode.name == "CERT_REQUIRED"
    with structlog.testing.capture_logs() as logs:
        ctx = make_ssl(settings, False, who="insecure-account-1")
        make_ssl(settings, False, who="insecure-account-1")
    assert ctx.verify_mode.name == "CERT_NONE" and not ctx.check_hostname
    assert [e["event"] for e in logs] == ["dracoon_tls_verification_disabled"]
    with pytest.raises(DracoonPermanentError) as info:
        make_ssl(DracoonConfig(ca_bundle=tmp_path / "missing.pem"), True, who="b")
    assert info.value.code == "bad_ca_bundle"


def test_redact_url_drops_tokens_and_signatures() -> None:
    """Upload tokens and presigned query strings never reach a log line."""
    assert redact_url("https://h/api/v4/uploads/SECRETTOKEN") == "https://h/api/v4/uploads/***"
    assert (
        redact_url("https://s3.example/b/k?X-Amz-Signature=abc&X-Amz-Credential=x")
        == "https://s3.example/b/k"
    )


def test_models_parse_defensively() -> None:
    """Unknown fields are ignored, optional ones default; missing identity fields are protocol errors."""
    node = Node.from_json(
        {
            "id": 5,
            "type": "room",
            "name": "R",
            "isEncrypted": True,
            "extra": [1],
            "permissions": {"manage": True, "read": False},
            "size": "junk",
        }
    )
    assert (node.id, node.is_room, node.is_encrypted, node.size, node.permissions) == (
        5,
        True,
        True,
        None,
        frozenset({"manage"}),
    )
    with pytest.raises(DracoonPermanentError) as info:
        Node.from_json({"id": 5, "type": "file"})
    assert info.value.code == "bad_response"
    page = MissingKeys.from_json(
        {
            "items": [{"userId": 1, "fileId": 2}, {"userId": "x"}, 7],
            "users": [{"id": 1, "publicKeyContainer": {"version": "Z", "publicKey": "?"}}],
            "files": [{"id": 2}],
            "range": {"offset": 0, "limit": 100, "total": 1},
        }
    )
    assert [(i.user_id, i.file_id) for i in page.items] == [(1, 2)]
    assert page.users == () and page.files == () and page.total == 1


def test_expiry_format_and_part_size() -> None:
    """Expiry is UTC with Z (naive datetimes refused); parts are >= 5 MiB and <= 10 000 of them."""
    assert format_expiry(datetime(2030, 5, 1, 12, 0, tzinfo=UTC)) == "2030-05-01T12:00:00Z"
    with pytest.raises(ValueError):
        format_expiry(datetime(2030, 5, 1))
    assert part_size_for(100, 64 * 1024) == MIN_PART_SIZE
    assert part_size_for(100, 32 * 1024**2) == 32 * 1024**2
    assert part_size_for(10_000 * MIN_PART_SIZE + 1, 1) == MIN_PART_SIZE + 1


# -- OAuth ----------------------------------------------------------------------------------------


async def test_login_uses_basic_client_auth_and_bearer(fake: FakeDracoon) -> None:
    """Password grant with Basic client auth, then Bearer on the API; public info without a token."""
    fake.json("GET", "/api/v4/user/account", {"id": 7, "userName": "svc", "firstName": "S"})
    fake.json(
        "GET",
        "/api/v4/public/system/info",
        {"useS3Storage": True, "s3EnforceDirectUpload": False},
        auth=False,
    )
    await start(fake)
    async with fake.client() as client:
        account = await client.ping_authenticated()
        info = await client.system_info()
    assert account.id == 7 and account.user_name == "svc"
    assert info.use_s3_storage and not info.s3_enforce_direct_upload
    assert fake.grants == [{"grant_type": "password", "username": "svc", "password": PASSWORD}]
    assert fake.api("/user/account")[0].headers["Authorization"] == "Bearer tok-1"
    assert "Authorization" not in fake.api("/public/system/info")[0].headers


async def test_failed_login_names_account_and_reason_not_password(fake: FakeDracoon) -> None:
    """A refused login is permanent, names login @ base URL and the OAuth error, never the password."""
    fake.json("GET", "/api/v4/user/account", {"id": 7})
    await start(fake)
    client = DracoonClient(fake.account(password=SecretStr("wrong-pw-123")), DracoonConfig(max_retries=3))
    async with client:
        with pytest.raises(AuthenticationFailed) as info:
            await client.ping_authenticated()
    message = str(info.value)
    assert f"svc @ {fake.url}" in message and "invalid_grant" in message and "Bad credentials" in message
    assert "wrong-pw-123" not in message and "wrong-pw-123" not in repr(client)
    assert len(fake.grants) == 1  # permanent: not retried


async def test_401_renews_once_and_retries(fake: FakeDracoon) -> None:
    """A revoked token is renewed with the refresh grant and the request sent again."""
    fake.json("GET", "/api/v4/user/account", {"id": 7})
    statuses: list[int | None] = []
    await start(fake)
    async with fake.client(hook=lambda m, p, s: statuses.append(s)) as client:
        await client.ping_authenticated()
        fake.tokens.clear()  # server-side revocation
        await client.ping_authenticated()
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token"]
    assert fake.grants[1]["refresh_token"] == "ref-1"
    assert statuses == [200, 200, 401, 200, 200]
    assert [s.headers["Authorization"] for s in fake.api("/user/account")] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


async def test_rejected_refresh_falls_back_to_password(fake: FakeDracoon) -> None:
    """An expired refresh token leads to a fresh password grant, not a failure."""
    fake.json("GET", "/api/v4/user/account", {"id": 7})
    await start(fake)
    async with fake.client() as client:
        await client.ping_authenticated()
        fake.tokens.clear()
        fake.reject_refresh = True
        await client.ping_authenticated()
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token", "password"]


async def test_persistent_401_is_transient_and_renewed_on_every_attempt(fake: FakeDracoon) -> None:
    """A 401 with a brand-new token is not proof of bad credentials (the login just worked): each
    attempt renews and resends once, attempts back off, and what is left after the last one is
    transient, never a permanent failure that would dead-letter the job."""
    fake.json("GET", "/api/v4/user/account", api_error(401, -10006), status=401, auth=False)
    await start(fake)
    async with fake.client() as client:
        with pytest.raises(DracoonTransientError) as info:
            await client.ping_authenticated()
    assert not isinstance(info.value, AuthenticationFailed)
    assert info.value.code == "unauthorized" and "fresh token" in str(info.value)
    attempts = client.settings.max_retries + 1
    assert len(fake.api("/user/account")) == 2 * attempts
    assert len(fake.grants) == 1 + attempts  # the login, then one renewal per attempt


async def test_concurrent_first_calls_share_one_login(fake: FakeDracoon) -> None:
    """Ten workers starting at once log in once."""
    fake.json("GET", "/api/v4/user/account", {"id": 7})
    await start(fake)
    async with fake.client() as client:
        await asyncio.gather(*(client.ping_authenticated() for _ in range(10)))
    assert len(fake.grants) == 1


@asynccontextmanager
async def token_manager(fake: FakeDracoon, clock: FakeClock) -> AsyncIterator[TokenManager]:
    """A TokenManager for the fake's account on its own session, with a clock the test moves."""
    creds = Credentials(fake.url, "svc", SecretStr(PASSWORD), "cid", SecretStr(CLIENT_SECRET))
    async with aiohttp.ClientSession() as session:
        yield TokenManager(session, creds, clock=clock)


async def test_token_renewed_before_expiry(fake: FakeDracoon) -> None:
    """The token is refreshed at 90 % of its life (max 60 s early), without waiting for a 401."""
    fake.expires_in = 100
    await start(fake)
    clock = FakeClock()
    async with token_manager(fake, clock) as tm:
        assert await tm.token() == "tok-1"
        clock.advance(89)
        assert await tm.token() == "tok-1"
        clock.advance(2)  # 91 s: inside the last 10 %
        assert await tm.token() == "tok-2"
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token"]


async def test_failed_early_renewal_keeps_the_live_token(fake: FakeDracoon) -> None:
    """A token endpoint outage during early renewal is bridged until the token really expires."""
    fake.expires_in = 100
    await start(fake)
    clock = FakeClock()
    async with token_manager(fake, clock) as tm:
        assert await tm.token() == "tok-1"
        fake.token_status = 503
        clock.advance(95)
        assert await tm.token() == "tok-1"
        clock.advance(6)  # past expires_in: no token left to bridge with
        with pytest.raises(DracoonTransientError) as info:
            await tm.token()
    assert info.value.status == 503


# -- request core ----------------------------------------------------------------------------------


def flaky(statuses: list[tuple[int, Any, dict[str, str]]], final: Any) -> Handler:
    """A handler answering the given (status, body, headers) in turn, then 200 ``final``."""
    queue = list(statuses)

    async def handler(request: web.Request) -> web.Response:
        if queue:
            status, body, headers = queue.pop(0)
            text = body if isinstance(body, str) else json.dumps(body)
            return web.Response(
                status=status,
                text=text,
                headers=headers,
                content_type="text/html" if isinstance(body, str) else "application/json",
            )
        return web.json_response(final)

    return handler


async def test_html_5xx_retried_then_succeeds(fake: FakeDracoon) -> None:
    """Gateway errors with HTML bodies are transient and retried; the hook sees every status."""
    html = "<html><h1>502 Bad Gateway</h1></html>"
    fake.route("GET", "/api/v4/nodes/{id}")(
        flaky([(502, html, {}), (503, html, {})], {"id": 3, "type": "room", "name": "r"})
    )
    seen: list[tuple[str, str, int | None]] = []
    await start(fake)
    async with fake.client(hook=lambda m, p, s: seen.append((m, p, s))) as client:
        node = await client.get_node(3)
    assert node.name == "r"
    assert [s for s in seen if s[1] == "/nodes/{id}"] == [
        ("GET", "/nodes/{id}", 502),
        ("GET", "/nodes/{id}", 503),
        ("GET", "/nodes/{id}", 200),
    ]


async def test_5xx_gives_up_after_max_retries(fake: FakeDracoon) -> None:
    """Retries are bounded by max_retries; the last error is transient with its status."""
    fake.json("GET", "/api/v4/nodes/3", api_error(500, None, "System Error"), status=500)
    await start(fake)
    async with fake.client(max_retries=2) as client:
        with pytest.raises(DracoonTransientError) as info:
            await client.get_node(3)
    assert info.value.status == 500 and info.value.code == "server_error"
    assert len(fake.api("/nodes/3")) == 3


async def test_429_honours_retry_after(fake: FakeDracoon) -> None:
    """A 429 waits for Retry-After before the next attempt."""
    fake.route("GET", "/api/v4/nodes/{id}")(
        flaky([(429, {}, {"Retry-After": "1"})], {"id": 3, "type": "room", "name": "r"})
    )
    await start(fake)
    async with fake.client() as client:
        started = time.monotonic()
        await client.get_node(3)
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5


def retry_client(fake: FakeDracoon, metrics: RecordedMetrics, **backoff: float) -> DracoonClient:
    """A client whose backoff is small and known, so the logged waits can be checked exactly."""
    options: dict[str, float] = {"backoff_base": 0.001, "backoff_max": 0.004, **backoff}
    return DracoonClient(fake.account(), DracoonConfig(max_retries=5), metrics=metrics, **options)


def retry_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == "dracoon_retry"]


async def test_each_retry_is_logged_and_counted(fake: FakeDracoon) -> None:
    """One dracoon_retry warning (template, attempt, wait, error, code) and one metric per retry."""
    html = "<html>busy</html>"
    fake.route("GET", "/api/v4/nodes/{id}")(
        flaky([(503, html, {}), (502, html, {})], {"id": 3, "type": "room", "name": "r"})
    )
    await start(fake)
    metrics = RecordedMetrics()
    with structlog.testing.capture_logs() as logs:
        async with retry_client(fake, metrics) as client:
            await client.get_node(3)
    lines = retry_lines(logs)
    assert [(x["request"], x["attempt"], x["error_code"]) for x in lines] == [
        ("GET /nodes/{id}", 1, "server_error"),
        ("GET /nodes/{id}", 2, "server_error"),
    ]
    assert "HTTP 503" in lines[0]["error"] and "HTTP 502" in lines[1]["error"]
    assert all(x["log_level"] == "warning" and isinstance(x["wait"], float) for x in lines)
    assert metrics.retries == ["dracoon", "dracoon"]


async def test_backoff_is_jittered_within_a_doubling_capped_window(fake: FakeDracoon) -> None:
    """Attempt n waits uniformly in [0, min(base * 2**(n-1), max)]: 1, 2, 4, 4, 4 ms here."""
    fake.json("GET", "/api/v4/nodes/3", api_error(500, None, "System Error"), status=500)
    await start(fake)
    with structlog.testing.capture_logs() as logs:
        async with retry_client(fake, RecordedMetrics()) as client:
            with pytest.raises(DracoonTransientError):
                await client.get_node(3)
    waits = [x["wait"] for x in retry_lines(logs)]
    windows = [0.001, 0.002, 0.004, 0.004, 0.004]
    assert len(waits) == len(windows)
    assert all(0.0 <= wait <= window for wait, window in zip(waits, windows, strict=True)), waits
    assert len(fake.api("/nodes/3")) == 6


async def test_retry_after_replaces_the_backoff_and_is_capped(fake: FakeDracoon) -> None:
    """A server's Retry-After is the wait (not jitter), on 429 and 5xx alike, up to the cap."""
    fake.route("GET", "/api/v4/nodes/{id}")(
        flaky(
            [(429, {}, {"Retry-After": "3600"}), (503, {}, {"Retry-After": "0"})],
            {"id": 3, "type": "room", "name": "r"},
        )
    )
    await start(fake)
    with structlog.testing.capture_logs() as logs:
        async with retry_client(fake, RecordedMetrics(), backoff_base=5.0, retry_after_cap=0.05) as client:
            await client.get_node(3)
    assert [x["wait"] for x in retry_lines(logs)] == [0.05, 0.0]


async def test_giving_up_raises_the_last_error(fake: FakeDracoon) -> None:
    """After max_retries the error of the final attempt is raised, not the first one."""
    fake.route("GET", "/api/v4/nodes/{id}")(
        flaky([(502, {}, {}), (503, {}, {}), (504, {}, {})], {"id": 3, "type": "room", "name": "r"})
    )
    await start(fake)
    async with fake.client(max_retries=2) as client:
        with pytest.raises(DracoonTransientError) as info:
            await client.get_node(3)
    assert info.value.status == 504
    assert len(fake.api("/nodes/3")) == 3


@pytest.mark.parametrize(
    ("policy", "status", "attempts"),
    [
        (Retry.ALWAYS, 503, 4),
        (Retry.ALWAYS, 429, 4),
        (Retry.REFUSED, 503, 1),  # the server may have acted: an appending request is not resent
        (Retry.REFUSED, 429, 4),  # refused for certain: safe to resend
        (Retry.NEVER, 503, 1),
        (Retry.NEVER, 429, 1),
    ],
)
async def test_retry_policy_decides_what_is_resent(
    fake: FakeDracoon, policy: Retry, status: int, attempts: int
) -> None:
    fake.json("POST", "/api/v4/uploads/tok", api_error(status), status=status)
    await start(fake)
    async with fake.client(max_retries=3) as client:
        with pytest.raises(DracoonTransientError) as info:
            await client.http.request("POST", "/uploads/{token}", path="/uploads/tok", retry=policy)
    assert info.value.status == status
    assert len(fake.api("/uploads/tok")) == attempts


async def test_no_retries_means_one_attempt(fake: FakeDracoon) -> None:
    fake.json("GET", "/api/v4/nodes/3", api_error(503), status=503)
    await start(fake)
    async with fake.client(max_retries=0) as client:
        with pytest.raises(DracoonTransientError):
            await client.get_node(3)
    assert len(fake.api("/nodes/3")) == 1


async def test_download_opening_is_retried(fake: FakeDracoon) -> None:
    """Opening a download stream is retried like a GET; the body arrives once it opens."""
    fake.json("POST", "/api/v4/nodes/files/{id}/downloads", {"downloadUrl": "/api/v4/downloads/dl-tok"})
    answers = [web.Response(status=503), web.Response(body=b"payload")]

    async def download(request: web.Request) -> web.Response:
        return answers.pop(0)

    fake.route("GET", "/api/v4/downloads/{token}", auth=False)(download)
    await start(fake)
    async with fake.client() as client:
        body = b"".join([chunk async for chunk in client.download(7)])
    assert body == b"payload"
    assert answers == []


async def test_quota_and_bad_name_are_not_retried(fake: FakeDracoon) -> None:
    """507 -> QuotaExceeded and -40755 -> bad_node_name after a single attempt."""
    fake.json(
        "POST", "/api/v4/nodes/files/uploads", api_error(507, -40200, "Insufficient Storage"), status=507
    )
    fake.json("POST", "/api/v4/nodes/rooms", api_error(400, -40755, "Bad node name"), status=400)
    fake.json("GET", "/api/v4/nodes", {"range": {"offset": 0, "limit": 500, "total": 0}, "items": []})
    fake.json("GET", "/api/v4/nodes/1", {"id": 1, "type": "room", "name": "p"})
    await start(fake)
    async with fake.client(upload_mode="proxy") as client:
        with pytest.raises(QuotaExceeded) as quota:
            await client.open_upload(1, "f.mp4", 10)
        with pytest.raises(DracoonPermanentError) as bad:
            await client.ensure_room_path(1, ["CON"])
    assert quota.value.code == "quota" and quota.value.error_code == -40200
    assert bad.value.code == "bad_node_name"
    assert len(fake.api("/nodes/files/uploads")) == 1 and len(fake.api("/nodes/rooms")) == 1


async def test_connection_refused_is_transient_network() -> None:
    """No server at all: transient 'network', after the configured retries."""
    f = await start(FakeDracoon())
    url = f.url
    await f.server.close()  # type: ignore[union-attr]
    f.server = None
    account = DracoonAccount(
        domain="d",
        base_url=url,
        login="svc",
        password=SecretStr(PASSWORD),
        encryption_password=SecretStr("e"),
        parent_room_id=1,
    )
    client = DracoonClient(account, DracoonConfig(max_retries=1), backoff_base=0.01, backoff_max=0.02)
    async with client:
        with pytest.raises(DracoonTransientError) as info:
            await client.get_node(1)
    assert info.value.code == "network"


async def test_read_timeout_is_transient(fake: FakeDracoon) -> None:
    """A server that stops answering hits request_timeout and becomes a transient 'timeout'."""
    release = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    fake.route("GET", "/api/v4/nodes/{id}")(stuck)
    await start(fake)
    async with fake.client(request_timeout=0.2, max_retries=0) as client:
        with pytest.raises(DracoonTransientError) as info:
            await client.get_node(1)
    release.set()
    assert info.value.code == "timeout"


# -- nodes and keys --------------------------------------------------------------------------------


async def test_children_paginate_and_filter(fake: FakeDracoon) -> None:
    """Every page is read (offset/limit 500) and the filter reaches the server intact."""
    names = [f"Room {i}" for i in range(1100)]

    async def nodes(request: web.Request) -> web.Response:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        items = [{"id": 100 + i, "type": "room", "name": n} for i, n in enumerate(names)][
            offset : offset + limit
        ]
        return web.json_response(
            {"range": {"offset": offset, "limit": limit, "total": len(names)}, "items": items}
        )

    fake.route("GET", "/api/v4/nodes")(nodes)
    await start(fake)
    async with fake.client() as client:
        got = [n.name async for n in client.iter_children(9, types=["room", "folder"])]
        await client.find_child(9, "A b", types=["room"])
    assert got == names
    reqs = fake.api("/nodes")
    assert [r.query["offset"] for r in reqs[:3]] == ["0", "500", "1000"]
    assert {r.query["limit"] for r in reqs} == {"500"} and reqs[0].query["parent_id"] == "9"
    assert reqs[0].query["filter"] == "type:eq:room:folder"
    assert reqs[3].query["filter"] == "name:eq:A b|type:eq:room"


async def test_find_child_is_case_insensitive(fake: FakeDracoon) -> None:
    """DRACOON names are case-insensitive; an exact-case match wins over a case-folded one."""
    fake.json(
        "GET",
        "/api/v4/nodes",
        {
            "range": {"offset": 0, "limit": 500, "total": 2},
            "items": [
                {"id": 1, "type": "room", "name": "RECORDINGS"},
                {"id": 2, "type": "room", "name": "Recordings"},
            ],
        },
    )
    await start(fake)
    async with fake.client() as client:
        assert (await client.find_child(5, "recordings")).id == 1  # type: ignore[union-attr]
        assert (await client.find_child(5, "Recordings")).id == 2  # type: ignore[union-attr]
        assert await client.find_child(5, "other") is None


async def test_conflict_with_case_sensitive_filter_scans_children(fake: FakeDracoon) -> None:
    """If name:eq were case-sensitive, a 409 for 'team a' still finds the existing 'Team A'."""
    existing = {"id": 42, "type": "room", "name": "Team A", "isEncrypted": True}

    async def nodes(request: web.Request) -> web.Response:
        flt = request.query.get("filter", "")
        items = [existing] if not flt or flt == "name:eq:Team A" else []
        return web.json_response({"range": {"offset": 0, "limit": 500, "total": len(items)}, "items": items})

    fake.route("GET", "/api/v4/nodes")(nodes)
    fake.json("POST", "/api/v4/nodes/rooms", api_error(409, None, "Conflict"), status=409)
    fake.json("GET", "/api/v4/nodes/42", existing)
    await start(fake)
    async with fake.client() as client:
        room = await client.ensure_room_path(9, ["team a"])
    assert room.id == 42
    assert [r.query.get("filter") for r in fake.api("/nodes")] == ["name:eq:team a", "name:eq:team a", None]


async def test_missing_keys_loop_until_empty_and_set_in_batches(
    fake: FakeDracoon, keypair_a: TestKeyPair
) -> None:
    """Pages are followed until empty (total is a lower bound); keys go out <= 100 per POST."""
    pages = {0: 100, 100: 100, 200: 30}

    async def missing(request: web.Request) -> web.Response:
        offset = int(request.query["offset"])
        n = pages.get(offset, 0)
        items = [{"userId": offset + i, "fileId": 1} for i in range(n)]
        return web.json_response(
            {
                "range": {"offset": offset, "limit": 100, "total": 100},
                "items": items,
                "users": [],
                "files": [],
            }
        )

    posted: list[int] = []

    async def keys(request: web.Request) -> web.Response:
        posted.append(len((await request.json())["items"]))
        return web.Response(status=204)

    fake.route("GET", "/api/v4/nodes/missingFileKeys")(missing)
    fake.route("POST", "/api/v4/nodes/files/keys")(keys)
    await start(fake)
    fk = EncryptedFileKey(
        key=base64.b64encode(b"k" * 256).decode(),
        iv=base64.b64encode(b"i" * 12).decode(),
        tag=base64.b64encode(b"t" * 16).decode(),
        version=FileKeyVersion.A,
    )
    async with fake.client() as client:
        pages_seen = [p async for p in client.iter_missing_file_keys(room_id=4, limit=500)]
        await client.set_file_keys([FileKeyItem(file_id=1, user_id=u, file_key=fk) for u in range(250)])
    assert [len(p.items) for p in pages_seen] == [100, 100, 30]
    reqs = fake.api("/nodes/missingFileKeys")
    assert [r.query["offset"] for r in reqs] == ["0", "100", "200", "230"]
    assert {r.query["limit"] for r in reqs} == {"100"} and reqs[0].query["room_id"] == "4"
    assert posted == [100, 100, 50]


async def test_key_pairs_fall_back_for_old_servers(fake: FakeDracoon, keypair_a: TestKeyPair) -> None:
    """Without /keypairs (404, no -70020) the single /keypair is used; -70020 means no key pair."""
    fake.json("GET", "/api/v4/user/account/keypairs", {"code": 404, "message": "Not Found"}, status=404)
    fake.json("GET", "/api/v4/user/account/keypair", keypair_a.key_pair.to_json())
    await start(fake)
    async with fake.client() as client:
        pairs = await client.get_key_pairs()
        assert (await client.get_key_pair()).public_key_container == keypair_a.key_pair.public_key_container
    assert [p.public_key_container for p in pairs] == [keypair_a.key_pair.public_key_container]


async def test_no_key_pair_is_empty_list(fake: FakeDracoon) -> None:
    """A user without key pair yields [] and get_key_pair raises NotFound 'no_key_pair'."""
    fake.json("GET", "/api/v4/user/account/keypairs", api_error(404, -70020), status=404)
    await start(fake)
    async with fake.client() as client:
        assert await client.get_key_pairs() == []
        with pytest.raises(NotFound) as info:
            await client.get_key_pair()
    assert info.value.code == "no_key_pair"
