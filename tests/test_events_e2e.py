"""S3 event notifications end to end: the real service on moto (S3, SQS) and the DRACOON emulator.

Each test puts objects into S3, sends the S3 event JSON to the queue itself (as S3 or SNS would),
runs the service in drain mode and checks rooms, names, expirations, S3 and the queues.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from recording_storage.config import BucketSourceConfig, LogConfig
from recording_storage.logs import configure_logging, key_digest, reset_logging
from recording_storage.service import serve
from tests.fixtures.servers import ReverseProxy
from tests.fixtures.service import DOMAIN, Stack, blob, job_message

pytestmark = pytest.mark.integration

ROUTES_FILE = Path(__file__).resolve().parent.parent / "conf" / "routes.yml"
ACME = "4b31dd1c5a0b3d38bea3b8d6fbf5d6b1"
MODB = f"account%2F{ACME[:2]}%2F{ACME[2:4]}%2F{ACME[4:]}-202611"
BERLIN = ZoneInfo("Europe/Berlin")


def s3_event(bucket: str, *keys: str, when: datetime, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 event notification as S3 sends it: keys URL-encoded, '+' for spaces."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "eventName": name,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "e",
                          "sequencer": f"{i:016X}"}},
    } for i, key in enumerate(keys)]}


def via_sns(body: dict[str, Any]) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-1:1:t",
                       "Subject": "Amazon S3 Notification", "Message": json.dumps(body)})


def stamp(when: datetime) -> str:
    return when.astimezone(BERLIN).strftime("%Y-%m-%d %H-%M")


def expiry(file_expire_at: str | None) -> datetime:
    assert file_expire_at is not None
    return datetime.fromisoformat(file_expire_at)


HEX = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("stack_overrides", [{"routing": {"file": str(ROUTES_FILE)}}])
async def test_kazoo_layout_lands_in_account_and_type_rooms(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped Kazoo rules: call recording, voicemail and fax of one account (one event message
    with two records plus one SNS-wrapped event) land in their sub-rooms with names and retention."""
    monkeypatch.setenv("KAZOO_BUCKET", stack.bucket)
    monkeypatch.setenv("KAZOO_INSTANCE", DOMAIN)
    call = f"call_recording/{MODB}/202611-{HEX}_call_recording_a1b2%40pbx.example.com.mp3"
    voicemail = f"mailbox_message/{MODB}/202611-77aa_{HEX}.mp3"
    fax = f"fax/{MODB}/202611-fax9_inbound.pdf"
    data = {call: blob(70_000, 2), voicemail: blob(3_000, 3), fax: blob(500, 4)}
    for key, body in data.items():
        await stack.put(key, body, content_type="application/octet-stream")
    when = datetime.now(UTC).replace(microsecond=0)
    await stack.send(json.dumps(s3_event(stack.bucket, call, voicemail, when=when)))
    await stack.send(via_sns(s3_event(stack.bucket, fax, when=when)))

    stats = await stack.drain()

    assert stats.outcomes == {"success": 2}
    local = when.astimezone(BERLIN)
    month = f"{local:%Y-%m}"
    (rec,) = stack.files("Kazoo", "Acme GmbH", "Call recordings", month)
    assert rec.name == f"{stamp(when)} call call_recording_a1b2@pbx.example.com.mp3"
    assert expiry(rec.expire_at) == when.replace(year=when.year + 1)
    assert stack.decrypt(rec, stack.dracoon.service_user) == data[call]
    (vm,) = stack.files("Kazoo", "Acme GmbH", "Voicemails", month)
    assert vm.name == f"{stamp(when)} voicemail {HEX}.mp3"
    assert when < expiry(vm.expire_at) < when.replace(year=when.year + 1)  # 3 months
    (fx,) = stack.files("Kazoo", "Acme GmbH", "Faxes", f"{local:%Y}")
    assert fx.name == f"{stamp(when)} fax inbound.pdf"
    assert expiry(fx.expire_at) == when.replace(year=when.year + 10)
    assert stack.decrypt(fx, stack.dracoon.service_user) == data[fax]
    for key in data:
        assert not await stack.exists(key)
    assert await stack.queue_counts() == (0, 0, 0)


INLINE = {"routing": {"rules": [{
    "name": "calls", "key": "calls/**", "instance": DOMAIN,
    "targets": [{"path": "Calls/{dirname}", "expiration": "2 weeks"}],
}]}}


@pytest.mark.parametrize("stack_overrides", [INLINE])
async def test_url_encoded_keys_with_spaces_and_unicode(stack: Stack) -> None:
    """Keys with spaces, '+', '&' and umlauts arrive URL-encoded and land under their real names."""
    key = "calls/Müller & Söhne/Anruf 1+1 (ü).wav"
    await stack.put(key, blob(1_000), content_type="audio/wav")
    await stack.send(json.dumps(s3_event(stack.bucket, key, when=datetime.now(UTC))))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (file,) = stack.files("Calls", "calls_Müller & Söhne")
    assert file.name == "Anruf 1+1 (ü).wav"
    assert stack.decrypt(file, stack.dracoon.service_user) == blob(1_000)
    assert not await stack.exists(key)


