"""Round trips through recording_storage.crypto, checked by an independent path where possible.

Independent path = plain ``cryptography`` (AESGCM one-shot, raw RSA-OAEP, its PKCS#8 loader), so
a bug shared by our encryptor and decryptor cannot hide.
"""

from __future__ import annotations

import base64
import random
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recording_storage.crypto import (
    GCM_MAX_PLAINTEXT,
    FileDecryptor,
    FileEncryptor,
    InvalidFileKey,
    KeyPairVersion,
    PlainFileKey,
    PlaintextTooLarge,
    TagMismatch,
    encrypt_file_key,
    generate_file_key,
    generate_key_pair,
    rewrap_file_key,
    unlock_key_pair,
)
from tests.fixtures.keys import TEST_KDF_ITERATIONS, TestKeyPair, make_test_keypair

CHUNK = 64 * 1024
BOUNDARY_SIZES = [0, 1, 15, 16, 17, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK + 1]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Pieces of ``data`` cut by cycling through ``cuts`` (0 = an empty piece)."""
    if not any(cuts):
        return [data]
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        pieces.append(data[pos : pos + n])
        pos, i = pos + n, i + 1
    return pieces


def _encrypt(plain: PlainFileKey, pieces: list[bytes], size: int | None = None) -> tuple[bytes, bytes]:
    encryptor = FileEncryptor(plain, size=size)
    ciphertext = b"".join(encryptor.update(p) for p in pieces)
    return ciphertext, encryptor.finalize()


@settings(max_examples=30, deadline=None)
@given(
    size=st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 3 * CHUNK)),
    cuts=st.lists(st.integers(0, CHUNK + 17), max_size=12),
    seed=st.integers(0, 2**32),
)
@example(size=0, cuts=[], seed=0)
@example(size=1, cuts=[1], seed=1)
@example(size=CHUNK + 1, cuts=[CHUNK], seed=2)
@example(size=2 * CHUNK - 1, cuts=[CHUNK], seed=3)
@example(size=3 * CHUNK, cuts=[CHUNK - 1, CHUNK + 1], seed=4)
@example(size=CHUNK, cuts=[15, 0, 16, 17, 1], seed=5)
def test_round_trip_both_versions(
    keypair_a: TestKeyPair, keypair_4096: TestKeyPair, size: int, cuts: list[int], seed: int
) -> None:
    """Encrypt in any chunking, wrap, unwrap; plaintext comes back via AESGCM and FileDecryptor."""
    data = random.Random(seed).randbytes(size)
    for kp in (keypair_a, keypair_4096):
        encryptor = FileEncryptor(generate_file_key(), size=size)
        ciphertext = b"".join(encryptor.update(p) for p in _split(data, cuts))
        tag = encryptor.finalize()
        assert len(ciphertext) == size and len(tag) == 16
        wrapped = encrypt_file_key(encryptor.file_key(), kp.key_pair.public_key_container)
        assert wrapped.version is kp.version.file_key_version

        unwrapped = kp.unlocked.decrypt_file_key(wrapped)

        assert unwrapped.tag == tag
        assert AESGCM(unwrapped.key).decrypt(unwrapped.iv, ciphertext + tag, None) == data
        decryptor = FileDecryptor(unwrapped)
        assert b"".join(decryptor.update(p) for p in _split(ciphertext, list(reversed(cuts)))) == data
        decryptor.finalize()


def test_empty_updates_and_empty_file() -> None:
    """Zero-byte chunks are no-ops and a zero-byte file still has a valid tag."""
    plain = generate_file_key()
    encryptor = FileEncryptor(plain, size=0)
    assert encryptor.update(b"") == b""
    tag = encryptor.finalize()
    assert AESGCM(plain.key).decrypt(plain.iv, tag, None) == b""


def test_update_into_equals_update() -> None:
    """update_into into one reused buffer (and into slices of a big one) matches update()."""
    plain = generate_file_key()
    data = random.Random(7).randbytes(3 * CHUNK + 5)
    pieces = _split(data, [CHUNK, 1, CHUNK - 3, 40_000])
    expected, expected_tag = _encrypt(plain, pieces)

    reused = bytearray(CHUNK + 16)
    encryptor = FileEncryptor(plain)
    out = []
    for piece in pieces:
        n = encryptor.update_into(memoryview(piece), reused)
        assert n == len(piece)
        out.append(bytes(reused[:n]))
    assert b"".join(out) == expected
    assert encryptor.finalize() == expected_tag

    whole = bytearray(len(data))
    view = memoryview(whole)
    encryptor = FileEncryptor(plain)
    pos = 0
    for piece in pieces:
        pos += encryptor.update_into(piece, view[pos:])
    assert bytes(whole) == expected
    assert encryptor.finalize() == expected_tag


def test_decryptor_update_into() -> None:
    plain = generate_file_key()
    data = random.Random(8).randbytes(CHUNK + 3)
    ciphertext, tag = _encrypt(plain, [data])
    decryptor = FileDecryptor(PlainFileKey(plain.key, plain.iv, tag))
    out = bytearray(len(data))
    assert decryptor.update_into(ciphertext, out) == len(data)
    decryptor.finalize()
    assert bytes(out) == data


class _NeedsSpareRoom:
    """Mimics cryptography < 43, whose GCM update_into wants len(data) + 15 bytes of room."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def update_into(self, data: bytes, buf: bytearray | memoryview) -> int:
        if len(buf) < len(data) + 15:
            raise ValueError(f"buffer must be at least {len(data) + 15} bytes for this payload")
        return int(self._inner.update_into(data, buf))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_update_into_works_with_libraries_wanting_spare_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exactly sized buffer still works where the library demands more room (copy fallback)."""
    plain = generate_file_key()
    data = random.Random(9).randbytes(1000)
    expected, expected_tag = _encrypt(plain, [data[:300], data[300:]])
    encryptor = FileEncryptor(plain)
    monkeypatch.setattr(encryptor, "_ctx", _NeedsSpareRoom(encryptor._ctx))
    exact, roomy = bytearray(300), bytearray(700 + 15)
    assert encryptor.update_into(data[:300], exact) == 300
    assert encryptor.update_into(data[300:], roomy) == 700
    assert bytes(exact) + bytes(roomy[:700]) == expected
    assert encryptor.finalize() == expected_tag


def test_update_into_rejects_a_short_buffer() -> None:
    encryptor = FileEncryptor(generate_file_key())
    with pytest.raises(ValueError, match="smaller"):
        encryptor.update_into(b"x" * 10, bytearray(9))
    assert encryptor.bytes_processed == 0


def test_size_hint_refuses_files_beyond_the_gcm_limit_up_front() -> None:
    """Nothing is allocated: the declared size alone decides."""
    with pytest.raises(PlaintextTooLarge, match="exceeds"):
        FileEncryptor(generate_file_key(), size=GCM_MAX_PLAINTEXT + 1)
    FileEncryptor(generate_file_key(), size=GCM_MAX_PLAINTEXT)
    with pytest.raises(ValueError):
        FileEncryptor(generate_file_key(), size=-1)
    assert GCM_MAX_PLAINTEXT == 2**36 - 32


class _SmallEncryptor(FileEncryptor):
    max_plaintext = 100


class _SmallDecryptor(FileDecryptor):
    max_plaintext = 100


def test_byte_count_limit_is_enforced_while_streaming() -> None:
    """Crossing the limit mid-stream raises before the chunk is encrypted; state is unchanged."""
    plain = generate_file_key()
    with pytest.raises(PlaintextTooLarge):
        _SmallEncryptor(plain, size=101)
    encryptor = _SmallEncryptor(plain)
    ciphertext = encryptor.update(b"a" * 60) + encryptor.update(b"a" * 40)
    with pytest.raises(PlaintextTooLarge):
        encryptor.update(b"a")
    with pytest.raises(PlaintextTooLarge):
        encryptor.update_into(b"a", bytearray(1))
    assert encryptor.bytes_processed == 100
    tag = encryptor.finalize()
    assert AESGCM(plain.key).decrypt(plain.iv, ciphertext + tag, None) == b"a" * 100

    decryptor = _SmallDecryptor(PlainFileKey(plain.key, plain.iv, tag))
    decryptor.update(ciphertext)
    with pytest.raises(PlaintextTooLarge):
        decryptor.update(b"a")


@pytest.mark.parametrize("change", ["truncate", "extend", "flip"])
def test_tampered_ciphertext_fails_authentication(change: str) -> None:
    plain = generate_file_key()
    ciphertext, tag = _encrypt(plain, [b"recording" * 100])
    tampered = {
        "truncate": ciphertext[:-1],
        "extend": ciphertext + b"\0",
        "flip": ciphertext[:5] + bytes([ciphertext[5] ^ 1]) + ciphertext[6:],
    }[change]
    decryptor = FileDecryptor(PlainFileKey(plain.key, plain.iv, tag))
    decryptor.update(tampered)
    with pytest.raises(TagMismatch) as info:
        decryptor.finalize()
    assert info.value.code == "tag_mismatch"


def test_key_misuse_is_refused() -> None:
    """A used (tagged) key cannot start a new file, an untagged one cannot be wrapped or decrypt."""
    plain = generate_file_key()
    assert (len(plain.key), len(plain.iv), plain.tag) == (32, 12, None)
    assert generate_file_key() != plain
    encryptor = FileEncryptor(plain)
    with pytest.raises(RuntimeError):
        encryptor.file_key()
    encryptor.finalize()
    used = encryptor.file_key()
    with pytest.raises(InvalidFileKey, match="already used"):
        FileEncryptor(used)
    with pytest.raises(InvalidFileKey, match="no tag"):
        encrypt_file_key(plain, make_test_keypair(KeyPairVersion.A).key_pair.public_key_container)
    with pytest.raises(InvalidFileKey, match="no tag"):
        FileDecryptor(plain)


@pytest.mark.parametrize(
    ("owner", "other"),
    [
        ((KeyPairVersion.RSA_4096, 0), (KeyPairVersion.A, 1)),
        ((KeyPairVersion.A, 0), (KeyPairVersion.RSA_4096, 0)),
        ((KeyPairVersion.A, 0), (KeyPairVersion.A, 1)),
    ],
    ids=["4096-to-A", "A-to-4096", "A-to-A"],
)
def test_rewrap_for_a_second_user(
    owner: tuple[KeyPairVersion, int], other: tuple[KeyPairVersion, int]
) -> None:
    """The second user's copy has their version, the same iv/tag, and opens the file."""
    me = make_test_keypair(owner[0], index=owner[1])
    them = make_test_keypair(other[0], index=other[1])
    data = b"meeting recording " * 1000
    encryptor = FileEncryptor(generate_file_key())
    ciphertext = encryptor.update(data)
    tag = encryptor.finalize()
    mine = encrypt_file_key(encryptor.file_key(), me.key_pair.public_key_container)

    theirs = rewrap_file_key(mine, me.unlocked, them.key_pair.public_key_container)

    assert theirs.version is them.version.file_key_version
    assert (theirs.iv, theirs.tag) == (mine.iv, mine.tag)
    plain = them.unlocked.decrypt_file_key(theirs)
    assert AESGCM(plain.key).decrypt(plain.iv, ciphertext + tag, None) == data
    with pytest.raises(InvalidFileKey):
        them.unlocked.decrypt_file_key(mine)  # wrong key (or wrong version) for them


