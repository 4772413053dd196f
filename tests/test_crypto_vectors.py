"""recording_storage.crypto against the official cross-SDK vectors (Java, C#, JS, Swift).

Vectors: tests/vectors/java-crypto-sdk (see the README there for pairing and passwords).
The 1.3M-iteration keys cost ~0.7 s each to unlock, so each key is unlocked once per check.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from recording_storage.crypto import (
    EncryptedFileKey,
    FileDecryptor,
    FileEncryptor,
    FileKeyVersion,
    InvalidFileKey,
    InvalidKeyContainer,
    KeyPairVersion,
    PlainFileKey,
    PrivateKeyContainer,
    PublicKeyContainer,
    TagMismatch,
    UnlockedKeyPair,
    UnsupportedVersion,
    UserKeyPair,
    WrongPassword,
    encrypt_file_key,
    unlock_key_pair,
)

VECTORS = Path(__file__).parent / "vectors" / "java-crypto-sdk"
SETS = ("unit", "integration/csharp", "integration/js", "integration/swift")
# Full SHA-256 of each set's plain_file (the shared README lists their prefixes/suffixes).
PLAIN_SHA256 = {
    "unit": "da55bc7ed3db2231180e1dbefaeb428c175029e0d740a6d0affa08c9d10e3a8b",
    "integration/csharp": "b25c9682123421ce03d4e9420ae3361899923c92d738120682fea6742ccba067",
    "integration/js": "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c",
    "integration/swift": "4492c02bde7afe41368e03e60a4d89241c3065c7b0cde006d33a9346f11c1046",
}
FILE_KEYS = (
    ("fk_rsa2048_aes256gcm", "kp_rsa2048", FileKeyVersion.A),
    ("fk_rsa4096_aes256gcm", "kp_rsa4096", FileKeyVersion.RSA_4096_AES_256_GCM),
)
UNIT_DATA = "unit/data"
UNIT_PW = f"{UNIT_DATA}/kp_general/pw.txt"


def _json(rel: str) -> Any:
    return json.loads((VECTORS / rel).read_bytes())


def _text(rel: str) -> str:
    """Exact file content: passwords have no trailing newline and must not gain or lose one."""
    return (VECTORS / rel).read_bytes().decode("utf-8")


def _b64_file(rel: str) -> bytes:
    return base64.b64decode((VECTORS / rel).read_bytes())


@dataclass(frozen=True)
class KeyVector:
    private: str
    public: str
    password: str

    @property
    def version(self) -> KeyPairVersion:
        return KeyPairVersion.A if "rsa2048" in self.private else KeyPairVersion.RSA_4096

    def key_pair(self) -> UserKeyPair:
        return UserKeyPair(
            PrivateKeyContainer.from_json(_json(self.private)),
            PublicKeyContainer.from_json(_json(self.public)),
        )


def _key_vectors() -> list[KeyVector]:
    unit = [
        KeyVector(f"{UNIT_DATA}/{kp}/private_key{sfx}.json", f"{UNIT_DATA}/{kp}/public_key{sfx}.json", pw)
        for kp, sfx, pw in (
            ("kp_rsa2048", "", UNIT_PW),
            ("kp_rsa4096", "", UNIT_PW),
            ("kp_rsa4096", "_pw_iso_umlaut", f"{UNIT_DATA}/kp_general/pw_umlaut.txt"),
            ("kp_rsa4096", "_pw_utf8_umlaut", f"{UNIT_DATA}/kp_general/pw_umlaut.txt"),
            ("kp_rsa4096", "_pw_utf8_emoticon", f"{UNIT_DATA}/kp_general/pw_emoticon.txt"),
        )
    ]
    integration = [
        KeyVector(f"{base}/private_key.json", f"{base}/public_key.json", f"{base}/pw.txt")
        for name in SETS[1:]
        for base in sorted(
            str(d.relative_to(VECTORS))
            for d in (VECTORS / name / "data").iterdir()
            if d.name.startswith("kp_")
        )
    ]
    return unit + integration


KEY_VECTORS = _key_vectors()


def test_every_key_vector_is_found() -> None:
    """Guards the discovery above: 5 unit key pairs, 4 C#, 5 JS and 4 Swift."""
    assert len(KEY_VECTORS) == 18
    assert all((VECTORS / v.private).is_file() and (VECTORS / v.password).is_file() for v in KEY_VECTORS)


