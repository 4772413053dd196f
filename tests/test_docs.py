"""The operator docs stay true to the code: config keys and defaults, job examples, probes, IAM.

Each test reads a document the way an operator would use it (the reference table, a JSON
example, a manifest) and checks it against the running code rather than against a copy of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from recording_storage.config import (
    ENV_PREFIX,
    AppConfig,
    DracoonConfig,
    load_config,
    parse_duration,
    parse_size,
)
from recording_storage.errors import PermanentError, TransientError
from tests.fixtures.servers import ScriptedConfigurator, serve_app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DEPLOY = DOCS / "deploy"
REFERENCE_HEADER = ["key", "type", "default", "env var", "meaning"]
# Keys whose default is derived at load time rather than fixed in the model; documented as
# "computed" and, being no setting an operator normally makes, not listed in conf/app.yaml.
COMPUTED = {"base_dir"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def fenced_blocks(text: str, lang: str) -> list[str]:
    """Bodies of the code blocks fenced exactly as ```<lang> (other fences are ignored)."""
    return re.findall(rf"^```{re.escape(lang)}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def table_rows(text: str, header: list[str]) -> list[dict[str, str]]:
    """Rows of every markdown table whose header is exactly ``header``; cells keyed by column."""
    rows: list[dict[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        cells = _cells(lines[i])
        if cells == header and i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: "):
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                row = _cells(lines[i])
                assert row is not None and len(row) == len(header), f"malformed table row: {lines[i]!r}"
                rows.append(dict(zip(header, row, strict=True)))
                i += 1
            continue
        i += 1
    return rows


def _cells(line: str) -> list[str] | None:
    if not line.startswith("|") or not line.rstrip().endswith("|"):
        return None
    # GitHub tables allow `\|` for a literal pipe, also inside code spans.
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


# -- configuration reference ------------------------------------------------------------------


Leaves = dict[str, tuple[type[BaseModel], str]]


def config_leaves(model: type[BaseModel] = AppConfig, prefix: str = "") -> Leaves:
    """Every leaf key path of the config model -> (the model that owns it, its field name)."""
    leaves: Leaves = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves.update(config_leaves(annotation, f"{prefix}{name}."))
            continue
        leaves[f"{prefix}{name}"] = (model, name)
        # A map of named sections (s3.buckets): its entries' keys are documented under <bucket>.
        args = get_args(annotation) if get_origin(annotation) is dict else ()
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            placeholder = {"buckets": "<bucket>"}.get(name, "<name>")
            leaves.update(config_leaves(args[1], f"{prefix}{name}.{placeholder}."))
    return leaves


def literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` or ``Literal[...] | None`` annotation, else None."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    literals = [a for a in get_args(annotation) if get_origin(a) is Literal]
    return get_args(literals[0]) if len(literals) == 1 else None


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, str]]:
    rows = table_rows(read(DOCS / "configuration.md"), REFERENCE_HEADER)
    keys = [backticked(r["key"])[0] for r in rows]
    assert len(keys) == len(set(keys)), "a key is documented twice"
    return {k: r for k, r in zip(keys, rows, strict=True)}


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_every_config_key_is_documented_and_nothing_else(reference: dict[str, dict[str, str]]) -> None:
    """The reference table lists exactly the keys of AppConfig, walked recursively."""
    model_keys = set(config_leaves())
    assert len(model_keys) > 50
    assert sorted(model_keys - set(reference)) == [], "keys missing from docs/configuration.md"
    assert sorted(set(reference) - model_keys) == [], "documented keys that the model does not have"


def test_documented_env_var_names_follow_the_prefix_rule(reference: dict[str, dict[str, str]]) -> None:
    """Each row names RECORDING_STORAGE__SECTION__KEY, and that variable really sets the key."""
    for key, row in reference.items():
        expected = ENV_PREFIX + "__".join(key.split(".")).upper()
        assert backticked(row["env var"]) == [expected], key
    # The loader agrees with the naming rule (one real round trip per kind of value).
    cfg = load_config(None, env={"RECORDING_STORAGE__WORKERS__COUNT": "7",
                                 "RECORDING_STORAGE__S3__PROBE_BUCKETS": '["recordings-eu"]',
                                 "RECORDING_STORAGE__QUEUE__DLQ_NAME": "null"})
    assert cfg.workers.count == 7
    assert cfg.s3.probe_buckets == ("recordings-eu",)
    assert cfg.queue.dlq_name == "null"  # as documented: env vars cannot set null


def test_documented_defaults_equal_the_model_defaults(reference: dict[str, dict[str, str]]) -> None:
    """The default column, read as YAML and validated by the model, equals the real default."""
    for key, (model, field) in config_leaves().items():
        cell = reference[key]["default"]
        if key in COMPUTED:
            assert cell == "computed", key
            continue
        literals = backticked(cell)
        assert len(literals) == 1 and cell == f"`{literals[0]}`", f"{key}: default must be one `literal`"
        documented = getattr(model.model_validate({field: yaml.safe_load(literals[0])}), field)
        actual = getattr(model(), field)
        assert _plain(documented) == _plain(actual), f"{key}: docs say {literals[0]}, model has {actual!r}"


def test_enum_keys_list_every_allowed_value(reference: dict[str, dict[str, str]]) -> None:
    """For Literal-typed keys the type column names every value the model accepts."""
    checked = 0
    for key, (model, field) in config_leaves().items():
        choices = literal_choices(model.model_fields[field].annotation)
        if choices is not None:
            assert set(backticked(reference[key]["type"])) == set(choices), key
            checked += 1
    assert checked >= 9


def test_unit_examples_parse_as_documented() -> None:
    """Every example in the units table is accepted; the compound duration it warns about is not."""
    units = table_rows(read(DOCS / "configuration.md"), ["kind", "accepted", "examples"])
    rows = {r["kind"]: r for r in units}
    sizes = backticked(rows["size"]["examples"])
    durations = backticked(rows["duration"]["examples"])
    assert len(sizes) >= 3 and len(durations) >= 3
    assert [parse_size(s) for s in sizes] == [8388608, 8 * 1024**2, 20_000_000, int(1.5 * 1024**3)]
    assert all(isinstance(parse_duration(d), float) for d in durations)
    assert parse_duration("15m") == 900.0 and parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="no combinations"):
        parse_duration("1h30m")


def test_app_yaml_lists_every_key_with_its_default() -> None:
    """conf/app.yaml (the lead's file) shows every key, each with the model's default."""
    data = yaml.safe_load(read(ROOT / "conf" / "app.yaml"))
    missing = []
    for key in config_leaves():
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    # Entries of maps (s3.buckets.<bucket>.*) have no place in a file of defaults.
    missing = [k for k in missing if "<" not in k]
    assert sorted(set(missing) - COMPUTED) == [], "keys missing from conf/app.yaml"
    loaded = load_config(ROOT / "conf" / "app.yaml", env={})
    assert loaded == AppConfig(base_dir=loaded.base_dir)


def test_bucket_settings_example_loads(tmp_path: Path) -> None:
    """The documented s3.buckets example validates and composes the endpoint it describes."""
    from recording_storage.aws import bucket_settings

    (block,) = [b for b in fenced_blocks(read(DOCS / "configuration.md"), "yaml") if b.startswith("s3:")]
    path = tmp_path / "app.yaml"
    path.write_text(block, encoding="utf-8")
    cfg = load_config(path, env={"PBX_S3_KEY": "key-1234", "PBX_S3_SECRET": "secret-1234"})
    settings = bucket_settings(cfg.aws, cfg.s3, "call-recordings")
    assert settings is not None
    aws, s3 = settings
    assert aws.endpoint_url == "https://minio.pbx.example.net:9000" and s3.addressing_style == "path"
    assert bucket_settings(cfg.aws, cfg.s3, "other-bucket") is None


# -- instances: file and configurator -----------------------------------------------------


def _instances_example() -> str:
    blocks = [b for b in fenced_blocks(read(DOCS / "configuration.md"), "yaml") if b.startswith("instances:")]
    assert len(blocks) == 1
    return blocks[0]


def test_instances_file_example_loads(tmp_path: Path) -> None:
    """The documented instances file validates, with its env references filled in."""
    from recording_storage.instances import load_instances_file

    text = _instances_example()
    names = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    assert {"DRACOON_PASSWORD", "DRACOON_ENCRYPTION_PASSWORD"} <= names
    path = tmp_path / "instances.yml"
    path.write_text(text, encoding="utf-8")
    env = {n: f"value-of-{n}" for n in names}
    accounts, invalid = load_instances_file(path, defaults=DracoonConfig(), env=env)
    assert invalid == {}
    assert sorted(accounts) == ["meet.example.com", "sales.example.org"]
    assert accounts["sales.example.org"].base_url == "https://dracoon.example.org"  # /api/v4 normalised away
    assert [r.meeting_type_id for r in accounts["meet.example.com"].targets] == ["14", "*any*"]
    # An unset reference is reported at its key, as the docs say.
    _, invalid = load_instances_file(path, defaults=DracoonConfig(), env={})
    assert any(p.path.endswith(".dracoon.password") for p in invalid["meet.example.com"])


def test_documented_instance_keys_are_accepted() -> None:
    """Every key in the instance key table is accepted by the instance validator."""
    from recording_storage.instances import parse_instance

    rows = table_rows(read(DOCS / "configuration.md"),
                      ["key (below `instances.<domain>`)", "required", "meaning"])
    keys = {backticked(r["key (below `instances.<domain>`)"])[0] for r in rows}
    values = {"storage": "dracoon", "base_url": "https://d.example.com", "login": "bot",
              "password": "pw-1234", "encryption_password": "epw-1234", "parent_room_id": 5,
              "client_id": "cid", "client_secret": "cs-1234", "verify_tls": False}
    entry: dict[str, Any] = {"dracoon": {}}
    for key in keys - {"targets", "targets[].meetingTypeId", "targets[].copyTo"}:
        section, _, name = key.rpartition(".")
        (entry[section] if section else entry)[name] = values[name]
    assert {f"dracoon.{k}" for k in entry["dracoon"]} | {"storage"} == keys - {
        "targets", "targets[].meetingTypeId", "targets[].copyTo"}
    entry["targets"] = [{"meetingTypeId": "*any*", "copyTo": [{"path": "/", "expiration": "1 year"}]}]
    account = parse_instance("x.example.com", entry, defaults=DracoonConfig())
    assert (account.client_id, account.verify_tls, account.parent_room_id) == ("cid", False, 5)


@pytest.fixture
async def configurator() -> AsyncIterator[ScriptedConfigurator]:
    """A configurator on 127.0.0.1 serving the documented answers (tests may script others)."""
    blocks = [json.loads(b) for b in fenced_blocks(read(DOCS / "configuration.md"), "json")]
    instance = next(b for b in blocks if isinstance(b, dict) and "dracoon" in b)
    listing = next(b for b in blocks if isinstance(b, dict) and "instances" in b)
    conf = ScriptedConfigurator(answers={instance["domain"]: (200, instance)}, listing=(200, listing))
    async with serve_app(conf.app()) as url:
        conf.url = url
        yield conf


async def test_configurator_wire_format_as_documented(configurator: ScriptedConfigurator) -> None:
    """The real HTTP provider accepts the documented answers and maps statuses as the table says."""
    from recording_storage.instances import HttpInstanceProvider, UnknownInstance

    provider = HttpInstanceProvider(configurator.url, defaults=DracoonConfig())
    try:
        account = await provider.get("Meet.Example.com.")
        assert (account.domain, account.parent_room_id, account.client_id) == (
            "meet.example.com", 12345, "recording-storage")
        assert await provider.list_domains() == ["meet.example.com", "sales.example.org"]
        with pytest.raises(UnknownInstance):
            await provider.get("other.example.com")
        for status in (503, 401, 429):
            configurator.answers["meet.example.com"] = (status, {})
            with pytest.raises(TransientError):
                await provider.get("meet.example.com")
        configurator.answers["meet.example.com"] = (400, {})
        with pytest.raises(PermanentError) as info:
            await provider.get("meet.example.com")
        assert not isinstance(info.value, UnknownInstance)
    finally:
        await provider.aclose()



# -- job messages -------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)  # after every example meeting, before every example expiry


def _job_doc() -> str:
    return read(DOCS / "job-message.md")


@pytest.fixture(scope="module")
def examples() -> list[Any]:
    """The numbered examples of docs/job-message.md, parsed by the real parser."""
    jobs = pytest.importorskip("recording_storage.jobs", reason="recording_storage.jobs not importable yet")
    blocks = fenced_blocks(_job_doc(), "json")
    assert len(blocks) == 3
    return [jobs.parse_job_message(b) for b in blocks]


def _example_account() -> Any:
    """The instance of example 3: a stub account with the documented target rules."""
    from recording_storage.instances import parse_instance

    (block,) = [b for b in fenced_blocks(_job_doc(), "yaml") if b.startswith("targets:")]
    entry = {"dracoon": {"base_url": "https://dracoon.example.com", "login": "bot", "password": "pw-1234",
                         "encryption_password": "epw-1234", "parent_room_id": 1},
             "targets": yaml.safe_load(block)["targets"]}
    return parse_instance("meet.example.com", entry, defaults=DracoonConfig())


def test_every_json_example_is_a_valid_job(examples: list[Any]) -> None:
    """Each ```json block parses; the parser normalises what the docs say it normalises."""
    minimal, multi, from_instance = examples
    assert minimal.meeting.timezone == "UTC" and minimal.targets[0].expiration is None
    assert multi.keys == ("2025/06/22981/video.mp4", "2025/06/22981/audio.m4a", "2025/06/22981/chat.txt")
    assert multi.instance_domain == "meet.example.com" and multi.meeting.type.id == "14"
    assert from_instance.targets == ()


def test_example_instance_rules_are_those_of_conf_instances_yml() -> None:
    """Example 3 claims to use conf/instances.yml's rules; it does."""
    (block,) = [b for b in fenced_blocks(_job_doc(), "yaml") if b.startswith("targets:")]
    conf = yaml.safe_load(read(ROOT / "conf" / "instances.yml"))
    assert yaml.safe_load(block)["targets"] == conf["instances"]["meet.example.com"]["targets"]


def test_documented_rooms_are_the_resolved_targets(examples: list[Any]) -> None:
    """The rooms table equals resolve_targets() for each example."""
    from recording_storage.targets import resolve_targets

    rows = table_rows(_job_doc(), ["example", "room path below the parent room", "expires"])
    account = _example_account()
    for n, job in enumerate(examples, 1):
        documented = []
        for row in (r for r in rows if r["example"] == str(n)):
            path = backticked(row["room path below the parent room"])
            expires = backticked(row["expires"])
            documented.append(("/".join(path) if path else "", expires[0] if expires else None))
            assert path or row["room path below the parent room"] == "the parent room itself"
            assert expires or row["expires"] == "never"
        resolved = [(t.path, t.expire_at.isoformat() if t.expire_at else None)
                    for t in resolve_targets(job, account, now=NOW)]
        assert resolved == documented, f"example {n}"


def test_documented_file_names_are_generated(examples: list[Any]) -> None:
    """The file-name table equals file_name_for() for each example key."""
    from recording_storage.targets import file_name_for

    rows = table_rows(_job_doc(), ["example", "S3 key", "Content-Type", "DRACOON file name"])
    assert len(rows) == 5
    for row in rows:
        job = examples[int(row["example"]) - 1]
        (key,) = backticked(row["S3 key"])
        types = backticked(row["Content-Type"])
        content_type = types[0] if types else None
        assert key in job.keys
        assert file_name_for(job, key, content_type, key_count=len(job.keys)) == backticked(
            row["DRACOON file name"])[0]


def test_documented_notes_are_generated(examples: list[Any]) -> None:
    """The notes example is what upload_notes() writes for example 2's first key, with the
    content SHA-256 added to the marker once the upload completed."""
    from recording_storage.targets import notes_with_sha256, parse_source_marker, source_marker, upload_notes

    (notes,) = [b.rstrip("\n") for b in fenced_blocks(_job_doc(), "text") if b.startswith("Meeting ID:")]
    job = examples[1]
    etag, _, sha256 = notes.rsplit("etag=", 1)[1].partition(":sha256=")
    assert len(sha256) == 64
    opened = upload_notes(job, job.keys[0], job.bucket, f'"{etag}"')
    assert notes_with_sha256(opened, sha256) == notes
    assert parse_source_marker(notes) == source_marker(job.bucket, job.keys[0], etag)


def test_invalid_example_gives_the_documented_reason() -> None:
    """The invalid message is rejected with exactly the documented rs-reason and code."""
    from recording_storage.errors import InvalidJobMessage
    from recording_storage.jobs import parse_job_message

    (body,) = fenced_blocks(_job_doc(), "json invalid")
    texts = fenced_blocks(_job_doc(), "text")
    (reason,) = [b.rstrip("\n") for b in texts if b.startswith("invalid job message:")]
    with pytest.raises(InvalidJobMessage) as info:
        parse_job_message(body)
    assert str(info.value) == reason
    assert info.value.code == "invalid_message"


def test_expiration_tables_match_the_grammar() -> None:
    """Every vector in the expiration table computes as stated; every rejected text is rejected."""
    from recording_storage.expiration import ExpirationError, parse_expiration

    vectors = table_rows(_job_doc(), ["expiration", "base", "expires"])
    assert len(vectors) >= 9
    for row in vectors:
        (text,), (base,), (expires,) = (backticked(row[c]) for c in ("expiration", "base", "expires"))
        exp = parse_expiration(text)
        assert exp is not None
        assert exp.expire_at(datetime.fromisoformat(base)).isoformat() == expires, text
    rejected = table_rows(_job_doc(), ["rejected", "why"])
    assert len(rejected) >= 5
    for row in rejected:
        with pytest.raises(ExpirationError):
            parse_expiration(backticked(row["rejected"])[0])


def test_template_variables_table_is_complete() -> None:
    """The variables table lists exactly the variables path templates know."""
    from recording_storage.targets import TEMPLATE_VARIABLES

    rows = table_rows(_job_doc(), ["variable", "value"])
    assert {backticked(r["variable"])[0] for r in rows} == {f"${v}" for v in TEMPLATE_VARIABLES}


def _source_codes() -> set[str]:
    """Every error code string the service's own modules (the emulator lives outside) define."""
    codes: set[str] = set()
    for path in (ROOT / "recording_storage").rglob("*.py"):
        codes.update(re.findall(r"\bcode\s*=\s*\"([a-z_]+)\"", read(path)))
    return codes


def test_documented_reason_codes_exist() -> None:
    """Every rs-reason-code in the table is a code the service can actually produce, and each
    has its dlq_messages_total series from the start (metrics.DLQ_REASONS)."""
    from recording_storage.metrics import DLQ_REASONS

    rows = table_rows(_job_doc(), ["rs-reason-code", "meaning", "fix, then redrive"])
    documented = {backticked(r["rs-reason-code"])[0] for r in rows}
    assert len(documented) >= 15
    assert sorted(DLQ_REASONS) == sorted(documented)
    assert sorted(documented - _source_codes()) == []
    from recording_storage.sqs import DLQ_ATTRIBUTES

    attrs = table_rows(_job_doc(), ["attribute", "type", "content"])
    assert [backticked(r["attribute"])[0] for r in attrs] == list(DLQ_ATTRIBUTES)


# -- operations: CLI, logs, metrics, health ------------------------------------------------


def _ops_doc() -> str:
    return read(DOCS / "operations.md")


def _source_text() -> dict[Path, str]:
    return {p: read(p) for p in (ROOT / "recording_storage").rglob("*.py")}


def test_every_cli_command_and_option_is_documented() -> None:
    """The command table covers every subcommand of the real parser with all its options."""
    import argparse

    from recording_storage import cli

    rows = table_rows(_ops_doc(), ["command", "what it does"])
    documented = {backticked(r["command"])[0].split()[1]: backticked(r["command"])[0] for r in rows}
    parser = cli._parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(documented) == set(sub.choices)
    for name, subparser in sub.choices.items():
        for action in subparser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option not in ("--help", "--config"):  # global option
                    assert option in documented[name], f"{name} {option}"
    assert (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_CONFIG) == (0, 1, 2)


def test_every_exit_status_is_documented() -> None:
    """The exit status table lists exactly the ExitCode values."""
    from recording_storage.errors import ExitCode

    rows = table_rows(_ops_doc(), ["status", "meaning"])
    documented = {int(backticked(r["status"])[0]) for r in rows}
    assert documented == {int(code) for code in ExitCode}
    assert any("invalid configuration" in r["meaning"] and "`2`" in r["status"] for r in rows)


def _emitted_code(event: str, sources: dict[Path, str]) -> set[str]:
    """The Code names a log call for ``event`` passes (LOG_CODE is health's 15014)."""
    found: set[str] = set()
    for text in sources.values():
        for m in re.finditer(rf"log\.\w+\(\s*\"{re.escape(event)}\"", text):
            rest = text[m.end():]
            nxt = rest.find("log.")
            call = rest[: nxt if nxt >= 0 else len(rest)][:600]
            code = re.search(r"code=(?:Code\.(\w+)|(LOG_CODE))", call)
            if code:
                found.add(code.group(1) or "HEALTH_CHECK_ERROR")
    return found


def _coded_events(sources: dict[Path, str]) -> dict[str, set[str]]:
    """Every event the service logs with a ``code=``, and the Code names it uses."""
    events: dict[str, set[str]] = {}
    for text in sources.values():
        for m in re.finditer(r"log\.\w+\(\s*\"(\w+)\"", text):
            codes = _emitted_code(m.group(1), {Path(): text})
            if codes:
                events.setdefault(m.group(1), set()).update(codes)
    return events


def test_log_code_table_matches_the_code_enum_and_the_emitters() -> None:
    """Each 15xxx code is listed with its name, with exactly the events logged with that code."""
    from recording_storage.logs import Code

    rows = table_rows(_ops_doc(), ["code", "name", "emitted as"])
    assert {(int(r["code"]), backticked(r["name"])[0]) for r in rows} == {(c.value, c.name) for c in Code}
    sources = _source_text()
    events = 0
    for row in rows:
        name = backticked(row["name"])[0]
        for event in backticked(row["emitted as"]):
            assert _emitted_code(event, sources) == {name}, f"{event} is not logged with {name}"
            events += 1
    assert events >= 20
    by_code = {backticked(r["name"])[0]: set(backticked(r["emitted as"])) for r in rows}
    undocumented = {event: codes for event, codes in _coded_events(sources).items()
                    if not all(event in by_code[c] for c in codes)}
    assert undocumented == {}, "coded log events missing from the table in docs/operations.md"


def test_metrics_table_lists_exactly_the_registered_metrics() -> None:
    """Every metric family the service registers is documented, and nothing else is."""
    from recording_storage.metrics import Metrics

    families = {
        line.split()[2] for line in Metrics().render().decode().splitlines()
        if line.startswith("# TYPE") and not line.split()[2].endswith("_created")
    }
    registered = {name for name in families if name.startswith("recording_storage_")}
    rows = table_rows(_ops_doc(), ["metric", "type", "labels", "meaning"])
    assert {backticked(r["metric"])[0] for r in rows} == registered
    assert "process_resident_memory_bytes" in families and "`process_*`" in _ops_doc()
    mentioned = set(re.findall(r"recording_storage_[a-z_]+", _ops_doc()))
    assert mentioned <= registered, "prose mentions a metric that does not exist"


def test_health_routes_and_error_codes_are_documented() -> None:
    """Every route of the health app has a section; the error table has the original's codes."""
    from recording_storage.config import HealthConfig
    from recording_storage.health import ERROR_DRACOON, ERROR_S3, ERROR_WORKERS, HealthState, make_health_app
    from recording_storage.metrics import Metrics

    app = make_health_app(HealthState(), Metrics(), HealthConfig())
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert routes == {"/healthcheck", "/api/v1/healthcheck", "/livez", "/readyz", "/metrics"}
    for route in routes:
        assert f"`GET {route}`" in _ops_doc(), route
    errors = table_rows(_ops_doc(), ["error", "when"])
    assert [backticked(r["error"])[0] for r in errors] == [ERROR_WORKERS, ERROR_S3, ERROR_DRACOON]


async def test_documented_health_bodies_are_served() -> None:
    """The bodies quoted in the docs are what the endpoints answer, over a real socket."""
    import aiohttp

    from recording_storage.config import HealthConfig
    from recording_storage.health import ERROR_DRACOON, HealthState, serve_health
    from recording_storage.metrics import Metrics

    state = HealthState()
    state.mark_config_valid()
    state.worker_started("pool")
    state.worker_polled("pool")
    failing = {"now": False}

    async def dracoon_probe() -> None:
        if failing["now"]:
            raise RuntimeError("login refused")

    state.add_probe("dracoon:meet.example.com", ERROR_DRACOON, dracoon_probe)
    cfg = HealthConfig(host="127.0.0.1", port=0, cache_seconds=0)
    async with serve_health(state, Metrics(), cfg) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/livez") as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ok", "worker_pools": 1})
        async with http.get(f"{url}/readyz") as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ok"})
        async with http.get(f"{url}/healthcheck") as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "success"})
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
        failing["now"] = True
        async with http.get(f"{url}/api/v1/healthcheck") as resp:
            body = await resp.json()
            assert resp.status == 500 and set(body) == {"status", "error", "description"}
            assert (body["status"], body["error"]) == ("error", ERROR_DRACOON)
    assert '`200 {"status":"success"}`' in _ops_doc()
    assert '`200 {"status":"ok","worker_pools":1}`' in _ops_doc()


