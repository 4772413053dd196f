"""Job message parsing: the original's wire format, every problem reported, never a crash."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recording_storage.errors import InvalidJobMessage, PermanentError
from recording_storage.instances import TargetSpec
from recording_storage.jobs import (
    MAX_BODY_BYTES,
    MAX_PROBLEMS,
    JobMessage,
    job_message_body,
    looks_like_s3_event,
    parse_job_message,
)

EMAIL = "support@24sessions.com"
NAME = "Sessions Support"


def original_example() -> dict[str, Any]:
    """The README example of the Go service, plus timezone, type id and extra."""
    return job_message_body(
        "24s-public",
        ["sandbox/test-video.mp4"],
        domain="24slocal.new.com",
        alias="local",
        customer_id="C-1234",
        targets=[{"path": "some room/sub-room", "expiration": "4 years 3 months 2 weeks 1 day"}],
        meeting={
            "id": 22980,
            "type": {"name": "live now", "duration": 60, "id": 14},
            "user": {"name": NAME, "email": EMAIL},
            "guest": {"name": "Guest Person", "email": "guest@24s.co"},
            "date": "2017-09-11T20:24:43+00:00",
            "timezone": "Europe/Berlin",
            "description": "natus aperiam quia blanditiis dignissimos nam porro.",
        },
    )


def parse(msg: Any) -> JobMessage:
    return parse_job_message(json.dumps(msg))


def problems_of(body: str | bytes) -> dict[str, str]:
    with pytest.raises(InvalidJobMessage) as info:
        parse_job_message(body)
    found: dict[str, str] = {}
    for p in info.value.problems:
        found[p.path] = f"{found[p.path]}; {p.message}" if p.path in found else p.message
    return found


def problems(msg: Any) -> dict[str, str]:
    return problems_of(json.dumps(msg))


def with_change(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    msg = original_example()
    change(msg)
    return msg


# --- valid messages ------------------------------------------------------------------------


def test_parses_the_original_example() -> None:
    job = parse(original_example())
    assert job.storage_type == "dracoon"
    assert job.s3.bucket == "24s-public"
    assert job.s3.keys == ("sandbox/test-video.mp4",)
    assert job.targets == (TargetSpec("some room/sub-room", "4 years 3 months 2 weeks 1 day"),)
    assert job.meeting.id == 22980
    assert job.meeting.type.name == "live now"
    assert job.meeting.type.duration == 60
    assert job.meeting.type.id == "14"
    assert job.meeting.user.email == EMAIL
    assert job.meeting.guest.name == "Guest Person"
    assert job.meeting.timezone == "Europe/Berlin"
    assert job.meeting.date == datetime(2017, 9, 11, 20, 24, 43, tzinfo=UTC)
    assert job.meeting.date.tzinfo == ZoneInfo("Europe/Berlin")
    assert job.meeting.date.hour == 22  # CEST
    assert job.instance.domain == "24slocal.new.com"
    assert job.instance.alias == "local"
    assert job.customer_id == "C-1234"


def test_parses_bytes_and_a_bom() -> None:
    body = json.dumps(original_example()).encode()
    assert parse_job_message(body).meeting.id == 22980
    assert parse_job_message(b"\xef\xbb\xbf" + body).meeting.id == 22980
    assert parse_job_message("\ufeff" + body.decode()).meeting.id == 22980


def test_minimal_message() -> None:
    """Only what the transfer needs: no targets, type, user, guest, timezone or extra."""
    job = parse(
        job_message_body("b", ["k.mp4"], domain="example.com",
                         meeting={"id": 1, "date": "2019-04-22T17:54:00Z"})
    )
    assert job.targets == ()
    assert job.meeting.timezone == "UTC"
    assert job.meeting.user.email is None
    assert job.meeting.type.id is None
    assert job.customer_id is None


def test_the_builder_writes_what_the_parser_reads() -> None:
    """``job_message_body`` is the parser's inverse: every field it writes comes back."""
    meeting = {"id": 7, "date": "2019-04-22T17:54:00Z", "timezone": "Europe/Berlin"}
    body = job_message_body("b", ["k.mp4", "l.mp4"], domain="Example.com.", meeting=meeting,
                            targets=[{"path": "Room", "expiration": "1 day"}], alias="ex", customer_id=9)
    job = parse(body)
    assert (job.s3.bucket, job.s3.keys) == ("b", ("k.mp4", "l.mp4"))
    assert job.targets == (TargetSpec("Room", "1 day"),)
    assert (job.instance.domain, job.instance.alias, job.customer_id) == ("example.com", "ex", "9")
    assert (job.meeting.id, job.meeting.timezone) == (7, "Europe/Berlin")
    bare = job_message_body("b", ["k.mp4"], domain="example.com", meeting=meeting)
    assert "dracoon" not in bare["storage"]["extra"] and "extra" not in bare
    assert "alias" not in bare["instance"]
    meeting["id"] = 8
    assert bare["meeting"]["id"] == 7  # a fresh copy: callers change built bodies in place


