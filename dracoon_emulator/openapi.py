"""Request-body validation against the DRACOON OpenAPI schemas, so a client mistake fails a test.

The schemas come from ``dracoon_emulator/data/dracoon_request_schemas.json`` (extracted from the
4.26.7 description by ``extract_schemas.py``). The validator covers what those schemas use: ``type``,
``format`` (int32/int64 ranges, date-time), ``required``, ``enum``, min/max, lengths, ``items`` and
``$ref``. Objects are closed: an unknown field is a 400. That is deliberately stricter than a
default Spring/Jackson server, which may ignore unknown fields, because a misspelt field name is
exactly the client bug the tests should catch. ``null`` is accepted for optional fields (Jackson
maps it to "absent") and rejected for required ones, as DRACOON does. Requests keep this small
validator while answers use ``openapi-schema-validator`` (``contract.py``): a client under test
must get the error code DRACOON gives for each kind of mistake (-80001, -80002, -80007, -40756,
...), which a generic validator does not know, and the walk stops at the first problem as the
server does.

Date-times are lenient where DRACOON is: a time without a UTC offset (``2026-12-06T10:00:00``,
as widely used clients send for ``timestampCreation``) is accepted and taken as UTC. What is not
an ISO 8601 date and time (a date alone, a space instead of ``T``, a basic-format or impossible
date, trailing text) stays a 400 ``-80013``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from .errors import ApiError, bad_request

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Enum fields whose violation DRACOON reports with a specific code.
_ENUM_CODES = {"classification": -40756, "newGroupMemberAcceptance": -80025, "resolutionStrategy": -50503}
INVALID_JSON = -80013
MANDATORY = -80000
_OFFSET = re.compile(r"[+-]\d{2}:\d{2}$")
# ISO 8601 extended date and time; seconds, fraction and offset optional.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})?")


@cache
def schemas() -> dict[str, Any]:
    """All bundled request schemas by name (loaded once from package data)."""
    source = resources.files("dracoon_emulator").joinpath("data/dracoon_request_schemas.json")
    text = source.read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)["schemas"]
    return loaded


def validate(schema_name: str, value: Any) -> dict[str, Any]:
    """Check ``value`` against the named schema; raise :class:`ApiError` (400) on the first problem."""
    _check(schemas()[schema_name], value, "")
    if not isinstance(value, dict):  # every root schema is an object; _check already enforced it
        raise bad_request(INVALID_JSON, "Invalid JSON object")
    return value


async def read_json(request: web.Request, schema_name: str, *, optional: bool = False) -> dict[str, Any]:
    """Parse and validate a JSON request body; ``optional`` bodies may be empty (treated as ``{}``)."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise bad_request(MANDATORY, "Required request body is missing")
    ctype = request.headers.get("Content-Type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise ApiError(415, f"Content type '{ctype or 'none'}' not supported", None)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad_request(INVALID_JSON, "Invalid JSON object: body does not parse") from None
    return validate(schema_name, body)


def _where(path: str) -> str:
    return path or "body"


def _check(schema: dict[str, Any], value: Any, path: str) -> None:
    if "$ref" in schema:
        _check(schemas()[schema["$ref"]], value, path)
        return
    kind = schema.get("type")
    if kind == "object":
        _check_object(schema, value, path)
    elif kind == "array":
        if not isinstance(value, list):
            raise bad_request(INVALID_JSON, f"Invalid JSON object: {_where(path)} must be an array")
        for i, item in enumerate(value):
            _check(schema.get("items", {}), item, f"{path}[{i}]")
    elif kind == "integer":
        _check_integer(schema, value, path)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise bad_request(-80005, f"Invalid boolean value: {_where(path)}")
    elif kind == "string":
        _check_string(schema, value, path)
    if "enum" in schema and value not in schema["enum"]:
        field = path.rsplit(".", 1)[-1]
        raise bad_request(_ENUM_CODES.get(field, INVALID_JSON), f"Invalid value for {_where(path)}")


def _check_object(schema: dict[str, Any], value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise bad_request(INVALID_JSON, f"Invalid JSON object: {_where(path)} must be an object")
    props: dict[str, Any] = schema.get("properties", {})
    for name in value:
        if name not in props:
            raise bad_request(INVALID_JSON, f"Invalid JSON object: unrecognized field '{_join(path, name)}'")
    for name in schema.get("required", []):
        if value.get(name) is None:
            raise bad_request(MANDATORY, f"Mandatory fields cannot be empty: {_join(path, name)}")
    for name, sub in props.items():
        if value.get(name) is not None:
            _check(sub, value[name], _join(path, name))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_integer(schema: dict[str, Any], value: Any, path: str) -> None:
    where = _where(path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(-80002, f"Invalid number: {where}")
    low, high = _INT_RANGES.get(schema.get("format", "int64"), _INT_RANGES["int64"])
    if not low <= value <= high:
        raise bad_request(-80002, f"Invalid number: {where}")
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    if minimum is not None and value < minimum:
        raise bad_request(-80001 if minimum >= 0 else -80002, f"Invalid positive number: {where}")
    if maximum is not None and value > maximum:
        raise bad_request(-80018 if (minimum, maximum) == (0, 9999) else -80002, f"Out of range: {where}")


def _check_string(schema: dict[str, Any], value: Any, path: str) -> None:
    where = _where(path)
    if not isinstance(value, str):
        raise bad_request(INVALID_JSON, f"Invalid JSON object: {where} must be a string")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise bad_request(-80007, f"Maximum allowed length is exceeded: {where}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise bad_request(MANDATORY, f"Mandatory fields cannot be empty: {where}")
    if schema.get("format") == "date-time" and parse_datetime(value) is None:
        raise bad_request(INVALID_JSON, f"Invalid date-time: {where}")


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 date and time, aware (no offset = UTC, see the module docstring); None if invalid."""
    if _DATE_TIME.fullmatch(text) is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def normalize_datetime(text: str | None) -> str | None:
    """A validated request date-time to store and echo: as sent, with ``Z`` added when it had no
    offset (it was taken as UTC), so answers always carry a valid RFC 3339 date-time."""
    if text is None or text[-1] in "Zz" or _OFFSET.search(text):
        return text
    return f"{text}Z"