@functools.cache
def _unlocked(set_name: str, kp: str) -> UnlockedKeyPair:
    """The set's plain 10k-iteration key pairs, unlocked once for all file key checks."""
    data = "unit/data" if set_name == "unit" else f"{set_name}/data"
    password = _text(UNIT_PW if set_name == "unit" else f"{data}/{kp}/pw.txt")
    vector = KeyVector(f"{data}/{kp}/private_key.json", f"{data}/{kp}/public_key.json", "")
    return unlock_key_pair(vector.key_pair(), password)


@pytest.mark.parametrize("vector", KEY_VECTORS, ids=lambda v: v.private.removesuffix(".json"))
def test_unlock_key_pair_matches_its_public_key(vector: KeyVector) -> None:
    """Every official key pair unlocks with its password and yields the RSA key of its public PEM."""
    key_pair = vector.key_pair()
    assert key_pair.private_key_container.kdf_iterations in (10_000, 1_300_000)

    unlocked = unlock_key_pair(key_pair, _text(vector.password))

    assert unlocked.version is vector.version
    public = load_pem_public_key(_json(vector.public)["publicKey"].encode())
    assert isinstance(public, rsa.RSAPublicKey)
    assert unlocked.private_key.public_key().public_numbers() == public.public_numbers()
    assert unlocked.private_key.key_size == vector.version.key_size


def test_kdfv2_keys_use_1_3m_iterations() -> None:
    """The 'kdfv2' and most non-ASCII-password keys really exercise the current SDKs' KDF cost.

    (The JS ISO-8859-1 key is an older 10k-iteration one, unlike the shared README's summary.)
    """
    for vector in KEY_VECTORS:
        is_v2 = "kdfv2" in vector.private or "_pw_" in vector.private
        expected = 1_300_000 if is_v2 and "js/data/kp_rsa4096_pw_iso" not in vector.private else 10_000
        assert vector.key_pair().private_key_container.kdf_iterations == expected, vector.private


@pytest.mark.parametrize(
    ("private", "password"),
    [
        ("unit/data/kp_rsa2048/private_key.json", f"@{UNIT_DATA}/kp_general/pw_invalid.txt"),
        ("unit/data/kp_rsa4096/private_key.json", f"@{UNIT_DATA}/kp_general/pw_invalid.txt"),
        ("integration/js/data/kp_rsa2048/private_key.json", f"@{UNIT_DATA}/kp_general/pw_invalid.txt"),
        ("unit/data/kp_rsa2048/private_key.json", "Qwer1234!ö"),  # tried as UTF-8 and as ISO-8859-1
        ("unit/data/kp_rsa2048/private_key.json", ""),
    ],
)
def test_wrong_password_is_rejected(private: str, password: str) -> None:
    """A wrong password raises WrongPassword, and the message does not echo it."""
    if password.startswith("@"):
        password = _text(password[1:])
    key_pair = KeyVector(private, private.replace("private_key", "public_key"), "").key_pair()
    with pytest.raises(WrongPassword) as info:
        unlock_key_pair(key_pair, password)
    if password:
        assert password not in str(info.value)


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize(("fk", "kp", "version"), FILE_KEYS, ids=["A", "RSA-4096"])
def test_unwrap_file_key(set_name: str, fk: str, kp: str, version: FileKeyVersion) -> None:
    """Each set's encrypted file keys unwrap (per-version OAEP) to its plain file key."""
    base = f"{set_name}/data/{fk}"
    enc = EncryptedFileKey.from_json(_json(f"{base}/enc_file_key.json"))
    assert enc.version is version

    plain = _unlocked(set_name, kp).decrypt_file_key(enc)

    assert plain == PlainFileKey.from_json(_json(f"{base}/plain_file_key.json"))


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize(("fk", "kp", "version"), FILE_KEYS, ids=["A", "RSA-4096"])
def test_rewrap_file_key_for_the_vector_public_key(
    set_name: str, fk: str, kp: str, version: FileKeyVersion
) -> None:
    """Re-encrypting a plain key for the set's public key gives a fresh, decryptable copy."""
    base = f"{set_name}/data/{fk}"
    vector_enc = EncryptedFileKey.from_json(_json(f"{base}/enc_file_key.json"))
    plain = PlainFileKey.from_json(_json(f"{base}/plain_file_key.json"))
    public = PublicKeyContainer.from_json(_json(f"{set_name}/data/{kp}/public_key.json"))

    enc = encrypt_file_key(plain, public)

    assert (enc.version, enc.iv, enc.tag) == (version, vector_enc.iv, vector_enc.tag)
    assert enc.key != vector_enc.key  # OAEP is randomised
    assert _unlocked(set_name, kp).decrypt_file_key(enc) == plain


