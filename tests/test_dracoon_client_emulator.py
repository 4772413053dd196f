"""DracoonClient against the DRACOON emulator over real sockets: auth, rooms, uploads, faults, keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from recording_storage.config import DracoonConfig
from recording_storage.crypto import (
    FileDecryptor,
    FileEncryptor,
    KeyPairVersion,
    UnlockedKeyPair,
    encrypt_file_key,
    generate_file_key,
    rewrap_file_key,
)
from recording_storage.dracoon import (
    AuthenticationFailed,
    DracoonClient,
    DracoonPermanentError,
    DracoonTransientError,
    FileKeyItem,
    Node,
    NotFound,
    ProxyUpload,
    QuotaExceeded,
    S3DirectUpload,
)
from recording_storage.dracoon.s3upload import MIN_PART_SIZE
from tests.fixtures.dracoon import DracoonEnv, SeededUser, emulator_config, encrypt_for
from tests.fixtures.metrics import RecordedMetrics

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024


def settings(**overrides: Any) -> DracoonConfig:
    return DracoonConfig(**{"max_retries": 3, "upload_chunk_size": CHUNK, **overrides})


def client_for(
    env: DracoonEnv, user: SeededUser | None = None, hook: Any = None, **overrides: Any
) -> DracoonClient:
    account = env.account()
    if user is not None:
        account = env.account(login=user.login, password=SecretStr(user.password))
    metrics = RecordedMetrics(on_request=hook) if hook is not None else None
    return DracoonClient(account, settings(**overrides), metrics=metrics, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
async def client(dracoon_emulator: DracoonEnv) -> AsyncIterator[DracoonClient]:
    async with client_for(dracoon_emulator) as c:
        yield c


def payload(size: int) -> bytes:
    return bytes((i * 31 + 7) % 256 for i in range(size))


async def upload_encrypted(
    client: DracoonClient, env: DracoonEnv, room_id: int, name: str, plain: bytes, *, step: int = 50_000
) -> Node:
    """What the transferer does: one GCM stream, ciphertext written as produced, file key on complete."""
    assert env.service_user.keys is not None
    encryptor = FileEncryptor(generate_file_key(), size=len(plain))
    upload = await client.open_upload(
        room_id, name, len(plain), expire_at=None, classification=2, notes="rec"
    )
    for i in range(0, len(plain), step):
        await upload.write(encryptor.update(plain[i : i + step]))
    encryptor.finalize()
    key = encrypt_file_key(encryptor.file_key(), env.service_user.keys.key_pair.public_key_container)
    return await upload.complete(key, resolution="fail")


async def download_plain(client: DracoonClient, file_id: int, keys: UnlockedKeyPair) -> bytes:
    decryptor = FileDecryptor(keys.decrypt_file_key(await client.get_user_file_key(file_id)))
    out = bytearray()
    async for chunk in client.download(file_id):
        out += decryptor.update(chunk)
    decryptor.finalize()
    return bytes(out)


# -- auth ------------------------------------------------------------------------------------------


async def test_expired_token_renewed_on_401(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """A token the server considers expired is refreshed once and the call succeeds."""
    me = await client.ping_authenticated()
    assert me.id == dracoon_emulator.service_user.id
    dracoon_emulator.state.clock.advance(3600 + 5)  # server side: the access token is now expired
    assert (await client.ping_authenticated()).id == me.id
    assert (client.tokens.logins, client.tokens.refreshes) == (1, 1)


async def test_expired_refresh_token_logs_in_again(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """With the refresh token expired too, the client falls back to a password grant."""
    await client.ping_authenticated()
    dracoon_emulator.state.clock.advance(31 * 86400)
    await client.ping_authenticated()
    assert client.tokens.logins == 2


async def test_injected_token_expiry_recovered(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """The emulator's expire_token fault (token dies mid-session) costs one refresh, no error."""
    await client.ping_authenticated()
    rule = dracoon_emulator.emulator.faults.add(
        path="^/api/v4/nodes/", method="GET", expire_token=True, count=1
    )
    node = await client.get_node(dracoon_emulator.parent_room_id)
    assert node.is_encrypted and rule.fired == 1 and client.tokens.refreshes == 1


