"""The key sharer against the DRACOON emulator over real sockets, plus its loop with fakes.

Users join rooms after files were uploaded; the sharer must hand each of them a file key per
key pair version, page after page, survive failing pages and instances, stay correct with two
replicas at once, and skip keys it cannot unwrap without spinning.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import pytest
from pydantic import SecretStr

from recording_storage.config import DracoonConfig, SharerConfig
from recording_storage.crypto import EncryptedFileKey, FileDecryptor, KeyPairVersion
from recording_storage.dracoon import DracoonClient
from recording_storage.errors import TransientError
from recording_storage.instances import DracoonAccount, UnknownInstance
from recording_storage.keyshare import serve_missing_keys
from recording_storage.metrics import Metrics
from recording_storage.pool import DracoonPool
from recording_storage.sharer import Sharer
from recording_storage.sharer import _next_slot as next_slot
from tests.fixtures.dracoon import DracoonEnv, SeededUser, encrypt_for
from tests.fixtures.keys import TestKeyPair, make_test_keypair
from tests.fixtures.metrics import SharerPasses

pytestmark = pytest.mark.integration

DOMAIN = "meet.example.com"
OTHER = "other.example.com"
MISSING = r"^/api/v4/nodes/missingFileKeys$"
SET_KEYS = r"^/api/v4/nodes/files/keys$"


class StaticProvider:
    """An InstanceProvider over a fixed mapping (the file/HTTP sources are tested elsewhere)."""

    def __init__(self, accounts: Mapping[str, DracoonAccount]) -> None:
        self.accounts = dict(accounts)

    async def get(self, domain: str) -> DracoonAccount:
        try:
            return self.accounts[domain]
        except KeyError:
            raise UnknownInstance(domain) from None

    async def list_domains(self) -> list[str]:
        return list(self.accounts)

    async def aclose(self) -> None:
        return None


def settings(**overrides: Any) -> DracoonConfig:
    return DracoonConfig(**{"max_retries": 2, **overrides})


def sharer_cfg(**overrides: Any) -> SharerConfig:
    return SharerConfig(**{"interval": 3600, "jitter": 0, "first_delay": 0, **overrides})


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def make_pool(stack: AsyncExitStack, **overrides: Any) -> DracoonPool:
    return await stack.enter_async_context(DracoonPool(settings(**overrides)))


def seed_files(env: DracoonEnv, room_id: int, count: int, prefix: str,
               owner: SeededUser | None = None) -> dict[int, bytes]:
    """``count`` encrypted files in ``room_id`` whose only file key is the owner's (the uploader)."""
    owner = owner or env.service_user
    files: dict[int, bytes] = {}
    for i in range(count):
        plain = f"{prefix} recording {i} ".encode() * 3
        ciphertext, key = encrypt_for(owner.require_keys(), plain)
        node = env.state.add_file(room_id, f"{prefix}-{i}.mp4", ciphertext, file_keys={owner.id: key},
                                  created_by=owner.id)
        files[node.id] = plain
    return files


def read_as(env: DracoonEnv, file_id: int, user_id: int, keys: TestKeyPair) -> bytes:
    """Decrypt a stored file with the user's own file key copy for ``keys``' version."""
    stored = env.state.file_keys(file_id, version=keys.version.value)
    assert user_id in stored, f"user {user_id} has no {keys.version} key for file {file_id}"
    plain = keys.unlocked.decrypt_file_key(EncryptedFileKey.from_json(stored[user_id]))
    decryptor = FileDecryptor(plain)
    out = decryptor.update(env.state.file_content(file_id))
    decryptor.finalize()
    return out


def pending_pairs(env: DracoonEnv) -> int:
    """(user, file) pairs a reader still lacks a key for, counted from the emulator's state."""
    count = 0
    for node in env.state.nodes.values():
        if node.type != "file" or not env.state.room_of(node).encrypted:
            continue
        for user in env.state.readers(env.state.room_of(node)):
            if any(v not in node.file_keys.get(user.id, {}) for v in user.key_pair_versions()):
                count += 1
    return count


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"recording_storage_{name}", labels or None)
    return value or 0.0


def second_instance(
    env: DracoonEnv, files: int, readers: list[SeededUser]
) -> tuple[DracoonAccount, SeededUser]:
    """Another service account (own key pair, own encrypted room) on the same emulator."""
    svc2 = env.add_user("svc-other", "A", room_ids=[], perms="all")
    room = env.state.add_room("Other tenant", encrypted=True, admins=[svc2.id])
    seed_files(env, room.id, files, "other", owner=svc2)
    for user in readers:
        env.state.add_member(room.id, user.id, "read")
    account = env.account(OTHER, login=svc2.login, password=SecretStr(svc2.password),
                          parent_room_id=room.id)
    return account, svc2


