"""Streaming file content encryption: one AES-256-GCM message per file, no AAD, no framing.

Ciphertext bytes come out as the plaintext goes in (same length, same chunk boundaries), so a
transfer can upload chunk N while reading chunk N+1; the 16-byte tag is only known at the end
and travels in the file key, never appended to the content.
"""

from __future__ import annotations

from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from recording_storage.crypto._errors import InvalidFileKey, PlaintextTooLarge, TagMismatch
from recording_storage.crypto._model import GCM_MAX_PLAINTEXT, PlainFileKey

__all__ = ["BytesLike", "FileDecryptor", "FileEncryptor"]

BytesLike = bytes | bytearray | memoryview


def _nbytes(data: BytesLike) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


class _GcmStream:
    """Shared byte counting; ``max_plaintext`` is a class attribute so tests can shrink it."""

    max_plaintext: ClassVar[int] = GCM_MAX_PLAINTEXT

    def __init__(self) -> None:
        self._count = 0

    @property
    def bytes_processed(self) -> int:
        return self._count

    def _too_large(self, total: int) -> PlaintextTooLarge:
        return PlaintextTooLarge(
            f"file of {total} bytes exceeds the AES-GCM limit of {self.max_plaintext} bytes"
        )

    def _account(self, n: int) -> None:
        total = self._count + n
        if total > self.max_plaintext:
            raise self._too_large(total)
        self._count = total


def _update_into(stream: _GcmStream, ctx: CipherContext, data: BytesLike, out: bytearray | memoryview) -> int:
    n = _nbytes(data)
    if _nbytes(out) < n:
        raise ValueError(f"output buffer of {_nbytes(out)} bytes is smaller than the {n}-byte input")
    stream._account(n)
    try:
        return ctx.update_into(data, out)
    except ValueError:
        # cryptography < 43 asks for len(data) + 15 bytes of room even for GCM: copy instead.
        out[:n] = ctx.update(data)
        return n


class FileEncryptor(_GcmStream):
    """Encrypts one file with a fresh file key; ``finalize()`` yields the tag.

    ``size`` (the plaintext size, when known, e.g. from S3's ContentLength) lets a file that
    can never be encrypted fail before any byte is read or uploaded. Bytes are counted either
    way and the limit is enforced before a chunk reaches the cipher. Not thread-safe; feeding
    data after ``finalize()`` raises cryptography's ``AlreadyFinalized`` (a programming error).
    """

    def __init__(self, plain: PlainFileKey, *, size: int | None = None) -> None:
        super().__init__()
        if plain.tag is not None:
            # A key with a tag has encrypted a file already; GCM with a reused (key, IV) leaks.
            raise InvalidFileKey("file key was already used (it has a tag); generate a fresh one")
        if size is not None:
            if size < 0:
                raise ValueError("size must not be negative")
            if size > self.max_plaintext:
                raise self._too_large(size)
        self._plain = plain
        self._tag: bytes | None = None
        self._ctx = Cipher(algorithms.AES(plain.key), modes.GCM(plain.iv)).encryptor()

    def update(self, data: BytesLike) -> bytes:
        """Ciphertext for ``data``, exactly as long."""
        self._account(_nbytes(data))
        return self._ctx.update(data)

    def update_into(self, data: BytesLike, out: bytearray | memoryview) -> int:
        """Encrypt ``data`` into the front of ``out`` (reusable, ``len(out) >= len(data)``).

        Returns the number of bytes written, always ``len(data)``.
        """
        return _update_into(self, self._ctx, data, out)

    def finalize(self) -> bytes:
        """Close the GCM message; returns the 16-byte tag (GCM emits no trailing bytes)."""
        self._ctx.finalize()
        self._tag = self._ctx.tag
        return self._tag

    def file_key(self) -> PlainFileKey:
        """The file key with its tag, ready for :func:`encrypt_file_key`."""
        if self._tag is None:
            raise RuntimeError("file_key() is available only after finalize()")
        return PlainFileKey(self._plain.key, self._plain.iv, self._tag)


class FileDecryptor(_GcmStream):
    """Decrypts one file; output is unauthenticated until ``finalize()`` returns.

    Callers must not treat (or publish) the plaintext as genuine before then.
    """

    def __init__(self, plain: PlainFileKey) -> None:
        super().__init__()
        if plain.tag is None:
            raise InvalidFileKey("file key has no tag; cannot authenticate the content")
        self._ctx = Cipher(algorithms.AES(plain.key), modes.GCM(plain.iv, plain.tag)).decryptor()

    def update(self, data: BytesLike) -> bytes:
        self._account(_nbytes(data))
        return self._ctx.update(data)

    def update_into(self, data: BytesLike, out: bytearray | memoryview) -> int:
        return _update_into(self, self._ctx, data, out)

    def finalize(self) -> None:
        """Check the tag; raises TagMismatch if key, IV, tag or content is wrong."""
        try:
            self._ctx.finalize()
        except InvalidTag:
            raise TagMismatch(
                "file content failed GCM authentication (wrong key, IV or tag, or modified data)"
            ) from None
