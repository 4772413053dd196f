"""File download, so any DRACOON client can read back exactly the bytes (ciphertext) stored.

``POST /nodes/files/{id}/downloads`` hands out a download URL (``/api/v4/downloads/{token}``, no
auth header needed, as DRACOON); the deprecated ``GET /nodes/files/{id}/downloads`` streams with
Bearer auth. Both honour a single ``Range: bytes=a-b`` (206), as the API documents.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote

from aiohttp import web

from .context import ctx, current_user, origin, path_id
from .errors import ApiError, file_not_found, forbidden, json_response
from .model import Node

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _readable_file(request: web.Request) -> Node:
    state, user = ctx(request).state, current_user(request)
    node = state.nodes.get(path_id(request, "file_id"))
    if node is None or node.type != "file":
        raise file_not_found()
    if not state.can(user.id, node, "read"):
        raise forbidden()
    return node


async def create_download(request: web.Request) -> web.Response:
    """``POST /api/v4/nodes/files/{file_id}/downloads`` -> ``{downloadUrl, token}``."""
    node = _readable_file(request)
    token = secrets.token_urlsafe(24)
    ctx(request).state.download_tokens[token] = node.id
    return json_response({"downloadUrl": f"{origin(request)}/api/v4/downloads/{token}", "token": token})


async def download_by_token(request: web.Request) -> web.Response:
    """``GET /api/v4/downloads/{token}``: the stored bytes."""
    state = ctx(request).state
    file_id = state.download_tokens.get(request.match_info["token"])
    if file_id is None:
        raise ApiError(401, "Invalid (up-) download token", -20502)
    node = state.nodes.get(file_id)
    if node is None:
        raise file_not_found()
    return _serve(request, node)


async def download_direct(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes/files/{file_id}/downloads`` (deprecated, Bearer): the stored bytes."""
    return _serve(request, _readable_file(request))


def _serve(request: web.Request, node: Node) -> web.Response:
    if node.stored_size is not None:
        raise ApiError(410, "File content was discarded (emulator discard_content)", None)
    body, status = node.content, 200
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(node.name)}",
        "Accept-Ranges": "bytes",
    }
    wanted = request.headers.get("Range")
    if wanted:
        m = _RANGE.match(wanted.strip())
        size = len(body)
        if m is None or (not m.group(1) and not m.group(2)):
            raise ApiError(416, f"Download range '{wanted}' doesn't match pattern 'bytes=a-b'", None)
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:
            start, end = max(size - int(m.group(2)), 0), size - 1
        if start > end or start >= size:
            raise ApiError(
                416,
                f"Download range '{wanted}' not satisfiable",
                None,
                headers={"Content-Range": f"bytes */{size}"},
            )
        body, status = body[start : end + 1], 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return web.Response(body=body, status=status, content_type="application/octet-stream", headers=headers)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v4/nodes/files/{file_id:-?\\d+}/downloads", create_download),
        web.get("/api/v4/nodes/files/{file_id:-?\\d+}/downloads", download_direct, allow_head=False),
        web.get("/api/v4/downloads/{token}", download_by_token, allow_head=False),
    ]
