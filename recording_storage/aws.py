"""The shared AWS edge: one place that turns ``AwsConfig`` into aiobotocore clients and
botocore failures into this service's error classes.

S3 and SQS share it so both clients get the same endpoint rules, timeouts, retry policy and
credential handling, and so the worker sees one vocabulary of error codes whichever AWS call
failed. Every message built here is assembled from AWS error codes and our own context, and
any URL in it loses its query string, so presigned signatures and tokens never leak.
"""

from __future__ import annotations

import ipaddress
import platform
import re
from contextlib import AsyncExitStack
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import AioSession, get_session
from botocore import __version__ as botocore_version
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    InvalidRegionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.utils import parse_timestamp, validate_region_name

from . import __version__
from .config import AwsConfig, S3Config
from .errors import ConfigError, ConfigProblem, PermanentError, RecordingStorageError, TransientError

__all__ = [
    "ClientOwner",
    "AWS_ERRORS",
    "USER_AGENT",
    "SourceChanged",
    "SourceMissing",
    "bucket_settings",
    "check_endpoint",
    "client_kwargs",
    "error_codes",
    "make_client_config",
    "make_session",
    "parse_aws_timestamp",
    "scrub",
    "signing_credentials",
    "translate_error",
]

log = structlog.get_logger(__name__)

Resource = Literal["object", "bucket", "queue", "other"]

_THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "RequestLimitExceeded", "TooManyRequestsException", "SlowDown",
    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "KmsThrottled",
    "AWS.SimpleQueueService.RequestThrottled", "EC2ThrottledException",
})
_TRANSIENT = frozenset({
    "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable",
    "ServiceUnavailableException", "PriorRequestNotComplete", "OperationAborted",
    "AWS.SimpleQueueService.ServiceUnavailable", "KmsUnavailable",
})
# Credential trouble belongs to this process, not to the message: classifying it as
# permanent would move every job into the DLQ while an IAM role or clock is being fixed.
_CREDENTIALS = frozenset({
    "ExpiredToken", "ExpiredTokenException", "RequestExpired", "RequestTimeTooSkewed",
    "InvalidAccessKeyId", "InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidToken",
    "UnrecognizedClientException", "IncompleteSignature", "MissingAuthenticationToken",
})
_QUEUE_MISSING = frozenset({
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue",
})

