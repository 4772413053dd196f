"""Routing rules: globs and regexes, first match wins, templates, validation at load, and the
shipped Kazoo example (conf/routes.yml)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from recording_storage.config import AppConfig, load_config
from recording_storage.errors import ConfigError
from recording_storage.events import EventJob, InvalidRoute, ObjectRecord, Routes, compile_rules, load_routes
from recording_storage.events.loader import glob_to_regex
from recording_storage.instances import DracoonAccount
from recording_storage.targets import ExpirationPassed, validate_node_name

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 4, 22, 9, 15, 2, tzinfo=UTC)
ACCOUNT = "4b31dd1c5a0b3d38bea3b8d6fbf5d6b1"
ACC = DracoonAccount("meet.example.com", "https://dracoon.example.com", "bot", SecretStr("pw"),
                     SecretStr("epw"), parent_room_id=1)


def rule(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "r", "bucket": "rec", "instance": "meet.example.com",
                            "targets": [{"path": "Calls"}]}
    return {**base, **overrides}


def routes(*rules: dict[str, Any], prefixes: dict[str, str] | None = None) -> Routes:
    compiled, problems = compile_rules(list(rules), path="routing.rules")
    assert problems == []
    return Routes(tuple(compiled), prefixes or {})


def problems(*rules: dict[str, Any]) -> list[str]:
    return [f"{p.path}: {p.message}" for p in compile_rules(list(rules), path="routing.rules")[1]]


def rule_name(r: Routes, bucket: str, key: str) -> str | None:
    match = r.route(ObjectRecord(bucket, key))
    return match.rule.name if match else None


def job(r: Routes, key: str, *, bucket: str = "rec", when: datetime | None = NOW) -> EventJob:
    rec = ObjectRecord(bucket, key, event_time=when)
    match = r.route(rec)
    assert match is not None, key
    return EventJob(rec, match)


def test_glob_semantics() -> None:
    """'*' stays in a segment, '**' crosses them (also zero), '{name}' captures a segment part."""
    def m(glob: str, key: str) -> dict[str, str | Any] | None:
        found = re.fullmatch(glob_to_regex(glob), key)
        return found.groupdict() if found else None

    assert m("calls/*.mp3", "calls/a.mp3") == {} and m("calls/*.mp3", "calls/x/a.mp3") is None
    assert m("calls/**/*.mp3", "calls/a.mp3") == {} and m("calls/**/*.mp3", "calls/x/y/a.mp3") == {}
    assert m("{account}/{doc}/call_recording_{call}.{fmt}", "acc/d1/call_recording_a.b.mp3") == {
        "account": "acc", "doc": "d1", "call": "a.b", "fmt": "mp3"}
    assert m("a?c/{{x}}.txt", "abc/{x}.txt") == {} and m("a?c", "a/c") is None
    for bad in ("{1x}", "a{b", "a}b"):
        with pytest.raises(ValueError):
            glob_to_regex(bad)


def test_first_matching_rule_wins_bucket_globs_and_prefixes() -> None:
    """Order decides; bucket globs match whole names; a bucket's key prefix is stripped first."""
    r = routes(rule(name="wav", bucket="rec-*", key="**/*.wav", targets=["Wav"]),
               rule(name="any", bucket="rec-*", targets=["Any"]),
               prefixes={"rec-eu": "kazoo/"})
    assert rule_name(r, "rec-eu", "kazoo/x/a.wav") == "wav"
    assert rule_name(r, "rec-eu", "kazoo/x/a.mp3") == "any"
    assert r.route(ObjectRecord("rec-eu", "elsewhere/a.wav")) is None  # outside the prefix
    assert r.route(ObjectRecord("other", "a.wav")) is None
    assert job(r, "kazoo/x/a.wav", bucket="rec-eu").match.values["key"] == "x/a.wav"


