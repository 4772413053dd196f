"""DRACOON's crypto data model: versions, key containers and file keys, as the API spells them.

Everything is validated on construction so that a malformed container from the server fails at
the edge with the right error class, not deep inside a transfer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from recording_storage.crypto._der import DerError, Pbes2Key, parse_pbes2_key, pem_decode
from recording_storage.crypto._errors import InvalidFileKey, InvalidKeyContainer, UnsupportedVersion
from recording_storage.errors import CryptoError

__all__ = [
    "GCM_MAX_PLAINTEXT",
    "EncryptedFileKey",
    "FileKeyVersion",
    "KeyPairVersion",
    "PlainFileKey",
    "PrivateKeyContainer",
    "PublicKeyContainer",
    "UserKeyPair",
]

# NIST SP 800-38D: at most 2^39 - 256 bits of plaintext per (key, IV).
GCM_MAX_PLAINTEXT = 2**36 - 32
KEY_BYTES, IV_BYTES, TAG_BYTES = 32, 12, 16
# Names the SDKs give the plain (never transmitted) AES key: Java "A", JS/Python "AES-256-GCM".
_PLAIN_KEY_VERSIONS = frozenset({"A", "AES-256-GCM"})


def _show(value: object) -> str:
    """A bounded repr of untrusted input for error messages (versions are not secret)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class KeyPairVersion(StrEnum):
    A = "A"  # RSA-2048, legacy
    RSA_4096 = "RSA-4096"

    @classmethod
    def parse(cls, value: object) -> KeyPairVersion:
        """The version named by API input; UnsupportedVersion for anything unknown."""
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        raise UnsupportedVersion(f"unsupported key pair version {_show(value)}")

    @property
    def file_key_version(self) -> FileKeyVersion:
        """The file key version a key wrapped for this key pair must carry."""
        return FileKeyVersion.A if self is KeyPairVersion.A else FileKeyVersion.RSA_4096_AES_256_GCM

    @property
    def key_size(self) -> int:
        return 2048 if self is KeyPairVersion.A else 4096


class FileKeyVersion(StrEnum):
    A = "A"
    RSA_4096_AES_256_GCM = "RSA-4096/AES-256-GCM"

    @classmethod
    def parse(cls, value: object) -> FileKeyVersion:
        """The version named by API input; UnsupportedVersion for anything unknown."""
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        raise UnsupportedVersion(f"unsupported file key version {_show(value)}")

    @property
    def key_pair_version(self) -> KeyPairVersion:
        """The only key pair version that can unwrap a file key of this version."""
        return KeyPairVersion.A if self is FileKeyVersion.A else KeyPairVersion.RSA_4096


