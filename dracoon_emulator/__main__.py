"""``python -m dracoon_emulator``: a standalone DRACOON emulator for any DRACOON client.

    python -m dracoon_emulator --port 8765 --seed dracoon_emulator/example-seed.yaml

Serves on loopback until Ctrl-C (or SIGTERM), after printing the base URL, the OAuth client and
the seeded logins, so a client under test can connect. The seed file is the fixture format of
``fixture.py`` (documented in ``README.md`` next to this file). ``--response-contract`` checks every
answer against DRACOON's description and reports violations as they happen and at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .app import DracoonEmulator
from .config import EmulatorConfig
from .fixture import load_fixture


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dracoon_emulator",
        description="Run the DRACOON API emulator until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free port)")
    parser.add_argument("--seed", type=Path, help="YAML seed file: config, users, key pairs, rooms, members")
    parser.add_argument(
        "--response-contract",
        action="store_true",
        help="check every answer against DRACOON's OpenAPI description and report violations",
    )
    return parser


def _credentials(emulator: DracoonEmulator, fixture: Mapping[str, Any]) -> list[str]:
    """What a client needs to connect; the seed's passwords are the user's own test data."""
    url = emulator.base_url
    lines = [f"DRACOON emulator running at {url} (API {url}/api/v4)"]
    for client_id, secret in emulator.config.clients.items():
        lines.append(f"  OAuth client: {client_id} " + (f"(secret {secret})" if secret else "(no secret)"))
    for spec in fixture.get("users") or []:
        user = emulator.state.user_by_login(str(spec["login"]))
        assert user is not None  # seeded above
        versions = ", ".join(user.key_pair_versions()) or "none"
        secret = spec.get("encryption_password")
        line = f"  user {user.login} (id {user.id}): password {spec['password']}, key pairs: {versions}"
        lines.append(line + (f", encryption password {secret}" if secret else ""))
    for path, node_id in emulator.seeded.nodes.items():
        lines.append(f"  {emulator.state.nodes[node_id].type} {path}: id {node_id}")
    if not fixture.get("users"):
        lines.append("  no users: pass --seed FILE to create some (see dracoon_emulator/README.md)")
    lines.append("Ctrl-C stops it.")
    return lines


async def _serve(emulator: DracoonEmulator, fixture: Mapping[str, Any], host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await emulator.start(host, port)
    try:
        print("\n".join(_credentials(emulator, fixture)), flush=True)
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C before the server's own handler is in place (while seeding)
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        fixture = load_fixture(args.seed) if args.seed is not None else {}
        generated = sum(
            1 for u in fixture.get("users") or [] if isinstance(u, Mapping) and "encryption_password" in u
        )
        if generated:  # RSA generation and the clients' PBKDF2 cost take seconds per pair
            print(f"generating {generated} key pair(s) ...", flush=True)
        overrides = {"response_contract": True} if args.response_contract else {}
        config = EmulatorConfig.from_dict({**(fixture.get("config") or {}), **overrides})
        emulator = DracoonEmulator.from_fixture(fixture, config)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        print(f"error: cannot load seed file {args.seed}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the response contract without its validator installed
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(emulator, fixture, args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print("DRACOON emulator stopped.", flush=True)
    if emulator.contract is not None:
        tally = emulator.contract.tally
        print(f"response contract: {tally.checked} answers checked, {len(tally.violations)} violations")
        for violation in tally.violations:
            print(f"  {violation}")
        return 1 if tally.violations else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
