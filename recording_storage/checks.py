"""``recording-storage check``: prove every setting with the real operation that depends on it.

A configuration that parses can still be useless: a queue in another region, a bucket the role
cannot read, a DRACOON password that changed, an encryption password that does not open the
key pair, a parent room that is not encrypted. Each of these would otherwise surface as a
dead-lettered job hours later. Like Kazoo's storage-plan validation, every check does the real
thing once (GetQueueAttributes, HeadBucket, login, key pair unlock, room lookup and, on request,
an encrypted upload read back and deleted, and per bucket a probe object that proves what the
store honours: Range, If-Match on GET and DELETE, versioning, checksums) and prints one line:
``PASS name: detail``, ``FAIL name: reason`` or ``SKIP name: why``. Lines never carry secrets.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import structlog

from .aws import bucket_settings, client_kwargs
from .config import AppConfig
from .crypto import (
    FileDecryptor,
    FileEncryptor,
    UnlockedKeyPair,
    UserKeyPair,
    WrongPassword,
    encrypt_file_key,
    generate_file_key,
    unlock_key_pair,
)
from .dracoon import DracoonClient, Node, NotFound
from .errors import ConfigError, CryptoError, PermanentError, RecordingStorageError
from .events import routed_buckets
from .instances import DracoonAccount, InstanceProvider, open_instance_provider
from .logs import redact_text, register_secrets
from .pool import preferred_key_pair
from .s3 import S3Source, StoreCapabilities
from .sqs import JobQueue

__all__ = ["DEFAULT_TIMEOUT", "CheckResult", "run_checks"]

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT = 30.0  # per check; unlocking a key pair alone takes about a second
PROBE_PREFIX = ".recording-storage-probe-"
Status = Literal["PASS", "FAIL", "SKIP", "WARN"]
# Error codes that mean "could not reach it", where advice about credentials would mislead.
_UNREACHABLE = frozenset({"connection", "network", "timeout", "tls_error"})
# A check is a probe: one retry at most and a short connect timeout, so dead endpoints fail in
# seconds rather than after the service's patient retry schedule.
CHECK_AWS_ATTEMPTS, CHECK_CONNECT_TIMEOUT, CHECK_DRACOON_RETRIES = 2, 5.0, 1


@dataclass(frozen=True)
class CheckResult:
    """One printed line."""

    status: Status
    name: str
    detail: str

    def line(self) -> str:
        detail = " ".join(self.detail.split())  # one line per check, whatever the message held
        return redact_text(f"{self.status} {self.name}: {detail}")

    def as_json(self) -> str:
        """``check --json``: one object per check, for automation."""
        detail = redact_text(" ".join(self.detail.split()))
        return json.dumps({"name": self.name, "status": self.status, "detail": detail})


class Warn(str):
    """A check's detail that works but needs attention: printed as ``WARN``, not a failure."""


class _Skip(Exception):
    """Raised by a check that cannot run (a dependency failed or nothing is configured)."""


class _Run:
    """Runs checks one by one, printing each line as soon as it is known."""

    def __init__(self, out: IO[str], timeout: float, *, as_json: bool = False) -> None:
        self.out = out
        self.timeout = timeout
        self.as_json = as_json
        self.results: list[CheckResult] = []

    def emit(self, status: Status, name: str, detail: str) -> bool:
        result = CheckResult(status, name, detail)
        self.results.append(result)
        print(result.as_json() if self.as_json else result.line(), file=self.out, flush=True)
        return status in ("PASS", "WARN")

    async def check(
        self, name: str, fn: Callable[[], Awaitable[str]], *, hint: str = "", own_timeouts: bool = False,
        unreachable_hint: str = "",
    ) -> bool:
        """Run one check under the per-check timeout (unless it keeps its own); True if it passed.

        ``unreachable_hint`` replaces ``hint`` when the target could not be reached at all.
        """
        limit = None if own_timeouts else self.timeout
        try:
            async with asyncio.timeout(limit):
                detail = await fn()
        except _Skip as skip:
            return self.emit("SKIP", name, str(skip))
        except TimeoutError:
            return self.emit("FAIL", name, f"no answer within {self.timeout:g}s{_with(hint)}")
        except ConfigError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            return self.emit("FAIL", name, f"invalid configuration: {problems} [{exc.code}]{_with(hint)}")
        except RecordingStorageError as exc:
            advice = unreachable_hint if unreachable_hint and exc.code in _UNREACHABLE else hint
            return self.emit("FAIL", name, f"{exc} [{exc.code}]{_with(advice)}")
        except Exception as exc:  # a check must report, never crash the command
            log.debug("check_crashed", check=name, exc_info=True)
            return self.emit("FAIL", name, f"unexpected {type(exc).__name__}: {exc}{_with(hint)}")
        return self.emit("WARN" if isinstance(detail, Warn) else "PASS", name, detail)

    @property
    def failed(self) -> int:
        return sum(r.status == "FAIL" for r in self.results)

    @property
    def warned(self) -> int:
        return sum(r.status == "WARN" for r in self.results)