# -- late joiners -----------------------------------------------------------------------------


@pytest.mark.parametrize("dracoon_key_version", ["A", "RSA-4096"])
async def test_late_members_get_keys_for_every_file_and_version(
    dracoon_emulator: DracoonEnv, stack: AsyncExitStack
) -> None:
    env = dracoon_emulator
    rooms = [env.state.add_room(f"Team {n}", env.parent_room_id).id for n in range(3)]
    files = {room: seed_files(env, room, 20, f"team{n}") for n, room in enumerate(rooms)}
    # Members join after the uploads: one per key pair version, one with both (a key migration).
    user_a = env.add_user("alice", "A", room_ids=rooms[:2])
    user_4096 = env.add_user("bob", "RSA-4096", room_ids=rooms[1:])
    both = env.add_user("carol", "A", room_ids=rooms)
    carol_4096 = make_test_keypair(KeyPairVersion.RSA_4096, index=99)
    env.state.set_key_pair(both.id, carol_4096.key_pair.to_json())
    assert pending_pairs(env) == 40 + 40 + 60  # more than one page of 100

    metrics, passes = Metrics(), list[bool]()
    sharer = Sharer(StaticProvider({DOMAIN: env.account(DOMAIN)}), await make_pool(stack), sharer_cfg(),
                    metrics=metrics, health=SharerPasses(passes.append))
    results = await sharer.run_once()

    stats = results[DOMAIN]
    assert (stats.served, stats.failed, stats.conflicts) == (40 + 40 + 2 * 60, 0, 0)
    assert stats.pages >= 3  # 140 pairs at 100 per page, then the empty page
    assert pending_pairs(env) == 0
    assert passes == [True]
    assert sample(metrics, "sharer_keys_served_total") == 200
    assert sample(metrics, "sharer_passes_total", outcome="success") == 1

    for user, keys, member_of in ((user_a, user_a.require_keys(), rooms[:2]),
                                  (user_4096, user_4096.require_keys(), rooms[1:]),
                                  (both, both.require_keys(), rooms), (both, carol_4096, rooms)):
        for room in rooms:
            for file_id, plain in files[room].items():
                if room in member_of:
                    assert read_as(env, file_id, user.id, keys) == plain
                else:
                    assert user.id not in env.state.file_keys(file_id)

    again = await sharer.run_once()
    assert (again[DOMAIN].served, again[DOMAIN].pages) == (0, 1)


async def test_serving_one_file_leaves_the_others_missing(dracoon_emulator: DracoonEnv) -> None:
    """The per-upload path: only the new file's keys are served."""
    env = dracoon_emulator
    files = list(seed_files(env, env.parent_room_id, 3, "rec"))
    reader = env.add_user("dave", "A")
    async with DracoonClient(env.account(), settings()) as client:
        stats = await serve_missing_keys(client, [env.service_user.require_keys().unlocked], file_id=files[1])
    assert (stats.served, stats.failed) == (1, 0)
    assert [reader.id in env.state.file_keys(f) for f in files] == [False, True, False]


# -- failures ---------------------------------------------------------------------------------


async def test_failing_page_skips_the_instance_not_the_pass(
    dracoon_emulator: DracoonEnv, stack: AsyncExitStack
) -> None:
    env = dracoon_emulator
    readers = [env.add_user(f"reader{i}", "A") for i in range(3)]
    seed_files(env, env.parent_room_id, 40, "main")  # 120 pairs: two pages
    other_account, _ = second_instance(env, 5, readers)
    provider = StaticProvider({DOMAIN: env.account(DOMAIN), OTHER: other_account})
    # The second page of the first instance fails (no client retries left).
    rule = env.emulator.faults.add(method="GET", path=MISSING, status=500, after=1, count=1)
    metrics, passes = Metrics(), list[bool]()
    sharer = Sharer(provider, await make_pool(stack, max_retries=0), sharer_cfg(),
                    metrics=metrics, health=SharerPasses(passes.append))

    first = await sharer.run_once()

    assert rule.fired == 1
    assert DOMAIN not in first  # failed instances are logged and absent
    assert (first[OTHER].served, first[OTHER].failed) == (15, 0)  # the pass went on
    assert pending_pairs(env) == 120 - 100  # the first page was served before the failure
    second = await sharer.run_once()
    assert (second[DOMAIN].served, second[DOMAIN].failed) == (20, 0)
    assert second[OTHER].served == 0
    assert pending_pairs(env) == 0
    assert passes == [False, True]
    assert sample(metrics, "sharer_passes_total", outcome="partial") == 1
    assert sample(metrics, "sharer_passes_total", outcome="success") == 1
    assert sample(metrics, "sharer_keys_served_total") == 135


