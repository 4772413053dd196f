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
        self._buf = bytearray()  # written, not yet handed to a chunk POST or part PUT

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

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append ``chunk``; may await while earlier data is still being sent (backpressure).

        The bytes are copied before this returns, so the caller may reuse its buffer.
        """
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
            bytes=self.size,
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

    def _take(self, length: int) -> bytearray:
        """The first ``length`` buffered bytes, handed over as they are.

        Only the remainder (at most one write's worth) is copied out, never the whole chunk or
        part; the returned buffer is not touched again, so a send may keep using it.
        """
        taken, self._buf = self._buf, self._buf[length:]
        del taken[length:]
        return taken

    async def _stop_background(self) -> None:
        """Variants with background work stop it here before the channel is deleted."""

    async def _write(self, chunk: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    async def _complete(
        self, file_key: EncryptedFileKey | None, resolution: Resolution, file_name: str | None
    ) -> Node:
        raise NotImplementedError


class ProxyUpload(Upload):
    """Chunks POSTed in order to the channel's upload URL, each with an inclusive Content-Range.

    One POST runs in the background while the next chunk is assembled, so encryption and the
    download behind it never wait for the network; the writer waits only when the next chunk is
    full and the previous POST has not finished. Memory stays at two chunks: the one on the wire
    and the one filling up.

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
        self._queued = 0  # bytes handed to POSTs, finished or not: the next Content-Range start
        self._in_flight: asyncio.Task[None] | None = None

    async def _write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._in_flight is not None and self._in_flight.done():
            await self._drain()  # fail fast: the previous chunk's error, not one chunk later
        self._buf += chunk
        while len(self._buf) >= self._chunk_size:
            await self._launch(self._take(self._chunk_size))

    async def _launch(self, piece: bytearray) -> None:
        await self._drain()
        start, self._queued = self._queued, self._queued + len(piece)
        self._in_flight = asyncio.create_task(
            self._post(piece, start), name=f"dracoon-chunk-{self.upload_id}-{start}"
        )

    async def _drain(self) -> None:
        """Wait for the POST in flight; its failure is raised here, to the writer."""
        task = self._in_flight
        if task is None:
            return
        try:
            await task
        finally:
            self._in_flight = None

    async def _stop_background(self) -> None:
        task, self._in_flight = self._in_flight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _post(self, piece: bytearray, start: int) -> None:
        end = start + len(piece) - 1
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

    async def _complete(
        self, file_key: EncryptedFileKey | None, resolution: Resolution, file_name: str | None
    ) -> Node:
        if self._buf:
            await self._launch(self._take(len(self._buf)))
        await self._drain()
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