def test_lookup_without_default_falls_through_and_default_and_url_decode_apply() -> None:
    """An unlisted account skips the rule; a later rule or the default catches it."""
    mapped = rule(name="mapped", key="{account_id}/{file}",
                  vars={"account": {"from": "{account_id}", "map": {ACCOUNT: "Acme GmbH"}},
                        "plain": {"from": "{file}", "url_decode": True}},
                  targets=["{account}"], file_name="{plain}")
    fallback = rule(name="fallback", key="{account_id}/{file}", targets=["Unknown/{account_id}"])
    r = routes(mapped, fallback)
    known = job(r, f"{ACCOUNT}/call_recording_a%40b.mp3")
    assert (known.match.rule.name, known.targets(ACC, NOW)[0].segments) == (
        "mapped", ("Acme GmbH",))
    assert known.file_name("", None) == "call_recording_a@b.mp3"
    other = job(r, "0000/x.mp3")
    assert other.match.rule.name == "fallback"
    assert other.targets(ACC, NOW)[0].segments == ("Unknown", "0000")


def test_builtins_timezone_and_captures_overriding_builtins() -> None:
    """Date parts come from the event time in the rule's zone; a matched capture replaces a built-in,
    an optional capture that did not match leaves it alone."""
    r = routes(rule(key_regex=r"(?:(?P<year>\d{4})/)?(?P<rest>.+)", timezone="Europe/Berlin",
                    targets=["{year}/{month}-{day} {hour}h"], file_name="{stem}.{ext}"))
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert job(r, "1999/a.WAV", when=late).targets(ACC, NOW)[0].segments == (
        "1999", "01-01 00h")
    plain = job(r, "dir/Call.Final.WAV", when=late)
    assert plain.targets(ACC, NOW)[0].segments == ("2027", "01-01 00h")
    assert plain.file_name("", None) == "Call.Final.wav"
    assert plain.match.values["dirname"] == "dir" and plain.match.values["basename"] == "Call.Final.WAV"


def test_values_are_sanitised_and_cannot_leave_the_parent_room() -> None:
    """A captured '..', '/' or forbidden character never becomes a path step or a bad name."""
    r = routes(rule(key_regex=r"(?P<a>[^|]+)\|(?P<b>.+)", targets=["In/{a}/{b}"], file_name="{b}"))
    segments = job(r, "..|x/../y:z").targets(ACC, NOW)[0].segments
    assert segments[0] == "In" and len(segments) == 3
    assert all(s not in (".", "..") and validate_node_name(s) == [] for s in segments)
    assert job(r, "a|-CON").file_name("", None) not in ("-CON", "CON")


def test_runtime_problems_name_the_rule() -> None:
    """A template variable without a value, or an instance that is not a host name, fails loudly."""
    r = routes(rule(key_regex=r"(?P<a>x)?(?P<rest>.*)", targets=["{a}"]),
               rule(name="bad-host", bucket="b2", key="{who}/*", instance="{who}.example.com"))
    with pytest.raises(InvalidRoute, match=r"rule 'r' .*\{a\} has no value"):
        job(r, "y").targets(ACC, NOW)
    with pytest.raises(InvalidRoute, match="rule 'bad-host'.*host name"):
        r.route(ObjectRecord("b2", "a b/x"))
    assert job(r, "Sales/x", bucket="b2").instance_domain == "sales.example.com"


def test_expirations_count_from_the_event_time_and_merge_duplicates() -> None:
    """Rule default and per-target expirations; one room twice keeps the longest; past is refused."""
    r = routes(rule(expiration="1 month", targets=[{"path": "A"}, {"path": "A", "expiration": "1 year"},
                                                   {"path": "B"}, {"path": "C", "expiration": ""}]))
    targets = {t.segments: t for t in job(r, "x").targets(ACC, NOW)}
    assert targets[("A",)].expire_at == datetime(2027, 4, 22, 9, 15, 2, tzinfo=UTC)
    assert targets[("B",)].expire_at == datetime(2026, 5, 22, 9, 15, 2, tzinfo=UTC)
    assert targets[("C",)].expire_at is None
    with pytest.raises(ExpirationPassed):
        job(r, "x").targets(ACC, NOW + timedelta(days=40))
    no_time = job(r, "x", when=None)
    assert no_time.targets(ACC, NOW)[1].expire_at == datetime(2026, 5, 22, 9, 15, 2, tzinfo=UTC)


def test_one_room_spelt_in_two_cases_is_one_target_keeping_no_expiry() -> None:
    """Routes use the same room identity as job messages: DRACOON ignores case."""
    r = routes(rule(targets=[{"path": "R2", "expiration": "10 days"}, {"path": "r2"}]))
    (target,) = job(r, "x").targets(ACC, NOW)
    assert target.segments == ("R2",) and target.expire_at is None


