"""Hostile and malformed job messages: the parser's contract, and the running service's.

Parser level (hypothesis): whatever the body, ``parse_job_message`` returns a ``JobMessage`` or
raises ``InvalidJobMessage``, within a second; and whatever it accepts, target resolution and file
naming yield only names DRACOON accepts, none of them a way out of the parent room.

Service level (moto + emulator): a batch of bad messages between good ones. The process keeps
running, each bad one is dead-lettered with a reason code and reason, the good ones land, and the
emulator's node tree proves nothing was created outside the instance's parent room.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from recording_storage import cli
from recording_storage.config import DracoonConfig
from recording_storage.dracoon import DracoonClient, DracoonPermanentError, DracoonTransientError, NotFound
from recording_storage.errors import InvalidJobMessage, PermanentError
from recording_storage.events import Routes, compile_rules
from recording_storage.instances import TargetRule, TargetSpec
from recording_storage.intake import decode_message
from recording_storage.jobs import JobMessage, parse_job_message
from recording_storage.targets import (
    MAX_NOTES_LENGTH,
    file_name_for,
    resolve_targets,
    upload_notes,
    validate_node_name,
)
from tests.fixtures.accounts import offline_account
from tests.fixtures.dracoon import DracoonEnv
from tests.fixtures.hostile import (
    HOSTILE_SEGMENTS,
    GarbageProxy,
    Rewrite,
    base_job,
    dlq_all,
    escaped_nodes,
    hostile_jobs,
    hostile_text,
    point_instance_at,
)
from tests.fixtures.service import Stack

NOW = datetime(2026, 11, 21, tzinfo=UTC)
ACCOUNT = offline_account(
    TargetRule(
        "*any*", (TargetSpec("$instance/$meetingType/$year", "1 year"), TargetSpec("Flat/$meetingId"))
    ),
    login="svc",
    encryption_password=SecretStr("pw"),
)
CONTENT_TYPES = (None, "video/mp4", "application/x-evil; a=../..", "", "audio/wav")


def check_body(body: str | bytes) -> JobMessage | None:
    """The property every body must satisfy; returns the job when it parsed."""
    started = time.perf_counter()
    try:
        job = parse_job_message(body)
    except InvalidJobMessage as exc:
        assert exc.code == "invalid_message"
        assert exc.problems and len(str(exc)) < 20_000
        job = None
    else:
        assert isinstance(job, JobMessage)
        check_job_is_contained(job)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    return job


def check_job_is_contained(job: JobMessage) -> None:
    """Every room segment and file name an accepted job can produce is a plain DRACOON name."""
    try:
        targets = resolve_targets(job, ACCOUNT, now=NOW)
    except PermanentError:
        return  # InvalidJobMessage, NoTargets, ExpirationPassed: dead-lettered with a reason
    for target in targets:
        for segment in target.segments:
            # The DRACOON client strips each segment before sending it; judge what it sends.
            sent = segment.strip()
            assert sent not in ("", ".", ".."), (target.segments, segment)
            assert "/" not in segment and "\\" not in segment
            assert validate_node_name(sent) == [], (segment, validate_node_name(sent))
    for key in job.keys[:3]:
        for content_type in CONTENT_TYPES:
            name = file_name_for(job, key, content_type, key_count=len(job.keys))
            assert validate_node_name(name) == [], (name, validate_node_name(name))
        notes = upload_notes(job, key, job.bucket, '"etag"')
        assert len(notes) <= MAX_NOTES_LENGTH


# --- parser level: properties -------------------------------------------------------------------

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(hostile_jobs())
def test_hostile_fields_parse_or_fail_cleanly_and_never_escape(job: dict[str, Any]) -> None:
    """Traversal, reserved names, unicode, wrong types and absurd values in any field: a contained
    job or InvalidJobMessage, in under a second."""
    check_body(json.dumps(job))


@FUZZ
@given(st.lists(st.sampled_from(HOSTILE_SEGMENTS), min_size=1, max_size=5), st.booleans())
def test_traversal_paths_in_message_targets(segments: list[str], leading_slash: bool) -> None:
    """Any combination of hostile segments as a message target path."""
    path = ("/" if leading_slash else "") + "/".join(segments)
    job = base_job()
    job["storage"]["extra"]["dracoon"]["targets"] = [{"path": path, "expiration": "1 year"}]
    check_body(json.dumps(job))


@FUZZ
@given(hostile_text(max_size=40), hostile_text(max_size=40))
def test_hostile_meeting_data_in_instance_templates(type_name: str, email: str) -> None:
    """Templates expand meeting data chosen by the sender; sanitising keeps them single segments."""
    job = base_job()
    job["storage"]["extra"]["dracoon"]["targets"] = None
    job["meeting"]["type"]["name"] = type_name
    job["meeting"]["user"]["email"] = email
    check_body(json.dumps(job))


@FUZZ
@given(st.binary(max_size=512) | st.text(max_size=512))
def test_random_bodies(body: bytes | str) -> None:
    check_body(body)


@FUZZ
@given(st.recursive(st.none() | st.integers() | st.text(max_size=4), lambda c: st.lists(c) | st.dictionaries(
    st.sampled_from(["storage", "extra", "aws.s3", "keys", "meeting", "instance", "Records", "x"]), c),
    max_leaves=40))
def test_random_json_with_plausible_keys(value: object) -> None:
    check_body(json.dumps(value))


# --- S3 event notifications on the same queue (recording_storage.events) -------------------------

EVENT_ROUTES = Routes(tuple(compile_rules(
    [{"name": "calls", "bucket": "rec", "key": "calls/{user}/**", "instance": "meet.example.com",
      "targets": [{"path": "Users/{user}", "expiration": "1 year"}, {"path": "All"}]}],
    path="routing.rules")[0]))


def _event(bucket: str, keys: list[str], encoded: bool) -> dict[str, Any]:
    return {"Records": [
        {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "eventTime": "2026-11-20T10:00:00Z",
         "s3": {"bucket": {"name": bucket},
                "object": {"key": key if encoded else quote_plus(key, safe="/"), "size": 10, "eTag": "e"}}}
        for key in keys]}


def check_decoded(body: str) -> None:
    """``decode_message``: jobs (possibly none) or a PermanentError; every job stays contained."""
    started = time.perf_counter()
    try:
        jobs = decode_message(body, EVENT_ROUTES)
    except PermanentError as exc:
        assert exc.code and str(exc)
        jobs = []
    for job in jobs:
        try:
            targets = job.targets(ACCOUNT, NOW)
        except PermanentError:
            continue
        for target in targets:
            for segment in target.segments:
                assert segment.strip() not in ("", ".", "..") and validate_node_name(segment.strip()) == []
        for key in job.keys[:3]:  # naming is O(keys) per key: a 1000-key job costs ~3 s in total
            try:
                name = job.file_name(key, None)
            except PermanentError:
                continue
            assert validate_node_name(name) == [], (key, name)
            assert len(job.notes(key, job.bucket, "etag")) <= MAX_NOTES_LENGTH
    assert time.perf_counter() - started < 1.0


@FUZZ
@given(st.lists(st.sampled_from(["calls/", "calls/x/", "other/"]).flatmap(
    lambda head: hostile_text(max_size=30).map(lambda tail: head + tail)), min_size=1, max_size=5),
    st.sampled_from(["rec", "other", "..", "rec/..", ""]), st.booleans(), st.booleans())
def test_hostile_s3_events(keys: list[str], bucket: str, encoded: bool, wrap_in_sns: bool) -> None:
    """S3 events with traversal keys (raw and URL-encoded), for routed and unrouted buckets, also
    inside SNS envelopes: jobs whose rooms and file names stay plain names, or a permanent error."""
    # Lone surrogates cannot be URL-encoded by the test itself; the next test sends them raw.
    keys = [k for k in keys if not any("\ud800" <= c <= "\udfff" for c in k)] or ["calls/x/y.mp4"]
    event = _event(bucket, keys, encoded)
    body = json.dumps({"Type": "Notification", "Message": json.dumps(event)} if wrap_in_sns else event)
    check_decoded(body)


@pytest.mark.parametrize("key", ["calls/\udc80.mp4", "calls/x/\udc80.mp4"], ids=["unrouted", "routed"])
def test_s3_event_key_with_lone_surrogate_is_a_permanent_error(key: str) -> None:
    """A key that is not valid Unicode is an invalid event, not an unexpected exception."""
    check_decoded(json.dumps(_event("rec", [key], encoded=True)))


@FUZZ
@given(hostile_jobs() | st.recursive(st.text(max_size=5), lambda c: st.lists(c, max_size=3)))
def test_decoder_accepts_job_messages_with_the_same_guarantees(value: object) -> None:
    check_decoded(json.dumps(value))


# --- parser level: the extremes, one by one -----------------------------------------------------


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


@pytest.mark.parametrize(
    "body",
    [
        _nested(10_000),
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        json.dumps(base_job()).replace('"Sales call"', _nested(10_000)),
        json.dumps(base_job()).replace('"Sales call"', _nested(900)),  # deep, yet within json's limit
        json.dumps(base_job()).replace('"rec/call.mp4"', _nested(5_000, "[", "]")),
    ],
    ids=["list-10k", "object-10k", "field-10k", "field-900", "key-5k"],
)
def test_deep_nesting_is_rejected_without_recursion_error(body: str) -> None:
    """10,000 levels of nesting anywhere: a clean InvalidJobMessage, never RecursionError."""
    assert check_body(body) is None


def _s3(job: dict[str, Any]) -> dict[str, Any]:
    return job["storage"]["extra"]["aws.s3"]  # type: ignore[no-any-return]


def _dracoon(job: dict[str, Any]) -> dict[str, Any]:
    return job["storage"]["extra"]["dracoon"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        (lambda j: _s3(j).update(keys=[f"k/{i}" for i in range(1000)]), True),
        (lambda j: _s3(j).update(keys=[f"k/{i}" for i in range(1001)]), False),
        (lambda j: _s3(j).update(keys=[[f"k/{i}" for i in range(6000)]]), False),
        (lambda j: _dracoon(j).update(targets=[{"path": f"T{i}"} for i in range(50)]), True),
        (lambda j: _dracoon(j).update(targets=[{"path": "T"}] * 5000), False),
        (lambda j: j.update({f"unknown{i}": i for i in range(10_000)}), True),
        (lambda j: _s3(j).update(keys=["x" * 1025]), False),
        (lambda j: j["meeting"].update(description="d" * 200_000), False),
        (lambda j: j["meeting"].update(id=2**64), False),
        (lambda j: j["meeting"].update(id=-1), False),
        (lambda j: j["meeting"].update(date="9999-12-31T23:59:59+14:00"), False),
        (lambda j: j["meeting"].update(date="2026-11-20T10:15:00"), False),
        (lambda j: _dracoon(j).update(targets=[{"path": "A", "expiration": "100 years"}]), True),
        (lambda j: _dracoon(j).update(targets=[{"path": "A", "expiration": "101 years"}]), False),
        (lambda j: _dracoon(j).update(targets=[{"path": "A", "expiration": "9" * 5000}]), False),
        (lambda j: j["instance"].update(domain="../../evil"), False),
        (lambda j: j["instance"].update(domain="a" * 10_000), False),
    ],
    ids=[
        "1000-keys", "1001-keys", "6000-nested-keys", "50-targets", "5000-targets", "10k-unknown-fields",
        "key-1025-bytes", "description-200k", "id-2^64", "id-negative", "date-year-9999", "date-no-offset",
        "exp-100y", "exp-101y", "exp-5000-digits", "domain-traversal", "domain-huge",
    ],
)
def test_size_and_range_limits(change: Any, accepted: bool) -> None:
    """Thousands of keys, targets or fields and absurd numbers hit a limit, quickly and cleanly."""
    job = base_job()
    change(job)
    assert (check_body(json.dumps(job)) is not None) is accepted


@pytest.mark.parametrize(
    "path",
    ["..", "../x", "x/..", "x/../../y", ".", "a/./b", "a\\..\\b", "CON", "x/lpt1.mp4", "-x", "x.", "a//b",
     "\u2003..\u2003", "x/\u3000.\u3000/y", "\u00a0-x", "\u2003CON", "x" * 151, "$nope", "a\x00b"],
)
def test_unsafe_literal_target_paths_are_rejected_by_the_parser(path: str) -> None:
    """Traversal, reserved and malformed segments are refused with the target's field path,
    including ones that only become ``..`` or reserved once white space is trimmed."""
    job = base_job()
    job["storage"]["extra"]["dracoon"]["targets"] = [{"path": path}]
    with pytest.raises(InvalidJobMessage) as info:
        parse_job_message(json.dumps(job))
    assert {p.path for p in info.value.problems} == {"storage.extra.dracoon.targets[0].path"}


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/abs/path", ("abs", "path")),
        ("a%2F..%2Fb", ("a%2F..%2Fb",)),
        ("%2e%2e", ("%2e%2e",)),
        ("", ()),
        ("/", ()),
        ("Über/会议/🎥", ("Über", "会议", "🎥")),
    ],
)
def test_lookalike_paths_stay_literal_and_relative(path: str, segments: tuple[str, ...]) -> None:
    """Absolute paths are relative to the parent room; encoded slashes and dots are just text."""
    job = base_job()
    job["storage"]["extra"]["dracoon"]["targets"] = [{"path": path}]
    parsed = check_body(json.dumps(job))
    assert parsed is not None
    (target,) = resolve_targets(parsed, ACCOUNT, now=NOW)
    assert target.segments == segments


@pytest.mark.parametrize("bucket", [".", "..", ".hidden", "a..b", "b.", "-b", "b/..", "b%2F..", "b\\c", " b"])
def test_bucket_names_that_could_address_another_bucket_are_rejected(bucket: str) -> None:
    """A bucket of ".." with key "victim/rec.mp4" is the path-style request "/../victim/rec.mp4":
    a normalising proxy would serve (and the transfer then delete) another bucket's object."""
    job = base_job(bucket, ["victim-bucket/rec.mp4"])
    with pytest.raises(InvalidJobMessage) as info:
        parse_job_message(json.dumps(job))
    assert {p.path for p in info.value.problems} == {"storage.extra.aws.s3.bucket"}


