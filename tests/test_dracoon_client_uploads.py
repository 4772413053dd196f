"""Upload channels against a small fake server: exact wire behaviour of both upload variants.

Checks what the emulator is too lenient to check on its own: inclusive Content-Range values,
no auth header on token URLs, exact Content-Length (never chunked) on presigned PUTs, URLs
requested just in time, bounded parallelism, fresh URL on retry, and cancel on failure.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from recording_storage.dracoon import (
    DracoonClient,
    DracoonPermanentError,
    DracoonTransientError,
    NameConflict,
    ProxyUpload,
    S3DirectUpload,
    Upload,
)
from recording_storage.dracoon.s3upload import MIN_PART_SIZE
from tests.fixtures.fake_dracoon import FakeDracoon, api_error, start

TOKEN = "UPLOADTOKEN-0123456789"
CHUNK = 64 * 1024


@dataclass
class Channel:
    """Server-side view of the one upload channel the fake hands out."""

    chunks: list[tuple[str | None, bytes]] = field(default_factory=list)
    completes: list[dict[str, Any]] = field(default_factory=list)
    deletes: int = 0
    url_requests: list[dict[str, Any]] = field(default_factory=list)
    parts: dict[int, bytes] = field(default_factory=dict)
    part_headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    part_failures: dict[int, int] = field(default_factory=dict)
    chunk_statuses: list[int] = field(default_factory=list)
    complete_statuses: list[int] = field(default_factory=list)
    polls: list[dict[str, Any]] = field(default_factory=list)
    part_delay: float = 0.0
    chunk_gate: asyncio.Event | None = None  # chunk POSTs wait for it before answering
    chunks_waiting: int = 0
    chunk_held: asyncio.Event = field(default_factory=asyncio.Event)

    async def hold_chunk(self) -> None:
        if self.chunk_gate is not None:
            self.chunks_waiting += 1
            self.chunk_held.set()
            await self.chunk_gate.wait()
            self.chunks_waiting -= 1


async def serve_channel(fake: FakeDracoon, ch: Channel) -> Channel:
    """Install ``ch``'s routes (proxy mode) and start the fake; returns ``ch``."""
    install(fake, ch)
    await start(fake)
    return ch


async def open_plain(client: DracoonClient, parent_id: int, name: str, size: int) -> Upload:
    """An upload without expiry, classification or notes."""
    return await client.open_upload(parent_id, name, size, expire_at=None, classification=None, notes=None)


