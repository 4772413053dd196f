"""Containers, file keys, versions and errors of recording_storage.crypto: parsing and hygiene."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from recording_storage.crypto import (
    CryptoError,
    EncryptedFileKey,
    FileKeyVersion,
    InvalidFileKey,
    InvalidKeyContainer,
    KeyPairVersion,
    PlainFileKey,
    PlaintextTooLarge,
    PrivateKeyContainer,
    PublicKeyContainer,
    TagMismatch,
    UnsupportedVersion,
    UserKeyPair,
    WrongPassword,
    generate_file_key,
    unlock_key_pair,
)
from recording_storage.errors import PermanentError
from tests.fixtures.keys import TestKeyPair, make_test_keypair

ERRORS = [
    WrongPassword,
    InvalidKeyContainer,
    UnsupportedVersion,
    InvalidFileKey,
    TagMismatch,
    PlaintextTooLarge,
]
IV = base64.b64encode(b"\1" * 12).decode()
TAG = base64.b64encode(b"\2" * 16).decode()


def test_errors_are_distinct_permanent_crypto_errors() -> None:
    for error in ERRORS:
        assert issubclass(error, CryptoError) and issubclass(error, PermanentError)
    for a, b in itertools.permutations(ERRORS, 2):
        assert not issubclass(a, b)
    assert len({e.code for e in ERRORS} | {CryptoError.code}) == len(ERRORS) + 1


def test_versions_map_to_each_other() -> None:
    assert KeyPairVersion.A.file_key_version is FileKeyVersion.A
    assert KeyPairVersion.RSA_4096.file_key_version is FileKeyVersion.RSA_4096_AES_256_GCM
    assert FileKeyVersion.RSA_4096_AES_256_GCM.key_pair_version is KeyPairVersion.RSA_4096
    assert FileKeyVersion.A.key_pair_version is KeyPairVersion.A
    assert KeyPairVersion.parse("RSA-4096") is KeyPairVersion.RSA_4096
    for bad in ("X", "rsa-4096", "", None, 4096):
        with pytest.raises(UnsupportedVersion):
            KeyPairVersion.parse(bad)
        with pytest.raises(UnsupportedVersion):
            FileKeyVersion.parse(bad)


def test_user_key_pair_json_round_trip(keypair_4096: TestKeyPair) -> None:
    """to_json is the API's camelCase shape; from_json ignores the server's extra fields."""
    kp = keypair_4096.key_pair
    data = kp.to_json()
    assert set(data) == {"privateKeyContainer", "publicKeyContainer"}
    assert set(data["privateKeyContainer"]) == {"version", "privateKey"}
    assert data["publicKeyContainer"]["version"] == "RSA-4096"
    api_shape: dict[str, Any] = {
        k: {**v, "createdAt": "2024-01-01T00:00:00Z", "createdBy": 1} for k, v in data.items()
    }
    api_shape["privateKeyContainer"]["expireAt"] = None
    assert UserKeyPair.from_json(api_shape) == kp


def test_container_versions_must_agree(keypair_a: TestKeyPair, keypair_4096: TestKeyPair) -> None:
    with pytest.raises(InvalidKeyContainer, match="different versions"):
        UserKeyPair(keypair_a.key_pair.private_key_container, keypair_4096.key_pair.public_key_container)


def test_unlock_refuses_halves_of_different_key_pairs(keypair_a: TestKeyPair) -> None:
    """A private key that does not belong to the public key is an invalid container."""
    other = make_test_keypair(KeyPairVersion.A, index=1)
    mixed = UserKeyPair(keypair_a.key_pair.private_key_container, other.key_pair.public_key_container)
    with pytest.raises(InvalidKeyContainer, match="does not belong"):
        unlock_key_pair(mixed, keypair_a.password)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, InvalidKeyContainer),
        ({}, InvalidKeyContainer),
        ({"privateKeyContainer": {"version": "A"}, "publicKeyContainer": {}}, InvalidKeyContainer),
        ({"privateKeyContainer": {"version": "B", "privateKey": "x"}}, UnsupportedVersion),
        ({"privateKeyContainer": {"privateKey": "x"}}, UnsupportedVersion),
    ],
)
def test_malformed_key_pair_json(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        UserKeyPair.from_json(data)


def test_unencrypted_or_non_rsa_keys_are_invalid_containers(keypair_a: TestKeyPair) -> None:
    plain_pem = keypair_a.unlocked.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidKeyContainer):
        PrivateKeyContainer(KeyPairVersion.A, plain_pem.decode())
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_pem = ec_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidKeyContainer, match="not an RSA key"):
        PublicKeyContainer(KeyPairVersion.A, ec_pem.decode())


def test_keys_encrypted_by_cryptography_defaults_unlock(keypair_a: TestKeyPair) -> None:
    """Keys written with cryptography's BestAvailableEncryption (PBKDF2-HMAC-SHA256, as the
    unofficial `dracoon` package does) are read too: KDF parameters come from the DER."""
    pem = keypair_a.unlocked.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption("Schlüssel".encode()),
    )
    kp = UserKeyPair(
        PrivateKeyContainer(KeyPairVersion.A, pem.decode()), keypair_a.key_pair.public_key_container
    )
    assert kp.private_key_container.envelope.prf == "sha256"
    assert unlock_key_pair(kp, "Schlüssel").version is KeyPairVersion.A
    with pytest.raises(WrongPassword):
        unlock_key_pair(kp, "Schlussel")


def test_encrypted_file_key_json_round_trip() -> None:
    data = {"key": "AAAA", "iv": IV, "tag": TAG, "version": "RSA-4096/AES-256-GCM"}
    enc = EncryptedFileKey.from_json({**data, "extra": 1})
    assert enc.version is FileKeyVersion.RSA_4096_AES_256_GCM
    assert enc.to_json() == data
    assert EncryptedFileKey("AAAA", IV, TAG, "A").version is FileKeyVersion.A  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"key": "not base64!"},
        {"key": ""},
        {"iv": base64.b64encode(b"\1" * 16).decode()},
        {"tag": base64.b64encode(b"\2" * 12).decode()},
        {"tag": None},
        {"iv": "AAA"},  # bad padding
    ],
)
def test_malformed_encrypted_file_key(change: dict[str, Any]) -> None:
    data = {"key": "AAAA", "iv": IV, "tag": TAG, "version": "A", **change}
    with pytest.raises(InvalidFileKey):
        EncryptedFileKey.from_json(data)


def test_plain_file_key_validation() -> None:
    key = PlainFileKey(bytearray(32), bytearray(12))  # type: ignore[arg-type]
    assert type(key.key) is bytes and type(key.iv) is bytes
    for args in ((b"\0" * 31, b"\0" * 12), (b"\0" * 32, b"\0" * 16), (b"\0" * 32, b"\0" * 12, b"\0" * 12)):
        with pytest.raises(InvalidFileKey):
            PlainFileKey(*args)
    with pytest.raises(InvalidFileKey):
        PlainFileKey("k" * 32, b"\0" * 12)  # type: ignore[arg-type]


def test_reprs_and_messages_hide_secrets(keypair_a: TestKeyPair) -> None:
    """No PEM body, raw key or password shows up in a repr."""
    pem = keypair_a.key_pair.private_key_container.private_key
    body_line = pem.splitlines()[1]
    plain = generate_file_key()
    texts = [
        repr(keypair_a.key_pair),
        repr(keypair_a.key_pair.private_key_container),
        repr(keypair_a.unlocked),
        repr(keypair_a),
        repr(plain),
    ]
    for text in texts:
        assert body_line not in text
        assert keypair_a.password not in text
        assert plain.key.hex() not in text and repr(plain.key) not in text
    assert plain.iv.hex() in repr(plain)


def test_broken_private_pem_message_does_not_echo_it() -> None:
    pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END ENCRYPTED PRIVATE KEY-----\n"
    with pytest.raises(InvalidKeyContainer) as info:
        PrivateKeyContainer(KeyPairVersion.A, pem)
    assert "c2VjcmV0" not in str(info.value)
