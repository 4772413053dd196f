"""The S3 source: HEAD to pin a version, ranged GETs to stream it, conditional delete.

Every read after the HEAD carries ``If-Match`` with the pinned ETag, and every answer is checked
against the pin itself (ETag, version id, ``Content-Range`` total), since not every S3-compatible
store honours the header: an object overwritten mid-transfer fails loudly (``SourceChanged``)
instead of producing a file spliced from two versions. Ranges run ahead of the consumer in a
bounded window: download overlaps encryption and upload while memory stays at about
``chunk_size x (parallel_ranges + 1)`` per object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
import urllib.request
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import structlog
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from .aws import (
    AWS_ERRORS,
    ClientOwner,
    SourceChanged,
    SourceMissing,
    bucket_settings,
    client_kwargs,
    error_codes,
    make_client_config,
    make_session,
    scrub,
    signing_credentials,
    translate_error,
)
from .config import AwsConfig, S3Config
from .direct_http import DirectAnswer, DirectHttp
from .errors import PermanentError, TransientError
from .integrity import CHECKSUM_ALGORITHMS, StoreDigests
from .sigv4 import ALGORITHM, amz_date, encode_key, presign

__all__ = [
    "S3Metrics",
    "ObjectInfo", "S3Source", "SourceChanged", "SourceMissing", "StoreCapabilities", "connection_limit",
]

log = structlog.get_logger(__name__)

# A range GET is idempotent, so a dropped connection mid-body is retried here; botocore's own
# retries end when the response headers arrive and cannot cover the body.
RANGE_ATTEMPTS = 3
RANGE_RETRY_BASE = 0.2  # seconds; doubled per attempt, with jitter
RANGE_RETRY_MAX = 20.0  # seconds, as botocore's standard retry mode caps its backoff
# Bodies are read in pieces of at most this size, so no single read buffers a whole object.
READ_PIECE = 1024 * 1024
PRESIGN_EXPIRES = 900  # seconds a presigned URL is valid; each is used at once
# A learned URL template (see S3Source._presign) is learned again from botocore after this long,
# so what botocore learns meanwhile (a bucket's region after a redirect) reaches our URLs too.
TEMPLATE_TTL = 300.0
_ERROR_FIELD_RE = re.compile(rb"<([A-Za-z]{1,40})>([^<]{0,500})</\1>")


class S3Metrics(Protocol):
    """What the S3 source reports (``metrics.Metrics`` fits): each retry of its own."""

    def retry(self, system: str) -> None: ...


@dataclass(frozen=True)
class ObjectInfo:
    """One source object as HEAD saw it; ``etag`` (and ``version_id``) pin every later read."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str | None = None
    version_id: str | None = None
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    # What the HEAD stated that can prove the content (None: not asked, s3.verify is off).
    digests: StoreDigests | None = field(default=None, hash=False, compare=False)

    @property
    def pinned_version(self) -> str | None:
        """The version id worth sending: ``"null"`` (unversioned) pins nothing the ETag doesn't."""
        return self.version_id if self.version_id and self.version_id != "null" else None


@dataclass(frozen=True)
class StoreCapabilities:
    """What one bucket's store honours, proven with real requests on a probe object.

    ``conditional_delete`` is ``honoured`` (a stale If-Match is refused with 412), ``refused``
    (the store rejects the header: 501 or 400), or ``ignored`` (the probe object was deleted
    despite a stale If-Match). ``checksums`` names the checksum fields HEAD returns with
    checksum mode enabled; ``leftover`` says what the probe could not remove.
    """

    key: str
    honours_range: bool
    range_detail: str
    honours_if_match_get: bool
    conditional_delete: Literal["honoured", "refused", "ignored"]
    delete_detail: str
    versioning: str
    checksums: tuple[str, ...]
    leftover: str | None = None


# Never a real ETag (MD5 hex of some content is possible, but this one names itself).
_STALE_ETAG = '"00000000000000000000000000000000"'
_PROBE_BODY = bytes(range(64))


def _ranges(size: int, chunk: int) -> Iterator[tuple[int, int]]:
    """Inclusive ``(first, last)`` byte pairs covering ``size`` bytes in ``chunk``-sized steps."""
    return ((start, min(start + chunk, size) - 1) for start in range(0, size, chunk))


_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _check_pin(info: ObjectInfo, resp: Mapping[str, Any], first: int, last: int, what: str) -> None:
    """Prove a ranged GET answer belongs to the pinned version and is the range asked for.

    Raises SourceChanged when the ETag, the version id (when pinned) or the object size in
    ``Content-Range`` differ from what HEAD pinned: the bytes are from another version, and
    splicing them into the file would store a mix of two recordings. An answer without
    ``Content-Range`` is left to the length check (a store that ignores Range).
    """
    etag = resp.get("ETag")
    if etag is not None and str(etag) != info.etag:
        raise SourceChanged(f"{what}: the store answered with ETag {etag}, not the pinned {info.etag}")
    version = resp.get("VersionId")
    if info.pinned_version and version is not None and version != info.pinned_version:
        raise SourceChanged(f"{what}: the store answered with version {version}, not the pinned "
                            f"{info.pinned_version}")
    content_range = resp.get("ContentRange")
    if content_range is None:
        return
    match = _CONTENT_RANGE_RE.fullmatch(str(content_range).strip())
    if match is None:
        raise SourceChanged(f"{what}: unreadable Content-Range {content_range!r}")
    start, end, total = match.groups()
    if total != str(info.size):
        raise SourceChanged(f"{what}: the object is now {total} bytes, not the pinned {info.size}")
    if (int(start), int(end)) != (first, last):
        raise PermanentError(f"{what}: the store answered bytes {start}-{end}; it does not honour Range "
                             "requests", code="range_not_honoured")


class _ConditionalDeleteRefused(Exception):
    """The store does not implement DeleteObject with If-Match (internal to ``S3Source.delete``)."""