async def test_wrong_password_is_authentication_failed(dracoon_emulator: DracoonEnv) -> None:
    """A rejected login names the account and the OAuth error, never the password."""
    account = dracoon_emulator.account(password=SecretStr("Not-The-Pw-42"))
    async with DracoonClient(account, settings()) as c:
        with pytest.raises(AuthenticationFailed) as info:
            await c.ping_authenticated()
    assert "svc-recordings @ http://127.0.0.1" in str(info.value) and "invalid_grant" in str(info.value)
    assert "Not-The-Pw-42" not in str(info.value)


# -- rooms -----------------------------------------------------------------------------------------


async def test_room_path_created_then_reused(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """Missing rooms are created segment by segment (inheriting); a second call creates nothing."""
    parent = dracoon_emulator.parent_room_id
    room = await client.ensure_room_path(parent, ["2024", "Team A", "Calls"])
    assert room.is_room and room.is_encrypted and room.name == "Calls"
    state = dracoon_emulator.state
    chain = [state.node(room.id)]
    while chain[-1].parent_id != parent:
        chain.append(state.node(chain[-1].parent_id))  # type: ignore[arg-type]
    assert [n.name for n in reversed(chain)] == ["2024", "Team A", "Calls"]
    count = len(state.nodes)
    async with client_for(dracoon_emulator) as fresh:  # no cache: resolved through the server
        same = await fresh.ensure_room_path(parent, ["2024", "team a", "CALLS"])  # case-insensitive
    assert same.id == room.id and len(state.nodes) == count
    assert (await client.ensure_room_path(parent, [])).id == parent


async def test_room_lookup_follows_dracoon_name_identity(dracoon_emulator: DracoonEnv) -> None:
    """A room spelt in another case or in decomposed Unicode is the same room: found, not created
    again beside it (names go out NFC; DRACOON compares ignoring case, without normalising)."""
    parent = dracoon_emulator.parent_room_id
    existing = dracoon_emulator.state.add_room("Caf\u00e9 R2", parent_id=parent)
    count = len(dracoon_emulator.state.nodes)
    async with client_for(dracoon_emulator) as c:
        for spelling in ("caf\u00e9 r2", "CAFE\u0301 R2"):
            assert (await c.ensure_room_path(parent, [spelling])).id == existing.id
    assert len(dracoon_emulator.state.nodes) == count


async def test_concurrent_creates_yield_one_room(dracoon_emulator: DracoonEnv) -> None:
    """Five workers (one client) plus a second process (another client) racing: one room per name."""
    parent = dracoon_emulator.parent_room_id
    seen: list[tuple[str, str, int | None]] = []
    hook = lambda m, p, s: seen.append((m, p, s))  # noqa: E731
    async with client_for(dracoon_emulator, hook=hook) as one, client_for(dracoon_emulator, hook=hook) as two:
        rooms = await asyncio.gather(
            *(one.ensure_room_path(parent, ["Race", "Inner"]) for _ in range(5)),
            two.ensure_room_path(parent, ["race", "inner"]),
        )
    assert len({r.id for r in rooms}) == 1
    assert ("POST", "/nodes/rooms", 409) in seen  # the race really happened and was absorbed
    names = [n.name.lower() for n in dracoon_emulator.state.nodes.values() if n.type == "room"]
    assert names.count("race") == 1 and names.count("inner") == 1


async def test_stale_room_cache_recovers(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """A path resolved again within the cache's lifetime costs no request at all. A cached room
    deleted behind our back is noticed at the first call on it (a transient ``room_gone``, never
    a permanent 404), and the next resolution creates the path afresh."""
    parent = dracoon_emulator.parent_room_id
    first = await client.ensure_room_path(parent, ["Gone", "Deeper"])
    requests = dracoon_emulator.emulator.faults.requests
    before = sum(requests.values())
    assert (await client.ensure_room_path(parent, ["Gone", "Deeper"])) == first
    assert sum(requests.values()) == before
    dracoon_emulator.state.delete_node(first.parent_id)  # type: ignore[arg-type]
    stale = await client.ensure_room_path(parent, ["Gone", "Deeper"])
    with pytest.raises(DracoonTransientError) as err:
        await client.find_child(stale.id, "recording.mp4")
    assert err.value.code == "room_gone"
    second = await client.ensure_room_path(parent, ["Gone", "Deeper"])
    assert second.id != first.id and second.id in dracoon_emulator.state.nodes
    assert await client.find_child(second.id, "recording.mp4") is None


async def test_deleted_room_that_was_not_cached_stays_not_found(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """Only rooms handed out from the cache turn a 404 into ``room_gone``; another node is 404."""
    room = dracoon_emulator.state.add_room("Elsewhere", parent_id=dracoon_emulator.parent_room_id)
    dracoon_emulator.state.delete_node(room.id)
    with pytest.raises(NotFound):
        await client.find_child(room.id, "recording.mp4")


async def test_room_path_rejects_non_rooms_and_plain_rooms(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """A folder in the way is 'not_a_room'; an unencrypted room fails ensure_encrypted_room."""
    state, svc = dracoon_emulator.state, dracoon_emulator.service_user
    state.add_folder("Docs", dracoon_emulator.parent_room_id)
    with pytest.raises(DracoonPermanentError) as info:
        await client.ensure_room_path(dracoon_emulator.parent_room_id, ["Docs", "X"])
    assert info.value.code == "not_a_room"
    plain = state.add_room("Plain", encrypted=False, admins=[svc.id])
    node = await client.ensure_room_path(plain.id, [])
    with pytest.raises(DracoonPermanentError) as enc:
        client.ensure_encrypted_room(node)
    assert enc.value.code == "room_not_encrypted"
    with pytest.raises(DracoonPermanentError) as bad:
        await client.ensure_room_path(dracoon_emulator.parent_room_id, ["a:b"])
    assert bad.value.code == "bad_node_name"


# -- uploads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
async def test_proxy_upload_round_trip(
    client: DracoonClient, dracoon_emulator: DracoonEnv, size: int
) -> None:
    """Encrypted proxy upload of each boundary size reads back (download + decrypt) identically."""
    plain = payload(size)
    node = await upload_encrypted(
        client, dracoon_emulator, dracoon_emulator.parent_room_id, f"f{size}.bin", plain
    )
    assert node.size == size and node.type == "file"
    assert dracoon_emulator.state.file_content(node.id) != plain or size == 0
    assert dracoon_emulator.service_user.keys is not None
    assert await download_plain(client, node.id, dracoon_emulator.service_user.keys.unlocked) == plain


@pytest.mark.parametrize("dracoon_emulator_config", [emulator_config(use_s3_storage=True)])
@pytest.mark.parametrize("size", [0, 1, MIN_PART_SIZE, MIN_PART_SIZE + 1, 2 * MIN_PART_SIZE + 3])
async def test_s3_upload_round_trip(client: DracoonClient, dracoon_emulator: DracoonEnv, size: int) -> None:
    """With useS3Storage the client goes S3-direct; every size survives the round trip."""
    plain = payload(size)
    parent = dracoon_emulator.parent_room_id
    upload = await client.open_upload(parent, "probe.bin", 1, expire_at=None, classification=None, notes=None)
    assert isinstance(upload, S3DirectUpload)
    await upload.cancel()
    node = await upload_encrypted(client, dracoon_emulator, parent, f"s3-{size}.bin", plain, step=3 * 1024**2)
    assert node.size == size
    assert dracoon_emulator.service_user.keys is not None
    assert await download_plain(client, node.id, dracoon_emulator.service_user.keys.unlocked) == plain


async def test_upload_carries_expiry_classification_notes(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """Expiration (UTC, Z), classification and notes set on the channel reach the file."""
    from datetime import UTC, datetime

    assert dracoon_emulator.service_user.keys is not None
    upload = await client.open_upload(
        dracoon_emulator.parent_room_id,
        "exp.bin",
        3,
        expire_at=datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC),
        classification=3,
        notes="source marker",
    )
    encryptor = FileEncryptor(generate_file_key())
    await upload.write(encryptor.update(b"abc"))
    encryptor.finalize()
    node = await upload.complete(
        encrypt_file_key(
            encryptor.file_key(), dracoon_emulator.service_user.keys.key_pair.public_key_container
        )
    )
    full = await client.get_node(node.id)
    assert full.classification == 3 and full.notes == "source marker"
    assert full.expire_at is not None and full.expire_at.startswith("2031-02-03T04:05:06")


async def test_connection_reset_mid_chunk_cancels_channel(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """A reset during a chunk POST is upload_interrupted (restart the file) and the channel is gone."""
    dracoon_emulator.emulator.faults.add(path="^/api/v4/uploads/", method="POST", reset="request", count=1)
    upload = await client.open_upload(
        dracoon_emulator.parent_room_id, "r.bin", CHUNK, expire_at=None, classification=None, notes=None
    )
    assert isinstance(upload, ProxyUpload)
    await upload.write(payload(CHUNK))  # POSTed in the background; the failure comes next
    with pytest.raises(DracoonTransientError) as info:
        await upload.complete(None)
    assert info.value.code == "upload_interrupted"
    channel = dracoon_emulator.state.uploads.get(upload.upload_id)
    assert channel is None or channel.status != "transfer"


async def test_missing_file_key_on_encrypted_room_is_permanent(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """Completing without fileKey in an encrypted room is refused (-40763) and cancels the channel."""
    upload = await client.open_upload(
        dracoon_emulator.parent_room_id, "nokey.bin", 2, expire_at=None, classification=None, notes=None
    )
    await upload.write(b"xy")
    with pytest.raises(DracoonPermanentError) as info:
        await upload.complete(None)
    assert info.value.code == "file_key_required"
    channel = dracoon_emulator.state.uploads.get(upload.upload_id)
    assert channel is None or channel.status != "transfer"


async def test_download_cut_mid_body_is_transient(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """A connection dropped while streaming a download surfaces as a transient network error."""
    svc = dracoon_emulator.service_user
    assert svc.keys is not None
    ciphertext, fk = encrypt_for(svc.keys, payload(100_000))
    node = dracoon_emulator.state.add_file(
        dracoon_emulator.parent_room_id, "dl.bin", ciphertext, file_keys={svc.id: fk}
    )
    dracoon_emulator.emulator.faults.add(path="^/api/v4/downloads/", reset="response", count=1)
    with pytest.raises(DracoonTransientError) as info:
        async for _ in client.download(node.id):
            pass
    assert info.value.code == "network"
    assert b"".join([c async for c in client.download(node.id)]) == ciphertext


# -- faults ----------------------------------------------------------------------------------------


async def test_5xx_and_429_faults_are_retried(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """503s and a 429 with Retry-After on listing calls are absorbed by the retries."""
    faults = dracoon_emulator.emulator.faults
    unavailable = faults.add(path="^/api/v4/nodes$", method="GET", status=503, count=2)
    throttled = faults.add(path="^/api/v4/nodes/rooms$", method="POST", status=429, retry_after=0, count=1)
    room = await client.ensure_room_path(dracoon_emulator.parent_room_id, ["Faulty"])
    assert room.name == "Faulty" and unavailable.fired == 2 and throttled.fired == 1


async def test_persistent_5xx_surfaces_transient(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """When retries run out the caller gets a transient error with the status."""
    dracoon_emulator.emulator.faults.add(path="^/api/v4/nodes/", method="GET", status=502)
    with pytest.raises(DracoonTransientError) as info:
        await client.get_node(dracoon_emulator.parent_room_id)
    assert info.value.status == 502


async def test_quota_is_reported_as_quota_exceeded(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """A room quota smaller than the file answers 507 at channel creation -> QuotaExceeded."""
    svc = dracoon_emulator.service_user
    small = dracoon_emulator.state.add_room("Small", encrypted=True, admins=[svc.id], quota=10)
    with pytest.raises(QuotaExceeded) as info:
        await client.open_upload(small.id, "big.bin", 1000, expire_at=None, classification=None, notes=None)
    assert info.value.code == "quota" and info.value.status == 507


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dracoon_key_version", [KeyPairVersion.A])
async def test_missing_keys_paginate_beyond_100(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """3 members x 45 files = 135 missing keys: all listed across pages, all served, none left."""
    env, svc = dracoon_emulator, dracoon_emulator.service_user
    assert svc.keys is not None
    members = [env.add_user(f"member{i}") for i in range(3)]
    for i in range(45):
        ciphertext, fk = encrypt_for(svc.keys, f"file {i}".encode())
        env.state.add_file(env.parent_room_id, f"f{i}.bin", ciphertext, file_keys={svc.id: fk})
    pages = [p async for p in client.iter_missing_file_keys(room_id=env.parent_room_id)]
    pairs = {(it.user_id, it.file_id) for p in pages for it in p.items}
    assert len(pages) >= 2 and all(len(p.items) <= 100 for p in pages)
    assert len(pairs) == 135 and {u for u, _ in pairs} == {m.id for m in members}
    items: list[FileKeyItem] = []
    for page in pages:
        publics = {u.id: u.public_key_container for u in page.users}
        mine = {f.id: f.file_key_container for f in page.files}
        items += [
            FileKeyItem(
                it.file_id,
                it.user_id,
                rewrap_file_key(mine[it.file_id], svc.keys.unlocked, publics[it.user_id]),
            )
            for it in page.items
        ]
    await client.set_file_keys(items)
    assert (await client.missing_file_keys(room_id=env.parent_room_id)).items == ()


async def test_shared_file_decrypts_with_second_members_key(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """Upload encrypted, serve the missing key to a new member, who downloads and decrypts it."""
    env = dracoon_emulator
    assert env.service_user.keys is not None
    plain = payload(3 * CHUNK + 11)
    node = await upload_encrypted(client, env, env.parent_room_id, "shared.bin", plain)
    member = env.add_user("colleague")
    assert member.keys is not None
    page = await client.missing_file_keys(file_id=node.id)
    assert [(it.user_id, it.file_id) for it in page.items] == [(member.id, node.id)]
    public = next(u.public_key_container for u in page.users if u.id == member.id)
    mine = next(f.file_key_container for f in page.files if f.id == node.id)
    await client.set_file_keys(
        [FileKeyItem(node.id, member.id, rewrap_file_key(mine, env.service_user.keys.unlocked, public))]
    )
    async with client_for(env, member) as theirs:
        assert await download_plain(theirs, node.id, member.keys.unlocked) == plain
    assert (await client.missing_file_keys(file_id=node.id)).items == ()


async def test_key_pairs_and_user_file_key(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """The account's key pair comes back parsed; a file key can be fetched per file."""
    keys = dracoon_emulator.service_user.keys
    assert keys is not None
    pairs = await client.get_key_pairs()
    assert [p.public_key_container for p in pairs] == [keys.key_pair.public_key_container]
    assert (
        await client.get_key_pair(keys.version)
    ).public_key_container == keys.key_pair.public_key_container


async def test_delete_nodes(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    """Deleted nodes disappear from the tenant."""
    room = await client.ensure_room_path(dracoon_emulator.parent_room_id, ["Tmp"])
    await client.delete_nodes([room.id])
    assert room.id not in dracoon_emulator.state.nodes
