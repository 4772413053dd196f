"""Crypto benchmarks: streaming encryptor overhead and key unlock cost.

``crypto_encrypt_vs_bare`` is the gate: our FileEncryptor (byte counting, limit checks) must run
at >= 0.9x a bare ``cryptography`` AES-GCM encryptor over the very same buffers, measured in the
same process with interleaved repetitions, best of N.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench.common import BenchOptions, Result, benchmark, interleaved_best
from recording_storage.crypto import (
    FileEncryptor,
    KeyPairVersion,
    UserKeyPair,
    generate_file_key,
    generate_key_pair,
    unlock_key_pair,
)

MIB = 1024 * 1024
_PASSWORD = "bench-password"


def _bare(plan: list[bytes]) -> None:
    key = generate_file_key()
    ctx = Cipher(algorithms.AES(key.key), modes.GCM(key.iv)).encryptor()
    for chunk in plan:
        ctx.update(chunk)
    ctx.finalize()


def _ours(plan: list[bytes], total: int) -> None:
    encryptor = FileEncryptor(generate_file_key(), size=total)
    for chunk in plan:
        encryptor.update(chunk)
    encryptor.finalize()


def _bare_into(plan: list[bytes], out: bytearray) -> None:
    key = generate_file_key()
    ctx = Cipher(algorithms.AES(key.key), modes.GCM(key.iv)).encryptor()
    for chunk in plan:
        ctx.update_into(chunk, out)
    ctx.finalize()


def _ours_into(plan: list[bytes], total: int, out: bytearray) -> None:
    encryptor = FileEncryptor(generate_file_key(), size=total)
    for chunk in plan:
        encryptor.update_into(chunk, out)
    encryptor.finalize()


@benchmark("crypto_encrypt")
def encrypt_throughput(options: BenchOptions) -> list[Result]:
    """FileEncryptor vs a bare AES-GCM loop, allocating (update) and zero-copy (update_into)."""
    chunk = MIB
    total = (32 if options.quick else 256) * MIB
    rounds = 3 if options.quick else 9
    distinct = [os.urandom(chunk) for _ in range(8)]
    plan = [distinct[i % len(distinct)] for i in range(total // chunk)]
    out = bytearray(chunk + 16)  # +16: older cryptography wants spare room in update_into
    candidates: dict[str, Callable[[], object]] = {
        "bare": lambda: _bare(plan),
        "ours": lambda: _ours(plan, total),
        "bare_into": lambda: _bare_into(plan, out),
        "ours_into": lambda: _ours_into(plan, total, out),
    }
    best = interleaved_best(candidates, rounds)
    return [
        Result("crypto_encrypt_vs_bare", best["bare"] / best["ours"], ">= 0.9", "x"),
        Result("crypto_encrypt_into_vs_bare", best["bare_into"] / best["ours_into"], ">= 0.9", "x"),
        Result("crypto_encrypt_mbps", total / best["ours"] / 1e6, "info", "MB/s"),
        Result("crypto_encrypt_into_mbps", total / best["ours_into"] / 1e6, "info", "MB/s"),
    ]


def _best_unlock(key_pair: UserKeyPair, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        unlock_key_pair(key_pair, _PASSWORD)
        best = min(best, time.perf_counter() - start)
    return best


@benchmark("crypto_unlock")
def unlock_cost(options: BenchOptions) -> list[Result]:
    """What unlocking costs per key type: legacy 10k-iteration "A" and current 1.3M RSA-4096."""
    rounds = 1 if options.quick else 3
    legacy = generate_key_pair(KeyPairVersion.A, _PASSWORD, iterations=10_000)
    current = generate_key_pair(KeyPairVersion.RSA_4096, _PASSWORD, iterations=1_300_000)
    return [
        Result("unlock_a_10k_s", _best_unlock(legacy, rounds), "info", "s"),
        Result("unlock_rsa4096_1300k_s", _best_unlock(current, rounds), "info", "s"),
    ]
