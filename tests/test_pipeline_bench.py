"""Smoke test of the pipeline benchmarks: each runs end to end in a tiny mode on the real stack.

Tiny mode (``BENCH_TINY=1``) shrinks objects to a few MiB and runs one round, so this checks
that the benchmarks work and report well-formed entries, not what they measure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import pipeline_bench
from bench.common import BenchOptions, Result, registered, run

pytestmark = pytest.mark.integration

EXPECTED = {
    "pipeline_stream": {"pipeline_overlap", "encryption_overhead", "pipeline_e2e_s", "pipeline_e2e_plain_s",
                        "pipeline_download_only_s", "pipeline_upload_only_s", "pipeline_e2e_mbps",
                        "pipeline_concurrent_s", "pipeline_e2e_vs_concurrent"},
    "pipeline_memory": {"memory_growth", "peak_rss_2gib", "peak_rss_over_idle_mib", "peak_rss_small_mib",
                        "rss_idle_mib", "memory_big_object_mib"},
    "integrity_overhead": {"integrity_overhead", "integrity_overhead_multipart_md5", "integrity_e2e_s",
                           "integrity_e2e_unverified_s"},
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