def test_non_json_and_envelopes() -> None:
    """Bodies that are not job messages at all are named for what they are."""
    s3_event = {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}, "object": {}}}]}
    sns = {"Type": "Notification", "Message": json.dumps(base_job())}
    cases = {
        "<xml/>": "not valid JSON",
        "\ufeff": "is empty",
        '{"a": NaN}': "NaN",
        json.dumps(s3_event): "S3 event",
        json.dumps(sns): "SNS",
        json.dumps(base_job())[:-1]: "not valid JSON",
    }
    for body, reason in cases.items():
        with pytest.raises(InvalidJobMessage, match=reason):
            parse_job_message(body)


# --- the running service: bad messages between good ones ---------------------------------------


def _job(stack: Stack, key: str = "absent/x.mp4", **changes: Any) -> dict[str, Any]:
    return base_job(stack.bucket, [key], **changes)


def _with(job: dict[str, Any], *path_and_value: Any) -> str:
    *path, value = path_and_value
    node: Any = job
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return json.dumps(job)


def _target(stack: Stack, path: str, expiration: str = "", **meeting: Any) -> str:
    job = _job(stack)
    job["meeting"].update(meeting)
    return _with(job, "storage", "extra", "dracoon", "targets", [{"path": path, "expiration": expiration}])


