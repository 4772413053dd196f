"""S3-direct upload: parts PUT in parallel to presigned URLs, then DRACOON assembles the file.

Each part's URL is requested just before its PUT (presigned URLs expire, and a long upload
would outlive a batch requested up front). A part PUT is idempotent, so transient failures are
retried with a fresh URL. At most ``parts_in_flight`` parts are in flight; ``write`` waits for a
free slot, so memory stays below ``part_size * (parts_in_flight + 1)`` plus one written chunk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from ..crypto import EncryptedFileKey
from .errors import DracoonTransientError, error_for_response
from .http import HttpCore, Retry
from .models import Node, bad_response
from .upload import Resolution, Upload, complete_body

__all__ = ["MIN_PART_SIZE", "MAX_PARTS", "S3DirectUpload", "part_size_for"]

log = structlog.get_logger(__name__)

MIN_PART_SIZE = 5 * 1024**2  # S3's minimum for every part but the last
MAX_PARTS = 10_000
_POLL_FIRST, _POLL_MAX = 0.1, 2.0
_PART_TEMPLATE = "<presigned S3 part URL>"


def part_size_for(size: int, chunk_size: int) -> int:
    """At least the configured chunk size and 5 MiB, and large enough to stay within 10 000 parts."""
    return max(chunk_size, MIN_PART_SIZE, -(-size // MAX_PARTS))


class S3DirectUpload(Upload):
    """See the module docstring; failure and cancel semantics are the ``Upload`` base class's."""

    variant = "s3"

    def __init__(
        self,
        http: HttpCore,
        *,
        upload_id: str,
        name: str,
        size: int,
        chunk_size: int,
        parts_in_flight: int,
        poll_timeout: float,
    ) -> None:
        super().__init__(http, upload_id=upload_id, name=name, size=size)
        self.part_size = part_size_for(size, chunk_size)
        self._slots = asyncio.Semaphore(parts_in_flight)
        self._poll_timeout = poll_timeout
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        self._base = f"/nodes/files/uploads/{upload_id}"

    # -- writing -------------------------------------------------------------------------
    async def _write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._raise_failed()
        self._buf += chunk
        while len(self._buf) >= self.part_size:
            await self._launch(self.part_size)

    async def _launch(self, length: int) -> None:
        await self._slots.acquire()  # backpressure: wait for a part to finish
        try:
            self._raise_failed()
        except BaseException:
            self._slots.release()
            raise
        data = self._take(length)
        number = self._next_part
        self._next_part += 1
        task = asyncio.create_task(self._put_part(number, data), name=f"dracoon-s3-part-{number}")
        self._tasks.add(task)
        task.add_done_callback(self._part_done)

    def _part_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()

    def _raise_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _put_part(self, number: int, data: bytearray) -> None:
        await self._http.call_with_retries(
            Retry.ALWAYS, f"PUT {_PART_TEMPLATE}", lambda: self._put_part_once(number, data)
        )

    async def _put_part_once(self, number: int, data: bytearray) -> None:
        """One attempt: a fresh presigned URL each time (see the module docstring), then the PUT."""
        url = await self._part_url(number, len(data))
        reply = await self._http.request(
            "PUT",
            _PART_TEMPLATE,
            url=url,
            auth=False,
            data=data,
            ok=(200, 201),
            retry=Retry.NEVER,
            headers={"Content-Type": "application/octet-stream"},
        )
        etag = reply.headers.get("ETag", "").strip().strip('"')
        if not etag:
            raise bad_response(f"PUT {_PART_TEMPLATE}", f"part {number} answered without an ETag")
        self._etags[number] = etag

    async def _part_url(self, number: int, size: int) -> str:
        what = "POST /nodes/files/uploads/{id}/s3_urls"
        reply = await self._http.request(
            "POST",
            "/nodes/files/uploads/{id}/s3_urls",
            path=f"{self._base}/s3_urls",
            ok=(200, 201),
            json_body={"size": size, "firstPartNumber": number, "lastPartNumber": number},
            retry=Retry.NEVER,
        )
        data = reply.json(what)
        urls = data.get("urls") if isinstance(data, dict) else None
        for item in urls if isinstance(urls, list) else []:
            if (
                isinstance(item, dict)
                and item.get("partNumber") == number
                and isinstance(item.get("url"), str)
            ):
                url: str = item["url"]
                return url
        raise bad_response(what, f"no URL for part {number}")

    async def _stop_background(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- completing ----------------------------------------------------------------------
    async def _complete(
        self, file_key: EncryptedFileKey | None, resolution: Resolution, file_name: str | None
    ) -> Node:
        if self._buf or self._next_part == 1:
            await self._launch(len(self._buf))  # the last (maybe empty) part: S3 needs at least one
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self._raise_failed()
        parts = [{"partNumber": n, "partEtag": self._etags[n]} for n in sorted(self._etags)]
        body = complete_body(file_key, resolution, file_name or self.name)
        body["parts"] = parts
        await self._request_assembly(body)
        return await self._poll()

    async def _request_assembly(self, body: dict[str, Any]) -> None:
        """PUT .../s3 (202). If the answer is lost, the status tells whether it arrived."""
        await self._http.call_with_retries(
            Retry.ALWAYS, "PUT /nodes/files/uploads/{id}/s3", lambda: self._request_assembly_once(body)
        )

    async def _request_assembly_once(self, body: dict[str, Any]) -> None:
        try:
            await self._http.request(
                "PUT",
                "/nodes/files/uploads/{id}/s3",
                path=f"{self._base}/s3",
                json_body=body,
                ok=(200, 201, 202),
                retry=Retry.NEVER,
            )
        except DracoonTransientError:
            if await self._status_raw() != "transfer":
                return  # the earlier PUT did arrive: go on polling
            raise

    async def _status_raw(self) -> str | None:
        try:
            data = await self._get_status()
        except DracoonTransientError:
            return "transfer"
        status = data.get("status")
        return status if isinstance(status, str) else None

    async def _get_status(self) -> dict[str, Any]:
        what = "GET /nodes/files/uploads/{id}"
        reply = await self._http.request("GET", "/nodes/files/uploads/{id}", path=self._base)
        data = reply.json(what)
        if not isinstance(data, dict):
            raise bad_response(what, "status is not a JSON object")
        return data

    async def _poll(self) -> Node:
        what = "GET /nodes/files/uploads/{id}"
        deadline = time.monotonic() + self._poll_timeout
        delay = _POLL_FIRST
        while True:
            data = await self._get_status()
            status = data.get("status")
            if status == "done":
                return Node.from_json(data.get("node"), what=what)
            if status == "error":
                details = data.get("errorDetails")
                details = details if isinstance(details, dict) else {}
                code = details.get("code")
                status_code = code if isinstance(code, int) and not isinstance(code, bool) else 500
                # A clash with resolution "fail" arrives here as code 409 -> NameConflict.
                raise error_for_response(status_code, details, what=f"S3 upload {self.upload_id} assembly")
            if time.monotonic() + delay > deadline:
                raise DracoonTransientError(
                    f"S3 upload {self.upload_id} still {status!r} after {self._poll_timeout:g}s",
                    code="upload_timeout",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
