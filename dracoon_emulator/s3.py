"""The S3-direct upload path: presigned part URLs, the part PUTs, completion and status polling.

The presigned URLs point at the emulator itself (``/_s3/{uploadId}/{part}?X-Amz-...``) and behave
like S3 where clients get it wrong: ``Transfer-Encoding: chunked`` is refused with 501
``NotImplemented``, a missing ``Content-Length`` with 411, a length other than the ``size`` the URL
was issued for (or a wrong/expired signature) with 403; errors are S3's XML. The part size minimum
(5 MiB except the last part) is enforced when the upload is finalised, as S3 does at
``CompleteMultipartUpload`` (``EntityTooSmall``), and so surfaces as ``status: error``.

Completion returns 202; the file appears on a later status poll: the first
``config.s3_finishing_polls`` polls answer ``finishing`` (DRACOON finishes asynchronously, so
clients must poll), the next one finalises and answers ``done`` with the node or ``error`` with
``errorDetails`` (e.g. a 409 name clash under ``fail``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from .bodies import receive
from .config import EmulatorConfig
from .context import ctx, origin
from .errors import ApiError, bad_request, json_response
from .files import Completion, plan_completion, store_file
from .model import S3Part, UploadChannel
from .openapi import read_json
from .render import node_json
from .state import EmulatorState
from .uploads import channel_by_id

URL_TTL = 3600


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"<RequestId>{secrets.token_hex(8)}</RequestId></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


def _s3_channel(request: web.Request) -> UploadChannel:
    channel = channel_by_id(request)
    if not channel.direct_s3:
        raise ApiError(404, "Corresponding S3 upload ID not found", -90034)
    return channel


async def presigned_urls(request: web.Request) -> web.Response:
    """``POST /api/v4/nodes/files/uploads/{upload_id}/s3_urls`` -> 201 ``{urls: [{url, partNumber}]}``."""
    body = await read_json(request, "GeneratePresignedUrlsRequest")
    c = ctx(request)
    channel = _s3_channel(request)
    if channel.status != "transfer":
        raise bad_request(-20503, "Upload channel is closed")
    size, first, last = body["size"], body["firstPartNumber"], body["lastPartNumber"]
    if size < 0 or size > c.config.s3_max_part_size:
        raise bad_request(-80046, "Invalid size")
    if first < 1:
        raise bad_request(-80001, "Invalid positive number: firstPartNumber")
    if last < first or last > c.config.s3_max_parts:
        raise bad_request(-80002, "Invalid number: lastPartNumber")
    issued = c.state.clock.now()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(issued))
    urls = []
    for number in range(first, last + 1):
        signature = secrets.token_hex(32)
        channel.parts.setdefault(number, S3Part()).urls[signature] = (size, issued + URL_TTL)
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=EMULATOR%2F{stamp[:8]}%2Fus-east-1%2Fs3"
            f"%2Faws4_request&X-Amz-Date={stamp}&X-Amz-Expires={URL_TTL}&X-Amz-SignedHeaders="
            f"content-length%3Bhost&X-Amz-Signature={signature}"
        )
        urls.append({"url": f"{origin(request)}/_s3/{channel.id}/{number}?{query}", "partNumber": number})
    return json_response({"urls": urls}, status=201)


async def put_part(request: web.Request) -> web.Response:
    """``PUT /_s3/{upload_id}/{part}``: the presigned part upload (S3 semantics and XML errors)."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return _s3_error(
            501, "NotImplemented", "A header you provided implies functionality that is not implemented"
        )
    if request.headers.get("Content-Length") is None:
        return _s3_error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
    state = ctx(request).state
    channel = state.uploads.get(request.match_info["upload_id"])
    number = int(request.match_info["part"])
    part = channel.parts.get(number) if channel is not None and channel.status == "transfer" else None
    if channel is None or part is None:
        return _s3_error(404, "NoSuchUpload", "The specified upload does not exist.")
    issued = part.urls.get(request.query.get("X-Amz-Signature", ""))
    if issued is None:
        return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
    size, expires_at = issued
    if state.clock.now() > expires_at:
        return _s3_error(403, "AccessDenied", "Request has expired")
    if request.content_length != size:
        return _s3_error(
            403,
            "SignatureDoesNotMatch",
            f"Content-Length {request.content_length} does not match the signed length {size}",
        )
    config = ctx(request).config
    keep = not config.discard_content
    body = await receive(request, keep=keep, md5=config.s3_part_etags == "md5")
    part.data = body.data if keep else None
    part.size = body.size
    # "opaque": a fresh value per PUT, so a client completing with an earlier ETag is caught.
    part.etag = body.md5 if body.md5 is not None else secrets.token_hex(16)
    return web.Response(status=200, headers={"ETag": f'"{part.etag}"'})