def bad_messages(stack: Stack) -> list[tuple[str, str, str | None]]:
    """(label, body, expected rs-reason-code or None for "any"), ~30 kinds of bad."""
    t = ("storage", "extra", "dracoon", "targets")
    s3 = ("storage", "extra", "aws.s3")
    s3_event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": "not-routed-anywhere"}, "object": {"key": "r.mp4"}}}]}
    return [
        ("not-json", "this is not json", "invalid_message"),
        ("blank", "   ", "invalid_message"),
        ("xml", "<job><id>1</id></job>", "invalid_message"),
        ("null", "null", "invalid_message"),
        ("nan", '{"storage": NaN}', "invalid_message"),
        ("nest-list-10k", _nested(10_000), "invalid_message"),
        ("nest-obj-10k", '{"a":' * 10_000 + "1" + "}" * 10_000, "invalid_message"),
        ("nest-field-900", json.dumps(_job(stack)).replace('"Sales call"', _nested(900)), "invalid_message"),
        ("lone-surrogate", json.dumps(_job(stack, "k\udc80.mp4")), "invalid_message"),
        ("dotdot", _target(stack, "../../etc"), "invalid_message"),
        ("backslash", _target(stack, "a\\..\\b"), "invalid_message"),
        ("reserved", _target(stack, "Calls/CON"), "invalid_message"),
        ("reserved-ext", _target(stack, "LPT1.txt"), "invalid_message"),
        ("dash", _target(stack, "-rf"), "invalid_message"),
        ("emspace-dotdot", _target(stack, "x/\u2003..\u2003"), "invalid_message"),
        ("exp-huge", _target(stack, "A", "99999 years"), "invalid_message"),
        ("exp-negative", _target(stack, "A", "-1 day"), "invalid_message"),
        ("exp-passed", _target(stack, "A", "1 day", date="2017-09-11T20:24:43+00:00"), "expiration_passed"),
        ("keys-1001", _with(_job(stack), *s3, "keys", [f"k/{i}" for i in range(1001)]), "invalid_message"),
        ("targets-51", _with(_job(stack), *t, [{"path": f"T{i}"} for i in range(51)]), "invalid_message"),
        ("no-targets", _with(_job(stack), *t, []), "no_targets"),
        ("key-traversal-absent", json.dumps(_job(stack, "../../../etc/passwd")), "source_missing"),
        ("key-absolute-absent", json.dumps(_job(stack, "/etc/shadow")), "source_missing"),
        ("bucket-dotdot", _with(_job(stack, f"{stack.bucket}/g/plain.mp4"), *s3, "bucket", ".."),
         "invalid_message"),
        ("bucket-missing", _with(_job(stack), *s3, "bucket", "no-such-bucket-here"), "source_missing"),
        ("domain-traversal", _with(_job(stack), "instance", "domain", "../evil"), "invalid_message"),
        ("domain-unknown", _with(_job(stack), "instance", "domain", "evil.example.org"), "unknown_instance"),
        ("meeting-id-string", _with(_job(stack), "meeting", "id", "42"), "invalid_message"),
        ("date-no-offset", _with(_job(stack), "meeting", "date", "2026-11-20T10:15:00"), "invalid_message"),
        ("storage-list", _with(_job(stack), "storage", []), "invalid_message"),
        ("storage-type", _with(_job(stack), "storage", "type", "s3"), "invalid_message"),
        # An SNS-wrapped job is unwrapped when S3 event support is on; its source is absent.
        ("sns", json.dumps({"Type": "Notification", "Message": json.dumps(_job(stack))}), None),
        ("s3-event", json.dumps(s3_event), None),
    ]


