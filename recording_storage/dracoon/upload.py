"""Upload channels: the proxy variant (chunks through DRACOON) and the S3-direct variant.

Both are driven the same way by the transferer (``write`` ciphertext as it is produced, then
``complete`` with the file key), so the choice of variant stays inside the client.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import structlog

from ..crypto import EncryptedFileKey
from .errors import DracoonPermanentError, DracoonTransientError, NameConflict, NotFound
from .http import HttpCore, Retry
from .models import Node

__all__ = ["ProxyUpload", "Resolution", "Upload", "channel_request", "format_expiry"]

log = structlog.get_logger(__name__)

Resolution = Literal["fail", "overwrite", "autorename"]
_CANCEL_TIMEOUT = 30.0


def format_expiry(when: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``; a naive datetime is a programming error, not UTC by guess."""
    if when.tzinfo is None:
        raise ValueError("expire_at must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def channel_request(
    parent_id: int,
    name: str,
    size: int,
    *,
    expire_at: datetime | None,
    classification: int | None,
    notes: str | None,
    direct_s3: bool,
) -> dict[str, Any]:
    """The ``POST /nodes/files/uploads`` body; optional fields are left out, not sent as null."""
    body: dict[str, Any] = {"parentId": parent_id, "name": name, "size": size}
    if classification is not None:
        body["classification"] = classification
    if expire_at is not None:
        body["expiration"] = {"enableExpiration": True, "expireAt": format_expiry(expire_at)}
    if notes is not None:
        body["notes"] = notes
    if direct_s3:
        body["directS3Upload"] = True
    return body


def complete_body(
    file_key: EncryptedFileKey | None, resolution: Resolution, file_name: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"resolutionStrategy": resolution, "keepShareLinks": False}
    if file_name is not None:
        body["fileName"] = file_name
    if file_key is not None:
        body["fileKey"] = file_key.to_json()
    return body


