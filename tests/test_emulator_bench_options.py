"""The emulator's benchmark options: ``discard_content`` (size and SHA-256 kept, bytes dropped)
and ``s3_part_etags="opaque"`` (part ETags that are no MD5).

Uploads go through the real DracoonClient over a socket, as the benchmarks' do; the default
configuration must keep storing the bytes exactly as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from dracoon_emulator import EmulatorConfig
from recording_storage.config import DracoonConfig
from recording_storage.crypto import EncryptedFileKey, FileEncryptor, encrypt_file_key, generate_file_key
from recording_storage.dracoon import DracoonClient, DracoonPermanentError, Node, S3DirectUpload
from recording_storage.dracoon.s3upload import MIN_PART_SIZE
from tests.fixtures.dracoon import DracoonEnv, EmulatorApi, emulator_config

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024
DISCARD = emulator_config(discard_content=True)
DISCARD_S3 = emulator_config(discard_content=True, use_s3_storage=True, s3_finishing_polls=0)


@pytest.fixture
async def client(dracoon_emulator: DracoonEnv) -> AsyncIterator[DracoonClient]:
    settings = DracoonConfig(max_retries=1, upload_chunk_size=CHUNK, parts_in_flight=2)
    async with DracoonClient(dracoon_emulator.account(), settings) as c:
        yield c


def _encrypted(env: DracoonEnv, size: int) -> tuple[bytes, EncryptedFileKey]:
    encryptor = FileEncryptor(generate_file_key())
    ciphertext = encryptor.update(os.urandom(size))
    encryptor.finalize()
    return ciphertext, encrypt_file_key(encryptor.file_key(), env.service_user.require_keys().key_pair
                                        .public_key_container)


async def _upload(client: DracoonClient, env: DracoonEnv, data: bytes, key: EncryptedFileKey,
                  *, direct_s3: bool = False, piece: int = 50_000) -> Node:
    upload = await client.open_upload(env.parent_room_id, "rec.bin", len(data), direct_s3=direct_s3)
    for start in range(0, len(data), piece):
        await upload.write(data[start:start + piece])
    return await upload.complete(key, resolution="fail")


def test_default_is_to_keep_content() -> None:
    assert EmulatorConfig().discard_content is False
    assert EmulatorConfig.from_dict({"discard_content": True}).discard_content is True


async def test_default_config_stores_the_bytes(client: DracoonClient, dracoon_emulator: DracoonEnv) -> None:
    data, key = _encrypted(dracoon_emulator, 3 * CHUNK + 5)
    node = await _upload(client, dracoon_emulator, data, key)
    stored = dracoon_emulator.state.node(node.id)
    assert stored.content == data and stored.size == len(data)
    assert stored.stored_size is None and stored.sha256 is None
    assert stored.hash == hashlib.md5(data).hexdigest()
    downloaded = b"".join([part async for part in client.download(node.id)])
    assert downloaded == data


@pytest.mark.parametrize("dracoon_emulator_config", [DISCARD])
async def test_discarded_proxy_upload_keeps_size_and_sha256(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    data, key = _encrypted(dracoon_emulator, 5 * CHUNK + 123)
    upload = await client.open_upload(dracoon_emulator.parent_room_id, "rec.bin", len(data))
    await upload.write(data[: 2 * CHUNK])
    for _ in range(500):  # the second chunk's POST may still be on its way
        (channel,) = dracoon_emulator.state.summary()["uploads"]
        if channel["received"] == 2 * CHUNK:
            break
        await asyncio.sleep(0.01)
    assert channel["received"] == 2 * CHUNK  # counted although not kept
    assert bytes(dracoon_emulator.state.uploads[upload.upload_id].data) == b""
    await upload.write(data[2 * CHUNK:])
    node = await upload.complete(key, resolution="fail")

    stored = dracoon_emulator.state.node(node.id)
    assert node.size == len(data) and stored.size == len(data)
    assert stored.content == b"" and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (await client.get_node(node.id)).size == len(data)
    assert dracoon_emulator.state.summary()["nodes"][-1]["size"] == len(data)
    with pytest.raises(DracoonPermanentError) as info:
        [part async for part in client.download(node.id)]
    assert info.value.status == 410


@pytest.mark.parametrize("dracoon_emulator_config", [DISCARD])
async def test_discarded_bytes_still_count_against_a_room_quota(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """The quota check sees received bytes, kept or not (a channel opened without a size)."""
    svc = dracoon_emulator.service_user
    room = dracoon_emulator.state.add_room("Small", encrypted=True, admins=[svc.id], quota=100_000)
    token = await dracoon_api.login_as(svc)
    channel = await dracoon_api.open_channel(token, room.id, "big.bin")
    headers = {"Content-Type": "application/octet-stream"}
    status, _ = await dracoon_api.call("POST", channel["uploadUrl"], data=bytes(60_000), headers=headers)
    assert status == 201
    status, body = await dracoon_api.call("POST", channel["uploadUrl"], data=bytes(60_000), headers=headers)
    assert status == 507, body


@pytest.mark.parametrize("dracoon_emulator_config", [DISCARD_S3])
async def test_discarded_s3_direct_upload_keeps_size_only(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    data, key = _encrypted(dracoon_emulator, 2 * MIN_PART_SIZE + 1000)
    upload = await client.open_upload(dracoon_emulator.parent_room_id, "rec.bin", len(data), direct_s3=True)
    await upload.write(data[:MIN_PART_SIZE])
    await upload.write(data[MIN_PART_SIZE:])
    channel = dracoon_emulator.state.uploads[upload.upload_id]
    node = await upload.complete(key, resolution="fail")

    stored = dracoon_emulator.state.node(node.id)
    assert node.size == len(data) and stored.size == len(data)
    assert stored.content == b"" and stored.sha256 is None  # parts arrive in any order: no whole hash
    assert channel.parts == {}  # cleared on completion; no part kept its bytes before that either


@pytest.mark.parametrize("dracoon_emulator_config", [DISCARD_S3])
async def test_discarded_s3_parts_are_still_checked_for_minimum_size(dracoon_emulator: DracoonEnv) -> None:
    """EntityTooSmall is judged on the received size, since the bytes are gone."""
    data, key = _encrypted(dracoon_emulator, MIN_PART_SIZE + 10)
    async with DracoonClient(dracoon_emulator.account(), DracoonConfig(max_retries=0)) as client:
        room = dracoon_emulator.parent_room_id
        upload = await client.open_upload(room, "rec.bin", len(data), direct_s3=True)
        assert isinstance(upload, S3DirectUpload)
        upload.part_size = 100_000  # below S3's minimum, which only the emulator's assembly checks
        await upload.write(data)
        channel = dracoon_emulator.state.uploads[upload.upload_id]
        with pytest.raises(DracoonPermanentError, match="EntityTooSmall"):
            await upload.complete(key, resolution="fail")
    sizes = [part.size for _, part in sorted(channel.parts.items())]
    assert sum(sizes) == len(data) and sizes[0] == 100_000
    assert all(part.data is None for part in channel.parts.values())



@pytest.mark.parametrize(
    "dracoon_emulator_config",
    [emulator_config(use_s3_storage=True, s3_finishing_polls=0, s3_part_etags="opaque")],
)
async def test_s3_direct_upload_carries_opaque_etags(
    client: DracoonClient, dracoon_emulator: DracoonEnv
) -> None:
    """The parallel-parts benchmark's emulator answers parts like S3 under SSE-KMS: ETags that are
    no MD5. The client must hand back what it was given, and the file must still be whole."""
    data, key = _encrypted(dracoon_emulator, 2 * MIN_PART_SIZE + 1000)
    upload = await client.open_upload(dracoon_emulator.parent_room_id, "rec.bin", len(data), direct_s3=True)
    await upload.write(data)
    channel = dracoon_emulator.state.uploads[upload.upload_id]
    pieces = [data[i : i + MIN_PART_SIZE] for i in range(0, len(data), MIN_PART_SIZE)]
    for _ in range(500):  # the last full part may still be on its way; completion clears them
        if len(channel.parts) == 2 and all(p.etag for p in channel.parts.values()):
            break
        await asyncio.sleep(0.01)
    sent = dict(channel.parts)
    node = await upload.complete(key, resolution="fail")
    assert dracoon_emulator.state.node(node.id).content == data
    assert len(pieces) == 3 and sorted(sent) == [1, 2]  # the third, short part goes at completion
    assert all(sent[n].etag != hashlib.md5(pieces[n - 1]).hexdigest() for n in sent)
