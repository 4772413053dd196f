"""Server processes of the bench stack: ``python -m bench._servers moto|emulator|sink|front``.

Each runs one server on 127.0.0.1, prints ``READY <url>`` on stdout and serves until its stdin
reaches EOF (the parent closes it to stop the server; a crashed parent closes it too, so no
server outlives the bench). moto and the DRACOON emulator get a process each: both burn CPU when
GiBs stream through them, and sharing one interpreter (one GIL) with each other or with the
transfer under test would measure lock contention instead of the pipeline.

``front`` is a keep-alive reverse proxy for moto (see ``_front``), reading ``{"upstream": url}``.
``sink`` answers every request 204 after reading (and dropping) its body: the upload end of the
CPU benchmark's minimal relay (``bench/cpu_bench.py``), in a process of its own like the others.

The emulator reads one JSON line from stdin first: ``{"config": {...}, "fixture": {...}}``
(``EmulatorConfig.from_dict`` keys and a ``seed`` fixture); moto reads one too, ``{"rtt_ms": n}``
(a delay per request standing in for a network round trip; 0 for none). moto counts requests by
operation at ``/_bench/requests`` (``bench/_motopatch.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["main"]

# Objects stay in moto's in-memory buffer instead of spilling to temp files on disk (the
# default spills above ~5 MiB, and writing GiBs to the disk is slow and not what S3 costs).
MOTO_KEY_BUFFER = 8 * 1024**3


def _quiet() -> None:
    import structlog

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _ready(url: str) -> None:
    sys.stdout.write(f"READY {url}\n")
    sys.stdout.flush()


def _moto(spec: dict[str, object]) -> None:
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(MOTO_KEY_BUFFER))
    from moto.server import ThreadedMotoServer

    from bench import _motopatch

    _motopatch.apply()
    _motopatch.count_and_delay(float(spec.get("rtt_ms", 0)))  # type: ignore[arg-type]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    _ready(f"http://{host}:{port}")
    try:
        sys.stdin.buffer.read()  # until EOF
    finally:
        server.stop()


async def _emulator(spec: dict[str, object]) -> None:
    from dracoon_emulator import DracoonEmulator, EmulatorConfig

    config = EmulatorConfig.from_dict(dict(spec["config"]))  # type: ignore[call-overload]
    emulator = DracoonEmulator.from_fixture(dict(spec["fixture"]), config)  # type: ignore[call-overload]
    async with emulator:
        _ready(emulator.base_url)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)


async def _serve_until_eof(app: web.Application) -> None:
    """Serve ``app`` on a free loopback port, announce its URL, stop when stdin closes."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    _ready(f"http://127.0.0.1:{port}")
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    finally:
        await runner.cleanup()


async def _sink() -> None:
    from aiohttp import web

    async def swallow(request: web.Request) -> web.Response:
        while await request.content.readany():
            pass
        return web.Response(status=204)

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", swallow)
    await _serve_until_eof(app)


async def _front(spec: dict[str, object]) -> None:
    """A keep-alive front for moto: what S3 and SQS offer, and werkzeug's server does not.

    werkzeug answers every request with ``Connection: close``, so a client talking to moto
    directly opens a TCP connection per request, and the load benchmark would charge about five
    connection set-ups per small job to the service, where a real deployment reuses a few
    connections for hours. The front keeps the client's connections open and forwards each
    request to moto (paying moto's new connection itself, in this process). Small bodies only:
    it reads each request and answer whole, which suits the small-job benchmark it serves.
    """
    import aiohttp
    from aiohttp import web

    upstream = str(spec["upstream"])
    # Expect is answered here (aiohttp sends the 100 itself); forwarded, it loses the body.
    hop = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "expect"}
    session = aiohttp.ClientSession(auto_decompress=False,
                                    connector=aiohttp.TCPConnector(force_close=True, limit=0))

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                   data=await request.read(), allow_redirects=False) as resp:
            body = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in hop}
            if request.method == "HEAD":  # no body, but its length is the answer (object size)
                out["Content-Length"] = resp.headers.get("Content-Length", "0")
                return web.Response(status=resp.status, headers=out)
            return web.Response(status=resp.status, headers=out, body=body)

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        await _serve_until_eof(app)
    finally:
        await session.close()


def main(argv: list[str]) -> int:
    _quiet()
    kind = argv[0] if argv else ""
    if kind == "moto":
        _moto(json.loads(sys.stdin.buffer.readline()))
    elif kind == "emulator":
        spec = json.loads(sys.stdin.buffer.readline())
        asyncio.run(_emulator(spec))
    elif kind == "sink":
        asyncio.run(_sink())
    elif kind == "front":
        asyncio.run(_front(json.loads(sys.stdin.buffer.readline())))
    else:
        print("usage: python -m bench._servers moto|emulator|sink|front", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
