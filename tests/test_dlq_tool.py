"""``recording-storage dlq list|redrive`` against moto's SQS, with dead letters the service made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from recording_storage.logs import reset_logging
from recording_storage.sqs import JobQueue
from tests.fixtures.cli import app_yaml, run_cli
from tests.fixtures.service import DOMAIN, Stack, job_message

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _undo_logging() -> Iterator[None]:
    yield
    reset_logging()


async def dead_letter_two(stack: Stack) -> tuple[str, str]:
    """One job for a missing key (source_missing), one that does not parse (invalid_message)."""
    missing = job_message(stack.bucket, ["rec/never-uploaded.mp4"])
    await stack.send(missing)
    broken = '{"storage": {"type": "dracoon"}}'  # raw on purpose: the builder writes only whole jobs
    await stack.send(broken)
    stats = await stack.drain()
    assert stats.outcomes == {"permanent": 2}
    return missing, broken


async def test_list_shows_reason_error_instance_and_keys_and_leaves_the_dlq_as_it_was(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter_two(stack)
    config = app_yaml(stack, tmp_path)

    code, out = await run_cli(capsys, "-c", str(config), "dlq", "list", "--json")
    assert code == 0
    letters = {d["reason"]: d for d in map(json.loads, out.splitlines())}
    assert set(letters) == {"source_missing", "invalid_message"}
    missing = letters["source_missing"]
    assert missing["instance"] == DOMAIN and missing["keys"] == ["rec/never-uploaded.mp4"]
    assert "does not exist" in missing["error"] and "\n" not in missing["error"]
    assert missing["receive_count"] == "1" and missing["age_seconds"] >= 0
    assert await stack.queue_counts() == (0, 0, 2)  # still there, visible again

    code, out = await run_cli(capsys, "-c", str(config), "dlq", "list", "--reason", "invalid_message")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("MESSAGE ID") and lines[-1] == "1 dead letter(s) with reason invalid_message"
    assert "invalid_message" in lines[1] and "source_missing" not in out


async def test_redrive_moves_matching_bodies_back_unchanged_and_records_it(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_body, _ = await dead_letter_two(stack)
    config = app_yaml(stack, tmp_path)

    code, out = await run_cli(capsys, "-c", str(config), "dlq", "redrive", "--reason", "source_missing")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("redriven ") and lines[0].endswith("(was source_missing)")
    assert lines[-1] == f"1 dead letter(s) redriven to {stack.queue_cfg.name!r}"
    dlq_id = lines[0].split()[1]
    assert await stack.queue_counts() == (1, 0, 1)

    async with JobQueue(stack.config.aws, stack.config.queue, base_dir=stack.config.base_dir) as queue:
        (back,) = await queue.receive(10, 0)
    assert back.body == missing_body
    assert back.attribute("rs-redriven-from") == dlq_id
    assert back.attribute("rs-redriven-reason-code") == "source_missing"
    assert back.attribute("rs-reason-code") is None  # the old verdict does not travel along


async def test_redrive_limit_and_nothing_to_do(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter_two(stack)
    config = app_yaml(stack, tmp_path)
    code, out = await run_cli(capsys, "-c", str(config), "dlq", "redrive", "--limit", "1")
    assert code == 0 and out.splitlines()[-1].startswith("1 dead letter(s) redriven")
    assert await stack.queue_counts() == (1, 0, 1)  # the other one was released, not lost
    code, out = await run_cli(capsys, "-c", str(config), "dlq", "redrive", "--reason", "no_such_reason")
    assert code == 0 and out.splitlines()[-1].startswith("0 dead letter(s) redriven")
    assert await stack.queue_counts() == (1, 0, 1)