def configured_buckets(cfg: AppConfig) -> list[str]:
    """Every bucket the configuration names, for ``recording-storage check``: probe buckets,
    buckets with their own source settings, and the exact (non-glob) buckets of routing rules.

    Reads the routing file; raises ``ConfigError`` if the rules are invalid.
    """
    names = [*cfg.s3.probe_buckets, *cfg.s3.buckets, *routed_buckets(cfg)]
    return list(dict.fromkeys(names))



def _with(hint: str) -> str:
    return f"; {hint}" if hint else ""


async def run_checks(
    config: AppConfig,
    *,
    write_probe: bool = False,
    out: IO[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    config_file: Path | None = None,
    as_json: bool = False,
) -> int:
    """Check everything the configuration points at; 0 if every check passed (warnings
    allowed), else 1. ``config_file`` is the file the configuration came from, None for none."""
    run = _Run(out if out is not None else sys.stdout, timeout, as_json=as_json)
    register_secrets(*_secrets(config))
    config = _probe_settings(config)
    if await _check_config(run, config, config_file):
        await _check_sqs(run, config)
        await _check_dlq_backlog(run, config)
        await _check_s3(run, config)
        if write_probe:
            await _probe_stores(run, config)
    else:
        for name in ("sqs queue", "sqs dlq", "s3"):
            run.emit("SKIP", name, "needs a valid AWS configuration (see the config check)")
    async with AsyncExitStack() as stack:
        opened: list[tuple[InstanceProvider, list[str]]] = []

        async def open_provider() -> str:
            provider = open_instance_provider(config)
            stack.push_async_callback(provider.aclose)
            domains = await provider.list_domains()
            opened.append((provider, domains))
            if not domains:
                raise PermanentError(f"no instances are configured ({_instances_source(config)})",
                                     code="no_instances")
            shown = ", ".join(domains[:10]) + (f" and {len(domains) - 10} more" if len(domains) > 10 else "")
            return f"{len(domains)} configured: {shown}"

        if await run.check("instances", open_provider, hint=f"check {_instances_source(config)}"):
            provider, domains = opened[0]
            for domain in domains:
                await _check_instance(run, config, provider, domain, write_probe=write_probe)
    total = len(run.results)
    summary = f"all {total} checks passed" if not run.failed else f"{run.failed} of {total} checks failed"
    if run.warned:
        summary += f" ({run.warned} warning(s))"
    if not as_json:
        print(f"{'OK' if not run.failed else 'FAILED'}: {summary}", file=run.out, flush=True)
    return 0 if not run.failed else 1


def _secrets(config: AppConfig) -> list[str]:
    values = [config.dracoon.client_secret, config.aws.access_key_id, config.aws.secret_access_key,
              config.aws.session_token, config.instances.auth_token]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def _instances_source(config: AppConfig) -> str:
    if config.instances.source == "http":
        return "instances.url (the HTTP configurator)"
    return f"instances.file ({config.resolve(config.instances.file)})"


# -- AWS ----------------------------------------------------------------------------------------


async def _check_sqs(run: _Run, config: AppConfig) -> None:
    cfg = config.queue
    where = f"aws.region {config.aws.region}" + (f", aws.endpoint_url {config.aws.endpoint_url}"
                                                 if config.aws.endpoint_url else "")
    hint = (f"check queue.name, queue.topics_file, {where}, and sqs:GetQueueUrl/GetQueueAttributes "
            "permissions")

    async def queue_check(name: str, dlq: bool) -> str:
        qcfg = cfg if not dlq else cfg.model_copy(update={"name": name, "dlq_name": None})
        async with JobQueue(config.aws, qcfg, base_dir=config.base_dir, resolve_on_enter=False) as queue:
            await queue.resolve()
            attrs = await queue.attributes()
        visible = attrs.get("ApproximateNumberOfMessages", "?")
        in_flight = attrs.get("ApproximateNumberOfMessagesNotVisible", "?")
        redrive = "" if dlq or "RedrivePolicy" in attrs else "; no RedrivePolicy on the queue"
        return f"queue {name!r} reachable ({visible} visible, {in_flight} in flight){redrive}"

    if await run.check("sqs queue", lambda: queue_check(cfg.name, False), hint=hint,
                       unreachable_hint=_AWS_UNREACHABLE):
        await run.check("sqs max receives", lambda: _check_max_receives(config),
                        hint='see docs/operations.md, "Delivery guarantees"')
    else:
        run.emit("SKIP", "sqs max receives", "needs a reachable queue")
    if cfg.dlq_name is None:
        run.emit("SKIP", "sqs dlq", "no queue.dlq_name configured; permanent failures are only logged")
    else:
        await run.check("sqs dlq", lambda: queue_check(cfg.dlq_name or "", True),
                        hint=hint.replace("queue.name", "queue.dlq_name"), unreachable_hint=_AWS_UNREACHABLE)


async def _check_max_receives(config: AppConfig) -> str:
    """``queue.max_receives`` must be below the queue's RedrivePolicy ``maxReceiveCount``.

    Otherwise the queue moves a job that keeps failing transiently to the DLQ before the service
    gives up on it, and that copy carries no reason.
    """
    cfg = config.queue
    async with JobQueue(config.aws, cfg, base_dir=config.base_dir, resolve_on_enter=False) as queue:
        await queue.resolve()
        attrs = await queue.attributes()
    policy = attrs.get("RedrivePolicy")
    if not policy:
        return (f"no RedrivePolicy: a job failing transiently is dead-lettered by the service after "
                f"{cfg.max_receives} receives (queue.max_receives)")
    try:
        limit = int(json.loads(policy)["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        raise PermanentError(f"the queue's RedrivePolicy is unreadable: {policy[:200]!r}",
                             code="bad_redrive_policy") from None
    if cfg.max_receives >= limit:
        raise PermanentError(
            f"queue.max_receives ({cfg.max_receives}) is not below the RedrivePolicy maxReceiveCount "
            f"({limit}) of queue {cfg.name!r}: the queue would move a job that keeps failing to the DLQ "
            f"without a reason before the service does; set queue.max_receives to at most {limit - 1}, "
            f"or raise maxReceiveCount to at least {cfg.max_receives + 1}",
            code="max_receives_too_high")
    return (f"queue.max_receives {cfg.max_receives} is below the RedrivePolicy maxReceiveCount {limit}: "
            "the service dead-letters a recurring failure with its reason first")


async def _check_s3(run: _Run, config: AppConfig) -> None:
    buckets = config.s3.probe_buckets
    if not buckets:
        run.emit("SKIP", "s3", "no probe_buckets configured (s3.probe_buckets names the buckets to prove)")
        return

    async def head(bucket: str) -> str:
        async with S3Source(config.aws, config.s3) as s3:
            await s3.check_bucket(bucket)
        return "bucket reachable and readable (HeadBucket)"

    for bucket in buckets:
        await run.check(f"s3 {bucket}", functools.partial(head, bucket),
                        hint="check the bucket name, aws.region and s3:ListBucket/GetObject permissions",
                        unreachable_hint=_AWS_UNREACHABLE)


CAPABILITIES = ("range", "if-match get", "if-match delete", "versioning", "checksums")


async def _probe_stores(run: _Run, config: AppConfig) -> None:
    """``--write-probe``: per configured bucket, prove with a probe object what its store honours."""
    try:
        buckets = configured_buckets(config)
    except ConfigError as exc:
        run.emit("FAIL", "s3 write probe", "; ".join(str(p) for p in exc.problems))
        return
    if not buckets:
        run.emit("SKIP", "s3 write probe", "no buckets configured (s3.probe_buckets, s3.buckets or the "
                 "routing rules name them)")
        return
    for bucket in buckets:
        found: list[tuple[StoreCapabilities, str]] = []
        await run.check(f"s3 {bucket} write probe", functools.partial(_probe_store, config, bucket, found),
                        hint="the probe needs s3:PutObject, GetObject, DeleteObject, GetBucketVersioning "
                        "(and DeleteObjectVersion on a versioned bucket)")
        if not found:
            for name in CAPABILITIES:
                run.emit("SKIP", f"s3 {bucket} {name}", "needs a working write probe")
            continue
        caps, mode = found[0]
        for name, (status, detail) in zip(CAPABILITIES, _capability_lines(caps, mode), strict=True):
            run.emit(status, f"s3 {bucket} {name}", detail)


async def _probe_store(config: AppConfig, bucket: str, found: list[tuple[StoreCapabilities, str]]) -> str:
    async with S3Source(config.aws, config.s3) as s3:
        caps = await s3.probe_store(bucket, f"{PROBE_PREFIX}{secrets.token_hex(6)}")
        found.append((caps, s3.settings(bucket).conditional_delete))
    if caps.leftover:
        raise PermanentError(caps.leftover, code="probe_not_deleted")
    return f"wrote {caps.key!r}, probed it and removed it"


def _capability_lines(caps: StoreCapabilities, mode: str) -> list[tuple[Status, str]]:
    """One (status, detail) per entry of CAPABILITIES: what the store does, what the service does."""
    versioned = caps.versioning == "Enabled"
    return [
        ("PASS", f"honoured ({caps.range_detail})") if caps.honours_range else
        ("FAIL", f"not honoured ({caps.range_detail}); transfers fail as range_not_honoured"),
        ("PASS", "honoured (a stale ETag is refused with 412)") if caps.honours_if_match_get else
        ("PASS", "ignored; the service checks each answer's ETag, version id and Content-Range against "
                 "the pinned version itself"),
        _delete_line(caps, mode, versioned),
        ("PASS", "enabled; deletes remove exactly the transferred version id") if versioned else
        ("PASS", f"{caps.versioning.lower()}; deletes HEAD and compare the ETag first"),
        _checksum_line(caps),
    ]


def _delete_line(caps: StoreCapabilities, mode: str, versioned: bool) -> tuple[Status, str]:
    detail = f"{caps.conditional_delete} ({caps.delete_detail})"
    if versioned:
        return "PASS", f"{detail}; not needed, deletes name the version id"
    if caps.conditional_delete == "honoured":
        return "PASS", detail + ("; not used (s3.conditional_delete: off)" if mode == "off" else "")
    if mode == "required":
        return "FAIL", (f"{detail}; s3.conditional_delete is 'required', so this bucket's sources would be "
                        "kept: enable versioning on the bucket, or set conditional_delete to 'auto'")
    return "PASS", (f"{detail}; deletes use HEAD-compare-DELETE: a version written between that HEAD and "
                    "the DELETE would be deleted untransferred (enable versioning to close the window)")


def _checksum_line(caps: StoreCapabilities) -> tuple[Status, str]:
    """What HEAD with checksum mode returns (the checksums a transfer could be verified with)."""
    if caps.checksums:
        return "PASS", f"HEAD with checksum mode returns {', '.join(caps.checksums)}"
    return "PASS", "HEAD with checksum mode returns none"


# -- DRACOON ------------------------------------------------------------------------------------


@dataclass
class _Instance:
    """What the checks of one instance learned, for the checks that build on it."""

    account: DracoonAccount | None = None
    client: DracoonClient | None = None
    keys: UnlockedKeyPair | None = None
    room: Node | None = None


async def _check_instance(
    run: _Run, config: AppConfig, provider: InstanceProvider, domain: str, *, write_probe: bool
) -> None:
    prefix = f"dracoon[{domain}]"
    state = _Instance()
    async with AsyncExitStack() as stack:

        async def login() -> str:
            account = await provider.get(domain)
            if account.storage != "dracoon":
                raise _Skip(f"storage is {account.storage!r}, not DRACOON")
            state.account = account
            client = await stack.enter_async_context(DracoonClient(account, config.dracoon))
            state.client = client
            user = await client.ping_authenticated()
            return f"logged in to {client.base_url} as {user.user_name or account.login} (user id {user.id})"

        who = f"instance {domain}"
        if not await run.check(f"{prefix} login", login,
                               hint=f"check base_url, login, password and client_id/client_secret of {who}",
                               unreachable_hint=f"check base_url of {who} and that this host can reach "
                                                "it (DNS, proxy, firewall, TLS)"):
            if run.results[-1].status == "FAIL":
                for what in ("key pair", "parent room") + (("write probe",) if write_probe else ()):
                    run.emit("SKIP", f"{prefix} {what}", "needs a working login")
            return
        assert state.client is not None and state.account is not None
        client, account = state.client, state.account

        async def key_pair() -> str:
            pairs = await client.get_key_pairs()
            if not pairs:
                raise PermanentError(f"DRACOON account {account.login} has no key pair; set one up by "
                                     "logging in to DRACOON once with this account", code="no_key_pair")
            pair = preferred_key_pair(pairs)
            version = pair.public_key_container.version.value
            try:
                state.keys = await asyncio.to_thread(
                    unlock_key_pair, pair, account.encryption_password.get_secret_value())
            except WrongPassword:
                raise PermanentError(f"the encryption password does not unlock the {version} key pair",
                                     code="wrong_encryption_password") from None
            others = [await _other_pair(p, account.encryption_password.get_secret_value())
                      for p in pairs if p is not pair]
            also = f"; the account also has {', '.join(others)}" if others else ""
            return f"{version} key pair unlocked with the encryption password{also}"

        await run.check(f"{prefix} key pair", key_pair,
                        hint=f"check encryption_password of {who} (the DRACOON encryption password)")

        async def parent_room() -> str:
            state.room = await _parent_room(client, account)
            room = state.room
            manage = "" if "manage" in room.permissions else (
                "; no 'manage' permission, so target rooms must exist already")
            return f"room {room.id} {room.name!r} is encrypted and {account.login} may upload to it{manage}"

        await run.check(f"{prefix} parent room", parent_room, hint=f"check parent_room_id of {who}")
        if not write_probe:
            return

        async def probe() -> str:
            if state.keys is None or state.room is None:
                raise _Skip("needs a passing key pair and parent room check")
            return await _write_probe(client, config, state.keys, state.room, run.timeout)

        await run.check(f"{prefix} write probe", probe, own_timeouts=True,
                        hint=f"{account.login} needs upload, download and delete rights in the parent room")


async def _other_pair(pair: UserKeyPair, password: str) -> str:
    """An older key pair (DRACOON's migration from "A"): the sharer needs it for old files."""
    version = pair.public_key_container.version.value
    try:
        await asyncio.to_thread(unlock_key_pair, pair, password)
    except WrongPassword:
        return (f"{version}, which does not unlock with it: file keys held only for {version} "
                "(files from before the migration) cannot be shared")
    except CryptoError as exc:  # a damaged old pair costs its files, not the account
        return f"{version}, which is unusable ({exc}): file keys held only for {version} cannot be shared"
    return f"{version}, which unlocks too"


async def _parent_room(client: DracoonClient, account: DracoonAccount) -> Node:
    try:
        room = await client.get_node(account.parent_room_id)
    except NotFound:
        raise PermanentError(f"node {account.parent_room_id} does not exist or {account.login} cannot see it",
                             code="parent_room_missing") from None
    if not room.is_room:
        raise PermanentError(f"node {room.id} {room.name!r} is a {room.type}, not a room", code="not_a_room")
    if not room.is_encrypted:
        raise PermanentError(f"room {room.id} {room.name!r} is not encrypted; enable encryption on it "
                             "(recordings are only stored encrypted)", code="room_not_encrypted")
    if "create" not in room.permissions:
        raise PermanentError(f"{account.login} lacks the 'create' permission on room {room.id} "
                             f"{room.name!r}; grant it upload rights", code="no_create_permission")
    return room


async def _write_probe(
    client: DracoonClient, config: AppConfig, keys: UnlockedKeyPair, room: Node, timeout: float
) -> str:
    """Upload a tiny encrypted file, read it back with our own key, and delete it.

    The deletion runs under its own timeout even when the upload or read-back failed, so a
    probe leaves nothing behind unless DRACOON refuses the delete (then the reason says so).
    """
    name = f"{PROBE_PREFIX}{secrets.token_hex(6)}.txt"
    plain = f"recording-storage write probe {datetime.now(UTC).isoformat()}\n".encode()
    created: list[int] = []
    try:
        async with asyncio.timeout(2 * timeout):
            encryptor = FileEncryptor(generate_file_key(), size=len(plain))
            ciphertext = encryptor.update(plain)
            encryptor.finalize()
            file_key = encrypt_file_key(encryptor.file_key(), keys.public_key_container)
            upload = await client.open_upload(
                room.id, name, len(ciphertext), expire_at=None, classification=config.dracoon.classification,
                notes="recording-storage check: write probe, deleted right away")
            async with upload:
                await upload.write(ciphertext)
                node = await upload.complete(file_key, resolution="fail")
            created.append(node.id)
            decryptor = FileDecryptor(keys.decrypt_file_key(await client.get_user_file_key(node.id)))
            back = b"".join([decryptor.update(chunk) async for chunk in client.download(node.id)])
            decryptor.finalize()
            if back != plain:
                raise PermanentError("the file read back differs from what was uploaded",
                                     code="probe_mismatch")
    finally:
        if created:
            await _delete_probe(client, created[0], name, timeout)
    return (f"uploaded {len(plain)} bytes encrypted as {name!r} ({upload.variant} upload), "
            "read back, decrypted and deleted")


async def _delete_probe(client: DracoonClient, node_id: int, name: str, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await client.delete_nodes([node_id])
    except (RecordingStorageError, TimeoutError) as exc:
        raise PermanentError(f"could not delete the probe file {name!r} (node {node_id}): {exc}; "
                             "delete it by hand", code="probe_not_deleted") from exc


# -- issue 15: what the configuration check and the DLQ backlog report ------------------------

_AWS_UNREACHABLE = ("check aws.endpoint_url, aws.region and that this host can reach AWS "
                    "(DNS, proxy, firewall)")


def _probe_settings(config: AppConfig) -> AppConfig:
    """The configuration with the check's bounded retries and connect timeout."""
    aws = config.aws.model_copy(update={
        "max_attempts": min(config.aws.max_attempts, CHECK_AWS_ATTEMPTS),
        "connect_timeout": min(config.aws.connect_timeout, CHECK_CONNECT_TIMEOUT)})
    dracoon = config.dracoon.model_copy(update={
        "max_retries": min(config.dracoon.max_retries, CHECK_DRACOON_RETRIES)})
    return config.model_copy(update={"aws": aws, "dracoon": dracoon})


async def _check_config(run: _Run, config: AppConfig, config_file: Path | None) -> bool:
    """Which file, and whether the AWS settings are usable (endpoints, key pairs): a setting
    only the clients validate must fail here, not after ``PASS config``."""
    try:
        client_kwargs(config.aws)
        for bucket in config.s3.buckets:
            settings = bucket_settings(config.aws, config.s3, bucket)
            if settings is not None:
                client_kwargs(settings[0], where=f"s3.buckets.{bucket}")
    except ConfigError as exc:
        problems = "; ".join(str(p) for p in exc.problems)
        run.emit("FAIL", "config", f"invalid configuration: {problems}")
        return False
    if config_file is None:
        run.emit("WARN", "config", "no configuration file (none given with -c, no $RECORDING_STORAGE_CONFIG, "
                 "no conf/app.yaml here): using defaults and RECORDING_STORAGE__* variables only")
    else:
        shown = await asyncio.to_thread(config_file.resolve)
        run.emit("PASS", "config", f"{shown} valid (relative paths from {config.base_dir})")
    return True


async def _check_dlq_backlog(run: _Run, config: AppConfig) -> None:
    """Dead letters waiting are jobs not done: a passing check must not hide them."""
    name = config.queue.dlq_name
    if name is None or any(r.name == "sqs dlq" and r.status != "PASS" for r in run.results):
        return
    qcfg = config.queue.model_copy(update={"name": name, "dlq_name": None})

    async def depth() -> str:
        async with JobQueue(config.aws, qcfg, base_dir=config.base_dir) as queue:
            attrs = await queue.attributes()
        waiting = int(attrs.get("ApproximateNumberOfMessages", "0"))
        hidden = int(attrs.get("ApproximateNumberOfMessagesNotVisible", "0"))
        if waiting + hidden:
            return Warn(f"{waiting + hidden} dead-lettered job(s) in {name!r}; see `recording-storage dlq "
                        "list`, fix the cause, then `recording-storage dlq redrive`")
        return f"{name!r} is empty"

    await run.check("sqs dlq backlog", depth, hint="see the sqs dlq check", unreachable_hint=_AWS_UNREACHABLE)
