"""The one lifecycle owner: opens every client once, runs workers, sharer and health together.

Signals only set an event here; the worker pool turns that event into a graceful drain
(stop receiving, release unstarted messages, grace period, cancel and release). Clients are
closed by the exit stack in reverse order after every task has finished.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from . import __version__
from .config import AppConfig
from .errors import ConfigError, ExitCode, RecordingStorageError, StartupError
from .health import (
    DEP_S3,
    DEP_SQS,
    ERROR_DRACOON,
    ERROR_S3,
    ERROR_WORKERS,
    HealthState,
    dracoon_dependency,
    serve_health,
)
from .instances import InstanceProvider, open_instance_provider
from .intake import MessageHandler, make_decoder
from .logs import Code, register_secrets
from .metrics import Metrics
from .pool import DracoonPool
from .s3 import S3Source, connection_limit
from .sharer import Sharer
from .sqs import BodyStore, JobQueue
from .transfer import Transferer, hash_threads
from .worker import PoolStats, WorkerPool

__all__ = ["Runtime", "open_runtime", "run", "serve", "share_once"]

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Every long-lived object of one service process, entered and ready."""

    config: AppConfig
    instances: InstanceProvider
    s3: S3Source
    queue: JobQueue
    pool: DracoonPool
    hash_threads: Executor  # transfer.hash_threads: every content digest, below the loop's priority
    metrics: Metrics
    health: HealthState
    health_url: str | None = None


def _secret_values(config: AppConfig) -> list[str]:
    values = [
        config.dracoon.client_secret,
        config.aws.secret_access_key,
        config.aws.session_token,
        config.instances.auth_token,
    ]
    for source in config.s3.buckets.values():  # per-bucket S3 credentials
        values += [source.secret_access_key, source.session_token]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


@asynccontextmanager
async def open_runtime(config: AppConfig, *, with_health: bool = True) -> AsyncIterator[Runtime]:
    """Enter every client once; used by ``run``, ``share`` and the tests."""
    register_secrets(*_secret_values(config))
    metrics = Metrics()
    health = HealthState()
    async with AsyncExitStack() as stack:
        instances = open_instance_provider(config)
        stack.push_async_callback(instances.aclose)
        s3 = await stack.enter_async_context(
            S3Source(
                config.aws,
                config.s3,
                max_connections=connection_limit(config.s3, config.workers.count),
                metrics=metrics,
            )
        )
        queue = await stack.enter_async_context(
            JobQueue(config.aws, config.queue, base_dir=config.base_dir, body_store=_s3_body_store(s3))
        )
        pool = await stack.enter_async_context(
            DracoonPool(config.dracoon, metrics=metrics)
        )
        threads = stack.enter_context(hash_threads(config.workers.count))
        runtime = Runtime(config, instances, s3, queue, pool, threads, metrics, health)
        # Probes make one attempt (no client retries), so /healthcheck names the real cause
        # (connection refused, 403) instead of "timed out" while the retries back off.
        probe_aws = config.aws.model_copy(update={"max_attempts": 1})
        probe_s3 = await stack.enter_async_context(S3Source(probe_aws, config.s3, max_connections=2))
        probe_queue = await stack.enter_async_context(
            JobQueue(probe_aws, config.queue, base_dir=config.base_dir, resolve_on_enter=False))
        await _register_probes(runtime, probe_s3, probe_queue)
        if with_health and config.health.enabled:
            runtime.health_url = await stack.enter_async_context(serve_health(health, metrics, config.health))
        yield runtime


def _s3_body_store(s3: S3Source) -> BodyStore:
    """Where a dead letter too large for the DLQ keeps its full body (``queue.dlq_overflow_bucket``)."""

    async def store(bucket: str, key: str, body: bytes) -> str:
        await s3.put(bucket, key, body, content_type="text/plain; charset=utf-8")
        return f"s3://{bucket}/{key}"

    return store


async def _register_probes(rt: Runtime, probe_s3: S3Source, probe_queue: JobQueue) -> None:
    """Health probes prove each dependency with a real, authenticated, cheap operation."""

    async def sqs_probe() -> None:
        await probe_queue.attributes()

    async def s3_probe() -> None:
        for bucket in rt.config.s3.probe_buckets:
            await probe_s3.check_bucket(bucket)

    rt.health.add_probe(DEP_SQS, ERROR_WORKERS, sqs_probe)
    if rt.config.s3.probe_buckets:
        rt.health.add_probe(DEP_S3, ERROR_S3, s3_probe)
    try:
        domains = await rt.instances.list_domains()
    except RecordingStorageError as exc:
        log.warning("instance_list_failed", error=str(exc), code=Code.CONFIG_ERROR)
        domains = []
    for domain in domains:
        rt.health.add_probe(dracoon_dependency(domain), ERROR_DRACOON, _dracoon_probe(rt, domain))


def _dracoon_probe(rt: Runtime, domain: str) -> Callable[[], Awaitable[None]]:
    async def probe() -> None:
        account = await rt.instances.get(domain)
        client = await rt.pool.client(account)
        await client.ping_authenticated(retry=False)

    return probe


async def run(
    config: AppConfig,
    *,
    drain: bool = False,
    max_messages: int | None = None,
) -> int:
    """``recording-storage run``: serve until SIGTERM/SIGINT (or the bounded mode ends).

    Returns the exit status (``ExitCode``): a stop by one signal is the normal end of a service
    (0), but it interrupts a bounded run before it is done (130), as a second signal always
    does; a finished bounded run says whether every job it took is done.
    """
    stop, force = asyncio.Event(), asyncio.Event()
    stats = await serve(config, stop=stop, force=force, drain=drain, max_messages=max_messages)
    bounded = drain or max_messages is not None
    if force.is_set() or (bounded and stop.is_set()):
        return ExitCode.INTERRUPTED
    if bounded and stats.unfinished("permanent"):
        return ExitCode.JOBS_DEAD_LETTERED
    if bounded and (stats.unfinished("transient") or stats.unfinished("cancelled")):
        return ExitCode.JOBS_LEFT_FOR_RETRY
    return ExitCode.OK