def test_keys_are_flattened_deduplicated_and_empty_ones_dropped() -> None:
    msg = original_example()
    msg["storage"]["extra"]["aws.s3"]["keys"] = ["a.mp4", ["b.mp4", "", "a.mp4"], "", ["c.mp3"], []]
    assert parse(msg).s3.keys == ("a.mp4", "b.mp4", "c.mp3")


@pytest.mark.parametrize("targets", [None, []])
def test_missing_or_empty_targets_mean_instance_targets(targets: list[Any] | None) -> None:
    msg = original_example()
    msg["storage"]["extra"]["dracoon"]["targets"] = targets
    assert parse(msg).targets == ()
    del msg["storage"]["extra"]["dracoon"]
    assert parse(msg).targets == ()


def test_target_expiration_may_be_missing_null_or_blank() -> None:
    msg = original_example()
    msg["storage"]["extra"]["dracoon"]["targets"] = [
        {"path": "a"},
        {"path": "b", "expiration": None},
        {"path": "c", "expiration": "  "},
        {"path": "", "expiration": "1 day"},
        {"path": "/"},
        {"path": "$instance/${year}-$month/$$cash"},
    ]
    assert parse(msg).targets == (
        TargetSpec("a"),
        TargetSpec("b"),
        TargetSpec("c"),
        TargetSpec("", "1 day"),
        TargetSpec("/"),
        TargetSpec("$instance/${year}-$month/$$cash"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-04-22T17:54:00Z", datetime(2019, 4, 22, 17, 54, tzinfo=UTC)),
        ("2019-04-22T17:54:00.5+02:00", datetime(2019, 4, 22, 15, 54, 0, 500000, tzinfo=UTC)),
        ("2019-04-22T17:54:00.123456789-05:30", datetime(2019, 4, 22, 23, 24, 0, 123456, tzinfo=UTC)),
        ("2019-04-22T17:54:00-00:00", datetime(2019, 4, 22, 17, 54, tzinfo=UTC)),
    ],
)
def test_dates(text: str, expected: datetime) -> None:
    msg = original_example()
    msg["meeting"]["date"] = text
    msg["meeting"]["timezone"] = ""
    job = parse(msg)
    assert job.meeting.date == expected
    assert job.meeting.date.utcoffset() == timedelta(0)


def test_customer_id_and_type_id_may_be_numbers() -> None:
    msg = original_example()
    msg["extra"]["customerId"] = 42
    msg["meeting"]["type"]["id"] = " 7 "
    job = parse(msg)
    assert (job.customer_id, job.meeting.type.id) == ("42", "7")


def test_unknown_fields_are_ignored() -> None:
    msg = original_example()
    msg["future"] = {"x": [1, 2]}
    msg["storage"]["extra"]["dracoon"]["parentRoomId"] = 5
    assert parse(msg).meeting.id == 22980


def test_unicode_values() -> None:
    msg = original_example()
    msg["storage"]["extra"]["aws.s3"]["keys"] = ["aufnahmen/grüße 🎥.mp4"]
    msg["meeting"]["user"]["name"] = "Zoë Ünal"
    msg["storage"]["extra"]["dracoon"]["targets"] = [{"path": "Räume/日本語"}]
    job = parse_job_message(json.dumps(msg, ensure_ascii=False).encode())
    assert job.s3.keys == ("aufnahmen/grüße 🎥.mp4",)
    assert job.targets[0].path == "Räume/日本語"


def test_key_of_exactly_1024_bytes_is_accepted() -> None:
    msg = original_example()
    msg["storage"]["extra"]["aws.s3"]["keys"] = ["é" * 512]
    assert parse(msg).s3.keys == ("é" * 512,)


