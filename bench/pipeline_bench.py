"""Pipeline benchmarks (issue 5): overlap, encryption cost, flat memory, parallel S3 parts.

All run against the bench stack (``bench/_stack.py``): moto's S3 server and the DRACOON emulator,
each in a helper process, the transfer in this process (or, for memory, in a child of its own).

* ``pipeline_stream``: one large object, five candidates interleaved, best of N each:
  the real ``Transferer.run`` (S3 -> encrypt -> proxy upload); the same with ``FileEncryptor``
  swapped for an identity stand-in (no encryption, everything else the production path);
  download only (``S3Source.iter_chunks``, discarded); upload only (pre-encrypted chunks into a
  ``DracoonClient`` upload channel); and, for diagnosis, download-only and upload-only run
  concurrently but independently (what the two paths cost together on this machine: no
  pipeline can beat it). ``pipeline_overlap`` = e2e / max(download, upload),
  ``encryption_overhead`` = e2e / e2e without encryption.
* ``integrity_overhead``: the real ``Transferer.run`` on one object, with content verification
  (``s3.verify: auto``: plaintext SHA-256 plus the store's proof, here moto's composite CRC32
  per part) vs. without (``s3.verify: off``: no hashing at all), interleaved, best of N each.
* ``pipeline_memory``: peak RSS of a fresh process transferring a big vs a small object.
* ``parallel_parts``: S3-direct upload with 20 ms injected latency per part PUT, 4 vs 1 in flight.
  The emulator answers parts with opaque ETags (as S3 does under SSE-KMS) so that it does not
  MD5 every part: on 2 cores that server-side hashing (about half of all CPU per part, work S3
  does on its own machines in production) competes with the client for the same cores and the
  figure would measure the emulator. The same run repeats with MD5 ETags, reported for
  comparison (``parallel_parts_speedup_md5_etags``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from typing import Any
from unittest import mock

from bench import _stack
from bench._stack import (
    BUCKET,
    MIB,
    Stack,
    TransferPipeline,
    download_only,
    job_for,
    put_generated_object,
    quiet_logs,
    running_stack,
)
from bench._timing import Candidate, Samples, info, load_note, report, sizes, timed
from bench.common import BenchOptions, Result, benchmark
from recording_storage.config import AppConfig, DracoonConfig
from recording_storage.crypto import (
    EncryptedFileKey,
    FileEncryptor,
    PlainFileKey,
    encrypt_file_key,
    generate_file_key,
)
from recording_storage.dracoon import DracoonClient
from recording_storage.pool import preferred_key_pair
from recording_storage.s3 import S3Source
from recording_storage.transfer import streaming as transfer_streaming

__all__ = ["integrity", "memory", "parallel_parts", "stream"]

# -- pipeline_stream --------------------------------------------------------------------------

class _IdentityEncryptor:
    """Stands in for FileEncryptor in the no-encryption baseline: same calls, no cipher."""

    def __init__(self, plain: PlainFileKey, *, size: int | None = None) -> None:
        self._plain = plain

    def update(self, data: bytes) -> bytes:
        return data

    def update_into(self, data: bytes | bytearray | memoryview, out: bytearray | memoryview) -> int:
        n = len(data)
        out[:n] = data  # the copy a cipher's output costs anyway, minus the cipher
        return n

    def finalize(self) -> bytes:
        return bytes(16)

    def file_key(self) -> PlainFileKey:
        # A well-formed key with a tag, so the encrypted room accepts the completion.
        return PlainFileKey(self._plain.key, self._plain.iv, tag=bytes(16))


@contextlib.contextmanager
def _without_encryption() -> Iterator[None]:
    """The transferer's encryptor swapped for the identity: the production path minus AES-GCM."""
    with mock.patch.object(transfer_streaming, "FileEncryptor", _IdentityEncryptor):
        yield


