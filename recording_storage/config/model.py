"""The configuration model: every section and key, its type, default and allowed values.

Frozen pydantic models, so no component can change what another sees; secrets are SecretStr,
so they never show in reprs. ``conf/app.yaml`` documents the same keys with these defaults
(a test keeps the two in step); loading and error reporting live in ``loader.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

__all__ = [
    "AppConfig",
    "AwsConfig",
    "BucketSourceConfig",
    "DracoonConfig",
    "HealthConfig",
    "InstancesConfig",
    "LogConfig",
    "QueueConfig",
    "RoutingConfig",
    "S3Config",
    "SharerConfig",
    "WorkersConfig",
    "parse_duration",
    "parse_size",
]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
_BUCKET_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,255}", re.ASCII)


def _number_text(value: str) -> bool:
    """Text pydantic reads as a number itself (``1e3``, ``.5``, ``1_000`` from YAML or env)."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def parse_size(value: Any) -> Any:
    """Accept ``8388608``, ``"8MiB"``, ``"20 MB"``; plain numbers go on to pydantic as they are."""
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and (m.group(2) or "").lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])
        if _number_text(value):
            return value
        raise ValueError("not a size: write a number of bytes, or a number and a unit such as "
                         "64KiB, 8MiB, 20MB, 1GiB")
    return value