async def test_rejected_batch_is_split_to_serve_the_rest(
    dracoon_emulator: DracoonEnv, stack: AsyncExitStack
) -> None:
    env = dracoon_emulator
    env.add_user("erin", "A")
    seed_files(env, env.parent_room_id, 30, "rec")
    once = env.emulator.faults.add(method="POST", path=SET_KEYS, status=400, count=1)
    async with DracoonClient(env.account(), settings()) as client:
        stats = await serve_missing_keys(client, [env.service_user.require_keys().unlocked])
    assert (stats.served, stats.failed) == (30, 0)
    assert (once.fired, once.seen) == (1, 3)  # the batch, then its two halves
    assert pending_pairs(env) == 0


async def test_always_rejected_batch_gives_up_after_three_posts(dracoon_emulator: DracoonEnv) -> None:
    env = dracoon_emulator
    env.add_user("frank", "A")
    seed_files(env, env.parent_room_id, 30, "rec")
    always = env.emulator.faults.add(method="POST", path=SET_KEYS, status=400)
    listing = env.emulator.faults.add(method="GET", path=MISSING, latency_ms=1)  # counts pages
    async with DracoonClient(env.account(), settings()) as client:
        stats = await serve_missing_keys(client, [env.service_user.require_keys().unlocked])
    assert (stats.served, stats.failed) == (0, 30)
    assert always.seen == 3  # systematic: both halves fail too, no bisecting down to single items
    assert listing.seen == stats.pages == 3  # page, the same page again (all tried), empty page
    assert pending_pairs(env) == 30


async def test_unusable_file_keys_are_skipped_without_spinning(dracoon_emulator: DracoonEnv) -> None:
    """More than a page of pairs whose key we cannot unwrap comes first; the good ones still get served."""
    env = dracoon_emulator
    stranger = make_test_keypair(env.key_version, index=98)  # same version, different key pair
    bad = []
    for i in range(105):
        ciphertext, key = encrypt_for(stranger, b"not ours")
        bad.append(env.state.add_file(env.parent_room_id, f"bad-{i}.mp4", ciphertext,
                                      file_keys={env.service_user.id: key}).id)
    good = seed_files(env, env.parent_room_id, 5, "good")
    reader = env.add_user("gina", "A")
    listing = env.emulator.faults.add(method="GET", path=MISSING, latency_ms=1)

    async with DracoonClient(env.account(), settings()) as client:
        stats = await serve_missing_keys(client, [env.service_user.require_keys().unlocked])

    assert (stats.served, stats.failed) == (5, 105)
    assert stats.files_unusable == set(bad)
    assert stats.pages == listing.seen <= 6
    for file_id, plain in good.items():
        assert read_as(env, file_id, reader.id, reader.require_keys()) == plain
    assert all(reader.id not in env.state.file_keys(f) for f in bad)


async def test_pages_mixing_tried_and_new_pairs_move_on(dracoon_emulator: DracoonEnv) -> None:
    """Pairs already tried are stepped over, not re-read page after page (which costs O(pairs) calls)."""
    env = dracoon_emulator
    stranger = make_test_keypair(env.key_version, index=98)
    bad: list[int] = []
    good: dict[int, bytes] = {}
    for block in range(2):  # 33 unusable files, 33 good ones, twice: 99-pair runs with 3 readers
        for i in range(33):
            ciphertext, key = encrypt_for(stranger, b"not ours")
            bad.append(env.state.add_file(env.parent_room_id, f"bad-{block}-{i}.mp4", ciphertext,
                                          file_keys={env.service_user.id: key}).id)
        good.update(seed_files(env, env.parent_room_id, 33, f"good-{block}"))
    readers = [env.add_user(f"reader{i}", "A") for i in range(3)]

    async with DracoonClient(env.account(), settings()) as client:
        stats = await serve_missing_keys(client, [env.service_user.require_keys().unlocked])

    assert (stats.served, stats.failed) == (3 * 66, 3 * 66)
    assert stats.pages <= 7  # re-reading from the first untried pair would take about 150 pages
    for file_id, plain in good.items():
        assert all(read_as(env, file_id, r.id, r.require_keys()) == plain for r in readers)


# -- replicas ---------------------------------------------------------------------------------


async def test_two_sharers_at_once_reach_the_same_end_state(
    dracoon_emulator: DracoonEnv, stack: AsyncExitStack
) -> None:
    env = dracoon_emulator
    files = seed_files(env, env.parent_room_id, 60, "rec")
    readers = [env.add_user("hank", "A"), env.add_user("ines", "RSA-4096")]
    provider = StaticProvider({DOMAIN: env.account(DOMAIN)})
    one = Sharer(provider, await make_pool(stack), sharer_cfg())
    two = Sharer(provider, await make_pool(stack), sharer_cfg())

    first, second = await asyncio.gather(one.run_once(), two.run_once())

    assert first[DOMAIN].failed == second[DOMAIN].failed == 0
    assert first[DOMAIN].served + second[DOMAIN].served >= 120  # duplicates are ignored by DRACOON
    assert pending_pairs(env) == 0
    for file_id, plain in files.items():
        for reader in readers:
            assert read_as(env, file_id, reader.id, reader.require_keys()) == plain
            assert len(env.state.nodes[file_id].file_keys[reader.id]) == 1


