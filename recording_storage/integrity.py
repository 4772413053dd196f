"""Proof that the bytes sent to DRACOON are the bytes the source store holds.

A transfer is only as good as the content it reads: a store that splices versions, a proxy that
corrupts a body or a bug in a range loop all deliver the right *length* of wrong bytes. So the
plaintext is hashed as it streams past, and the result is compared with a digest the store itself
states for the pinned version, before any upload is completed. Which digest depends on what the
store offers (HEAD with checksum mode enabled):

* an S3 additional checksum of the whole object (``x-amz-checksum-sha256|crc64nvme|crc32c|crc32|
  sha1``, checksum type ``FULL_OBJECT``);
* the ETag, when it is a plain MD5 (single-part upload, not SSE-KMS or SSE-C);
* a per-part checksum (``COMPOSITE``, value ``<b64>-N``) or a multipart ETag (``<md5 of the part
  MD5s>-N``), recomputed with the part sizes the store reports.

The cheapest proof wins: a full-object SHA-256 costs nothing extra (the plaintext SHA-256 is
always recorded), a CRC costs little, MD5 and per-part proofs cost a second hash. Pure and
synchronous: the transfer runs ``ContentDigest.update`` in a hash thread (hashlib, zlib and
awscrt release the GIL on large buffers), so hashing overlaps encryption and upload.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from awscrt import checksums as crt

from .errors import TransientError

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "ContentDigest",
    "DigestResult",
    "IntegrityMismatch",
    "Proof",
    "StoreDigests",
    "candidate_proofs",
]

# S3's additional checksums, in the order a full-object one is preferred: SHA-256 is computed
# anyway for the record, the CRCs are nearly free, SHA-1 is a second cryptographic hash.
CHECKSUM_ALGORITHMS: Final = ("sha256", "crc64nvme", "crc32c", "crc32", "sha1")
_COMPOSITE_ORDER: Final = ("crc64nvme", "crc32c", "crc32", "sha1", "sha256")
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")
_MULTIPART_ETAG = re.compile(r"([0-9a-f]{32})-([1-9][0-9]{0,4})")
_PARTS_SUFFIX = re.compile(r"(.+)-([1-9][0-9]{0,4})")
# SSE-KMS (and DSSE-KMS) and SSE-C objects have ETags that are not an MD5 of the content.
_OPAQUE_SSE: Final = frozenset({"aws:kms", "aws:kms:dsse"})


class _Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with hashlib's interface; the store states it big-endian."""

    def __init__(self, fn: Callable[[bytes | bytearray | memoryview, int], int], width: int) -> None:
        self._fn = fn
        self._width = width
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _new_hasher(algorithm: str) -> _Hasher:
    if algorithm == "crc32":
        return _Crc(zlib.crc32, 4)  # zlib's is faster than awscrt's for plain CRC32
    if algorithm == "crc32c":
        return _Crc(crt.crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(crt.crc64nvme, 8)
    return hashlib.new(algorithm, usedforsecurity=False)


@dataclass(frozen=True)
class StoreDigests:
    """What a HEAD (checksum mode enabled) said that can prove the content of one version."""

    etag: str
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> value as stated
    checksum_type: str | None = None  # FULL_OBJECT | COMPOSITE (absent on older stores)
    server_side_encryption: str | None = None
    sse_customer_algorithm: str | None = None


@dataclass(frozen=True)
class Proof:
    """One way to prove the content: ``name`` is what ``integrity=`` logs.

    ``parts`` > 0 marks a per-part proof, which needs the part sizes before the stream starts.
    """

    name: str
    algorithm: str  # the hash run over the content (per part when ``parts``)
    expected: str  # as the store states it, normalised (lowercase hex for ETags)
    parts: int = 0

    def describe(self) -> str:
        return f"{self.name} {self.expected}"


def candidate_proofs(d: StoreDigests) -> list[Proof]:
    """Every proof ``d`` offers, cheapest first; empty when the store offers nothing verifiable."""
    found: list[Proof] = []
    composite: list[Proof] = []
    etag = d.etag.strip().strip('"').lower()
    opaque = d.server_side_encryption in _OPAQUE_SSE or bool(d.sse_customer_algorithm)
    etag_parts = _PARTS_SUFFIX.fullmatch(etag)
    for algorithm in CHECKSUM_ALGORITHMS:
        value = d.checksums.get(algorithm)
        if not value:
            continue
        per_part = _PARTS_SUFFIX.fullmatch(value)
        if per_part is not None:
            if d.checksum_type != "FULL_OBJECT":
                composite.append(Proof(f"composite-{algorithm}", algorithm, value, int(per_part.group(2))))
        elif d.checksum_type == "COMPOSITE":
            # A composite value stated without its "-N" (moto does so): the multipart ETag's
            # count is the part count; without one the value cannot be recomputed.
            if etag_parts is not None:
                composite.append(Proof(f"composite-{algorithm}", algorithm, value, int(etag_parts.group(2))))
        elif d.checksum_type is None and etag_parts is not None and algorithm != "crc64nvme":
            # A multipart object's checksum with neither "-N" nor a type: it may be per part or
            # of the whole object (CRC64NVME is always the latter). Guessing could report a
            # mismatch for good content, so it is not used; the multipart ETag still is.
            continue
        else:
            found.append(Proof(algorithm, algorithm, value))
    if not opaque and _MD5_ETAG.fullmatch(etag):
        found.append(Proof("md5", "md5", etag))
    composite.sort(key=lambda p: _COMPOSITE_ORDER.index(p.algorithm))
    found.extend(composite)
    multipart = _MULTIPART_ETAG.fullmatch(etag)
    if not opaque and multipart is not None:
        found.append(Proof("multipart-md5", "md5", etag, int(multipart.group(2))))
    return found


@dataclass(frozen=True)
class DigestResult:
    """The plaintext SHA-256 (hex) and, when a proof was run, its value in the store's notation."""

    sha256: str
    actual: str | None = None


class ContentDigest:
    """Hashes the plaintext once as it streams: SHA-256 for the record, plus the proof's digest.

    Feed the chunks in order with ``update`` (any sizes; part boundaries are handled here), then
    call ``finish``. Not thread-safe: one ``update`` at a time, which the transfer guarantees by
    awaiting the previous chunk's hash before starting the next.
    """

    def __init__(self, proof: Proof | None = None, part_sizes: Sequence[int] = ()) -> None:
        if proof is not None and proof.parts and len(part_sizes) != proof.parts:
            raise ValueError(f"{proof.name} needs {proof.parts} part sizes, got {len(part_sizes)}")
        self._proof = proof
        self._sha256 = hashlib.sha256()
        # A full-object SHA-256 proof reuses the record's hasher: no second pass.
        self._whole: _Hasher | None = None
        if proof is not None and not proof.parts and proof.algorithm != "sha256":
            self._whole = _new_hasher(proof.algorithm)
        self._part_sizes = list(part_sizes)
        self._part_digests: list[bytes] = []
        self._part: _Hasher | None = None
        self._part_left = 0
        self._next_part = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._sha256.update(data)
        if self._whole is not None:
            self._whole.update(data)
        if self._proof is not None and self._proof.parts:
            self._update_parts(memoryview(data))

    def _update_parts(self, view: memoryview) -> None:
        assert self._proof is not None
        while len(view):
            if self._part is None:
                if self._next_part >= len(self._part_sizes):
                    # More bytes than the parts add up to: the layout cannot match, say so by
                    # hashing them into a part that makes the result differ.
                    self._part_sizes.append(len(view))
                self._part = _new_hasher(self._proof.algorithm)
                self._part_left = self._part_sizes[self._next_part]
                self._next_part += 1
            take = min(self._part_left, len(view))
            self._part.update(view[:take])
            self._part_left -= take
            view = view[take:]
            if self._part_left == 0:
                self._part_digests.append(self._part.digest())
                self._part = None

    def finish(self) -> DigestResult:
        sha256 = self._sha256.hexdigest()
        proof = self._proof
        if proof is None:
            return DigestResult(sha256)
        if not proof.parts:
            raw = self._sha256.digest() if self._whole is None else self._whole.digest()
            actual = raw.hex() if proof.name == "md5" else base64.b64encode(raw).decode()
            return DigestResult(sha256, actual)
        if self._part is not None:  # fewer bytes than the layout: the last part is incomplete
            self._part_digests.append(self._part.digest())
        combined = _new_hasher(proof.algorithm)
        combined.update(b"".join(self._part_digests))
        count = len(self._part_digests)
        if proof.name == "multipart-md5":
            return DigestResult(sha256, f"{combined.digest().hex()}-{count}")
        # Stated with or without the "-N" (base64 never contains '-'): answer in the same form.
        suffix = f"-{count}" if "-" in proof.expected else ""
        return DigestResult(sha256, f"{base64.b64encode(combined.digest()).decode()}{suffix}")


class IntegrityMismatch(TransientError):
    """The content read does not match the digest the store states for the pinned version.

    Transient on its own (a body corrupted on the way is worth another read); the transfer
    decides when a repeated mismatch becomes permanent.
    """

    code = "integrity_mismatch"

    def __init__(self, what: str, proof: Proof, actual: str, sha256: str) -> None:
        super().__init__(
            f"{what}: content does not match the store's {proof.name}: the store states "
            f"{proof.expected}, the bytes read give {actual} (sha256 {sha256})"
        )
        self.proof = proof
        self.actual = actual
        self.sha256 = sha256
