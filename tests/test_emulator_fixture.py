"""Emulator: seeding from a YAML fixture, ``run_emulator``, and the state API's own rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from dracoon_emulator import (
    DracoonEmulator,
    EmulatorState,
    demo_fixture,
    load_fixture,
    run_emulator,
)
from recording_storage.crypto import KeyPairVersion, UserKeyPair, unlock_key_pair
from tests.fixtures.keys import make_test_keypair

pytestmark = pytest.mark.integration

FIXTURE = """
config: {use_s3_storage: true, access_token_ttl: 60}
users:
  - {login: svc, password: pw-svc, room_manager: true, id: 7}
  - {login: alice, password: pw-alice}
rooms:
  - name: Tenant
    id: 5000
    encrypted: true
    admins: [svc]
    members: {alice: read}
    quota: 1000
    rooms:
      - name: Sub
        rooms: [{name: Deeper}]
    folders:
      - {name: Drafts, folders: [{name: Old}]}
"""


def test_fixture_seeds_users_rooms_and_config(tmp_path: Path) -> None:
    """Logins, explicit ids, nested rooms (inheriting permissions and encryption), folders, config."""
    path = tmp_path / "tenant.yaml"
    path.write_text(FIXTURE, encoding="utf-8")
    emulator = DracoonEmulator.from_fixture(load_fixture(path))
    state, seeded = emulator.state, emulator.seeded
    assert seeded.users == {"svc": 7, "alice": 8}
    assert seeded.nodes["Tenant"] == 5000
    assert set(seeded.nodes) == {
        "Tenant",
        "Tenant/Sub",
        "Tenant/Sub/Deeper",
        "Tenant/Drafts",
        "Tenant/Drafts/Old",
    }
    deeper = state.node(seeded.nodes["Tenant/Sub/Deeper"])
    assert deeper.encrypted and deeper.inherit_permissions
    assert state.can(8, deeper, "read") and not state.can(8, deeper, "create")
    assert state.node(5000).quota == 1000
    assert emulator.config.use_s3_storage and emulator.config.access_token_ttl == 60


def test_demo_fixture_has_usable_keys() -> None:
    """The demo tenant's service user owns an encrypted room and a key pair its password unlocks."""
    fixture = demo_fixture(
        login="bot",
        password="pw",
        encryption_password="secret",
        version="A",
        members={"alice": ("pw-a", "secret-a")},
        kdf_iterations=1000,
    )
    emulator = DracoonEmulator.from_fixture(fixture)
    room = emulator.state.node(emulator.seeded.nodes["Recordings"])
    bot, alice = emulator.seeded.users["bot"], emulator.seeded.users["alice"]
    assert room.id == 1001 and room.encrypted and emulator.state.can(bot, room, "manage")
    assert emulator.state.permissions(alice, room) == {"read"}
    pair = UserKeyPair.from_json(emulator.state.users[bot].key_pairs["A"])
    unlock_key_pair(pair, "secret")


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ({"users": [{"login": "a", "password": "p", "colour": 1}]}, "unknown user key"),
        ({"rooms": [{"name": "R", "admins": ["ghost"]}]}, "unknown user 'ghost'"),
        ({"groups": []}, "unknown fixture key"),
        (
            {
                "users": [{"login": "a", "password": "p"}],
                "rooms": [{"name": "R", "admins": ["a"], "members": {"a": "sudo"}}],
            },
            "unknown permission",
        ),
    ],
)
def test_fixture_errors(fixture: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DracoonEmulator.from_fixture(fixture)


def test_state_rules() -> None:
    """The seeding API enforces DRACOON's own rules too (names, case-insensitive clashes, versions)."""
    state = EmulatorState()
    user = state.add_user("u", "p")
    room = state.add_room("Room", admins=[user.id])
    state.add_folder("Sub", room.id)
    with pytest.raises(ValueError, match="exists"):
        state.add_folder("SUB", room.id)
    with pytest.raises(ValueError, match="Bad node name"):
        state.add_folder("a:b", room.id)
    with pytest.raises(ValueError, match="exists"):
        state.add_room("room", admins=[user.id])
    with pytest.raises(ValueError, match="exists"):
        state.add_user("U", "p")
    with pytest.raises(ValueError, match="inherit"):
        state.add_room("Top", inherit_permissions=True)
    with pytest.raises(KeyError):
        state.add_folder("f", 424242)
    keys = make_test_keypair(KeyPairVersion.A)
    bad = keys.key_pair.to_json()
    bad["publicKeyContainer"] = {**bad["publicKeyContainer"], "version": "RSA-4096"}
    with pytest.raises(ValueError, match="version"):
        state.set_key_pair(user.id, bad)


async def test_run_emulator_serves_until_stopped() -> None:
    """``run_emulator`` reports the started emulator, serves, and returns once ``stop`` is set."""
    stop, ready = asyncio.Event(), asyncio.Event()
    started: list[DracoonEmulator] = []

    def on_ready(emulator: DracoonEmulator) -> None:
        started.append(emulator)
        ready.set()

    task = asyncio.create_task(
        run_emulator(fixture={"users": [{"login": "x", "password": "y"}]}, stop=stop, on_ready=on_ready)
    )
    await asyncio.wait_for(ready.wait(), 5)
    url = f"{started[0].base_url}/api/v4/public/system/info"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200
        stop.set()
        await asyncio.wait_for(task, 5)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url):
                pass