# -- deploy manifests -----------------------------------------------------------------------


def _k8s() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(read(DEPLOY / "kubernetes-deployment.yaml")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs) == 3
    return by_kind


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[AppConfig, dict[str, str]]:
    """The configuration the example Deployment runs with: its ConfigMap, loaded for real."""
    from recording_storage.instances import load_instances_file

    conf = tmp_path_factory.mktemp("deploy") / "conf"
    conf.mkdir()
    data = _k8s()["ConfigMap"]["data"]
    assert set(data) == {"app.yaml", "topics.yml", "instances.yml"}
    for name, text in data.items():
        (conf / name).write_text(text, encoding="utf-8")
    cfg = load_config(conf / "app.yaml", env={})
    names = set(re.findall(r"\$\{([A-Z_]+)\}", data["instances.yml"]))
    accounts, invalid = load_instances_file(cfg.resolve(cfg.instances.file), defaults=cfg.dracoon,
                                            env={n: "x-1234" for n in names})
    assert invalid == {} and accounts
    topics = yaml.safe_load(data["topics.yml"])
    assert cfg.queue.name in topics and cfg.queue.dlq_name in topics
    return cfg, topics


def _container() -> dict[str, Any]:
    (container,) = _k8s()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _bytes(quantity: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    assert m, quantity
    return int(m.group(1)) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[m.group(2)]


def test_termination_grace_covers_long_poll_and_drain(deployed: tuple[AppConfig, dict[str, str]]) -> None:
    """SIGKILL comes only after the long poll returned and running jobs had their grace."""
    cfg, _ = deployed
    grace = _k8s()["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > cfg.workers.shutdown_grace + 5
    assert grace > AppConfig().workers.shutdown_grace + 5
    assert grace >= cfg.queue.wait_seconds + cfg.workers.shutdown_grace + 10


def test_probes_use_real_routes_on_the_health_port(deployed: tuple[AppConfig, dict[str, str]]) -> None:
    """Probe paths are routes of health.py; the port is health.port; /healthcheck is no probe."""
    from recording_storage.config import HealthConfig

    cfg, _ = deployed
    health_src = read(ROOT / "recording_storage" / "health" / "server.py")
    routes = set(re.findall(r"add_get\(\"([^\"]+)\"", health_src))
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [HealthConfig().port] == [cfg.health.port]
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe in probes.values():
        assert probe["path"] in routes
        assert ports[probe["port"]] == cfg.health.port
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/livez"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert container["readinessProbe"]["timeoutSeconds"] > 5  # readiness may run 5 s probes
    annotations = _k8s()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == cfg.health.port
    assert annotations["prometheus.io/path"] in routes


def test_pod_runs_as_the_image_user_with_config_and_secrets_wired() -> None:
    """uid as in the Dockerfile; ConfigMap where the image expects config; secrets from a Secret."""
    dockerfile = read(ROOT / "Dockerfile")
    uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    assert f"USER {uid}" in dockerfile
    k8s = _k8s()
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
    container = _container()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    image_config = re.search(r"RECORDING_STORAGE_CONFIG=(\S+)", dockerfile).group(1)  # type: ignore[union-attr]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RECORDING_STORAGE_CONFIG"] == image_config
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    conf = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[conf]["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    assert mounts[conf]["mountPath"] == str(Path(image_config).parent) and "subPath" not in mounts[conf]
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == ["recording-storage-secrets"]
    assert pod["serviceAccountName"] == k8s["ServiceAccount"]["metadata"]["name"]
    role = k8s["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith("arn:aws:iam::")
    instances = yaml.safe_load(k8s["ConfigMap"]["data"]["instances.yml"])
    for entry in instances["instances"].values():  # no literal passwords in the ConfigMap
        assert entry["dracoon"]["password"].startswith("${")
        assert entry["dracoon"]["encryption_password"].startswith("${")


def test_memory_limit_fits_the_documented_sizing(deployed: tuple[AppConfig, dict[str, str]]) -> None:
    """The limit holds workers x per-job memory (one S3-direct target) plus the process."""
    cfg, _ = deployed
    per_job = (cfg.s3.chunk_size * (cfg.s3.parallel_ranges + 2)
               + cfg.dracoon.upload_chunk_size * (cfg.dracoon.parts_in_flight + 1))
    needed = cfg.workers.count * per_job + 150 * 1024**2
    resources = _container()["resources"]
    assert _bytes(resources["limits"]["memory"]) >= needed
    assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])


def test_keda_scales_the_deployment_on_its_queue(deployed: tuple[AppConfig, dict[str, str]]) -> None:
    """Trigger points at the Deployment's queue and region; queueLength = workers.count."""
    cfg, topics = deployed
    docs = {d["kind"]: d for d in yaml.safe_load_all(read(DEPLOY / "keda-scaledobject.yaml")) if d}
    scaled, auth = docs["ScaledObject"], docs["TriggerAuthentication"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == _k8s()["Deployment"]["metadata"]["name"]
    assert 0 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values must be strings"
    assert meta["queueURL"] == topics[cfg.queue.name]
    assert meta["awsRegion"] == cfg.aws.region
    assert meta["queueLength"] == str(cfg.workers.count)
    assert "activationQueueLength" in meta
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    assert "replicas" not in _k8s()["Deployment"]["spec"], "KEDA owns the replica count"


def _policy(name: str) -> list[dict[str, Any]]:
    statements = json.loads(read(DEPLOY / name))["Statement"]
    assert isinstance(statements, list)
    return statements


def test_keda_assumes_a_scaler_role_that_trusts_keda_not_the_service() -> None:
    """KEDA >= 2.13 assumes roleArn with its own token: that role must trust keda-operator.

    ``identityOwner: workload`` made KEDA assume the service's role, which trusts only the
    service's ServiceAccount: AccessDenied, nothing scaled.
    """
    docs = {d["kind"]: d for d in yaml.safe_load_all(read(DEPLOY / "keda-scaledobject.yaml")) if d}
    identity = docs["TriggerAuthentication"]["spec"]["podIdentity"]
    (trigger,) = docs["ScaledObject"]["spec"]["triggers"]
    assert identity.get("identityOwner", "keda") == "keda", "workload: KEDA cannot assume the service role"
    assert "identityOwner" not in trigger["metadata"], "deprecated since KEDA 2.13"
    service_role = _k8s()["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    role = identity["roleArn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role) and role != service_role
    assert role.rpartition("/")[2] in _ops_doc()
    (grant,) = _policy("keda-scaler-policy.json")
    queue = trigger["metadata"]["queueURL"].rpartition("/")[2]
    assert (grant["Effect"], grant["Action"]) == ("Allow", ["sqs:GetQueueAttributes"])
    assert grant["Resource"] == f"arn:aws:sqs:REGION:ACCOUNT:{queue}"
    (trust,) = _policy("keda-scaler-trust-policy.json")
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity" and "Federated" in trust["Principal"]
    subjects = [v for k, v in trust["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    assert subjects == ["system:serviceaccount:KEDA_NAMESPACE:keda-operator"]
    service_account = _k8s()["ServiceAccount"]["metadata"]["name"]
    assert not any(s.endswith(f":{service_account}") for s in subjects)


def test_pod_does_not_mount_an_api_token_it_never_uses() -> None:
    pod = _k8s()["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_scale_on_in_flight_is_chosen_and_explained() -> None:
    """Backoff-waiting messages count as in flight: the docs say so and what to choose."""
    docs = {d["kind"]: d for d in yaml.safe_load_all(read(DEPLOY / "keda-scaledobject.yaml")) if d}
    (trigger,) = docs["ScaledObject"]["spec"]["triggers"]
    assert trigger["metadata"]["scaleOnInFlight"] in {"true", "false"}, "an explicit choice, as a string"
    ops = _ops_doc()
    section = ops[ops.index("**`scaleOnInFlight` and retry backoff.**"):]
    section = section[: section.index("\n\n**")]
    for needed in ("ApproximateNumberOfMessagesNotVisible", "backoff", "maxReplicaCount", "outage",
                   f'`scaleOnInFlight: "{trigger["metadata"]["scaleOnInFlight"]}"`', "Choose"):
        assert needed in section, needed


# AWS calls made only by tooling (local stack, tests) or only when a feature is configured.
TOOLING_CALLS = {"create_bucket", "create_queue", "put_object"}
# s3.probe_buckets; check --write-probe (an operator identity): documented as add-ons
OPTIONAL_CALLS = {"head_bucket": "s3:ListBucket", "get_bucket_versioning": "s3:GetBucketVersioning"}
# IAM has no action of its own for SQS batch calls: each needs its single call's action.
# A presigned GET (s3.direct_http) is authorised as the GetObject it signs, when it is used.
CALL_ACTIONS = {"head_object": "s3:GetObject", "delete_message_batch": "sqs:DeleteMessage",
                "generate_presigned_url": "s3:GetObject"}


CONFIG_BUCKET_ARN = "arn:aws:s3:::CONFIG_BUCKET"
RECORDINGS_BUCKET_ARN = "arn:aws:s3:::RECORDINGS_BUCKET"


def test_iam_policy_lets_fetch_config_tell_missing_from_denied() -> None:
    """fetch_config needs GetObject on the config prefix and ListBucket limited to it (else a
    missing optional file answers 403), and the docs say the conf dir needs an emptyDir."""
    policy = json.loads(read(DEPLOY / "iam-policy.json"))
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    fetch = by_sid["FetchConfigurationFiles"]
    assert fetch["Action"] == ["s3:GetObject"] and fetch["Resource"] == f"{CONFIG_BUCKET_ARN}/CONFIG_PREFIX/*"
    listing = by_sid["ListConfigurationPrefix"]
    assert listing["Action"] == ["s3:ListBucket"] and listing["Resource"] == CONFIG_BUCKET_ARN
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["CONFIG_PREFIX/*"]}}
    ops = " ".join(_ops_doc().split())
    assert "readOnlyRootFilesystem: true` mount an `emptyDir` at `/app/conf`" in ops
    assert "s3:ListBucket" in ops and "403 is never taken for a missing file" in ops


def test_iam_policy_grants_exactly_what_the_worker_calls(deployed: tuple[AppConfig, dict[str, str]]) -> None:
    """Every S3/SQS call of the worker is allowed, on the right resource, and nothing is '*'."""
    cfg, _ = deployed
    policy = json.loads(read(DEPLOY / "iam-policy.json"))
    grants: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "*" not in statement["Resource"] or statement["Resource"].endswith("/*")
        for action in actions:
            assert "*" not in action
            grants.setdefault(action, set()).add(statement["Resource"])
    calls: dict[str, str] = {}
    for module, service in (("s3.py", "s3"), ("sqs.py", "sqs")):
        for call in re.findall(r"_client\.([a-z_]+)\(", read(ROOT / "recording_storage" / module)):
            calls[call] = service
    assert {"receive_message", "delete_object", "send_message"} <= set(calls)
    for call, service in calls.items():
        if call in TOOLING_CALLS:
            continue
        action = CALL_ACTIONS.get(call) or OPTIONAL_CALLS.get(call) or (
            f"{service}:" + "".join(p.title() for p in call.split("_")))
        if call in OPTIONAL_CALLS:
            # ListBucket: the config bucket's prefix (fetch_config) and the recordings bucket (a
            # missing key must answer 404, not 403); nothing else is granted for these calls.
            assert grants.get(action, set()) <= {CONFIG_BUCKET_ARN, RECORDINGS_BUCKET_ARN}, call
            assert action in _ops_doc(), call
            continue
        assert action in grants, f"{call} needs {action}"
    queue_arn = f"arn:aws:sqs:REGION:ACCOUNT:{cfg.queue.name}"
    dlq_arn = f"arn:aws:sqs:REGION:ACCOUNT:{cfg.queue.dlq_name}"
    assert grants["sqs:ReceiveMessage"] == {queue_arn}
    # The DLQ for dead letters; the job queue for jobs held back (an instance's login refused).
    assert grants["sqs:SendMessage"] == {queue_arn, dlq_arn}
    assert grants["sqs:GetQueueAttributes"] == {queue_arn, dlq_arn}  # `check` reads both
    assert "s3:GetObjectVersion" in grants and "kms:Decrypt" in grants
    # Without ListBucket S3 answers a gone key with 403: a source the service itself already
    # deleted (redelivery after a crash, overlapping delivery) would be a false dead letter.
    assert RECORDINGS_BUCKET_ARN in grants["s3:ListBucket"]


# -- release hygiene --------------------------------------------------------------------------


def test_license_is_the_apache_2_0_text_pyproject_declares() -> None:
    """pyproject says Apache-2.0 and ships LICENSE; LICENSE is that licence's full text."""
    import tomllib

    project = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = read(ROOT / "LICENSE")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    sections = re.findall(r"^\s+(\d)\. ([A-Z][A-Za-z ]+)\.", text, flags=re.MULTILINE)
    assert [n for n, _ in sections] == [str(i) for i in range(1, 10)]
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 170


def test_version_lives_in_one_place() -> None:
    """pyproject reads the version from the package; nothing else spells it out but the changelog."""
    import importlib.metadata
    import tomllib

    from recording_storage import __version__

    pyproject = tomllib.loads(read(ROOT / "pyproject.toml"))
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "recording_storage.__version__"}
    assert importlib.metadata.version("recording-storage") == __version__
    changelog = read(ROOT / "CHANGELOG.md")
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, flags=re.MULTILINE)
    assert released and released[0] == __version__, "the newest CHANGELOG release is the package version"
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{__version__}]")
    image = _container()["image"]
    assert image.rpartition(":")[2] == __version__, "the example Deployment runs this version's image"


# -- container image --------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", read(ROOT / "Dockerfile"))
    instructions = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, args = line.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def _docker_context_includes(path: str, patterns: list[str]) -> bool:
    """Docker's rule for one path: the last pattern matching it or a parent directory decides."""
    import fnmatch

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            included = negate
    return included


def test_image_base_is_pinned_to_a_full_python_version() -> None:
    """A moving tag (python:3.11-slim) rebuilds onto another interpreter; the lock's Python fits."""
    import tomllib

    (base,) = [args for keyword, args in _dockerfile() if keyword == "FROM"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
    assert match, f"base image {base!r} is not pinned to a full version tag"
    requires = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]["requires-python"]
    assert requires == f">={match.group(1)}.{match.group(2)}"
    assert f"pip-compile with Python {match.group(1)}.{match.group(2)}" in read(ROOT / "requirements.lock")


def test_build_context_holds_only_what_the_image_copies() -> None:
    """.venv, .git, .local-stack (demo credentials), caches and bench results never reach the daemon."""
    patterns = [ln.strip() for ln in read(ROOT / ".dockerignore").splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    for secretish in (".venv/bin/python", ".git/config", ".local-stack/conf/instances.yml",
                      ".mypy_cache/3.11/x.json", ".ruff_cache/x", ".pytest_cache/v/x", ".hypothesis/x",
                      "bench/results.json", "tests/test_docs.py", ".env",
                      "recording_storage/__pycache__/cli.cpython-311.pyc",
                      "recording_storage.egg-info/PKG-INFO",
                      # the DRACOON emulator is a test double, not part of the production image
                      "dracoon_emulator/app.py", "dracoon_emulator/data/dracoon_request_schemas.json"):
        assert not _docker_context_includes(secretish, patterns), f"{secretish} is in the build context"
    copied = [args.split()[:-1] for keyword, args in _dockerfile() if keyword == "COPY"]
    sources = [src for srcs in copied for src in srcs if not src.startswith("--")]
    assert {"requirements.lock", "recording_storage", "conf", "entrypoint.sh", "LICENSE"} <= set(sources)
    for src in sources:
        probe = f"{src}/__init__.py" if (ROOT / src).is_dir() else src
        assert (ROOT / src).exists() and _docker_context_includes(probe, patterns), src


def test_image_installs_only_hash_checked_pins() -> None:
    """Dependencies come from requirements.lock with --require-hashes; the package adds none."""
    installs = [args for keyword, args in _dockerfile() if keyword == "RUN" and "pip install" in args]
    assert installs[0].startswith("pip install --require-hashes -r requirements.lock")
    for args in installs[1:]:
        assert "--no-deps" in args and "--no-build-isolation" in args, args


def test_lock_is_current_with_pyproject() -> None:
    """CI fails when pyproject's dependency lists changed after the last `make lock` (offline)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from tools.lockstamp import dependency_digest, recorded_digest

    lock_path = ROOT / "requirements.lock"
    assert recorded_digest(lock_path) == dependency_digest(ROOT / "pyproject.toml"), (
        "requirements.lock is stale: run `make lock` and commit it"
    )
    lock = read(lock_path)
    pins = {canonicalize_name(m.group(1)): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, flags=re.MULTILINE)}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 1)[1])
    for entry in entries:
        if "==" in entry.split("\n", 1)[0]:
            assert "--hash=sha256:" in entry, entry.split("\n", 1)[0]
    pyproject = tomllib.loads(read(ROOT / "pyproject.toml"))
    for spec in pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]:
        req = Requirement(spec)
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is not None and req.specifier.contains(pinned), f"{spec}: lock pins {pinned}"
    assert "make lock" in lock and "`make lock`" in _ops_doc()


def test_image_healthcheck_is_exec_form_on_livez() -> None:
    """/livez, not the deep check (a DRACOON outage must not mark containers unhealthy); no shell."""
    from recording_storage.config import HealthConfig

    (health,) = [args for keyword, args in _dockerfile() if keyword == "HEALTHCHECK"]
    command = json.loads(health.partition(" CMD ")[2])
    assert isinstance(command, list) and command[0] == "python"
    script = " ".join(command)
    assert "/livez" in script and "/healthcheck" not in script and "/readyz" not in script
    port = HealthConfig().port
    assert f"'{port}'" in script and f"EXPOSE {port}" in read(ROOT / "Dockerfile")
    assert "RECORDING_STORAGE__HEALTH__PORT" in script


def test_image_carries_oci_labels() -> None:
    import tomllib

    labels = " ".join(args for keyword, args in _dockerfile() if keyword == "LABEL")
    found = dict(re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=\"([^\"]*)\"", labels))
    assert {"title", "description", "licenses", "version", "revision"} <= {
        k.removeprefix("org.opencontainers.image.") for k in found
    }
    license_id = tomllib.loads(read(ROOT / "pyproject.toml"))["project"]["license"]
    assert found["org.opencontainers.image.licenses"] == license_id
    assert found["org.opencontainers.image.version"] == "${VERSION}"


def test_docs_warn_that_docker_stop_kills_after_10_seconds() -> None:
    """docker stop's default 10 s is below the drain time; the documented -t covers it."""
    section = _ops_doc().split("## Container image", 1)[1].split("\n## ", 1)[0]
    assert "10 s" in section and "docker stop" in section
    timeout = int(re.search(r"docker stop (?:-t|--time) (\d+)", section).group(1))  # type: ignore[union-attr]
    defaults = AppConfig()
    assert timeout >= defaults.queue.wait_seconds + defaults.workers.shutdown_grace + 10
    assert "docker build" in section and "--build-arg VERSION=" in section