def parse_duration(value: Any) -> Any:
    """Accept seconds as a number or ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``."""
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower()]
        if _number_text(value):
            return value
        raise ValueError("not a duration: write seconds as a number, or a number and one unit: "
                         "500ms, 30s, 5m, 1h, 1d (no combinations such as 1h30m: write 90m)")
    return value


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class LogConfig(_Section):
    """Logging: JSON for machines, console for humans at a terminal."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto = JSON unless stderr is a TTY (containers get JSON without being told).
    format: Literal["auto", "json", "console"] = "auto"
    # Names and e-mail addresses of meeting participants are PII; off unless asked for.
    include_pii: bool = False


class AwsConfig(_Section):
    """Shared by S3 and SQS clients. Credentials default to the AWS chain (IAM role, env, profile)."""

    region: str = "eu-west-1"
    endpoint_url: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    retry_mode: Literal["legacy", "standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout: Seconds = 10.0
    # Must exceed the SQS long-poll wait, or every empty poll becomes a timeout.
    read_timeout: Seconds = 60.0
    # Allow plain http to a non-loopback endpoint (S3-compatible store on a trusted LAN).
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _key_pair_whole(self) -> AwsConfig:
        # Half a key pair must not fall back silently to whatever identity the default chain finds.
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key must be set together (or neither)")
        return self


class BucketSourceConfig(_Section):
    """Settings for one source bucket on an S3-compatible store (parity with Kazoo's S3 handler).

    Unset keys fall back to ``aws`` / ``s3``, so a bucket entry only says what differs: its
    endpoint (``endpoint_url``, or ``host`` + ``port`` + ``scheme`` as Kazoo writes it), region,
    addressing style, checksum behaviour or its own key pair (else the global keys, else the
    AWS default chain). ``key_prefix`` is Kazoo's ``folder_base_path``: routing rules see keys
    below it.
    """

    endpoint_url: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Literal["https", "http"] = "https"
    region: str | None = None
    addressing_style: Literal["auto", "virtual", "path"] | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    key_prefix: str = ""
    request_checksum_calculation: Literal["when_supported", "when_required"] | None = None
    response_checksum_validation: Literal["when_supported", "when_required"] | None = None
    allow_insecure_http: bool | None = None
    # Overrides s3.conditional_delete for this bucket's store.
    conditional_delete: Literal["auto", "required", "off"] | None = None
    # Overrides s3.verify for this bucket's store.
    verify: Literal["auto", "required", "off"] | None = None
    # Overrides s3.direct_http for this bucket's store.
    direct_http: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BucketSourceConfig:
        if self.endpoint_url and self.host:
            raise ValueError("set either endpoint_url or host (with port and scheme), not both")
        if self.port is not None and not self.host:
            raise ValueError("port needs host")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key must be set together (or neither)")
        return self

    @property
    def endpoint(self) -> str | None:
        """The endpoint URL, composed from host/port/scheme when given that way."""
        if self.host:
            port = f":{self.port}" if self.port is not None else ""
            return f"{self.scheme}://{self.host}{port}"
        return self.endpoint_url

    @property
    def prefix(self) -> str:
        """``key_prefix`` as a folder (``"kazoo"`` and ``"kazoo/"`` both mean keys below ``kazoo/``)."""
        stripped = self.key_prefix.strip("/")
        return f"{stripped}/" if stripped else ""


class S3Config(_Section):
    """How recordings are read from (and removed from) the source bucket."""

    chunk_size: Size = Field(default=8 * 1024**2, ge=64 * 1024, le=512 * 1024**2)
    # Ranged GETs in flight per object: download overlaps encryption and upload.
    parallel_ranges: int = Field(default=4, ge=1, le=32)
    delete_after_transfer: bool = True
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    # botocore >= 1.36 sends CRC32 request checksums; some S3-compatible stores reject them.
    request_checksum_calculation: Literal["when_supported", "when_required"] = "when_supported"
    response_checksum_validation: Literal["when_supported", "when_required"] = "when_supported"
    # Buckets the health check proves readable (HeadBucket); jobs may name any bucket.
    probe_buckets: tuple[str, ...] = ()
    # Per-bucket source settings (S3-compatible stores); buckets not listed use the client above.
    buckets: dict[str, BucketSourceConfig] = Field(default_factory=dict)
    # Deleting a source on an unversioned bucket: HEAD and compare the ETag, then DELETE with
    # If-Match. auto = fall back to HEAD-compare-DELETE (warned once) on a store that refuses
    # the conditional DELETE; required = such a store keeps its sources and fails check; off =
    # never send If-Match on DELETE (the operator accepts the HEAD-to-DELETE race window).
    conditional_delete: Literal["auto", "required", "off"] = "auto"
    # Prove each object's content with a digest the store states (checksum or MD5 ETag) before
    # any upload completes. auto: the best proof offered, none when the store offers nothing;
    # required: no proof, no transfer; off: no hashing at all (and no sha256 in the notes).
    verify: Literal["auto", "required", "off"] = "auto"
    # Read ranges with the service's own HTTP/1.1 reader (presigned by botocore) straight into
    # reused buffers: a third of the CPU per GiB. false = botocore reads them (e.g. a store
    # whose answers the reader cannot parse). Endpoints behind an HTTP proxy always use botocore.
    direct_http: bool = True

    @model_validator(mode="after")
    def _bucket_names(self) -> S3Config:
        bad = [name for name in self.buckets if not _BUCKET_NAME_RE.fullmatch(name)]
        if bad:
            raise ValueError(f"buckets: {bad[0]!r} is not a bucket name (letters, digits, '.', '-', '_')")
        return self


class QueueConfig(_Section):
    """The SQS job queue, named as in the original's topics file, and its dead-letter queue."""

    name: str = Field(default="recordings-transferring", min_length=1)
    # Maps queue names to queue URLs, like the original's conf/pubsub/sqs/topics.yml.
    # A name missing there is resolved with GetQueueUrl.
    topics_file: Path | None = Path("conf/topics.yml")
    dlq_name: str | None = "recordings-transferring-dlq"
    wait_seconds: int = Field(default=20, ge=0, le=20)
    # Short lease, extended by a heartbeat while a job runs: a crashed worker's job returns fast.
    visibility_timeout: int = Field(default=60, ge=10, le=43200)
    heartbeat_interval: Seconds = Field(default=20.0, gt=0)
    # Transient failures are released with visibility min(base * 2**(receives-1), max).
    retry_backoff_base: Seconds = Field(default=30.0, ge=0)
    retry_backoff_max: Seconds = Field(default=900.0, ge=0, le=43200)
    # A transient failure on this receive (or later) goes to the DLQ with its last reason; must be
    # below the queue's RedrivePolicy maxReceiveCount, or the redrive moves it first without one.
    max_receives: int = Field(default=40, ge=1, le=1000)
    # A dead letter larger than the DLQ accepts keeps its full body here (DLQ copy: cut to fit).
    dlq_overflow_bucket: str | None = None
    dlq_overflow_prefix: str = "dead-letters/"

    @model_validator(mode="after")
    def _heartbeat_below_visibility(self) -> QueueConfig:
        if self.heartbeat_interval >= self.visibility_timeout:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g}s) must be below "
                f"visibility_timeout ({self.visibility_timeout}s), or leases lapse mid-job"
            )
        return self