def test_oaep_parameters_match_the_official_sdks(keypair_any: TestKeyPair) -> None:
    """Raw RSA-OAEP check: SHA-256 with MGF1-SHA-1 for "A", MGF1-SHA-256 for RSA-4096, only."""
    encryptor = FileEncryptor(generate_file_key())
    encryptor.finalize()
    plain = encryptor.file_key()
    wrapped = base64.b64decode(encrypt_file_key(plain, keypair_any.key_pair.public_key_container).key)
    sha1: hashes.HashAlgorithm = hashes.SHA1()
    sha256: hashes.HashAlgorithm = hashes.SHA256()
    right, wrong = (sha1, sha256) if keypair_any.version is KeyPairVersion.A else (sha256, sha1)
    private = keypair_any.unlocked.private_key

    def oaep(mgf: hashes.HashAlgorithm) -> padding.OAEP:
        return padding.OAEP(mgf=padding.MGF1(mgf), algorithm=hashes.SHA256(), label=None)

    assert private.decrypt(wrapped, oaep(right)) == plain.key
    with pytest.raises(ValueError):
        private.decrypt(wrapped, oaep(wrong))


def _der(pem: str) -> bytes:
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return base64.b64decode(body)


# EncryptedPrivateKeyInfo as the Java/JS SDKs write it, written out by hand from RFC 8018:
# PBES2 { PBKDF2 { salt: 20 bytes, iterations, (default PRF hmacWithSHA1) }, aes256-CBC { iv: 16 bytes } }.
_PBES2, _PBKDF2, _AES256CBC = "06092a864886f70d01050d", "06092a864886f70d01050c", "060960864801650304012a"