def _refuses_condition(exc: BaseException) -> bool:
    """A store's way of saying it does not implement a conditional request.

    AWS answered 501 ``NotImplemented`` to DeleteObject with If-Match on general purpose buckets
    before 2024; other stores answer 400 with an error naming the header.
    """
    if not isinstance(exc, ClientError):
        return False
    codes, status = error_codes(exc)
    if status == 501 or "NotImplemented" in codes:
        return True
    if status != 400:
        return False
    err: Mapping[str, Any] = (getattr(exc, "response", None) or {}).get("Error") or {}
    named = " ".join(str(err.get(field) or "") for field in ("Message", "ArgumentName", "Header"))
    return "if-match" in named.lower()


def _error_summary(exc: BaseException) -> str:
    codes, status = error_codes(exc) if isinstance(exc, ClientError) else (frozenset(), 0)
    return f"{', '.join(sorted(codes)) or type(exc).__name__}, HTTP {status}"


def _log_deleted(info: ObjectInfo, check: str) -> None:
    """``delete_check`` says what proved the deleted object was the transferred version."""
    log.info("s3_deleted", bucket=info.bucket, s3_key=info.key, etag=info.etag,
             version_id=info.pinned_version, delete_check=check)


def _required_refused(bucket: str) -> PermanentError:
    return PermanentError(
        f"the store of bucket {bucket} refuses conditional deletes (DeleteObject with If-Match) and "
        "s3.conditional_delete is 'required': the source is kept. Enable versioning on the bucket, or "
        "set conditional_delete to 'auto' to accept a HEAD-compare-DELETE",
        code="conditional_delete_unsupported",
    )


class _RangeBuffers:
    """Range buffers handed back by the consumer (``S3Source.recycle``), kept for the next GETs.

    Why: a fresh 8 MiB buffer costs a page fault per 4 KiB on first touch, which was most of
    the download leg's CPU. At most ``keep`` buffers of each size stay idle; that is the number
    in flight at full load anyway, so keeping them raises no peak.
    """

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._idle: dict[int, list[bytearray]] = {}  # chunk size -> buffers of that size

    def take(self, size: int, *, pooled: bool) -> bytearray:
        """A buffer of ``size`` bytes; ``pooled``: a chunk-sized one that may come back for reuse
        (an object smaller than a chunk gets an exact buffer, never kept: its size is one-off)."""
        if not pooled:
            return bytearray(size)
        idle = self._idle.setdefault(size, [])
        return idle.pop() if idle else bytearray(size)

    def give(self, buffer: bytearray) -> None:
        idle = self._idle.get(len(buffer))
        if idle is not None and len(idle) < self._keep:
            idle.append(buffer)


def _answer_error(answer: DirectAnswer, operation: str) -> ClientError:
    """The ClientError botocore would have raised for ``answer``: one classifier for both paths.

    The error document's simple elements (Code, Message, ArgumentName, ...) become the Error
    fields, as botocore's parser makes them; a HEAD's bodiless error has its status as Code.
    """
    error = {name.decode(): value.decode("utf-8", "replace")
             for name, value in _ERROR_FIELD_RE.findall(answer.body)}
    error.setdefault("Code", str(answer.status))
    error.setdefault("Message", answer.reason)
    return ClientError({
        "Error": error,
        "ResponseMetadata": {"HTTPStatusCode": answer.status, "HTTPHeaders": dict(answer.headers)},
    }, operation)


# botocore operation -> (HTTP method, operation name in errors) for the direct client.
_DIRECT_OPERATIONS = {
    "head_object": ("HEAD", "HeadObject"), "get_object": ("GET", "GetObject"),
    "delete_object": ("DELETE", "DeleteObject"),
}
# Parameters that botocore sends as headers (and so signs into a presigned URL).
_SIGNED_HEADERS = {"IfMatch": "If-Match", "ChecksumMode": "x-amz-checksum-mode"}
# Parameters that botocore sends in the query, under these names.
_QUERY_PARAMS = {"VersionId": "versionId", "PartNumber": "partNumber"}
# Query fields botocore may add of its own, with a fixed value per operation.
_FIXED_QUERY = frozenset({"x-id"})
_AUTH_QUERY = frozenset({
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
    "X-Amz-Security-Token", "X-Amz-Signature",
})
# Statuses botocore's standard retry mode repeats (not 501: "not implemented" stays so).
_RETRIED_STATUS = frozenset({500, 502, 503, 504})
_CHECKSUM_HEADERS = {f"Checksum{a.upper()}": f"x-amz-checksum-{a}" for a in CHECKSUM_ALGORITHMS}
_HEAD_HEADERS = {
    "ETag": "etag", "ContentType": "content-type", "VersionId": "x-amz-version-id",
    "ChecksumType": "x-amz-checksum-type", "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSECustomerAlgorithm": "x-amz-server-side-encryption-customer-algorithm", **_CHECKSUM_HEADERS,
}


async def _backoff(attempt: int) -> None:
    """Sleep before the next attempt: doubling from RANGE_RETRY_BASE, capped, jittered."""
    delay = min(RANGE_RETRY_BASE * 2 ** (attempt - 1), RANGE_RETRY_MAX)
    await asyncio.sleep(delay * random.uniform(0.5, 1.0))


def _retried(exc: BaseException, operation: str) -> bool:
    """Whether botocore's retry handler would repeat the call that failed with ``exc``."""
    code = translate_error(exc, what=operation).code
    if isinstance(exc, ClientError):
        return code in ("throttled", "timeout") or error_codes(exc)[1] in _RETRIED_STATUS
    return code in ("connection", "timeout")


def _head_fields(headers: Mapping[str, str]) -> dict[str, Any]:
    """A HEAD answer's headers under the names botocore's head_object gives them."""
    fields: dict[str, Any] = {
        name: headers[header] for name, header in _HEAD_HEADERS.items() if header in headers}
    if "content-length" in headers:
        fields["ContentLength"] = int(headers["content-length"])
    if "last-modified" in headers:
        with contextlib.suppress(TypeError, ValueError):
            fields["LastModified"] = parsedate_to_datetime(headers["last-modified"])
    fields["Metadata"] = {name[len("x-amz-meta-"):]: value for name, value in headers.items()
                          if name.startswith("x-amz-meta-")}
    return fields


def _range_not_honoured(what: str, got: int, expected: int) -> PermanentError:
    # A store that ignores Range answers 200 with the whole object.
    return PermanentError(f"{what}: got {got} bytes for a {expected}-byte range; the store does not "
                          "honour Range requests", code="range_not_honoured")


