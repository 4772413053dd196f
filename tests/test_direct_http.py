"""DirectHttp against a real socket server that answers the way real servers do, odd ones too.

Each test scripts the server's answer bytes for each request; the client must land exactly the
body in the caller's buffer, reuse a connection only when that is safe, and turn every broken
answer into an error the S3 source classifies (aiohttp.ClientError or TimeoutError).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
from asyncio.trsock import TransportSocket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import aiohttp
import pytest

from recording_storage.direct_http import DirectHttp, _Protocol
from tests.fixtures.servers import self_signed_cert, server_ssl

Script = Callable[[int, bytes], list[bytes | float | None]]  # (request number, request) -> actions


@dataclass
class ScriptedServer:
    """Per request: a list of byte strings to send, floats to sleep, None to close the socket."""

    script: Script
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    request = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(request)
                for action in self.script(len(self.requests), request):
                    if action is None:
                        return
                    if isinstance(action, float):
                        await asyncio.sleep(action)
                        continue
                    writer.write(action)
                    await writer.drain()
        finally:
            writer.close()


async def running(scripted: ScriptedServer, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls is not None else "http"
    scripted.url = f"{scheme}://127.0.0.1:{port}/bucket/key?X-Amz-Signature=secret"
    return server


def answer(status: int, body: bytes, *headers: str, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def fetch(http: DirectHttp, url: str, size: int) -> tuple[int, bytes]:
    """GET ``url`` into a fresh buffer of ``size`` bytes: (body bytes landed, the buffer)."""
    buffer = bytearray(size)
    result = await http.request("GET", url, {}, memoryview(buffer))
    return result.length, bytes(buffer)


def client(read_timeout: float = 5.0, cafile: Path | None = None) -> DirectHttp:
    return DirectHttp(limit=4, connect_timeout=5.0, read_timeout=read_timeout,
                      cafile=str(cafile) if cafile is not None else None)


async def test_body_lands_in_the_buffer_and_the_connection_is_reused() -> None:
    body = os.urandom(300_000)
    scripted = ScriptedServer(lambda n, req: [answer(206, body, 'ETag: "e"', reason="Partial Content")])
    async with await running(scripted), client() as http:
        for _ in range(3):
            buffer = bytearray(len(body))
            result = await http.request("GET", scripted.url, {"Range": "bytes=0-299999"}, memoryview(buffer))
            assert (result.status, result.length, result.headers["etag"]) == (206, len(body), '"e"')
            assert buffer == body
    assert scripted.connections == 1
    first = scripted.requests[0].decode()
    assert first.startswith("GET /bucket/key?X-Amz-Signature=secret HTTP/1.1\r\n")
    assert "Range: bytes=0-299999\r\n" in first and "Host: 127.0.0.1:" in first


async def test_head_and_body_split_across_packets() -> None:
    body = os.urandom(10_000)
    raw = answer(200, body)
    pieces: list[bytes | float | None] = [raw[:7], 0.01, raw[7:40], 0.01, raw[40:5000], 0.01, raw[5000:]]
    scripted = ScriptedServer(lambda n, req: pieces)
    async with await running(scripted), client() as http:
        buffer = bytearray(len(body))
        result = await http.request("GET", scripted.url, {}, memoryview(buffer))
    assert result.length == len(body) and buffer == body


async def test_chunked_body_is_decoded() -> None:
    body = os.urandom(70_000)
    framed = b"".join(f"{n:x};ext=1\r\n".encode() + body[i : i + n] + b"\r\n"
                      for i, n in ((0, 1), (1, 65_535), (65_536, 4_464)))
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    trailer = b"0\r\nX-Trailer: t\r\n\r\n"
    scripted = ScriptedServer(lambda n, req: [head + framed[:30_000], 0.01, framed[30_000:] + trailer])
    async with await running(scripted), client() as http:
        for _ in range(2):
            assert await fetch(http, scripted.url, len(body)) == (len(body), body)
    assert scripted.connections == 1


async def test_body_delimited_by_close_and_an_over_long_one() -> None:
    body = os.urandom(5_000)
    scripted = ScriptedServer(lambda n, req: [b"HTTP/1.0 200 OK\r\n\r\n" + body, None])
    async with await running(scripted), client() as http:
        buffer = bytearray(len(body))
        assert (await http.request("GET", scripted.url, {}, memoryview(buffer))).length == len(body)
        assert buffer == body
        short = bytearray(1_000)
        result = await http.request("GET", scripted.url, {}, memoryview(short))
    assert result.length == len(body)  # the caller sees more than it asked for
    assert short == body[:1_000]
    assert scripted.connections == 2


async def test_content_length_beyond_the_buffer_is_not_read_and_not_reused() -> None:
    body = os.urandom(50_000)
    scripted = ScriptedServer(lambda n, req: [answer(200, body)])
    async with await running(scripted), client() as http:
        buffer = bytearray(1_000)
        result = await http.request("GET", scripted.url, {}, memoryview(buffer))
        assert (result.status, result.length, result.headers["content-length"]) == (200, 0, "50000")
        assert buffer == bytes(1_000)
        again = bytearray(len(body))
        assert (await http.request("GET", scripted.url, {}, memoryview(again))).length == len(body)
    assert again == body and scripted.connections == 2


async def test_error_answer_keeps_its_body_and_its_connection() -> None:
    error = b"<Error><Code>PreconditionFailed</Code><Message>At least one failed</Message></Error>"
    body = os.urandom(1_000)
    scripted = ScriptedServer(
        lambda n, req: [answer(412, error, reason="Precondition Failed") if n == 1 else answer(200, body)])
    async with await running(scripted), client() as http:
        buffer = bytearray(len(body))
        result = await http.request("GET", scripted.url, {}, memoryview(buffer))
        assert (result.status, result.reason, result.length) == (412, "Precondition Failed", 0)
        assert result.body == error
        assert buffer == bytes(len(body))  # an error body never lands in the caller's buffer
        assert (await http.request("GET", scripted.url, {}, memoryview(buffer))).length == len(body)
    assert scripted.connections == 1


async def test_connection_closed_while_idle_is_replaced_once() -> None:
    """The race every keep-alive client meets: the server drops an idle connection just as the
    next request goes out on it. Nothing of an answer arrived, so the GET is sent again, once."""
    body = os.urandom(2_000)
    scripted = ScriptedServer(lambda n, req: [None] if n == 2 else [answer(200, body)])
    async with await running(scripted), client() as http:
        for _ in range(2):
            buffer = bytearray(len(body))
            assert (await http.request("GET", scripted.url, {}, memoryview(buffer))).length == len(body)
            assert buffer == body
    assert len(scripted.requests) == 3 and scripted.connections == 2


async def test_an_answer_saying_connection_close_ends_the_connection() -> None:
    """Even when the server then keeps the socket open: it said it would not take another request."""
    body = os.urandom(2_000)
    scripted = ScriptedServer(lambda n, req: [answer(200, body, "Connection: close")])
    async with await running(scripted), client() as http:
        for _ in range(3):
            buffer = bytearray(len(body))
            assert (await http.request("GET", scripted.url, {}, memoryview(buffer))).length == len(body)
    assert len(scripted.requests) == 3 and scripted.connections == 3


@pytest.mark.parametrize("cut", [0, 10, 500], ids=["before-head", "in-head", "in-body"])
async def test_connection_lost_mid_answer_is_a_client_error(cut: int) -> None:
    raw = answer(200, os.urandom(1_000))
    scripted = ScriptedServer(lambda n, req: [raw[:cut], None])
    async with await running(scripted), client() as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.request("GET", scripted.url, {}, memoryview(bytearray(1_000)))


async def test_stalled_answer_times_out() -> None:
    raw = answer(200, os.urandom(1_000))
    scripted = ScriptedServer(lambda n, req: [raw[:200], 5.0, raw[200:]])
    async with await running(scripted), client(read_timeout=0.2) as http:
        with pytest.raises(TimeoutError):
            await http.request("GET", scripted.url, {}, memoryview(bytearray(1_000)))


async def test_garbage_answer_is_a_client_error() -> None:
    scripted = ScriptedServer(lambda n, req: [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", None])
    async with await running(scripted), client() as http:
        with pytest.raises(aiohttp.ClientPayloadError, match="status line"):
            await http.request("GET", scripted.url, {}, memoryview(bytearray(10)))


async def test_refused_connection_is_a_client_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with client() as http:
        with pytest.raises(aiohttp.ClientConnectionError, match=f"127.0.0.1:{port}"):
            await http.request("GET", f"http://127.0.0.1:{port}/k", {}, memoryview(bytearray(10)))


async def test_cancelled_get_drops_its_connection() -> None:
    body = os.urandom(1_000)
    stall: list[bytes | float | None] = [answer(200, body)[:100], 5.0]
    scripted = ScriptedServer(lambda n, req: stall if n == 1 else [answer(200, body)])
    async with await running(scripted), client() as http:
        task = asyncio.create_task(http.request("GET", scripted.url, {}, memoryview(bytearray(1_000))))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        buffer = bytearray(1_000)
        assert (await http.request("GET", scripted.url, {}, memoryview(buffer))).length == 1_000
    assert buffer == body and scripted.connections == 2


# -- receive batching (SO_RCVLOWAT) ---------------------------------------------------------------

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="receive batching is Linux-only")


def trickled(raw: bytes, piece: int, pause: float) -> list[bytes | float | None]:
    """``raw`` sent in ``piece``-byte writes with ``pause`` seconds between them."""
    actions: list[bytes | float | None] = []
    for first in range(0, len(raw), piece):
        actions += [raw[first:first + piece], pause]
    return actions


@linux_only
async def test_a_body_arriving_in_small_pieces_is_received_in_few_large_reads() -> None:
    """Each wake-up of the reader costs an event-loop turn, a syscall and (on loopback) the
    window-update ACK's processing: a body is read in batches, not packet by packet."""
    body = os.urandom(2 * 1024 * 1024)
    scripted = ScriptedServer(lambda n, req: trickled(answer(200, body), 16 * 1024, 0.001))
    with mock.patch.object(_Protocol, "buffer_updated", autospec=True,
                           side_effect=_Protocol.buffer_updated) as reads:
        async with await running(scripted), client() as http:
            assert await fetch(http, scripted.url, len(body)) == (len(body), body)
    # 128 writes of 16 KiB; read in batches of 256 KiB, the last 64 KiB (the slack) unbatched.
    assert reads.call_count <= 8 + 4 + 2, reads.call_count


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_after_a_batched_body_the_next_small_answer_arrives_at_once(tls: bool, tmp_path: Path) -> None:
    """The body's end and the next answer on the same connection are read without waiting for
    more bytes than they have: no wait for the read timeout, no reliance on the server closing."""
    cert, key = self_signed_cert(tmp_path)
    big, small = os.urandom(3 * 1024 * 1024 + 12_345), os.urandom(100)
    scripted = ScriptedServer(lambda n, req: [answer(200, big if n == 1 else small)])
    async with await running(scripted, server_ssl(cert, key) if tls else None), \
            client(read_timeout=30.0, cafile=cert) as http:
        async with asyncio.timeout(5):
            assert await fetch(http, scripted.url, len(big)) == (len(big), big)
            assert await fetch(http, scripted.url, len(small)) == (len(small), small)
    assert scripted.connections == 1