def install(fake: FakeDracoon, ch: Channel, *, s3: bool = False) -> None:
    """Register channel, proxy, S3 and cancel routes serving ``ch``."""
    node = {"id": 77, "type": "file", "name": "f.bin", "size": 0, "parentId": 1}

    async def create(request: web.Request) -> web.Response:
        ch.completes.clear()
        return web.json_response(
            {"uploadUrl": f"{fake.url}/api/v4/uploads/{TOKEN}", "uploadId": "up-1", "token": TOKEN},
            status=201,
        )

    async def chunk(request: web.Request) -> web.Response:
        body = await request.read()
        await ch.hold_chunk()
        if ch.chunk_statuses:
            status = ch.chunk_statuses.pop(0)
            return web.json_response(api_error(status), status=status, headers={"Retry-After": "0"})
        ch.chunks.append((request.headers.get("Content-Range"), body))
        return web.json_response({"size": len(body), "hash": hashlib.md5(body).hexdigest()}, status=201)

    async def complete(request: web.Request) -> web.Response:
        ch.completes.append(await request.json())
        if ch.complete_statuses:
            status = ch.complete_statuses.pop(0)
            return web.json_response(api_error(status, None, "Conflict"), status=status)
        size = sum(len(b) for _, b in ch.chunks) if not s3 else sum(len(b) for b in ch.parts.values())
        return web.json_response({**node, "size": size}, status=201)

    async def cancel(request: web.Request) -> web.Response:
        ch.deletes += 1
        return web.Response(status=204)

    async def urls(request: web.Request) -> web.Response:
        body = await request.json()
        ch.url_requests.append(body)
        n = body["firstPartNumber"]
        signed = f"{fake.url}/s3/bucket/obj?partNumber={n}&X-Amz-Signature=SIG%2F{len(ch.url_requests)}"
        return web.json_response({"urls": [{"url": signed, "partNumber": n}]}, status=201)

    async def part(request: web.Request) -> web.Response:
        n = int(request.query["partNumber"])
        assert request.query["X-Amz-Signature"].startswith("SIG/")  # query kept exactly as signed
        ch.part_headers.append(dict(request.headers))
        ch.in_flight += 1
        ch.max_in_flight = max(ch.max_in_flight, ch.in_flight)
        try:
            body = await request.read()
            await asyncio.sleep(ch.part_delay)
        finally:
            ch.in_flight -= 1
        if ch.part_failures.get(n, 0) > 0:
            ch.part_failures[n] -= 1
            return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>")
        ch.parts[n] = body
        return web.Response(status=200, headers={"ETag": f'"etag-{n}"'})

    async def s3_complete(request: web.Request) -> web.Response:
        ch.completes.append(await request.json())
        return web.Response(status=202)

    async def status(request: web.Request) -> web.Response:
        ch.polls.append({})
        if ch.complete_statuses:
            return web.json_response(
                {"status": "error", "errorDetails": {"code": ch.complete_statuses[0], "message": "Conflict"}}
            )
        if len(ch.polls) < 3:
            return web.json_response({"status": "finishing"})
        size = sum(len(b) for b in ch.parts.values())
        return web.json_response({"status": "done", "node": {**node, "size": size}})

    fake.route("POST", "/api/v4/nodes/files/uploads")(create)
    fake.route("POST", f"/api/v4/uploads/{TOKEN}", auth=False)(chunk)
    fake.route("PUT", f"/api/v4/uploads/{TOKEN}", auth=False)(complete)
    fake.route("DELETE", "/api/v4/nodes/files/uploads/up-1")(cancel)
    fake.route("POST", "/api/v4/nodes/files/uploads/up-1/s3_urls")(urls)
    fake.route("PUT", "/s3/bucket/obj", auth=False)(part)
    fake.route("PUT", "/api/v4/nodes/files/uploads/up-1/s3")(s3_complete)
    fake.route("GET", "/api/v4/nodes/files/uploads/up-1")(status)
    fake.json(
        "GET", "/api/v4/public/system/info", {"useS3Storage": s3, "s3EnforceDirectUpload": False}, auth=False
    )


def data_of(size: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(size))


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
async def test_proxy_chunks_have_inclusive_ranges(fake: FakeDracoon, size: int) -> None:
    """Chunks of upload_chunk_size, in order, 'bytes start-end/total' inclusive, no auth header."""
    ch = await serve_channel(fake, Channel())
    payload = data_of(size)
    async with fake.client(upload_mode="auto") as client:
        upload = await client.open_upload(1, "f.bin", size, expire_at=None, classification=2, notes="n")
        assert isinstance(upload, ProxyUpload)
        for i in range(0, size, 10_000):  # writes not aligned to chunks
            await upload.write(payload[i : i + 10_000])
        node = await upload.complete(None, resolution="fail", file_name="f.bin")
    assert node.id == 77 and node.size == size
    assert b"".join(b for _, b in ch.chunks) == payload
    expected, start_at = [], 0
    while start_at < size:
        end = min(start_at + CHUNK, size) - 1
        expected.append(f"bytes {start_at}-{end}/{size}")
        start_at = end + 1
    assert [r for r, _ in ch.chunks] == expected
    posts = [s for s in fake.seen if s.method == "POST" and s.path.endswith(TOKEN)]
    assert all("Authorization" not in s.headers for s in posts)
    assert all(s.headers["Content-Type"] == "application/octet-stream" for s in posts)
    assert ch.completes == [{"resolutionStrategy": "fail", "keepShareLinks": False, "fileName": "f.bin"}]
    assert ch.deletes == 0
    create = fake.api("/nodes/files/uploads")[0]
    assert "directS3Upload" not in create.body.decode() and '"classification": 2' in create.body.decode()


