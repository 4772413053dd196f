"""Key pairs and file keys: unlock, generate, wrap, unwrap, re-wrap.

The key pair version decides every parameter (RSA size, OAEP hashes, file key version); nothing
is hard-coded to "A" as in the Go service this replaces.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from recording_storage.crypto._der import build_pbes2_key, parse_pbes2_key, pem_encode
from recording_storage.crypto._errors import InvalidFileKey, InvalidKeyContainer, WrongPassword
from recording_storage.crypto._model import (
    IV_BYTES,
    KEY_BYTES,
    EncryptedFileKey,
    KeyPairVersion,
    PlainFileKey,
    PrivateKeyContainer,
    PublicKeyContainer,
    UserKeyPair,
)

__all__ = [
    "DEFAULT_KDF_ITERATIONS",
    "UnlockedKeyPair",
    "encrypt_file_key",
    "generate_file_key",
    "generate_key_pair",
    "rewrap_file_key",
    "unlock_key_pair",
]

# What the current Java and JS SDKs write (HASH_ITERATION_COUNT / count: 1.3e6).
DEFAULT_KDF_ITERATIONS = 1_300_000


def _oaep(version: KeyPairVersion) -> padding.OAEP:
    """OAEP as the official SDKs use it: SHA-256, with MGF1-SHA-1 for "A" (not SHA-256!)."""
    mgf_hash: hashes.HashAlgorithm = hashes.SHA1() if version is KeyPairVersion.A else hashes.SHA256()
    return padding.OAEP(mgf=padding.MGF1(mgf_hash), algorithm=hashes.SHA256(), label=None)


class UnlockedKeyPair:
    """A decrypted private key, kept in memory so the PBKDF2 cost is paid once per process.

    Unlocking a 1.3M-iteration key takes ~0.5-1 s; unwrapping a file key with the result takes
    milliseconds, so callers should unlock once and share this object (it is immutable and
    safe to use from several threads).
    """

    __slots__ = ("_private_key", "public_key_container", "version")

    def __init__(self, private_key: rsa.RSAPrivateKey, public_key_container: PublicKeyContainer) -> None:
        if private_key.public_key().public_numbers() != public_key_container.key.public_numbers():
            raise InvalidKeyContainer("private key does not belong to the public key")
        self._private_key = private_key
        self.public_key_container = public_key_container
        self.version: KeyPairVersion = public_key_container.version

    def __repr__(self) -> str:
        return f"UnlockedKeyPair(version={self.version.value!r})"

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return self._private_key

    def decrypt_file_key(self, enc: EncryptedFileKey) -> PlainFileKey:
        """Unwrap a file key wrapped for this key pair; iv and tag are carried over."""
        if enc.version.key_pair_version is not self.version:
            raise InvalidFileKey(
                f"file key version {enc.version.value!r} does not fit key pair version {self.version.value!r}"
            )
        try:
            key = self._private_key.decrypt(base64.b64decode(enc.key), _oaep(self.version))
        except ValueError:
            raise InvalidFileKey("file key cannot be decrypted with this key pair") from None
        if len(key) != KEY_BYTES:
            raise InvalidFileKey("decrypted file key has the wrong length")
        return PlainFileKey(key, base64.b64decode(enc.iv), base64.b64decode(enc.tag))


def _password_candidates(password: str) -> list[bytes]:
    """UTF-8 first, then ISO-8859-1, as Java and JS do; skip duplicates (pure ASCII)."""
    out: list[bytes] = []
    for encoding in ("utf-8", "latin-1"):
        try:
            candidate = password.encode(encoding)
        except UnicodeEncodeError:
            continue
        if candidate not in out:
            out.append(candidate)
    return out


def unlock_key_pair(kp: UserKeyPair, password: str) -> UnlockedKeyPair:
    """Decrypt the private key with the encryption password and check it fits the public key.

    Raises WrongPassword if no encoding of the password opens the envelope, InvalidKeyContainer
    if it opens but the content is not an RSA PKCS#8 key matching the public key.
    """
    envelope = kp.private_key_container.envelope
    for candidate in _password_candidates(password):
        pkcs8 = envelope.decrypt(envelope.derive_key(candidate))
        if pkcs8 is not None:
            break
    else:
        raise WrongPassword("the encryption password does not unlock the private key")
    try:
        private_key = serialization.load_der_private_key(pkcs8, password=None)
    except (ValueError, TypeError):
        raise InvalidKeyContainer("decrypted private key is not a valid PKCS#8 key") from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise InvalidKeyContainer("private key is not an RSA key")
    return UnlockedKeyPair(private_key, kp.public_key_container)


def generate_key_pair(
    version: KeyPairVersion, password: str, *, iterations: int = DEFAULT_KDF_ITERATIONS
) -> UserKeyPair:
    """A new key pair in DRACOON's container format, readable by every official client.

    The private key is PKCS#8 encrypted with PBES2 (PBKDF2-HMAC-SHA1, 20-byte salt,
    ``iterations``, AES-256-CBC) under the UTF-8 password, like the current SDKs write it.
    """
    version = KeyPairVersion.parse(version)
    if iterations < 1:
        raise ValueError("iterations must be positive")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=version.key_size)
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    der = build_pbes2_key(
        pkcs8,
        password.encode("utf-8"),
        salt=secrets.token_bytes(20),
        iv=secrets.token_bytes(16),
        iterations=iterations,
    )
    # Self-check of writer against reader, reusing the derived key (no second PBKDF2 run).
    envelope = parse_pbes2_key(der)
    if envelope.decrypt(envelope.derive_key(password.encode("utf-8"))) != pkcs8:  # pragma: no cover
        raise AssertionError("generated private key container does not round-trip")
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return UserKeyPair(
        PrivateKeyContainer(version, pem_encode(der, "ENCRYPTED PRIVATE KEY")),
        PublicKeyContainer(version, public_pem.decode("ascii")),
    )


def generate_file_key() -> PlainFileKey:
    """A fresh 32-byte AES key and 12-byte IV. Never reuse one for a second file or target."""
    return PlainFileKey(secrets.token_bytes(KEY_BYTES), secrets.token_bytes(IV_BYTES))


def encrypt_file_key(plain: PlainFileKey, public: PublicKeyContainer) -> EncryptedFileKey:
    """Wrap a finished file key (it must carry its tag) for the owner of ``public``."""
    if plain.tag is None:
        raise InvalidFileKey("file key has no tag yet: finalize the encryptor first")
    wrapped = public.key.encrypt(plain.key, _oaep(public.version))
    return EncryptedFileKey(
        base64.b64encode(wrapped).decode("ascii"),
        base64.b64encode(plain.iv).decode("ascii"),
        base64.b64encode(plain.tag).decode("ascii"),
        public.version.file_key_version,
    )


def rewrap_file_key(
    enc: EncryptedFileKey, mine: UnlockedKeyPair, theirs: PublicKeyContainer
) -> EncryptedFileKey:
    """Give another user a copy of a file key (missing-file-keys flow); iv and tag unchanged."""
    return encrypt_file_key(mine.decrypt_file_key(enc), theirs)
