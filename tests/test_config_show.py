"""``recording-storage config show``: effective values, masked secrets, and where each came from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from recording_storage import cli
from recording_storage.logs import reset_logging


@pytest.fixture(autouse=True)
def _undo_logging() -> Iterator[None]:
    yield
    reset_logging()


APP_YAML = """\
queue:
  name: jobs-from-file
  dlq_name: jobs-dlq
workers:
  count: 3
dracoon:
  client_secret: ${OAUTH_SECRET}
instances:
  file: instances.yml
"""

INSTANCES_YML = """\
instances:
  a.example.com:
    dracoon: {base_url: "https://a.example.com", login: bot, password: Login-Pw-9,
              encryption_password: Enc-Pw-9, parent_room_id: 1}
  b.example.com:
    dracoon: {base_url: "https://b.example.com", login: bot, password: Login-Pw-9,
              encryption_password: Enc-Pw-9, parent_room_id: 2}
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "instances.yml").write_text(INSTANCES_YML, encoding="utf-8")
    path = tmp_path / "app.yaml"
    path.write_text(APP_YAML, encoding="utf-8")
    monkeypatch.setenv("OAUTH_SECRET", "Oauth-Secret-Value-7")
    monkeypatch.setenv("RECORDING_STORAGE__WORKERS__COUNT", "6")
    monkeypatch.setenv("RECORDING_STORAGE__AWS__SECRET_ACCESS_KEY", "Aws-Secret-Value-7")
    monkeypatch.setenv("RECORDING_STORAGE__AWS__ACCESS_KEY_ID", "AKIAEXAMPLEVALUE7")
    return path


def shown(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_each_value_names_its_source(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = shown(capsys, "-c", str(app), "config", "show", "--json")
    assert code == 0
    rows = {r["key"]: (r["value"], r["source"]) for r in map(json.loads, out.splitlines())}
    assert rows["queue.name"] == ("jobs-from-file", f"{app}:2")
    assert rows["workers.count"] == ("6", "env RECORDING_STORAGE__WORKERS__COUNT")  # env beats file
    assert rows["queue.wait_seconds"] == ("20", "default")
    assert rows["dracoon.client_secret"] == ("***", f"{app}:7 via ${{OAUTH_SECRET}}")
    assert rows["aws.secret_access_key"] == ("***", "env RECORDING_STORAGE__AWS__SECRET_ACCESS_KEY")
    assert rows["aws.session_token"] == ("null", "default")
    instances = app.parent / "instances.yml"
    assert rows["instances[a.example.com]"] == ("https://a.example.com", f"{instances}:2")
    assert rows["instances[b.example.com]"] == ("https://b.example.com", f"{instances}:5")
    secrets = ("Oauth-Secret-Value-7", "Aws-Secret-Value-7", "AKIAEXAMPLEVALUE7", "Login-Pw-9", "Enc-Pw-9")
    assert not [secret for secret in secrets if secret in out]


def test_text_form_names_the_file_and_aligns_sources(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = shown(capsys, "config", "show", "-c", str(app))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"# configuration file: {app}"
    (queue_name,) = [line for line in lines if line.startswith("queue.name = ")]
    assert queue_name.startswith("queue.name = jobs-from-file") and queue_name.endswith(f"# {app}:2")
    assert "Oauth-Secret-Value-7" not in out


def test_without_a_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = shown(capsys, "config", "show")
    assert code == 0
    assert out.splitlines()[0].startswith("# no configuration file")
    assert "workers.count = 4" in out


def test_invalid_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "app.yaml"
    bad.write_text("workers: {count: -1}\n", encoding="utf-8")
    assert cli.main(["-c", str(bad), "config", "show"]) == 2
    assert "workers.count" in capsys.readouterr().err
