"""The embedded local stack and `make demo`'s end-to-end run (real moto server and emulator)."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import pytest

from recording_storage import localstack, service
from recording_storage.config import load_config
from recording_storage.errors import PermanentError
from recording_storage.localstack import demo, sample_recording, start_local_stack
from recording_storage.s3 import S3Source
from recording_storage.sqs import JobQueue

pytestmark = pytest.mark.integration


def test_sample_recording_is_a_valid_wav() -> None:
    """The demo's generated recording is a real 16 kHz mono WAV of the requested length."""
    with wave.open(io.BytesIO(sample_recording(seconds=2.0)), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        assert w.getnframes() == 32_000


async def test_local_stack_writes_a_config_the_service_accepts(tmp_path: Path) -> None:
    """`local-stack` writes app/topics/instances files that load and point at the running servers."""
    async with start_local_stack(tmp_path, kdf_iterations=1000) as stack:
        config = load_config(stack.config_path, env={})
        assert config.aws.endpoint_url == stack.aws_endpoint
        assert (tmp_path / "conf" / "topics.yml").read_text().count("http://127.0.0.1") == 2
        assert stack.dracoon_url in (tmp_path / "conf" / "instances.yml").read_text()
        assert stack.emulator.contract is not None  # the suite checks the local stack's answers too


async def test_demo_moves_one_recording_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make demo`: the recording lands in DRACOON and another member decrypts it to the same SHA-256."""
    assert await demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "sha256 matches" in out
    assert "DEMO PASSED" in out


async def test_local_stack_walkthrough_moves_the_example_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the banner tells a newcomer to do works as told: send the example job, run --drain."""
    stop = asyncio.Event()
    stack = asyncio.create_task(localstack.serve_local_stack(tmp_path, stop=stop))
    try:
        job_path = tmp_path / "example-job.json"
        for _ in range(600):
            if "local stack running" in (out := capsys.readouterr().out):
                break
            await asyncio.sleep(0.05)
        assert f"send-job {job_path}" in out and "run --drain" in out
        config = load_config(tmp_path / "conf" / "app.yaml", env={})
        body = job_path.read_text(encoding="utf-8")
        async with JobQueue(config.aws, config.queue, base_dir=config.base_dir) as queue:
            await queue.send(body)
        stats = await service.serve(config, drain=True, install_signals=False)
        assert stats.outcomes == {"success": 1}
        async with S3Source(config.aws, config.s3) as s3:
            with pytest.raises(PermanentError):
                await s3.head(localstack.BUCKET, localstack.EXAMPLE_KEY)  # moved, so deleted
    finally:
        stop.set()
        assert await stack == 0
