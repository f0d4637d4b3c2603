"""Imports: ``/v1/mailboxes/{id}/imports`` (create, list, get, cancel, undo), staged uploads
``POST /v1/mailboxes/{id}/imports/files`` and the presigned ``PUT`` of their bytes
(:mod:`shipmail.imports.service`)."""

from __future__ import annotations

from typing import Any

from shipmail.auth.scopes import Scope
from shipmail.http.errors import NotFound
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.signed import SignedQuery, verify
from shipmail.imports import service
from shipmail.imports.schemas import (
    CreateImportUploadRequest,
    CreateMailboxImportRequest,
    ImportFileUploaded,
    ImportUpload,
    MailboxImport,
    MailboxImportList,
)
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox as MailboxRow

operations: list[Operation] = []


async def _mailbox(ctx: Context[Any, Any]) -> MailboxRow:
    return await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/imports/files",
    operation_id="createMailboxImportUpload",
    summary="Stage an import file",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=CreateImportUploadRequest,
    response=ImportUpload,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def create_upload(ctx: Context[CreateImportUploadRequest, None]) -> ImportUpload:
    """Create a presigned upload for a mailbox export file (`.mbox`, `.mbox.gz`, `.zip` of
    `.eml`/`.mbox` files or our own export, or a single `.eml`). PUT exactly `size_bytes` raw
    bytes to `upload_url` (no API key; valid for `expires_in_seconds`), then pass `file_id` to
    `createMailboxImport` with a `files` source. Staged files never used are deleted after 24
    hours. 404: unknown mailbox."""
    row = await _mailbox(ctx)
    staged, url = await service.stage_upload(
        ctx.session, ctx.services.settings, row, ctx.body.file_name, ctx.body.size_bytes
    )
    base = str(ctx.request.base_url).rstrip("/")
    return ImportUpload(file_id=staged.id, upload_url=base + url, expires_in_seconds=service.UPLOAD_URL_SECONDS)


@operation(
    operations,
    "PUT",
    "/mailboxes/{id}/imports/files/{file_id}",
    operation_id="uploadMailboxImportFile",
    summary="Upload an import file's bytes",
    scope=None,
    tier=None,
    query=SignedQuery,
    response=ImportFileUploaded,
    errors=(404, 409, 413, 422),
    tags=("Mailboxes",),
    raw_body="application/octet-stream",
)
async def upload_file(ctx: Context[None, SignedQuery]) -> ImportFileUploaded:
    """The presigned `upload_url` of `createMailboxImportUpload`: the request body is the file's
    raw bytes (any Content-Type), streamed to disk as it arrives (never held in memory).
    413: more bytes than `size_bytes` (also when Content-Length says so, before any is read).
    422: fewer bytes than `size_bytes`. 409: the file was uploaded already. 404: a bad or
    expired signature, or no such staged file."""
    query = ctx.query
    path = service.upload_path(ctx.path["id"], ctx.path["file_id"])
    if not verify(ctx.services.settings.secret_key, "PUT", path, query.expires, query.signature):
        raise NotFound("No upload at this URL (the link is invalid or has expired).")
    row = await service.receive_upload(
        ctx.session, ctx.services.settings, ctx.path["id"], ctx.path["file_id"], ctx.request
    )
    return ImportFileUploaded.of(row)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/imports",
    operation_id="createMailboxImport",
    summary="Start a mailbox import",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=CreateMailboxImportRequest,
    response=MailboxImport,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def create_import(ctx: Context[CreateMailboxImportRequest, None]) -> MailboxImport:
    """Import mail into this mailbox in the background: staged files (`files` source) or every
    folder of another IMAP server (`imap` source, provider `imap` with `host`; the password is
    encrypted at rest and deleted when the import ends). Folders are matched (system folders by
    role and common names such as "Sent Items", "Deleted Items", "[Gmail]/Sent Mail"; others
    created when missing); read state, flags and received dates are kept; duplicates (same
    Message-ID and size in the folder) are skipped and counted; malformed messages are skipped
    and listed with the reason. 409: an import is already running for this mailbox. 422: a file
    that is not an uploaded, unused file of this mailbox; an IMAP source without host, with a
    named provider, or at a private address. 404: unknown mailbox."""
    row = await _mailbox(ctx)
    created = await service.create(ctx.session, ctx.services.settings, row, ctx.body)
    return MailboxImport.of(created, detail=True)


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/imports",
    operation_id="listMailboxImports",
    summary="List mailbox imports",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=MailboxImportList,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def list_imports(ctx: Context[None, None]) -> MailboxImportList:
    """The mailbox's 50 most recent imports, newest first (without `folders` and `failures`)."""
    row = await _mailbox(ctx)
    rows = await service.recent(ctx.session, row.id)
    return MailboxImportList(mailbox_id=row.id, data=[MailboxImport.of(r) for r in rows])


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/imports/{import_id}",
    operation_id="getMailboxImport",
    summary="Get a mailbox import",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=MailboxImport,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def get_import(ctx: Context[None, None]) -> MailboxImport:
    """One import with live progress counters, the per-folder report and the malformed messages
    skipped. 404: unknown mailbox or import."""
    await _mailbox(ctx)
    row = await service.get(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["import_id"])
    return MailboxImport.of(row, detail=True)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/imports/{import_id}/cancel",
    operation_id="cancelMailboxImport",
    summary="Cancel a mailbox import",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    response=MailboxImport,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def cancel_import(ctx: Context[None, None]) -> MailboxImport:
    """Cancel a queued or running import: it stops before its next batch of messages. Mail
    already imported stays (undo removes it); a new import later skips what is already there.
    An import that has ended is returned unchanged. 404: unknown mailbox or import."""
    await _mailbox(ctx)
    row = await service.cancel(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["import_id"])
    return MailboxImport.of(row, detail=True)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/imports/{import_id}/undo",
    operation_id="undoMailboxImport",
    summary="Undo a mailbox import",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    response=MailboxImport,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def undo_import(ctx: Context[None, None]) -> MailboxImport:
    """Queue deletion of the messages the import created, then of the folders it created once
    they are empty. Mail that was in the mailbox before is not touched. 409: the import is still
    queued or running (cancel it first) or already undone. 404: unknown mailbox or import."""
    await _mailbox(ctx)
    row = await service.undo(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["import_id"])
    return MailboxImport.of(row, detail=True)
