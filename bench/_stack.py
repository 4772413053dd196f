"""The pipeline benchmarks' local stack: moto (S3) and the DRACOON emulator in helper processes.

``running_stack()`` starts the servers (see ``bench/_servers.py``), seeds the emulator with a
service user who administers an encrypted parent room, and describes how to reach both; the
transfer under test runs in the bench process or in a child of its own, never next to a server.
The emulator always runs with ``discard_content`` (benchmarks move GiBs; it keeps size and
SHA-256 only). Helpers here build the service configuration, job messages, an instance provider
for the one seeded account, and large S3 objects uploaded in parts from generated data.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr

from recording_storage.config import AppConfig
from recording_storage.instances import DracoonAccount
from recording_storage.jobs import job_message_body, parse_job_message
from recording_storage.pool import DracoonPool
from recording_storage.s3 import S3Source, connection_limit
from recording_storage.targets import MessageJob
from recording_storage.transfer import Transferer, hash_threads

__all__ = [
    "BUCKET",
    "DOMAIN",
    "ROOT",
    "MIB",
    "TransferPipeline",
    "Stack",
    "StaticInstances",
    "app_config",
    "cpu_seconds",
    "create_bucket",
    "job_for",
    "put_generated_object",
    "quiet_logs",
    "rss_mib",
    "running_stack",
    "transfer_pipeline",
]

MIB = 1024 * 1024
BUCKET = "bench-recordings"
DOMAIN = "bench.local"
CLIENT_ID, CLIENT_SECRET = "recording-storage-bench", "bench-client-secret"  # emulator-only
LOGIN, PASSWORD, ENCRYPTION_PASSWORD = "bench-bot", "Bench-Login-Pw-1", "Bench-Encryption-Pw-1"
PARENT_ROOM_ID = 1001
KDF_ITERATIONS = 1000  # unlocking is not what these benchmarks measure
_STARTUP_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent


def quiet_logs() -> None:
    """Warnings and errors only, to stderr: per-upload info lines would drown the results table."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident set size in MiB: now (``VmRSS``) or its peak (``VmHWM``).

    ``VmHWM`` is the peak of this process image only. ``getrusage().ru_maxrss`` is not: Linux
    carries the pre-exec memory's peak over an ``exec``, and with ``vfork`` (which subprocess
    uses) that memory is the parent's, so a child started by a big parent reports the parent's
    peak (verified: a 500 MiB parent's fresh child reports ru_maxrss 511 MiB, VmHWM 11 MiB).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by this process ("transfer") and the given ones."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {"transfer": usage.ru_utime + usage.ru_stime}
    ticks = os.sysconf("SC_CLK_TCK")
    for name, pid in pids.items():
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        result[name] = (int(fields[11]) + int(fields[12])) / ticks
    return result


class _Server:
    """One ``bench._servers`` child: started, URL read from its READY line, stopped by closing stdin."""

    def __init__(self, kind: str, spec: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._servers", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.proc.stdin is not None
        if spec is not None:
            self.proc.stdin.write(json.dumps(spec).encode() + b"\n")
            self.proc.stdin.flush()

    def url(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"bench {self.kind} server failed to start (exit {self.proc.returncode})")
        return line.removeprefix("READY ")

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@functools.cache
def _fixture() -> dict[str, Any]:
    """The seeded tenant; the RSA-4096 key pair is generated once per bench process."""
    from dracoon_emulator.fixture import demo_fixture

    return demo_fixture(login=LOGIN, password=PASSWORD, encryption_password=ENCRYPTION_PASSWORD,
                        parent_room="Bench", parent_room_id=PARENT_ROOM_ID, kdf_iterations=KDF_ITERATIONS)


@dataclass(frozen=True)
class Stack:
    """Where the running servers are; everything a transfer process needs to reach them."""

    aws_endpoint: str | None
    dracoon_url: str
    server_pids: Mapping[str, int] = field(default_factory=dict)
    sink_url: str | None = None

    def account(self) -> DracoonAccount:
        return DracoonAccount(
            domain=DOMAIN, base_url=self.dracoon_url, login=LOGIN, password=SecretStr(PASSWORD),
            encryption_password=SecretStr(ENCRYPTION_PASSWORD), parent_room_id=PARENT_ROOM_ID,
            client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET),
        )

    def config_data(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The service configuration as plain data (JSON-able, for child processes)."""
        data: dict[str, dict[str, Any]] = {
            "aws": {"endpoint_url": self.aws_endpoint, "region": "eu-west-1",
                    "access_key_id": "bench-key", "secret_access_key": "bench-secret"},
            "s3": {"chunk_size": 8 * MIB, "parallel_ranges": 4, "delete_after_transfer": False},
            "dracoon": {"upload_mode": "proxy", "max_retries": 2},
            "workers": {"progress_interval": 3600},
            "sharer": {"enabled": False},
        }
        for section, values in (overrides or {}).items():
            data.setdefault(section, {}).update(values)
        return data

    def app_config(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> AppConfig:
        return app_config(self.config_data(overrides))


def app_config(data: Mapping[str, Any]) -> AppConfig:
    return AppConfig.model_validate({**data, "base_dir": str(ROOT)})


@contextmanager
def running_stack(
    emulator: Mapping[str, Any] | None = None, *, with_moto: bool = True, aws_rtt_ms: float = 0,
    with_sink: bool = False, aws_keep_alive: bool = False,
) -> Iterator[Stack]:
    """Start moto (optional) and the emulator (``emulator``: extra EmulatorConfig keys).

    ``aws_rtt_ms`` delays every moto request (a round trip); ``with_sink`` adds a server that
    drops whatever is POSTed to it (``Stack.sink_url``). ``aws_keep_alive`` puts a keep-alive
    front before moto (``aws_endpoint`` is then the front's), for small-request benchmarks.
    """
    config = {"discard_content": True, "clients": {CLIENT_ID: CLIENT_SECRET}, **(emulator or {})}
    servers: list[_Server] = []
    try:
        # Start both before waiting for either: their imports take a second or two each.
        moto = _Server("moto", {"rtt_ms": aws_rtt_ms}) if with_moto else None
        if moto is not None:
            servers.append(moto)
        dracoon = _Server("emulator", {"config": config, "fixture": _fixture()})
        servers.append(dracoon)
        sink = _Server("sink") if with_sink else None
        if sink is not None:
            servers.append(sink)
        aws_endpoint = moto.url() if moto is not None else None
        if aws_endpoint is not None and aws_keep_alive:
            front = _Server("front", {"upstream": aws_endpoint})
            servers.append(front)
            aws_endpoint = front.url()
        yield Stack(aws_endpoint, dracoon.url(),
                    {server.kind: server.proc.pid for server in servers},
                    sink.url() if sink is not None else None)
    finally:
        for server in servers:
            server.stop()


class StaticInstances:
    """An InstanceProvider for the one seeded account."""

    def __init__(self, account: DracoonAccount) -> None:
        self._account = account

    async def get(self, domain: str) -> DracoonAccount:
        return self._account

    async def list_domains(self) -> list[str]:
        return [self._account.domain]

    async def aclose(self) -> None:
        return None


@dataclass
class TransferPipeline:
    """The service objects one transfer needs, entered (a slice of ``service.Runtime``)."""

    config: AppConfig
    s3: S3Source
    pool: DracoonPool
    transferer: Transferer


@asynccontextmanager
async def transfer_pipeline(stack: Stack, config: AppConfig) -> AsyncIterator[TransferPipeline]:
    """Clients as ``service.open_runtime`` sizes them for one worker, and a Transferer."""
    async with AsyncExitStack() as exits:
        s3 = await exits.enter_async_context(
            S3Source(config.aws, config.s3, max_connections=connection_limit(config.s3, workers=1)))
        pool = await exits.enter_async_context(DracoonPool(config.dracoon))
        threads = exits.enter_context(hash_threads(1))
        transferer = Transferer(s3, pool, StaticInstances(stack.account()), hash_threads=threads,
                                s3_cfg=config.s3, dracoon_cfg=config.dracoon, workers_cfg=config.workers,
                                sharer_cfg=config.sharer)
        yield TransferPipeline(config, s3, pool, transferer)


def job_for(key: str, target_path: str) -> MessageJob:
    """A job message (the original's wire format) moving ``key`` to one target room path."""
    body = job_message_body(
        BUCKET, [key], domain=DOMAIN, targets=[{"path": target_path, "expiration": ""}],
        meeting={"id": 7, "date": "2026-11-20T10:15:00+01:00", "timezone": "Europe/Berlin",
                 "type": {"name": "Bench", "duration": 30, "id": 1}},
    )
    return MessageJob(parse_job_message(json.dumps(body)))


async def download_only(s3: S3Source, key: str, size: int) -> None:
    """The service's download leg alone: HEAD, then every ranged GET, the bytes dropped."""
    info = await s3.head(BUCKET, key)
    got = 0
    async with contextlib.aclosing(s3.iter_chunks(info)) as chunks:
        async for chunk in chunks:
            got += len(chunk)
            s3.recycle(chunk)  # as the transfer does once a chunk is encrypted and hashed
    if got != size:
        raise RuntimeError(f"download-only read {got} of {size} bytes")


async def create_bucket(config: AppConfig) -> None:
    async with S3Source(config.aws, config.s3) as s3:
        await s3.create_bucket(BUCKET)


async def put_generated_object(config: AppConfig, key: str, size: int, *, part_size: int = 64 * MIB) -> float:
    """Upload ``size`` generated bytes as a multipart object, one part in memory at a time.

    Parts are a random 1 MiB block repeated, with the part number stamped in front, so no two
    parts are equal. The object carries a full-object CRC64NVME (moto combines it once, at
    completion; set-up time, not measured). Returns the seconds taken.
    """
    from recording_storage.aws import client_kwargs, make_session

    started = time.perf_counter()
    block = os.urandom(MIB)
    async with make_session().create_client("s3", **client_kwargs(config.aws)) as client:
        if size < part_size:
            await client.put_object(Bucket=BUCKET, Key=key, Body=(block * (size // MIB + 1))[:size])
            return time.perf_counter() - started
        # A full-object CRC64NVME, as current AWS SDKs store by default: the service proves the
        # content with it and needs no part layout (moto answers per-part HEADs by copying each
        # part, work S3 does not charge to the client, which would swamp the overlap figures).
        upload = await client.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="CRC64NVME",
                                                      ChecksumType="FULL_OBJECT")
        parts = []
        for number, offset in enumerate(range(0, size, part_size), start=1):
            length = min(part_size, size - offset)
            body = (number.to_bytes(8, "big") + block * (length // MIB + 1))[:length]
            reply = await client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                                             PartNumber=number, Body=body, ChecksumAlgorithm="CRC64NVME")
            parts.append({"PartNumber": number, "ETag": reply["ETag"],
                          "ChecksumCRC64NVME": reply["ChecksumCRC64NVME"]})
            del body
        await client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                                               MultipartUpload={"Parts": parts})
    return time.perf_counter() - started
