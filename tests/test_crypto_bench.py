"""The shared benchmark harness (bench/common.py) that the crypto benchmarks introduced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.common import BenchOptions, Result, benchmark, check_goal, interleaved_best, run

_seen_options: list[BenchOptions] = []


@benchmark("harness_selftest_ok")
def _ok(options: BenchOptions) -> list[Result]:
    _seen_options.append(options)
    return [Result("harness_ratio", 0.95, ">= 0.9", "x"), Result("harness_info", 12.5, "info", "MB/s")]


@benchmark("harness_selftest_fail")
def _fail(options: BenchOptions) -> list[Result]:
    return [Result("harness_slow", 0.5, ">= 0.9", "x")]


def test_goals() -> None:
    assert check_goal(0.9, ">= 0.9") is True
    assert check_goal(0.89, ">= 0.9") is False
    assert check_goal(3, "<= 5") is True
    assert check_goal(1e9, "info") is None
    with pytest.raises(ValueError):
        Result("bad", 1.0, "at least 0.9", "x")


def test_run_prints_writes_and_merges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"earlier": {"value": 1, "goal": "info", "unit": "s"}}))

    assert run([], ["--quick", "--only", "harness_selftest_ok", "--results", str(results)]) == 0

    assert _seen_options[-1] == BenchOptions(quick=True)
    assert json.loads(results.read_text()) == {
        "earlier": {"value": 1, "goal": "info", "unit": "s"},
        "harness_info": {"value": 12.5, "goal": "info", "unit": "MB/s"},
        "harness_ratio": {"value": 0.95, "goal": ">= 0.9", "unit": "x"},
    }
    table = capsys.readouterr().out
    assert "harness_ratio" in table and "PASS" in table


def test_failed_gate_gives_exit_status_1(tmp_path: Path) -> None:
    assert run([], ["--only", "harness_selftest_*", "--results", str(tmp_path / "r.json")]) == 1
    assert set(json.loads((tmp_path / "r.json").read_text())) == {
        "harness_ratio",
        "harness_info",
        "harness_slow",
    }


def test_interleaved_best_runs_every_candidate_each_round() -> None:
    calls: list[str] = []
    best = interleaved_best({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert set(best) == {"a", "b"} and all(t >= 0 for t in best.values())