def test_job_message_is_frozen_and_repr_hides_personal_data() -> None:
    job = parse(original_example())
    with pytest.raises(AttributeError):
        job.storage_type = "x"  # type: ignore[misc]
    text = repr(job)
    for secret in (EMAIL, NAME, "guest@24s.co", "C-1234", "natus", "sandbox/test-video.mp4"):
        assert secret not in text
    assert "22980" in text


def test_shorthand_properties() -> None:
    msg = original_example()
    msg["instance"]["domain"] = "Meet.Example.COM."
    job = parse(msg)
    assert (job.bucket, job.keys, job.instance_domain) == ("24s-public", job.s3.keys, "meet.example.com")


def test_describe_has_summary_fields_only() -> None:
    job = parse(original_example())
    assert job.describe() == {
        "instance": "24slocal.new.com",
        "meeting_id": 22980,
        "meeting_type_id": "14",
        "bucket": "24s-public",
        "key_count": 1,
        "message_targets": 1,
    }


# --- invalid messages ----------------------------------------------------------------------

S3 = "storage.extra.aws.s3"
TARGETS = "storage.extra.dracoon.targets"


def _set(path: str, value: object) -> Callable[[dict[str, Any]], object]:
    def change(msg: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = msg
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (_set("storage", _DELETE), "storage", "is required"),
        (_set("storage", []), "storage", "must be an object, got an array"),
        (_set("storage/type", _DELETE), "storage.type", "is required"),
        (_set("storage/type", "fake"), "storage.type", "unsupported storage type 'fake'"),
        (_set("storage/type", "s3 and more"), "storage.type", "(a string of 11 characters)"),
        (_set("storage/type", 1), "storage.type", "must be a string, got a number"),
        (_set("storage/extra", _DELETE), "storage.extra", "is required"),
        (_set("storage/extra", "x"), "storage.extra", "must be an object"),
        (_set("storage/extra/aws.s3", _DELETE), S3, "is required"),
        (_set("storage/extra/aws.s3", [1]), S3, "must be an object"),
        (_set("storage/extra/aws.s3/bucket", _DELETE), f"{S3}.bucket", "is required"),
        (_set("storage/extra/aws.s3/bucket", ""), f"{S3}.bucket", "must not be empty"),
        (_set("storage/extra/aws.s3/bucket", 5), f"{S3}.bucket", "must be a string"),
        (_set("storage/extra/aws.s3/bucket", "a/b"), f"{S3}.bucket", "must be a bucket name"),
        (_set("storage/extra/aws.s3/keys", _DELETE), f"{S3}.keys", "is required"),
        (_set("storage/extra/aws.s3/keys", "k.mp4"), f"{S3}.keys", "must be an array, got a string"),
        (_set("storage/extra/aws.s3/keys", []), f"{S3}.keys", "at least one non-empty key"),
        (_set("storage/extra/aws.s3/keys", ["", [""]]), f"{S3}.keys", "at least one non-empty key"),
        (_set("storage/extra/aws.s3/keys", ["a", "b", 3]), f"{S3}.keys[2]", "must be a string, got a number"),
        (_set("storage/extra/aws.s3/keys", ["a", ["b", None]]), f"{S3}.keys[1][1]", "got null"),
        (_set("storage/extra/aws.s3/keys", [["a", ["b"]]]), f"{S3}.keys[0][1]", "got an array"),
        (_set("storage/extra/aws.s3/keys", [{"k": 1}]), f"{S3}.keys[0]", "got an object"),
        (_set("storage/extra/aws.s3/keys", ["a\x00b"]), f"{S3}.keys[0]", "NUL"),
        (_set("storage/extra/aws.s3/keys", ["x" * 1025]), f"{S3}.keys[0]", "1025 bytes"),
        (_set("storage/extra/aws.s3/keys", ["é" * 513]), f"{S3}.keys[0]", "1026 bytes"),
        (_set("storage/extra/aws.s3/keys", [f"k{i}" for i in range(1001)]), f"{S3}.keys", "too many keys"),
        (_set("storage/extra/dracoon", 3), "storage.extra.dracoon", "must be an object"),
        (_set("storage/extra/dracoon/targets", {}), TARGETS, "must be an array, got an object"),
        (_set("storage/extra/dracoon/targets", [{"path": "a"}] * 51), TARGETS, "too many targets"),
        (_set("storage/extra/dracoon/targets", ["a"]), f"{TARGETS}[0]", "must be an object, got a string"),
        (_set("storage/extra/dracoon/targets/0/path", _DELETE), f"{TARGETS}[0].path", "is required"),
        (_set("storage/extra/dracoon/targets/0/path", 7), f"{TARGETS}[0].path", "must be a string"),
        (_set("storage/extra/dracoon/targets/0/path", "a/../b"), f"{TARGETS}[0].path", "segment 2"),
        (_set("storage/extra/dracoon/targets/0/path", "a//b"), f"{TARGETS}[0].path", "empty segment"),
        (_set("storage/extra/dracoon/targets/0/path", "$who"), f"{TARGETS}[0].path", "unknown variable $who"),
        (_set("storage/extra/dracoon/targets/0/path", "x" * 1025), f"{TARGETS}[0].path", "too long"),
        (_set("storage/extra/dracoon/targets/0/path", "CON/x"), f"{TARGETS}[0].path", "reserved"),
        (
            _set("storage/extra/dracoon/targets/0/expiration", "soon"),
            f"{TARGETS}[0].expiration",
            "cannot parse",
        ),
        (_set("storage/extra/dracoon/targets/0/expiration", "0 days"), f"{TARGETS}[0].expiration", "zero"),
        (
            _set("storage/extra/dracoon/targets/0/expiration", 30),
            f"{TARGETS}[0].expiration",
            "must be a string",
        ),
        (_set("meeting", _DELETE), "meeting", "is required"),
        (_set("meeting", None), "meeting", "is required"),
        (_set("meeting", "m"), "meeting", "must be an object"),
        (_set("meeting/id", _DELETE), "meeting.id", "is required"),
        (_set("meeting/id", 0), "meeting.id", "between 1 and"),
        (_set("meeting/id", -5), "meeting.id", "between 1 and"),
        (_set("meeting/id", 2**63), "meeting.id", "between 1 and"),
        (_set("meeting/id", "22980"), "meeting.id", "must be an integer, got a string"),
        (_set("meeting/id", 22980.5), "meeting.id", "must be an integer, got a number"),
        (_set("meeting/id", True), "meeting.id", "must be an integer, got a boolean"),
        (_set("meeting/date", _DELETE), "meeting.date", "is required"),
        (_set("meeting/date", ""), "meeting.date", "must not be empty"),
        (_set("meeting/date", "2017-09-11T20:24:43"), "meeting.date", "with an offset"),
        (_set("meeting/date", "2017-09-11 20:24:43Z"), "meeting.date", "RFC 3339"),
        (_set("meeting/date", "2017-09-11"), "meeting.date", "RFC 3339"),
        (_set("meeting/date", "yesterday"), "meeting.date", "RFC 3339"),
        (_set("meeting/date", "2017-02-30T00:00:00Z"), "meeting.date", "out of range"),
        (_set("meeting/date", "2017-09-11T24:00:00Z"), "meeting.date", "out of range"),
        (_set("meeting/date", "2017-09-11T20:00:00+24:00"), "meeting.date", "invalid offset"),
        (_set("meeting/date", "1969-12-31T23:59:59Z"), "meeting.date", "out of range"),
        (_set("meeting/date", 1505161483), "meeting.date", "must be a string"),
        (_set("meeting/timezone", "Mars/Olympus"), "meeting.timezone", "unknown IANA time zone"),
        (_set("meeting/timezone", "../../etc/passwd"), "meeting.timezone", "unknown IANA time zone"),
        (_set("meeting/timezone", "/etc/localtime"), "meeting.timezone", "unknown IANA time zone"),
        (_set("meeting/timezone", "America"), "meeting.timezone", "unknown IANA time zone"),
        (_set("meeting/timezone", 2), "meeting.timezone", "must be a string"),
        (_set("meeting/type", "live"), "meeting.type", "must be an object"),
        (_set("meeting/type/name", 1), "meeting.type.name", "must be a string"),
        (_set("meeting/type/duration", "60"), "meeting.type.duration", "must be an integer"),
        (_set("meeting/type/duration", -1), "meeting.type.duration", "between 0 and"),
        (_set("meeting/type/id", [14]), "meeting.type.id", "must be an integer or a string"),
        (_set("meeting/type/id", 1.5), "meeting.type.id", "must be an integer or a string"),
        (_set("meeting/user", "someone"), "meeting.user", "must be an object"),
        (_set("meeting/user/email", ["a@b"]), "meeting.user.email", "must be a string"),
        (_set("meeting/user/email", "a" * 300 + "@x.com"), "meeting.user.email", "too long"),
        (_set("meeting/guest/name", {"first": "x"}), "meeting.guest.name", "must be a string"),
        (_set("meeting/description", 5), "meeting.description", "must be a string"),
        (_set("instance", _DELETE), "instance", "is required"),
        (_set("instance/domain", _DELETE), "instance.domain", "is required"),
        (_set("instance/domain", ""), "instance.domain", "must not be empty"),
        (_set("instance/domain", "../admin"), "instance.domain", "must be a host name"),
        (_set("instance/domain", "a..b"), "instance.domain", "must be a host name"),
        (_set("instance/domain", "a b.com"), "instance.domain", "must be a host name"),
        (_set("instance/domain", "evil.com/instances/x"), "instance.domain", "must be a host name"),
        (_set("instance/alias", 4), "instance.alias", "must be a string"),
        (_set("extra", "x"), "extra", "must be an object"),
        (_set("extra/customerId", {"id": 1}), "extra.customerId", "must be a string"),
        (_set("extra/customerId", "x" * 257), "extra.customerId", "too long"),
    ],
)
def test_invalid_field(change: Callable[[dict[str, Any]], object], path: str, reason: str) -> None:
    """Each bad field gives a problem at its JSON path with a reason."""
    found = problems(with_change(change))
    assert path in found, found
    assert reason in found[path]


