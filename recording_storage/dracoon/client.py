"""``DracoonClient``: the DRACOON API subset the service needs, for one account.

One client per account and process (see ``pool.py``): ``async with`` opens one aiohttp session
(connection reuse, one token for all workers) and closes it. Request mechanics -- auth, retries,
error mapping -- live in ``http.py``; this module knows the endpoints and their meaning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType

import aiohttp
import structlog
from yarl import URL

from ..config import DracoonConfig
from ..instances import DracoonAccount
from .auth import Credentials, DracoonMetrics, TokenManager
from .errors import RETRY_AFTER_CAP
from .http import (
    RETRY_BACKOFF_BASE,
    RETRY_BACKOFF_MAX,
    HttpCore,
    Retry,
    check_base_url,
    make_ssl,
)
from .keys import KeyOps
from .models import SystemInfo, UserAccount, bad_response
from .nodes import NodeOps
from .s3upload import S3DirectUpload
from .upload import ProxyUpload, Upload, channel_request

__all__ = ["DracoonClient"]

log = structlog.get_logger(__name__)

_DOWNLOAD_CHUNK = 1024**2
# Resolved room names (parent id, name -> room id) are cached this long per client, so the
# jobs for one room do not repeat the lookups, and a room deleted meanwhile is found again soon.
ROOM_CACHE_TTL = 60.0
# An S3 direct upload's completion is polled for at least this long (DRACOON assembles the
# parts after the last PUT), however short dracoon.request_timeout is.
MIN_POLL_TIMEOUT = 60.0
_USER_AGENT = "recording-storage (aiohttp)"


class DracoonClient(NodeOps, KeyOps):
    """Talks to one DRACOON account; use as ``async with DracoonClient(account, settings) as c``.

    Construction validates the base URL (https, or http only to loopback) and the TLS settings
    and raises ``DracoonPermanentError`` when they are unusable; nothing touches the network
    before the first call.
    """

    def __init__(
        self,
        account: DracoonAccount,
        settings: DracoonConfig,
        *,
        metrics: DracoonMetrics | None = None,
        backoff_base: float = RETRY_BACKOFF_BASE,
        backoff_max: float = RETRY_BACKOFF_MAX,
        retry_after_cap: float = RETRY_AFTER_CAP,
        room_cache_ttl: float = ROOM_CACHE_TTL,
        poll_timeout: float | None = None,
    ) -> None:
        NodeOps.__init__(self, room_cache_ttl=room_cache_ttl)
        self.account = account
        self.settings = settings
        self.base_url = check_base_url(account.base_url, who=f"{account.login} ({account.domain})")
        self.who = f"{account.login} @ {self.base_url}"
        verify = settings.verify_tls if account.verify_tls is None else account.verify_tls
        self._ssl = make_ssl(settings, verify, who=self.who)
        self._metrics = metrics
        self._backoff = (backoff_base, backoff_max, retry_after_cap)
        self._poll_timeout = (
            poll_timeout if poll_timeout is not None else max(settings.request_timeout, MIN_POLL_TIMEOUT)
        )
        self._system_info: SystemInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._core: HttpCore | None = None

    def __repr__(self) -> str:
        return f"DracoonClient({self.who!r})"

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> DracoonClient:
        rt = self.settings.request_timeout
        timeout = aiohttp.ClientTimeout(
            total=None, connect=min(30.0, rt), sock_connect=min(30.0, rt), sock_read=rt
        )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": _USER_AGENT},
        )
        creds = Credentials(
            self.base_url,
            self.account.login,
            self.account.password,
            self.account.client_id,
            self.account.client_secret,
            form_encode=self.settings.client_auth_encoding == "form",
        )
        auth = TokenManager(session, creds, metrics=self._metrics)
        base, cap, ra_cap = self._backoff
        self._session = session
        self._core = HttpCore(
            session,
            self.base_url,
            auth,
            max_retries=self.settings.max_retries,
            backoff_base=base,
            backoff_max=cap,
            retry_after_cap=ra_cap,
            metrics=self._metrics,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._core is not None:
            self._core.auth.forget()
        if self._session is not None:
            await self._session.close()
        self._session = self._core = None

    async def ping_authenticated(self, *, retry: bool = True) -> UserAccount:
        """Log in if needed and read the account: proves URL, credentials and client are right.

        ``retry=False`` (health probes) makes one attempt, so the caller sees the real cause
        (connection refused, 503) at once instead of running out its own timeout in backoff.
        """
        reply = await self.http.request("GET", "/user/account", retry=Retry.ALWAYS if retry else Retry.NEVER)
        return UserAccount.from_json(reply.json("GET /user/account"))

    async def system_info(self) -> SystemInfo:
        """Public system info (cached for the client's life: it decides the upload variant)."""
        if self._system_info is None:
            reply = await self.http.request("GET", "/public/system/info", auth=False)
            self._system_info = SystemInfo.from_json(reply.json("GET /public/system/info"))
        return self._system_info

    # -- uploads -----------------------------------------------------------------------------
    async def open_upload(
        self,
        parent_id: int,
        name: str,
        size: int,
        *,
        expire_at: datetime | None = None,
        classification: int | None = None,
        notes: str | None = None,
        direct_s3: bool | None = None,
    ) -> Upload:
        """Open an upload channel; the variant follows ``direct_s3``, else config, else the server."""
        if direct_s3 is None:
            mode = self.settings.upload_mode
            if mode == "auto":
                info = await self.system_info()
                direct_s3 = info.use_s3_storage or info.s3_enforce_direct_upload
            else:
                direct_s3 = mode == "s3"
        body = channel_request(
            parent_id,
            name,
            size,
            expire_at=expire_at,
            classification=classification,
            notes=notes,
            direct_s3=direct_s3,
        )
        reply = await self.http.request("POST", "/nodes/files/uploads", json_body=body, ok=(200, 201))
        data = reply.json("POST /nodes/files/uploads")
        upload_id = data.get("uploadId") if isinstance(data, dict) else None
        upload_url = data.get("uploadUrl") if isinstance(data, dict) else None
        if not isinstance(upload_id, str | int) or (not direct_s3 and not isinstance(upload_url, str)):
            raise bad_response("POST /nodes/files/uploads", "no uploadId/uploadUrl")
        log.debug(
            "dracoon_upload_opened",
            upload_id=str(upload_id),
            parent_id=parent_id,
            bytes=size,
            variant="s3" if direct_s3 else "proxy",
        )
        chunk = self.settings.upload_chunk_size
        if direct_s3:
            return S3DirectUpload(
                self.http,
                upload_id=str(upload_id),
                name=name,
                size=size,
                chunk_size=chunk,
                parts_in_flight=self.settings.parts_in_flight,
                poll_timeout=self._poll_timeout,
            )
        assert isinstance(upload_url, str)
        return ProxyUpload(
            self.http,
            upload_id=str(upload_id),
            upload_url=self._absolute(upload_url),
            name=name,
            size=size,
            chunk_size=chunk,
        )

    def _absolute(self, url: str) -> str:
        """Upload/download URLs are absolute in practice; resolve a relative one against the base."""
        return str(URL(self.base_url + "/", encoded=True).join(URL(url, encoded=True)))

    async def download(self, file_id: int) -> AsyncIterator[bytes]:
        """The file's stored bytes (ciphertext for encrypted rooms), streamed."""
        what = "POST /nodes/files/{id}/downloads"
        reply = await self.http.request(
            "POST", "/nodes/files/{id}/downloads", path=f"/nodes/files/{file_id}/downloads", ok=(200, 201)
        )
        data = reply.json(what)
        url = data.get("downloadUrl") if isinstance(data, dict) else None
        if not isinstance(url, str):
            raise bad_response(what, "no downloadUrl")
        async with self.http.stream("GET", "/downloads/{token}", url=self._absolute(url)) as resp:
            async for chunk in resp.content.iter_chunked(_DOWNLOAD_CHUNK):
                yield chunk

    # -- keys --------------------------------------------------------------------------------
