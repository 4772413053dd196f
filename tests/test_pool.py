"""DracoonPool on its own: one client and one unlocked key pair per account, made once.

The pool is what saves a login and a PBKDF2 unlock per job, so its caching is the behaviour
under test: what it shares, what it keeps apart, and what it must not keep (a failed fetch,
a key pair the server has replaced). Real emulator over a socket; ``preferred_key_pair`` is
pure. The key migration (two pairs, the sharer's ``key_ring``) is in ``test_sharer_migration``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from recording_storage.config import DracoonConfig
from recording_storage.crypto import KeyPairVersion
from recording_storage.dracoon import DracoonPermanentError
from recording_storage.errors import PermanentError
from recording_storage.pool import DracoonPool, preferred_key_pair
from tests.fixtures.dracoon import DracoonEnv
from tests.fixtures.keys import make_test_keypair

KEYPAIRS = r"^/api/v4/user/account/keypairs$"


@pytest.fixture
async def pool() -> AsyncIterator[DracoonPool]:
    async with DracoonPool(DracoonConfig(max_retries=1)) as entered:
        yield entered


def test_the_strongest_pair_is_preferred_whatever_the_order() -> None:
    legacy = make_test_keypair(KeyPairVersion.A).key_pair
    strong = make_test_keypair(KeyPairVersion.RSA_4096).key_pair
    assert preferred_key_pair([legacy, strong]) is strong
    assert preferred_key_pair([strong, legacy]) is strong
    assert preferred_key_pair([legacy]) is legacy


def test_an_account_without_key_pair_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError) as info:
        preferred_key_pair([])
    assert info.value.code == "no_key_pair"


@pytest.mark.integration
async def test_workers_asking_at_once_share_one_client_and_one_fetch(
    dracoon_emulator: DracoonEnv, pool: DracoonPool
) -> None:
    fetches = dracoon_emulator.emulator.faults.add(method="GET", path=KEYPAIRS, latency_ms=1, name="counter")
    account = dracoon_emulator.account()
    clients = await asyncio.gather(*(pool.client(account) for _ in range(5)))
    pairs = await asyncio.gather(*(pool.key_pair(account) for _ in range(5)))
    assert len({id(c) for c in clients}) == 1
    assert len({id(p) for p in pairs}) == 1
    assert fetches.seen == 1


@pytest.mark.integration
async def test_accounts_get_their_own_clients(dracoon_emulator: DracoonEnv, pool: DracoonPool) -> None:
    """Two logins on one DRACOON are two sessions and two tokens, never one shared client."""
    other = dracoon_emulator.add_user("second-bot")
    first = dracoon_emulator.account("a.example.com")
    second = dracoon_emulator.account("b.example.com", login=other.login, password=SecretStr(other.password))
    assert await pool.client(first) is not await pool.client(second)
    # The same login under another domain is the same account: one client.
    assert await pool.client(first) is await pool.client(dracoon_emulator.account("c.example.com"))
    # A password rotated in the instance configuration gets a fresh client, not the stale one.
    rotated = dracoon_emulator.account("a.example.com", password=SecretStr("Rotated-Login-Pw-2"))
    assert await pool.client(rotated) is not await pool.client(first)


@pytest.mark.integration
async def test_a_failed_fetch_is_not_kept(dracoon_emulator: DracoonEnv, pool: DracoonPool) -> None:
    """A key pair fetch that fails leaves nothing cached: the next job asks the server again."""
    refused = dracoon_emulator.emulator.faults.add(method="GET", path=KEYPAIRS, status=400, count=1)
    account = dracoon_emulator.account()
    with pytest.raises(DracoonPermanentError):
        await pool.key_pair(account)
    assert refused.fired == 1
    assert (await pool.key_pair(account)).version is dracoon_emulator.key_version


@pytest.mark.integration
@pytest.mark.parametrize("dracoon_key_version", ["A"])
async def test_forget_drops_the_cached_pair(dracoon_emulator: DracoonEnv, pool: DracoonPool) -> None:
    """Until ``forget``, a key pair replaced on the server is not seen (no fetch per job); after
    it, the next ``key_pair`` fetches and unlocks the new one."""
    env = dracoon_emulator
    account = env.account()
    assert (await pool.key_pair(account)).version is KeyPairVersion.A
    env.state.set_key_pair(env.service_user.id, make_test_keypair(KeyPairVersion.RSA_4096).key_pair.to_json())
    assert (await pool.key_pair(account)).version is KeyPairVersion.A
    pool.forget(account)
    assert (await pool.key_pair(account)).version is KeyPairVersion.RSA_4096
