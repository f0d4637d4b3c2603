"""Exports: ``POST /v1/mailboxes/{id}/exports``, ``GET /v1/mailboxes/{id}/exports/{export_id}``
and the private download of the finished ZIP (:mod:`shipmail.exports.service`)."""

from __future__ import annotations

from starlette.responses import FileResponse, Response

from shipmail.auth.scopes import Scope
from shipmail.exports import service
from shipmail.exports.models import COMPLETED
from shipmail.exports.models import MailboxExport as ExportRow
from shipmail.exports.schemas import MailboxExport
from shipmail.http.errors import NotFound
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.signed import SignedQuery, verify
from shipmail.mailboxes import service as mailboxes

operations: list[Operation] = []


def _wire(ctx: Context[None, None], row: ExportRow) -> MailboxExport:
    url, until = service.download_url(ctx.services.settings, row)
    if url is not None:
        url = str(ctx.request.base_url).rstrip("/") + url
    return MailboxExport.of(row, url, until)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/exports",
    operation_id="createMailboxExport",
    summary="Create a mailbox export",
    scope=Scope.MAILBOXES_EXPORT,
    tier=Tier.WRITE,
    response=MailboxExport,
    status_code=202,
    errors=(401, 403, 404, 409, 429),
    tags=("Mailboxes",),
    responses={
        "200": {
            "description": "Existing active export returned.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MailboxExport"}}},
        }
    },
)
async def create_export(ctx: Context[None, None]) -> Response | MailboxExport:
    """Queue a fail-closed ZIP snapshot of the mailbox: one `.eml` per message in one folder per
    mailbox folder (the tree preserved), an mbox per folder, and `manifest.json` with each
    message's folder, keywords and received date (format: `format_version` 1, see the README).
    Poll `getMailboxExport` until `completed`; `messages_done`/`messages_total` show progress.
    202: queued. 200: an export of this mailbox is already pending or processing (returned).
    404: unknown mailbox. 409: the mailbox is being created or deleted."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    export, created = await service.create(ctx.session, row)
    body = _wire(ctx, export)
    if created:
        return body
    return Response(body.model_dump_json(), status_code=200, media_type="application/json")


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/exports/{export_id}",
    operation_id="getMailboxExport",
    summary="Get a mailbox export",
    scope=Scope.MAILBOXES_EXPORT,
    tier=Tier.READ,
    response=MailboxExport,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def get_export(ctx: Context[None, None]) -> MailboxExport:
    """One export of the mailbox. Completed exports include `download_url`, a private URL (no
    API key needed; `Range` requests supported) valid for at most five minutes and never beyond
    `expires_at` (seven days after completion, when the file is deleted and the status becomes
    `expired`). A failed export has `error_code` and `error` and no file. 404: unknown mailbox
    or export (or another organisation's)."""
    await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    row = await service.get(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["export_id"])
    return _wire(ctx, row)


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/exports/{export_id}/download",
    operation_id="downloadMailboxExport",
    summary="Download a mailbox export",
    scope=None,
    tier=None,
    query=SignedQuery,
    errors=(404, 422),
    tags=("Mailboxes",),
    responses={
        "200": {
            "description": "The ZIP file (streamed from disk).",
            "headers": {"Accept-Ranges": {"schema": {"type": "string"}}, "ETag": {"schema": {"type": "string"}}},
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        "206": {
            "description": "The requested byte range(s) (Content-Range).",
            "headers": {"Content-Range": {"schema": {"type": "string"}}},
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        "416": {"description": "Range not satisfiable."},
    },
)
async def download_export(ctx: Context[None, SignedQuery]) -> Response:
    """The finished ZIP of a completed export, through the presigned `download_url` of
    `getMailboxExport` (its `expires` and `signature` parameters; no API key). `Range` (RFC 9110
    section 14) answers 206; the file is streamed from disk. 404: a bad or expired signature, an
    export that is not completed or has expired."""
    query = ctx.query
    path = service.download_path(ctx.path["id"], ctx.path["export_id"])
    if not verify(ctx.services.settings.secret_key, "GET", path, query.expires, query.signature):
        raise NotFound("No export download at this URL (the link is invalid or has expired).")
    row = await ctx.session.get(ExportRow, ctx.path["export_id"])
    if row is None or row.mailbox_id != ctx.path["id"] or row.status != COMPLETED:
        raise NotFound("No export download at this URL (the export is not available).")
    file = service.file_path(ctx.services.settings, row.id)
    if not file.exists():
        raise NotFound("No export download at this URL (the export is not available).")
    await ctx.session.close()
    return FileResponse(
        file,
        media_type="application/zip",
        filename=f"{row.mailbox_id}-{row.id}.zip",
        headers={"Cache-Control": "private, no-store"},
    )