class Upload:
    """One upload channel of ``size`` bytes.

    Failure handling (chosen so that no caller can leak a channel, bug 12 of the original):
    any exception out of ``write()`` or ``complete()`` -- including cancellation of the calling
    task -- cancels the channel on the server before it propagates. The one exception is
    ``NameConflict`` from ``complete()``: the data is on the server and only the name clashed,
    so the channel stays open and the caller may ``complete()`` again with another resolution
    or file name, or ``cancel()``. ``cancel()`` is idempotent, a no-op after success, and never
    raises. ``async with upload:`` cancels on exit unless the upload completed.

    ``repr`` and error messages show the channel id, never the upload URL (its token is a
    credential).
    """

    variant: str = "upload"

    def __init__(self, http: HttpCore, *, upload_id: str, name: str, size: int) -> None:
        self._http = http
        self.upload_id = upload_id
        self.name = name
        self.size = size
        self.received = 0
        self._state: Literal["open", "sealed", "done", "cancelled"] = "open"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(upload_id={self.upload_id!r}, size={self.size}, state={self._state!r})"

    @property
    def done(self) -> bool:
        return self._state == "done"

    async def __aenter__(self) -> Upload:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.cancel()

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; may await while earlier data is still being sent (backpressure)."""
        if self._state != "open":
            raise DracoonPermanentError(
                f"upload {self.upload_id}: write after complete/cancel", code="upload_closed"
            )
        if self.received + len(chunk) > self.size:
            await self._fail()
            raise DracoonPermanentError(
                f"upload {self.upload_id}: more data than the announced {self.size} bytes",
                code="size_mismatch",
            )
        self.received += len(chunk)
        try:
            await self._write(chunk)
        except BaseException:
            await self._fail()
            raise

    async def complete(
        self,
        file_key: EncryptedFileKey | None,
        *,
        resolution: Resolution = "fail",
        file_name: str | None = None,
    ) -> Node:
        """Finish the upload and return the new file node; NameConflict on a clash with ``fail``."""
        if self._state in ("done", "cancelled"):
            raise DracoonPermanentError(
                f"upload {self.upload_id}: already {self._state}", code="upload_closed"
            )
        if self.received != self.size:
            await self._fail()
            raise DracoonPermanentError(
                f"upload {self.upload_id}: {self.received} bytes written, {self.size} announced",
                code="size_mismatch",
            )
        self._state = "sealed"
        try:
            node = await self._complete(file_key, resolution, file_name)
        except NameConflict:
            raise
        except BaseException:
            await self._fail()
            raise
        self._state = "done"
        log.info(
            "dracoon_upload_completed",
            upload_id=self.upload_id,
            file_id=node.id,
            size=self.size,
            variant=self.variant,
        )
        return node

    async def cancel(self) -> None:
        """Delete the channel and its data on the server; logs instead of raising."""
        if self._state in ("done", "cancelled"):
            return
        self._state = "cancelled"
        await self._stop_background()
        template = "/nodes/files/uploads/{id}"
        try:
            await self._http.request(
                "DELETE", template, path=f"/nodes/files/uploads/{self.upload_id}", ok=(200, 204)
            )
            log.info("dracoon_upload_cancelled", upload_id=self.upload_id, variant=self.variant)
        except NotFound:
            pass  # already gone (completed meanwhile, or expired): nothing to clean up
        except Exception as exc:
            log.warning(
                "dracoon_upload_cancel_failed",
                upload_id=self.upload_id,
                error=str(exc),
                error_code=getattr(exc, "code", None),
            )

    async def _fail(self) -> None:
        # shield: a cancelled caller must still get its channel deleted; the timeout keeps a
        # dead server from holding the original error back for the whole retry budget.
        try:
            await asyncio.shield(asyncio.wait_for(self.cancel(), _CANCEL_TIMEOUT))
        except TimeoutError:
            log.warning("dracoon_upload_cancel_timeout", upload_id=self.upload_id)

    async def _stop_background(self) -> None:
        """Variants with background work stop it here before the channel is deleted."""

    async def _write(self, chunk: bytes) -> None:
        raise NotImplementedError

    async def _complete(
        self, file_key: EncryptedFileKey | None, resolution: Resolution, file_name: str | None
    ) -> Node:
        raise NotImplementedError


class ProxyUpload(Upload):
    """Chunks POSTed in order to the channel's upload URL, each with an inclusive Content-Range.

    DRACOON appends every chunk it receives, so a chunk whose POST failed cannot simply be sent
    again (it may have been stored): such a failure is ``upload_interrupted`` and the caller
    restarts the file. Only a request the server provably did not act on (429, no connection)
    is repeated. A 0-byte file sends no chunk at all and is completed directly.
    """

    variant = "proxy"

    def __init__(
        self, http: HttpCore, *, upload_id: str, upload_url: str, name: str, size: int, chunk_size: int
    ) -> None:
        super().__init__(http, upload_id=upload_id, name=name, size=size)
        self._url = upload_url
        self._chunk_size = chunk_size
        self._buf = bytearray()
        self._sent = 0

    async def _write(self, chunk: bytes) -> None:
        self._buf += chunk
        while len(self._buf) >= self._chunk_size:
            with memoryview(self._buf) as view:
                piece = bytes(view[: self._chunk_size])
            del self._buf[: self._chunk_size]
            await self._post(piece)

    async def _post(self, piece: bytes) -> None:
        start, end = self._sent, self._sent + len(piece) - 1
        headers = {
            "Content-Range": f"bytes {start}-{end}/{self.size}",
            "Content-Type": "application/octet-stream",
        }
        try:
            await self._http.request(
                "POST",
                "/uploads/{token}",
                url=self._url,
                auth=False,
                data=piece,
                headers=headers,
                ok=(200, 201),
                retry=Retry.REFUSED,
            )
        except DracoonTransientError as exc:
            raise DracoonTransientError(
                f"proxy upload {self.upload_id} interrupted at byte {start}: {exc}",
                code="upload_interrupted",
                status=exc.status,
                error_code=exc.error_code,
                retry_after=exc.retry_after,
            ) from exc
        self._sent += len(piece)

    async def _complete(
        self, file_key: EncryptedFileKey | None, resolution: Resolution, file_name: str | None
    ) -> Node:
        if self._buf:
            piece, self._buf = bytes(self._buf), bytearray()
            await self._post(piece)
        # Completing twice is not harmless (the first may have succeeded), so only a refused
        # request is repeated; anything else restarts the file, and resolution "fail" plus the
        # caller's existence check turn a lost success into "already there".
        reply = await self._http.request(
            "PUT",
            "/uploads/{token}",
            url=self._url,
            auth=False,
            json_body=complete_body(file_key, resolution, file_name),
            ok=(200, 201, 202),
            retry=Retry.REFUSED,
        )
        return Node.from_json(reply.json("PUT /uploads/{token}"), what="PUT /uploads/{token}")