async def complete_s3(request: web.Request) -> web.Response:
    """``PUT /api/v4/nodes/files/uploads/{upload_id}/s3`` -> 202, finalised on a later status poll."""
    body = await read_json(request, "CompleteS3FileUploadRequest")
    c = ctx(request)
    channel = _s3_channel(request)
    if channel.status in ("finishing", "done"):
        raise bad_request(-20503, "Upload channel is closed")
    plan = plan_completion(c.state, channel, body)
    numbers: list[int] = []
    for item in body["parts"]:
        number, etag = item["partNumber"], str(item["partEtag"]).strip('"')
        part = channel.parts.get(number)
        if part is None or part.etag is None or part.etag != etag:
            raise bad_request(-80045, f"Invalid Etag(s): part {number}")
        if numbers and number <= numbers[-1]:
            raise bad_request(-80045, "Invalid Etag(s): parts must be in ascending order")
        numbers.append(number)
    if not numbers:
        raise bad_request(-80045, "Invalid Etag(s): no parts")
    channel.completion = {"plan": plan, "parts": numbers}
    channel.status, channel.error = "finishing", None
    channel.finishing_polls_left = c.config.s3_finishing_polls
    return web.Response(status=202)


def finalize(state: EmulatorState, config: EmulatorConfig, channel: UploadChannel) -> None:
    """Assemble the parts into the file (or record why not): the end of a ``finishing`` upload."""
    assert channel.completion is not None
    plan: Completion = channel.completion["plan"]
    numbers: list[int] = channel.completion["parts"]
    try:
        for n in numbers[:-1]:
            if channel.parts[n].size < config.s3_min_part_size:
                raise ApiError(
                    400, f"EntityTooSmall: part {n} is smaller than the minimum allowed size", -80046
                )
        if config.discard_content:
            # Parts arrive in any order, so no SHA-256 of the whole file is known.
            size = sum(channel.parts[n].size for n in numbers)
            node = store_file(state, config, channel, plan, b"", size=size)
        else:
            content = b"".join(channel.parts[n].data or b"" for n in numbers)
            node = store_file(state, config, channel, plan, content)
    except ApiError as exc:
        channel.status, channel.error = "error", exc.body()
        return
    channel.status, channel.node_id = "done", node.id
    channel.parts.clear()
    state.upload_tokens.pop(channel.token, None)


async def upload_status(request: web.Request) -> web.Response:
    """``GET /api/v4/nodes/files/uploads/{upload_id}`` -> ``{status, node?, errorDetails?}``."""
    c = ctx(request)
    channel = channel_by_id(request)
    if channel.status == "finishing":
        if channel.finishing_polls_left > 0:
            channel.finishing_polls_left -= 1
        else:
            finalize(c.state, c.config, channel)
    body: dict[str, Any] = {"status": channel.status}
    node = c.state.nodes.get(channel.node_id) if channel.node_id is not None else None
    if channel.status == "done" and node is not None:
        body["node"] = node_json(c.state, node, channel.user_id)
    if channel.status == "error":
        body["errorDetails"] = channel.error
    return json_response(body)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v4/nodes/files/uploads/{upload_id}/s3_urls", presigned_urls),
        web.put("/api/v4/nodes/files/uploads/{upload_id}/s3", complete_s3),
        web.get("/api/v4/nodes/files/uploads/{upload_id}", upload_status, allow_head=False),
        web.put("/_s3/{upload_id}/{part:\\d+}", put_part),
    ]