def good_messages(stack: Stack) -> list[tuple[str, str, tuple[str, ...], bytes]]:
    """(key, body, room path expected below the parent room, content): hostile-looking but valid."""
    weird_type = "../../..//Calls"
    cases = [
        ("g/plain.mp4", "Calls", {}),
        ("g/abs.mp4", "/abs/path", {}),
        ("g/pct.mp4", "a%2F..%2Fb", {}),
        ("g/uni.mp4", "Über/会议/🎥", {}),
        ("g/parent.mp4", "", {}),
        ("g/type.mp4", "$meetingType", {"type": {"name": weird_type, "id": 14}}),
        ("x/../y.mp4", "Dots", {}),
    ]
    out = []
    for i, (key, path, meeting) in enumerate(cases):
        job = _job(stack, key)
        job["meeting"].update(meeting, id=1000 + i)
        job["storage"]["extra"]["dracoon"]["targets"] = [{"path": path}]
        room = resolve_targets(parse_job_message(json.dumps(job)), ACCOUNT, now=NOW)[0].segments
        out.append((key, json.dumps(job), room, f"content of {key}".encode()))
    many_fields = _job(stack, "g/fields.mp4")
    many_fields.update({f"unknown{i}": i for i in range(10_000)})
    out.append(("g/fields.mp4", json.dumps(many_fields), ("Calls",), b"ten thousand fields"))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("stack_overrides", [{"workers": {"count": 4}}])
