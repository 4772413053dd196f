"""S3 event notifications: record parsing, URL-decoding, SNS envelopes, test events, and the
decode hook that accepts job messages and events on one queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import pytest
from structlog.testing import capture_logs

from recording_storage.errors import InvalidJobMessage, PermanentError
from recording_storage.events import EventJob, Routes, compile_rules, parse_s3_event
from recording_storage.intake import decode_message
from recording_storage.targets import MessageJob
from tests.fixtures.metrics import RecordedMetrics
from tests.fixtures.service import job_message


def record(key: str, *, bucket: str = "rec", name: str = "ObjectCreated:Put", encoded: bool = False,
           **obj: Any) -> dict[str, Any]:
    """One S3 event record as AWS writes it (key URL-encoded with '+' for spaces)."""
    return {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": "2026-04-22T09:15:02.123Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key if encoded else quote_plus(key, safe="/"), "size": 1234,
                          "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0055AED6DCD90281E5",
                          **obj}},
    }


def event(*records: object) -> dict[str, Any]:
    return {"Records": list(records)}


def sns(inner: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
            "Subject": "Amazon S3 Notification", "Message": json.dumps(inner),
            "Timestamp": "2026-04-22T09:15:03Z"}


def paths(exc: pytest.ExceptionInfo[InvalidJobMessage]) -> list[str]:
    return [p.path for p in exc.value.problems]


ROUTES = Routes(tuple(compile_rules(
    [{"name": "all", "bucket": "rec", "key": "calls/**", "instance": "meet.example.com",
      "targets": [{"path": "Calls/{year}", "expiration": "1 year"}]}], path="routing.rules")[0]))


def test_key_is_url_decoded_with_plus_as_space_and_unicode() -> None:
    """'+' is a space, %-escapes are UTF-8, and an encoded '%2F' stays part of the key (Kazoo)."""
    raw = "calls/M%C3%BCller+und+S%C3%B6hne/Anruf+1%2B1.mp3"
    parsed = parse_s3_event(event(record(raw, encoded=True)))
    (rec,) = parsed.records
    assert rec.key == "calls/Müller und Söhne/Anruf 1+1.mp3"
    kazoo = parse_s3_event(event(record("account%252F4b%252F31/x_call_recording_a%2540b.mp3", encoded=True)))
    assert kazoo.records[0].key == "account%2F4b%2F31/x_call_recording_a%40b.mp3"
    assert rec.event_time == datetime(2026, 4, 22, 9, 15, 2, 123000, tzinfo=UTC)
    assert (rec.size, rec.etag, rec.sequencer, rec.bucket) == (1234, "0123456789abcdef0123456789abcdef",
                                                              "0055AED6DCD90281E5", "rec")
    assert "Müller" not in repr(rec)


def test_only_created_records_become_records_others_are_reported_as_ignored() -> None:
    """ObjectRemoved and friends are skipped (with their name), created ones kept in order."""
    parsed = parse_s3_event(event(record("calls/a.mp3"), record("calls/b.mp3", name="ObjectRemoved:Delete"),
                                  record("calls/c.mp3", name="ObjectCreated:CompleteMultipartUpload")))
    assert [r.key for r in parsed.records] == ["calls/a.mp3", "calls/c.mp3"]
    assert parsed.ignored == (("ObjectRemoved:Delete", "rec"),)


def test_same_key_twice_collapses_to_the_latest_sequencer() -> None:
    """Two records for one key (overwrite) become one; the higher sequencer wins, padded as AWS says."""
    parsed = parse_s3_event(event(record("calls/a.mp3", sequencer="0055AED6DCD90281E6", size=2),
                                  record("calls/a.mp3", sequencer="0055AED6DCD90281E5", size=1),
                                  record("calls/b.mp3")))
    assert [(r.key, r.size) for r in parsed.records] == [("calls/a.mp3", 2), ("calls/b.mp3", 1234)]


def test_malformed_records_list_every_problem_with_field_paths() -> None:
    """Wrong types and missing fields are reported together, each at its path, never echoing keys."""
    bad = record("calls/secret-name.mp3", size=-1)
    del bad["s3"]["bucket"]["name"]
    body = event(bad, {"eventName": 5}, record("%FF%FE", encoded=True), "nope",
                 {**record("x.mp3"), "eventTime": "yesterday"})
    with pytest.raises(InvalidJobMessage) as info:
        parse_s3_event(body)
    assert paths(info) == ["Records[0].s3.bucket.name", "Records[0].s3.object.size", "Records[1].eventName",
                           "Records[2].s3.object.key", "Records[3]", "Records[4].eventTime"]
    assert "secret-name" not in str(info.value)
    with pytest.raises(InvalidJobMessage) as empty:
        parse_s3_event({"Records": []})
    assert paths(empty) == ["Records"]


def test_decode_routes_a_direct_event_into_event_jobs() -> None:
    """A routed object becomes one EventJob for its bucket and decoded key."""
    (job,) = decode_message(json.dumps(event(record("calls/Anruf 1.mp3"))), ROUTES)
    assert isinstance(job, EventJob)
    assert (job.bucket, job.keys, job.instance_domain) == ("rec", ("calls/Anruf 1.mp3",), "meet.example.com")
    assert job.describe()["route"] == "all" and "key" not in job.describe()


def test_decode_unwraps_sns_and_prefixes_problem_paths_with_message() -> None:
    """An SNS envelope (raw delivery off) is unwrapped; problems inside point into Message."""
    (job,) = decode_message(json.dumps(sns(event(record("calls/x.mp3")))), ROUTES)
    assert isinstance(job, EventJob) and job.keys == ("calls/x.mp3",)
    broken = event(record("calls/x.mp3"))
    del broken["Records"][0]["s3"]["object"]["key"]
    with pytest.raises(InvalidJobMessage) as info:
        decode_message(json.dumps(sns(broken)), ROUTES)
    assert paths(info) == ["Message.Records[0].s3.object.key"]
    with pytest.raises(InvalidJobMessage) as garbage:
        decode_message(json.dumps({"Type": "Notification", "Message": "not json"}), ROUTES)
    assert paths(garbage) == ["Message"]


def test_job_messages_still_decode_also_inside_sns() -> None:
    """Both kinds share the queue: a job message, bare or SNS-wrapped, is a MessageJob."""
    body = job_message("rec", ["a.mp4"])
    (direct,) = decode_message(body, ROUTES)
    (wrapped,) = decode_message(json.dumps(sns(json.loads(body))), ROUTES)
    assert isinstance(direct, MessageJob) and isinstance(wrapped, MessageJob)
    assert direct.job == wrapped.job
    with pytest.raises(InvalidJobMessage):
        decode_message("not json at all", ROUTES)


def test_test_event_yields_no_jobs_and_is_logged() -> None:
    """s3:TestEvent is acknowledged without a job (direct and via SNS)."""
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-04-22T09:15:02Z",
                  "Bucket": "rec", "RequestId": "r", "HostId": "h"}
    with capture_logs() as logs:
        assert decode_message(json.dumps(test_event), ROUTES) == []
        assert decode_message(json.dumps(sns(test_event)), ROUTES) == []
    assert [e["event"] for e in logs] == ["s3_test_event_ignored"] * 2 and logs[0]["bucket"] == "rec"
    assert decode_message(json.dumps(test_event), Routes()) == []  # even without rules


def test_unmatched_objects_are_logged_by_hash_and_counted_not_jobs() -> None:
    """No rule claims the key: no job, one warning with bucket and key hash, the counter called."""
    metrics = RecordedMetrics()
    with capture_logs() as logs:
        jobs = decode_message(json.dumps(event(record("other/Max Mustermann.mp3"), record("calls/ok.mp3"))),
                              ROUTES, metrics=metrics)
    assert [j.keys for j in jobs] == [("calls/ok.mp3",)]
    assert metrics.unmatched == 1
    (warning,) = [e for e in logs if e["event"] == "s3_object_unmatched"]
    assert warning["bucket"] == "rec" and len(warning["key_hash"]) == 16
    assert "Mustermann" not in json.dumps(logs)
    with capture_logs() as pii_logs:
        decode_message(json.dumps(event(record("other/Max.mp3"))), ROUTES, include_pii=True)
    assert pii_logs[0]["key"] == "other/Max.mp3"


def test_events_without_any_rules_are_permanent_so_they_wait_in_the_dlq() -> None:
    """Created objects but no routing configured: no_routing_rules, not a silent acknowledgement."""
    with pytest.raises(PermanentError) as info:
        decode_message(json.dumps(event(record("calls/x.mp3"))), Routes())
    assert info.value.code == "no_routing_rules"
    assert decode_message(json.dumps(event(record("x", name="ObjectRemoved:Delete"))), Routes()) == []


def test_eventbridge_events_are_rejected_with_a_clear_reason() -> None:
    """EventBridge's format is recognised and refused permanently, not misparsed as a job."""
    body = {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "rec"}, "object": {"key": "calls/x.mp3"}}}
    with pytest.raises(InvalidJobMessage, match="EventBridge"):
        decode_message(json.dumps(body), ROUTES)