def _expected_envelope(iterations_tlv: str) -> re.Pattern[str]:
    n = len(iterations_tlv) // 2  # the only variable-length part
    kdf_params = 22 + n
    kdf = 11 + 2 + kdf_params
    params = 2 + kdf + 31
    algorithm = 11 + 2 + params
    return re.compile(
        f"^3082....30{algorithm:02x}{_PBES2}30{params:02x}30{kdf:02x}{_PBKDF2}30{kdf_params:02x}"
        f"0414[0-9a-f]{{40}}{iterations_tlv}301d{_AES256CBC}0410[0-9a-f]{{32}}0482....[0-9a-f]+$"
    )


def test_generated_key_pair_opens_with_an_independent_loader(keypair_any: TestKeyPair) -> None:
    """generate_key_pair output: SDK-style envelope, loadable by cryptography, right key size."""
    kp = keypair_any.key_pair
    pem = kp.private_key_container.private_key
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n") and pem.endswith("-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert _expected_envelope("020203e8").match(_der(pem).hex())  # 1000 iterations
    assert TEST_KDF_ITERATIONS == 1000

    loaded = serialization.load_pem_private_key(pem.encode(), keypair_any.password.encode())

    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.key_size == keypair_any.version.key_size
    assert loaded.public_key().public_numbers() == kp.public_key_container.key.public_numbers()
    assert kp.private_key_container.version is kp.public_key_container.version is keypair_any.version


