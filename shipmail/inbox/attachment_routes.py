"""Downloads: ``GET /v1/mailboxes/{id}/inbox/attachments`` streams a body part of the mailbox's
mail, ``GET /v1/mailboxes/{id}/inbox/messages/{message_id}/raw`` a whole message
(:mod:`shipmail.inbox.attachments` locates the part and holds the HTTP semantics)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from shipmail.auth.scopes import Scope as ApiScope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.inbox import attachments
from shipmail.inbox.schemas import AttachmentQuery
from shipmail.jmap import ids
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox

operations: list[Operation] = []


class UpstreamStreamingResponse(StreamingResponse):
    """A StreamingResponse that also closes its upstream httpx response when it is done, even if
    the body iterator never started (client gone before the first chunk)."""

    def __init__(self, upstream: httpx.Response, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.upstream.aclose()


_DOWNLOAD_RESPONSES: dict[str, Any] = {
    "200": {
        "description": "The bytes (Content-Type of the part; Content-Disposition per RFC 6266).",
        "headers": {
            "ETag": {"schema": {"type": "string"}},
            "Content-Disposition": {"schema": {"type": "string"}},
            "Accept-Ranges": {"schema": {"type": "string"}},
        },
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "206": {
        "description": "The requested byte range (Content-Range).",
        "headers": {"Content-Range": {"schema": {"type": "string"}}},
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    },
    "304": {"description": "Not modified (If-None-Match matched the ETag)."},
    "416": {
        "description": "Range not satisfiable (empty body; Content-Range: bytes */<size>).",
        "headers": {"Content-Range": {"schema": {"type": "string"}}},
    },
}


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/inbox/attachments",
    operation_id="downloadMailboxInboxAttachment",
    summary="Download mailbox inbox attachment",
    scope=ApiScope.MESSAGES_READ,
    tier=Tier.READ,
    query=AttachmentQuery,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
    responses=_DOWNLOAD_RESPONSES,
)
async def download_attachment(ctx: Context[None, AttachmentQuery]) -> Response:
    """Stream the raw (transfer-decoded) bytes of a body part or attachment of the mailbox's mail.
    Blob IDs are query parameters because they can contain slash characters. Use the part's
    `download_path`: it names the message (`message_id`) and part (`part_id`), whose own type and
    file name are served. With `blob_id` alone (identical bytes share one blob id across messages,
    so a blob has no one type or name) the type is `type`, default `application/octet-stream`.

    Headers: `Content-Type` is the part's own media type (with its charset for text parts),
    `Content-Disposition: attachment` with `filename` (`name`, else the part's name, else
    `attachment`; `attachment.eml` for a nameless message/rfc822 part) in ASCII and `filename*`
    (UTF-8, RFC 6266), `Content-Length` in bytes, a strong `ETag` (blob ids are
    content-addressed) and `Accept-Ranges: bytes`. `If-None-Match` answers 304; one
    `Range: bytes=first-last` range answers 206 with `Content-Range` (several ranges, or a last
    position below the first: the whole body, 200); a range starting at or beyond the end, however
    many digits its positions have, answers 416 with `Content-Range: bytes */<size>` (RFC 9110
    sections 14.1.2, 15.5.17). The body is streamed from the mail server without buffering.
    `name` is only the file name of `Content-Disposition`: any text without control characters,
    it never reaches a URL.

    404: not a mailbox of this organisation, no message of the mailbox holds the blob, or the
    message has no such part holding it. 422: a blob_id outside `[A-Za-z0-9_-+=/.]`, a name with
    control characters, part_id without message_id. 503: the mail server is unavailable
    (Retry-After)."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    query = ctx.query
    name = attachments.check_name(query.name)
    email_id = ids.from_wire(ids.EMAIL, query.message_id) if query.message_id is not None else None
    part = await attachments.locate(
        ctx.services, row, query.blob_id, email_id=email_id, part_id=query.part_id, media_type=query.type
    )
    return await _serve(ctx, row, part, name or part.name or attachments.DEFAULT_NAME)


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/inbox/messages/{message_id}/raw",
    operation_id="downloadMailboxInboxMessageRaw",
    summary="Download the original message",
    scope=ApiScope.MESSAGES_READ,
    tier=Tier.READ,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
    responses={
        **_DOWNLOAD_RESPONSES,
        "200": {
            **_DOWNLOAD_RESPONSES["200"],
            "description": "The RFC 5322 message exactly as stored (message/rfc822).",
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def download_message(ctx: Context[None, None]) -> Response:
    """Stream the message exactly as the mail server stores it (RFC 5322 bytes: what was delivered,
    with the trace header fields the server prepends, e.g. `Return-Path` and `Received`), as
    `Content-Type: message/rfc822` with `Content-Disposition: attachment; filename="<subject>.eml"`
    (`<message id>.eml` without a subject). `ETag`, `If-None-Match`, `Range` and `HEAD` as for
    attachments. 404: no such message in the mailbox."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    email_id = ids.from_wire(ids.EMAIL, ctx.path["message_id"])
    part = await attachments.locate_message(ctx.services, row, email_id)
    return await _serve(ctx, row, part, part.name or attachments.DEFAULT_NAME)


async def _serve(ctx: Context[Any, Any], row: Mailbox, part: attachments.BlobPart, filename: str) -> Response:
    """Stream ``part`` as ``filename`` with the HTTP semantics of :mod:`shipmail.inbox.attachments`."""
    etag = attachments.etag_for(part.blob_id)
    headers = {
        "ETag": etag,
        "Cache-Control": "private, max-age=86400",
        "Accept-Ranges": "bytes",
        "Content-Type": part.content_type,
        "Content-Disposition": attachments.content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    request = ctx.request
    if attachments.etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k in ("ETag", "Cache-Control")})
    if request.method == "HEAD" and part.size >= 0:
        return Response(status_code=200, headers={**headers, "Content-Length": str(part.size)})

    upstream = await attachments.open_upstream(ctx.services, row, part)
    try:
        size = attachments.upstream_size(upstream, part)
        selected = attachments.parse_range(
            request.headers.get("range"),
            size,
            if_range=request.headers.get("if-range"),
            etag=etag,
        )
    except attachments.RangeNotSatisfiable:
        await upstream.aclose()
        return Response(
            status_code=416, headers={"Content-Range": f"bytes */{size}", "ETag": etag, "Accept-Ranges": "bytes"}
        )
    except BaseException:
        await upstream.aclose()
        raise
    if selected is None:
        if size >= 0:
            headers["Content-Length"] = str(size)
        body = attachments.stream(upstream)
        return UpstreamStreamingResponse(upstream, body, status_code=200, headers=headers)
    first, last = selected
    length = last - first + 1
    headers["Content-Length"] = str(length)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    body = attachments.stream(upstream, first, length)
    return UpstreamStreamingResponse(upstream, body, status_code=206, headers=headers)
