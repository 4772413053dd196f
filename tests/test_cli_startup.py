"""Start-up failures, signals and exit statuses as an operator meets them: real child processes.

Every start-up failure must be one line (what, where, what to do) with the documented exit
status, never a traceback; the first Ctrl-C says at once that the service drains and for how
long, a second one cancels running jobs and releases their messages; a bounded run's status
says whether every job it took is done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from recording_storage import cli
from recording_storage.config import AppConfig
from recording_storage.errors import ExitCode
from recording_storage.fetch_config import FetchFailed, fetch
from recording_storage.logs import reset_logging
from recording_storage.s3 import S3Source
from tests.fixtures.aws import make_aws_config, make_s3_config, random_name
from tests.fixtures.awsproxy import AwsFaultProxy, running_proxy
from tests.fixtures.procs import ServiceProcess, Spawner, wait_until
from tests.fixtures.service import Stack, job_message

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
HOLD_MS = 60_000  # parks a DRACOON call for longer than any test


def child(stack: Stack, **sections: dict[str, object]) -> AppConfig:
    """The stack's config for a child process, with JSON logs at info."""
    config = stack.config.model_copy(update={
        "log": stack.config.log.model_copy(update={"format": "json", "level": "info"})})
    for section, values in sections.items():
        part = getattr(config, section).model_copy(update=values)
        config = config.model_copy(update={section: part})
    return config


def events(proc: ServiceProcess, name: str) -> list[dict[str, object]]:
    return [e for e in proc.events() if e.get("event") == name]


def plain_lines(proc: ServiceProcess) -> list[str]:
    """What the process printed besides its JSON log lines."""
    text = proc.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("{")]


# -- start-up failures ------------------------------------------------------------------------


async def test_health_port_in_use_is_one_line_and_exit_3(stack: Stack, spawn_service: Spawner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = child(stack, health={"enabled": True, "host": "127.0.0.1", "port": port})
        proc = spawn_service(config, "run")
        assert await proc.wait(60) == ExitCode.CANNOT_START, proc.tail()
    lines = plain_lines(proc)
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port}" in lines[0] and "health.port" in lines[0]
    assert "Traceback" not in proc.tail(200)


async def test_missing_queue_at_start_is_one_line_and_exit_3(stack: Stack, spawn_service: Spawner) -> None:
    proc = spawn_service(child(stack, queue={"name": "rs-no-such-queue-at-start"}), "run")
    assert await proc.wait(60) == ExitCode.CANNOT_START, proc.tail()
    (line,) = plain_lines(proc)
    assert line.startswith("recording-storage: cannot start: ") and "rs-no-such-queue-at-start" in line
    assert "queue.name" in line and "Traceback" not in proc.tail(200)