async def test_proxy_empty_file_posts_nothing(fake: FakeDracoon) -> None:
    """A 0-byte file is completed without any chunk (no invalid 'bytes 0--1/0' range)."""
    ch = await serve_channel(fake, Channel())
    async with fake.client(upload_mode="proxy") as client:
        upload = await open_plain(client, 1, "empty.bin", 0)
        await upload.write(b"")
        node = await upload.complete(None, resolution="autorename")
    assert ch.chunks == [] and node.size == 0 and len(ch.completes) == 1


async def test_failed_chunk_is_not_resent_and_channel_cancelled(fake: FakeDracoon) -> None:
    """A 5xx on a chunk POST may have been appended: upload_interrupted, one POST, channel deleted."""
    ch = await serve_channel(fake, Channel(chunk_statuses=[500]))
    async with fake.client(upload_mode="proxy") as client:
        upload = await open_plain(client, 1, "f.bin", CHUNK)
        await upload.write(data_of(CHUNK))  # the POST runs in the background
        with pytest.raises(DracoonTransientError) as info:
            await upload.complete(None)
    assert info.value.code == "upload_interrupted" and info.value.status == 500
    assert TOKEN not in str(info.value) and TOKEN not in repr(upload)
    assert len([s for s in fake.seen if s.method == "POST" and s.path.endswith(TOKEN)]) == 1
    assert ch.completes == [] and ch.deletes == 1


async def test_failed_chunk_stops_the_next_write(fake: FakeDracoon) -> None:
    """The writer learns of a failed background POST on its next write; no later chunk is sent."""
    ch = await serve_channel(fake, Channel(chunk_statuses=[500]))
    async with fake.client(upload_mode="proxy") as client:
        upload = await client.open_upload(
            1, "f.bin", 3 * CHUNK, expire_at=None, classification=None, notes=None
        )
        await upload.write(data_of(CHUNK))
        with pytest.raises(DracoonTransientError) as info:
            await upload.write(data_of(CHUNK))
    assert info.value.code == "upload_interrupted"
    assert len([s for s in fake.seen if s.method == "POST" and s.path.endswith(TOKEN)]) == 1
    assert ch.chunks == [] and ch.deletes == 1


async def test_one_chunk_post_in_flight_while_the_next_fills(fake: FakeDracoon) -> None:
    """write() returns while its chunk is still being POSTed, so encryption and download go on;
    the next full chunk waits for that POST, so at most one is in flight and order is kept."""
    ch = await serve_channel(fake, Channel(chunk_gate=asyncio.Event()))
    async with fake.client(upload_mode="proxy") as client:
        upload = await client.open_upload(
            1, "f.bin", 2 * CHUNK + 7, expire_at=None, classification=None, notes=None
        )
        await asyncio.wait_for(upload.write(data_of(CHUNK)), 5)  # returns with its POST unanswered
        await asyncio.wait_for(ch.chunk_held.wait(), 5)
        second = asyncio.create_task(upload.write(data_of(CHUNK)))
        await asyncio.sleep(0.2)
        assert not second.done() and ch.chunks_waiting == 1  # waits for the first POST
        assert ch.chunk_gate is not None
        ch.chunk_gate.set()
        await asyncio.wait_for(second, 5)
        await upload.write(data_of(7))
        await upload.complete(None)
    assert [r for r, _ in ch.chunks] == [
        f"bytes 0-{CHUNK - 1}/{2 * CHUNK + 7}",
        f"bytes {CHUNK}-{2 * CHUNK - 1}/{2 * CHUNK + 7}",
        f"bytes {2 * CHUNK}-{2 * CHUNK + 6}/{2 * CHUNK + 7}",
    ]
    assert b"".join(b for _, b in ch.chunks) == data_of(CHUNK) * 2 + data_of(7)


