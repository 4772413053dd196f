"""docs/s3-events.md stays true to the code: its rule, event and source examples work as described."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import SecretStr

from recording_storage.config import load_config
from recording_storage.events import (
    EventJob,
    ObjectRecord,
    Routes,
    compile_rules,
    load_routes,
)
from recording_storage.instances import DracoonAccount
from recording_storage.intake import decode_message

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "s3-events.md").read_text(encoding="utf-8")
NOW = datetime(2026, 11, 20, 9, 15, 2, tzinfo=UTC)
ACC = DracoonAccount("pbx.example.com", "https://d.example.com", "bot", SecretStr("pw"), SecretStr("epw"), 1)


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC, flags=re.MULTILINE | re.DOTALL)


def test_rule_example_compiles_and_routes_as_described() -> None:
    """The annotated rule: glob captures, a lookup with default, rule and target retention."""
    (text,) = [b for b in blocks("yaml") if b.startswith("rules:")]
    rules, problems = compile_rules(yaml.safe_load(text)["rules"], path="rules")
    assert problems == []
    routes = Routes(tuple(rules))
    record = ObjectRecord("recordings-eu", "acme/2025/q4/call 1.wav", event_time=NOW)
    match = routes.route(record)
    assert match is not None
    job = EventJob(record, match)
    targets = {t.segments: t.expiration_text for t in job.targets(ACC, NOW)}
    assert targets == {("Recordings", "Acme GmbH", "2025-11"): "1 year", ("Archive", "Acme GmbH"): "10 years"}
    assert job.file_name(record.key, None) == "2025-11-20 10-15 call 1.wav"  # captured year, Berlin time
    other = routes.route(ObjectRecord("recordings-eu", "zeta/2025/x.wav", event_time=NOW))
    assert other is not None and other.values["room"] == "Tenant zeta"
    assert routes.route(ObjectRecord("other-bucket", "acme/2025/x.wav")) is None


def test_event_example_decodes_into_a_kazoo_call_recording_job() -> None:
    """The sample event, with the shipped Kazoo rules and the documented key prefix."""
    (event,) = blocks("json")
    cfg = load_config(None, env={}, overrides={
        "routing": {"file": str(ROOT / "conf" / "routes.yml")},
        "s3": {"buckets": {"kazoo-recordings": {"key_prefix": "pbx1"}}}})
    (job,) = decode_message(event, load_routes(cfg, env={}))
    assert isinstance(job, EventJob)
    assert job.match.rule.name == "kazoo-call-recordings"
    assert job.keys[0].startswith("pbx1/call_recording/account%2F4b%2F31%2Fdd1c")
    assert job.targets(ACC, NOW)[0].segments == ("Kazoo", "Acme GmbH", "Call recordings", "2026-11")


def test_source_example_is_a_valid_bucket_entry() -> None:
    """The s3.buckets example loads and composes the endpoint from host, port and scheme."""
    (text,) = [b for b in blocks("yaml") if b.startswith("s3:")]
    cfg = load_config(None, env={}, overrides=yaml.safe_load(text.replace("${KAZOO_S3_KEY}", "k")
                                                              .replace("${KAZOO_S3_SECRET}", "s")))
    source = cfg.s3.buckets["kazoo-recordings"]
    assert (source.endpoint, source.prefix, source.addressing_style) == (
        "https://minio.pbx.example.net:9000", "pbx1/", "path")
