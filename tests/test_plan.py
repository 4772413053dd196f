"""``recording-storage plan`` / ``send-job --dry-run``: the worker's own decisions, nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recording_storage.logs import reset_logging
from tests.fixtures.cli import app_yaml, run_cli
from tests.fixtures.service import DOMAIN, Stack, job_message

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _undo_logging() -> Iterator[None]:
    yield
    reset_logging()


def job_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "job.json"
    path.write_text(body, encoding="utf-8")
    return path


async def test_plan_names_instance_rooms_files_and_writes_nothing(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await stack.put("rec/one.mp4", b"x" * 1234)
    body = job_message(stack.bucket, ["rec/one.mp4"])
    config, job = app_yaml(stack, tmp_path, dracoon={"max_retries": 1}), job_file(tmp_path, body)
    rooms_before = len(stack.dracoon.state.nodes)

    code, out = await run_cli(capsys, "-c", str(config), "plan", str(job))
    assert code == 0, out
    assert out.startswith(f"instance {DOMAIN}: {stack.dracoon.service_user.login} at ")
    assert "to be created: Calls" in out and f"s3://{stack.bucket}/rec/one.mp4 (1234 bytes" in out
    assert "-> Calls: upload as '" in out and "notes marker " in out
    assert len(stack.dracoon.state.nodes) == rooms_before  # no room created
    assert await stack.exists("rec/one.mp4") and await stack.queue_counts() == (0, 0, 0)

    # After the real run the same plan says it is already there.
    await stack.send(body)
    assert (await stack.drain()).outcomes == {"success": 1}
    await stack.put("rec/one.mp4", b"x" * 1234)  # the same bytes again, as a redelivery would see
    code, out = await run_cli(capsys, "-c", str(config), "send-job", "--dry-run", str(job))
    assert code == 0, out
    (room,) = [line for line in out.splitlines() if line.startswith("  target Calls")]
    assert "exists" in room
    assert "-> Calls: already there as file " in out
    assert await stack.queue_counts() == (0, 0, 0)  # --dry-run sent nothing


async def test_plan_says_how_a_bad_job_would_be_dead_lettered(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = app_yaml(stack, tmp_path, dracoon={"max_retries": 1})
    code, out = await run_cli(capsys, "-c", str(config), "plan",
                              str(job_file(tmp_path, job_message(stack.bucket, ["rec/absent.mp4"]))))
    assert code == 1
    assert "would be dead-lettered as source_missing" in out

    # Raw on purpose: a broken body the job builder would never write.
    code, out = await run_cli(capsys, "-c", str(config), "plan",
                              str(job_file(tmp_path, '{"storage": {"type": "dracoon"}}')))
    assert code == 1 and out.startswith("would be dead-lettered as invalid_message")