def test_generate_key_pair_defaults_to_1_3m_iterations() -> None:
    """The default KDF cost is the current SDKs' 1,300,000 iterations (one ~1 s PBKDF2 run to check)."""
    kp = generate_key_pair(KeyPairVersion.A, "default-cost")
    pem = kp.private_key_container.private_key
    assert _expected_envelope("020313d620").match(_der(pem).hex())
    assert kp.private_key_container.kdf_iterations == 1_300_000


def test_non_ascii_password_and_crlf_pem() -> None:
    """A UTF-8 password round-trips; a CRLF copy of the PEM (as C#/JS/Swift write) unlocks too."""
    password = "Pässwörd 🐛"
    kp = generate_key_pair(KeyPairVersion.A, password, iterations=1000)
    unlock_key_pair(kp, password)
    serialization.load_pem_private_key(kp.private_key_container.private_key.encode(), password.encode())
    crlf = type(kp).from_json(
        {
            "privateKeyContainer": {
                "version": "A",
                "privateKey": kp.private_key_container.private_key.replace("\n", "\r\n"),
            },
            "publicKeyContainer": {
                "version": "A",
                "publicKey": kp.public_key_container.public_key.replace("\n", "\r\n"),
            },
        }
    )
    assert unlock_key_pair(crlf, password).version is KeyPairVersion.A


def test_generate_key_pair_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        generate_key_pair(KeyPairVersion.A, "pw", iterations=0)