def test_every_problem_is_reported_at_once() -> None:
    msg = original_example()
    msg["storage"]["type"] = "fake"
    msg["storage"]["extra"]["aws.s3"]["keys"] = ["ok", 1, ["x", 2]]
    msg["storage"]["extra"]["dracoon"]["targets"] = [{"path": "a/../b", "expiration": "soon"}, 5]
    msg["meeting"]["id"] = "x"
    msg["meeting"]["date"] = "nope"
    msg["meeting"]["timezone"] = "Nowhere/Land"
    del msg["instance"]["domain"]
    msg["extra"]["customerId"] = []
    found = problems(msg)
    assert set(found) == {
        "storage.type",
        f"{S3}.keys[1]",
        f"{S3}.keys[2][1]",
        f"{TARGETS}[0].path",
        f"{TARGETS}[0].expiration",
        f"{TARGETS}[1]",
        "meeting.id",
        "meeting.date",
        "meeting.timezone",
        "instance.domain",
        "extra.customerId",
    }


def test_invalid_job_message_is_permanent_and_readable() -> None:
    with pytest.raises(InvalidJobMessage) as info:
        parse_job_message("{}")
    err = info.value
    assert isinstance(err, PermanentError)
    assert err.code == "invalid_message"
    assert "storage: is required" in str(err)
    assert {p.path for p in err.problems} == {"storage", "meeting", "instance"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("not json", "is not valid JSON: Expecting value (line 1, column 1)"),
        ('{"a": 1', "is not valid JSON"),
        ("[1, 2]", "must be a JSON object, got an array"),
        ('"text"', "must be a JSON object, got a string of 4 characters"),
        ("42", "must be a JSON object, got a number"),
        ("null", "must be a JSON object, got null"),
        ('{"a": NaN}', "NaN and Infinity are not allowed"),
        ('{"a": -Infinity}', "NaN and Infinity are not allowed"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' + "9" * 5000 + "}", "a number too long"),
        (b"\xff\xfe{}", "is not valid UTF-8 (at byte 0)"),
        (b'{"a": "\xc3"}', "is not valid UTF-8"),
        ("x" * (MAX_BODY_BYTES + 1), "is too large"),
        ("é" * (MAX_BODY_BYTES // 2 + 1), "is too large"),
        (b" " * (MAX_BODY_BYTES + 1), "is too large"),
    ],
)
def test_invalid_bodies(body: str | bytes, reason: str) -> None:
    found = problems_of(body)
    assert list(found) == [""]
    assert reason in found[""]


def test_non_text_body() -> None:
    assert "must be text, got int" in problems_of(5)[""]  # type: ignore[arg-type]


def test_lone_surrogates_are_rejected_not_crashing() -> None:
    """JSON can smuggle "\\ud800", which cannot be encoded later (S3 request, hashes, logs)."""
    msg = json.dumps(original_example())
    msg = msg.replace("sandbox/test-video.mp4", "bad\\ud800.mp4").replace("live now", "x\\udfff")
    found = problems_of(msg)
    assert "lone surrogate" in found[f"{S3}.keys[0]"]
    assert "lone surrogate" in found["meeting.type.name"]


def test_problem_count_is_capped() -> None:
    msg = original_example()
    msg["storage"]["extra"]["aws.s3"]["keys"] = list(range(500))
    with pytest.raises(InvalidJobMessage) as info:
        parse(msg)
    assert len(info.value.problems) == MAX_PROBLEMS + 1
    assert info.value.problems[-1].message == f"{500 - MAX_PROBLEMS} more problem(s) not listed"


def test_problems_never_echo_personal_data_or_huge_values() -> None:
    msg = original_example()
    msg["meeting"]["user"]["email"] = ["support@24sessions.com"]
    msg["meeting"]["user"]["name"] = NAME * 100
    msg["meeting"]["guest"]["email"] = {"e": "guest@24s.co"}
    msg["storage"]["type"] = NAME
    msg["meeting"]["timezone"] = NAME
    msg["storage"]["extra"]["aws.s3"]["keys"] = ["secret-person-name" * 100]
    msg["extra"]["customerId"] = "C-1234" * 100
    with pytest.raises(InvalidJobMessage) as info:
        parse(msg)
    text = str(info.value)
    for value in ("support@", "Sessions Support", "guest@", "secret-person-name", "C-1234"):
        assert value not in text
    assert len(text) < 2000


# --- S3 events and envelopes --------------------------------------------------------------

S3_EVENT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "rec.mp4", "eTag": "abc"}},
        }
    ]
}