class _StreamCandidates:
    """The ways of moving the same object, sharing one set of clients."""

    def __init__(self, rt: TransferPipeline, stack: Stack, key: str, size: int) -> None:
        self.rt, self.stack, self.key, self.size = rt, stack, key, size
        self._counter = itertools.count()
        self._room_id = 0
        self._chunks: list[bytes] = []
        self._file_key: EncryptedFileKey | None = None

    async def prepare(self) -> None:
        account = self.stack.account()
        client = await self.rt.pool.client(account)
        keys = await self.rt.pool.key_pair(account)
        room = await client.ensure_room_path(account.parent_room_id, ["Bench", "upload-only"])
        self._room_id = room.id
        # Upload-only feeds ciphertext in the pipeline's own chunk size, produced beforehand.
        encryptor = FileEncryptor(generate_file_key())
        chunk = self.rt.config.s3.chunk_size
        self._chunks = [encryptor.update(os.urandom(chunk)) for _ in range(4)]
        encryptor.finalize()
        self._file_key = encrypt_file_key(encryptor.file_key(), keys.public_key_container)

    def all(self) -> dict[str, Candidate]:
        return {"e2e": self.e2e, "e2e_plain": self.e2e_plain, "download": self.download,
                "upload": self.upload, "concurrent": self.concurrent}

    async def e2e(self) -> None:
        report = await self.rt.transferer.run(job_for(self.key, f"Bench/e2e-{next(self._counter)}"))
        if report.uploaded != 1 or report.bytes_read != self.size:
            raise RuntimeError(f"end-to-end transfer incomplete: {report}")

    async def e2e_plain(self) -> None:
        with _without_encryption():
            report = await self.rt.transferer.run(job_for(self.key, f"Bench/plain-{next(self._counter)}"))
        if report.uploaded != 1 or report.bytes_read != self.size:
            raise RuntimeError(f"unencrypted transfer incomplete: {report}")

    async def download(self) -> None:
        await download_only(self.rt.s3, self.key, self.size)

    async def concurrent(self) -> None:
        """Download-only and upload-only at the same time, independent of each other: what the
        two paths cost together on this machine, i.e. the best any overlap could do here."""
        await asyncio.gather(self.download(), self.upload())

    async def upload(self) -> None:
        client = await self.rt.pool.client(self.stack.account())
        upload = await client.open_upload(self._room_id, f"upload-{next(self._counter)}.bin", self.size,
                                          expire_at=None, classification=2, notes=None)
        sent, index = 0, 0
        while sent < self.size:
            chunk = self._chunks[index % len(self._chunks)][: self.size - sent]
            await upload.write(chunk)
            sent, index = sent + len(chunk), index + 1
        node = await upload.complete(self._file_key, resolution="fail")
        if node.size != self.size:
            raise RuntimeError(f"upload-only stored {node.size} of {self.size} bytes")


@benchmark("pipeline_stream")
def stream(options: BenchOptions) -> list[Result]:
    """Pipeline overlap and encryption cost, measured in one interleaved session."""
    quiet_logs()
    size = sizes(options, tiny=2 * MIB, quick=64 * MIB, full=512 * MIB)
    rounds = 1 if os.environ.get("BENCH_TINY") else 3 if options.quick else 5
    key = f"bench/stream-{size}.bin"
    load_note()
    with running_stack() as stack, asyncio.Runner() as runner:
        config = stack.app_config()
        runner.run(_stack.create_bucket(config))
        put_s = runner.run(put_generated_object(config, key, size))
        exits = AsyncExitStack()
        try:
            rt = runner.run(exits.enter_async_context(_stack.transfer_pipeline(stack, config)))
            candidates = _StreamCandidates(rt, stack, key, size)
            runner.run(candidates.prepare())
            samples = timed(runner, candidates.all(), rounds, stack.server_pids)
        finally:
            runner.run(exits.aclose())
    best = {name: s.best() for name, s in samples.items()}
    slower = max(best["download"], best["upload"])
    info(f"object {size // MIB} MiB (created in {put_s:.1f} s), s3 chunk {config.s3.chunk_size // MIB} MiB"
          f" x {config.s3.parallel_ranges} ranges, proxy chunk {config.dracoon.upload_chunk_size // MIB} MiB")
    report(samples, size)
    return [
        Result("pipeline_overlap", best["e2e"] / slower, "<= 1.25", "x"),
        Result("encryption_overhead", best["e2e"] / best["e2e_plain"], "<= 1.15", "x"),
        Result("pipeline_e2e_s", best["e2e"], "info", "s"),
        Result("pipeline_e2e_plain_s", best["e2e_plain"], "info", "s"),
        Result("pipeline_download_only_s", best["download"], "info", "s"),
        Result("pipeline_upload_only_s", best["upload"], "info", "s"),
        Result("pipeline_concurrent_s", best["concurrent"], "info", "s"),
        Result("pipeline_e2e_vs_concurrent", best["e2e"] / best["concurrent"], "info", "x"),
        Result("pipeline_e2e_mbps", size / best["e2e"] / 1e6, "info", "MB/s"),
    ]


