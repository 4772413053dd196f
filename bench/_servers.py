"""Server processes of the bench stack: ``python -m bench._servers moto|emulator``.

Each runs one server on 127.0.0.1, prints ``READY <url>`` on stdout and serves until its stdin
reaches EOF (the parent closes it to stop the server; a crashed parent closes it too, so no
server outlives the bench). moto and the DRACOON emulator get a process each: both burn CPU when
GiBs stream through them, and sharing one interpreter (one GIL) with each other or with the
transfer under test would measure lock contention instead of the pipeline.

The emulator reads one JSON line from stdin first: ``{"config": {...}, "fixture": {...}}``
(``EmulatorConfig.from_dict`` keys and a ``seed`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

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


def _moto() -> None:
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(MOTO_KEY_BUFFER))
    from moto.server import ThreadedMotoServer

    from bench import _motopatch

    _motopatch.apply()
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


def main(argv: list[str]) -> int:
    _quiet()
    kind = argv[0] if argv else ""
    if kind == "moto":
        _moto()
    elif kind == "emulator":
        spec = json.loads(sys.stdin.buffer.readline())
        asyncio.run(_emulator(spec))
    else:
        print("usage: python -m bench._servers moto|emulator", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
