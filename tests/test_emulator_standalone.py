"""The standalone emulator, ``python -m dracoon_emulator``, as a child process on a real
socket: seeded from a YAML file, usable by any client, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.fixtures.dracoon import basic_auth

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SEED = REPO / "dracoon_emulator" / "example-seed.yaml"
READY = "Ctrl-C stops it."
SEED = {
    "users": [
        {"login": "carol", "password": "Carol-Login-1", "encryption_password": "Carol-Secret-1",
         "key_pair_version": "A"},
        {"login": "dave", "password": "Dave-Login-1", "room_manager": True},
    ],
    "rooms": [{"name": "Inbox", "admins": ["dave"], "members": {"carol": "edit"}}],
}  # fmt: skip


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dracoon_emulator", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO, env=dict(os.environ),
    )  # fmt: skip


async def _read_until_ready(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while READY not in lines:
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)  # a hang guard, not a speed check
        assert raw, "emulator exited before it was ready:\n" + "\n".join(lines)
        lines.append(raw.decode().rstrip())
    return lines


@asynccontextmanager
async def _emulator(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    proc = await _start(*args)
    try:
        yield proc, await _read_until_ready(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_standalone_serves_the_seed_until_ctrl_c(tmp_path: Path) -> None:
    """Prints URL and credentials; a client logs in with them, sees its rooms and key pair, uploads
    with an offset-less timestamp; SIGINT ends it with status 0 and a clean contract summary."""
    seed = tmp_path / "seed.yaml"
    seed.write_text(yaml.safe_dump(SEED), encoding="utf-8")
    async with _emulator("--port", "0", "--seed", str(seed), "--response-contract") as (proc, lines):
        banner = next(line for line in lines if line.startswith("DRACOON emulator running at "))
        base_url = banner.split()[4]
        assert "  OAuth client: dracoon_legacy_scripting (no secret)" in lines
        assert any(line.startswith("  user carol (id ") and "key pairs: A" in line for line in lines)
        inbox_id = int(next(line for line in lines if line.startswith("  room Inbox: id ")).split()[-1])
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base_url}/oauth/token",
                data={"grant_type": "password", "username": "carol", "password": "Carol-Login-1"},
                headers=basic_auth("dracoon_legacy_scripting", ""),
            ) as resp:
                assert resp.status == 200
                auth = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
            async with session.get(f"{base_url}/api/v4/nodes", headers=auth) as resp:
                rooms = (await resp.json())["items"]
            assert [(r["id"], r["name"]) for r in rooms] == [(inbox_id, "Inbox")]
            async with session.get(f"{base_url}/api/v4/user/account/keypair", headers=auth) as resp:
                assert (await resp.json())["publicKeyContainer"]["version"] == "A"
            body = {"parentId": inbox_id, "name": "note.txt", "timestampCreation": "2026-12-06T10:00:00"}
            async with session.post(
                f"{base_url}/api/v4/nodes/files/uploads", json=body, headers=auth
            ) as resp:
                upload_url = (await resp.json())["uploadUrl"]
            async with session.post(upload_url, data=b"hello"):
                pass
            async with session.put(upload_url, json={}) as resp:
                node = await resp.json()
            assert (resp.status, node["size"], node["timestampCreation"]) == (201, 5, "2026-12-06T10:00:00Z")
        proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None
        rest = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
        assert await proc.wait() == 0, rest
    assert "DRACOON emulator stopped." in rest
    assert "response contract: 5 answers checked, 0 violations" in rest, rest


async def test_the_example_seed_starts(tmp_path: Path) -> None:
    """The shipped example seed is valid: every user, room and folder of it is announced."""
    async with _emulator("--seed", str(EXAMPLE_SEED)) as (proc, lines):
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    seed = yaml.safe_load(EXAMPLE_SEED.read_text(encoding="utf-8"))
    for user in seed["users"]:
        assert any(line.startswith(f"  user {user['login']} (id ") for line in lines), lines
    for path in ("room Projects", "room Projects/Archive", "folder Projects/Drafts", "room Public"):
        assert any(line.startswith(f"  {path}: id ") for line in lines), lines


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("users: [{login: x}]", "every user needs a login and a password"),
        ("rooms: [{name: R, admins: [nobody]}]", "unknown user 'nobody'"),
        ("colour: blue", "unknown fixture key(s): ['colour']"),
        ("users: [{login: x, password: y, encryption_password: z, key_pair_version: RSA-2048}]", "RSA-2048"),
        ("users: [", "cannot load seed file"),
    ],
)
async def test_a_bad_seed_is_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    """What is wrong, in which file; exit status 2 and no traceback."""
    seed = tmp_path / "seed.yaml"
    seed.write_text(content, encoding="utf-8")
    proc = await _start("--seed", str(seed))
    assert proc.stdout is not None
    output = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
    assert await proc.wait() == 2
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot load seed file {seed}: "), output
    assert expected in output
    assert "Traceback" not in output
