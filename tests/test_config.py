"""Configuration loading: sources and precedence, env references, units, and every error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from recording_storage.config import AppConfig, load_config, parse_duration, parse_size
from recording_storage.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "app.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.path: p.message for p in exc.value.problems}


def test_defaults_load_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no file and no environment, the documented defaults stand."""
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config == AppConfig(base_dir=config.base_dir)
    assert (config.workers.count, config.s3.chunk_size, config.queue.wait_seconds) == (4, 8 * 1024**2, 20)


def test_shipped_app_yaml_is_valid_and_equals_the_defaults() -> None:
    """conf/app.yaml documents the defaults: loading it changes nothing."""
    config = load_config(Path(__file__).parent.parent / "conf" / "app.yaml", env={})
    assert config.model_dump(exclude={"base_dir"}) == AppConfig().model_dump(exclude={"base_dir"})


def test_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    """Environment variables beat the file; explicit overrides beat both."""
    path = write(tmp_path, "workers: {count: 3, shutdown_grace: 10s}\ns3: {chunk_size: 16MiB}\n")
    env = {"RECORDING_STORAGE__WORKERS__COUNT": "6", "RECORDING_STORAGE__S3__PROBE_BUCKETS": "[a, b]"}
    config = load_config(path, env=env, overrides={"s3": {"chunk_size": "1MiB"}})
    assert config.workers.count == 6
    assert config.workers.shutdown_grace == 10.0
    assert config.s3.chunk_size == 1024**2
    assert config.s3.probe_buckets == ("a", "b")
    assert config.base_dir == tmp_path.resolve()  # the directory above conf/


def test_env_references_and_defaults_are_expanded(tmp_path: Path) -> None:
    """``${NAME}`` and ``${NAME:-default}`` resolve from the environment; secrets stay masked."""
    path = write(tmp_path, "dracoon: {client_secret: '${OAUTH_SECRET}', client_id: '${CLIENT:-fallback}'}\n")
    config = load_config(path, env={"OAUTH_SECRET": "s3cr3t-value"})
    assert config.dracoon.client_secret.get_secret_value() == "s3cr3t-value"
    assert config.dracoon.client_id == "fallback"
    assert "s3cr3t-value" not in repr(config) and "s3cr3t-value" not in str(config)


def test_numeric_looking_secret_from_env_stays_a_string(tmp_path: Path) -> None:
    """A password of digits set through the environment is not turned into a number."""
    config = load_config(write(tmp_path, "{}"), env={"RECORDING_STORAGE__DRACOON__CLIENT_SECRET": "0123"})
    assert config.dracoon.client_secret.get_secret_value() == "0123"


def test_unset_env_reference_names_key_and_variable(tmp_path: Path) -> None:
    """A reference to an unset variable is reported with the key path that uses it."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "dracoon: {client_secret: '${NOPE}'}\n"), env={})
    assert "environment variable NOPE" in problems(exc)["dracoon.client_secret"]


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        ("workers: {count: 0}", "workers.count", "greater than or equal to 1"),
        ("workers: {count: many}", "workers.count", "valid integer"),
        ("log: {level: loud}", "log.level", "'debug', 'info', 'warning' or 'error'"),
        ("s3: {chunk_size: 1KiB}", "s3.chunk_size", "greater than or equal to 65536"),
        ("s3: {chunk_size: lots}", "s3.chunk_size", "not a size: write a number of bytes"),
        ("workers: {shutdown_grace: 15 minutes}", "workers.shutdown_grace", "no combinations such as 1h30m"),
        ("queue: {wait_seconds: 25}", "queue.wait_seconds", "less than or equal to 20"),
        (
            "queue: {visibility_timeout: 30, heartbeat_interval: 45}",
            "queue",
            "must be below visibility_timeout",
        ),
        ("queue: {retry_backoff_max: 1h30m}", "queue.retry_backoff_max", "not a duration"),
        ("aws: {access_key_id: AKIAEXAMPLE}", "aws", "must be set together"),
        ("dracoon: {upload_mode: fast}", "dracoon.upload_mode", "'auto', 'proxy' or 's3'"),
        ("dracoon: {name_clash: rename}", "dracoon.name_clash", "'keep_both', 'overwrite' or 'fail'"),
        ("instances: {source: http}", "instances", "instances.url is required"),
        ("health: {port: 70000}", "health.port", "less than or equal to 65535"),
        ("workers: {cont: 3}", "workers.cont", "unknown key"),
        ("bogus: {}", "bogus", "unknown key"),
        ("sharer: {interval: 0}", "sharer.interval", "greater than 0"),
    ],
)
def test_each_validation_error_names_key_value_and_rule(
    tmp_path: Path, yaml_text: str, path: str, fragment: str
) -> None:
    """Every bad setting is reported with its key path and what is allowed."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, yaml_text), env={})
    found = problems(exc)
    assert path in found, found
    assert fragment in found[path]
    assert str(tmp_path) in str(exc.value)  # the file is named


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """Several mistakes give one error listing each, so a config is fixed in one round."""
    text = "workers: {count: 0}\nlog: {level: loud}\ns3: {parallel_ranges: 99}\n"
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert {"workers.count", "log.level", "s3.parallel_ranges"} <= set(problems(exc))


