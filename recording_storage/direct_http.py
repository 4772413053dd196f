"""HTTP/1.1 requests whose answer body is received straight into the caller's buffer.

The S3 download leg moves every byte of every recording, and through botocore and aiohttp each
byte was copied three times in this process (socket -> parser -> stream reader -> our range
buffer) into freshly allocated memory, whose first touch costs a page fault per 4 KiB: 0.85
CPU-s per GiB against rclone's 0.30 on the same store (``make bench``, ``pipeline_cpu``). Here
the socket is read with ``recv_into`` (asyncio's buffered protocol) into the buffer the caller
hands over, which the caller reuses: one copy, the kernel's, and no new pages.

The same client carries the object's small requests (HEAD, DELETE): through botocore each
cost about 1.5 ms of CPU, three times what signing and sending it here costs, and a small job
makes four of them.

This module only moves bytes. The request is signed elsewhere (the S3 source presigns it, with
credentials, endpoint rules and addressing style as botocore resolves them), and the answer's
status and headers are judged by the caller. What it does itself: one keep-alive connection per
request at a time, pooled per host; status line and headers; a body sized by Content-Length,
chunked, or delimited by the connection's end; a read timeout between bytes; an error body kept
(capped) for the caller's message. Failures to connect or read are ``aiohttp.ClientError``
subclasses or ``TimeoutError``, the families ``aws.translate_error`` already classifies.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import platform
import re
import socket
import ssl
import sys
import termios
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

__all__ = ["DirectAnswer", "DirectHttp"]

_HEAD_LIMIT = 64 * 1024  # status line and headers; S3 answers use well under 4 KiB
_ERROR_BODY_LIMIT = 64 * 1024  # an error document longer than this is cut (and the connection dropped)
_SCRATCH = 64 * 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
# Receive batching: while a body streams in, the kernel wakes the reader only once this many
# bytes are queued (SO_RCVLOWAT). Each wake-up costs an event-loop turn and a recv, and every
# recv may send a window update: halving them cut the download leg's CPU by 10-20% on loopback,
# where each range arrives in ~0.5 MiB reads; over a real network reads are smaller and the
# saving larger. Linux 4.18+ only: from there on, setting the option also grows the receive
# buffer to hold a batch (an older kernel's window could stay smaller than the batch, and the
# sender would stop at a full window while the reader waits for more); elsewhere the option's
# effect on polling differs or is absent (gVisor, for one, reports an old kernel).
_BATCH = 256 * 1024
# Never wait for an answer's last bytes: over TLS the socket carries more bytes than the body,
# but part of a TLS record (at most 16 KiB) may already have been read off the socket into
# asyncio's TLS buffer, not yet delivered: the kernel will never see those bytes again.
_BATCH_SLACK = 64 * 1024


def _linux_at_least(major: int, minor: int) -> bool:
    if sys.platform != "linux":
        return False
    numbers = re.match(r"(\d+)\.(\d+)", platform.release())
    return numbers is not None and (int(numbers[1]), int(numbers[2])) >= (major, minor)


_CAN_BATCH = hasattr(socket, "SO_RCVLOWAT") and _linux_at_least(4, 18)


@dataclass(frozen=True)
class DirectAnswer:
    """A response: ``length`` body bytes were written to the buffer (2xx) or kept in ``body``."""

    status: int
    reason: str
    headers: Mapping[str, str]  # names in lower case; a repeated header keeps its last value
    length: int
    body: bytes = b""


class _Protocol(asyncio.BufferedProtocol):
    """One connection's reader: a state machine fed by ``recv_into``.

    ``head``: bytes go to a scratch buffer until the blank line ends the headers. ``body``:
    straight into the caller's view, never past the announced length. ``chunked`` and
    ``error``: through the scratch buffer (copied; rare, small or both). ``until_close``: into
    the view until the server closes the connection.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        # Handed out as a view: asyncio's TLS reader fills the buffer in several reads, the later
        # ones into ``buf[offset:]``, and a slice of a bytearray is a copy that it would fill instead.
        self._scratch = memoryview(bytearray(_SCRATCH))
        self._waiter: asyncio.Future[DirectAnswer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self.received_any = False
        self._socket: socket.socket | None = None
        self._batching = _CAN_BATCH
        self._low_water = 1  # the socket's SO_RCVLOWAT
        self._reset(memoryview(bytearray()))

    # -- driven by DirectHttp ------------------------------------------------------------------

    def start(self, request: bytes, into: memoryview, *, bodiless: bool) -> asyncio.Future[DirectAnswer]:
        """Send ``request``; ``bodiless``: its answer has no body whatever it says (HEAD)."""
        assert self.transport is not None and self._waiter is None
        self._reset(into)
        self._bodiless = bodiless
        self._waiter = self._loop.create_future()
        self.received_any = False
        self._last_read = self._loop.time()
        self._timer = self._loop.call_later(self._read_timeout, self._check_timeout)
        self.transport.write(request)
        return self._waiter

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed and self.transport is not None \
            and not self.transport.is_closing()

    def _reset(self, into: memoryview) -> None:
        self._state = "head"
        self._into = into
        self._got = 0
        self._want = 0
        self._head = bytearray()
        self._status = 0
        self._reason = ""
        self._headers: dict[str, str] = {}
        self._error = bytearray()
        self._chunk_left = 0
        self._pending = bytearray()  # chunked framing not yet parsed
        self._keep_alive = False
        self._bodiless = False
        self._trickling = False  # this answer arrives slower than a batch per read timeout

    # -- asyncio.BufferedProtocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._socket = transport.get_extra_info("socket")  # the TCP socket, under TLS too

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == "body":
            return self._into[self._got : self._want]
        if self._state == "until_close" and self._got < len(self._into):
            return self._into[self._got :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self._last_read = self._loop.time()
        self.received_any = True
        if self._state == "body":
            self._got += nbytes
            if self._got >= self._want:
                self._finish()
            else:
                self._batch()
        elif self._state == "until_close" and self._got < len(self._into):
            self._got += nbytes
        else:
            self._feed(self._scratch[:nbytes])

    def eof_received(self) -> bool | None:
        self._end(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end(exc)

    # -- parsing ------------------------------------------------------------------------------

    def _feed(self, data: memoryview) -> None:
        if self._waiter is None or self._waiter.done():
            if len(data):  # bytes nobody asked for: the connection is out of step
                self._keep_alive = False
                self._close()
            return
        if self._state == "head":
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _HEAD_LIMIT:
                    self._fail(aiohttp.ClientPayloadError("response headers too long"))
                return
            rest = memoryview(self._head)[end + 4 :]
            try:
                self._parse_head(bytes(self._head[:end]))
            except ValueError as exc:
                self._fail(aiohttp.ClientPayloadError(f"unreadable response head: {exc}"))
                return
            self._feed_body(bytes(rest))
        else:
            self._feed_body(data)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise ValueError(f"status line {lines[0][:80]!r}")
        self._status, self._reason = int(status), reason.strip()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("header line without ':'")
            self._headers[name.strip().lower()] = value.strip()
        connection = self._headers.get("connection", "").lower()
        self._keep_alive = version == "HTTP/1.1" and "close" not in connection
        ok = 200 <= self._status < 300
        if self._bodiless or self._status in (204, 304) or self._status < 200:
            self._state = "done"  # RFC 9112 6.3: no body, whatever Content-Length says
        elif "chunked" in self._headers.get("transfer-encoding", "").lower():
            self._state = "chunked" if ok else "error_chunked"
        elif "content-length" in self._headers:
            self._want = int(self._headers["content-length"])
            if self._want < 0:
                raise ValueError("negative Content-Length")
            if not ok:
                self._state = "error"
            elif self._want > len(self._into):
                # Longer than the caller can hold: answered with the head alone, the
                # connection dropped (its unread body would poison the next request).
                self._keep_alive = False
                self._state = "done"
            else:
                self._state = "body"
        else:
            self._keep_alive = False
            self._state = "until_close" if ok else "error_until_close"

    def _feed_body(self, data: bytes | memoryview) -> None:
        state = self._state
        if state == "done":
            self._finish()
        elif state == "body":
            take = min(len(data), self._want - self._got)
            self._into[self._got : self._got + take] = data[:take]
            self._got += take
            if take < len(data):
                self._keep_alive = False  # more than announced: never reuse this connection
            if self._got >= self._want:
                self._finish()
            else:
                self._batch()
        elif state == "until_close":
            take = min(len(data), len(self._into) - self._got)
            self._into[self._got : self._got + take] = data[:take]
            self._got += len(data)  # counted past the view: the caller sees an over-long body
        elif state in ("error", "error_until_close"):
            self._error += data[: max(0, _ERROR_BODY_LIMIT - len(self._error))]
            self._got += len(data)
            if state == "error" and self._got >= self._want:
                self._finish()
            elif len(self._error) >= _ERROR_BODY_LIMIT:
                self._keep_alive = False
                self._finish()
        else:  # chunked, error_chunked
            self._pending += data
            self._feed_chunks()

    def _feed_chunks(self) -> None:
        while self._waiter is not None and not self._waiter.done():
            if self._chunk_left > 0:
                piece = bytes(self._pending[: self._chunk_left])
                if not piece:
                    return
                del self._pending[: len(piece)]
                self._chunk_left -= len(piece)
                if self._state == "chunked":
                    take = max(0, min(len(piece), len(self._into) - self._got))
                    self._into[self._got : self._got + take] = piece[:take]
                else:
                    self._error += piece[: max(0, _ERROR_BODY_LIMIT - len(self._error))]
                self._got += len(piece)
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the CRLF after the chunk data
                continue
            if self._chunk_left == -2:
                if len(self._pending) < 2:
                    return
                del self._pending[:2]
                self._chunk_left = 0
                continue
            line_end = self._pending.find(b"\r\n")
            if line_end < 0:
                if len(self._pending) > _HEAD_LIMIT:
                    self._fail(aiohttp.ClientPayloadError("chunk size line too long"))
                return
            line = bytes(self._pending[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                self._fail(aiohttp.ClientPayloadError("unreadable chunk size"))
                return
            if size == 0:
                # Trailers (rare) end with a blank line; wait for it, then the answer is whole.
                trailer_end = self._pending.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return
                del self._pending[: trailer_end + 4]
                if self._pending:
                    self._keep_alive = False
                self._finish()
                return
            del self._pending[: line_end + 2]
            self._chunk_left = size

    # -- receive batching ---------------------------------------------------------------------

    def _batch(self) -> None:
        """Let the kernel gather the body's next bytes: up to ``_BATCH``, never its last ones."""
        if self._batching and not self._trickling:
            self._set_low_water(max(1, min(_BATCH, self._want - self._got - _BATCH_SLACK)))

    def _set_low_water(self, size: int) -> None:
        sock = self._socket
        if size == self._low_water or sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
            self._low_water = size
        except OSError:
            self._batching = False
            # A mark that cannot be lowered again would hold back the next answer's head.
            self._keep_alive = self._low_water == 1 and self._keep_alive

    def _queued(self) -> int:
        """Bytes the kernel holds for this socket that no wake-up has reported yet."""
        if self._socket is None:
            return 0
        count = array.array("i", [0])
        try:
            fcntl.ioctl(self._socket.fileno(), termios.FIONREAD, count)
        except OSError:
            return 0
        return count[0]

    # -- endings -----------------------------------------------------------------------------

    def _finish(self) -> None:
        waiter = self._waiter
        self._stop_timer()
        if waiter is None or waiter.done():
            return
        self._waiter = None
        ok = 200 <= self._status < 300
        self._state = "idle"
        self._set_low_water(1)  # the next answer's head is small: read it as soon as it comes
        waiter.set_result(DirectAnswer(
            self._status, self._reason, self._headers,
            self._got if ok else 0, b"" if ok else bytes(self._error)))

    def _end(self, exc: Exception | None) -> None:
        """The server closed the connection (``exc`` set when it broke)."""
        self._keep_alive = False
        if self._waiter is None or self._waiter.done():
            return
        if self._state in ("until_close", "error_until_close") and exc is None:
            self._finish()
            return
        what = "connection closed" if exc is None else f"connection lost ({type(exc).__name__})"
        if self._state != "head":
            what += f" after {self._got} body bytes"
        self._fail(aiohttp.ServerDisconnectedError(what))

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self._stop_timer()
        self._keep_alive = False
        self._close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        """Fires every ``read_timeout``; fails the request when nothing arrived for that long."""
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        idle = self._loop.time() - self._last_read
        if idle >= self._read_timeout and self._low_water > 1 and self._queued() > 0:
            # Bytes came, fewer than a batch: a slow answer, not a dead one. Read it as it comes.
            self._trickling = True
            self._set_low_water(1)
            if self._low_water == 1:  # the queued bytes are reported at once
                self._last_read = self._loop.time()
                idle = 0.0
        if idle >= self._read_timeout:
            self._fail(TimeoutError(f"no data for {self._read_timeout:g} s"))
        else:
            self._timer = self._loop.call_later(self._read_timeout - idle, self._check_timeout)

    def abort(self) -> None:
        """The caller gave up (cancelled): the connection's state is unknown, so drop it."""
        self._stop_timer()
        self._waiter = None
        self._keep_alive = False
        if self.transport is not None:
            self.transport.abort()


class DirectHttp:
    """Requests whose answers land in caller buffers, over pooled keep-alive connections.

    ``async with DirectHttp(limit=...) as http``; ``await http.request("GET", url, headers,
    into)``. At most ``limit`` requests at once. A connection is reused only after an answer
    read to its end; a reused connection that the server had closed while idle is replaced
    once, before any byte of the answer arrived (idempotent methods only, RFC 9110 9.2.2).
    """

    def __init__(self, *, limit: int, connect_timeout: float, read_timeout: float,
                 cafile: str | None = None) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._cafile = cafile  # CA bundle for https (None: the system's)
        self._ssl_context: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], list[_Protocol]] = {}

    def _tls(self) -> ssl.SSLContext:
        """Made on the first https connection: loading a CA bundle costs tens of milliseconds,
        and a service reading plain-http stores never needs it."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self._cafile)
        return self._ssl_context

    async def __aenter__(self) -> DirectHttp:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.abort()

    async def request(
        self, method: str, url: str, headers: Mapping[str, str], into: memoryview | None = None
    ) -> DirectAnswer:
        """``method`` ``url`` with ``headers``; a 2xx body of at most ``len(into)`` bytes lands in
        ``into`` (no ``into``: a 2xx answer must have no body, as a DELETE's).

        A 2xx body longer than ``into`` is not read: the answer says ``length=0`` and its
        Content-Length tells the caller why. Non-2xx bodies are kept (capped) in ``body``.
        """
        view = into if into is not None else memoryview(b"")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("DirectHttp needs an absolute http(s) URL")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        key = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        async with self._slots:
            for attempt in (1, 2):
                conn, reused = await self._connection(key, secure)
                try:
                    answer = await conn.start(request, view, bodiless=method == "HEAD")
                except aiohttp.ServerDisconnectedError:
                    if reused and attempt == 1 and not conn.received_any and method in _IDEMPOTENT:
                        continue  # closed while idle: a GET is safe to send again
                    raise
                except BaseException:
                    conn.abort()
                    raise
                if conn.reusable:
                    self._idle.setdefault(key, []).append(conn)
                else:
                    conn.abort()
                return answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(self, key: tuple[str, str, int], secure: bool) -> tuple[_Protocol, bool]:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.reusable:
                return conn, True
            conn.abort()
        loop = asyncio.get_running_loop()
        _, host, port = key
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, proto = await loop.create_connection(
                    lambda: _Protocol(loop, self._read_timeout), host, port,
                    ssl=self._tls() if secure else None,
                    server_hostname=host if secure else None)
        except OSError as exc:
            raise aiohttp.ClientConnectionError(
                f"cannot connect to {host}:{port} ({type(exc).__name__}: {exc.strerror or exc})") from exc
        return proto, False