async def test_rate_limited_chunk_is_resent(fake: FakeDracoon) -> None:
    """A 429 means the chunk was not taken, so it is sent again (and only once more)."""
    ch = await serve_channel(fake, Channel(chunk_statuses=[429]))
    async with fake.client(upload_mode="proxy") as client:
        upload = await open_plain(client, 1, "f.bin", 10)
        await upload.write(data_of(10))
        await upload.complete(None)
    assert [r for r, _ in ch.chunks] == ["bytes 0-9/10"] and ch.deletes == 0


async def test_name_conflict_keeps_channel_for_second_complete(fake: FakeDracoon) -> None:
    """409 on complete leaves the channel open so the caller can complete under another rule."""
    ch = await serve_channel(fake, Channel(complete_statuses=[409]))
    async with fake.client(upload_mode="proxy") as client:
        upload = await open_plain(client, 1, "f.bin", 5)
        await upload.write(b"hello")
        with pytest.raises(NameConflict):
            await upload.complete(None, resolution="fail")
        assert ch.deletes == 0
        node = await upload.complete(None, resolution="autorename")
        await upload.cancel()  # no-op after success
    assert node.id == 77 and [c["resolutionStrategy"] for c in ch.completes] == ["fail", "autorename"]
    assert len(ch.chunks) == 1 and ch.deletes == 0


async def test_size_mismatch_cancels(fake: FakeDracoon) -> None:
    """Writing more than announced, or completing short, is a caller bug: permanent, channel deleted."""
    ch = await serve_channel(fake, Channel())
    async with fake.client(upload_mode="proxy") as client:
        upload = await open_plain(client, 1, "f.bin", 4)
        with pytest.raises(DracoonPermanentError) as info:
            await upload.write(b"12345")
        assert info.value.code == "size_mismatch" and ch.deletes == 1
        short = await open_plain(client, 1, "f.bin", 4)
        await short.write(b"12")
        with pytest.raises(DracoonPermanentError):
            await short.complete(None)
    assert ch.deletes == 2


async def test_context_manager_cancels_unfinished_upload(fake: FakeDracoon) -> None:
    """Leaving 'async with upload' without completing deletes the channel; cancel never raises."""
    ch = await serve_channel(fake, Channel())
    async with fake.client(upload_mode="proxy") as client:
        upload = await open_plain(client, 1, "f.bin", 4)
        with pytest.raises(RuntimeError):
            async with upload:
                raise RuntimeError("source broke")
        assert ch.deletes == 1
        other = await open_plain(client, 1, "f.bin", 4)
        await fake.server.close()  # type: ignore[union-attr]
        await other.cancel()  # server gone: logged, not raised


async def test_s3_parts_exact_length_just_in_time(fake: FakeDracoon) -> None:
    """Parts of max(chunk, 5 MiB), exact Content-Length, URL per part, ETags unquoted, polled to done."""
    ch = Channel()
    install(fake, ch, s3=True)
    await start(fake)
    size = 2 * MIN_PART_SIZE + 3
    payload = data_of(size)
    async with fake.client(upload_mode="auto", parts_in_flight=2) as client:
        upload = await open_plain(client, 1, "f.bin", size)
        assert isinstance(upload, S3DirectUpload)
        step = 3 * 1024**2 + 1
        for i in range(0, size, step):
            await upload.write(payload[i : i + step])
        node = await upload.complete(None, resolution="fail")
    assert node.size == size
    assert b"".join(ch.parts[n] for n in sorted(ch.parts)) == payload
    assert ch.url_requests == [
        {"size": MIN_PART_SIZE, "firstPartNumber": 1, "lastPartNumber": 1},
        {"size": MIN_PART_SIZE, "firstPartNumber": 2, "lastPartNumber": 2},
        {"size": 3, "firstPartNumber": 3, "lastPartNumber": 3},
    ]
    assert sorted(int(h["Content-Length"]) for h in ch.part_headers) == [3, MIN_PART_SIZE, MIN_PART_SIZE]
    assert all("Transfer-Encoding" not in h and "Authorization" not in h for h in ch.part_headers)
    assert ch.completes == [
        {
            "resolutionStrategy": "fail",
            "keepShareLinks": False,
            "fileName": "f.bin",
            "parts": [{"partNumber": n, "partEtag": f"etag-{n}"} for n in (1, 2, 3)],
        }
    ]
    assert len(ch.polls) == 3 and ch.deletes == 0
    assert '"directS3Upload": true' in fake.api("/nodes/files/uploads")[0].body.decode()


