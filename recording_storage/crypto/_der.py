"""Just enough DER to read and write DRACOON's encrypted PKCS#8 private keys.

Why by hand: ``cryptography`` cannot choose the KDF parameters of an encrypted PKCS#8 key (the
official SDKs write PBKDF2-HMAC-SHA1, 1.3M iterations, 20-byte salt, AES-256-CBC), and its loader
reports a wrong password and a broken key with the same ``ValueError``. Decrypting the PBES2
envelope ourselves lets the caller tell those apart; the inner ``PrivateKeyInfo`` is still
parsed by ``cryptography``. Only definite-length DER is accepted, as every SDK writes it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "DerError",
    "Pbes2Key",
    "build_pbes2_key",
    "is_one_der_sequence",
    "parse_pbes2_key",
    "pem_decode",
    "pem_encode",
]

# A server-supplied iteration count is attacker-controlled input: bound it so a hostile or
# corrupted key container cannot pin a worker for hours (current SDKs use 1.3M).
MAX_ITERATIONS = 10_000_000

_SEQUENCE, _INTEGER, _OCTET_STRING, _NULL, _OID = 0x30, 0x02, 0x04, 0x05, 0x06


class DerError(ValueError):
    """Structure is not what PBES2/PKCS#8 requires; callers map it to InvalidKeyContainer."""


def _encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _encode_length(len(body)) + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(_SEQUENCE, b"".join(parts))


def _oid(dotted: str) -> bytes:
    """Encoded OID TLV; compared as bytes when reading, so no decoder is needed."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return _tlv(_OID, bytes(body))


def _int(n: int) -> bytes:
    return _tlv(_INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


_PBES2 = _oid("1.2.840.113549.1.5.13")
_PBKDF2 = _oid("1.2.840.113549.1.5.12")
_HMAC_SHA1 = _oid("1.2.840.113549.2.7")
_PRFS = {
    _HMAC_SHA1: "sha1",
    _oid("1.2.840.113549.2.8"): "sha224",
    _oid("1.2.840.113549.2.9"): "sha256",
    _oid("1.2.840.113549.2.10"): "sha384",
    _oid("1.2.840.113549.2.11"): "sha512",
}
_AES_256_CBC = _oid("2.16.840.1.101.3.4.1.42")
_AES_CBC_KEY_LENGTHS = {
    _oid("2.16.840.1.101.3.4.1.2"): 16,
    _oid("2.16.840.1.101.3.4.1.22"): 24,
    _AES_256_CBC: 32,
}


class _Reader:
    """Sequential reader over the body of one constructed element."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    def at_end(self) -> bool:
        return self._pos >= self._end

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self._data[self._pos]

    def _next(self) -> tuple[int, int, int, int]:
        """(tag, element start, body start, body end) of the next element."""
        data, pos, end = self._data, self._pos, self._end
        if pos + 2 > end:
            raise DerError("truncated element")
        tag, first = data[pos], data[pos + 1]
        body = pos + 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or body + count > end:
                raise DerError("unsupported or truncated length")
            length = int.from_bytes(data[body : body + count], "big")
            body += count
        if body + length > end:
            raise DerError("element runs past its container")
        self._pos = body + length
        return tag, pos, body, body + length

    def expect(self, tag: int) -> tuple[int, int]:
        got, _, body, end = self._next()
        if got != tag:
            raise DerError(f"expected tag 0x{tag:02x}, found 0x{got:02x}")
        return body, end

    def sequence(self) -> _Reader:
        body, end = self.expect(_SEQUENCE)
        return _Reader(self._data, body, end)

    def octets(self) -> bytes:
        body, end = self.expect(_OCTET_STRING)
        return self._data[body:end]

    def integer(self) -> int:
        body, end = self.expect(_INTEGER)
        if body == end:
            raise DerError("empty integer")
        return int.from_bytes(self._data[body:end], "big", signed=True)

    def raw_oid(self) -> bytes:
        tag, start, _, end = self._next()
        if tag != _OID:
            raise DerError("expected an object identifier")
        return self._data[start:end]

    def done(self) -> None:
        if not self.at_end():
            raise DerError("unexpected trailing data")