async def test_bad_messages_are_dead_lettered_good_ones_land_nothing_escapes(stack: Stack) -> None:
    """~30 kinds of bad message between hostile-looking good ones: no crash, every bad one in the
    DLQ with a reason code and reason, every good one landed once, nothing outside the parent room."""
    seeded = set(stack.dracoon.state.nodes)
    await stack.put("y.mp4", b"decoy: must survive")  # what "x/../y.mp4" would mean if normalised
    bad = bad_messages(stack)
    good = good_messages(stack)
    for key, _, _, data in good:
        await stack.put(key, data)
    sent: dict[str, str] = {}
    for i in range(max(len(bad), len(good))):
        if i < len(bad):
            sent[await stack.send(bad[i][1])] = bad[i][0]
        if i < len(good):
            await stack.send(good[i][1])

    with structlog.testing.capture_logs() as logs:
        stats = await stack.drain()

    assert stats.outcomes == {"success": len(good), "permanent": len(bad)}
    assert not [e for e in logs if e["event"] == "job_crashed"]
    assert await stack.queue_counts() == (0, 0, len(bad))
    expected = {label: code for label, _, code in bad}
    dead = await dlq_all(stack.config)
    codes = {}
    for msg in dead:
        attrs = msg["MessageAttributes"]
        label = sent[attrs["rs-source-message-id"]["StringValue"]]
        codes[label] = attrs["rs-reason-code"]["StringValue"]
        reason = attrs["rs-reason"]["StringValue"]
        assert 10 < len(reason) <= 1024, (label, reason)
    assert set(codes) == set(expected)
    for label, code in expected.items():
        assert codes[label] == (code or codes[label]) and codes[label], (label, codes[label])

    for key, _, room, data in good:
        files = [f for f in stack.files(*room) if stack.decrypt(f, stack.dracoon.service_user) == data]
        assert len(files) == 1, (key, room)
        assert not await stack.exists(key)
    assert await stack.exists("y.mp4")
    assert escaped_nodes(stack.dracoon.state, stack.dracoon.parent_room_id, seeded) == []