async def test_s3_parallelism_is_bounded(fake: FakeDracoon) -> None:
    """No more than parts_in_flight part PUTs run at once, and write() waits for a free slot."""
    ch = Channel(part_delay=0.05)
    install(fake, ch, s3=True)
    await start(fake)
    size = 5 * MIN_PART_SIZE
    async with fake.client(upload_mode="s3", parts_in_flight=2) as client:
        upload = await open_plain(client, 1, "f.bin", size)
        for _ in range(5):
            await upload.write(bytes(MIN_PART_SIZE))
        await upload.complete(None)
    assert ch.max_in_flight == 2 and len(ch.parts) == 5


async def test_s3_part_retried_with_fresh_url(fake: FakeDracoon) -> None:
    """A failed part PUT is repeated with a newly requested URL (idempotent per part number)."""
    ch = Channel(part_failures={1: 2})
    install(fake, ch, s3=True)
    await start(fake)
    async with fake.client(upload_mode="s3") as client:
        upload = await open_plain(client, 1, "f.bin", 10)
        await upload.write(data_of(10))
        await upload.complete(None)
    assert [r["firstPartNumber"] for r in ch.url_requests] == [1, 1, 1]
    assert ch.parts == {1: data_of(10)}


async def test_s3_part_failure_exhausted_cancels(fake: FakeDracoon) -> None:
    """When a part keeps failing the error surfaces as transient and the channel is deleted."""
    ch = Channel(part_failures={1: 99})
    install(fake, ch, s3=True)
    await start(fake)
    async with fake.client(upload_mode="s3", max_retries=1) as client:
        upload = await open_plain(client, 1, "f.bin", 10)
        await upload.write(data_of(10))
        with pytest.raises(DracoonTransientError) as info:
            await upload.complete(None)
    assert info.value.status == 503 and "SIG" not in str(info.value)
    assert ch.deletes == 1


async def test_s3_empty_file_uploads_one_empty_part(fake: FakeDracoon) -> None:
    """A 0-byte S3 upload still sends part 1 with Content-Length 0."""
    ch = Channel()
    install(fake, ch, s3=True)
    await start(fake)
    async with fake.client(upload_mode="s3") as client:
        upload = await open_plain(client, 1, "e.bin", 0)
        await upload.complete(None)
    assert ch.parts == {1: b""} and [h["Content-Length"] for h in ch.part_headers] == ["0"]
    assert ch.url_requests == [{"size": 0, "firstPartNumber": 1, "lastPartNumber": 1}]


async def test_s3_assembly_conflict_is_name_conflict(fake: FakeDracoon) -> None:
    """status 'error' with errorDetails code 409 while polling becomes NameConflict."""
    ch = Channel(complete_statuses=[409])
    install(fake, ch, s3=True)
    await start(fake)
    async with fake.client(upload_mode="s3") as client:
        upload = await open_plain(client, 1, "f.bin", 3)
        await upload.write(b"abc")
        with pytest.raises(NameConflict):
            await upload.complete(None)
        await upload.cancel()
    assert ch.deletes == 1