def _mapping(data: object, what: str, error: type[CryptoError]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise error(f"{what} must be a JSON object")
    return data


def _text(data: Mapping[str, Any], name: str, what: str, error: type[CryptoError]) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise error(f"{what} lacks the string field {name!r}")
    return value


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidFileKey(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFileKey(f"{what} is not valid base64") from None


def _b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class PublicKeyContainer:
    """A user's RSA public key (PEM SubjectPublicKeyInfo) and its key pair version."""

    version: KeyPairVersion
    public_key: str
    _key: rsa.RSAPublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", KeyPairVersion.parse(self.version))
        if not isinstance(self.public_key, str):
            raise InvalidKeyContainer("public key must be a PEM string")
        try:
            key = load_der_public_key(pem_decode(self.public_key, "PUBLIC KEY"))
        except (DerError, ValueError):
            raise InvalidKeyContainer("public key is not a valid PEM SubjectPublicKeyInfo") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidKeyContainer("public key is not an RSA key")
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> rsa.RSAPublicKey:
        return self._key

    @classmethod
    def from_json(cls, data: object) -> PublicKeyContainer:
        """From the API's ``{"version", "publicKey", ...}``; extra fields are ignored."""
        d = _mapping(data, "public key container", InvalidKeyContainer)
        version = KeyPairVersion.parse(d.get("version"))
        return cls(version, _text(d, "publicKey", "public key container", InvalidKeyContainer))

    def to_json(self) -> dict[str, str]:
        return {"version": self.version.value, "publicKey": self.public_key}


@dataclass(frozen=True)
class PrivateKeyContainer:
    """A user's password-encrypted PKCS#8 private key (PEM) and its key pair version.

    The envelope is parsed up front (cheap, no KDF) so a broken PEM/DER is an
    InvalidKeyContainer here; only unlocking costs PBKDF2 time.
    """

    version: KeyPairVersion
    private_key: str = field(repr=False)
    _envelope: Pbes2Key = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", KeyPairVersion.parse(self.version))
        if not isinstance(self.private_key, str):
            raise InvalidKeyContainer("private key must be a PEM string")
        try:
            envelope = parse_pbes2_key(pem_decode(self.private_key, "ENCRYPTED PRIVATE KEY"))
        except DerError as exc:
            raise InvalidKeyContainer(f"private key container is malformed: {exc}") from None
        object.__setattr__(self, "_envelope", envelope)

    def __repr__(self) -> str:
        return f"PrivateKeyContainer(version={self.version.value!r}, private_key=<encrypted PEM>)"

    @property
    def envelope(self) -> Pbes2Key:
        return self._envelope

    @property
    def kdf_iterations(self) -> int:
        """PBKDF2 iteration count, i.e. what unlocking will cost (1.3M is ~0.5-1 s)."""
        return self._envelope.iterations

    @classmethod
    def from_json(cls, data: object) -> PrivateKeyContainer:
        """From the API's ``{"version", "privateKey", ...}``; extra fields are ignored."""
        d = _mapping(data, "private key container", InvalidKeyContainer)
        version = KeyPairVersion.parse(d.get("version"))
        return cls(version, _text(d, "privateKey", "private key container", InvalidKeyContainer))

    def to_json(self) -> dict[str, str]:
        return {"version": self.version.value, "privateKey": self.private_key}


@dataclass(frozen=True)
class UserKeyPair:
    """Both halves of one key pair, as ``GET /user/account/keypair`` returns them."""

    private_key_container: PrivateKeyContainer
    public_key_container: PublicKeyContainer

    def __post_init__(self) -> None:
        if self.private_key_container.version != self.public_key_container.version:
            raise InvalidKeyContainer("private and public key containers have different versions")

    @property
    def version(self) -> KeyPairVersion:
        return self.public_key_container.version

    @classmethod
    def from_json(cls, data: object) -> UserKeyPair:
        d = _mapping(data, "key pair", InvalidKeyContainer)
        return cls(
            PrivateKeyContainer.from_json(d.get("privateKeyContainer")),
            PublicKeyContainer.from_json(d.get("publicKeyContainer")),
        )

    def to_json(self) -> dict[str, dict[str, str]]:
        return {
            "privateKeyContainer": self.private_key_container.to_json(),
            "publicKeyContainer": self.public_key_container.to_json(),
        }


@dataclass(frozen=True)
class EncryptedFileKey:
    """A file's AES key wrapped for one user (base64 strings, as the API carries them).

    ``iv`` and ``tag`` are the file's and identical in every user's copy.
    """

    key: str
    iv: str
    tag: str
    version: FileKeyVersion

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", FileKeyVersion.parse(self.version))
        if not _b64(self.key, "file key 'key'"):
            raise InvalidFileKey("file key 'key' is empty")
        if len(_b64(self.iv, "file key 'iv'")) != IV_BYTES:
            raise InvalidFileKey(f"file key 'iv' must be {IV_BYTES} bytes")
        if len(_b64(self.tag, "file key 'tag'")) != TAG_BYTES:
            raise InvalidFileKey(f"file key 'tag' must be {TAG_BYTES} bytes")

    @classmethod
    def from_json(cls, data: object) -> EncryptedFileKey:
        """From ``{"key", "iv", "tag", "version"}``; extra fields are ignored."""
        d = _mapping(data, "file key", InvalidFileKey)
        version = FileKeyVersion.parse(d.get("version"))
        return cls(
            _text(d, "key", "file key", InvalidFileKey),
            _text(d, "iv", "file key", InvalidFileKey),
            _text(d, "tag", "file key", InvalidFileKey),
            version,
        )

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "iv": self.iv, "tag": self.tag, "version": self.version.value}


def _raw(value: object, what: str, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidFileKey(f"plain file key {what} must be bytes")
    raw = bytes(value)
    if len(raw) != size:
        raise InvalidFileKey(f"plain file key {what} must be {size} bytes")
    return raw


@dataclass(frozen=True)
class PlainFileKey:
    """A file's raw AES-256-GCM key, 12-byte IV and (after encryption) 16-byte tag. Local only."""

    key: bytes
    iv: bytes
    tag: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _raw(self.key, "key", KEY_BYTES))
        object.__setattr__(self, "iv", _raw(self.iv, "iv", IV_BYTES))
        if self.tag is not None:
            object.__setattr__(self, "tag", _raw(self.tag, "tag", TAG_BYTES))

    def __repr__(self) -> str:
        tag = "None" if self.tag is None else repr(self.tag.hex())
        return f"PlainFileKey(key=<redacted>, iv={self.iv.hex()!r}, tag={tag})"

    @classmethod
    def from_json(cls, data: object) -> PlainFileKey:
        """From the SDKs' local ``plain_file_key.json`` (version "A" or "AES-256-GCM")."""
        d = _mapping(data, "plain file key", InvalidFileKey)
        if d.get("version") not in _PLAIN_KEY_VERSIONS:
            raise UnsupportedVersion(f"unsupported plain file key version {_show(d.get('version'))}")
        tag = d.get("tag")
        return cls(
            _b64(d.get("key"), "key"), _b64(d.get("iv"), "iv"), None if tag is None else _b64(tag, "tag")
        )
