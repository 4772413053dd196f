"""The HTTP side of health: routes, CORS, error bodies and the server's lifecycle.

Handlers only read ``HealthState``; every decision about what is healthy lives there. Handler
errors become JSON bodies, never tracebacks.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import HealthConfig
from ..errors import StartupError
from ..metrics import Metrics
from .state import CORS_HEADERS, LOG_CODE, HealthState, HealthVerdict

__all__ = ["make_health_app", "serve_health"]

log = structlog.get_logger(__name__)

STATE_KEY: Final = web.AppKey("health_state", HealthState)
METRICS_KEY: Final = web.AppKey("health_metrics", Metrics)
CONFIG_KEY: Final = web.AppKey("health_config", HealthConfig)


def _error_body(error: str, description: str) -> dict[str, str]:
    return {"status": "error", "error": error, "description": description}


@web.middleware
async def _cors_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS headers on every response, and JSON instead of aiohttp's or a traceback's text."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = web.json_response(_error_body("http_error", exc.reason), status=exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("health_handler_failed", code=LOG_CODE, path=request.path)
        response = web.json_response(_error_body("internal_error", "internal error"), status=500)
    response.headers.update(CORS_HEADERS)
    return response


async def _healthcheck(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG_KEY]
    result = await request.app[STATE_KEY].healthcheck(
        cache_seconds=cfg.cache_seconds, stale_after=cfg.stale_after
    )
    if result.ok:
        return web.json_response({"status": "success"})
    return web.json_response(_error_body(result.error or "error", result.description or ""), status=500)


def _probe_response(result: HealthVerdict, **extra: Any) -> web.Response:
    """Kubernetes probes only read the status; the JSON body is for the humans debugging them."""
    body: dict[str, Any] = {"status": "ok" if result.ok else "error"}
    if not result.ok:
        body.update(error=result.error, reason=result.description)
    body.update(extra)
    return web.json_response(body, status=200 if result.ok else 503)


async def _livez(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    # Pools, not job slots: one pool runs workers.count jobs at a time.
    return _probe_response(state.liveness(), worker_pools=state.running_workers)


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    result = await state.readiness(cache_seconds=request.app[CONFIG_KEY].cache_seconds)
    extra = {} if state.last_sharer_ok is None else {"sharer_last_pass_ok": state.last_sharer_ok}
    return _probe_response(result, **extra)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


def make_health_app(state: HealthState, metrics: Metrics, cfg: HealthConfig) -> web.Application:
    """The health application; everything it needs travels in typed app keys, no globals."""
    app = web.Application(middlewares=[_cors_and_errors])
    app[STATE_KEY] = state
    app[METRICS_KEY] = metrics
    app[CONFIG_KEY] = cfg
    app.router.add_get("/healthcheck", _healthcheck)
    app.router.add_get("/api/v1/healthcheck", _healthcheck)
    app.router.add_get("/livez", _livez)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


@asynccontextmanager
async def serve_health(state: HealthState, metrics: Metrics, cfg: HealthConfig) -> AsyncIterator[str]:
    """Serve the health app on ``cfg.host:cfg.port`` and yield its base URL.

    Port 0 binds a free port (tests). ``cfg.enabled`` is the caller's decision. Access logs are
    off: probes every few seconds would drown the job logs.
    """
    runner = web.AppRunner(make_health_app(state, metrics, cfg), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            # Two `run` on one host meet here; a traceback would hide the one useful fact.
            raise StartupError(
                f"the health server cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}; "
                f"{_bind_advice(exc)}, or set health.enabled: false",
                code="health_port_unavailable") from None
        host, port = runner.addresses[0][:2]
        url = f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"
        log.info("health_server_started", url=url)
        yield url
    finally:
        # Probes first, so requests waiting on one are answered before the runner drains them.
        await state.cancel_probes()
        await runner.cleanup()


def _bind_advice(exc: OSError) -> str:
    """What to change, by why the bind failed."""
    if exc.errno == errno.EADDRINUSE:
        return ("another process (a second `recording-storage run`?) holds the port: stop it, or set "
                "health.port (RECORDING_STORAGE__HEALTH__PORT) to a free port")
    if exc.errno == errno.EACCES:
        return ("ports below 1024 need privileges: set health.port (RECORDING_STORAGE__HEALTH__PORT) "
                "to 1024 or more")
    return ("set health.host (RECORDING_STORAGE__HEALTH__HOST) to an address of this host "
            "(0.0.0.0 for every interface, 127.0.0.1 for local only)")
