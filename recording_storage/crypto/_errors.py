"""The crypto module's failures, one class per decision a caller has to make.

All are :class:`~recording_storage.errors.CryptoError` (hence permanent): retrying with the same
inputs can never succeed. Messages name the problem, never a password, key or PEM.
"""

from __future__ import annotations

from recording_storage.errors import CryptoError

__all__ = [
    "TagMismatch",
    "InvalidFileKey",
    "InvalidKeyContainer",
    "PlaintextTooLarge",
    "UnsupportedVersion",
    "WrongPassword",
]


class WrongPassword(CryptoError):
    """The encryption password does not open the private key (config problem, not data)."""

    code = "wrong_password"


class InvalidKeyContainer(CryptoError):
    """A key container is malformed: bad PEM armour, broken DER, not RSA, halves not matching."""

    code = "invalid_key_container"


class UnsupportedVersion(CryptoError):
    """A key pair or file key names a version this client does not know."""

    code = "unsupported_version"


class InvalidFileKey(CryptoError):
    """A file key is malformed, cannot be unwrapped, or does not fit the key pair's version."""

    code = "invalid_file_key"


class TagMismatch(CryptoError):
    """The GCM tag does not match: wrong key/IV/tag or modified ciphertext. Discard the output."""

    code = "tag_mismatch"


class PlaintextTooLarge(CryptoError):
    """The file exceeds what one AES-GCM stream may encrypt (64 GiB - 32 bytes)."""

    code = "plaintext_too_large"
