"""S3Source against moto's server over real HTTP, plus the shared AWS edge (aws.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from botocore import __version__ as botocore_version
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.utils import parse_timestamp
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from recording_storage import aws as aws_module
from recording_storage import s3 as s3_module
from recording_storage.aws import (
    USER_AGENT,
    SourceChanged,
    SourceMissing,
    client_kwargs,
    make_client_config,
    parse_aws_timestamp,
    scrub,
    translate_error,
)
from recording_storage.config import AwsConfig, S3Config
from recording_storage.direct_http import DirectHttp
from recording_storage.errors import ConfigError, PermanentError, TransientError
from recording_storage.s3 import ObjectInfo, S3Source
from tests.fixtures.aws import botocore_clock, make_aws_config, make_s3_config, random_name
from tests.fixtures.awsproxy import AwsFaultProxy
from tests.fixtures.servers import self_signed_cert, server_ssl

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024


async def collect(s3: S3Source, info: ObjectInfo, **kwargs: Any) -> list[memoryview]:
    async with aclosing(s3.iter_chunks(info, **kwargs)) as chunks:
        return [c async for c in chunks]


def range_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "_get_range" in repr(t.get_coro())]


# -- head --------------------------------------------------------------------------------------


async def test_head_pins_etag_size_and_type(aws_config: AwsConfig, s3_bucket: str) -> None:
    """HEAD returns size, the same ETag PutObject reported, content type and timestamps."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        put = await s3.put(s3_bucket, "rec/a.mp4", b"x" * 1234, content_type="video/mp4")
        info = await s3.head(s3_bucket, "rec/a.mp4")
    assert (info.bucket, info.key, info.size) == (s3_bucket, "rec/a.mp4", 1234)
    assert info.etag == put.etag and info.etag.startswith('"')
    assert info.content_type == "video/mp4"
    # Parsed by parse_aws_timestamp's HTTP-date path: an aware instant, moto's (this machine's) now.
    assert info.last_modified is not None and info.last_modified.utcoffset() == timedelta(0)
    assert abs(info.last_modified - datetime.now(UTC)) < timedelta(hours=1)
    assert info.metadata == {}


async def test_head_of_missing_key_is_source_missing(aws_config: AwsConfig, s3_bucket: str) -> None:
    """A missing key is a permanent error, never a silent success (original bug 8)."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        with pytest.raises(SourceMissing) as err:
            await s3.head(s3_bucket, "no/such.mp4")
    assert isinstance(err.value, PermanentError)
    assert err.value.code == "source_missing"
    assert "no/such.mp4" in str(err.value)


# -- iter_chunks -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17])
@pytest.mark.parametrize("parallel", [1, 3])
async def test_iter_chunks_yields_exact_bytes_in_order(
    aws_config: AwsConfig, s3_bucket: str, size: int, parallel: int
) -> None:
    """Chunks are exactly chunk_size (last one shorter), in order, and join to the object.

    A 0-byte object yields nothing without a GET (which would 416: original bug 24); inclusive
    range ends are right (original bug 20 read chunk_size + 1 bytes).
    """
    data = os.urandom(size)
    async with S3Source(aws_config, make_s3_config()) as s3:
        await s3.put(s3_bucket, "obj", data)
        info = await s3.head(s3_bucket, "obj")
        chunks = await collect(s3, info, chunk_size=CHUNK, parallel=parallel)
    assert b"".join(chunks) == data
    assert len(chunks) == -(-size // CHUNK)
    assert all(len(c) == CHUNK for c in chunks[:-1])


async def test_ranges_over_https_land_intact(
    aws_config: AwsConfig, s3_bucket: str, moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte of every range read over TLS by the direct client lands where it belongs.

    With ``s3.verify`` off no digest would notice a hole: asyncio's TLS reader once wrote every
    record after the first of a read into a throwaway copy of the head buffer."""
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))  # botocore and the direct client trust it alike
    data = os.urandom(3 * 1024 * 1024 + 12_345)
    async with AwsFaultProxy(moto_server, tls=server_ssl(cert, key)) as proxy:
        config = aws_config.model_copy(update={"endpoint_url": proxy.url})
        async with S3Source(config, make_s3_config(chunk_size=1024 * 1024, verify="off")) as s3:
            await s3.put(s3_bucket, "obj", data)
            chunks = await collect(s3, await s3.head(s3_bucket, "obj"))
    assert proxy.url.startswith("https://") and proxy.signatures_checked >= 4  # ranges sent directly
    assert b"".join(chunks) == data


async def test_iter_chunks_defaults_come_from_config(aws_config: AwsConfig, s3_bucket: str) -> None:
    """Without arguments the configured chunk size applies."""
    data = os.urandom(2 * CHUNK + 5)
    async with S3Source(aws_config, make_s3_config(chunk_size=CHUNK, parallel_ranges=2)) as s3:
        info = await s3.put(s3_bucket, "obj", data)
        chunks = await collect(s3, info)
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, 5]