# --- bad DRACOON answers: malformed, unexpected, unusable ---------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def _json_edit(edit: Any) -> Any:
    """A body transform: decode the real JSON answer, let ``edit`` change it, encode it again."""

    def transform(body: bytes) -> bytes:
        data = json.loads(body)
        edit(data)
        return json.dumps(data).encode()

    return transform


def _add_fields(data: Any) -> None:
    for item in data if isinstance(data, list) else data.get("items", [data]):
        item.update({"unexpected": {"nested": [1, 2, {"x": None}]}, "__proto__": "x", "id_": "str"})


def _bump_version(data: Any) -> None:
    for pair in data:
        pair["publicKeyContainer"]["version"] = pair["privateKeyContainer"]["version"] = "RSA-8192"


def _break_pem(data: Any) -> None:
    for pair in data:
        pair["privateKeyContainer"]["privateKey"] = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nnot base64!\n"


TOKEN, ACCOUNT_PATH, KEYPAIRS, NODES = "/oauth/token$", "/user/account$", "/user/account/keypairs$", "/nodes$"
CLIENT_CASES = [
    ("token-html", Rewrite("POST", TOKEN, b"<html>proxy error</html>", content_type="text/html"),
     "ping", DracoonTransientError, "bad_response"),
    ("token-no-access-token", Rewrite("POST", TOKEN, b'{"token_type": "bearer"}'),
     "ping", DracoonTransientError, "bad_response"),
    ("token-array", Rewrite("POST", TOKEN, b"[]"), "ping", DracoonTransientError, "bad_response"),
    ("token-deep", Rewrite("POST", TOKEN, DEEP), "ping", DracoonTransientError, "bad_response"),
    ("account-truncated", Rewrite("GET", ACCOUNT_PATH, b'{"id": 1, "login": "sv'),
     "ping", DracoonTransientError, "bad_response"),
    ("account-deep", Rewrite("GET", ACCOUNT_PATH, DEEP), "ping", DracoonTransientError, "bad_response"),
    ("account-huge-number", Rewrite("GET", ACCOUNT_PATH, b'{"id": ' + b"9" * 5000 + b"}"),
     "ping", DracoonTransientError, "bad_response"),
    ("keypairs-not-json", Rewrite("GET", KEYPAIRS, b"\xff\xfe\x00garbage"),
     "keys", DracoonTransientError, "bad_response"),
    ("keypairs-object", Rewrite("GET", KEYPAIRS, b'{"items": []}'),
     "keys", DracoonPermanentError, "bad_response"),
    ("keypairs-wrong-version", Rewrite("GET", KEYPAIRS, _json_edit(_bump_version)),
     "keys", NotFound, "no_key_pair"),
    ("keypairs-broken-pem", Rewrite("GET", KEYPAIRS, _json_edit(_break_pem)),
     "keys", NotFound, "no_key_pair"),
    ("nodes-items-string", Rewrite("GET", NODES, b'{"items": "x"}'),
     "room", DracoonPermanentError, "bad_response"),
    ("nodes-node-without-type", Rewrite("GET", NODES, b'{"items": [{"id": 1}], "range": {"total": 1}}'),
     "room", DracoonPermanentError, "bad_response"),
    ("nodes-deep", Rewrite("GET", NODES, DEEP), "room", DracoonTransientError, "bad_response"),
    ("error-body-deep", Rewrite("GET", NODES, DEEP, status=500),
     "room", DracoonTransientError, "server_error"),
    ("upload-empty", Rewrite("POST", "/nodes/files/uploads$", b"{}"), "upload", DracoonPermanentError,
     "bad_response"),
]