@dataclass(frozen=True)
class Pbes2Key:
    """The parsed envelope of an encrypted PKCS#8 key: KDF inputs, IV and ciphertext."""

    salt: bytes
    iterations: int
    prf: str  # hashlib name of the PBKDF2 HMAC hash
    key_length: int  # AES key bytes
    iv: bytes
    ciphertext: bytes = field(repr=False)

    def derive_key(self, password: bytes) -> bytes:
        return hashlib.pbkdf2_hmac(self.prf, password, self.salt, self.iterations, self.key_length)

    def decrypt(self, key: bytes) -> bytes | None:
        """The inner ``PrivateKeyInfo`` DER, or None when the key is evidently wrong.

        A wrong key yields random bytes: bad PKCS#7 padding, or padding that happens to be
        valid (~1/256) around bytes that are not exactly one DER SEQUENCE (~2^-24 more).
        """
        decryptor = Cipher(algorithms.AES(key), modes.CBC(self.iv)).decryptor()
        padded = decryptor.update(self.ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            plain = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            return None
        return plain if is_one_der_sequence(plain) else None


def is_one_der_sequence(data: bytes) -> bool:
    """True when ``data`` is exactly one SEQUENCE element, header and length consistent."""
    try:
        reader = _Reader(data)
        reader.sequence()
        reader.done()
    except DerError:
        return False
    return True


def parse_pbes2_key(der: bytes) -> Pbes2Key:
    """Parse ``EncryptedPrivateKeyInfo`` with PBES2 = PBKDF2 + AES-CBC (RFC 8018 A.2, A.4)."""
    top_outer = _Reader(der)
    top = top_outer.sequence()
    top_outer.done()
    algorithm = top.sequence()
    if algorithm.raw_oid() != _PBES2:
        raise DerError("private key is not PBES2-encrypted")
    params = algorithm.sequence()
    algorithm.done()
    kdf = params.sequence()
    if kdf.raw_oid() != _PBKDF2:
        raise DerError("PBES2 key derivation is not PBKDF2")
    kdf_params = kdf.sequence()
    kdf.done()
    salt = kdf_params.octets()
    iterations = kdf_params.integer()
    declared_length = kdf_params.integer() if kdf_params.peek_tag() == _INTEGER else None
    prf = "sha1"
    if not kdf_params.at_end():
        prf_alg = kdf_params.sequence()
        prf_oid = prf_alg.raw_oid()
        if prf_oid not in _PRFS:
            raise DerError("unsupported PBKDF2 PRF")
        prf = _PRFS[prf_oid]
        if not prf_alg.at_end():
            prf_alg.expect(_NULL)
        prf_alg.done()
    kdf_params.done()
    scheme = params.sequence()
    params.done()
    cipher_oid = scheme.raw_oid()
    if cipher_oid not in _AES_CBC_KEY_LENGTHS:
        raise DerError("PBES2 cipher is not AES-CBC")
    key_length = _AES_CBC_KEY_LENGTHS[cipher_oid]
    iv = scheme.octets()
    scheme.done()
    ciphertext = top.octets()
    top.done()
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise DerError("PBKDF2 iteration count out of range")
    if declared_length is not None and declared_length != key_length:
        raise DerError("PBKDF2 key length does not fit the cipher")
    if not salt or len(iv) != 16 or not ciphertext or len(ciphertext) % 16:
        raise DerError("bad salt, IV or ciphertext length")
    return Pbes2Key(salt, iterations, prf, key_length, iv, ciphertext)


def build_pbes2_key(pkcs8: bytes, password: bytes, *, salt: bytes, iv: bytes, iterations: int) -> bytes:
    """Encrypt a ``PrivateKeyInfo`` the way the official SDKs do: PBKDF2-HMAC-SHA1 + AES-256-CBC.

    The PRF is left at its default (hmacWithSHA1) and keyLength omitted, as Java and JS write it.
    """
    key = hashlib.pbkdf2_hmac("sha1", password, salt, iterations, 32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(pkcs8) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    kdf = _seq(_PBKDF2, _seq(_tlv(_OCTET_STRING, salt), _int(iterations)))
    scheme = _seq(_AES_256_CBC, _tlv(_OCTET_STRING, iv))
    algorithm = _seq(_PBES2, _seq(kdf, scheme))
    return _seq(algorithm, _tlv(_OCTET_STRING, ciphertext))


def pem_decode(text: str, label: str) -> bytes:
    """DER from one PEM block; tolerant of ``\\r\\n`` and surrounding whitespace only."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----" or lines[-1] != f"-----END {label}-----":
        raise DerError(f"not a PEM {label} block")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise DerError("PEM body is not valid base64") from None


def pem_encode(der: bytes, label: str) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]) + "\n"
