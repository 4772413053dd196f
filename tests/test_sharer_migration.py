"""The sharer for an account in DRACOON's key migration: it holds an "A" and an RSA-4096 pair.

Files stored before the migration carry the service account's file key only under "A"; new
members (and the account's own new pair) can get theirs only if the sharer unwraps with "A".
Real emulator over a socket, the real pool unlocking the account's pairs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog

from recording_storage import pool as pool_module
from recording_storage.crypto import KeyPairVersion, UnlockedKeyPair, UserKeyPair
from recording_storage.pool import DracoonPool
from recording_storage.sharer import Sharer
from tests.fixtures.dracoon import DracoonEnv
from tests.fixtures.keys import make_test_keypair
from tests.test_sharer import DOMAIN, StaticProvider, read_as, seed_files, settings, sharer_cfg

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool() -> AsyncIterator[DracoonPool]:
    async with DracoonPool(settings()) as p:
        yield p


@pytest.mark.parametrize("dracoon_key_version", ["A"])
async def test_files_from_before_the_migration_are_served_with_the_old_pair(
    dracoon_emulator: DracoonEnv, pool: DracoonPool
) -> None:
    env = dracoon_emulator
    old = seed_files(env, env.parent_room_id, 4, "old")  # our copies: "A" only
    new_pair = make_test_keypair(KeyPairVersion.RSA_4096)
    env.state.set_key_pair(env.service_user.id, new_pair.key_pair.to_json())
    reader = env.add_user("hana", "RSA-4096")
    sharer = Sharer(StaticProvider({DOMAIN: env.account(DOMAIN)}), pool, sharer_cfg())

    stats = (await sharer.run_once())[DOMAIN]

    assert (stats.failed, stats.files_unusable) == (0, set())
    assert stats.served == 2 * len(old)  # the reader's copy and our own RSA-4096 one
    for file_id, plain in old.items():
        assert read_as(env, file_id, reader.id, reader.require_keys()) == plain
        assert read_as(env, file_id, env.service_user.id, new_pair) == plain
    # Uploads keep wrapping for the stronger pair.
    assert (await pool.key_pair(env.account(DOMAIN))).version is KeyPairVersion.RSA_4096


@pytest.mark.parametrize("dracoon_key_version", ["A"])
async def test_an_old_pair_that_does_not_unlock_only_costs_its_files(
    dracoon_emulator: DracoonEnv, pool: DracoonPool
) -> None:
    """The "A" pair kept an older encryption password: logged, and the account still works."""
    env = dracoon_emulator
    old = seed_files(env, env.parent_room_id, 2, "old")
    stale = make_test_keypair(KeyPairVersion.A, "An-Older-Password-1", index=7)
    env.state.set_key_pair(env.service_user.id, stale.key_pair.to_json())  # replaces our "A" pair
    new_pair = make_test_keypair(KeyPairVersion.RSA_4096)
    env.state.set_key_pair(env.service_user.id, new_pair.key_pair.to_json())
    env.add_user("ivan", "RSA-4096")
    sharer = Sharer(StaticProvider({DOMAIN: env.account(DOMAIN)}), pool, sharer_cfg())

    with structlog.testing.capture_logs() as logs:
        stats = (await sharer.run_once())[DOMAIN]

    ring = await pool.key_ring(env.account(DOMAIN))
    assert [k.version for k in ring] == [KeyPairVersion.RSA_4096]
    (failed,) = [e for e in logs if e["event"] == "key_pair_unlock_failed"]
    assert failed["version"] == "A" and failed["log_level"] == "warning"
    assert stats.files_unusable == set(old) and stats.served == 0


@pytest.mark.parametrize("dracoon_key_version", ["A"])
async def test_uploads_do_not_wait_for_the_older_pair(
    dracoon_emulator: DracoonEnv, pool: DracoonPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload path unlocks only the strongest pair; the older one only when the sharer asks."""
    env = dracoon_emulator
    env.state.set_key_pair(env.service_user.id, make_test_keypair(KeyPairVersion.RSA_4096).key_pair.to_json())
    unlocked: list[str] = []
    real = pool_module.unlock_key_pair  # type: ignore[attr-defined]  # patched where pool looks it up

    def counting(pair: UserKeyPair, password: str) -> UnlockedKeyPair:
        unlocked.append(pair.public_key_container.version.value)
        return real(pair, password)

    monkeypatch.setattr(pool_module, "unlock_key_pair", counting)
    account = env.account(DOMAIN)
    firsts = await asyncio.gather(*(pool.key_pair(account) for _ in range(4)))  # workers at once
    assert len({id(k) for k in firsts}) == 1 and firsts[0].version is KeyPairVersion.RSA_4096
    assert unlocked == ["RSA-4096"]
    assert len({id(c) for c in await asyncio.gather(*(pool.client(account) for _ in range(3)))}) == 1
    assert [k.version.value for k in await pool.key_ring(account)] == ["RSA-4096", "A"]
    await pool.key_ring(account)
    assert unlocked == ["RSA-4096", "A"]  # each unlocked once