def _decrypt(plain: PlainFileKey, data: bytes, block: int) -> bytes:
    decryptor = FileDecryptor(plain)
    out = b"".join(decryptor.update(data[i : i + block]) for i in range(0, len(data), block))
    decryptor.finalize()
    return out


@pytest.mark.parametrize("set_name", SETS)
def test_decrypt_file_via_full_key_chain(set_name: str) -> None:
    """Key pair -> file key -> file, in one piece and in 16-byte blocks as the Java test does."""
    enc_file = _b64_file(f"{set_name}/files/aes256gcm/enc_file.b64")
    expected = _b64_file(f"{set_name}/files/plain_file.b64")
    assert hashlib.sha256(expected).hexdigest() == PLAIN_SHA256[set_name]
    chains = FILE_KEYS if set_name != "integration/csharp" else FILE_KEYS[:1]
    for fk, kp, _ in chains:
        enc = EncryptedFileKey.from_json(_json(f"{set_name}/data/{fk}/enc_file_key.json"))
        plain = _unlocked(set_name, kp).decrypt_file_key(enc)
        assert len(enc_file) == len(expected)
        assert _decrypt(plain, enc_file, len(enc_file) or 1) == expected
        assert _decrypt(plain, enc_file, 16) == expected


def test_csharp_rsa4096_file_key_is_a_different_key() -> None:
    """Documents the C# set's quirk: its fk_rsa4096 key does not authenticate its file."""
    plain = PlainFileKey.from_json(_json("integration/csharp/data/fk_rsa4096_aes256gcm/plain_file_key.json"))
    with pytest.raises(TagMismatch):
        _decrypt(plain, _b64_file("integration/csharp/files/aes256gcm/enc_file.b64"), 16)


@pytest.mark.parametrize("set_name", SETS)
def test_encrypt_reproduces_official_ciphertext_and_tag(set_name: str) -> None:
    """Same key and IV give byte-identical ciphertext and tag to the other SDKs (uneven chunks)."""
    vector_key = PlainFileKey.from_json(_json(f"{set_name}/data/fk_rsa2048_aes256gcm/plain_file_key.json"))
    plain_file = _b64_file(f"{set_name}/files/plain_file.b64")
    encryptor = FileEncryptor(PlainFileKey(vector_key.key, vector_key.iv), size=len(plain_file))

    ciphertext = b"".join(encryptor.update(plain_file[i : i + 7]) for i in range(0, len(plain_file), 7))
    tag = encryptor.finalize()

    assert ciphertext == _b64_file(f"{set_name}/files/aes256gcm/enc_file.b64")
    assert tag == vector_key.tag
    assert encryptor.file_key() == vector_key