class WorkersConfig(_Section):
    """The worker pool of one process."""

    count: int = Field(default=4, ge=1, le=256)
    # SIGTERM: running jobs get this long to finish before they are cancelled and released.
    shutdown_grace: Seconds = 25.0
    progress_interval: Seconds = Field(default=30.0, gt=0)


class DracoonConfig(_Section):
    """Defaults for every DRACOON account; an instance may override the OAuth client."""

    client_id: str = "dracoon_legacy_scripting"
    client_secret: SecretStr = SecretStr("")
    upload_chunk_size: Size = Field(default=16 * 1024**2, ge=64 * 1024, le=1024**3)
    # auto = follow the server's system info (useS3Storage); proxy / s3 force a variant.
    upload_mode: Literal["auto", "proxy", "s3"] = "auto"
    # S3-direct part PUTs in flight per upload.
    parts_in_flight: int = Field(default=4, ge=1, le=32)
    verify_tls: bool = True
    ca_bundle: Path | None = None
    request_timeout: Seconds = 300.0
    # What to do when a *different* file already has the recording's name in the room.
    name_clash: Literal["keep_both", "overwrite", "fail"] = "keep_both"
    classification: int = Field(default=2, ge=1, le=4)
    max_retries: int = Field(default=5, ge=0, le=20)
    # form: client id and secret form-encoded before HTTP Basic (RFC 6749 2.3.1); raw: as they are,
    # for a server that does not decode them (only matters when they hold characters such as + % :).
    client_auth_encoding: Literal["form", "raw"] = "form"


class InstancesConfig(_Section):
    """Where per-instance DRACOON accounts come from."""

    source: Literal["file", "http"] = "file"
    file: Path = Path("conf/instances.yml")
    url: str | None = None
    auth_token: SecretStr | None = None
    cache_ttl: Seconds = 300.0

    @model_validator(mode="after")
    def _url_for_http(self) -> InstancesConfig:
        if self.source == "http" and not self.url:
            raise ValueError("instances.url is required when instances.source is 'http'")
        return self


class SharerConfig(_Section):
    """The periodic pass that serves missing file keys to users added to rooms later."""

    enabled: bool = True
    interval: Seconds = Field(default=3600.0, gt=0)
    jitter: Seconds = 60.0
    first_delay: Seconds = 15.0
    batch_size: int = Field(default=100, ge=1, le=1000)


class HealthConfig(_Section):
    """The aiohttp server for /healthcheck, /livez, /readyz and /metrics."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(default=8094, ge=0, le=65535)
    cache_seconds: Seconds = 10.0
    # Workers that have not polled for this long make /healthcheck fail.
    stale_after: Seconds = 120.0


class RoutingConfig(_Section):
    """Rules that turn S3 event notifications into jobs (see docs/s3-events.md).

    Rules are validated by ``recording_storage.events.load_routes`` when the service starts,
    with every problem named by rule; inline rules are tried before the file's.
    """

    file: Path | None = None
    rules: tuple[dict[str, Any], ...] = ()


class AppConfig(_Section):
    """The whole configuration; frozen so no component can change what another sees."""

    log: LogConfig = LogConfig()
    aws: AwsConfig = AwsConfig()
    s3: S3Config = S3Config()
    queue: QueueConfig = QueueConfig()
    workers: WorkersConfig = WorkersConfig()
    dracoon: DracoonConfig = DracoonConfig()
    instances: InstancesConfig = InstancesConfig()
    sharer: SharerConfig = SharerConfig()
    health: HealthConfig = HealthConfig()
    routing: RoutingConfig = RoutingConfig()
    # Directory relative paths in this file are resolved against (set by load_config).
    base_dir: Path = Path(".")

    def resolve(self, path: Path) -> Path:
        """A config-relative path as an absolute one."""
        return path if path.is_absolute() else (self.base_dir / path)
