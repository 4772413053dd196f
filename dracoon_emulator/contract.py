"""The response contract: every answer checked against DRACOON's OpenAPI description.

Requests are validated against the description (``openapi.py``); this checks the other direction,
so the emulator cannot drift into answers a real client would never see from DRACOON (an explicit
``null`` where DRACOON leaves a property out, a ``writeOnly`` field echoed back, a status the
operation does not document). With the contract on, a middleware hands every answer of a described
operation to :class:`ResponseContract`, which records a :class:`Violation` for

* a status the operation does not document (but for the few in :data:`UNDOCUMENTED_STATUSES`,
  whose body must still be an ``ErrorResponse``),
* a JSON body where the description documents none, or none where it documents one,
* a JSON body that does not validate against that status's schema.

The answer itself goes out unchanged: the contract observes, the test suite fails the test
(``tests/conftest.py`` checks :data:`TALLY` around each test). Validation uses
``openapi-schema-validator``'s ``OAS30ReadValidator``: it speaks the description's dialect
(OpenAPI 3.0.1: ``nullable``, ``writeOnly`` forbidden in reads, ``int32``/``int64`` and
``date-time`` formats), which plain JSON Schema validators do not. Schemas come from
``dracoon_emulator/data/dracoon_response_schemas.json`` (``extract_schemas.py``).

Not checked: the OAuth endpoints and the emulator's own routes (``/_emulator``, ``/_s3``), which
the description does not cover, and injected faults, which imitate proxies, not DRACOON.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

try:  # the "local" extra; only a contract-checking emulator needs it
    from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
except ImportError:  # pragma: no cover - exercised only without the extra
    OAS30ReadValidator = None
    oas30_format_checker = None

log = structlog.get_logger(__name__)

# Set to "1" to turn the contract on for every emulator whose config does not say otherwise (the
# test suite does; subprocess emulators inherit it).
CONTRACT_ENV = "DRACOON_EMULATOR_RESPONSE_CONTRACT"
API_PREFIX = "/api"
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
ERROR_RESPONSE = "#/components/schemas/ErrorResponse"
# Statuses the emulator gives on purpose although no operation documents them.
UNDOCUMENTED_STATUSES = {
    415: "a request body that is not application/json: the server framework's answer on any JSON "
    "operation, which the description leaves out everywhere",
    410: "a download of content dropped under discard_content, an emulator-only benchmark mode",
}


def enabled_by_environment() -> bool:
    return os.environ.get(CONTRACT_ENV, "") == "1"


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    status: int
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.problem}"


@dataclass
class Tally:
    """Checked answers and violations (per emulator, and summed over the process in TALLY)."""

    checked: int = 0
    violations: list[Violation] = field(default_factory=list)
    # "METHOD /path/{} status" -> answers checked, to see which of the description is exercised
    operations: Counter[str] = field(default_factory=Counter)


# Every contract-checking emulator in this process adds to this (the test suite reads it).
TALLY = Tally()


@cache
def _document() -> dict[str, Any]:
    source = resources.files("dracoon_emulator").joinpath("data/dracoon_response_schemas.json")
    loaded: dict[str, Any] = json.loads(source.read_text("utf-8"))
    return loaded


@cache
def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path with anonymous ``{}`` placeholders) -> status -> schema or None."""
    return {
        (op.split(" ", 1)[0], _PLACEHOLDER.sub("{}", op.split(" ", 1)[1])): statuses
        for op, statuses in _document()["operations"].items()
    }


def described_operations() -> set[tuple[str, str]]:
    """The operations the bundled description covers, as (METHOD, ``/api/v4/...{}...``)."""
    return {(method, API_PREFIX + path) for method, path in _operations()}


def route_template(resource_path: str) -> str:
    """An aiohttp route's path with its named (and regex-restricted) placeholders as ``{}``."""
    return _PLACEHOLDER.sub("{}", resource_path)


@cache
def _validator(method: str, template: str, status: str) -> Any:
    described = _operations()[(method, template)].get(status)
    schema = dict(described) if described is not None else {"$ref": ERROR_RESPONSE}
    schema["components"] = _document()["components"]
    return OAS30ReadValidator(schema, format_checker=oas30_format_checker)


class ResponseContract:
    """Checks answers of one emulator into its own tally and ``shared`` (the process-wide one)."""

    def __init__(self, shared: Tally | None = TALLY) -> None:
        if OAS30ReadValidator is None:  # fail when the emulator is built, not on its first answer
            raise RuntimeError(
                "the response contract needs openapi-schema-validator: pip install 'recording-storage[local]'"
            )
        self.tally = Tally()
        self._tallies = [self.tally] if shared is None else [self.tally, shared]

    def check(self, method: str, resource_path: str, path: str, status: int, body: Any | None) -> None:
        """Record one answer (``body``: parsed JSON, or None when it is not JSON)."""
        template = route_template(resource_path)
        if not template.startswith(API_PREFIX):
            return
        statuses = _operations().get((method, template[len(API_PREFIX) :]))
        if statuses is None:
            return  # not in the description (OAuth); see the module docstring
        problems = self._problems(method, template[len(API_PREFIX) :], statuses, status, body)
        violations = [Violation(method, path, status, problem) for problem in problems]
        for tally in self._tallies:
            tally.checked += 1
            tally.operations[f"{method} {template} {status}"] += 1
            tally.violations.extend(violations)
        for violation in violations:
            log.warning("emulator_response_contract_violation", violation=str(violation))

    @staticmethod
    def _problems(
        method: str, template: str, statuses: dict[str, Any], status: int, body: Any | None
    ) -> list[str]:
        if str(status) not in statuses and status not in UNDOCUMENTED_STATUSES:
            return [f"status {status} is not documented (documented: {', '.join(sorted(statuses))})"]
        schema = statuses.get(str(status), ERROR_RESPONSE)
        if schema is None:
            return ["a JSON body where the description documents none"] if body is not None else []
        if body is None:
            return []  # binary or text answers (downloads, ping) are not JSON-validated
        validator = _validator(method, template, str(status))
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or 'body'}: {error.message}"
            for error in validator.iter_errors(body)
        ]


CONTRACT_KEY = web.AppKey("dracoon_response_contract", ResponseContract)


@web.middleware
async def contract_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Check the handler's answer against the contract; the answer is passed on unchanged."""
    response: web.StreamResponse = await handler(request)
    contract = request.app[CONTRACT_KEY]
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return response
    body: Any | None = None
    if isinstance(response, web.Response) and response.content_type == "application/json":
        raw = response.body
        if isinstance(raw, bytes | bytearray) and raw:
            try:
                body = json.loads(raw)
            except ValueError:  # a JSON string fails every object schema, so it is reported
                body = f"not JSON: {raw[:80]!r}"
    contract.check(request.method, resource.canonical, request.path, response.status, body)
    return response