def test_modified_plaintext_does_not_give_official_ciphertext() -> None:
    """plain_file_modified.b64 under the unit key must not encrypt to enc_file.b64."""
    vector_key = PlainFileKey.from_json(_json(f"{UNIT_DATA}/fk_rsa2048_aes256gcm/plain_file_key.json"))
    encryptor = FileEncryptor(PlainFileKey(vector_key.key, vector_key.iv))
    ciphertext = encryptor.update(_b64_file("unit/files/plain_file_modified.b64"))
    tag = encryptor.finalize()
    assert ciphertext != _b64_file("unit/files/aes256gcm/enc_file.b64")
    assert tag != vector_key.tag


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("private_key_bad_pem.json", InvalidKeyContainer),
        ("private_key_bad_value.json", InvalidKeyContainer),
        ("private_key_bad_version.json", UnsupportedVersion),
    ],
)
def test_broken_private_key_container_is_rejected(name: str, error: type[Exception]) -> None:
    """Bad PEM armour, bad base64/DER and unknown versions fail when the container is read."""
    with pytest.raises(error):
        PrivateKeyContainer.from_json(_json(f"{UNIT_DATA}/kp_general/{name}"))


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("public_key_bad_pem.json", InvalidKeyContainer),
        ("public_key_bad_value.json", InvalidKeyContainer),
        ("public_key_bad_version.json", UnsupportedVersion),
    ],
)
def test_broken_public_key_container_is_rejected(name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        PublicKeyContainer.from_json(_json(f"{UNIT_DATA}/kp_general/{name}"))


def test_bad_asn1_private_key_is_invalid_not_wrong_password() -> None:
    """The envelope opens with the right password but holds broken ASN.1: InvalidKeyContainer."""
    key_pair = UserKeyPair(
        PrivateKeyContainer.from_json(_json(f"{UNIT_DATA}/kp_general/private_key_bad_asn1.json")),
        PublicKeyContainer.from_json(_json(f"{UNIT_DATA}/kp_rsa2048/public_key.json")),
    )
    with pytest.raises(InvalidKeyContainer):
        unlock_key_pair(key_pair, _text(UNIT_PW))
    with pytest.raises(WrongPassword):
        unlock_key_pair(key_pair, _text(f"{UNIT_DATA}/kp_general/pw_invalid.txt"))


def test_bad_file_key_versions_are_rejected() -> None:
    with pytest.raises(UnsupportedVersion):
        EncryptedFileKey.from_json(_json(f"{UNIT_DATA}/fk_general/enc_file_key_bad_version.json"))
    with pytest.raises(UnsupportedVersion):
        PlainFileKey.from_json(_json(f"{UNIT_DATA}/fk_general/plain_file_key_bad_version.json"))


def test_corrupted_wrapped_key_cannot_be_unwrapped() -> None:
    enc = EncryptedFileKey.from_json(_json(f"{UNIT_DATA}/fk_general/enc_file_key_bad_key.json"))
    with pytest.raises(InvalidFileKey):
        _unlocked("unit", "kp_rsa2048").decrypt_file_key(enc)


@pytest.mark.parametrize("name", ["enc_file_key_bad_iv.json", "enc_file_key_bad_tag.json"])
def test_encrypted_file_key_with_bad_iv_or_tag_fails_authentication(name: str) -> None:
    """The key unwraps, but the file then fails GCM authentication."""
    enc = EncryptedFileKey.from_json(_json(f"{UNIT_DATA}/fk_general/{name}"))
    plain = _unlocked("unit", "kp_rsa2048").decrypt_file_key(enc)
    with pytest.raises(TagMismatch):
        _decrypt(plain, _b64_file("unit/files/aes256gcm/enc_file.b64"), 16)


@pytest.mark.parametrize(
    "name", ["plain_file_key_bad_iv", "plain_file_key_bad_key", "plain_file_key_bad_tag"]
)
def test_bad_plain_file_key_fails_authentication(name: str) -> None:
    plain = PlainFileKey.from_json(_json(f"{UNIT_DATA}/fk_general/{name}.json"))
    with pytest.raises(TagMismatch):
        _decrypt(plain, _b64_file("unit/files/aes256gcm/enc_file.b64"), 16)


def test_modified_ciphertext_fails_authentication() -> None:
    plain = PlainFileKey.from_json(_json(f"{UNIT_DATA}/fk_rsa2048_aes256gcm/plain_file_key.json"))
    with pytest.raises(TagMismatch):
        _decrypt(plain, _b64_file("unit/files/aes256gcm/enc_file_modified.b64"), 16)


@pytest.mark.parametrize(
    ("fk", "kp"), [("fk_rsa2048_aes256gcm", "kp_rsa4096"), ("fk_rsa4096_aes256gcm", "kp_rsa2048")]
)
def test_file_key_for_the_other_key_pair_version_is_refused(fk: str, kp: str) -> None:
    """An "A" file key is never tried with an RSA-4096 key pair, nor the reverse."""
    enc = EncryptedFileKey.from_json(_json(f"{UNIT_DATA}/{fk}/enc_file_key.json"))
    with pytest.raises(InvalidFileKey, match="does not fit"):
        _unlocked("unit", kp).decrypt_file_key(enc)
