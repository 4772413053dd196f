"""Smoke test of the pipeline benchmarks: each runs end to end in a tiny mode on the real stack.

Tiny mode (``BENCH_TINY=1``) shrinks objects to a few MiB and runs one round, so this checks
that the benchmarks work and report well-formed entries, not what they measure.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import aiohttp
import pytest

from bench import cpu_bench, pipeline_bench
from bench._stack import BUCKET, Stack, create_bucket, running_stack
from bench.common import BenchOptions, Result, registered, run
from recording_storage.crypto import FileEncryptor, generate_file_key
from recording_storage.s3 import S3Source

pytestmark = pytest.mark.integration

EXPECTED = {
    "pipeline_stream": {"pipeline_overlap", "encryption_overhead", "pipeline_e2e_s", "pipeline_e2e_plain_s",
                        "pipeline_download_only_s", "pipeline_upload_only_s", "pipeline_e2e_mbps",
                        "pipeline_concurrent_s", "pipeline_e2e_vs_concurrent"},
    "pipeline_memory": {"memory_growth", "peak_rss_2gib", "peak_rss_over_idle_mib", "peak_rss_small_mib",
                        "rss_idle_mib", "memory_big_object_mib"},
    "integrity_overhead": {"integrity_overhead", "integrity_overhead_multipart_md5", "integrity_e2e_s",
                           "integrity_e2e_unverified_s"},
    "pipeline_cpu": {"relay_floor_cpu_s_per_gib", "pipeline_cpu_s_per_gib", "pipeline_cpu_vs_floor",
                     "download_cpu_s_per_gib"},  # and the rclone figures where it is installed
    "parallel_parts": {"parallel_parts_speedup", "parallel_parts_1_mbps", "parallel_parts_4_mbps",
                       "parallel_parts_speedup_md5_etags"},
}
GATES = {"pipeline_overlap": "<= 1.25", "encryption_overhead": "<= 1.15", "memory_growth": "<= 1.10",
         "parallel_parts_speedup": ">= 3", "integrity_overhead": "<= 1.10"}


@pytest.fixture(autouse=True)
def _tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_TINY", "1")


def _check(results: list[Result], names: set[str]) -> dict[str, Result]:
    by_name = {r.name: r for r in results}
    assert set(by_name) == names and len(results) == len(names)
    for r in results:
        assert isinstance(r.value, float) and math.isfinite(r.value) and r.value > 0, r
        assert r.unit in {"x", "s", "MB/s", "MiB"}, r
        if r.name in GATES:
            assert r.goal == GATES[r.name] and r.unit == "x", r
    return by_name


def test_registered_names() -> None:
    assert set(EXPECTED) <= set(registered())


def test_the_identity_encryptor_offers_every_call_the_streaming_path_makes() -> None:
    """The no-encryption baseline swaps FileEncryptor for it: a call the transfer makes that it
    lacks crashes only the full-size bench (the tiny one moves a one-chunk object)."""
    calls = {"update", "update_into", "finalize", "file_key"}
    assert calls <= {name for name in dir(FileEncryptor) if not name.startswith("_")}
    assert all(callable(getattr(pipeline_bench._IdentityEncryptor, name, None)) for name in calls)
    identity = pipeline_bench._IdentityEncryptor(generate_file_key())
    out = bytearray(8)
    assert identity.update_into(b"abc", out) == 3 and out[:3] == b"abc"


def test_pipeline_stream_tiny() -> None:
    results = _check(list(pipeline_bench.stream(BenchOptions(quick=True))), EXPECTED["pipeline_stream"])
    e2e, down, up = (results[f"pipeline_{n}_s"].value for n in ("e2e", "download_only", "upload_only"))
    assert results["pipeline_overlap"].value == pytest.approx(e2e / max(down, up))


def test_integrity_overhead_tiny() -> None:
    results = _check(list(pipeline_bench.integrity(BenchOptions(quick=True))), EXPECTED["integrity_overhead"])
    verified, unverified = results["integrity_e2e_s"].value, results["integrity_e2e_unverified_s"].value
    assert results["integrity_overhead"].value == pytest.approx(verified / unverified)


def test_pipeline_memory_tiny() -> None:
    results = _check(list(pipeline_bench.memory(BenchOptions(quick=True))), EXPECTED["pipeline_memory"])
    over_idle = results["peak_rss_over_idle_mib"]
    assert over_idle.goal == "<= 136" and over_idle.unit == "MiB"  # 8 MiB x (4 + 1) + 2 x 16 MiB + 64 MiB
    assert results["peak_rss_2gib"].value > results["rss_idle_mib"].value > 20
    assert results["memory_big_object_mib"].value == 4


def test_parallel_parts_tiny(tmp_path: Path) -> None:
    """Through the harness entry point, as ``make bench`` runs it, results file included."""
    out = tmp_path / "results.json"
    run(["bench.pipeline_bench"], ["--quick", "--only", "parallel_parts", "--results", str(out)])
    written = json.loads(out.read_text())
    assert set(written) == EXPECTED["parallel_parts"]
    for entry in written.values():
        assert set(entry) == {"value", "goal", "unit"} and isinstance(entry["value"], float)


def test_pipeline_cpu_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    """Service, floor relay and download CPU per GiB, and rclone's where it is installed (where
    it is not, the rclone figures are left out with the reason printed)."""
    results = {r.name: r for r in cpu_bench.cpu(BenchOptions(quick=True))}
    expected = {"relay_floor_cpu_s_per_gib", "pipeline_cpu_s_per_gib", "pipeline_cpu_vs_floor",
                "download_cpu_s_per_gib"}
    if not shutil.which("rclone"):
        assert "rclone not installed" in capsys.readouterr().err
    else:
        expected |= {"rclone_download_cpu_s_per_gib", "download_cpu_vs_rclone"}
        assert results["download_cpu_vs_rclone"].goal == "<= 1.0"
        assert results["download_cpu_vs_rclone"].value == pytest.approx(
            results["download_cpu_s_per_gib"].value / results["rclone_download_cpu_s_per_gib"].value)
    assert set(results) == expected
    assert all(math.isfinite(r.value) and r.value > 0 for r in results.values())
    ratio = results["pipeline_cpu_vs_floor"]
    assert ratio.goal == "<= 1.5" and ratio.value == pytest.approx(
        results["pipeline_cpu_s_per_gib"].value / results["relay_floor_cpu_s_per_gib"].value)


def test_keep_alive_front_passes_objects_whole_and_moto_counts_requests() -> None:
    """The load bench's keep-alive front before moto: a put object HEADs with its size and reads
    back whole through it, and the bench moto server counts each operation once."""

    async def scenario(stack: Stack) -> tuple[int, bytes, dict[str, int]]:
        config = stack.app_config()
        await create_bucket(config)
        async with aiohttp.ClientSession() as session:
            (await session.delete(f"{stack.aws_endpoint}/_bench/requests")).release()
        async with S3Source(config.aws, config.s3) as s3:
            await s3.put(BUCKET, "front.bin", b"x" * 3000)
            info = await s3.head(BUCKET, "front.bin")
            data = b"".join([bytes(c) async for c in s3.iter_chunks(info)])
        url = f"{stack.aws_endpoint}/_bench/requests"
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            counts: dict[str, int] = await r.json()
        return info.size, data, counts

    with running_stack(aws_keep_alive=True) as stack:
        size, data, counts = asyncio.run(scenario(stack))
    assert size == 3000 and data == b"x" * 3000
    assert (counts["s3:PutObject"], counts["s3:HeadObject"], counts["s3:GetObject"]) == (1, 1, 1)