async def test_read_ahead_is_bounded_by_parallel(
    aws_config: AwsConfig, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GETs run ahead of a paused consumer, but never more than `parallel` beyond what it took."""
    parallel, received, started = 3, 0, 0
    ahead_reached = asyncio.Event()
    original = S3Source._get_range_once

    async def counting(self: S3Source, info: ObjectInfo, first: int, last: int, into: memoryview) -> None:
        nonlocal started
        started += 1
        assert started <= received + parallel, "read ahead beyond the bound"
        if started == 1 + parallel:
            ahead_reached.set()
        await original(self, info, first, last, into)

    monkeypatch.setattr(S3Source, "_get_range_once", counting)
    data = os.urandom(10 * CHUNK)
    async with S3Source(aws_config, make_s3_config()) as s3:
        info = await s3.put(s3_bucket, "obj", data)
        out = []
        async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=parallel)) as chunks:
            async for chunk in chunks:
                received += 1
                out.append(chunk)
                if received == 1:
                    # The consumer is "busy" here; the next `parallel` ranges must be on their way.
                    await asyncio.wait_for(ahead_reached.wait(), 10)
    assert b"".join(out) == data
    assert started == 10


async def test_overwrite_mid_iteration_raises_source_changed(aws_config: AwsConfig, s3_bucket: str) -> None:
    """Every range carries If-Match: a replaced object fails loudly instead of mixing versions."""
    old, new = os.urandom(5 * CHUNK), os.urandom(5 * CHUNK)
    async with S3Source(aws_config, make_s3_config()) as s3:
        info = await s3.put(s3_bucket, "obj", old)
        got = []
        with pytest.raises(SourceChanged) as err:
            async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=1)) as chunks:
                async for chunk in chunks:
                    got.append(chunk)
                    if len(got) == 1:
                        await s3.put(s3_bucket, "obj", new)
        assert range_tasks() == []
    assert isinstance(err.value, TransientError)
    assert err.value.code == "source_changed"
    assert 1 <= len(got) < 5
    assert b"".join(got) == old[: len(got) * CHUNK]


async def test_object_deleted_mid_iteration_raises_source_missing(
    aws_config: AwsConfig, s3_bucket: str
) -> None:
    """A source removed while it is being read is a permanent SourceMissing."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        info = await s3.put(s3_bucket, "obj", os.urandom(4 * CHUNK))
        with pytest.raises(SourceMissing):
            async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=1)) as chunks:
                async for _ in chunks:
                    await s3.delete(info)


async def test_early_stop_cancels_gets_and_releases_connections(
    aws_config: AwsConfig, s3_bucket: str
) -> None:
    """Stopping early leaves no range task behind and returns every pooled connection."""
    data = os.urandom(8 * CHUNK)
    async with S3Source(aws_config, make_s3_config(), max_connections=2) as s3:
        info = await s3.put(s3_bucket, "obj", data)
        for _ in range(4):
            async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=2)) as chunks:
                async for _chunk in chunks:
                    break
            assert range_tasks() == []
        # With a 2-connection pool, any leaked connection would make this hang until timeout.
        async with asyncio.timeout(10):
            assert b"".join(await collect(s3, info, chunk_size=CHUNK, parallel=2)) == data


async def test_early_stop_does_not_wait_for_outstanding_gets(
    aws_config: AwsConfig, s3_bucket: str, aws_proxy: AwsFaultProxy
) -> None:
    """GETs still in flight when the consumer stops are cancelled, not awaited to completion."""
    first = f"bytes=0-{CHUNK - 1}"
    held = aws_proxy.add("s3:GetObject", "hold", when=lambda call: call.range != first)
    async with S3Source(aws_config, make_s3_config()) as direct:
        info = await direct.put(s3_bucket, "obj", os.urandom(4 * CHUNK))
    async with S3Source(make_aws_config(aws_proxy.url, max_attempts=1), make_s3_config()) as s3:
        async with asyncio.timeout(5):
            async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=3)) as chunks:
                async for chunk in chunks:
                    assert len(chunk) == CHUNK
                    await aws_proxy.wait_for(lambda: held.fired == 3)  # ranges 2..4 are parked at the server
                    break
        assert range_tasks() == []