def _check_range_answer(
    info: ObjectInfo, answer: Mapping[str, Any], first: int, last: int, what: str
) -> None:
    """``_check_pin``, then the announced length (botocore's field names, either reader)."""
    _check_pin(info, answer, first, last, what)
    length = answer.get("ContentLength")
    if length is not None and int(length) != last - first + 1:
        raise _range_not_honoured(what, int(length), last - first + 1)


def _checked_range(info: ObjectInfo, answer: DirectAnswer, first: int, last: int, what: str) -> int:
    """The bytes a direct range answer put in the buffer, once the answer is proven to be the pin's."""
    headers = answer.headers
    _check_range_answer(info, {
        "ETag": headers.get("etag"), "VersionId": headers.get("x-amz-version-id"),
        "ContentRange": headers.get("content-range"), "ContentLength": headers.get("content-length"),
    }, first, last, what)
    if answer.length > last - first + 1:
        raise _range_not_honoured(what, answer.length, last - first + 1)
    return answer.length


def _uses_proxy(url: str) -> bool:
    """Whether the environment routes ``url`` through an HTTP proxy (then botocore reads it)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")


@dataclass(frozen=True)
class _UrlTemplate:
    """What botocore's presigned URL for one bucket, operation and parameter set looks like,
    minus the parts that change per request (key, parameter values, date, credentials).

    ``query`` lists the request's own query fields in botocore's order: ``(name, parameter,
    value)``, where ``parameter`` names the botocore parameter it carries (else ``value`` is fixed).
    """

    method: str
    scheme: str
    netloc: str
    prefix: str  # the path before the encoded key: "/bucket/" (path-style) or "/" (virtual host)
    region: str
    service: str
    query: tuple[tuple[str, str | None, str], ...]
    learned: float  # time.monotonic()

    def sign(self, params: Mapping[str, Any], headers: Mapping[str, str], creds: Any, now: float,
             timestamp: str | None = None) -> str:
        """The presigned URL for ``params``, signed with ``creds`` (botocore's frozen credentials)."""
        return presign(
            method=self.method, scheme=self.scheme, netloc=self.netloc,
            path=self.prefix + encode_key(params["Key"]),
            query=[(name, value if param is None else str(params[param]))
                   for name, param, value in self.query],
            headers=headers, region=self.region, service=self.service, access_key=creds.access_key,
            secret_key=creds.secret_key, token=creds.token, expires=PRESIGN_EXPIRES,
            timestamp=timestamp or amz_date(now),
        )


class _NotLearned(Exception):
    """botocore's URL is not one our signer makes (the reason says why; never the URL)."""


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """A URL's query as encoded ``(name, value)`` pairs, in order ("+" is not a space here)."""
    return [(name, value) for name, _, value in (pair.partition("=") for pair in query.split("&") if pair)]


def _template_from(url: str, method: str, params: Mapping[str, Any]) -> tuple[_UrlTemplate, str, str]:
    """The template botocore's presigned ``url`` for ``params`` follows, its X-Amz-Date and the
    access key it was signed with.

    Raises _NotLearned for anything our signer does not make: another algorithm (SigV4a), an
    S3 Express session, a query field that is neither ours nor a known fixed one, a parameter
    that is not where botocore puts it, a path that does not end in the key as we encode it.
    """
    parts = urlsplit(url)
    pairs = _query_pairs(parts.query)
    fields = {name: unquote(value) for name, value in pairs}
    if len(fields) != len(pairs):
        raise _NotLearned("a repeated query field")
    if fields.get("X-Amz-Algorithm") != ALGORITHM:
        raise _NotLearned("another signing algorithm")
    if parts.scheme not in ("http", "https") or parts.fragment or "@" in parts.netloc:
        raise _NotLearned("an unusual URL form")
    scope = fields.get("X-Amz-Credential", "").split("/")
    if len(scope) != 5 or scope[3] != "s3" or scope[4] != "aws4_request":
        raise _NotLearned("an unexpected credential scope")
    if fields.get("X-Amz-Expires") != str(PRESIGN_EXPIRES) or "X-Amz-Date" not in fields:
        raise _NotLearned("an unexpected expiry or no date")
    in_query = {_QUERY_PARAMS[name]: name for name in params if name in _QUERY_PARAMS}
    unknown = set(params) - {"Bucket", "Key"} - set(_QUERY_PARAMS) - set(_SIGNED_HEADERS)
    if unknown:
        raise _NotLearned("a parameter our signer does not place")
    query: list[tuple[str, str | None, str]] = []
    for name, _ in pairs:
        if name in _AUTH_QUERY:
            continue
        if name in in_query:
            if fields[name] != str(params[in_query[name]]):
                raise _NotLearned(f"query field {name} does not carry its parameter")
            query.append((name, in_query.pop(name), ""))
        elif name in _FIXED_QUERY:
            query.append((name, None, fields[name]))
        else:
            raise _NotLearned("an unknown query field")
    if in_query:
        raise _NotLearned("a parameter missing from the query")
    key = encode_key(params["Key"])
    if not parts.path.endswith(key) or not parts.path[: len(parts.path) - len(key)].endswith("/"):
        raise _NotLearned("a path that does not end in the key")
    template = _UrlTemplate(method, parts.scheme, parts.netloc, parts.path[: len(parts.path) - len(key)],
                            scope[2], scope[3], tuple(query), time.monotonic())
    return template, fields["X-Amz-Date"], scope[0]


def _same_url(ours: str, theirs: str) -> bool:
    """Whether two presigned URLs are the same request: scheme, host, path, and the same
    encoded query fields (botocore's two signers order them differently)."""
    a, b = urlsplit(ours), urlsplit(theirs)
    return (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path) and sorted(
        _query_pairs(a.query)) == sorted(_query_pairs(b.query))


def connection_limit(s3: S3Config, workers: int) -> int:
    """HTTP connections for ``workers`` concurrent transfers: each reads ``parallel_ranges``
    ranges ahead plus one request (HEAD, delete) of its own, so none waits for a socket.

    The one sizing rule for ``S3Source(max_connections=...)`` wherever a whole pipeline is
    set up (the service, the benchmarks), so they measure what production runs."""
    return max(10, workers * (s3.parallel_ranges + 1))


class S3Source(ClientOwner):
    """Reads (and finally removes) recordings from S3; one aiobotocore client per instance.

    ``async with S3Source(aws, s3cfg) as s3``. ``max_connections`` caps the HTTP pool; size it
    for ``workers x parallel_ranges`` so ranges never queue behind each other for a socket.

    Buckets listed in ``s3.buckets`` (S3-compatible stores, own credentials) get their own
    client, created on first use and closed with the default one; their settings are checked
    on entry, so a bad endpoint stops the service instead of failing its first job.
    """

    _what = "S3Source"

    def __init__(
        self,
        aws: AwsConfig,
        s3: S3Config,
        *,
        max_connections: int | None = None,
        metrics: S3Metrics | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics  # each range GET our own loop repeats
        self._aws = aws
        self._cfg = s3
        self._max_connections = max_connections or max(10, 4 * s3.parallel_ranges)
        self._bucket_clients: dict[str, Any] = {}
        self._bucket_lock = asyncio.Lock()
        # Buckets whose store answered a DELETE with If-Match by refusing it (learned once).
        self._refuses_conditional_delete: set[str] = set()
        self._no_checksum_mode: set[str] = set()  # buckets whose store refuses x-amz-checksum-mode
        self._buffers = _RangeBuffers(keep=self._max_connections)
        self._direct: DirectHttp | None = None
        # Presigning (see _presign): learned URL templates by request shape, the (bucket,
        # operation) pairs botocore keeps signing, the credentials each client signs with.
        self._templates: dict[tuple[str, str, frozenset[str]], _UrlTemplate] = {}
        self._botocore_signs: set[tuple[str, str]] = set()
        self._credentials: dict[str | None, Any] = {}  # bucket (None: the default client) -> creds
        self._proxied_hosts: dict[tuple[str, str], bool] = {}
        self._bucket_settings: dict[str, S3Config] = {}  # see settings()

    async def __aenter__(self) -> S3Source:
        kwargs = client_kwargs(self._aws)  # validates endpoint and credentials before any I/O
        for bucket in self._cfg.buckets:
            aws, _ = bucket_settings(self._aws, self._cfg, bucket) or (self._aws, self._cfg)
            client_kwargs(aws, where=f"s3.buckets.{bucket}")
        config = make_client_config(self._aws, self._cfg, max_pool_connections=self._max_connections)
        await self._open("s3", config, kwargs)
        return self

    async def _after_open(self) -> None:
        assert self._stack is not None and self._session is not None
        self._credentials[None] = await signing_credentials(self._session, client_kwargs(self._aws))
        self._direct = await self._stack.enter_async_context(DirectHttp(
            limit=self._max_connections, connect_timeout=self._aws.connect_timeout,
            read_timeout=self._aws.read_timeout,
            # The CA bundle botocore verifies against, so both clients trust the same stores.
            cafile=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True)))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bucket_clients, self._credentials, self._templates = {}, {}, {}
        self._direct = None
        await super().__aexit__(exc_type, exc, tb)

    def _client_name(self, bucket: str) -> str | None:
        """Which client serves ``bucket``: its own (its name) or the default one (None)."""
        return bucket if bucket in self._cfg.buckets else None

    async def _client_for(self, bucket: str) -> Any:
        """The client for ``bucket``: its own (created once, lazily) or the default one."""
        if self._client_name(bucket) is None:
            return self._client
        client = self._bucket_clients.get(bucket)
        if client is not None:
            return client
        async with self._bucket_lock:
            if bucket not in self._bucket_clients:
                if self._stack is None:
                    raise RuntimeError("S3Source used outside 'async with'")
                aws, s3 = bucket_settings(self._aws, self._cfg, bucket) or (self._aws, self._cfg)
                config = make_client_config(aws, s3, max_pool_connections=self._max_connections)
                kwargs = client_kwargs(aws, where=f"s3.buckets.{bucket}")
                session = make_session()
                self._bucket_clients[bucket] = await self._stack.enter_async_context(
                    session.create_client("s3", config=config, **kwargs))
                self._credentials[bucket] = await signing_credentials(session, kwargs)
                host = urlsplit(aws.endpoint_url).hostname if aws.endpoint_url else "aws"
                log.info("s3_bucket_client_created", bucket=bucket, endpoint_host=host, region=aws.region,
                         addressing_style=s3.addressing_style)
            return self._bucket_clients[bucket]

    async def head(self, bucket: str, key: str, *, checksums: bool = True) -> ObjectInfo:
        """HEAD the object and pin its ETag; a missing key raises SourceMissing, never succeeds.

        Unless ``s3.verify`` is off, checksum mode is enabled so the answer carries the
        object's additional checksums. Most stores that do not know the header ignore it; one
        that refuses it (Backblaze B2 answers 400) is asked again without it, and from then on
        that bucket's HEADs leave it out (its ETag may still prove the content).
        ``checksums=False`` asks for the pin alone (the ETag compare before a delete).
        """
        what = f"S3 HeadObject {bucket}/{key}"
        verify = checksums and self.settings(bucket).verify != "off"
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if verify and bucket not in self._no_checksum_mode:
            params["ChecksumMode"] = "ENABLED"
        try:
            try:
                resp = await self._head_call(params)
            except ClientError as exc:
                if "ChecksumMode" not in params or error_codes(exc)[1] not in (400, 501):
                    raise
                del params["ChecksumMode"]
                resp = await self._head_call(params)
                self._no_checksum_mode.add(bucket)
                log.warning("s3_checksum_mode_refused", bucket=bucket,
                            error=f"HTTP {error_codes(exc)[1]} to x-amz-checksum-mode; HEADs of this bucket "
                                  "no longer send it, only its ETags can prove content")
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=what, resource="object") from exc
        digests = None
        if verify:
            digests = StoreDigests(
                etag=str(resp["ETag"]),
                checksums={a: str(resp[f"Checksum{a.upper()}"]) for a in CHECKSUM_ALGORITHMS
                           if resp.get(f"Checksum{a.upper()}")},
                checksum_type=resp.get("ChecksumType"),
                server_side_encryption=resp.get("ServerSideEncryption"),
                sse_customer_algorithm=resp.get("SSECustomerAlgorithm"),
            )
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(resp.get("ContentLength") or 0),
            etag=str(resp["ETag"]),
            content_type=resp.get("ContentType"),
            version_id=resp.get("VersionId"),
            last_modified=resp.get("LastModified"),
            metadata=dict(resp.get("Metadata") or {}),
            digests=digests,
        )
        log.debug("s3_head", bucket=bucket, s3_key=key, bytes=info.size, etag=info.etag)
        return info

    async def _head_call(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """HeadObject's answer under botocore's names, over the direct client when it is used."""
        answer = await self._direct_request("head_object", params)
        if answer is not None:
            return _head_fields(answer.headers)
        s3_client = await self._client_for(params["Bucket"])
        resp: Mapping[str, Any] = await s3_client.head_object(**params)
        return resp

    async def iter_chunks(
        self, info: ObjectInfo, *, chunk_size: int | None = None, parallel: int | None = None
    ) -> AsyncGenerator[memoryview, None]:
        """Yield the object's bytes in order, in chunks of ``chunk_size`` (the last may be short).

        Up to ``parallel`` ranged GETs run ahead of the consumer; a chunk is only held once it
        has arrived and until the consumer takes it. A 0-byte object yields nothing and sends
        no GET (a ranged GET on it would be 416). Stop early with ``contextlib.aclosing`` (or
        ``aclose()``): outstanding GETs are cancelled and their connections released.

        Each chunk is a view of a range buffer; a consumer that is done reading one (hashes
        finished included) hands it back with ``recycle``, and the next GETs reuse it. One
        never handed back is simply left to the garbage collector.
        """
        chunk = chunk_size or self._cfg.chunk_size
        ahead = parallel or self._cfg.parallel_ranges
        if chunk < 1 or ahead < 1:
            raise ValueError("chunk_size and parallel must be positive")
        ranges = _ranges(info.size, chunk)
        pending: deque[asyncio.Task[memoryview]] = deque()

        def schedule() -> None:
            nxt = next(ranges, None)
            if nxt is not None:
                pending.append(asyncio.create_task(self._get_range(info, *nxt, buffer_size=chunk)))

        try:
            for _ in range(ahead):
                schedule()
            while pending:
                # Awaited while still in ``pending``, so the cleanup below also covers it.
                data = await pending[0]
                pending.popleft()
                schedule()
                yield data
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def recycle(self, chunk: memoryview) -> None:
        """Take back a chunk ``iter_chunks`` yielded; its buffer serves a later range.

        The view is released, so a stray later use raises instead of reading another range's
        bytes. Call it only once nothing reads the chunk any more (a hash in a thread included).
        """
        buffer = chunk.obj
        chunk.release()
        if isinstance(buffer, bytearray):
            self._buffers.give(buffer)

    async def _get_range(self, info: ObjectInfo, first: int, last: int, *, buffer_size: int) -> memoryview:
        """One inclusive range, retried on transient failures other than a changed object."""
        length = last - first + 1
        # Ranges of an object of one chunk or more share the chunk size (the last one uses the
        # front of a full buffer); a smaller object's buffer is exactly its size.
        pooled = info.size >= buffer_size
        buffer = self._buffers.take(buffer_size if pooled else length, pooled=pooled)
        into = memoryview(buffer)[:length]
        for attempt in range(1, RANGE_ATTEMPTS + 1):
            try:
                await self._get_range_once(info, first, last, into)
                return into
            except SourceChanged:
                raise
            except TransientError as exc:
                if attempt == RANGE_ATTEMPTS:
                    raise
                log.warning("s3_range_retry", bucket=info.bucket, s3_key=info.key, first=first, last=last,
                            attempt=attempt, error_code=exc.code, error=str(exc))
                if self._metrics is not None:
                    self._metrics.retry("s3")
                await _backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_range_once(self, info: ObjectInfo, first: int, last: int, into: memoryview) -> None:
        """Fill ``into`` (exactly the range's length) with bytes ``first``..``last`` of the pinned version."""
        what = f"S3 GetObject {info.bucket}/{info.key} bytes={first}-{last}"
        params: dict[str, Any] = {"Bucket": info.bucket, "Key": info.key, "IfMatch": info.etag}
        if info.pinned_version:
            params["VersionId"] = info.pinned_version
        byte_range = f"bytes={first}-{last}"
        try:
            answer = await self._direct_request("get_object", params, into, Range=byte_range)
            if answer is not None:
                got = _checked_range(info, answer, first, last, what)
            else:
                got = await self._get_range_botocore(info, {**params, "Range": byte_range}, first, last,
                                                     into, what)
        except AWS_ERRORS as exc:
            error = translate_error(exc, what=what, resource="object")
            if error.code == "invalid_range":
                # Every range lies inside the size HEAD pinned: only a shorter object since then
                # (on a store that ignored If-Match) makes one unsatisfiable. A retry succeeds.
                raise SourceChanged(f"{what}: range not satisfiable; the object shrank since it was "
                                    "pinned") from exc
            raise error from exc
        if got != len(into):
            raise TransientError(f"{what}: short read, {got} of {len(into)} bytes", code="short_read")

    async def _direct_request(
        self, operation: str, params: Mapping[str, Any], into: memoryview | None = None, **headers: str
    ) -> DirectAnswer | None:
        """One object request over the direct HTTP client, or None to make it with botocore.

        None when ``s3.direct_http`` is off for the bucket or the environment sends its endpoint
        through a proxy (which only botocore's HTTP stack speaks). ``params`` are botocore's;
        ``headers`` go out unsigned (Range). A non-2xx answer raises the ClientError botocore
        would; throttled, failed or cut-off answers are tried ``aws.max_attempts`` times in
        all, as botocore's retry would.
        """
        bucket = params["Bucket"]
        if self._direct is None or not self.settings(bucket).direct_http:
            return None
        method, operation_name = _DIRECT_OPERATIONS[operation]
        # Headers that are part of the signature: the URL is only valid with exactly these.
        signed = {header: str(params[name]) for name, header in _SIGNED_HEADERS.items() if name in params}
        headers |= signed
        attempts = self._aws.max_attempts
        for attempt in range(1, attempts + 1):
            url = await self._presign(operation, method, params, signed)
            if url is None:
                return None
            try:
                answer = await self._direct.request(method, url, headers, into)
                if not 200 <= answer.status < 300:
                    raise _answer_error(answer, operation_name)
                return answer
            except AWS_ERRORS as exc:
                if attempt == attempts or not _retried(exc, operation_name):
                    raise
            if self._metrics is not None:
                self._metrics.retry("s3")
            await _backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _presign(
        self, operation: str, method: str, params: Mapping[str, Any], signed: Mapping[str, str]
    ) -> str | None:
        """A presigned URL for ``operation``; None when it would have to go through a proxy.

        botocore decides what the URL looks like (endpoint, addressing style, region, query
        fields) and our signer signs it. Per bucket, operation and set of parameters, one
        botocore URL teaches the template, and our signer must then reproduce that very URL
        (same date, same credentials) before the template is used; anything else stays with
        botocore for that bucket and operation. Templates are learned again every
        ``TEMPLATE_TTL`` seconds. ``signed``: the headers the signature covers (from ``params``).
        """
        bucket = params["Bucket"]
        shape = (bucket, operation, frozenset(params))
        template = self._templates.get(shape)
        if template is not None and time.monotonic() - template.learned < TEMPLATE_TTL:
            creds = await self._credentials[self._client_name(bucket)].get_frozen_credentials()
            return template.sign(params, signed, creds, time.time())
        s3_client = await self._client_for(bucket)
        url: str = await s3_client.generate_presigned_url(operation, Params=dict(params),
                                                          ExpiresIn=PRESIGN_EXPIRES)
        parts = urlsplit(url)
        host = (parts.scheme, parts.hostname or "")
        proxied = self._proxied_hosts.get(host)
        if proxied is None:
            proxied = self._proxied_hosts[host] = _uses_proxy(url)
        if proxied:
            return None
        if (bucket, operation) not in self._botocore_signs:
            await self._learn(shape, method, params, signed, url)
        return url

    async def _learn(
        self, shape: tuple[str, str, frozenset[str]], method: str, params: Mapping[str, Any],
        signed: Mapping[str, str], url: str,
    ) -> None:
        """Keep the template of botocore's ``url`` if our signer reproduces the URL exactly."""
        bucket, operation, _ = shape
        creds_source = self._credentials.get(self._client_name(bucket))
        try:
            if creds_source is None:
                raise _NotLearned("no credentials (unsigned requests)")
            template, timestamp, access_key = _template_from(url, method, params)
            creds = await creds_source.get_frozen_credentials()
            if creds.access_key != access_key:
                return  # the keys were refreshed between botocore's signature and ours: next time
            if not _same_url(template.sign(params, signed, creds, 0.0, timestamp), url):
                raise _NotLearned("our signature differs from botocore's")
        except _NotLearned as exc:
            self._botocore_signs.add((bucket, operation))
            log.debug("s3_presign_by_botocore", bucket=bucket, operation=operation, reason=str(exc))
            return
        self._templates[shape] = template

    async def _get_range_botocore(
        self, info: ObjectInfo, params: Mapping[str, Any], first: int, last: int, into: memoryview, what: str
    ) -> int:
        """The range GET through botocore: ``params`` are the direct request's, Range included."""
        expected = len(into)
        s3_client = await self._client_for(info.bucket)
        resp = await s3_client.get_object(**params)
        async with resp["Body"] as body:
            # Checked before a byte is used: a store that ignores If-Match answers with
            # whatever the key holds now, and only the answer's own headers can tell.
            _check_range_answer(info, resp, first, last, what)
            got = 0
            while True:
                # Once the range is complete, a 1-byte read must hit EOF (and lets botocore
                # verify Content-Length); anything else is an over-long body.
                piece = await body.read(min(READ_PIECE, expected - got) or 1)
                if not piece:
                    break
                if got + len(piece) > expected:
                    raise _range_not_honoured(what, got + len(piece), expected)
                into[got : got + len(piece)] = piece
                got += len(piece)
        return got

    async def part_sizes(self, info: ObjectInfo, parts: int) -> tuple[int, ...] | None:
        """The sizes of the ``parts`` parts of a multipart object, as the store reports them.

        GetObjectAttributes (``ObjectParts``) first: one request on AWS for up to 1000 parts.
        Stores that do not list the parts there get one HEAD with ``PartNumber`` per part
        (pinned like every read), a few at a time. ``None`` when the store does not report the
        layout (it answers with the whole object, another part count, or sizes that do not add
        up): per-part proofs are then unusable.
        """
        listed = await self._listed_part_sizes(info, parts)
        if listed is not None:
            return listed
        gate = asyncio.Semaphore(self._cfg.parallel_ranges)

        async def one(number: int) -> tuple[int, int | None, int | None]:
            params: dict[str, Any] = {
                "Bucket": info.bucket, "Key": info.key, "PartNumber": number, "IfMatch": info.etag,
            }
            if info.pinned_version:
                params["VersionId"] = info.pinned_version
            what = f"S3 HeadObject {info.bucket}/{info.key} part {number}"
            async with gate:
                try:
                    s3_client = await self._client_for(info.bucket)
                    resp = await s3_client.head_object(**params)
                except AWS_ERRORS as exc:
                    error = translate_error(exc, what=what, resource="object")
                    if isinstance(error, (SourceChanged, SourceMissing, TransientError)):
                        raise error from exc
                    return number, None, None  # e.g. 400/416: the store knows no part numbers
            count = resp.get("PartsCount")
            return number, int(resp.get("ContentLength") or 0), int(count) if count is not None else None

        answers = await asyncio.gather(*(one(n) for n in range(1, parts + 1)))
        sizes = tuple(size or 0 for _, size, _ in answers)
        if any(count != parts for _, _, count in answers) or sum(sizes) != info.size or 0 in sizes:
            log.info("s3_part_layout_unavailable", bucket=info.bucket, s3_key=info.key, parts=parts)
            return None
        return sizes

    async def _listed_part_sizes(self, info: ObjectInfo, parts: int) -> tuple[int, ...] | None:
        """Part sizes from GetObjectAttributes, or None when the store does not list them all."""
        sizes: dict[int, int] = {}
        marker = 0
        params: dict[str, Any] = {
            "Bucket": info.bucket, "Key": info.key, "ObjectAttributes": ["ObjectParts"], "MaxParts": 1000,
        }
        if info.pinned_version:
            params["VersionId"] = info.pinned_version
        try:
            s3_client = await self._client_for(info.bucket)
            while True:
                resp = await s3_client.get_object_attributes(**params, PartNumberMarker=marker)
                if resp.get("ETag") and resp["ETag"].strip('"') != info.etag.strip('"'):
                    raise SourceChanged(f"S3 GetObjectAttributes {info.bucket}/{info.key}: ETag changed")
                listing = resp.get("ObjectParts") or {}
                for part in listing.get("Parts") or []:
                    sizes[int(part["PartNumber"])] = int(part["Size"])
                if not listing.get("IsTruncated"):
                    break
                marker = int(listing.get("NextPartNumberMarker") or 0)
        except ClientError as exc:
            status = error_codes(exc)[1]
            if status < 500 or status == 501:
                return None  # not implemented, not permitted or unknown here: ask per part instead
            raise translate_error(exc, what=f"S3 GetObjectAttributes {info.bucket}/{info.key}") from exc
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"S3 GetObjectAttributes {info.bucket}/{info.key}") from exc
        ordered = tuple(sizes.get(n, 0) for n in range(1, parts + 1))
        if len(sizes) != parts or sum(ordered) != info.size or 0 in ordered:
            return None
        return ordered

    def settings(self, bucket: str) -> S3Config:
        """The S3 settings that apply to ``bucket`` (its own entry in ``s3.buckets``, else global).

        Merged once per bucket: every range and object request asks, and the merge copies two
        pydantic models.
        """
        merged = self._bucket_settings.get(bucket)
        if merged is None:
            merged = self._bucket_settings[bucket] = (
                bucket_settings(self._aws, self._cfg, bucket) or (self._aws, self._cfg))[1]
        return merged

    def check_deletable(self, bucket: str) -> None:
        """Raise before any work when ``bucket``'s sources could not be deleted as configured.

        Only a bucket with ``conditional_delete: required`` whose store already refused a
        conditional DELETE fails here: uploading its recordings again would only add files
        whose sources must stay.
        """
        refused = bucket in self._refuses_conditional_delete
        if refused and self.settings(bucket).conditional_delete == "required":
            raise _required_refused(bucket)

    async def delete(self, info: ObjectInfo) -> None:
        """Delete exactly the version that was transferred; already gone counts as done.

        A versioned bucket deletes the pinned VersionId: a newer version can never be hit, and
        no delete marker hides the key. Otherwise the object is HEADed right before the delete
        and its ETag compared (this catches stores that ignore ``If-Match``), then deleted with
        ``If-Match`` (closing the window between the two on stores that honour it). A store
        that refuses the conditional DELETE is noticed once per bucket and, unless
        ``conditional_delete`` is ``required``, deleted with HEAD-compare-DELETE from then on.
        A replaced object raises SourceChanged and survives.
        """
        what = f"S3 DeleteObject {info.bucket}/{info.key}"
        if info.pinned_version:
            if await self._delete_call(info, what, VersionId=info.pinned_version):
                _log_deleted(info, "version")
            return
        try:
            current = await self.head(info.bucket, info.key, checksums=False)
        except SourceMissing:
            log.info("s3_delete_already_gone", bucket=info.bucket, s3_key=info.key)
            return
        if current.etag != info.etag:
            raise SourceChanged(f"{what}: the key now holds ETag {current.etag}, not the transferred "
                                f"{info.etag}")
        mode = self.settings(info.bucket).conditional_delete
        if mode == "required" and info.bucket in self._refuses_conditional_delete:
            # Learned by another job while this one was already past ``check_deletable``.
            raise _required_refused(info.bucket)
        if mode != "off" and info.bucket not in self._refuses_conditional_delete:
            try:
                deleted = await self._delete_call(info, what, IfMatch=info.etag)
            except _ConditionalDeleteRefused as refused:
                # Concurrent jobs may learn it together; the warning is given once.
                first = info.bucket not in self._refuses_conditional_delete
                self._refuses_conditional_delete.add(info.bucket)
                if mode == "required":
                    raise _required_refused(info.bucket) from refused.__cause__
                if first:
                    log.warning(
                        "s3_conditional_delete_unsupported", bucket=info.bucket, error=str(refused),
                        race_window="between the HEAD that compares the ETag and the DELETE: a version "
                        "written in that round trip would be deleted without being transferred",
                        setting="s3.conditional_delete: required keeps sources instead; enable "
                        "versioning on the bucket to close the window",
                    )
                await self.delete(info)  # HEAD again: the refused attempt widened the window
                return
            if deleted:
                _log_deleted(info, "if-match")
            return
        if await self._delete_call(info, what):
            _log_deleted(info, "etag-compare")

    async def _delete_call(self, info: ObjectInfo, what: str, **conditions: str) -> bool:
        """One DeleteObject; False when the object (or its bucket) was already gone."""
        params = {"Bucket": info.bucket, "Key": info.key, **conditions}
        try:
            if await self._direct_request("delete_object", params) is None:
                s3_client = await self._client_for(info.bucket)
                await s3_client.delete_object(**params)
        except AWS_ERRORS as exc:
            if "IfMatch" in conditions and _refuses_condition(exc):
                raise _ConditionalDeleteRefused(
                    f"{what}: the store refuses DeleteObject with If-Match ({_error_summary(exc)})"
                ) from exc
            error = translate_error(exc, what=what, resource="object")
            if isinstance(error, SourceMissing) or error.code == "no_such_bucket":
                # A redelivered job whose delete already happened: the goal is met.
                log.info("s3_delete_already_gone", bucket=info.bucket, s3_key=info.key)
                return False
            raise error from exc
        return True

    async def head_checksums(self, bucket: str, key: str) -> tuple[str, ...]:
        """The checksum algorithms HEAD reports for ``key`` with checksum mode enabled."""
        try:
            s3_client = await self._client_for(bucket)
            resp = await s3_client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"S3 HeadObject {bucket}/{key}", resource="object") from exc
        return tuple(sorted(name.removeprefix("Checksum") for name, value in resp.items()
                            if name.startswith("Checksum") and name != "ChecksumType" and value))

    async def probe_store(self, bucket: str, key: str) -> StoreCapabilities:
        """Write ``key``, prove what the store honours on it, and remove every version written.

        For ``recording-storage check --write-probe``: a store's documentation is not proof,
        and the service's safety on each store depends on exactly these answers.
        """
        s3_client = await self._client_for(bucket)
        written: list[str] = []  # version ids (objects and delete markers) to remove at the end
        what = f"S3 probe {bucket}/{key}"
        try:
            try:
                put = await s3_client.put_object(Bucket=bucket, Key=key, Body=_PROBE_BODY)
                if put.get("VersionId"):
                    written.append(str(put["VersionId"]))
                etag = str(put["ETag"])
                honours_range, range_detail = await self._probe_range(s3_client, bucket, key)
                honours_get = await self._probe_refuses(
                    s3_client.get_object(Bucket=bucket, Key=key, IfMatch=_STALE_ETAG))
                checksums = await self.head_checksums(bucket, key)
                status = (await s3_client.get_bucket_versioning(Bucket=bucket)).get("Status") or "Disabled"
                delete, delete_detail = await self._probe_delete(s3_client, bucket, key, etag, written)
            except AWS_ERRORS as exc:
                raise translate_error(exc, what=what, resource="bucket") from exc
        finally:
            leftover = await self._remove_probe(s3_client, bucket, key, written)
        return StoreCapabilities(key, honours_range, range_detail, honours_get, delete, delete_detail,
                                 status, checksums, leftover)

    @staticmethod
    async def _probe_range(s3_client: Any, bucket: str, key: str) -> tuple[bool, str]:
        resp = await s3_client.get_object(Bucket=bucket, Key=key, Range="bytes=5-14")
        async with resp["Body"] as body:
            data = await body.read()
        content_range = resp.get("ContentRange")
        ok = data == _PROBE_BODY[5:15] and content_range == f"bytes 5-14/{len(_PROBE_BODY)}"
        size = len(_PROBE_BODY)
        return ok, f"asked for bytes 5-14 of {size}, got {len(data)} bytes, Content-Range {content_range}"

    @staticmethod
    async def _probe_refuses(request: Any) -> bool:
        """True when the store answers a request with a stale If-Match by 412."""
        try:
            resp = await request
        except ClientError as exc:
            codes, status = error_codes(exc)
            if status == 412 or "PreconditionFailed" in codes:
                return True
            raise
        body = resp.get("Body")
        if body is not None:
            async with body:
                await body.read()
        return False

    @staticmethod
    async def _probe_delete(
        s3_client: Any, bucket: str, key: str, etag: str, written: list[str]
    ) -> tuple[Literal["honoured", "refused", "ignored"], str]:
        try:
            resp = await s3_client.delete_object(Bucket=bucket, Key=key, IfMatch=_STALE_ETAG)
        except ClientError as exc:
            if _refuses_condition(exc):
                return "refused", f"DELETE with If-Match is refused ({_error_summary(exc)})"
            codes, status = error_codes(exc)
            if status != 412 and "PreconditionFailed" not in codes:
                raise
        else:
            if resp.get("VersionId"):
                written.append(str(resp["VersionId"]))
            return "ignored", "a DELETE with a stale If-Match deleted the object"
        # The stale ETag was refused; the right one must delete (or the store refuses it after all).
        try:
            resp = await s3_client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            if _refuses_condition(exc):
                return "refused", f"DELETE with If-Match is refused ({_error_summary(exc)})"
            raise
        if resp.get("VersionId"):
            written.append(str(resp["VersionId"]))
        return "honoured", "a stale If-Match is refused with 412, the pinned one deletes"

    @staticmethod
    async def _remove_probe(s3_client: Any, bucket: str, key: str, written: list[str]) -> str | None:
        """Delete every version the probe wrote (or the key); a description of what is left."""
        try:
            if not written:
                await s3_client.delete_object(Bucket=bucket, Key=key)
            for version in written:
                await s3_client.delete_object(Bucket=bucket, Key=key, VersionId=version)
        except AWS_ERRORS as exc:
            return f"could not remove {bucket}/{key} ({scrub(str(exc), 200)}); delete it by hand"
        return None

    async def put(
        self, bucket: str, key: str, body: bytes, content_type: str | None = None
    ) -> ObjectInfo:
        """Upload a small object (demo, checks, tests); returns what a HEAD would pin."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        if content_type is not None:
            params["ContentType"] = content_type
        try:
            s3_client = await self._client_for(bucket)
            resp = await s3_client.put_object(**params)
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"S3 PutObject {bucket}/{key}", resource="bucket") from exc
        return ObjectInfo(bucket=bucket, key=key, size=len(body), etag=str(resp["ETag"]),
                          content_type=content_type, version_id=resp.get("VersionId"))

    async def check_bucket(self, bucket: str) -> None:
        """HeadBucket: the readiness probe for the source bucket (exists and reachable)."""
        try:
            s3_client = await self._client_for(bucket)
            await s3_client.head_bucket(Bucket=bucket)
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"S3 HeadBucket {bucket}", resource="bucket") from exc

    async def create_bucket(self, bucket: str) -> None:
        """Create a bucket in the configured region (local stack, tests); existing is fine."""
        params: dict[str, Any] = {"Bucket": bucket}
        aws, _ = bucket_settings(self._aws, self._cfg, bucket) or (self._aws, self._cfg)
        if aws.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
        try:
            s3_client = await self._client_for(bucket)
            await s3_client.create_bucket(**params)
        except ClientError as exc:
            if "BucketAlreadyOwnedByYou" in error_codes(exc)[0]:
                return
            raise translate_error(exc, what=f"S3 CreateBucket {bucket}", resource="bucket") from exc
        except AWS_ERRORS as exc:
            raise translate_error(exc, what=f"S3 CreateBucket {bucket}", resource="bucket") from exc

