"""Health server over real sockets: the original's /healthcheck contract, livez/readyz, /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recording_storage.config import HealthConfig
from recording_storage.health import (
    CORS_HEADERS,
    DEP_S3,
    DEP_SQS,
    ERROR_DRACOON,
    ERROR_S3,
    ERROR_WORKERS,
    HealthState,
    ProbeResult,
    dracoon_dependency,
    serve_health,
)
from recording_storage.metrics import Metrics
from tests.fixtures.clock import FakeClock

CFG = HealthConfig(host="127.0.0.1", port=0, cache_seconds=10.0, stale_after=120.0)
DRACOON = dracoon_dependency("acme.dracoon.example")


class Probe:
    """A dependency probe that counts calls and can fail or block on demand."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls = 0
        self.error = error
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.cancelled = False

    async def __call__(self) -> None:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if self.error is not None:
            raise self.error


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Http:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def get(self, path: str) -> Reply:
        async with self.session.get(self.url + path) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.text())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> HealthState:
    return HealthState(clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def http(state: HealthState, metrics: Metrics) -> AsyncIterator[Http]:
    async with serve_health(state, metrics, CFG) as url, aiohttp.ClientSession() as session:
        yield Http(url, session)


def healthy(state: HealthState) -> dict[str, Probe]:
    """A running, polling worker and passing probes for every dependency."""
    probes = {DEP_SQS: Probe(), DEP_S3: Probe(), DRACOON: Probe()}
    state.add_probe(DEP_SQS, ERROR_WORKERS, probes[DEP_SQS])
    state.add_probe(DEP_S3, ERROR_S3, probes[DEP_S3])
    state.add_probe(DRACOON, ERROR_DRACOON, probes[DRACOON])
    state.worker_started("w1")
    state.worker_polled("w1")
    return probes


async def test_serve_health_binds_a_free_port(http: Http) -> None:
    """Port 0 yields the real bound address."""
    assert http.url.startswith("http://127.0.0.1:")
    assert not http.url.endswith(":0")


@pytest.mark.parametrize("path", ["/healthcheck", "/api/v1/healthcheck"])
async def test_healthcheck_success(http: Http, state: HealthState, path: str) -> None:
    """All checks pass -> 200 and exactly the original's success body, on both routes."""
    probes = healthy(state)
    reply = await http.get(path)
    assert reply.status == 200
    assert reply.json() == {"status": "success"}
    assert reply.headers["Content-Type"].startswith("application/json")
    assert all(p.calls == 1 for p in probes.values())


async def test_no_workers(http: Http, state: HealthState) -> None:
    """Before any worker starts, and after all stop, the original's worker error is returned."""
    reply = await http.get("/healthcheck")
    assert reply.status == 500
    assert reply.json() == {
        "status": "error", "error": "worker_error_file_transferer", "description": "No running workers",
    }
    state.worker_started("w1")
    assert (await http.get("/healthcheck")).status == 200
    state.worker_stopped("w1")
    reply = await http.get("/healthcheck")
    assert (reply.status, reply.json()["description"]) == (500, "No running workers")


async def test_stale_workers(http: Http, state: HealthState, clock: FakeClock) -> None:
    """No poll within stale_after -> worker error naming the age; a poll clears it."""
    state.worker_started("w1")
    state.worker_started("w2")
    state.worker_polled("w1")
    clock.advance(120)
    assert (await http.get("/healthcheck")).status == 200
    clock.advance(5)
    reply = await http.get("/healthcheck")
    assert reply.status == 500
    assert reply.json() == {
        "status": "error", "error": ERROR_WORKERS, "description": "workers have not polled for 125s",
    }
    state.worker_polled("w2")
    assert (await http.get("/healthcheck")).status == 200


async def test_busy_worker_is_not_stale(http: Http, state: HealthState, clock: FakeClock) -> None:
    """A worker in a two-hour transfer does not poll, yet the service is healthy."""
    state.worker_started("w1")
    state.worker_busy("w1")
    clock.advance(7200)
    assert (await http.get("/healthcheck")).status == 200
    state.worker_polled("w1")  # back to idle: staleness counts again from here
    clock.advance(121)
    assert (await http.get("/healthcheck")).status == 500


async def test_failed_receive(http: Http, state: HealthState) -> None:
    """A failing SQS receive is reported until the next successful poll."""
    healthy(state)
    state.receive_failed(RuntimeError("AccessDenied on ReceiveMessage"))
    reply = await http.get("/healthcheck")
    assert reply.status == 500
    assert reply.json()["error"] == ERROR_WORKERS
    assert reply.json()["description"] == "SQS receive failed: RuntimeError: AccessDenied on ReceiveMessage"
    state.worker_polled("w1")
    assert (await http.get("/healthcheck")).status == 200


async def test_failing_s3_probe(http: Http, state: HealthState) -> None:
    """A failing S3 probe -> storage_amazon_s3 with the error text as description."""
    probes = healthy(state)
    probes[DEP_S3].error = RuntimeError("HeadBucket returned 403 Forbidden")
    reply = await http.get("/healthcheck")
    assert reply.status == 500
    assert reply.json() == {
        "status": "error",
        "error": ERROR_S3,
        "description": "RuntimeError: HeadBucket returned 403 Forbidden",
    }


async def test_failing_dracoon_probe(http: Http, state: HealthState) -> None:
    """A failing DRACOON probe -> storage_dracoon."""
    probes = healthy(state)
    probes[DRACOON].error = PermissionError("401 invalid_grant")
    reply = await http.get("/healthcheck")
    assert (reply.status, reply.json()["error"]) == (500, ERROR_DRACOON)
    assert reply.json()["description"] == "PermissionError: 401 invalid_grant"


async def test_failures_are_reported_in_the_original_order(
    http: Http, state: HealthState, clock: FakeClock
) -> None:
    """Workers/SQS before S3 before DRACOON, whatever order the probes were registered in."""
    dracoon, s3, sqs = Probe(RuntimeError("d")), Probe(RuntimeError("s")), Probe(RuntimeError("q"))
    state.add_probe(DRACOON, ERROR_DRACOON, dracoon)
    state.add_probe(DEP_S3, ERROR_S3, s3)
    state.add_probe(DEP_SQS, ERROR_WORKERS, sqs)
    state.worker_started("w1")
    seen = []
    for fixed in (sqs, s3, dracoon):
        state.worker_polled("w1")
        reply = await http.get("/healthcheck")
        seen.append((reply.status, reply.json().get("error")))
        fixed.error = None
        clock.advance(11)  # past the cache window
    state.worker_polled("w1")
    seen.append(((await http.get("/healthcheck")).status, None))
    assert seen == [(500, ERROR_WORKERS), (500, ERROR_S3), (500, ERROR_DRACOON), (200, None)]


async def test_probe_errors_are_scrubbed(http: Http, state: HealthState) -> None:
    """Presigned URLs, e-mail addresses and credential pairs never reach the response."""
    probes = healthy(state)
    probes[DRACOON].error = RuntimeError(
        "login as jane.doe@example.com failed: PUT https://s3.example/b/k?X-Amz-Signature=SIGSIGSIG "
        "password=hunter2 Authorization: Bearer TOKTOKTOKTOK"
    )
    body = (await http.get("/healthcheck")).text
    for leaked in ("jane.doe", "example.com", "SIGSIGSIG", "hunter2", "TOKTOKTOKTOK"):
        assert leaked not in body
    assert "https://s3.example/b/k?<redacted>" in body


async def test_registered_secret_is_redacted(http: Http, state: HealthState) -> None:
    """A secret registered with the logs module (e.g. an instance password) never reaches the body."""
    logs = pytest.importorskip("recording_storage.logs")
    if not hasattr(logs, "register_secrets") or not hasattr(logs, "redact"):
        pytest.skip("recording_storage.logs has no register_secrets/redact yet")
    sentinel = "S3ntinel-Pa55word-7f1c"
    logs.register_secrets(sentinel)
    probes = healthy(state)
    probes[DRACOON].error = RuntimeError(f"could not unlock key pair with {sentinel}")
    reply = await http.get("/healthcheck")
    assert reply.status == 500
    assert reply.json()["error"] == ERROR_DRACOON
    assert sentinel not in reply.text
    assert "could not unlock key pair with" in reply.text


async def test_long_descriptions_are_truncated(http: Http, state: HealthState) -> None:
    """A huge error message does not become a huge response."""
    probes = healthy(state)
    probes[DEP_S3].error = RuntimeError("x" * 10_000)
    description = (await http.get("/healthcheck")).json()["description"]
    assert len(description) == 300
    assert description.endswith("...")


async def test_probe_results_are_cached(http: Http, state: HealthState, clock: FakeClock) -> None:
    """Within cache_seconds a probe runs once, failures included; after it, it runs again."""
    probes = healthy(state)
    probes[DEP_S3].error = RuntimeError("down")
    for _ in range(5):
        assert (await http.get("/healthcheck")).status == 500
    assert probes[DEP_S3].calls == 1
    assert probes[DRACOON].calls == 1
    clock.advance(9.9)
    await http.get("/healthcheck")
    assert probes[DEP_S3].calls == 1
    probes[DEP_S3].error = None
    clock.advance(0.2)
    assert (await http.get("/healthcheck")).status == 200
    assert probes[DEP_S3].calls == 2
    assert probes[DRACOON].calls == 2


class EntryCountingState(HealthState):
    """Signals when ``expected`` callers have asked for a probe, so the test need not sleep."""

    def __init__(self, expected: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected = expected
        self.entered = 0
        self.all_in = asyncio.Event()

    async def probe(self, name: str, cache_seconds: float) -> ProbeResult:
        self.entered += 1
        if self.entered >= self.expected:
            self.all_in.set()
        return await super().probe(name, cache_seconds)


async def test_concurrent_requests_share_one_probe_run(metrics: Metrics) -> None:
    """Single-flight: five concurrent requests, no cache at all, one probe call."""
    state = EntryCountingState(5, clock=FakeClock())
    probe = Probe()
    probe.gate = asyncio.Event()
    state.add_probe(DEP_S3, ERROR_S3, probe)
    state.worker_started("w1")
    cfg = CFG.model_copy(update={"cache_seconds": 0.0})
    async with serve_health(state, metrics, cfg) as url, aiohttp.ClientSession() as session:
        http = Http(url, session)
        requests = [asyncio.create_task(http.get("/healthcheck")) for _ in range(5)]
        await state.all_in.wait()
        probe.gate.set()
        replies = await asyncio.gather(*requests)
        assert [r.status for r in replies] == [200] * 5
        assert probe.calls == 1
        await http.get("/healthcheck")  # with no cache, a later request runs it again
        assert probe.calls == 2


async def test_a_caller_going_away_does_not_cancel_the_shared_probe(state: HealthState) -> None:
    """The shared run is shielded: cancelling one waiter leaves the result for the others."""
    probe = Probe()
    probe.gate = asyncio.Event()
    state.add_probe(DEP_S3, ERROR_S3, probe)
    first = asyncio.create_task(state.probe(DEP_S3, 10))
    second = asyncio.create_task(state.probe(DEP_S3, 10))
    await probe.started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    probe.gate.set()
    assert (await second).ok
    assert probe.calls == 1
    assert not probe.cancelled


async def test_probe_timeout(metrics: Metrics) -> None:
    """A probe that hangs fails as 'timed out' instead of hanging the endpoint."""
    state = HealthState(probe_timeout=0.05)
    probe = Probe()
    probe.gate = asyncio.Event()  # never set
    state.add_probe(DRACOON, ERROR_DRACOON, probe)
    state.worker_started("w1")
    async with serve_health(state, metrics, CFG) as url, aiohttp.ClientSession() as session:
        reply = await Http(url, session).get("/healthcheck")
    assert reply.status == 500
    assert reply.json() == {"status": "error", "error": ERROR_DRACOON, "description": "timed out after 0.05s"}
    assert probe.cancelled


async def test_shutdown_answers_requests_waiting_on_a_probe(state: HealthState, metrics: Metrics) -> None:
    """Leaving serve_health cancels in-flight probes and still answers their waiting requests."""
    probe = Probe()
    probe.gate = asyncio.Event()
    state.add_probe(DEP_S3, ERROR_S3, probe)
    state.worker_started("w1")
    async with aiohttp.ClientSession() as session:
        async with serve_health(state, metrics, CFG) as url:
            request = asyncio.create_task(Http(url, session).get("/healthcheck"))
            await probe.started.wait()
        reply = await request
    assert probe.cancelled
    assert reply.status == 500
    assert reply.json()["description"] == "probe cancelled: shutting down"


async def test_livez(http: Http, state: HealthState) -> None:
    """Alive while worker tasks run or have not started yet; dead once all ended outside shutdown.

    It never calls a dependency.
    """
    probes = healthy(state)
    reply = await http.get("/livez")
    assert (reply.status, reply.json()) == (200, {"status": "ok", "worker_pools": 1})
    probes[DEP_S3].error = RuntimeError("down")
    assert (await http.get("/livez")).status == 200
    state.worker_stopped("w1")
    reply = await http.get("/livez")
    assert reply.status == 503
    assert reply.json() == {
        "status": "error", "error": "workers_dead", "reason": "No running workers", "worker_pools": 0,
    }
    state.shutting_down = True
    assert (await http.get("/livez")).status == 200
    assert all(p.calls == 0 for p in probes.values())


async def test_livez_before_workers_and_without_workers(clock: FakeClock, metrics: Metrics) -> None:
    """Startup is not death; a process configured without workers is alive without them."""
    for state in (HealthState(clock=clock), HealthState(clock=clock, require_workers=False)):
        async with serve_health(state, metrics, CFG) as url, aiohttp.ClientSession() as session:
            assert (await Http(url, session).get("/livez")).status == 200


async def test_readyz(http: Http, state: HealthState, clock: FakeClock) -> None:
    """Ready once config is valid and each dependency was reached; not while shutting down."""
    s3 = Probe(RuntimeError("no route"))
    state.add_probe(DEP_S3, ERROR_S3, s3)
    state.require_dependency(DEP_SQS)
    reply = await http.get("/readyz")
    assert reply.status == 503
    assert reply.json() == {
        "status": "error", "error": "config_not_valid", "reason": "configuration not validated yet",
    }
    state.mark_config_valid()
    reply = await http.get("/readyz")
    assert reply.status == 503
    assert reply.json()["reason"] == "not reached yet: s3, sqs"
    s3.error = None
    clock.advance(11)
    state.worker_polled("w1")  # a successful receive proves SQS
    reply = await http.get("/readyz")
    assert (reply.status, reply.json()) == (200, {"status": "ok"})
    assert state.ready
    calls = s3.calls
    clock.advance(3600)
    assert (await http.get("/readyz")).status == 200
    assert s3.calls == calls  # once reached, readiness makes no downstream calls
    state.shutting_down = True
    reply = await http.get("/readyz")
    assert (reply.status, reply.json()["error"]) == (503, "shutting_down")
    assert not state.ready


async def test_readyz_with_dependency_marked_by_the_service(http: Http, state: HealthState) -> None:
    """A dependency without a probe becomes ready when the service marks it reached."""
    state.mark_config_valid()
    state.require_dependency("instances")
    assert (await http.get("/readyz")).status == 503
    state.mark_dependency_ok("instances")
    state.sharer_pass(False)
    reply = await http.get("/readyz")
    assert (reply.status, reply.json()) == (200, {"status": "ok", "sharer_last_pass_ok": False})


@pytest.mark.parametrize("path", ["/healthcheck", "/api/v1/healthcheck", "/livez", "/readyz", "/metrics",
                                  "/nope"])
async def test_cors_headers_on_every_response(http: Http, path: str) -> None:
    """The original's CORS headers are on every response, errors and 404 included."""
    reply = await http.get(path)
    for name, value in CORS_HEADERS.items():
        assert reply.headers[name] == value


async def test_unknown_path_is_json_404(http: Http) -> None:
    """aiohttp's HTML/text error pages are replaced by JSON."""
    reply = await http.get("/nope")
    assert reply.status == 404
    assert reply.json()["status"] == "error"


async def test_metrics_endpoint(http: Http, metrics: Metrics) -> None:
    """/metrics serves the registry with its content type, and values move with the calls."""
    metrics.job_finished("success", 12.5)
    metrics.add_bytes(4096)
    metrics.dracoon_request("PUT", "/api/v4/uploads/tok", 201)
    reply = await http.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == metrics.content_type
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }
    assert values[("recording_storage_jobs_total", (("outcome", "success"),))] == 1
    assert values[("recording_storage_transferred_bytes_total", ())] == 4096
    assert values[("recording_storage_dracoon_requests_total", (("method", "PUT"), ("status", "201")))] == 1
    metrics.job_finished("success", 1.0)
    again = (await http.get("/metrics")).text
    assert 'recording_storage_jobs_total{outcome="success"} 2.0' in again


class BrokenMetrics(Metrics):
    def render(self) -> bytes:
        raise RuntimeError("boom with secret s3cr3t-value in a traceback")


async def test_handler_error_never_leaks_a_traceback(state: HealthState) -> None:
    """An unexpected handler error is a plain JSON 500 with CORS headers, nothing more."""
    async with serve_health(state, BrokenMetrics(), CFG) as url, aiohttp.ClientSession() as session:
        reply = await Http(url, session).get("/metrics")
    assert reply.status == 500
    assert reply.json() == {"status": "error", "error": "internal_error", "description": "internal error"}
    assert "Traceback" not in reply.text
    assert "s3cr3t" not in reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


def test_add_probe_twice_is_an_error(state: HealthState) -> None:
    """A probe name identifies one dependency; registering it twice is a wiring bug."""
    state.add_probe(DEP_S3, ERROR_S3, Probe())
    with pytest.raises(ValueError, match="already registered"):
        state.add_probe(DEP_S3, ERROR_S3, Probe())


def _refused_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


REFUSED = _refused_port()


@pytest.mark.integration
@pytest.mark.parametrize(
    "stack_overrides",
    [{
        # Enough client retries that they outlast the probe timeout: the old probes then
        # reported "timed out after 5s" instead of the refused connection.
        "aws": {"max_attempts": 8},
        "dracoon": {"max_retries": 8},
        "s3": {"probe_buckets": ["offline-bucket"],
               "buckets": {"offline-bucket": {"endpoint_url": f"http://127.0.0.1:{REFUSED}"}}},
    }],
    ids=["refused"],
)
async def test_healthcheck_reports_connection_refused_not_a_timeout(stack: Any) -> None:
    """The deep check names the real cause at once: the probes make one attempt, no backoff."""
    import yaml

    from recording_storage import service
    from recording_storage.health import ERROR_S3, dracoon_dependency

    path = stack.config.resolve(stack.config.instances.file)
    instances = yaml.safe_load(path.read_text(encoding="utf-8"))
    (entry,) = instances["instances"].values()
    offline = json.loads(json.dumps(entry))
    offline["dracoon"]["base_url"] = f"http://127.0.0.1:{REFUSED}"
    instances["instances"]["offline.example.com"] = offline
    path.write_text(yaml.safe_dump(instances), encoding="utf-8")

    async with service.open_runtime(stack.config, with_health=False) as rt:
        s3 = await rt.health.probe(DEP_S3, cache_seconds=0)
        dracoon = await rt.health.probe(dracoon_dependency("offline.example.com"), cache_seconds=0)
        rt.health.worker_started("pool")
        rt.health.worker_polled("pool")
        result = await rt.health.healthcheck(cache_seconds=0, stale_after=60)
    for probe in (s3, dracoon):
        assert not probe.ok
        assert "timed out" not in probe.description
        assert "connect" in probe.description.lower(), probe.description
    assert str(REFUSED) in dracoon.description or "127.0.0.1" in dracoon.description
    assert (result.ok, result.error) == (False, ERROR_S3)  # the original's order: S3 before DRACOON
    assert "timed out" not in (result.description or "")