async def test_consumer_cancelled_mid_iteration_leaks_no_task(aws_config: AwsConfig, s3_bucket: str) -> None:
    """Cancelling the task that iterates also cancels the read-ahead GETs."""
    gate = asyncio.Event()
    async with S3Source(aws_config, make_s3_config()) as s3:
        info = await s3.put(s3_bucket, "obj", os.urandom(6 * CHUNK))

        async def consume() -> None:
            async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=3)) as chunks:
                async for _ in chunks:
                    gate.set()
                    await asyncio.Event().wait()  # a consumer stuck on its own work

        task = asyncio.create_task(consume())
        await asyncio.wait_for(gate.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert range_tasks() == []


async def test_mid_body_drop_is_retried(
    aws_config: AwsConfig, s3_bucket: str, aws_proxy: AwsFaultProxy
) -> None:
    """A connection dropped mid-body (which botocore does not retry) is retried per range."""
    data = os.urandom(3 * CHUNK)
    second = f"bytes={CHUNK}-{2 * CHUNK - 1}"
    dropped = aws_proxy.add("s3:GetObject", "cut", when=lambda call: call.range == second, count=1)
    async with S3Source(aws_config, make_s3_config()) as direct:
        info = await direct.put(s3_bucket, "obj", data)
    proxied = make_aws_config(aws_proxy.url, max_attempts=1)
    async with S3Source(proxied, make_s3_config()) as s3:
        assert b"".join(await collect(s3, info, chunk_size=CHUNK, parallel=2)) == data
    gets = [call.range for call in aws_proxy.calls if call.op == "s3:GetObject"]
    assert gets.count(second) == 2
    assert dropped.fired == 1


async def test_persistent_body_failure_gives_up_transient(
    aws_config: AwsConfig, s3_bucket: str, aws_proxy: AwsFaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range that keeps failing raises TransientError after RANGE_ATTEMPTS tries."""
    monkeypatch.setattr(s3_module, "RANGE_RETRY_BASE", 0.01)
    aws_proxy.add("s3:GetObject", "cut")
    async with S3Source(aws_config, make_s3_config()) as direct:
        info = await direct.put(s3_bucket, "obj", os.urandom(CHUNK))
    async with S3Source(make_aws_config(aws_proxy.url, max_attempts=1), make_s3_config()) as s3:
        with pytest.raises(TransientError) as err:
            await collect(s3, info, chunk_size=CHUNK, parallel=1)
    assert err.value.code == "connection"
    assert aws_proxy.count("s3:GetObject") == s3_module.RANGE_ATTEMPTS


# -- delete, put, buckets ----------------------------------------------------------------------


async def test_delete_is_conditional_on_the_pinned_etag(aws_config: AwsConfig, s3_bucket: str) -> None:
    """An object replaced after HEAD survives the delete (SourceChanged); the pinned one goes."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        pinned = await s3.put(s3_bucket, "obj", b"first")
        await s3.put(s3_bucket, "obj", b"second version")
        with pytest.raises(SourceChanged):
            await s3.delete(pinned)
        current = await s3.head(s3_bucket, "obj")
        assert current.size == len(b"second version")
        await s3.delete(current)
        with pytest.raises(SourceMissing):
            await s3.head(s3_bucket, "obj")


async def test_delete_of_already_deleted_object_succeeds(aws_config: AwsConfig, s3_bucket: str) -> None:
    """A redelivered job deleting again is fine: already gone means done."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        info = await s3.put(s3_bucket, "obj", b"data")
        await s3.delete(info)
        await s3.delete(info)
        with pytest.raises(SourceMissing):
            await s3.head(s3_bucket, "obj")


async def test_check_and_create_bucket(aws_config: AwsConfig) -> None:
    """HeadBucket passes for an existing bucket, fails permanently for a missing one."""
    name = random_name()
    async with S3Source(aws_config, make_s3_config()) as s3:
        with pytest.raises(PermanentError) as err:
            await s3.check_bucket(name)
        assert err.value.code == "no_such_bucket"
        await s3.create_bucket(name)
        await s3.create_bucket(name)  # idempotent
        await s3.check_bucket(name)


async def test_put_into_missing_bucket_is_permanent(aws_config: AwsConfig) -> None:
    """NoSuchBucket is permanent with its own code."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        with pytest.raises(PermanentError) as err:
            await s3.put(random_name(), "k", b"x")
    assert err.value.code == "no_such_bucket"


async def test_explicit_credentials_are_used(moto_server: str, s3_bucket: str) -> None:
    """Configured keys work without the environment chain."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name, None)  # restored by the autouse env fixture's monkeypatch
    aws = make_aws_config(moto_server, access_key_id=SecretStr("AKIDEXAMPLE"),
                          secret_access_key=SecretStr("explicit-secret"))
    async with S3Source(aws, make_s3_config()) as s3:
        await s3.check_bucket(s3_bucket)


def test_half_a_key_pair_is_a_config_error() -> None:
    """An access key without its secret is refused instead of silently using another identity."""
    with pytest.raises(ValidationError, match="must be set together"):  # when the config loads
        AwsConfig(access_key_id=SecretStr("AKID"))
    half = AwsConfig().model_copy(update={"access_key_id": SecretStr("AKID")})  # copies skip validation
    with pytest.raises(ConfigError):
        client_kwargs(half)


def test_client_config_carries_settings() -> None:
    """Region, timeouts, retries, addressing style and checksum modes reach botocore's Config."""
    aws = AwsConfig(region="eu-central-1", retry_mode="adaptive", max_attempts=7, connect_timeout=3,
                    read_timeout=45)
    s3cfg = S3Config(addressing_style="path", request_checksum_calculation="when_required",
                     response_checksum_validation="when_required")
    cfg = make_client_config(aws, s3cfg)
    assert cfg.region_name == "eu-central-1"
    assert (cfg.connect_timeout, cfg.read_timeout) == (3, 45)
    assert cfg.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert cfg.s3 == {"addressing_style": "path"}
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.user_agent == USER_AGENT and USER_AGENT.startswith("recording-storage/")
    assert f"botocore/{botocore_version}" in USER_AGENT


@pytest.mark.parametrize("value", [
    "Sun, 06 Dec 2026 14:57:14 GMT", "Mon, 29 Feb 2016 00:00:00 GMT", "2026-12-06T14:57:14.000Z",
    "2026-12-06T14:57:14.123456+01:00", "2026-12-06T14:57:14", "2026-12-06", "1765032000", 1765032000.5,
    "Sun, 06 Dec 2026 14:57:14 +0100",
])
def test_fast_timestamps_are_botocores_instants(value: str | float) -> None:
    """Every form parses to the instant (and awareness) botocore's own parser gives."""
    ours, theirs = parse_aws_timestamp(value), parse_timestamp(value)
    assert ours == theirs and (ours.tzinfo is None) == (theirs.tzinfo is None)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_http_dates_and_iso_timestamps_round_trip(moment: datetime) -> None:
    http_date = format_datetime(moment.replace(microsecond=0), usegmt=True)
    assert parse_aws_timestamp(http_date) == parse_timestamp(http_date) == moment.replace(microsecond=0)
    iso = moment.isoformat().replace("+00:00", "Z")
    assert parse_aws_timestamp(iso) == parse_timestamp(iso) == moment


# -- endpoint policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://s3.example.com", "http://10.0.0.5:9000", "http://[2001:db8::1]:9000"])
async def test_plain_http_to_remote_host_is_refused(url: str) -> None:
    """Requests and recordings must not cross a network in clear text unless explicitly allowed."""
    with pytest.raises(ConfigError) as err:
        async with S3Source(AwsConfig(endpoint_url=url), S3Config()):
            pass
    assert "allow_insecure_http" in str(err.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://localhost:4566", "http://[::1]:9000",
                                 "https://s3.example.com"])
def test_loopback_http_and_https_are_accepted(url: str) -> None:
    """Local stacks and TLS endpoints need no opt-in."""
    assert client_kwargs(AwsConfig(endpoint_url=url))["endpoint_url"] == url


def test_insecure_http_allowed_by_flag() -> None:
    """A trusted-LAN store can be reached over http when the operator opts in."""
    aws = AwsConfig(endpoint_url="http://minio.lan:9000", allow_insecure_http=True)
    assert client_kwargs(aws)["endpoint_url"] == "http://minio.lan:9000"


def test_endpoint_must_be_http_url() -> None:
    """A typo'd scheme is a configuration error, not a confusing connection failure."""
    with pytest.raises(ConfigError):
        client_kwargs(AwsConfig(endpoint_url="s3.example.com"))


# -- error translation -------------------------------------------------------------------------


def client_error(code: str, status: int, op: str = "GetObject", **extra: str) -> ClientError:
    error: dict[str, Any] = {"Code": code, "Message": "m", **extra}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize(
    ("exc", "resource", "kind", "code"),
    [
        (client_error("SlowDown", 503), "object", TransientError, "throttled"),
        (client_error("ThrottlingException", 400, "ReceiveMessage"), "queue", TransientError, "throttled"),
        (client_error("InternalError", 500), "object", TransientError, "aws_unavailable"),
        (client_error("502", 502), "object", TransientError, "aws_unavailable"),
        (client_error("RequestTimeout", 400), "object", TransientError, "timeout"),
        (client_error("NoSuchKey", 404), "object", SourceMissing, "source_missing"),
        (client_error("404", 404, "HeadObject"), "object", SourceMissing, "source_missing"),
        (client_error("AccessDenied", 403), "object", PermanentError, "access_denied"),
        (client_error("403", 403, "HeadObject"), "object", PermanentError, "access_denied"),
        (client_error("PreconditionFailed", 412), "object", SourceChanged, "source_changed"),
        (client_error("412", 412, "HeadObject"), "object", SourceChanged, "source_changed"),
        (client_error("NoSuchBucket", 404), "object", PermanentError, "no_such_bucket"),
        (client_error("404", 404, "HeadBucket"), "bucket", PermanentError, "no_such_bucket"),
        (client_error("AWS.SimpleQueueService.NonExistentQueue", 400, "GetQueueUrl",
                      QueryErrorCode="QueueDoesNotExist"), "queue", PermanentError, "queue_missing"),
        (client_error("ExpiredToken", 400), "object", TransientError, "aws_auth"),
        (client_error("InvalidArgument", 400), "object", PermanentError, "aws_client_error"),
        (EndpointConnectionError(endpoint_url="http://h/b/k"), "object", TransientError, "connection"),
        (ReadTimeoutError(endpoint_url="http://h/b/k"), "object", TransientError, "connection"),
        (TimeoutError(), "object", TransientError, "timeout"),
    ],
)
def test_translate_error(exc: BaseException, resource: Any, kind: type[Exception], code: str) -> None:
    """Each AWS failure family maps to one class and code the worker can act on."""
    error = translate_error(exc, what="S3 GetObject b/k", resource=resource)
    assert type(error) is kind
    assert error.code == code
    assert str(error).startswith("S3 GetObject b/k")


def test_messages_never_carry_presigned_urls_or_signatures() -> None:
    """URL query strings (signatures, tokens) are cut from every translated message."""
    url = ("https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AKIDSECRET%2Fx&X-Amz-Signature=deadbeef"
           "&X-Amz-Security-Token=tok123")
    error = translate_error(EndpointConnectionError(endpoint_url=url), what="S3 GetObject b/k")
    for secret in ("AKIDSECRET", "deadbeef", "tok123"):
        assert secret not in str(error)
    assert "bucket.s3.amazonaws.com/k" in str(error)
    assert "deadbeef" not in scrub("Signature=deadbeef and X-Amz-Signature=deadbeef")


async def test_unreachable_endpoint_is_transient() -> None:
    """Nothing listening: a transient connection error after botocore's own attempts."""
    aws = AwsConfig(endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout=1)
    async with S3Source(aws, S3Config()) as s3:
        with pytest.raises(TransientError) as err:
            await s3.head("bucket", "key")
    assert err.value.code == "connection"



# -- the direct HTTP client and botocore agree ------------------------------------------------


async def test_direct_and_botocore_heads_pin_the_same(aws_config: AwsConfig, s3_bucket: str) -> None:
    """Every field the service reads from a HEAD (size, ETag, type, metadata, date, checksums)
    is the same whether the direct client or botocore asked."""
    async with S3Source(aws_config, make_s3_config()) as s3:
        await s3._client.put_object(  # test set-up only: metadata and a checksum
            Bucket=s3_bucket, Key="meta.mp4", Body=b"x" * 1000, ContentType="video/mp4",
            Metadata={"meeting-id": "42", "Host": "Ada"}, ChecksumAlgorithm="SHA256")
        direct = await s3.head(s3_bucket, "meta.mp4")
    async with S3Source(aws_config, make_s3_config(direct_http=False)) as s3:
        botocore = await s3.head(s3_bucket, "meta.mp4")
    assert direct == botocore
    assert direct.metadata == {"meeting-id": "42", "host": "Ada"}
    assert direct.digests is not None and set(direct.digests.checksums) == {"sha256"}
    assert direct.last_modified is not None and direct.content_type == "video/mp4"


@pytest.mark.parametrize("direct", [True, False], ids=["direct-http", "botocore"])
async def test_missing_object_and_delete_behave_alike(
    aws_config: AwsConfig, s3_bucket: str, direct: bool
) -> None:
    async with S3Source(aws_config, make_s3_config(direct_http=direct)) as s3:
        with pytest.raises(s3_module.SourceMissing):
            await s3.head(s3_bucket, "nothing-here")
        info = await s3.put(s3_bucket, "gone.mp4", b"abc")
        await s3.delete(info)
        with pytest.raises(s3_module.SourceMissing):
            await s3.head(s3_bucket, "gone.mp4")
        await s3.delete(info)  # already gone: done, not an error


# -- range buffers are reused ------------------------------------------------------------------


@pytest.mark.parametrize("direct", [True, False], ids=["direct-http", "botocore"])
async def test_recycled_chunks_serve_the_next_object(
    aws_config: AwsConfig, s3_bucket: str, direct: bool
) -> None:
    """A chunk handed back is released (using it raises) and its buffer reads a later range;
    an object smaller than a chunk gets an exact buffer that is never kept."""
    first, second = os.urandom(3 * CHUNK + 100), os.urandom(2 * CHUNK)
    async with S3Source(aws_config, make_s3_config(direct_http=direct)) as s3:
        seen: dict[int, bytearray] = {}  # kept alive, so a new buffer can never reuse an id
        for data, key in ((first, "one"), (second, "two")):
            info = await s3.put(s3_bucket, key, data)
            got = bytearray()
            async with aclosing(s3.iter_chunks(info, chunk_size=CHUNK, parallel=1)) as chunks:
                async for chunk in chunks:
                    got += chunk
                    buffer = chunk.obj
                    assert isinstance(buffer, bytearray) and len(buffer) == CHUNK
                    seen[id(buffer)] = buffer
                    s3.recycle(chunk)
                    with pytest.raises(ValueError):
                        len(chunk)  # released: a stray use fails instead of reading other bytes
            assert got == data
        assert len(seen) <= 2  # one range in flight plus the one being consumed, reused throughout
        small = await s3.put(s3_bucket, "small", b"tiny")
        (chunk,) = await collect(s3, small, chunk_size=CHUNK)
        assert bytes(chunk) == b"tiny" and len(chunk.obj) == 4  # type: ignore[arg-type]


def test_an_endpoint_behind_an_http_proxy_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = "https://s3.eu-central-1.amazonaws.com/b/k?X-Amz-Signature=s"
    assert not s3_module._uses_proxy(url)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "store.internal.example")
    assert s3_module._uses_proxy(url)
    assert not s3_module._uses_proxy("https://store.internal.example/b/k")
    assert not s3_module._uses_proxy("http://minio.example:9000/b/k")  # no HTTP_PROXY set