def fetch_process(url: str, dest: Path, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="eu-west-1")
    return subprocess.run([sys.executable, "-m", "recording_storage.fetch_config", url, str(dest)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False)


async def test_fetch_config_from_a_missing_bucket_is_one_line_and_exit_3(
    moto_server: str, tmp_path: Path
) -> None:
    done = await asyncio.to_thread(fetch_process, "s3://rs-no-such-config-bucket/conf", tmp_path, moto_server)
    assert done.returncode == ExitCode.CANNOT_START, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "rs-no-such-config-bucket" in lines[0] and "does not exist" in lines[0]
    assert "RECORDING_STORAGE_CONFIG_S3_URL" in lines[0]


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[AwsFaultProxy]:
    async with running_proxy(moto_server) as started:
        yield started


async def test_fetch_config_skips_missing_files_but_stops_on_403(
    moto_server: str, proxy: AwsFaultProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = random_name()
    async with S3Source(make_aws_config(moto_server), make_s3_config()) as s3:
        await s3.create_bucket(bucket)
        await s3._client.put_object(Bucket=bucket, Key="conf/app.yaml", Body=b"log: {level: info}\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)

    # 404 for topics.yml and instances.yml: optional files that are not there.
    assert await fetch(f"s3://{bucket}/conf", tmp_path / "a") == ["app.yaml"]
    assert (tmp_path / "a" / "app.yaml").read_bytes() == b"log: {level: info}\n"

    # 403 (what S3 answers for a missing key without s3:ListBucket) is never taken as missing.
    proxy.add("s3:GetObject", "error", status=403, code="AccessDenied",
              when=lambda call: call.path.endswith("/instances.yml"))
    with pytest.raises(FetchFailed) as failed:
        await fetch(f"s3://{bucket}/conf", tmp_path / "b")
    assert "access denied" in str(failed.value) and "s3:ListBucket" in str(failed.value)
    assert f"arn:aws:s3:::{bucket}/conf/*" in str(failed.value)


# -- signals ----------------------------------------------------------------------------------


async def test_second_sigint_cancels_running_jobs_releases_them_and_exits_130(
    stack: Stack, spawn_service: Spawner
) -> None:
    await stack.publish("rec/slow.mp4", b"x" * 50_000)
    stack.dracoon.emulator.faults.add(method="POST", path=r"^/api/v4/uploads/", latency_ms=HOLD_MS)
    config = child(stack, workers={"shutdown_grace": 300}, queue={"wait_seconds": 1})
    proc = spawn_service(config, "run")
    await wait_until(lambda: bool(stack.dracoon.state.uploads), timeout=60, what="upload channel opened")

    proc.send(signal.SIGINT)
    await wait_until(lambda: bool(events(proc, "shutdown_started")), timeout=30, what="drain announced")
    (started,) = events(proc, "shutdown_started")
    assert started["shutdown_grace"] == 300 and started["max_wait"] == 301
    assert proc.running()  # draining: the job gets its grace period

    proc.send(signal.SIGINT)
    assert await proc.wait(60) == ExitCode.INTERRUPTED, proc.tail()
    assert [e.get("outcome") for e in events(proc, "job_finished")] == ["cancelled"], proc.tail()
    assert events(proc, "jobs_cancelled_on_second_signal")
    assert await stack.queue_counts() == (1, 0, 0)  # released at once, visible for the next run


# -- exit statuses of a bounded run -----------------------------------------------------------


async def test_drain_exit_status_tells_dead_letters_from_success(
    stack: Stack, spawn_service: Spawner
) -> None:
    await stack.publish("rec/good.mp4", b"good recording")
    proc = spawn_service(child(stack), "run", "--drain")
    assert await proc.wait(60) == ExitCode.OK, proc.tail()

    await stack.send(job_message(stack.bucket, ["rec/never-uploaded.mp4"]))
    proc = spawn_service(child(stack), "run", "--drain")
    assert await proc.wait(60) == ExitCode.JOBS_DEAD_LETTERED, proc.tail()
    assert len(await stack.dlq_messages()) == 1


# -- each command opens only the clients it needs --------------------------------------------


async def test_share_works_while_sqs_and_s3_are_unreachable(stack: Stack, spawn_service: Spawner) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        config = child(stack, aws={"endpoint_url": dead, "max_attempts": 1},
                       queue={"name": "rs-share-never-resolves"})
        proc = spawn_service(config, "share")
        assert await proc.wait(60) == ExitCode.OK, proc.tail()
    assert "served 0 file key(s) for 1 of 1 instance(s)" in plain_lines(proc)


def test_invalid_region_is_a_config_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "instances.yml").write_text("instances: {}\n", encoding="utf-8")
    app = tmp_path / "app.yaml"
    app.write_text("aws: {region: eu west}\ninstances: {file: instances.yml}\nhealth: {enabled: false}\n",
                   encoding="utf-8")
    try:
        assert cli.main(["-c", str(app), "run", "--drain"]) == ExitCode.CONFIG
    finally:
        reset_logging()
    err = capsys.readouterr().err
    assert "aws.region: 'eu west' is not an AWS region name" in err and "Traceback" not in err


async def test_health_host_that_is_not_here_is_advised_as_such(stack: Stack, spawn_service: Spawner) -> None:
    proc = spawn_service(child(stack, health={"enabled": True, "host": "192.0.2.1", "port": 0}), "run")
    assert await proc.wait(60) == ExitCode.CANNOT_START, proc.tail()
    (line,) = plain_lines(proc)
    assert "192.0.2.1:0" in line and "health.host" in line and "second `recording-storage run`" not in line