async def _call(client: DracoonClient, what: str, parent_room_id: int) -> object:
    if what == "ping":
        return await client.ping_authenticated()
    if what == "keys":
        return await client.get_key_pair()
    if what == "room":
        return await client.ensure_room_path(parent_room_id, ["Calls"])
    upload = await client.open_upload(parent_room_id, "x.mp4", 1, expire_at=None)
    await upload.cancel()
    return upload


@pytest.mark.integration
@pytest.mark.parametrize(("rule", "call", "error", "code"), [c[1:] for c in CLIENT_CASES],
                         ids=[c[0] for c in CLIENT_CASES])
async def test_bad_dracoon_answers_are_classified_errors(
    dracoon_emulator: DracoonEnv, rule: Rewrite, call: str, error: type[Exception], code: str
) -> None:
    """Malformed JSON, HTML, absurd nesting, missing fields or unusable key pairs from DRACOON (or
    a proxy in between) become one transient or permanent client error with a short code."""
    settings_ = DracoonConfig(max_retries=0, upload_mode="proxy")
    async with GarbageProxy(dracoon_emulator.base_url) as proxy:
        rule = proxy.add(dataclasses.replace(rule, fired=0))
        account = dracoon_emulator.account(base_url=proxy.url)
        async with DracoonClient(account, settings_, backoff_base=0) as client:
            with pytest.raises(error) as info:
                await _call(client, call, dracoon_emulator.parent_room_id)
    assert info.value.code == code  # type: ignore[attr-defined]
    assert "Traceback" not in str(info.value) and 10 < len(str(info.value)) < 500
    assert rule.fired >= 1


@pytest.mark.integration
@pytest.mark.parametrize("path", [TOKEN, ACCOUNT_PATH, KEYPAIRS, NODES])
async def test_unexpected_extra_fields_are_ignored(dracoon_emulator: DracoonEnv, path: str) -> None:
    """Fields DRACOON adds in a later version (or junk ones) do not disturb any call."""
    async with GarbageProxy(dracoon_emulator.base_url) as proxy:
        rule = proxy.add(Rewrite("GET" if path != TOKEN else "POST", path, _json_edit(_add_fields)))
        account = dracoon_emulator.account(base_url=proxy.url)
        async with DracoonClient(account, DracoonConfig(max_retries=0)) as client:
            assert (await client.ping_authenticated()).id > 0
            assert await client.get_key_pair()
            room = await client.ensure_room_path(dracoon_emulator.parent_room_id, ["Calls"])
            assert room.is_room and room.is_encrypted
    assert rule.fired >= 1