async def test_proxied_endpoints_are_read_by_botocore(
    aws_config: AwsConfig, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only botocore's HTTP stack speaks to proxies: such an endpoint never gets a direct request."""
    monkeypatch.setattr(s3_module, "_uses_proxy", lambda url: True)  # as HTTPS_PROXY would make it
    direct: list[str] = []
    original = DirectHttp.request

    async def recording(self: DirectHttp, method: str, *args: Any, **kwargs: Any) -> Any:
        direct.append(method)
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(DirectHttp, "request", recording)
    data = os.urandom(3 * CHUNK)
    async with S3Source(aws_config, make_s3_config()) as s3:
        await s3.put(s3_bucket, "via-proxy", data)
        info = await s3.head(s3_bucket, "via-proxy")
        assert b"".join(await collect(s3, info, chunk_size=CHUNK)) == data
        await s3.delete(info)
    assert direct == []


# -- our signer signs the direct requests, proven against botocore ---------------------------


def _params_of(
    method: str, url: str, headers: Mapping[str, str], bucket: str, key: str
) -> tuple[str, dict[str, Any]]:
    """The botocore operation and parameters a direct request was presigned for."""
    operation = {"HEAD": "head_object", "GET": "get_object", "DELETE": "delete_object"}[method]
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if "If-Match" in headers:
        params["IfMatch"] = headers["If-Match"]
    if "x-amz-checksum-mode" in headers:
        params["ChecksumMode"] = headers["x-amz-checksum-mode"]
    query = dict(pair.split("=", 1) for pair in urlsplit(url).query.split("&"))
    if "versionId" in query:
        params["VersionId"] = unquote(query["versionId"])
    return operation, params


async def assert_botocore_signs_alike(client: Any, method: str, url: str, headers: Mapping[str, str],
                                      bucket: str, key: str) -> None:
    """botocore, asked at the URL's own X-Amz-Date with the client's credentials, makes that URL."""
    operation, params = _params_of(method, url, headers, bucket, key)
    query = dict(pair.split("=", 1) for pair in urlsplit(url).query.split("&"))
    with botocore_clock(datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)):
        theirs = await client.generate_presigned_url(operation, Params=params,
                                                     ExpiresIn=s3_module.PRESIGN_EXPIRES)
    assert urlsplit(url)[:3] == urlsplit(theirs)[:3]
    assert sorted(urlsplit(url).query.split("&")) == sorted(urlsplit(theirs).query.split("&"))


