"""DRACOON client-side encryption, byte-compatible with the official SDKs (pure, synchronous).

The format (see docs: DRACOON API §E): each file is one AES-256-GCM message under a fresh
32-byte key and 12-byte IV, no AAD, tag kept out of the content; the key is RSA-OAEP-wrapped for
each user's public key, with parameters and file key version chosen by the key pair version
("A" = RSA-2048, "RSA-4096"). Private keys are PBES2-encrypted PKCS#8 under the user's
encryption password. No I/O happens here; callers own the bytes and the network.
"""

from recording_storage.crypto._errors import (
    InvalidFileKey,
    InvalidKeyContainer,
    PlaintextTooLarge,
    TagMismatch,
    UnsupportedVersion,
    WrongPassword,
)
from recording_storage.crypto._keys import (
    DEFAULT_KDF_ITERATIONS,
    UnlockedKeyPair,
    encrypt_file_key,
    generate_file_key,
    generate_key_pair,
    rewrap_file_key,
    unlock_key_pair,
)
from recording_storage.crypto._model import (
    GCM_MAX_PLAINTEXT,
    EncryptedFileKey,
    FileKeyVersion,
    KeyPairVersion,
    PlainFileKey,
    PrivateKeyContainer,
    PublicKeyContainer,
    UserKeyPair,
)
from recording_storage.crypto._stream import BytesLike, FileDecryptor, FileEncryptor
from recording_storage.errors import CryptoError

__all__ = [
    "DEFAULT_KDF_ITERATIONS",
    "GCM_MAX_PLAINTEXT",
    "TagMismatch",
    "BytesLike",
    "CryptoError",
    "EncryptedFileKey",
    "FileDecryptor",
    "FileEncryptor",
    "FileKeyVersion",
    "InvalidFileKey",
    "InvalidKeyContainer",
    "KeyPairVersion",
    "PlainFileKey",
    "PlaintextTooLarge",
    "PrivateKeyContainer",
    "PublicKeyContainer",
    "UnlockedKeyPair",
    "UnsupportedVersion",
    "UserKeyPair",
    "WrongPassword",
    "encrypt_file_key",
    "generate_file_key",
    "generate_key_pair",
    "rewrap_file_key",
    "unlock_key_pair",
]
