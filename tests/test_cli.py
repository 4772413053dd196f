"""The console script: run in-process through ``cli.main(argv)``, and once as a real process.

Commands that talk to the emulator run ``main`` in a worker thread: it calls ``asyncio.run``,
while the emulator keeps serving on the test's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recording_storage import __version__, cli
from recording_storage.crypto import KeyPairVersion, UserKeyPair, unlock_key_pair
from recording_storage.logs import reset_logging
from recording_storage.sqs import JobQueue
from tests.fixtures.cli import app_yaml
from tests.fixtures.dracoon import encrypt_for
from tests.fixtures.service import DOMAIN, Stack, job_message

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _undo_logging() -> Iterator[None]:
    """The CLI configures logging on the captured stderr; later tests must not inherit that."""
    yield
    reset_logging()


# Beyond the stack's endpoints: quiet JSON logs, no long polls, no background tasks.
CLI_SECTIONS: dict[str, dict[str, Any]] = {
    "log": {"level": "warning", "format": "json"},
    "queue": {"wait_seconds": 0},
    "dracoon": {"max_retries": 1},
    "sharer": {"enabled": False},
    "health": {"enabled": False},
}


def write_config(stack: Stack, tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """An app.yaml equivalent to the stack's configuration (what an operator would write)."""
    merged = {name: {**CLI_SECTIONS.get(name, {}), **sections.get(name, {})}
              for name in {*CLI_SECTIONS, *sections}}
    return app_yaml(stack, tmp_path, **merged)


async def main_in_thread(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


# -- no configuration needed ------------------------------------------------------------------


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "check", "send-job", "share", "local-stack", "demo", "keypair"):
        assert command in out
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    assert "--write-probe" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


def test_bad_config_exits_2_naming_every_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("workers: {count: 0}\nqueue: {wait_seconds: 99}\ndracoon: {upload_mod: s3}\n",
                    encoding="utf-8")
    assert cli.main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert "workers.count" in err and "queue.wait_seconds" in err and "dracoon.upload_mod" in err
    assert "3 problem(s)" in err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert cli.main(["--config", str(missing), "share"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_config_option_also_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "after.yaml"
    assert cli.main(["share", "-c", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_messages_below_one_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--max-messages", value])
    assert info.value.code == 2
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["missing", "directory", "binary"])
def test_unreadable_job_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    config = tmp_path / "app.yaml"
    config.write_text("{}\n", encoding="utf-8")
    job = {"missing": tmp_path / "nope.json", "directory": tmp_path, "binary": tmp_path / "job.bin"}[what]
    if what == "binary":
        job.write_bytes(b"\xbe\xef\x00\xff")
    assert cli.main(["-c", str(config), "send-job", str(job)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"recording-storage: cannot read job file {job}") and "Traceback" not in err


def test_config_secret_is_masked_in_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("aws: {secret_access_key: [Not-A-String-Secret-9]}\n", encoding="utf-8")
    assert cli.main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert "aws.secret_access_key" in err and "Not-A-String-Secret-9" not in err


def test_keypair_generates_an_unlockable_pair(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KP_PASSWORD", "Cli-Encryption-Pw-1")
    assert cli.main(["keypair", "--version", "A", "--password-env", "KP_PASSWORD"]) == 0
    pair = UserKeyPair.from_json(json.loads(capsys.readouterr().out))
    assert pair.public_key_container.version == KeyPairVersion.A
    assert unlock_key_pair(pair, "Cli-Encryption-Pw-1").version == KeyPairVersion.A


def test_keypair_without_password_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DRACOON_ENCRYPTION_PASSWORD", raising=False)
    assert cli.main(["keypair"]) == 2
    assert "DRACOON_ENCRYPTION_PASSWORD" in capsys.readouterr().err


def test_real_processes_show_help() -> None:
    """``python -m recording_storage`` and the container entry point both reach the CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDING_STORAGE")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    commands = ([sys.executable, "-m", "recording_storage", "--help"],
                [str(REPO / "entrypoint.sh"), "--help"])
    for argv in commands:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert "usage: recording-storage" in done.stdout and "send-job" in done.stdout


# -- against moto and the emulator ------------------------------------------------------------


@pytest.mark.integration
async def test_check_good_and_broken(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_config(stack, tmp_path, s3={"probe_buckets": [stack.bucket]}, log={"level": "info"})
    assert await main_in_thread("-c", str(good), "check", "--write-probe") == 0
    out, err = capsys.readouterr()
    assert f"PASS dracoon[{DOMAIN}] write probe:" in out and f"PASS s3 {stack.bucket}:" in out
    assert "FAIL" not in out
    assert "instances_loaded" not in err and "sqs_queue_resolved" not in err  # no info lines in the report

    broken = write_config(stack, tmp_path, queue={"name": "rs-cli-no-such-queue"})
    assert await main_in_thread("-c", str(broken), "check") == 1
    out = capsys.readouterr().out
    assert "FAIL sqs queue:" in out and "rs-cli-no-such-queue" in out
    assert f"PASS dracoon[{DOMAIN}] login:" in out


@pytest.mark.integration
async def test_share_serves_missing_keys(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = stack.dracoon
    ciphertext, key = encrypt_for(env.service_user.require_keys(), b"recording")
    node = env.state.add_file(env.parent_room_id, "call.mp4", ciphertext,
                              file_keys={env.service_user.id: key})
    late = env.add_user("late-joiner", "A")
    config = write_config(stack, tmp_path)

    assert await main_in_thread("-c", str(config), "share") == 0
    assert capsys.readouterr().out.strip() == "served 1 file key(s) for 1 of 1 instance(s)"
    assert late.id in env.state.file_keys(node.id)

    assert await main_in_thread("-c", str(config), "share", "--instance", "unknown.example.com") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "served 0 file key(s) for 0 of 1 instance(s)"
    assert out[1].startswith("failed: unknown.example.com: ") and "unknown.example.com" in out[1][30:]


@pytest.mark.integration
async def test_send_job_validates_then_publishes(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(stack, tmp_path)
    body = job_message(stack.bucket, ["rec/one.mp4"])
    job = tmp_path / "job.json"
    job.write_text(body, encoding="utf-8")
    assert await main_in_thread("-c", str(config), "send-job", str(job)) == 0
    message_id = capsys.readouterr().out.strip()

    invalid = tmp_path / "invalid.json"
    # Raw on purpose: a broken body the job builder would never write (no extra, meeting, instance).
    invalid.write_text('{"storage": {"type": "dracoon"}}', encoding="utf-8")
    assert await main_in_thread("-c", str(config), "send-job", str(invalid)) == 1
    assert "invalid job message" in capsys.readouterr().err

    monkeypatch.setattr(sys, "stdin", _Stdin('{"not": "a job"}'))
    assert await main_in_thread("-c", str(config), "send-job", "--no-validate", "-") == 0
    forced_id = capsys.readouterr().out.strip()

    async with JobQueue(stack.config.aws, stack.config.queue, base_dir=stack.config.base_dir) as queue:
        received = await queue.receive(10, 0)
    assert sorted((m.message_id, m.body) for m in received) == sorted(
        [(message_id, body), (forced_id, '{"not": "a job"}')])


class _Stdin:
    def __init__(self, text: str) -> None:
        self.text = text

    def read(self) -> str:
        return self.text