@pytest.fixture
def direct_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, str]]]:
    """Every request the direct client sends: (method, URL, headers)."""
    sent: list[tuple[str, str, dict[str, str]]] = []
    original = DirectHttp.request

    async def recording(self: DirectHttp, method: str, url: str, headers: Mapping[str, str],
                        *args: Any) -> Any:
        sent.append((method, url, dict(headers)))
        return await original(self, method, url, headers, *args)

    monkeypatch.setattr(DirectHttp, "request", recording)
    return sent


def count_presigns(client: Any, monkeypatch: pytest.MonkeyPatch,
                   tamper: Callable[[str], str] = lambda url: url) -> list[str]:
    """Record (and optionally alter) every URL ``client.generate_presigned_url`` makes."""
    made: list[str] = []
    original = client.generate_presigned_url

    async def presign(*args: Any, **kwargs: Any) -> str:
        made.append(tamper(await original(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(client, "generate_presigned_url", presign)
    return made


SIGNED_KEY = "rec/Grüße + (1) & 'x'//../a b.mp4"


async def test_direct_requests_are_signed_by_the_learned_template(
    aws_config: AwsConfig, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
    direct_requests: list[tuple[str, str, dict[str, str]]],
) -> None:
    """botocore presigns once per request shape; every later URL is ours, and botocore, asked at
    the same date, makes exactly that URL."""
    data = os.urandom(4 * CHUNK + 5)
    async with S3Source(aws_config, make_s3_config()) as s3:
        botocore_urls = count_presigns(s3._client, monkeypatch)
        await s3.put(s3_bucket, SIGNED_KEY, data)
        for _ in range(3):
            info = await s3.head(s3_bucket, SIGNED_KEY)
            assert b"".join(await collect(s3, info, chunk_size=CHUNK)) == data
        await s3.delete(info)
        with pytest.raises(SourceMissing):
            await s3.head(s3_bucket, SIGNED_KEY)
        # HEAD with checksum mode, ranged GET with If-Match, HEAD before the delete, DELETE.
        assert len(botocore_urls) == 4
        assert len(direct_requests) == 3 * (1 + 5) + 2 + 1
        for method, url, headers in direct_requests:
            await assert_botocore_signs_alike(s3._client, method, url, headers, s3_bucket, SIGNED_KEY)


def _add_query_field(url: str) -> str:
    return url + "&x-unknown=1"


def _other_algorithm(url: str) -> str:
    return url.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")


def _express_scope(url: str) -> str:
    return url.replace("%2Fs3%2Faws4_request", "%2Fs3express%2Faws4_request")


def _other_signature(url: str) -> str:
    signature = url.rpartition("X-Amz-Signature=")[2]
    return url.replace(signature, "0" * len(signature))


@pytest.mark.parametrize(("tamper", "reason"), [
    (_add_query_field, "an unknown query field"),
    (_other_algorithm, "another signing algorithm"),
    (_express_scope, "an unexpected credential scope"),
    (_other_signature, "our signature differs from botocore's"),
])
async def test_a_url_our_signer_does_not_reproduce_stays_botocores(
    aws_config: AwsConfig, monkeypatch: pytest.MonkeyPatch, tamper: Callable[[str], str], reason: str
) -> None:
    """A botocore URL with an unknown query field, another algorithm or scope, or a signature
    ours differs from teaches nothing: botocore signs every later request of that bucket and
    operation, while another operation still learns its template."""
    params = {"Bucket": "bkt", "Key": "k"}
    async with S3Source(aws_config, make_s3_config()) as s3:
        tampering = [True]
        made = count_presigns(s3._client, monkeypatch, lambda url: tamper(url) if tampering[0] else url)
        with capture_logs() as logs:
            urls = [await s3._presign("head_object", "HEAD", params, {}) for _ in range(3)]
        assert urls == made and len(made) == 3
        assert ("bkt", "head_object") in s3._botocore_signs
        assert [e for e in logs if e["event"] == "s3_presign_by_botocore"] == [{
            "event": "s3_presign_by_botocore", "log_level": "debug", "bucket": "bkt",
            "operation": "head_object", "reason": reason}]  # once, and never the URL
        tampering[0] = False
        for _ in range(3):
            await s3._presign("delete_object", "DELETE", params, {})
        assert len(made) == 4 and ("bkt", "delete_object") not in s3._botocore_signs
        assert await s3._presign("head_object", "HEAD", params, {}) == made[-1] and len(made) == 5


async def test_templates_are_learned_again(aws_config: AwsConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template older than TEMPLATE_TTL is not used: botocore presigns and teaches it anew, so
    what botocore learned meanwhile (a bucket's region) reaches our URLs."""
    params = {"Bucket": "bkt", "Key": "k"}
    async with S3Source(aws_config, make_s3_config()) as s3:
        made = count_presigns(s3._client, monkeypatch)
        for _ in range(3):
            await s3._presign("head_object", "HEAD", params, {})
        assert len(made) == 1
        monkeypatch.setattr(s3_module, "TEMPLATE_TTL", 0.0)
        for _ in range(3):
            await s3._presign("head_object", "HEAD", params, {})
        assert len(made) == 4 and ("bkt", "head_object") not in s3._botocore_signs


async def test_unsigned_clients_stay_with_botocore(
    aws_config: AwsConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with S3Source(aws_config, make_s3_config()) as s3:
        s3._credentials[None] = None  # as a client without credentials has
        made = count_presigns(s3._client, monkeypatch)
        for _ in range(2):
            await s3._presign("head_object", "HEAD", {"Bucket": "bkt", "Key": "k"}, {})
        assert len(made) == 2 and ("bkt", "head_object") in s3._botocore_signs


async def test_refreshed_credentials_sign_the_next_url(
    aws_config: AwsConfig, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
    direct_requests: list[tuple[str, str, dict[str, str]]],
) -> None:
    """The credentials the client signs with are read per URL: once a role's keys expire and
    are refreshed (IRSA, web identity), the next URL carries and is signed with the new keys, as
    botocore's would be."""
    clock = [datetime.now(UTC)]
    issued = iter(range(1, 100))

    async def assume_role() -> dict[str, str]:
        n = next(issued)
        return {"access_key": f"AKIDROLE{n}", "secret_key": f"role-secret-{n}", "token": f"role-token-{n}",
                "expiry_time": (clock[0] + timedelta(hours=1)).isoformat()}

    creds = AioRefreshableCredentials(
        "AKIDROLE0", "role-secret-0", "role-token-0", clock[0] + timedelta(hours=1), assume_role,
        "assume-role-with-web-identity", time_fetcher=lambda: clock[0])
    session_of = aws_module.make_session

    def with_role() -> Any:
        session = session_of()
        session._credentials = creds  # what the default chain finds in a pod with a web identity
        return session

    monkeypatch.setattr(aws_module, "make_session", with_role)
    async with S3Source(aws_config, make_s3_config()) as s3:
        info = await s3.put(s3_bucket, "rotating", b"abc")
        await s3.head(s3_bucket, "rotating")
        await s3.head(s3_bucket, "rotating")
        for method, url, headers in direct_requests:
            await assert_botocore_signs_alike(s3._client, method, url, headers, s3_bucket, "rotating")
        clock[0] += timedelta(hours=2)  # the role's keys have expired: the next use refreshes them
        await s3.head(s3_bucket, "rotating")
        await s3.delete(info)
        for method, url, headers in direct_requests[2:]:
            await assert_botocore_signs_alike(s3._client, method, url, headers, s3_bucket, "rotating")
    keys = [unquote(url).partition("X-Amz-Credential=")[2].partition("/")[0] for _, url, _ in direct_requests]
    assert keys == ["AKIDROLE0", "AKIDROLE0", "AKIDROLE1", "AKIDROLE1", "AKIDROLE1"]


async def test_a_bucket_with_own_keys_is_signed_with_them(
    aws_config: AwsConfig, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
    direct_requests: list[tuple[str, str, dict[str, str]]],
) -> None:
    cfg = make_s3_config(buckets={s3_bucket: {
        "access_key_id": "AKIDBUCKET", "secret_access_key": "bucket-secret", "addressing_style": "path"}})
    async with S3Source(aws_config, cfg) as s3:
        info = await s3.put(s3_bucket, "own-keys", b"abc")
        for _ in range(3):
            await s3.head(s3_bucket, "own-keys")
        client = await s3._client_for(s3_bucket)
        assert (s3_bucket, "head_object") not in s3._botocore_signs
        assert any(shape[:2] == (s3_bucket, "head_object") for shape in s3._templates)
        for method, url, headers in direct_requests:
            assert "AKIDBUCKET%2F" in url
            await assert_botocore_signs_alike(client, method, url, headers, s3_bucket, info.key)


async def test_the_fault_proxy_checks_every_presigned_signature(
    aws_config: AwsConfig, aws_proxy: AwsFaultProxy, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
    direct_requests: list[tuple[str, str, dict[str, str]]],
) -> None:
    """Every test through the proxy proves our URLs valid: the proxy verifies each presigned
    request's signature (moto does not), and refuses a wrong one as S3 does."""
    data = os.urandom(2 * CHUNK)
    async with S3Source(make_aws_config(aws_proxy.url), make_s3_config()) as s3:
        info = await s3.put(s3_bucket, SIGNED_KEY, data)
        for _ in range(2):
            assert b"".join(await collect(s3, await s3.head(s3_bucket, SIGNED_KEY), chunk_size=CHUNK)) == data
        assert aws_proxy.signatures_checked == len(direct_requests) == 6
        original = DirectHttp.request

        async def forged(self: DirectHttp, method: str, url: str, *args: Any) -> Any:
            signature = url.rpartition("X-Amz-Signature=")[2]
            return await original(self, method, url.replace(signature, signature[::-1]), *args)

        monkeypatch.setattr(DirectHttp, "request", forged)
        # A HEAD's refusal has no body, so only its status tells (as on S3).
        with pytest.raises(PermanentError, match=r"\(HTTP 403\)"):
            await s3.head(s3_bucket, SIGNED_KEY)
        with pytest.raises(TransientError, match="SignatureDoesNotMatch") as refused:
            await collect(s3, info, chunk_size=CHUNK)
        assert refused.value.code == "aws_auth"
