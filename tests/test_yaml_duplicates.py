"""Duplicate keys in any YAML file the service reads are errors naming the file, line and key.

YAML requires unique keys, but PyYAML keeps the last one silently: a second ``instances:`` block
dropped every instance of the first, a second ``workers:`` block reset ``shutdown_grace``
(issue 15, defect 1). App config, instances, routing and topics files are all read through one
loader (``config.load_yaml_file``); each kind is tested here through its real entry point.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from recording_storage import cli
from recording_storage.config import AwsConfig, DracoonConfig, load_config
from recording_storage.errors import ConfigError, ConfigProblem
from recording_storage.events import load_routes
from recording_storage.instances import FileInstanceProvider
from recording_storage.sqs import JobQueue
from tests.fixtures.aws import make_queue_config

DEFAULTS = DracoonConfig(client_id="c", client_secret=SecretStr("s"))
INSTANCE = """\
  {domain}:
    storage: dracoon
    dracoon:
      base_url: https://dracoon.example.com
      login: bot
      password: pw
      encryption_password: epw
      parent_room_id: 7
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def only_problem(info: pytest.ExceptionInfo[ConfigError]) -> ConfigProblem:
    (problem,) = info.value.problems
    return problem


def test_second_workers_block_in_app_config_is_refused(tmp_path: Path) -> None:
    """The reported case: a later ``workers:`` block silently reset ``shutdown_grace``."""
    path = write(tmp_path / "app.yaml", """\
        workers:
          count: 2
          shutdown_grace: 90
        queue:
          name: jobs
        workers:
          count: 4
        """)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    problem = only_problem(info)
    assert (problem.source, problem.path) == (str(path), "workers")
    assert "line 6" in problem.message and "first at line 1" in problem.message
    assert str(problem).startswith(f"{path}: workers: duplicate key")


def test_nested_and_list_item_duplicates_are_all_reported_with_their_path(tmp_path: Path) -> None:
    path = write(tmp_path / "app.yaml", """\
        workers:
          count: 2
          count: 3
        routing:
          rules:
            - name: a
              bucket: one
              bucket: two
        s3:
          buckets:
            rec.example:
              prefix: a/
              prefix: b/
        """)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    found = [(p.path, p.message.split(";")[0]) for p in info.value.problems]
    assert found == [
        ("workers.count", "duplicate key at line 3 (first at line 2)"),
        ("routing.rules[0].bucket", "duplicate key at line 8 (first at line 7)"),
        ("s3.buckets[rec.example].prefix", "duplicate key at line 13 (first at line 12)"),
    ]


def test_merge_keys_and_repeated_anchors_are_not_duplicates(tmp_path: Path) -> None:
    """``<<: *defaults`` then an explicit key overrides on purpose (the shipped routes do this)."""
    routes = write(tmp_path / "routes.yml", """\
        x-defaults: &defaults
          bucket: rec
          instance: meet.example.com
          targets: [{path: Calls}]
        rules:
          - <<: *defaults
            name: first
            bucket: other
          - <<: *defaults
            name: second
        """)
    path = write(tmp_path / "app.yaml", f"routing: {{file: {routes}}}\n")
    loaded = load_routes(load_config(path, env={}), env={})
    assert [(r.name, r.bucket) for r in loaded.rules] == [("first", "other"), ("second", "rec")]


def test_duplicate_rule_key_in_routing_file_is_refused(tmp_path: Path) -> None:
    routes = write(tmp_path / "routes.yml", """\
        rules:
          - name: a
            bucket: rec
            instance: meet.example.com
            targets: [{path: Calls}]
        rules: []
        """)
    path = write(tmp_path / "app.yaml", f"routing: {{file: {routes}}}\n")
    with pytest.raises(ConfigError) as info:
        load_routes(load_config(path, env={}), env={})
    problem = only_problem(info)
    assert (problem.source, problem.path) == (str(routes), "rules")
    assert "line 6 (first at line 1)" in problem.message


def test_second_instances_block_is_refused(tmp_path: Path) -> None:
    """The reported case: ``check`` said "1 configured" and the other instance's jobs would have
    been dead-lettered as unknown_instance."""
    path = write(tmp_path / "instances.yml", "instances:\n" + INSTANCE.format(domain="a.example")
                 + "instances:\n" + INSTANCE.format(domain="b.example"))
    with pytest.raises(ConfigError) as info:
        FileInstanceProvider(path, defaults=DEFAULTS, env={})
    problem = only_problem(info)
    assert (problem.source, problem.path) == (str(path), "instances")
    assert "line 10 (first at line 1)" in problem.message


async def test_duplicate_inside_an_instance_on_reload_keeps_the_last_good_file(tmp_path: Path) -> None:
    """A reload that meets a duplicate keeps serving what it had and logs why, once."""
    path = write(tmp_path / "instances.yml", "instances:\n" + INSTANCE.format(domain="a.example"))
    provider = FileInstanceProvider(path, defaults=DEFAULTS, env={})
    write(path, "instances:\n" + INSTANCE.format(domain="a.example") + "      login: other\n")
    os.utime(path, ns=(1, 1))  # a new signature even on coarse clocks
    with structlog.testing.capture_logs() as logs:
        account = await provider.get("a.example")
    assert account.login == "bot"
    (failed,) = [e for e in logs if e["event"] == "instances_reload_failed"]
    assert failed["problems"] == [
        f"{path}: instances[a.example].dracoon.login: duplicate key at line 10 (first at line 6); "
        "YAML keeps only the last, so the first is silently lost: merge them or delete one"
    ]


async def test_duplicate_in_topics_file_is_refused(aws_config: AwsConfig, tmp_path: Path) -> None:
    write(tmp_path / "topics.yml", """\
        q: https://sqs.example/1/q
        q: https://sqs.example/1/other
        """)
    cfg = make_queue_config("q", topics_file=Path("topics.yml"))
    with pytest.raises(ConfigError) as info:
        async with JobQueue(aws_config, cfg, base_dir=tmp_path):
            pass
    problem = only_problem(info)
    assert (problem.source, problem.path) == (str(tmp_path / "topics.yml"), "q")
    assert "line 2 (first at line 1)" in problem.message


def test_duplicate_in_an_environment_yaml_value_is_not_silently_resolved(tmp_path: Path) -> None:
    """A mapping given as YAML in a variable is refused too, blamed on that variable."""
    path = write(tmp_path / "app.yaml", "")
    env = {"RECORDING_STORAGE__S3": "{parallel_ranges: 4, parallel_ranges: 8}"}
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert any(p.source == "environment variable RECORDING_STORAGE__S3" for p in info.value.problems)


def test_check_reports_the_duplicate_in_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "app.yaml", "log: {level: info}\nlog: {level: debug}\n")
    assert cli.main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: log: duplicate key at line 2 (first at line 1)" in err
    assert "Traceback" not in err
