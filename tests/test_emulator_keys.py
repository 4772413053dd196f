"""Emulator: key pairs, missing file keys (membership-based, 100 per call), setting keys, and a
file read back and decrypted by a different room member after key sharing."""

from __future__ import annotations

import pytest

from recording_storage.crypto import (
    EncryptedFileKey,
    FileDecryptor,
    KeyPairVersion,
    PublicKeyContainer,
    rewrap_file_key,
)
from tests.fixtures.dracoon import DracoonEnv, EmulatorApi, SeededUser, encrypt_for

pytestmark = pytest.mark.integration

MISSING = "/api/v4/nodes/missingFileKeys"


def _seed_file(env: DracoonEnv, room_id: int, name: str, plaintext: bytes = b"payload") -> tuple[int, bytes]:
    """A file in ``room_id`` readable by the service user only (its key is the only one stored)."""
    assert env.service_user.keys is not None
    ciphertext, key = encrypt_for(env.service_user.require_keys(), plaintext)
    node = env.state.add_file(
        room_id, name, ciphertext, file_keys={env.service_user.id: key}, created_by=env.service_user.id
    )
    return node.id, ciphertext


async def test_key_pair_endpoints(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    env = dracoon_emulator
    assert env.service_user.keys is not None
    token = await dracoon_api.login_as(env.service_user)
    status, pair = await dracoon_api.call("GET", "/api/v4/user/account/keypair", token)
    assert status == 200
    assert (
        pair["publicKeyContainer"]["publicKey"]
        == env.service_user.keys.key_pair.public_key_container.public_key
    )
    assert (
        pair["privateKeyContainer"]["version"] == env.key_version
        and "createdAt" in pair["publicKeyContainer"]
    )
    status, pairs = await dracoon_api.call("GET", "/api/v4/user/account/keypairs", token)
    assert status == 200 and len(pairs) == 1
    other = "A" if env.key_version != "A" else "RSA-4096"
    status, body = await dracoon_api.call(
        "GET", "/api/v4/user/account/keypair", token, params={"version": other}
    )
    assert (status, body["errorCode"]) == (404, -70020)
    status, body = await dracoon_api.call(
        "POST", "/api/v4/user/account/keypair", token, json=env.service_user.keys.key_pair.to_json()
    )
    assert (status, body["errorCode"]) == (409, -70021)


async def test_create_and_delete_key_pair(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """A user without keys can upload one pair per version; deleting drops that version's file keys."""
    env = dracoon_emulator
    donor = env.add_user("donor", "A")  # only used for its generated key pair
    newbie = env.add_user("newbie", None)
    token = await dracoon_api.login_as(newbie)
    status, body = await dracoon_api.call("GET", "/api/v4/user/account/keypairs", token)
    assert (status, body["errorCode"]) == (404, -70020)
    assert donor.keys is not None
    pair = donor.keys.key_pair.to_json()
    bad = {**pair, "publicKeyContainer": {"version": "A", "publicKey": "not a key"}}
    status, body = await dracoon_api.call("POST", "/api/v4/user/account/keypair", token, json=bad)
    assert (status, body["errorCode"]) == (400, -70022)
    status, _ = await dracoon_api.call("POST", "/api/v4/user/account/keypair", token, json=pair)
    assert status == 204 and env.state.users[newbie.id].key_pair_versions() == ["A"]
    file_id, _ = _seed_file(env, env.parent_room_id, "f.bin")
    env.state.set_file_key(file_id, newbie.id, {"key": "x", "iv": "y", "tag": "z", "version": "A"})
    status, _ = await dracoon_api.call(
        "DELETE", "/api/v4/user/account/keypair", token, params={"version": "A"}
    )
    assert status == 204 and newbie.id not in env.state.file_keys(file_id)
    status, body = await dracoon_api.call("DELETE", "/api/v4/user/account/keypair", token)
    assert (status, body["errorCode"]) == (404, -70020)


async def test_missing_keys_from_membership(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Readers with a key pair lacking a key are listed; users without keys or access are not."""
    env = dracoon_emulator
    reader = env.add_user("reader")
    keyless = env.add_user("keyless", None)
    outsider = env.add_user("outsider", room_ids=[])
    sub = env.state.add_room("Sub", env.parent_room_id)
    f1, _ = _seed_file(env, env.parent_room_id, "a.bin")
    f2, _ = _seed_file(env, sub.id, "b.bin")
    env.state.add_file(sub.id, "not-mine.bin", b"x")  # the caller holds no key: not servable by them
    token = await dracoon_api.login_as(env.service_user)
    status, body = await dracoon_api.call("GET", MISSING, token)
    assert status == 200
    assert body["items"] == [{"userId": reader.id, "fileId": f1}, {"userId": reader.id, "fileId": f2}]
    assert body["range"] == {"offset": 0, "limit": 100, "total": 2}
    assert body["users"] == [{"id": reader.id, "publicKeyContainer": body["users"][0]["publicKeyContainer"]}]
    assert reader.keys is not None
    assert (
        body["users"][0]["publicKeyContainer"]["publicKey"]
        == reader.keys.key_pair.public_key_container.public_key
    )
    own = env.state.file_keys(f1)[env.service_user.id]
    assert {f["id"]: f["fileKeyContainer"] for f in body["files"]}[f1] == own
    _, body = await dracoon_api.call("GET", MISSING, token, params={"room_id": sub.id})
    assert [i["fileId"] for i in body["items"]] == [f2]
    _, body = await dracoon_api.call("GET", MISSING, token, params={"file_id": f1, "user_id": outsider.id})
    assert body["items"] == []
    for params, status_expected, code in (
        ({"file_id": 424242}, 404, -40751),
        ({"room_id": env.state.add_room("Plain", None, admins=[env.service_user.id]).id}, 400, -40001),
        ({"user_id": 999}, 404, -70501),
        ({"use_key": "room_rescue_key"}, 400, -40024),
        ({"limit": 0}, 400, -80024),
    ):
        status, answer = await dracoon_api.call("GET", MISSING, token, params=params)
        assert (status, answer["errorCode"]) == (status_expected, code), params
    keyless_token = await dracoon_api.login_as(keyless)
    status, answer = await dracoon_api.call("GET", MISSING, keyless_token)
    assert (status, answer["errorCode"]) == (403, -70020)


async def test_missing_keys_capped_at_100_and_paged(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi
) -> None:
    """120 missing pairs: at most 100 per call whatever the limit, ordered by file then user."""
    env = dracoon_emulator
    users = [env.add_user("m1", "A"), env.add_user("m2", "A")]
    files = [_seed_file(env, env.parent_room_id, f"f{i:02d}.bin")[0] for i in range(60)]
    token = await dracoon_api.login_as(env.service_user)
    expected = [{"userId": u.id, "fileId": f} for f in files for u in users]
    status, first = await dracoon_api.call("GET", MISSING, token, params={"limit": 500})
    assert status == 200 and first["range"] == {"offset": 0, "limit": 100, "total": 120}
    assert first["items"] == expected[:100] and len(first["files"]) == 50
    _, rest = await dracoon_api.call("GET", MISSING, token, params={"offset": 100, "limit": 100})
    assert rest["items"] == expected[100:] and {u["id"] for u in rest["users"]} == {u.id for u in users}
    _, small = await dracoon_api.call("GET", MISSING, token, params={"offset": 5, "limit": 10})
    assert small["items"] == expected[5:15] and small["range"]["limit"] == 10


async def _share(api: EmulatorApi, token: str, env: DracoonEnv, file_id: int, target: SeededUser) -> int:
    """Serve one missing key the way a client does: decrypt our copy, re-wrap for the target."""
    assert env.service_user.keys is not None and target.keys is not None
    _, missing = await api.call("GET", MISSING, token, params={"file_id": file_id})
    mine = EncryptedFileKey.from_json(missing["files"][0]["fileKeyContainer"])
    public = PublicKeyContainer.from_json(
        next(u["publicKeyContainer"] for u in missing["users"] if u["id"] == target.id)
    )
    theirs = rewrap_file_key(mine, env.service_user.keys.unlocked, public)
    status, _ = await api.call(
        "POST",
        "/api/v4/nodes/files/keys",
        token,
        json={"items": [{"fileId": file_id, "userId": target.id, "fileKey": theirs.to_json()}]},
    )
    return status


@pytest.mark.parametrize("dracoon_key_version", [KeyPairVersion.A, KeyPairVersion.RSA_4096])
async def test_shared_key_lets_another_member_decrypt(
    dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi, dracoon_key_version: KeyPairVersion
) -> None:
    """After the key is shared, a different member fetches their key, downloads and decrypts."""
    env = dracoon_emulator
    colleague = env.add_user("colleague")
    plaintext = b"the meeting recording " * 300
    file_id, ciphertext = _seed_file(env, env.parent_room_id, "rec.mp4", plaintext)
    token = await dracoon_api.login_as(env.service_user)
    colleague_token = await dracoon_api.login_as(colleague)
    status, body = await dracoon_api.call(
        "GET", f"/api/v4/nodes/files/{file_id}/user_file_key", colleague_token
    )
    assert (status, body["errorCode"]) == (404, -40761)
    assert await _share(dracoon_api, token, env, file_id, colleague) == 204
    _, again = await dracoon_api.call("GET", MISSING, token, params={"file_id": file_id})
    assert again["items"] == []
    status, key_json = await dracoon_api.call(
        "GET", f"/api/v4/nodes/files/{file_id}/user_file_key", colleague_token
    )
    assert status == 200
    _, download = await dracoon_api.call("POST", f"/api/v4/nodes/files/{file_id}/downloads", colleague_token)
    async with dracoon_api.session.get(download["downloadUrl"]) as resp:
        stored = await resp.read()
    assert stored == ciphertext
    assert colleague.keys is not None
    plain_key = colleague.keys.unlocked.decrypt_file_key(EncryptedFileKey.from_json(key_json))
    decryptor = FileDecryptor(plain_key)
    recovered = decryptor.update(stored)
    decryptor.finalize()
    assert recovered == plaintext


async def test_set_keys_rules(dracoon_emulator: DracoonEnv, dracoon_api: EmulatorApi) -> None:
    """Existing keys are kept (204); wrong version -80062; non-member -70029; no own key -40761."""
    env = dracoon_emulator
    member = env.add_user("member")
    outsider = env.add_user("outsider", room_ids=[])
    file_id, _ = _seed_file(env, env.parent_room_id, "f.bin")
    token = await dracoon_api.login_as(env.service_user)
    assert await _share(dracoon_api, token, env, file_id, member) == 204
    stored = env.state.file_keys(file_id)[member.id]
    own = env.state.file_keys(file_id)[env.service_user.id]
    url = "/api/v4/nodes/files/keys"

    def item(user_id: int, key: dict[str, str], fid: int = file_id) -> dict[str, object]:
        return {"items": [{"fileId": fid, "userId": user_id, "fileKey": key}]}

    status, _ = await dracoon_api.call("POST", url, token, json=item(member.id, own))
    assert status == 204 and env.state.file_keys(file_id)[member.id] == stored
    wrong_version = {**own, "version": "A" if own["version"] != "A" else "RSA-4096/AES-256-GCM"}
    status, body = await dracoon_api.call("POST", url, token, json=item(member.id, wrong_version))
    assert (status, body["errorCode"]) == (400, -80062)
    status, body = await dracoon_api.call("POST", url, token, json=item(outsider.id, own))
    assert (status, body["errorCode"]) == (403, -70029)
    status, body = await dracoon_api.call("POST", url, token, json=item(member.id, own, 777777))
    assert (status, body["errorCode"]) == (404, -40751)
    foreign = env.state.add_file(env.parent_room_id, "foreign.bin", b"x").id
    status, body = await dracoon_api.call("POST", url, token, json=item(member.id, own, foreign))
    assert (status, body["errorCode"]) == (403, -40761)
    status, body = await dracoon_api.call(
        "POST", url, token, json={"items": [{"fileId": file_id, "userId": 1}]}
    )
    assert (status, body["errorCode"]) == (400, -80000)
