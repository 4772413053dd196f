"""``recording-storage check`` as an operator reads it: which file, no PASS before a FAIL for the
same setting, the DLQ backlog, bounded retries against dead endpoints, advice that fits the
failure, and ``--json`` for automation. Real sockets: moto's server and the DRACOON emulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recording_storage import cli
from recording_storage.config import config_file_used
from recording_storage.logs import reset_logging
from tests.fixtures.awsproxy import AwsFaultProxy, running_proxy
from tests.fixtures.service import DOMAIN, Stack, job_message

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _undo_logging() -> Iterator[None]:
    yield
    reset_logging()


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[AwsFaultProxy]:
    async with running_proxy(moto_server) as started:
        yield started


def app_yaml(stack: Stack, tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """What an operator would write for the stack (log level left at its default, info)."""
    data: dict[str, Any] = {
        "aws": {"endpoint_url": stack.config.aws.endpoint_url, "region": stack.config.aws.region},
        "queue": {"name": stack.queue_cfg.name, "dlq_name": stack.queue_cfg.dlq_name, "topics_file": None,
                  # below the stack queue's RedrivePolicy, as `check` demands (sqs max receives)
                  "max_receives": stack.config.queue.max_receives},
        "instances": {"source": "file", "file": str(stack.config.instances.file)},
        "sharer": {"enabled": False},
        "health": {"enabled": False},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


async def check(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, tuple[str, str]], str, str]:
    """Run ``recording-storage ARGV check --json``; (status, {name: (status, detail)}, out, err)."""
    capsys.readouterr()  # what the test itself printed before
    code = await asyncio.to_thread(cli.main, [*argv, "check", "--json"])
    out, err = capsys.readouterr()
    results: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        item = json.loads(line)  # every line is one object
        assert set(item) == {"name", "status", "detail"} and item["name"] not in results
        results[item["name"]] = (item["status"], item["detail"])
    return code, results, out, err


async def test_names_the_config_file_it_used(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = app_yaml(stack, tmp_path)
    code, results, _, _ = await check(capsys, "-c", str(config))
    assert code == 0, results
    assert results["config"][0] == "PASS" and str(config) in results["config"][1]


def test_without_any_config_file_none_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_file_used(None, env={}) is None
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.yaml").write_text("{}\n", encoding="utf-8")
    assert config_file_used(None, env={}) == Path("conf/app.yaml")
    assert config_file_used(None, env={"RECORDING_STORAGE_CONFIG": "/x.yaml"}) == Path("/x.yaml")


async def test_warns_when_only_defaults_and_environment_apply(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no conf/app.yaml here
    for key, value in {
        "AWS__ENDPOINT_URL": str(stack.config.aws.endpoint_url), "QUEUE__NAME": stack.queue_cfg.name,
        "QUEUE__DLQ_NAME": str(stack.queue_cfg.dlq_name), "QUEUE__TOPICS_FILE": "null",
        "INSTANCES__FILE": str(stack.config.instances.file), "HEALTH__ENABLED": "false",
        "QUEUE__MAX_RECEIVES": str(stack.config.queue.max_receives),
    }.items():
        monkeypatch.setenv(f"RECORDING_STORAGE__{key}", value)
    code, results, _, _ = await check(capsys)
    assert code == 0, results
    status, detail = results["config"]
    assert status == "WARN" and "no configuration file" in detail


async def test_plain_http_to_a_remote_host_fails_config_instead_of_passing_it(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = app_yaml(stack, tmp_path, aws={"endpoint_url": "http://192.0.2.10:9000"})
    code, results, _, _ = await check(capsys, "-c", str(config))
    assert code == 1
    assert results["config"][0] == "FAIL" and "aws.endpoint_url" in results["config"][1]
    assert results["sqs queue"][0] == "SKIP" and results["s3"][0] == "SKIP"
    assert results[f"dracoon[{DOMAIN}] login"][0] == "PASS"  # DRACOON is still proven


async def test_dead_letters_waiting_are_a_warning(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await stack.send(job_message(stack.bucket, ["rec/missing.mp4"]))
    await stack.drain()  # the missing key is dead-lettered
    code, results, _, _ = await check(capsys, "-c", str(app_yaml(stack, tmp_path)))
    assert code == 0
    status, detail = results["sqs dlq backlog"]
    assert status == "WARN" and detail.startswith("1 dead-lettered job(s)") and "dlq list" in detail


async def test_dead_endpoints_are_tried_twice_and_advised_about_reachability(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], proxy: AwsFaultProxy
) -> None:
    proxy.add("sqs:GetQueueUrl", "error", status=503, code="ServiceUnavailable")
    stack.dracoon.emulator.faults.add(method="POST", path=r"^/oauth/token", status=503)
    config = app_yaml(stack, tmp_path, aws={"endpoint_url": proxy.url})
    code, results, _, err = await check(capsys, "-c", str(config))
    assert code == 1
    assert results["sqs queue"][0] == "FAIL" and results["sqs dlq"][0] == "FAIL"
    assert proxy.count("sqs:GetQueueUrl") == 4  # two queues, at most two attempts each
    assert "retry" not in err  # the report is the output; retry warnings stay out of it

    # A refused connection is about reachability, not about the login or password.
    refused = app_yaml(stack, tmp_path, aws={"endpoint_url": "http://127.0.0.1:9"})
    _, results, _, _ = await check(capsys, "-c", str(refused))
    status, detail = results["sqs queue"]
    assert status == "FAIL" and "[connection]" in detail and "can reach AWS" in detail
    assert "permission" not in detail


def instances_at(stack: Stack, tmp_path: Path, base_url: str) -> Path:
    """The stack's instances file with the instance's DRACOON at ``base_url``."""
    data = yaml.safe_load(Path(stack.config.instances.file).read_text(encoding="utf-8"))
    data["instances"][DOMAIN]["dracoon"]["base_url"] = base_url
    instances = tmp_path / "instances-moved.yml"
    instances.write_text(yaml.safe_dump(data), encoding="utf-8")
    return instances


async def test_refused_dracoon_connection_does_not_blame_the_password(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instances = instances_at(stack, tmp_path, "http://127.0.0.1:9")
    config = app_yaml(stack, tmp_path, instances={"file": str(instances)})
    code, results, _, _ = await check(capsys, "-c", str(config))
    assert code == 1
    status, detail = results[f"dracoon[{DOMAIN}] login"]
    advice = detail.partition("[network]; ")[2]
    assert status == "FAIL" and "can reach it" in advice and "password" not in advice