# -- integrity_overhead -----------------------------------------------------------------------

@benchmark("integrity_overhead")
def integrity(options: BenchOptions) -> list[Result]:
    """What proving the content costs: e2e with verification / e2e without, same object, same run.

    The gated figure uses an object as AWS stores one today (multipart, full-object CRC64NVME:
    SHA-256 plus a CRC in a worker thread). The same is measured, for information, with a
    multipart object that carries no checksum, so the multipart ETag is the only proof (a
    part layout lookup, then MD5 per part next to the SHA-256): the dearest proof there is.
    """
    quiet_logs()
    size = sizes(options, tiny=2 * MIB, quick=64 * MIB, full=256 * MIB)
    rounds = 1 if os.environ.get("BENCH_TINY") else 3 if options.quick else 5
    objects = {"crc64nvme": ("CRC64NVME", "FULL_OBJECT"), "multipart-md5": (None, None)}
    part = max(5 * MIB, size // 4)  # 4 parts (1 in tiny mode: S3's smallest part is 5 MiB)
    load_note()
    counter = itertools.count()
    proofs: dict[str, set[str]] = {name: set() for name in objects}
    with running_stack() as stack, asyncio.Runner() as runner:
        config = stack.app_config()
        runner.run(_stack.create_bucket(config))
        for name, (algorithm, kind) in objects.items():
            runner.run(_put_object(config, f"bench/integrity-{name}.bin", size, part, algorithm, kind))
        exits = AsyncExitStack()
        try:
            rt = runner.run(exits.enter_async_context(_stack.transfer_pipeline(stack, config)))

            def transfer(name: str, verify: bool) -> Candidate:
                async def run() -> None:
                    key = f"bench/integrity-{name}.bin"
                    # The same runtime with s3.verify off: no checksum HEAD, no layout, no hashing.
                    unverified = config.s3.model_copy(update={"verify": "off"})
                    mode = contextlib.nullcontext() if verify else mock.patch.object(
                        rt.s3, "settings", lambda bucket: unverified)
                    with mode:
                        report = await rt.transferer.run(job_for(key, f"Bench/{name}-{next(counter)}"))
                    if report.uploaded != 1 or report.bytes_read != size:
                        raise RuntimeError(f"transfer incomplete: {report}")
                    if verify:
                        proofs[name].update(report.integrity)
                return run

            candidates = {f"{name} {'verified' if verify else 'unverified'}": transfer(name, verify)
                          for name in objects for verify in (True, False)}
            samples = timed(runner, candidates, rounds, stack.server_pids)
        finally:
            runner.run(exits.aclose())
    best = {name: s.best() for name, s in samples.items()}
    info(f"object {size // MIB} MiB in {part // MIB} MiB parts; proofs used: "
         + ", ".join(f"{name}: {sorted(used)}" for name, used in proofs.items()))
    for name, used in proofs.items():
        if used != {name}:
            raise RuntimeError(f"the {name} object was proven with {sorted(used)}, not {name}")
    report(samples, size)
    return [
        Result("integrity_overhead", best["crc64nvme verified"] / best["crc64nvme unverified"],
               "<= 1.10", "x"),
        Result("integrity_overhead_multipart_md5",
               best["multipart-md5 verified"] / best["multipart-md5 unverified"], "info", "x"),
        Result("integrity_e2e_s", best["crc64nvme verified"], "info", "s"),
        Result("integrity_e2e_unverified_s", best["crc64nvme unverified"], "info", "s"),
    ]


async def _put_object(
    config: AppConfig, key: str, size: int, part: int, algorithm: str | None, kind: str | None
) -> None:
    """A multipart object (one part if small) with the given checksum; ``None``: no checksum at
    all (request checksums off), so only the multipart ETag can prove it."""
    block = os.urandom(MIB)
    create: dict[str, str] = {}
    if algorithm is not None:
        create["ChecksumAlgorithm"] = algorithm
    if kind is not None:
        create["ChecksumType"] = kind
    cfg = config.s3
    if algorithm is None:
        cfg = cfg.model_copy(update={"request_checksum_calculation": "when_required"})
    async with S3Source(config.aws, cfg) as s3:
        client = s3._client  # bench set-up: S3Source has no multipart upload of its own
        upload = await client.create_multipart_upload(Bucket=BUCKET, Key=key, **create)
        parts = []
        for number, offset in enumerate(range(0, size, part), start=1):
            length = min(part, size - offset)
            body = (number.to_bytes(8, "big") + block * (length // MIB + 1))[:length]
            extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
            reply = await client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                                             PartNumber=number, Body=body, **extra)
            parts.append({"PartNumber": number, "ETag": reply["ETag"]}
                         | {k: v for k, v in reply.items() if k == f"Checksum{algorithm}"})
            del body
        await client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                                               MultipartUpload={"Parts": parts})


MALLOC_MMAP_THRESHOLD = "1048576"  # keep in step with entrypoint.sh (the container entry point)

# -- pipeline_memory --------------------------------------------------------------------------

def _child_transfer(stack: Stack, config: dict[str, Any], key: str, warm_key: str) -> dict[str, float]:
    """Run one measured transfer in a fresh ``bench._memchild`` process; returns its report."""
    params = {"stack": {"aws_endpoint": stack.aws_endpoint, "dracoon_url": stack.dracoon_url},
              "config": config, "key": key, "warm_key": warm_key}
    # The same malloc tuning the container's entrypoint.sh applies to the service.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MALLOC_MMAP_THRESHOLD}
    done = subprocess.run([sys.executable, "-m", "bench._memchild"], input=json.dumps(params).encode(),
                          capture_output=True, cwd=_stack.ROOT, check=False, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def in_flight_bound(config: dict[str, Any]) -> float:
    """The issue's ceiling in MiB: chunk x in-flight + 64 MiB over idle.

    In flight: ``parallel_ranges`` S3 ranges read ahead, plus the chunk being encrypted, plus two
    proxy upload chunks: the one being POSTed and the next one filling up behind it.
    """
    s3, dracoon = config["s3"], config["dracoon"]
    upload_chunk = dracoon.get("upload_chunk_size", DracoonConfig().upload_chunk_size)
    return float(s3["chunk_size"] * (s3["parallel_ranges"] + 1) + 2 * upload_chunk) / MIB + 64


@benchmark("pipeline_memory")
def memory(options: BenchOptions) -> list[Result]:
    """Peak RSS of a process transferring a big vs a small object (one child process each)."""
    quiet_logs()
    small = sizes(options, tiny=MIB, quick=64 * MIB, full=256 * MIB)
    big = sizes(options, tiny=4 * MIB, quick=512 * MIB, full=2048 * MIB)
    repeats = 1 if os.environ.get("BENCH_TINY") or options.quick else 2
    load_note()
    with running_stack() as stack:
        config = stack.config_data()
        app = stack.app_config()

        async def setup() -> float:
            await _stack.create_bucket(app)
            await put_generated_object(app, "bench/warm.bin", 256 * 1024)
            await put_generated_object(app, "bench/small.bin", small)
            return await put_generated_object(app, "bench/big.bin", big)

        put_s = asyncio.run(setup())
        runs: dict[str, list[dict[str, float]]] = {"small": [], "big": []}
        for _ in range(repeats):  # alternate, so drift in the stack affects both alike
            for name in runs:
                runs[name].append(_child_transfer(stack, config, f"bench/{name}.bin", "bench/warm.bin"))
    peak_small = max(r["peak_rss_mib"] for r in runs["small"])
    peak_big = max(r["peak_rss_mib"] for r in runs["big"])
    worst_big = max(runs["big"], key=lambda r: r["peak_rss_mib"])
    over_idle = worst_big["peak_rss_mib"] - worst_big["idle_rss_mib"]
    bound = in_flight_bound(config)
    info(f"objects {small // MIB} MiB and {big // MIB} MiB (big created in {put_s:.1f} s); "
          f"bound {bound:.0f} MiB over idle")
    for name, results in runs.items():
        for r in results:
            info(f"{name}: cold {r['cold_rss_mib']:.1f} MiB, idle {r['idle_rss_mib']:.1f} MiB, "
                  f"peak {r['peak_rss_mib']:.1f} MiB (ru_maxrss {r['ru_maxrss_mib']:.1f}), "
                  f"{r['seconds']:.2f} s ({r['bytes'] / r['seconds'] / 1e6:.0f} MB/s)")
    return [
        Result("memory_growth", peak_big / peak_small, "<= 1.10", "x"),
        Result("peak_rss_2gib", peak_big, "info", "MiB"),
        Result("peak_rss_over_idle_mib", over_idle, f"<= {bound:.0f}", "MiB"),
        Result("peak_rss_small_mib", peak_small, "info", "MiB"),
        Result("rss_idle_mib", worst_big["idle_rss_mib"], "info", "MiB"),
        Result("memory_big_object_mib", big / MIB, "info", "MiB"),
    ]


# -- parallel_parts ---------------------------------------------------------------------------

PART_LATENCY_MS = 20


async def _s3_direct_upload(client: DracoonClient, room_id: int, name: str, chunks: list[bytes],
                            size: int, file_key: EncryptedFileKey) -> None:
    upload = await client.open_upload(room_id, name, size, expire_at=None, classification=2, notes=None,
                                      direct_s3=True)
    for chunk in chunks:
        await upload.write(chunk)
    node = await upload.complete(file_key, resolution="fail")
    if node.size != size:
        raise RuntimeError(f"S3-direct upload stored {node.size} of {size} bytes")


def _parts_session(
    emulator: Mapping[str, Any], chunks: list[bytes], file_key_of: Callable[[Any], EncryptedFileKey],
    rounds: int,
) -> dict[str, Samples]:
    """One emulator; S3-direct uploads of ``chunks`` (one part each), 1 and 4 parts in flight."""
    part, size = len(chunks[0]), sum(len(c) for c in chunks)
    with running_stack(emulator, with_moto=False) as stack, asyncio.Runner() as runner:
        account = stack.account()
        exits = AsyncExitStack()
        try:
            clients = {
                n: runner.run(exits.enter_async_context(DracoonClient(account, DracoonConfig(
                    upload_mode="s3", upload_chunk_size=part, parts_in_flight=n, max_retries=2))))
                for n in (1, 4)
            }
            pair = preferred_key_pair(runner.run(clients[1].get_key_pairs()))
            room = runner.run(clients[1].ensure_room_path(account.parent_room_id, ["Bench", "s3-direct"]))
            counter = itertools.count()
            file_key = file_key_of(pair.public_key_container)

            def candidate(n: int) -> Candidate:
                return lambda: _s3_direct_upload(clients[n], room.id, f"parts-{next(counter)}.bin", chunks,
                                                 size, file_key)

            return timed(runner, {"in_flight_1": candidate(1), "in_flight_4": candidate(4)}, rounds,
                          stack.server_pids)
        finally:
            runner.run(exits.aclose())


@benchmark("parallel_parts")
def parallel_parts(options: BenchOptions) -> list[Result]:
    """S3-direct upload of N 5 MiB parts with 20 ms latency per part PUT: 4 in flight vs 1."""
    quiet_logs()
    parts = sizes(options, tiny=3, quick=16, full=48)
    rounds = 1 if os.environ.get("BENCH_TINY") else 3 if options.quick else 7
    part = 5 * MIB
    load_note()
    encryptor = FileEncryptor(generate_file_key())
    chunks = [encryptor.update(os.urandom(part)) for _ in range(parts)]
    encryptor.finalize()
    size = part * parts

    def file_key_of(public: Any) -> EncryptedFileKey:
        return encrypt_file_key(encryptor.file_key(), public)

    speedup: dict[str, float] = {}
    best: dict[str, float] = {}
    for etags in ("md5", "opaque"):
        # No "finishing" status polls: the client's first poll after completion would sleep 0.1 s,
        # a constant in both candidates that says nothing about parallel parts.
        emulator: dict[str, Any] = {
            "use_s3_storage": True, "s3_finishing_polls": 0, "s3_part_etags": etags,
            "faults": [{"name": "part-latency", "method": "PUT", "path": r"^/_s3/",
                        "latency_ms": PART_LATENCY_MS}],
        }
        samples = _parts_session(emulator, chunks, file_key_of, rounds)
        info(f"{etags} part ETags: {parts} parts of {part // MIB} MiB,"
             f" {PART_LATENCY_MS} ms injected per part PUT")
        report(samples, size)
        best = {name: s.best() for name, s in samples.items()}
        speedup[etags] = best["in_flight_1"] / best["in_flight_4"]
    return [  # ``best`` is the opaque-ETag session's, the gated one
        Result("parallel_parts_speedup", speedup["opaque"], ">= 3", "x"),
        Result("parallel_parts_1_mbps", size / best["in_flight_1"] / 1e6, "info", "MB/s"),
        Result("parallel_parts_4_mbps", size / best["in_flight_4"] / 1e6, "info", "MB/s"),
        Result("parallel_parts_speedup_md5_etags", speedup["md5"], "info", "x"),
    ]
