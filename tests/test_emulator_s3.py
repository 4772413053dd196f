"""Emulator: S3-direct uploads (presigned part URLs with S3's strictness, completion, status polling)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any
from urllib.parse import urlsplit

import pytest

from dracoon_emulator import EmulatorConfig
from tests.fixtures.dracoon import DracoonEnv, EmulatorApi, emulator_config, encrypt_for

pytestmark = pytest.mark.integration

MIN_PART = 1024  # the emulator's 5 MiB minimum, scaled down to keep the tests fast


@pytest.fixture
def dracoon_emulator_config() -> EmulatorConfig:
    return emulator_config(use_s3_storage=True, s3_min_part_size=MIN_PART)


async def _urls(api: EmulatorApi, token: str, upload_id: str, size: int, first: int, last: int) -> list[str]:
    status, body = await api.call(
        "POST",
        f"/api/v4/nodes/files/uploads/{upload_id}/s3_urls",
        token,
        json={"size": size, "firstPartNumber": first, "lastPartNumber": last},
    )
    assert status == 201, body
    assert [u["partNumber"] for u in body["urls"]] == list(range(first, last + 1))
    return [u["url"] for u in body["urls"]]


async def _put(api: EmulatorApi, url: str, data: bytes) -> str:
    async with api.session.put(url, data=data) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["ETag"]


async def _poll(api: EmulatorApi, token: str, upload_id: str) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v4/nodes/files/uploads/{upload_id}", token)
    assert status == 200
    return dict(body)


async def _s3_upload(
    api: EmulatorApi, env: DracoonEnv, token: str, name: str, data: bytes, part: int, **complete: object
) -> str:
    channel = await api.open_channel(token, env.parent_room_id, name, size=len(data), directS3Upload=True)
    upload_id = channel["uploadId"]
    pieces = [data[i : i + part] for i in range(0, len(data), part)] or [b""]
    parts = []
    for number, piece in enumerate(pieces, start=1):
        (url,) = await _urls(api, token, upload_id, len(piece), number, number)
        parts.append({"partNumber": number, "partEtag": (await _put(api, url, piece)).strip('"')})
    status, body = await api.call(
        "PUT", f"/api/v4/nodes/files/uploads/{upload_id}/s3", token, json={"parts": parts, **complete}
    )
    assert (status, body) == (202, None)
    return str(upload_id)


async def test_s3_upload_polls_finishing_then_done(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Parts assemble in order; the first poll says 'finishing', a later one 'done' with the node."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    ciphertext, file_key = encrypt_for(env.service_user.require_keys(), bytes(range(256)) * 10)
    upload_id = await _s3_upload(
        dracoon_api, env, token, "s3.bin", ciphertext, MIN_PART, fileKey=file_key, resolutionStrategy="fail"
    )
    assert (await _poll(dracoon_api, token, upload_id))["status"] == "finishing"
    assert env.state.files_in(env.parent_room_id) == []
    done = await _poll(dracoon_api, token, upload_id)
    assert done["status"] == "done" and done["node"]["name"] == "s3.bin"
    assert env.state.file_content(done["node"]["id"]) == ciphertext
    assert env.state.file_keys(done["node"]["id"]) == {env.service_user.id: file_key}
    assert (await _poll(dracoon_api, token, upload_id))["status"] == "done"


async def test_zero_byte_file_needs_one_empty_part(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    _, file_key = encrypt_for(env.service_user.require_keys(), b"")
    upload_id = await _s3_upload(dracoon_api, env, token, "empty.bin", b"", MIN_PART, fileKey=file_key)
    await _poll(dracoon_api, token, upload_id)
    done = await _poll(dracoon_api, token, upload_id)
    assert done["status"] == "done" and done["node"]["size"] == 0


async def test_part_put_rejects_chunked_and_wrong_length(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Like S3: chunked -> 501 NotImplemented; a length other than signed -> 403; bad signature -> 403."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    channel = await dracoon_api.open_channel(token, env.parent_room_id, "f", directS3Upload=True)
    (url,) = await _urls(dracoon_api, token, channel["uploadId"], 100, 1, 1)

    async def body() -> object:
        yield b"x" * 100

    async with dracoon_api.session.put(url, data=body()) as resp:
        assert resp.status == 501 and b"<Code>NotImplemented</Code>" in await resp.read()
    async with dracoon_api.session.put(url, data=b"x" * 99) as resp:
        assert resp.status == 403 and b"SignatureDoesNotMatch" in await resp.read()
    async with dracoon_api.session.put(
        url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), data=b"x" * 100
    ) as resp:
        assert resp.status == 403
    assert "X-Amz-Signature=" in url and urlsplit(url).path == f"/_s3/{channel['uploadId']}/1"
    etag = await _put(dracoon_api, url, b"x" * 100)
    assert etag == f'"{hashlib.md5(b"x" * 100).hexdigest()}"'


async def test_part_put_without_content_length(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """A PUT with neither Content-Length nor chunked encoding (raw HTTP/1.0-style) gets 411."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    channel = await dracoon_api.open_channel(token, env.parent_room_id, "f", directS3Upload=True)
    (url,) = await _urls(dracoon_api, token, channel["uploadId"], 10, 1, 1)
    parts = urlsplit(url)
    request = f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
    assert parts.hostname is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(request.encode())
    await writer.drain()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert reply.startswith(b"HTTP/1.1 411")