def test_bad_secret_value_is_masked_in_the_error(tmp_path: Path) -> None:
    """A secret of the wrong type is reported without echoing it."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "dracoon: {client_secret: [Sentinel-Secret-77]}\n"), env={})
    assert "Sentinel-Secret-77" not in str(exc.value)
    assert "dracoon.client_secret" in problems(exc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers: [1, 2", "not valid YAML at line"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    """Broken YAML and a non-mapping file are errors naming the file, not tracebacks."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), env={})
    assert message in str(exc.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    """Naming a config file that does not exist stops start-up (no silent defaults)."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_config_path_from_environment(tmp_path: Path) -> None:
    """``$RECORDING_STORAGE_CONFIG`` selects the file when no path is given."""
    path = write(tmp_path, "workers: {count: 9}\n")
    assert load_config(env={"RECORDING_STORAGE_CONFIG": str(path)}).workers.count == 9


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(1024, 1024), ("8MiB", 8 * 1024**2), ("20 MB", 20_000_000), ("1.5KiB", 1536), ("7", 7), (None, None)],
)
def test_sizes(raw: object, expected: object) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (30, 30),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        (None, None),  # left for the field's own type check
    ],
)
def test_durations(raw: object, expected: object) -> None:
    assert parse_duration(raw) == expected


def test_number_texts_still_load_as_before(tmp_path: Path) -> None:
    """Strings pydantic itself reads as numbers (YAML's 1e3, env's .5 or 1_000) keep working."""
    env = {"RECORDING_STORAGE__HEALTH__CACHE_SECONDS": ".5", "RECORDING_STORAGE__S3__CHUNK_SIZE": "1_048_576"}
    config = load_config(write(tmp_path, "queue: {retry_backoff_max: 1e3}\n"), env=env)
    assert config.queue.retry_backoff_max == 1000.0 and config.health.cache_seconds == 0.5
    assert config.s3.chunk_size == 1_048_576


@pytest.mark.parametrize("raw", ["soon", "15 minutes", "1h30m", "-5s"])
def test_bad_duration_says_how_to_write_one(raw: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration: .*500ms, 30s, 5m, 1h, 1d"):
        parse_duration(raw)


@pytest.mark.parametrize("raw", ["x", "8 megs", "1 KB of data"])
def test_bad_size_says_how_to_write_one(raw: str) -> None:
    with pytest.raises(ValueError, match=r"not a size: .*8MiB"):
        parse_size(raw)


def test_config_is_frozen() -> None:
    """No component can change the configuration another one sees."""
    config = AppConfig()
    with pytest.raises(ValueError):
        config.workers.count = 2  # type: ignore[misc]


def test_rule_across_keys_reads_as_our_sentence(tmp_path: Path) -> None:
    """A rule spanning a section's keys: no pydantic prefix, no dump of the whole section."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "queue: {visibility_timeout: 30, heartbeat_interval: 45}"), env={})
    message = problems(exc)["queue"]
    assert message.startswith("heartbeat_interval (45s) must be below visibility_timeout")
    assert "Value error" not in message and "got {" not in message


def test_problems_from_environment_variables_name_the_variable(tmp_path: Path) -> None:
    """A typo in a variable is not blamed on the file (which may not have that key at all)."""
    env = {"RECORDING_STORAGE__WORKERS__CONUT": "3", "RECORDING_STORAGE__S3__PROBE_BUCKETS": "recordings"}
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "workers: {count: 2}\n"), env=env)
    by_path = {p.path: p for p in exc.value.problems}
    assert by_path["workers.conut"].source == "environment variable RECORDING_STORAGE__WORKERS__CONUT"
    assert "unknown key" in by_path["workers.conut"].message
    probe = by_path["s3.probe_buckets"]
    assert probe.source == "environment variable RECORDING_STORAGE__S3__PROBE_BUCKETS"
    assert """'["a", "b"]'""" in probe.message


def test_environment_blame_is_as_specific_as_the_variables(tmp_path: Path) -> None:
    """A section set as YAML owns only the keys it names; a rule across a section names the
    variables that fed it; the most specific variable wins."""
    env = {"RECORDING_STORAGE__S3": "{parallel_ranges: 4}", "RECORDING_STORAGE__AWS__ACCESS_KEY_ID": "AKIA",
           "RECORDING_STORAGE__QUEUE": "{heartbeat_interval: 90}",
           "RECORDING_STORAGE__QUEUE__WAIT_SECONDS": "99"}
    file = write(tmp_path, "s3: {chunk_size: lots}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(file, env=env)
    by_path = {p.path: p for p in exc.value.problems}
    assert by_path["s3.chunk_size"].source == str(file)  # the file's value, not the variable's
    wait, aws = by_path["queue.wait_seconds"], by_path["aws"]
    assert wait.source == "environment variable RECORDING_STORAGE__QUEUE__WAIT_SECONDS"
    assert aws.source == f"{file} with environment variable(s) RECORDING_STORAGE__AWS__ACCESS_KEY_ID"