def test_long_file_names_keep_their_extension_and_notes_fit() -> None:
    """Names are cut to 150 characters before the extension; notes stay within 255 with the marker."""
    r = routes(rule(key="*"))
    long = job(r, "x" * 300 + ".mp3")
    name = long.file_name("", None)
    assert len(name) == 150 and name.endswith(".mp3")
    notes = long.notes(long.record.key, "rec", '"etag-1"')
    assert len(notes) <= 255 and notes.endswith("etag=etag-1") and "xxxx" not in notes
    pii = EventJob(long.record, long.match, include_pii=True).notes(long.record.key, "rec", "e")
    assert "Source: rec/xxx" in pii and len(pii) <= 255


@pytest.mark.parametrize(("bad", "expected"), [
    (rule(targets=[{"path": "Calls/{acount}"}], key="{account}/*"),
     "routing.rules[0].targets[0].path: rule 'r': segment 2: unknown variable {acount}"),
    (rule(key_regex="(?P<a>"), "routing.rules[0].key_regex: rule 'r': is not a valid regular expression"),
    (rule(key="a", key_regex="b"), "routing.rules[0].key_regex: rule 'r': give either key"),
    (rule(targets=[{"path": "a/../b"}]),
     "routing.rules[0].targets[0].path: rule 'r': segment 2: must not be '..'"),
    (rule(targets=[{"path": "Calls:{year}"}]), "outside variables"),
    (rule(targets=[]), "routing.rules[0].targets: rule 'r': must be a non-empty list"),
    (rule(targets=[{"path": "A", "expiration": "forever"}]), "routing.rules[0].targets[0].expiration"),
    (rule(instance="not a host"), "routing.rules[0].instance: rule 'r': must be a host name"),
    (rule(file_name="a/{basename}"), "routing.rules[0].file_name: rule 'r': must be a single name"),
    (rule(file_name="{stem"), "routing.rules[0].file_name: rule 'r': stray '{'"),
    (rule(colour="red"), "routing.rules[0].colour: rule 'r': unknown key"),
    (rule(vars={"instance": "x"}), "routing.rules[0].vars.instance"),
    (rule(key="{a}/*", vars={"a": "x"}), "routing.rules[0].vars.a: rule 'r': {a} is already defined"),
    (rule(vars={"x": "{y}", "y": "1"}), "routing.rules[0].vars.x: rule 'r': unknown variable {y}"),
    (rule(vars={"x": {"map": {}}}), "routing.rules[0].vars.x.from: rule 'r': is required"),
    (rule(timezone="Mars/Base"), "routing.rules[0].timezone"),
    (rule(name="a b"), "routing.rules[0].name: must be 1-64 letters"),
    ({"bucket": "rec"}, "routing.rules[0].name: is required"),
])
def test_validation_errors_name_the_rule_and_the_key(bad: dict[str, Any], expected: str) -> None:
    """Every mistake is found at load, with the key path and the rule's name."""
    found = problems(bad)
    assert any(expected in p for p in found), found


def test_rule_names_are_unique_and_all_problems_are_listed_at_once() -> None:
    """Two broken rules and a duplicate name: every problem in one ConfigError."""
    cfg = load_config(None, env={}, overrides={"routing": {"rules": [
        rule(), rule(targets=[{"path": "{nope}"}]), rule(name="s", instance="")]}})
    with pytest.raises(ConfigError) as info:
        load_routes(cfg, env={})
    text = str(info.value)
    assert "used twice" in text and "unknown variable {nope}" in text
    assert "instance: rule 's': is required" in text