SERVICE_CASES: list[tuple[str, Rewrite, dict[str, Any], str | None]] = [
    ("wrong-key-pair-version", Rewrite("GET", KEYPAIRS, _json_edit(_bump_version)), {}, "no_key_pair"),
    # A key pair that does not unlock holds the job instead: test_dracoon_auth_failures.py.
    ("channel-answer-empty", Rewrite("POST", "/nodes/files/uploads$", b"{}"), {}, "bad_response"),
    ("keypairs-garbage-once", Rewrite("GET", KEYPAIRS, b"<html>", count=1), {}, None),
]


@pytest.mark.integration
@pytest.mark.parametrize(("rule", "dracoon", "code"), [c[1:] for c in SERVICE_CASES],
                         ids=[c[0] for c in SERVICE_CASES])
async def test_bad_dracoon_answers_through_the_service(
    stack: Stack, rule: Rewrite | None, dracoon: dict[str, str], code: str | None
) -> None:
    """The running service turns each bad answer into a dead-lettered job with a clear reason (or,
    for a one-off glitch, a retry that succeeds); never a crash, never a file outside the room."""
    seeded = set(stack.dracoon.state.nodes)
    await stack.put("b/x.mp4", b"recording")
    async with GarbageProxy(stack.dracoon.base_url) as proxy:
        if rule is not None:
            proxy.add(dataclasses.replace(rule, fired=0))  # a fresh counter for "count" rules
        point_instance_at(stack.config.resolve(stack.config.instances.file), proxy.url, **dracoon)
        await stack.send(json.dumps(base_job(stack.bucket, ["b/x.mp4"])))
        with structlog.testing.capture_logs() as logs:
            stats = await stack.drain()
    assert not [e for e in logs if e["event"] == "job_crashed"]
    if code is None:
        assert stats.outcomes == {"transient": 1, "success": 1}
        assert len(stack.files("Calls")) == 1
        assert await stack.queue_counts() == (0, 0, 0)
    else:
        assert stats.outcomes == {"permanent": 1}
        (dead,) = await stack.dlq_messages()
        assert dead["MessageAttributes"]["rs-reason-code"]["StringValue"] == code
        reason = dead["MessageAttributes"]["rs-reason"]["StringValue"]
        assert "Traceback" not in reason and len(reason) > 10
        assert await stack.exists("b/x.mp4")
    assert escaped_nodes(stack.dracoon.state, stack.dracoon.parent_room_id, seeded) == []


# --- bad configuration: every problem with its key path, exit status 2, no traceback -----------

BAD_APP_YAML = """
workers: {count: 0, bogus: 1}
queue: {visibility_timeout: 30, heartbeat_interval: 45}
dracoon: {client_secret: ["Sentinel-Client-Secret-9"], verify_tls: maybe, upload_chunk_size: tiny}
s3: {chunk_size: 1KiB, parallel_ranges: -3}
aws: {secret_access_key: {nested: "Sentinel-Aws-Secret-9"}, max_attempts: 99}
instances: {source: http}
log: {level: loud}
unknown_section: {}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BAD_APP_YAML, ["workers.count", "workers.bogus", "queue", "dracoon.client_secret",
                        "dracoon.verify_tls", "dracoon.upload_chunk_size", "s3.chunk_size",
                        "s3.parallel_ranges", "aws.secret_access_key", "aws.max_attempts", "instances",
                        "log.level", "unknown_section"]),
        ("workers: {count: 2\n  oops: [", ["not valid YAML at line"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("\x00\x01binary", ["not valid YAML"]),
    ],
    ids=["many-problems", "yaml-syntax", "not-a-mapping", "binary"],
)
def test_bad_configuration_lists_every_key_path_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    """``recording-storage -c bad.yaml check``: exit 2, each problem named by key path, secrets
    masked, no traceback."""
    path = tmp_path / "app.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli.main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err
    for key in expected:
        assert f"{key}:" in err or key in err, (key, err)
    assert "Traceback" not in err
    assert "Sentinel" not in err


def test_missing_configuration_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(tmp_path / "nope.yaml"), "check"]) == 2
    assert "configuration file not found" in capsys.readouterr().err