@linux_only
async def test_a_trickle_slower_than_a_batch_per_read_timeout_is_no_timeout() -> None:
    """Bytes held back by the kernel until a batch is full are still progress: a slow store that
    sends less than a batch per read timeout is read byte by byte, not failed."""
    body = os.urandom(512 * 1024)
    scripted = ScriptedServer(lambda n, req: trickled(answer(200, body), 16 * 1024, 0.03))
    async with await running(scripted), client(read_timeout=0.25) as http:
        assert await fetch(http, scripted.url, len(body)) == (len(body), body)


async def test_a_connection_cut_while_batching_fails_at_once() -> None:
    """The server's close wakes the reader whatever the batch still lacks."""
    raw = answer(200, os.urandom(1024 * 1024))
    scripted = ScriptedServer(lambda n, req: [raw[:300_000], None])
    async with await running(scripted), client(read_timeout=30.0) as http:
        async with asyncio.timeout(5):
            with pytest.raises(aiohttp.ServerDisconnectedError, match="after 299"):
                await http.request("GET", scripted.url, {}, memoryview(bytearray(1024 * 1024)))


@linux_only
async def test_a_connection_whose_mark_cannot_be_lowered_is_not_reused() -> None:
    """Should the kernel refuse to lower the mark again, the connection is not kept: the next
    answer's head on it would wait for bytes that never come."""
    body = os.urandom(1024 * 1024)
    scripted = ScriptedServer(lambda n, req: [answer(200, body)])
    real = TransportSocket.setsockopt

    def refuse_one(self: TransportSocket, level: int, name: int, value: int) -> None:
        if name == socket.SO_RCVLOWAT and value == 1:
            raise OSError(22, "Invalid argument")
        real(self, level, name, value)

    with mock.patch.object(TransportSocket, "setsockopt", refuse_one):
        async with await running(scripted), client() as http:
            async with asyncio.timeout(5):
                for _ in range(2):
                    assert await fetch(http, scripted.url, len(body)) == (len(body), body)
    assert scripted.connections == 2


async def test_a_stall_while_batching_still_times_out() -> None:
    """Batching never hides a dead connection: nothing queued for a read timeout fails as before."""
    raw = answer(200, os.urandom(1024 * 1024))
    scripted = ScriptedServer(lambda n, req: [raw[:300_000], 5.0, raw[300_000:]])
    async with await running(scripted), client(read_timeout=0.3) as http:
        with pytest.raises(TimeoutError):
            await http.request("GET", scripted.url, {}, memoryview(bytearray(1024 * 1024)))


async def test_a_tls_answer_arriving_in_several_records_lands_intact(tmp_path: Path) -> None:
    """asyncio's TLS reader fills the head's buffer record by record; every record must land in
    it (a bytearray handed out there was sliced into copies, and the body came out with holes)."""
    cert, key = self_signed_cert(tmp_path)
    body = os.urandom(200_000)  # head and body in one write: about a dozen 16 KiB records
    scripted = ScriptedServer(lambda n, req: [answer(200, body)])
    async with await running(scripted, server_ssl(cert, key)), client(cafile=cert) as http:
        assert await fetch(http, scripted.url, len(body)) == (len(body), body)