@pytest.mark.parametrize(
    "event",
    [
        S3_EVENT,
        {"Records": []},
        {"Records": [{"s3": {}}]},
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}},
    ],
)
def test_s3_events_are_recognised(event: dict[str, Any]) -> None:
    assert looks_like_s3_event(event)
    found = problems(event)
    assert list(found) == [""]
    assert "S3 event notification, not a job message" in found[""]


@pytest.mark.parametrize("obj", [original_example(), [], "Records", {"Records": "x"}, {"Event": "other"}])
def test_other_objects_are_not_s3_events(obj: object) -> None:
    assert not looks_like_s3_event(obj)


def test_job_with_a_records_field_is_still_a_job() -> None:
    msg = original_example()
    msg["Records"] = [{"note": "producer bookkeeping"}]
    assert not looks_like_s3_event(msg)
    assert parse(msg).meeting.id == 22980


def test_sns_envelope_is_recognised() -> None:
    envelope = {"Type": "Notification", "TopicArn": "arn:x", "Message": json.dumps(original_example())}
    assert "enable raw message delivery" in problems(envelope)[""]


# --- fuzzing -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = _paths(original_example())[1:]


def _check_outcome(body: str | bytes) -> None:
    try:
        job = parse_job_message(body)
    except InvalidJobMessage as e:
        assert e.problems
        text = str(e)
        assert EMAIL not in text and NAME not in text
    else:
        assert isinstance(job, JobMessage)
        assert job.s3.keys and job.meeting.id > 0 and job.instance.domain


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), json_values), min_size=1, max_size=4))
def test_fuzz_mutated_messages(mutations: list[tuple[tuple[object, ...], object]]) -> None:
    """Replacing any fields with any JSON gives a JobMessage or an InvalidJobMessage, nothing else."""
    msg: Any = copy.deepcopy(original_example())
    for path, value in mutations:
        node = msg
        try:
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    _check_outcome(json.dumps(msg))


@settings(max_examples=300)
@given(json_values)
def test_fuzz_arbitrary_json(value: object) -> None:
    _check_outcome(json.dumps(value))


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_arbitrary_bodies(body: str | bytes) -> None:
    _check_outcome(body)


def test_offsets_and_zones_combine() -> None:
    """The date keeps its instant; the meeting zone only changes how it is shown."""
    msg = original_example()
    msg["meeting"]["date"] = "2019-04-22T17:54:00+02:00"
    msg["meeting"]["timezone"] = "Asia/Dubai"
    date = parse(msg).meeting.date
    assert date == datetime(2019, 4, 22, 17, 54, tzinfo=timezone(timedelta(hours=2)))
    assert (date.hour, date.tzname()) == (19, "+04")