@pytest.mark.parametrize("stack_overrides", [INLINE])
async def test_event_keys_reach_the_logs_only_as_digests(stack: Stack) -> None:
    """A PBX's keys may name callers: with log.include_pii off (the default) neither a key that
    lands nor one that is missing (its error text names the object) appears in any rendered log
    line; its digest does, so an operator can still match lines to an object."""
    landed = "calls/+49 30 1234567 to +49 40 7654321.wav"
    missing = "calls/caller +49 89 5550100.wav"
    await stack.put(landed, blob(1_000), content_type="audio/wav")
    await stack.send(json.dumps(s3_event(stack.bucket, landed, missing, when=datetime.now(UTC))))
    rendered = io.StringIO()
    configure_logging(LogConfig(level="debug", format="json"), stream=rendered)
    try:
        stats = await stack.drain()
    finally:
        reset_logging()
    assert stats.outcomes == {"permanent": 1}  # one message: the missing record dead-letters it
    text = rendered.getvalue()
    assert "job_finished" in text and "source_missing" in text
    for key in (landed, missing):
        assert key not in text and "+49" not in text, key
        assert key_digest(stack.bucket, key) in text


@pytest.mark.parametrize("stack_overrides", [INLINE])
async def test_unmatched_objects_stay_in_s3_and_the_message_is_gone(stack: Stack) -> None:
    """An object no rule claims is not touched: no file, still in S3, message acknowledged, no DLQ."""
    await stack.put("other/keep-me.mp3", blob(10))
    await stack.send(json.dumps(s3_event(stack.bucket, "other/keep-me.mp3", when=datetime.now(UTC))))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    assert await stack.exists("other/keep-me.mp3")
    assert stack.dracoon.state.files_in(stack.dracoon.parent_room_id) == []
    assert await stack.queue_counts() == (0, 0, 0)


@pytest.mark.parametrize("stack_overrides", [INLINE])
async def test_sns_wrapping_test_event_and_mixed_queue(stack: Stack) -> None:
    """One run: an S3 test event (ignored), an SNS-wrapped event and a plain job message all complete."""
    await stack.put("calls/sns.mp3", blob(2_000, 5))
    await stack.put("jobs/job.mp4", blob(3_000, 6))
    await stack.send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": stack.bucket,
                                 "Time": "2026-04-22T09:15:02Z", "RequestId": "r", "HostId": "h"}))
    await stack.send(via_sns(s3_event(stack.bucket, "calls/sns.mp3", when=datetime.now(UTC))))
    await stack.send(job_message(stack.bucket, ["jobs/job.mp4"], [{"path": "Jobs"}]))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 3}
    (event_file,) = stack.files("Calls", "calls")
    assert event_file.name == "sns.mp3"
    (job_file,) = stack.files("Jobs")
    assert stack.decrypt(job_file, stack.dracoon.service_user) == blob(3_000, 6)
    assert await stack.queue_counts() == (0, 0, 0)


class RecordingProxy(ReverseProxy):
    """A plain reverse proxy to moto on 127.0.0.1 that records each request's method, Host, path
    and Authorization header, so a test can see which endpoint, addressing style and key pair
    the service used."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.seen: list[tuple[str, str, str, str]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Signed in the Authorization header (botocore's calls) or in the query (presigned URLs
        # of s3.direct_http); either way the credential scope names the key id.
        presigned = request.query.get("X-Amz-Credential", "")
        auth = request.headers.get("Authorization") or f"Credential={presigned}"
        self.seen.append((request.method, request.host, request.path, auth))
        answer = await self.fetch(request)
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.content_length = int(answer.length) if answer.length is not None else len(answer.body)
        await response.prepare(request)
        if request.method != "HEAD":
            await response.write(answer.body)
        await response.write_eof()
        return response


@pytest.fixture
async def recording_proxy(moto_server: str) -> AsyncIterator[tuple[RecordingProxy, int]]:
    async with RecordingProxy(moto_server) as proxy:
        yield proxy, proxy.port


@pytest.mark.parametrize("stack_overrides", [{"routing": {"rules": [{
    "name": "pbx", "key": "{who}/*.wav", "instance": DOMAIN, "targets": ["Per bucket/{who}"]}]}}])
async def test_per_bucket_settings_path_style_own_endpoint_credentials_and_prefix(
    stack: Stack, recording_proxy: tuple[RecordingProxy, int]
) -> None:
    """A bucket with its own host/port/scheme, path-style addressing, key pair and key prefix is read
    through that endpoint with those credentials; rules see keys below the prefix."""
    proxy, port = recording_proxy
    source = BucketSourceConfig(host="127.0.0.1", port=port, scheme="http", addressing_style="path",
                                access_key_id="bucket-key-id", secret_access_key="bucket-secret",
                                key_prefix="pbx1", request_checksum_calculation="when_required")
    config = stack.config.model_copy(update={
        "s3": stack.config.s3.model_copy(update={"buckets": {stack.bucket: source}})})
    key = "pbx1/alice/greeting.wav"
    await stack.put(key, blob(150_000, 7), content_type="audio/wav")
    await stack.send(json.dumps(s3_event(stack.bucket, key, when=datetime.now(UTC))))

    stats = await serve(config, drain=True, install_signals=False)

    assert stats.outcomes == {"success": 1}
    (file,) = stack.files("Per bucket", "alice")
    assert file.name == "greeting.wav"
    assert stack.decrypt(file, stack.dracoon.service_user) == blob(150_000, 7)
    assert {"HEAD", "GET", "DELETE"} <= {method for method, _, _, _ in proxy.seen}
    for _, host, path, auth in proxy.seen:
        assert host == f"127.0.0.1:{port}" and path.startswith(f"/{stack.bucket}/")  # path-style
        assert "Credential=bucket-key-id/" in auth
    assert not await stack.exists(key)
