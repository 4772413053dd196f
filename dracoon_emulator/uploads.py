"""Upload channels and the proxy upload path.

``POST /nodes/files/uploads`` opens a channel; chunks go to ``POST /uploads/{token}`` (no auth
header; the token is the credential) or the deprecated ``POST /nodes/files/uploads/{id}``
(Bearer), as multipart part ``file`` or raw bytes, appended in arrival order. ``Content-Range`` is
checked only for syntax, because real clients send inexact ranges (see the API notes). Completion
(``PUT`` on either URL) closes the channel on success only: after a 409 under ``fail`` the client
may complete again with another ``fileName``. ``DELETE`` on either URL cancels.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from aiohttp import BodyPartReader, web

from .bodies import Received, digest, one_piece, receive
from .context import ctx, current_user, origin
from .errors import (
    ApiError,
    bad_request,
    container_not_found,
    forbidden,
    json_response,
    no_key_pair,
    upload_not_found,
)
from .files import check_quota, plan_completion, store_file
from .model import GCM_MAX_PLAINTEXT, UploadChannel
from .names import check_name
from .nodes import MAX_NOTES
from .openapi import normalize_datetime, parse_datetime, read_json
from .render import node_json

_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")


async def create_channel(request: web.Request) -> web.Response:
    """``POST /api/v4/nodes/files/uploads`` -> 201 ``{uploadUrl, uploadId, token}``."""
    body = await read_json(request, "CreateFileUploadRequest")
    c, user = ctx(request), current_user(request)
    parent = c.state.nodes.get(body["parentId"])
    if parent is None or parent.type == "file":
        raise container_not_found()
    if not c.state.can(user.id, parent, "create"):
        raise forbidden()
    check_name(body["name"])
    notes = body.get("notes")
    if notes is not None and len(notes) > MAX_NOTES:
        raise bad_request(-80007, f"Maximum allowed length is exceeded: notes ({MAX_NOTES})")
    expire_at = _expiration(c.state.clock.utcnow().timestamp(), body.get("expiration"))
    size: int | None = body.get("size")
    if size is not None and size < 0:
        raise bad_request(-80001, "Invalid positive number: size")
    direct = bool(body.get("directS3Upload"))
    if direct and not c.config.use_s3_storage:
        raise ApiError(412, "S3 storage disabled", -90030)
    if not direct and c.config.s3_enforce_direct_upload:
        raise bad_request(-90033, "S3 direct upload is enforced")
    if c.state.room_of(parent).encrypted:
        if not user.key_pairs:
            raise no_key_pair()
        if size is not None and size > GCM_MAX_PLAINTEXT:
            raise bad_request(-80037, "Exceeds maximum data length for AES GCM encryption")
    if size:
        check_quota(c.state, c.config, parent, size)
    channel = UploadChannel(
        id=str(uuid.uuid4()),
        token=secrets.token_urlsafe(24),
        user_id=user.id,
        parent_id=parent.id,
        name=body["name"],
        size=size,
        classification=body.get("classification"),
        expire_at=expire_at,
        notes=notes,
        direct_s3=direct,
        timestamp_creation=normalize_datetime(body.get("timestampCreation")),
        timestamp_modification=normalize_datetime(body.get("timestampModification")),
    )
    c.state.uploads[channel.id] = channel
    c.state.upload_tokens[channel.token] = channel.id
    return json_response(
        {
            "uploadUrl": f"{origin(request)}/api/v4/uploads/{channel.token}",
            "uploadId": channel.id,
            "token": channel.token,
        },
        status=201,
    )


def _expiration(now: float, expiration: dict[str, object] | None) -> str | None:
    if not expiration or not expiration.get("enableExpiration"):
        return None
    text = expiration.get("expireAt")
    if not isinstance(text, str):
        raise bad_request(-80000, "Mandatory fields cannot be empty: expiration.expireAt")
    moment = parse_datetime(text)
    assert moment is not None  # the schema validated the format
    if moment.timestamp() <= now:
        raise bad_request(-80006, "Expiration date is in the past")
    return normalize_datetime(text)


def channel_by_token(request: web.Request) -> UploadChannel:
    state = ctx(request).state
    upload_id = state.upload_tokens.get(request.match_info["token"])
    channel = state.uploads.get(upload_id) if upload_id else None
    if channel is None:
        raise upload_not_found()
    return channel


def channel_by_id(request: web.Request) -> UploadChannel:
    """A channel addressed by id with Bearer auth: only its creator may use it."""
    channel = ctx(request).state.uploads.get(request.match_info["upload_id"])
    if channel is None or channel.user_id != current_user(request).id:
        raise upload_not_found()
    return channel


async def _chunk(request: web.Request, channel: UploadChannel) -> web.Response:
    c = ctx(request)
    if channel.direct_s3:
        raise bad_request(-90033, "S3 direct upload channel: upload parts to the presigned URLs")
    if channel.status != "transfer":
        raise bad_request(-20503, "Upload channel is closed")
    content_range = request.headers.get("Content-Range")
    if content_range is not None:
        m = _CONTENT_RANGE.match(content_range.strip())
        if m is None or (m.group(1) is not None and int(m.group(1)) > int(m.group(2))):
            raise bad_request(-80021, "Incorrect upload Content-Range")
    discard = c.config.discard_content
    running = channel.running_digest() if discard else None
    body = await _chunk_body(request, keep=not discard, also=[running] if running is not None else [])
    if channel.id not in c.state.uploads:  # cancelled while the body was arriving
        raise upload_not_found()
    parent = c.state.nodes.get(channel.parent_id)
    if parent is None:
        raise container_not_found()
    if c.state.room_of(parent).encrypted and channel.received + body.size > GCM_MAX_PLAINTEXT:
        raise bad_request(-80037, "Exceeds maximum data length for AES GCM encryption")
    check_quota(c.state, c.config, parent, channel.received + body.size)
    if running is not None:
        channel.discard(body.size, running)
    else:
        channel.data += body.data
    channel.chunks += 1
    return json_response({"size": body.size, "hash": body.md5}, status=201)


async def _chunk_body(request: web.Request, *, keep: bool, also: list[Any]) -> Received:
    """The chunk: the multipart part named ``file``, or the raw body for any other content type."""
    if not request.content_type.startswith("multipart/"):
        return await receive(request, keep=keep, also=also)
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, BodyPartReader) and part.name == "file":
            data = bytes(await part.read(decode=False))
            return await digest(one_piece(data), len(data), keep=keep, also=also)
    raise bad_request(-80000, "Mandatory fields cannot be empty: file")


async def _complete(request: web.Request, channel: UploadChannel) -> web.Response:
    body = await read_json(request, "CompleteUploadRequest", optional=True)
    c = ctx(request)
    if channel.direct_s3:
        raise bad_request(-90033, "S3 direct upload channel: complete with PUT .../s3")
    if channel.status != "transfer":
        raise bad_request(-20503, "Upload channel is closed")
    plan = plan_completion(c.state, channel, body)
    if channel.discarded:
        sha256 = channel.digest.hexdigest() if channel.digest is not None else None
        node = store_file(c.state, c.config, channel, plan, b"", size=channel.discarded, sha256=sha256)
    else:
        node = store_file(c.state, c.config, channel, plan, bytes(channel.data))
    close_channel(request, channel)
    return json_response(node_json(c.state, node, channel.user_id), status=201)


def close_channel(request: web.Request, channel: UploadChannel) -> None:
    state = ctx(request).state
    state.uploads.pop(channel.id, None)
    state.upload_tokens.pop(channel.token, None)


async def chunk_by_token(request: web.Request) -> web.Response:
    return await _chunk(request, channel_by_token(request))


async def chunk_by_id(request: web.Request) -> web.Response:
    return await _chunk(request, channel_by_id(request))


async def complete_by_token(request: web.Request) -> web.Response:
    return await _complete(request, channel_by_token(request))


async def complete_by_id(request: web.Request) -> web.Response:
    return await _complete(request, channel_by_id(request))


async def cancel_by_token(request: web.Request) -> web.Response:
    close_channel(request, channel_by_token(request))
    return web.Response(status=204)


async def cancel_by_id(request: web.Request) -> web.Response:
    close_channel(request, channel_by_id(request))
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v4/nodes/files/uploads", create_channel),
        web.post("/api/v4/uploads/{token}", chunk_by_token),
        web.put("/api/v4/uploads/{token}", complete_by_token),
        web.delete("/api/v4/uploads/{token}", cancel_by_token),
        web.post("/api/v4/nodes/files/uploads/{upload_id}", chunk_by_id),
        web.put("/api/v4/nodes/files/uploads/{upload_id}", complete_by_id),
        web.delete("/api/v4/nodes/files/uploads/{upload_id}", cancel_by_id),
    ]
