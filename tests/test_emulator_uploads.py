"""Emulator: upload channels, proxy chunks, completion rules and strategies, cancel, download."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from dracoon_emulator.model import GCM_MAX_PLAINTEXT
from tests.fixtures.dracoon import DracoonEnv, EmulatorApi, encrypt_for

pytestmark = pytest.mark.integration


async def _upload(api: EmulatorApi, url: str, chunks: list[bytes], ranges: list[str | None]) -> None:
    for chunk, content_range in zip(chunks, ranges, strict=True):
        headers = {"Content-Type": "application/octet-stream"}
        if content_range is not None:
            headers["Content-Range"] = content_range
        status, body = await api.call("POST", url, data=chunk, headers=headers)
        assert status == 201, body
        assert body == {"size": len(chunk), "hash": hashlib.md5(chunk).hexdigest()}


@pytest.mark.parametrize(
    "style",
    ["exact", "java", "python", "none"],
)
async def test_encrypted_proxy_upload_roundtrip(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi, style: str
) -> None:
    """Chunks are appended in order whatever Content-Range style; the stored bytes and key come back."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    ciphertext, file_key = encrypt_for(env.service_user.require_keys(), b"recording " * 1000)
    chunks = [ciphertext[:4000], ciphertext[4000:8000], ciphertext[8000:]]
    starts = [0, 4000, 8000]
    styles: dict[str, list[str | None]] = {
        "exact": [
            f"bytes {s}-{s + len(c) - 1}/{len(ciphertext)}" for s, c in zip(starts, chunks, strict=True)
        ],
        "java": [f"bytes {s}-{s + len(c)}/*" for s, c in zip(starts, chunks, strict=True)],
        "python": [f"bytes 0-0/{len(ciphertext)}"] * 3,
        "none": [None] * 3,
    }
    ranges = styles[style]
    expire = (
        (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )
    channel = await dracoon_api.open_channel(
        token,
        env.parent_room_id,
        "call.mp4",
        size=len(ciphertext),
        classification=3,
        notes="weekly",
        expiration={"enableExpiration": True, "expireAt": expire},
    )
    assert channel["uploadUrl"] == f"{env.base_url}/api/v4/uploads/{channel['token']}"
    await _upload(dracoon_api, channel["uploadUrl"], chunks, ranges)
    status, node = await dracoon_api.call(
        "PUT", channel["uploadUrl"], json={"fileKey": file_key, "resolutionStrategy": "fail"}
    )
    assert status == 201, node
    assert (node["name"], node["size"], node["type"]) == ("call.mp4", len(ciphertext), "file")
    assert node["classification"] == 3 and node["notes"] == "weekly" and node["expireAt"] == expire
    assert node["hash"] == hashlib.md5(ciphertext).hexdigest()
    assert env.state.file_content(node["id"]) == ciphertext
    assert env.state.file_keys(node["id"]) == {env.service_user.id: file_key}
    status, _ = await dracoon_api.call("POST", channel["uploadUrl"], data=b"late")
    assert status == 404  # the channel is closed after a successful completion
    status, key = await dracoon_api.call("GET", f"/api/v4/nodes/files/{node['id']}/user_file_key", token)
    assert (status, key) == (200, file_key)


async def test_download_paths(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Download token URL (no auth), direct authenticated download and a byte range."""
    env = dracoon_emulator
    node = env.state.add_file(env.parent_room_id, "f.bin", bytes(range(256)) * 4)
    token = await dracoon_api.login_as(env.service_user)
    status, body = await dracoon_api.call("POST", f"/api/v4/nodes/files/{node.id}/downloads", token)
    assert status == 200 and body["downloadUrl"].startswith(f"{env.base_url}/api/v4/downloads/")
    async with dracoon_api.session.get(body["downloadUrl"]) as resp:
        assert resp.status == 200 and await resp.read() == node.content
    async with dracoon_api.session.get(
        f"{env.base_url}/api/v4/nodes/files/{node.id}/downloads",
        headers={"Authorization": f"Bearer {token}", "Range": "bytes=10-19"},
    ) as resp:
        assert resp.status == 206 and await resp.read() == node.content[10:20]
        assert resp.headers["Content-Range"] == f"bytes 10-19/{node.size}"
    status, _ = await dracoon_api.call("GET", f"{env.base_url}/api/v4/downloads/forged")
    assert status == 401


async def test_multipart_chunks_on_deprecated_routes(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """The Java SDK's path: multipart part 'file' to /nodes/files/uploads/{id}, complete by id."""
    env = dracoon_emulator
    plain = env.state.add_room("Plain", None, admins=[env.service_user.id])
    token = await dracoon_api.login_as(env.service_user)
    channel = await dracoon_api.open_channel(token, plain.id, "doc.txt")
    url = f"/api/v4/nodes/files/uploads/{channel['uploadId']}"
    for part in (b"hello ", b"world"):
        form = aiohttp.FormData()
        form.add_field("file", part, filename="doc.txt", content_type="application/octet-stream")
        status, body = await dracoon_api.call("POST", url, token, data=form)
        assert (status, body["size"]) == (201, len(part))
    status, _ = await dracoon_api.call("POST", url, data=b"x")
    assert status == 401  # the id route needs the Bearer token
    status, node = await dracoon_api.call("PUT", url, token, json={})
    assert status == 201 and env.state.file_content(node["id"]) == b"hello world"
    assert env.state.file_keys(node["id"]) == {}


async def test_bad_content_range(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    token = await dracoon_api.login_as(dracoon_emulator.service_user)
    channel = await dracoon_api.open_channel(token, dracoon_emulator.parent_room_id, "f.bin")
    for bad in ("bytes=0-3/4", "bytes 5-2/10", "items 0-1/2"):
        status, body = await dracoon_api.call(
            "POST", channel["uploadUrl"], data=b"abcd", headers={"Content-Range": bad}
        )
        assert (status, body["errorCode"]) == (400, -80021), bad


async def test_file_key_rules(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """fileKey required iff encrypted (-40763 / -40001); must match the key pair version (-80062);
    a failed completion leaves the channel open for another try."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    ciphertext, file_key = encrypt_for(env.service_user.require_keys(), b"secret")
    channel = await dracoon_api.open_channel(token, env.parent_room_id, "a.bin")
    await _upload(dracoon_api, channel["uploadUrl"], [ciphertext], [None])
    status, body = await dracoon_api.call("PUT", channel["uploadUrl"], json={})
    assert (status, body["errorCode"]) == (400, -40763)
    other = "A" if file_key["version"] != "A" else "RSA-4096/AES-256-GCM"
    status, body = await dracoon_api.call(
        "PUT", channel["uploadUrl"], json={"fileKey": {**file_key, "version": other}}
    )
    assert (status, body["errorCode"]) == (400, -80062)
    status, body = await dracoon_api.call(
        "PUT", channel["uploadUrl"], json={"fileKey": {**file_key, "iv": "AAAA"}}
    )
    assert (status, body["errorCode"]) == (400, -80062)
    status, body = await dracoon_api.call(
        "PUT", channel["uploadUrl"], json={"fileKey": file_key, "keepShareLinks": True}
    )
    assert (status, body["errorCode"]) == (400, -80034)
    status, node = await dracoon_api.call("PUT", channel["uploadUrl"], json={"fileKey": file_key})
    assert status == 201 and env.state.file_content(node["id"]) == ciphertext
    plain = env.state.add_room("Plain", None, admins=[env.service_user.id])
    channel = await dracoon_api.open_channel(token, plain.id, "b.bin")
    status, body = await dracoon_api.call("PUT", channel["uploadUrl"], json={"fileKey": file_key})
    assert (status, body["errorCode"]) == (400, -40001)


async def test_resolution_strategies(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """fail -> 409 (channel stays open), autorename -> 'name (1).ext', overwrite -> new node, -40010."""
    env = dracoon_emulator
    plain = env.state.add_room("Plain", None, admins=[env.service_user.id])
    old = env.state.add_file(plain.id, "Call.mp4", b"old")
    env.state.add_folder("Folder", plain.id)
    token = await dracoon_api.login_as(env.service_user)

    async def upload(name: str, data: bytes, **complete: object) -> tuple[int, Any]:
        channel = await dracoon_api.open_channel(token, plain.id, name)
        await _upload(dracoon_api, channel["uploadUrl"], [data], [None])
        return await dracoon_api.call("PUT", channel["uploadUrl"], json=complete)

    status, body = await upload("call.MP4", b"new", resolutionStrategy="fail")
    assert status == 409 and "errorCode" not in body  # DRACOON leaves it out, never null
    status, node = await upload("call.mp4", b"new", resolutionStrategy="autorename")
    assert (status, node["name"]) == (201, "call (1).mp4")
    status, node = await upload("call.mp4", b"new2")  # autorename is the default
    assert (status, node["name"]) == (201, "call (2).mp4")
    status, node = await upload("CALL.mp4", b"replaced", resolutionStrategy="overwrite", keepShareLinks=True)
    assert status == 201 and node["id"] != old.id and old.id not in env.state.nodes
    assert env.state.file_content(node["id"]) == b"replaced"
    status, body = await upload("folder", b"x", resolutionStrategy="overwrite")
    assert (status, body["errorCode"]) == (409, -40010)
    status, body = await upload("x.bin", b"x", resolutionStrategy="fail", fileName="Folder")
    assert (status, body["errorCode"]) == (409, -40010)
    channel = await dracoon_api.open_channel(token, plain.id, "Call.mp4")
    status, _ = await dracoon_api.call("PUT", channel["uploadUrl"], json={"resolutionStrategy": "fail"})
    assert status == 409
    status, node = await dracoon_api.call(
        "PUT", channel["uploadUrl"], json={"resolutionStrategy": "fail", "fileName": "Call-2.mp4"}
    )
    assert (status, node["name"]) == (201, "Call-2.mp4")


async def test_channel_creation_errors(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    room = env.parent_room_id
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases: list[tuple[dict[str, object], int, int | None]] = [
        ({"notes": "n" * 256}, 400, -80007),
        ({"expiration": {"enableExpiration": True, "expireAt": past}}, 400, -80006),
        ({"size": GCM_MAX_PLAINTEXT + 1}, 400, -80037),
        ({"size": -1}, 400, -80001),
        ({"directS3Upload": True}, 412, -90030),
        ({"parentId": 987654}, 404, -40000),
        ({"name": "bad|name"}, 400, -40755),
    ]
    for extra, status_expected, code in cases:
        body = {"parentId": room, "name": "f.bin", **extra}
        status, answer = await dracoon_api.call("POST", "/api/v4/nodes/files/uploads", token, json=body)
        assert (status, answer["errorCode"]) == (status_expected, code), extra
    env.state.nodes[room].quota = 100
    status, answer = await dracoon_api.call(
        "POST", "/api/v4/nodes/files/uploads", token, json={"parentId": room, "name": "f.bin", "size": 101}
    )
    assert (status, answer["errorCode"]) == (507, -40200)
    channel = await dracoon_api.open_channel(token, room, "f.bin")  # no size: quota checked on the bytes
    status, answer = await dracoon_api.call("POST", channel["uploadUrl"], data=b"x" * 101)
    assert (status, answer["errorCode"]) == (507, -40200)


async def test_channel_permissions(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Readers cannot upload (403); an editor without key pair cannot upload into an encrypted room."""
    env = dracoon_emulator
    reader = env.add_user("reader", None)
    editor = env.add_user("editor", None, perms="edit")
    for user, code in ((reader, None), (editor, -70020)):
        token = await dracoon_api.login_as(user)
        status, body = await dracoon_api.call(
            "POST", "/api/v4/nodes/files/uploads", token, json={"parentId": env.parent_room_id, "name": "f"}
        )
        assert (status, body.get("errorCode")) == (403, code)


async def test_cancel(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """DELETE on the token URL or by id -> 204; the channel is gone afterwards (-20501)."""
    env = dracoon_emulator
    token = await dracoon_api.login_as(env.service_user)
    first = await dracoon_api.open_channel(token, env.parent_room_id, "a")
    second = await dracoon_api.open_channel(token, env.parent_room_id, "b")
    status, _ = await dracoon_api.call("DELETE", first["uploadUrl"])
    assert status == 204
    status, _ = await dracoon_api.call("DELETE", f"/api/v4/nodes/files/uploads/{second['uploadId']}", token)
    assert status == 204
    for url in (first["uploadUrl"], second["uploadUrl"]):
        status, body = await dracoon_api.call("POST", url, data=b"x")
        assert (status, body["errorCode"]) == (404, -20501)
    assert env.state.uploads == {}
