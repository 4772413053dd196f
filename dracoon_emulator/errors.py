"""DRACOON's error envelope, so every emulated failure looks like the real server's.

All API errors use the ``ErrorResponse`` schema ``{"code", "message", "debugInfo", "errorCode"}``;
``errorCode`` is left out where DRACOON sends none (409 name clashes, plain 403s): the description
does not allow ``null`` there. Handlers raise :class:`ApiError`; one middleware turns it into the
response.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

JSON_CONTENT_TYPE = "application/json"


class ApiError(Exception):
    """An error answer; ``debug_info`` is public text, so it must never contain a secret."""

    def __init__(
        self,
        status: int,
        debug_info: str,
        error_code: int | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error_code}: {debug_info}")
        self.status = status
        self.debug_info = debug_info
        self.error_code = error_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The ``ErrorResponse`` JSON object (also used as ``errorDetails`` of S3 upload status)."""
        return error_body(self.status, self.debug_info, self.error_code)

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


def error_body(status: int, debug_info: str, error_code: int | None) -> dict[str, Any]:
    try:
        message = HTTPStatus(status).phrase
    except ValueError:
        message = "Error"
    body: dict[str, Any] = {"code": status, "message": message, "debugInfo": debug_info}
    if error_code is not None:
        body["errorCode"] = error_code
    return body


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with DRACOON's content type (``application/json;charset=UTF-8``)."""
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        headers={"Content-Type": f"{JSON_CONTENT_TYPE};charset=UTF-8", **(headers or {})},
    )


# Constructors for the errors the handlers raise most; codes and texts as in the OpenAPI examples.


def bad_request(error_code: int | None, debug_info: str) -> ApiError:
    return ApiError(400, debug_info, error_code)


def forbidden(
    debug_info: str = "Insufficient rights to perform the operation", error_code: int | None = None
) -> ApiError:
    return ApiError(403, debug_info, error_code)


def no_key_pair() -> ApiError:
    return ApiError(403, "User does not have a keypair", -70020)


def node_not_found() -> ApiError:
    return ApiError(404, "Node not found", -41000)


def container_not_found() -> ApiError:
    return ApiError(404, "Container not found", -40000)


def file_not_found() -> ApiError:
    return ApiError(404, "File not found", -40751)


def upload_not_found() -> ApiError:
    return ApiError(404, "Upload not found", -20501)


def user_not_found() -> ApiError:
    return ApiError(404, "User not found", -70501)


def name_exists() -> ApiError:
    return ApiError(409, "Node with specified name already exists", None)


def bad_name(why: str) -> ApiError:
    return ApiError(400, f"Bad node name: {why}", -40755)


def room_quota_exceeded() -> ApiError:
    return ApiError(507, "Exceeds the free node quota in room", -40200)


def customer_quota_exceeded() -> ApiError:
    return ApiError(507, "Exceeds the free customer quota", -90200)


def wrong_token(debug_info: str = "Wrong token") -> ApiError:
    return ApiError(401, debug_info, -10012)