def test_file_rules_follow_inline_rules_and_expand_the_environment(tmp_path: Path) -> None:
    """Inline rules are tried first; the file may use ${NAME} and x-* anchors; bad files are named."""
    path = tmp_path / "routes.yml"
    path.write_text("x-rooms: &rooms [Files]\nrules:\n  - name: f\n    bucket: ${BUCKET}\n"
                    "    instance: meet.example.com\n    targets: *rooms\n", encoding="utf-8")
    cfg = load_config(None, env={}, overrides={"routing": {"file": str(path), "rules": [
        rule(name="inline", key="special/*", bucket="*")]}})
    r = load_routes(cfg, env={"BUCKET": "rec"})
    assert [x.name for x in r.rules] == ["inline", "f"] and r.buckets == ["rec"]
    with pytest.raises(ConfigError, match=r"rules\[0\].bucket: environment variable BUCKET"):
        load_routes(cfg, env={})
    path.write_text("rules: []\nextra: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="extra: unknown top-level key"):
        load_routes(cfg, env={})
    path.unlink()
    with pytest.raises(ConfigError, match="routing file not found"):
        load_routes(cfg, env={})


def _kazoo(env: dict[str, str] | None = None) -> tuple[AppConfig, Routes]:
    cfg = load_config(None, env={}, overrides={
        "routing": {"file": str(ROOT / "conf" / "routes.yml")},
        "s3": {"buckets": {"kazoo-recordings": {"key_prefix": "pbx1"}}}})
    return cfg, load_routes(cfg, env=env or {})


MODB = f"account%2F{ACCOUNT[:2]}%2F{ACCOUNT[2:4]}%2F{ACCOUNT[4:]}-202604"
HEX = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("key", "rule_name", "room", "name", "months"), [
    (f"pbx1/call_recording/{MODB}/202604-{HEX}_{HEX}.mp3", "kazoo-call-recordings",
     ("Kazoo", "Acme GmbH", "Call recordings", "2026-04"), f"2026-04-22 11-15 call {HEX}.mp3", 12),
    (f"pbx1/call_recording/{MODB}/202604-5e1d_call_recording_a1b2%40pbx.wav", "kazoo-call-recordings",
     ("Kazoo", "Acme GmbH", "Call recordings", "2026-04"),
     "2026-04-22 11-15 call call_recording_a1b2@pbx.wav", 12),
    (f"pbx1/mailbox_message/{MODB}/202604-5e1d_{HEX}.wav", "kazoo-voicemails",
     ("Kazoo", "Acme GmbH", "Voicemails", "2026-04"), f"2026-04-22 11-15 voicemail {HEX}.wav", 3),
    ("pbx1/fax/account%2Fab%2Fcd%2Fef0123456789abcdef0123456789/fax-1_inbound.tiff", "kazoo-faxes",
     ("Kazoo", "Account abcdef0123456789abcdef0123456789", "Faxes", "2026"),
     "2026-04-22 11-15 fax inbound.tiff", 120),
])
def test_shipped_kazoo_example_routes_each_document_type(
    key: str, rule_name: str, room: tuple[str, ...], name: str, months: int
) -> None:
    """conf/routes.yml: Kazoo's S3 layout with a folder per type; account -> room, type -> sub-room
    and retention, URL-encoded attachment names decoded."""
    _, r = _kazoo()
    j = job(r, key, bucket="kazoo-recordings")
    (target,) = j.targets(ACC, NOW)
    assert (j.match.rule.name, target.segments, j.file_name(key, None)) == (rule_name, room, name)
    assert j.instance_domain == "pbx.example.com"
    year, month = divmod(NOW.month - 1 + months, 12)
    assert target.expire_at == NOW.replace(year=NOW.year + year, month=month + 1)


def test_shipped_kazoo_example_leaves_other_objects_and_honours_the_environment() -> None:
    """Keys outside the layout or prefix match nothing; ${KAZOO_*} pick bucket and instance."""
    cfg, r = _kazoo()
    for key in (f"call_recording/{MODB}/202604-5e1d_{HEX}.mp3",  # outside the key prefix
                f"pbx1/{MODB}/202604-5e1d_{HEX}.mp3",  # no type folder
                f"pbx1/media/{MODB}/202604-5e1d_{HEX}.mp3", "pbx1/readme.md"):
        assert r.route(ObjectRecord("kazoo-recordings", key, event_time=NOW)) is None, key
    field_list = job(r, f"call_recording/{ACCOUNT}/202604-aa/{HEX}.mp3", bucket="kazoo-attachments")
    assert field_list.targets(ACC, NOW)[0].segments[1] == "Acme GmbH"
    assert field_list.file_name("", None) == f"2026-04-22 11-15 call {HEX}.mp3"
    env_routes = load_routes(cfg, env={"KAZOO_BUCKET": "b1", "KAZOO_INSTANCE": "Meet.Example.com"})
    assert env_routes.buckets == ["b1", "kazoo-attachments"]
    env_job = job(env_routes, f"fax/{MODB}/d_x.pdf", bucket="b1")  # b1 has no key prefix
    assert env_job.instance_domain == "meet.example.com"