async def test_entity_too_small_and_name_clash_show_in_status(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Small non-last parts and a 'fail' clash are reported by the status poll, not the 202."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    ciphertext, file_key = encrypt_for(env.service_user.require_keys(), b"z" * (3 * MIN_PART))
    upload_id = await _s3_upload(
        dracoon_api, env, token, "small.bin", ciphertext, MIN_PART - 1, fileKey=file_key
    )
    await _poll(dracoon_api, token, upload_id)
    failed = await _poll(dracoon_api, token, upload_id)
    assert failed["status"] == "error" and failed["errorDetails"]["code"] == 400
    assert "EntityTooSmall" in failed["errorDetails"]["debugInfo"]

    env.state.add_file(env.parent_room_id, "Taken.bin", b"old")
    upload_id = await _s3_upload(
        dracoon_api,
        env,
        token,
        "taken.BIN",
        ciphertext,
        MIN_PART,
        fileKey=file_key,
        resolutionStrategy="fail",
    )
    await _poll(dracoon_api, token, upload_id)
    failed = await _poll(dracoon_api, token, upload_id)
    assert failed["status"] == "error"
    assert failed["errorDetails"] == {
        "code": 409,
        "message": "Conflict",
        "debugInfo": "File cannot be overwritten",
    }


async def test_completion_checks(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Wrong or missing ETags -> -80045, missing fileKey -> -40763, proxy calls on an S3 channel fail."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    ciphertext, file_key = encrypt_for(env.service_user.require_keys(), b"q" * 10)
    channel = await dracoon_api.open_channel(token, env.parent_room_id, "c.bin", directS3Upload=True)
    upload_id = channel["uploadId"]
    (url,) = await _urls(dracoon_api, token, upload_id, len(ciphertext), 1, 1)
    etag = (await _put(dracoon_api, url, ciphertext)).strip('"')
    complete = f"/api/v4/nodes/files/uploads/{upload_id}/s3"
    for parts in ([{"partNumber": 1, "partEtag": "0" * 32}], [{"partNumber": 2, "partEtag": etag}], []):
        status, body = await dracoon_api.call(
            "PUT", complete, token, json={"parts": parts, "fileKey": file_key}
        )
        assert (status, body["errorCode"]) == (400, -80045), parts
    status, body = await dracoon_api.call(
        "PUT", complete, token, json={"parts": [{"partNumber": 1, "partEtag": etag}]}
    )
    assert (status, body["errorCode"]) == (400, -40763)
    status, body = await dracoon_api.call("POST", channel["uploadUrl"], data=b"x")
    assert (status, body["errorCode"]) == (400, -90033)
    status, _ = await dracoon_api.call(
        "PUT",
        complete,
        token,
        json={"parts": [{"partNumber": 1, "partEtag": f'"{etag}"'}], "fileKey": file_key},
    )
    assert status == 202
    status, body = await dracoon_api.call(
        "POST",
        f"/api/v4/nodes/files/uploads/{upload_id}/s3_urls",
        token,
        json={"size": 1, "firstPartNumber": 2, "lastPartNumber": 2},
    )
    assert (status, body["errorCode"]) == (400, -20503)


async def test_presigned_url_request_rules(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    proxy = await dracoon_api.open_channel(token, env.parent_room_id, "p")
    s3 = await dracoon_api.open_channel(token, env.parent_room_id, "s", directS3Upload=True)
    cases = [
        (proxy["uploadId"], {"size": 10, "firstPartNumber": 1, "lastPartNumber": 1}, 404, -90034),
        ("no-such-upload", {"size": 10, "firstPartNumber": 1, "lastPartNumber": 1}, 404, -20501),
        (s3["uploadId"], {"size": -1, "firstPartNumber": 1, "lastPartNumber": 1}, 400, -80046),
        (s3["uploadId"], {"size": 10, "firstPartNumber": 0, "lastPartNumber": 1}, 400, -80001),
        (s3["uploadId"], {"size": 10, "firstPartNumber": 3, "lastPartNumber": 2}, 400, -80002),
        (s3["uploadId"], {"size": 10, "firstPartNumber": 1}, 400, -80000),
    ]
    for upload_id, body, status_expected, code in cases:
        status, answer = await dracoon_api.call(
            "POST", f"/api/v4/nodes/files/uploads/{upload_id}/s3_urls", token, json=body
        )
        assert (status, answer["errorCode"]) == (status_expected, code), body
    other = env.add_user("other", perms="edit")
    other_token = await dracoon_api.login_as(other)
    status, answer = await dracoon_api.call(
        "GET", f"/api/v4/nodes/files/uploads/{s3['uploadId']}", other_token
    )
    assert (status, answer["errorCode"]) == (404, -20501)  # only the channel's creator may use it


@pytest.mark.parametrize(
    "dracoon_emulator_config", [emulator_config(use_s3_storage=True, s3_enforce_direct_upload=True)]
)
async def test_enforced_direct_upload(dracoon_api: EmulatorApi, dracoon_emulator: DracoonEnv) -> None:
    """With S3 direct upload enforced, a proxy channel is refused (-90033) and system info says so."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    status, body = await dracoon_api.call(
        "POST", "/api/v4/nodes/files/uploads", token, json={"parentId": env.parent_room_id, "name": "f"}
    )
    assert (status, body["errorCode"]) == (400, -90033)
    status, info = await dracoon_api.call("GET", "/api/v4/public/system/info")
    assert info["s3EnforceDirectUpload"] is True and info["useS3Storage"] is True


def test_default_minimum_part_size_is_s3s() -> None:
    assert EmulatorConfig().s3_min_part_size == 5 * 1024 * 1024


@pytest.mark.parametrize(
    "dracoon_emulator_config",
    [emulator_config(use_s3_storage=True, s3_min_part_size=MIN_PART, s3_part_etags="opaque")],
)
async def test_opaque_etags_are_fresh_per_put_and_only_the_latest_completes(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """Like S3 under SSE-KMS: the ETag is no MD5, so a client must carry the one it was given."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    ciphertext, file_key = encrypt_for(env.service_user.require_keys(), b"k" * 3000)
    channel = await dracoon_api.open_channel(token, env.parent_room_id, "k.bin", directS3Upload=True)
    upload_id = channel["uploadId"]
    etags = []
    for _ in range(2):  # the same part PUT twice, as a retry does
        (url,) = await _urls(dracoon_api, token, upload_id, len(ciphertext), 1, 1)
        etags.append((await _put(dracoon_api, url, ciphertext)).strip('"'))
    assert etags[0] != etags[1]
    assert hashlib.md5(ciphertext).hexdigest() not in etags
    assert all(len(e) == 32 and int(e, 16) >= 0 for e in etags)  # still looks like an S3 ETag
    complete = f"/api/v4/nodes/files/uploads/{upload_id}/s3"
    for etag, expected in ((etags[0], 400), (etags[1], 202)):
        parts = [{"partNumber": 1, "partEtag": etag}]
        status, _ = await dracoon_api.call("PUT", complete, token, json={"parts": parts, "fileKey": file_key})
        assert status == expected, etag
    await _poll(dracoon_api, token, upload_id)
    done = await _poll(dracoon_api, token, upload_id)
    assert done["status"] == "done" and env.state.file_content(done["node"]["id"]) == ciphertext


def test_part_etag_mode_is_checked() -> None:
    assert EmulatorConfig().s3_part_etags == "md5"
    assert EmulatorConfig.from_dict({"s3_part_etags": "opaque"}).s3_part_etags == "opaque"
    with pytest.raises(ValueError, match="s3_part_etags must be one of"):
        EmulatorConfig.from_dict({"s3_part_etags": "crc32"})