_URL_RE = re.compile(r"(https?://[^\s?#\"'<>]+)[?#][^\s\"'<>]*", re.IGNORECASE)
_SECRETISH_RE = re.compile(
    r"(X-Amz-(?:Signature|Credential|Security-Token)=|AWSAccessKeyId=|Signature=)[^&\s\"'<>]*",
    re.IGNORECASE,
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

# The failure families translate_error understands; anything else is a bug and propagates as is.
AWS_ERRORS: tuple[type[BaseException], ...] = (
    ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError,
)


class SourceMissing(PermanentError):
    """The source object (or its bucket) is not there: a job for it can never succeed as sent.

    Never swallowed: the original service acked such messages and lost recordings silently.
    """

    code = "source_missing"


class SourceChanged(TransientError):
    """The object no longer has the ETag we pinned (overwritten mid-transfer or before delete).

    Transient on purpose: a redelivery HEADs again, pins the new version and transfers it whole.
    """

    code = "source_changed"


def scrub(text: str, limit: int = 300) -> str:
    """Drop URL query strings and signature parameters, then cap the length.

    Presigned URLs are bearer credentials, and botocore puts the request URL into some
    connection errors; cutting every query string is simpler than recognising each scheme.
    """
    text = _URL_RE.sub(r"\1?…", text)
    text = _SECRETISH_RE.sub(r"\1…", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(aws: AwsConfig, *, where: str = "aws") -> None:
    """Refuse endpoints that would send signed requests and recordings in clear text.

    Plain http is fine for a loopback test stack; anywhere else it needs the explicit
    ``aws.allow_insecure_http`` switch, and even then it is logged as a warning at start.
    """
    if aws.endpoint_url is None:
        return
    parts = urlsplit(aws.endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = scrub(aws.endpoint_url, 120)
        raise ConfigError([ConfigProblem(
            f"{where}.endpoint_url", f"must be an http(s) URL with a host (got {shown!r})")])
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        if not aws.allow_insecure_http:
            raise ConfigError([ConfigProblem(
                f"{where}.endpoint_url",
                f"plain http to non-loopback host {parts.hostname!r} would send requests and recordings "
                "unencrypted; use https, or set aws.allow_insecure_http: true for a trusted network",
            )])
        log.warning("aws_insecure_http_endpoint", host=parts.hostname)


_shared_loader: Any = None
# Fixed once: botocore otherwise rebuilds and sanitises its User-Agent (about 20 components,
# character by character) twice per request, a tenth of a small request's client CPU.
USER_AGENT = (f"recording-storage/{__version__} botocore/{botocore_version} "
              f"Python/{platform.python_version()} {platform.system()}/{platform.release()}")


def parse_aws_timestamp(value: Any) -> datetime:
    """botocore's timestamp parsing, with fast paths for the two forms S3 sends.

    botocore hands every timestamp to dateutil's general parser (a third of the client CPU of a
    HeadObject). HTTP dates (``Last-Modified``: ``Sun, 06 Dec 2026 14:57:14 GMT``) and ISO 8601
    with a zone (XML bodies) are parsed by the standard library to the same instant, in UTC;
    anything else (epoch seconds, other spellings) goes to botocore's parser as before.
    """
    if isinstance(value, str):
        try:
            parsed = parsedate_to_datetime(value) if value.endswith("GMT") else datetime.fromisoformat(value)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    result: datetime = parse_timestamp(value)
    return result


def make_session() -> AioSession:
    """A fresh aiobotocore session; each client module owns one for its lifetime.

    Sessions share one botocore data loader: parsing the S3/SQS service models is most of
    the cost of creating a client, and the models are the same for every session. Responses
    are parsed with ``parse_aws_timestamp`` (the parser factory's documented setting).
    """
    global _shared_loader
    session = get_session()
    if _shared_loader is None:
        _shared_loader = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _shared_loader)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_aws_timestamp)
    return session


def make_client_config(
    aws: AwsConfig,
    s3: S3Config | None = None,
    *,
    read_timeout: float | None = None,
    max_pool_connections: int = 10,
) -> Config:
    """Botocore settings shared by every client.

    ``read_timeout`` lets the SQS client raise the floor above its long-poll wait.
    """
    kwargs: dict[str, Any] = {
        "region_name": aws.region,
        "connect_timeout": aws.connect_timeout,
        "read_timeout": aws.read_timeout if read_timeout is None else read_timeout,
        # botocore's "max_attempts" counts retries only; ours counts the first attempt too.
        "retries": {"mode": aws.retry_mode, "total_max_attempts": aws.max_attempts},
        "max_pool_connections": max_pool_connections,
        "user_agent": USER_AGENT,
    }
    if s3 is not None:
        kwargs["s3"] = {"addressing_style": s3.addressing_style}
        # SigV4 for presigned URLs too (botocore presigns with SigV2 on custom endpoints), so the
        # direct reader's URLs sign If-Match and work in regions that never had SigV2.
        kwargs["signature_version"] = "s3v4"
        kwargs["request_checksum_calculation"] = s3.request_checksum_calculation
        kwargs["response_checksum_validation"] = s3.response_checksum_validation
    return Config(**kwargs)


def client_kwargs(aws: AwsConfig, *, where: str = "aws") -> dict[str, Any]:
    """Arguments for ``session.create_client`` besides the service name and ``config``.

    Explicit keys win over the default chain only when configured; half a key pair is a
    configuration error rather than a silent fall-back to some other identity.
    """
    check_endpoint(aws, where=where)
    try:
        validate_region_name(aws.region)
    except InvalidRegionError:
        # botocore would raise this from create_client, as a traceback at start-up.
        raise ConfigError([ConfigProblem(
            f"{where}.region", f"{aws.region!r} is not an AWS region name (e.g. eu-central-1)")]) from None
    kwargs: dict[str, Any] = {"region_name": aws.region}
    if aws.endpoint_url is not None:
        kwargs["endpoint_url"] = aws.endpoint_url
    if (aws.access_key_id is None) != (aws.secret_access_key is None):
        raise ConfigError([ConfigProblem(
            f"{where}.access_key_id",
            "access_key_id and secret_access_key must be set together (or neither)")])
    if aws.access_key_id is not None and aws.secret_access_key is not None:
        kwargs["aws_access_key_id"] = aws.access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = aws.secret_access_key.get_secret_value()
        if aws.session_token is not None:
            kwargs["aws_session_token"] = aws.session_token.get_secret_value()
    return kwargs


async def signing_credentials(session: AioSession, kwargs: dict[str, Any]) -> Any | None:
    """The credentials object a client made by ``session.create_client(**kwargs)`` signs with.

    Explicit keys: the same fixed ``AioCredentials`` create_client builds from them. Otherwise
    the session's default chain, which create_client took from this very call (the session keeps
    it), so a refreshable object (IRSA, assumed roles, instance profiles) refreshes for both.
    Call it once per client: with no credentials found it would search the chain again.
    ``None``: unsigned. Hold the object, never its frozen keys: ``get_frozen_credentials`` per
    request is what refreshes them.
    """
    if kwargs.get("aws_access_key_id") is not None and kwargs.get("aws_secret_access_key") is not None:
        return AioCredentials(access_key=kwargs["aws_access_key_id"],
                              secret_key=kwargs["aws_secret_access_key"],
                              token=kwargs.get("aws_session_token"))
    return await session.get_credentials()


def bucket_settings(aws: AwsConfig, s3: S3Config, bucket: str) -> tuple[AwsConfig, S3Config] | None:
    """The settings of ``bucket``'s own client, or ``None`` when it uses the default client.

    A bucket entry in ``s3.buckets`` overrides only what it sets: endpoint, region, addressing
    style, checksums, plain-http permission, conditional deletes, direct reads and credentials. Its own key
    pair replaces the global one (session token included); without one the global keys, else the
    AWS default chain, apply. Values were validated when the configuration loaded.
    """
    src = s3.buckets.get(bucket)
    if src is None:
        return None
    aws_update: dict[str, Any] = {}
    if src.endpoint is not None:
        aws_update["endpoint_url"] = src.endpoint
    if src.region:
        aws_update["region"] = src.region
    if src.allow_insecure_http is not None:
        aws_update["allow_insecure_http"] = src.allow_insecure_http
    if src.access_key_id is not None:
        aws_update.update(access_key_id=src.access_key_id, secret_access_key=src.secret_access_key,
                          session_token=src.session_token)
    s3_update = {name: value for name, value in (
        ("addressing_style", src.addressing_style),
        ("request_checksum_calculation", src.request_checksum_calculation),
        ("response_checksum_validation", src.response_checksum_validation),
        ("conditional_delete", src.conditional_delete),
        ("verify", src.verify),
        ("direct_http", src.direct_http),
    ) if value is not None}
    return aws.model_copy(update=aws_update), s3.model_copy(update=s3_update)


def error_codes(exc: ClientError) -> tuple[frozenset[str], int]:
    """The AWS error code(s) and HTTP status of a ClientError.

    SQS's JSON protocol reports a new-style code plus the query-era one
    (``QueryErrorCode``); matching on both keeps the tables below short and version-proof.
    """
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    err = response.get("Error") or {}
    codes = frozenset(str(c) for c in (err.get("Code"), err.get("QueryErrorCode")) if c)
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return codes, status


def _classify_client_error(
    codes: frozenset[str], status: int, what: str, resource: Resource
) -> RecordingStorageError:
    shown = next((c for c in sorted(codes) if not c.isdigit()), None) or next(iter(codes), "error")
    detail = f"{what}: {shown} (HTTP {status})"
    if codes & _THROTTLING or status in (429, 503):
        return TransientError(f"{detail}, throttled", code="throttled")
    if codes & {"RequestTimeout", "RequestTimeoutException"}:
        return TransientError(detail, code="timeout")
    if codes & _TRANSIENT or status >= 500:
        return TransientError(detail, code="aws_unavailable")
    if codes & _CREDENTIALS:
        return TransientError(f"{detail}; check AWS credentials and clock", code="aws_auth")
    if "PreconditionFailed" in codes or status == 412:
        return SourceChanged(f"{detail}; the object changed since its ETag was pinned")
    if "NoSuchBucket" in codes or (resource == "bucket" and status == 404):
        return PermanentError(f"{detail}; the bucket does not exist", code="no_such_bucket")
    if codes & _QUEUE_MISSING:
        return PermanentError(f"{detail}; the queue does not exist", code="queue_missing")
    if codes & {"NoSuchKey", "NoSuchVersion"} or (resource == "object" and status == 404):
        return SourceMissing(f"{detail}; the object does not exist")
    if status == 403 or codes & {"AccessDenied", "AccessDeniedException", "AllAccessDisabled"}:
        # S3 also answers 403 for a missing key when s3:ListBucket is not granted.
        return PermanentError(f"{detail}; access denied (missing permission or KMS key access, or a "
                              "missing key without s3:ListBucket)", code="access_denied")
    if "InvalidRange" in codes or status == 416:
        return PermanentError(f"{detail}; range not satisfiable", code="invalid_range")
    if status == 404:
        return PermanentError(f"{detail}; not found", code="not_found")
    return PermanentError(detail, code="aws_client_error")


def translate_error(exc: BaseException, *, what: str, resource: Resource = "other") -> RecordingStorageError:
    """Map a botocore/aiohttp failure to TransientError or PermanentError with a short code.

    ``what`` names the operation and target (e.g. ``"S3 GetObject bucket/key"``); it is the
    start of the message. ``resource`` says what a bare 404 means (HEAD responses carry only
    a status, no error code). Unknown failures are transient: the queue's redrive policy
    bounds a retry loop, while a wrong "permanent" would dead-letter good jobs.
    """
    if isinstance(exc, RecordingStorageError):
        return exc
    if isinstance(exc, ClientError):
        codes, status = error_codes(exc)
        return _classify_client_error(codes, status, what, resource)
    if isinstance(exc, ParamValidationError):
        return PermanentError(f"{what}: invalid request ({scrub(str(exc), 200)})", code="invalid_request")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return TransientError(f"{what}: no usable AWS credentials", code="aws_auth")
    if isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError | aiohttp.ClientError):
        return TransientError(f"{what}: connection problem ({type(exc).__name__}: {scrub(str(exc), 200)})",
                              code="connection")
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what}: timed out", code="timeout")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{what}: {type(exc).__name__}: {scrub(str(exc), 200)}", code="aws_error")
    return TransientError(f"{what}: unexpected {type(exc).__name__}", code="aws_error")


class ClientOwner:
    """Owns one aiobotocore client (and anything else entered on its stack) per ``async with``.

    S3Source and JobQueue share this lifecycle: open the client, run the subclass's set-up
    inside the same stack (so a failing set-up still closes the client), close it all on exit.
    """

    _what = "client"

    def __init__(self) -> None:
        self._stack: AsyncExitStack | None = None
        self._client_obj: Any = None
        self._session: AioSession | None = None  # the client's, for ``signing_credentials``

    async def _open(self, service: str, config: Config, kwargs: dict[str, Any]) -> None:
        async with AsyncExitStack() as stack:
            self._session = make_session()
            self._client_obj = await stack.enter_async_context(
                self._session.create_client(service, config=config, **kwargs)
            )
            self._stack = stack
            await self._after_open()
            self._stack = stack.pop_all()

    async def _after_open(self) -> None:
        """Set-up that needs the client (e.g. resolving queue URLs)."""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._client_obj = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def _client(self) -> Any:
        if self._client_obj is None:
            raise RuntimeError(f"{self._what} used outside 'async with'")
        return self._client_obj