# -- the loop ---------------------------------------------------------------------------------


class ScriptedProvider:
    """list_domains() follows a script: an exception to raise, or a list of domains to return."""

    def __init__(self, script: list[BaseException | list[str]], hang: asyncio.Event | None = None) -> None:
        self.script = script
        self.calls = 0
        self.entered = asyncio.Event()
        self.hang = hang

    async def get(self, domain: str) -> DracoonAccount:
        raise UnknownInstance(domain)

    async def list_domains(self) -> list[str]:
        self.calls += 1
        self.entered.set()
        if self.hang is not None:
            await self.hang.wait()
        step = self.script[min(self.calls, len(self.script)) - 1]
        if isinstance(step, BaseException):
            raise step
        return step

    async def aclose(self) -> None:
        return None


def counting(target: int) -> tuple[list[bool], asyncio.Event, Callable[[bool], None]]:
    seen: list[bool] = []
    reached = asyncio.Event()

    def on_pass(ok: bool) -> None:
        seen.append(ok)
        if len(seen) >= target:
            reached.set()

    return seen, reached, on_pass


async def test_run_survives_failing_passes(stack: AsyncExitStack) -> None:
    provider = ScriptedProvider([TransientError("configurator down"), RuntimeError("bug"), []])
    seen, reached, on_pass = counting(3)
    metrics = Metrics()
    sharer = Sharer(provider, await make_pool(stack), sharer_cfg(interval=0.01), metrics=metrics,
                    health=SharerPasses(on_pass))
    stop = asyncio.Event()
    task = asyncio.create_task(sharer.run(stop))
    await asyncio.wait_for(reached.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert seen[:3] == [False, False, True]
    assert sample(metrics, "sharer_passes_total", outcome="failure") == 2


async def test_run_stops_promptly_mid_pass_and_between_passes(stack: AsyncExitStack) -> None:
    hang = asyncio.Event()
    provider = ScriptedProvider([[]], hang=hang)
    seen, _, on_pass = counting(1)
    sharer = Sharer(provider, await make_pool(stack), sharer_cfg(), health=SharerPasses(on_pass))
    stop = asyncio.Event()
    task = asyncio.create_task(sharer.run(stop))
    await asyncio.wait_for(provider.entered.wait(), 5)  # the first pass starts at once (first_delay 0)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert seen == []  # a cancelled pass is neither a success nor a failure

    hang.set()
    provider2 = ScriptedProvider([[]])
    seen2, done, on_pass2 = counting(1)
    waiting = Sharer(provider2, await make_pool(stack), sharer_cfg(interval=3600),
                     health=SharerPasses(on_pass2))
    stop2 = asyncio.Event()
    task2 = asyncio.create_task(waiting.run(stop2))
    await asyncio.wait_for(done.wait(), 5)
    stop2.set()  # now waiting for the next slot an hour away
    await asyncio.wait_for(task2, 1)
    assert (seen2, provider2.calls) == ([True], 1)


def test_schedule_keeps_to_the_grid() -> None:
    """Passes start at grid + n * interval, however long the previous one took."""
    assert next_slot(100.0, 0, 101.0, 10.0) == 1  # next start 110, not 111: no drift
    assert next_slot(100.0, 1, 110.0, 10.0) == 2
    assert next_slot(100.0, 1, 135.5, 10.0) == 4  # overran slots 2 and 3: skipped, not caught up
    assert next_slot(100.0, 4, 140.0, 10.0) == 5


async def test_unknown_instance_is_logged_and_skipped(
    dracoon_emulator: DracoonEnv, stack: AsyncExitStack
) -> None:
    env = dracoon_emulator
    seed_files(env, env.parent_room_id, 2, "rec")
    env.add_user("jo", "A")
    broken = env.account("broken.example.com", login="nobody", password=SecretStr("wrong-Login-Pw-9"))
    provider = StaticProvider({"broken.example.com": broken, DOMAIN: env.account(DOMAIN)})
    seen: list[bool] = []
    sharer = Sharer(provider, await make_pool(stack), sharer_cfg(), health=SharerPasses(seen.append))
    assert await sharer.run_once(only="missing.example.com") == {}
    results = await sharer.run_once()
    assert list(results) == [DOMAIN] and results[DOMAIN].served == 2
    assert seen == [False, False]