async def serve(
    config: AppConfig,
    *,
    stop: asyncio.Event | None = None,
    force: asyncio.Event | None = None,
    drain: bool = False,
    max_messages: int | None = None,
    install_signals: bool = True,
) -> PoolStats:
    """Run the service until ``stop`` (signals set it), returning the worker pool's counters.

    The first SIGTERM/SIGINT sets ``stop`` (graceful drain); a second sets ``force`` (cancel
    running jobs now and release their messages). Failing to open what the service needs
    raises StartupError, one line saying what and what to do.
    """
    stop = stop or asyncio.Event()
    force = force or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig, config, stop, force)
    log.info("service_starting", version=__version__, workers=config.workers.count, code=Code.APP_START)
    try:
        async with AsyncExitStack() as stack:
            try:
                rt = await stack.enter_async_context(open_runtime(config))
            except ConfigError:
                raise
            except RecordingStorageError as exc:
                raise _startup_error(exc) from None
            stats = await _serve(rt, stop, drain=drain, max_messages=max_messages, force=force)
    finally:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("service_stopped", outcomes=stats.outcomes)
    return stats


def _on_signal(sig: signal.Signals, config: AppConfig, stop: asyncio.Event, force: asyncio.Event) -> None:
    """First signal: drain, and say so at once with the longest wait; second: stop now."""
    if not stop.is_set():
        stop.set()
        grace = config.workers.shutdown_grace
        log.warning("shutdown_started", signal=sig.name, shutdown_grace=grace,
                    max_wait=config.queue.wait_seconds + grace,
                    hint="running jobs get shutdown_grace seconds to finish; send the signal again "
                         "(Ctrl-C) to cancel them now and release their messages")
    elif not force.is_set():
        force.set()
        log.warning("shutdown_forced", signal=sig.name,
                    hint="cancelling running jobs and releasing their messages; exit status 130")


_STARTUP_HINTS = {
    "queue_missing": "create the queue or fix queue.name / queue.dlq_name / queue.topics_file",
    "no_such_bucket": "create the bucket or fix s3.probe_buckets",
    "access_denied": "grant the permissions in docs/deploy/iam-policy.json to the service's role",
    "aws_auth": "check the AWS credentials (role, keys) and the clock",
    "connection": "check aws.endpoint_url, aws.region and network access to AWS",
    "timeout": "check aws.endpoint_url, aws.region and network access to AWS",
}


def _startup_error(exc: RecordingStorageError) -> StartupError:
    if isinstance(exc, StartupError):
        return exc
    hint = _STARTUP_HINTS.get(exc.code, "fix the cause above and start again (`recording-storage check` "
                                        "proves every dependency)")
    text = " ".join(str(exc).split())
    return StartupError(f"cannot start: {text} [{exc.code}]; {hint}", code=exc.code)


async def _serve(
    rt: Runtime, stop: asyncio.Event, *, drain: bool, max_messages: int | None,
    force: asyncio.Event | None = None,
) -> PoolStats:
    cfg = rt.config
    transferer = Transferer(rt.s3, rt.pool, rt.instances, hash_threads=rt.hash_threads, s3_cfg=cfg.s3,
                            dracoon_cfg=cfg.dracoon, workers_cfg=cfg.workers, sharer_cfg=cfg.sharer,
                            metrics=rt.metrics)
    workers = WorkerPool(
        rt.queue,
        MessageHandler(transferer, make_decoder(cfg, metrics=rt.metrics)),
        queue_cfg=cfg.queue,
        workers_cfg=cfg.workers,
        health=rt.health,
        metrics=rt.metrics,
        drain=drain,
        max_messages=max_messages,
    )
    rt.health.mark_config_valid()
    background_stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        if cfg.sharer.enabled and not (drain or max_messages):
            sharer = Sharer(rt.instances, rt.pool, cfg.sharer, metrics=rt.metrics,
                            health=rt.health)
            tg.create_task(sharer.run(background_stop), name="sharer")

        async def flag_shutdown() -> None:
            # /readyz turns 503 at once on SIGTERM, so load balancers stop routing while we drain.
            await stop.wait()
            rt.health.shutting_down = True

        watcher = tg.create_task(flag_shutdown(), name="shutdown-flag")
        try:
            stats = await workers.run(stop, force)
        finally:
            background_stop.set()
            watcher.cancel()
    return stats


async def share_once(config: AppConfig, *, only: str | None = None) -> int:
    """``recording-storage share``: one sharer pass, exit 1 if an instance failed.

    Opens only the instance source and DRACOON: a CronJob running ``share`` must not fail
    because SQS or S3, which sharing never touches, is unreachable.
    """
    register_secrets(*_secret_values(config))
    async with AsyncExitStack() as stack:
        instances = open_instance_provider(config)
        stack.push_async_callback(instances.aclose)
        pool = await stack.enter_async_context(DracoonPool(config.dracoon))
        sharer = Sharer(instances, pool, config.sharer)
        results = await sharer.run_once(only=only)
    served = sum(s.served for s in results.values())
    total = len(results) + len([d for d in sharer.failures if d])
    print(f"served {served} file key(s) for {len(results)} of {total} instance(s)")
    for domain, reason in sharer.failures.items():
        print(f"failed: {domain or 'instances'}: {reason}")
    return 1 if sharer.failures else 0
