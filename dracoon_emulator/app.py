"""The emulator server: the aiohttp application, :class:`DracoonEmulator` and :func:`run_emulator`.

Middlewares, outermost first: fault injection (so faults hit before auth, like a flaky network or
proxy would), the response contract (when on: every answer checked against the description, see
``contract.py``), the error envelope (every failure becomes DRACOON's ``ErrorResponse``), the Bearer
check. The access log is off: upload/download tokens sit in URL paths and S3 signatures in query
strings, and both are credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from . import auth, control, downloads, keys, nodes, s3, system, uploads
from .config import EmulatorConfig
from .context import CTX, Context
from .contract import CONTRACT_KEY, ResponseContract, contract_middleware
from .errors import ApiError
from .faults import FAULTS_KEY, FaultInjector, fault_middleware
from .fixture import Seeded, seed
from .state import EmulatorState

log = structlog.get_logger(__name__)

# Big enough for any chunk or part our client sends (upload_chunk_size is at most 1 GiB).
MAX_REQUEST_SIZE = 1024**3 + 1024**2


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn :class:`ApiError`, aiohttp's own HTTP errors and crashes into ``ErrorResponse`` JSON."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return ApiError(exc.status, exc.reason, None).response()
    except Exception:
        log.exception("emulator_handler_failed", method=request.method, route=str(request.match_info.route))
        return ApiError(500, "System Error", None).response()


def build_app(
    state: EmulatorState,
    config: EmulatorConfig,
    faults: FaultInjector,
    contract: ResponseContract | None = None,
) -> web.Application:
    """The aiohttp application serving one tenant; ``contract`` (if given) checks every answer."""
    middlewares: list[Any] = [fault_middleware(auth.expire_caller_token)]
    if contract is not None:
        middlewares.append(contract_middleware)
    middlewares += [error_middleware, auth.bearer_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_REQUEST_SIZE)
    app[CTX] = Context(state, config, faults)
    app[FAULTS_KEY] = faults
    if contract is not None:
        app[CONTRACT_KEY] = contract
    for module in (auth, system, nodes, uploads, s3, keys, downloads):
        app.add_routes(module.routes())
    if config.control_api:
        app.add_routes(control.routes())
    return app


class DracoonEmulator:
    """A DRACOON API emulator on a real socket; ``state`` seeds and inspects the tenant.

    ``async with DracoonEmulator() as emu:`` starts it on 127.0.0.1 with a free port;
    ``emu.base_url`` is then ``http://127.0.0.1:PORT`` (the API lives under ``/api/v4``).
    """

    def __init__(self, config: EmulatorConfig | None = None, *, state: EmulatorState | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = state or EmulatorState()
        self.faults = FaultInjector(self.config.faults, seed=self.config.fault_seed)
        self.contract = ResponseContract() if self.config.response_contract else None
        self.seeded = Seeded()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @classmethod
    def from_fixture(
        cls, fixture: Mapping[str, Any], config: EmulatorConfig | None = None
    ) -> DracoonEmulator:
        """An emulator seeded from a fixture mapping (see ``fixture.py``); its ``config`` key applies
        unless ``config`` is given. The created ids are in ``.seeded``."""
        if config is None and fixture.get("config"):
            config = EmulatorConfig.from_dict(fixture["config"])
        emulator = cls(config)
        emulator.seeded = seed(emulator.state, fixture)
        return emulator

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("emulator not started")
        return self._base_url

    def make_app(self) -> web.Application:
        return build_app(self.state, self.config, self.faults, self.contract)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 = any free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        log.info("dracoon_emulator_started", url=self._base_url)
        return self._base_url

    async def stop(self) -> None:
        """Stop serving (idempotent); the state stays inspectable."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> DracoonEmulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def settle_uploads(self) -> int:
        """Finalise every S3 upload still ``finishing`` (as the real server eventually would)."""
        pending = [c for c in self.state.uploads.values() if c.status == "finishing"]
        for channel in pending:
            s3.finalize(self.state, self.config, channel)
        return len(pending)


async def run_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: EmulatorConfig | None = None,
    fixture: Mapping[str, Any] | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[DracoonEmulator], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (or forever); ``on_ready`` gets the started emulator."""
    emulator = (
        DracoonEmulator.from_fixture(fixture, config) if fixture is not None else DracoonEmulator(config)
    )
    async with emulator:
        if on_ready is not None:
            on_ready(emulator)
        await (stop or asyncio.Event()).wait()
