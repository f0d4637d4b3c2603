"""Folders: Shipmail ``/v1/mailboxes/{id}/folders`` (list, create, rename/move, delete).

A folder is a JMAP Mailbox (RFC 8621 section 2) of the mailbox's account; its id is ``fld_`` +
the JMAP Mailbox id. The rules (names, reserved names, what may be moved or deleted) and the JMAP
cost of each operation are in :mod:`shipmail.folders.service`.
"""

from __future__ import annotations

from typing import Any

from shipmail.auth.scopes import Scope
from shipmail.folders import service
from shipmail.folders.schemas import (
    CreateMailboxFolderRequest,
    MailboxFolder,
    MailboxFolders,
    UpdateMailboxFolderRequest,
)
from shipmail.http.errors import ValidationFailed, detail
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox as MailboxRow

operations: list[Operation] = []


async def _mailbox(ctx: Context[Any, Any]) -> MailboxRow:
    return await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/folders",
    operation_id="listMailboxFolders",
    summary="List mailbox folders",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=MailboxFolders,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def list_folders(ctx: Context[None, None]) -> MailboxFolders:
    """System and custom folders with their message counts (RFC 8621 section 2, Mailbox/get; one
    JMAP request). 404 for an unknown mailbox or one of another organisation."""
    row = await _mailbox(ctx)
    found = await service.list_folders(ctx.services, row)
    return MailboxFolders(mailbox_id=row.id, address=row.address, data=[MailboxFolder.of(f) for f in found])


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/folders",
    operation_id="createMailboxFolder",
    summary="Create mailbox folder",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=CreateMailboxFolderRequest,
    response=MailboxFolder,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def create_folder(ctx: Context[CreateMailboxFolderRequest, None]) -> MailboxFolder:
    """Create a custom folder, at the top level or under ``parent_id`` (RFC 8621 section 2.5,
    Mailbox/set). 422: reserved or invalid name, unknown parent (field ``parent_id``: the parent
    is part of the body, so it is a validation error, not a 404), path too long for the mail
    server. 409: a folder with that name exists under the same parent (names are compared after
    NFC normalisation and case-sensitively, as the mail server does). 404: unknown mailbox."""
    row = await _mailbox(ctx)
    folder = await service.create_folder(ctx.services, row, ctx.body.name, ctx.body.parent_id)
    return MailboxFolder.of(folder)


@operation(
    operations,
    "PATCH",
    "/mailboxes/{id}/folders/{folder_id}",
    operation_id="updateMailboxFolder",
    summary="Rename mailbox folder",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=UpdateMailboxFolderRequest,
    response=MailboxFolder,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def update_folder(ctx: Context[UpdateMailboxFolderRequest, None]) -> MailboxFolder:
    """Rename (``name``) and/or move (``parent_id``; null moves it to the top level) a custom
    folder; its subfolders and messages go with it (RFC 8621 section 2.5, Mailbox/set update).
    409: a system folder (any change), or the name exists at the destination. 422: invalid or
    reserved name, unknown parent, a move under the folder itself or one of its subfolders, an
    empty body. 404: unknown mailbox or folder."""
    row = await _mailbox(ctx)
    body = ctx.body
    sent = body.model_fields_set
    if not sent:
        raise ValidationFailed(
            "Send name, parent_id or both.", details=[detail("body", "missing", "name or parent_id required")]
        )
    folder = await service.update_folder(
        ctx.services,
        ctx.session,
        row,
        ctx.path["folder_id"],
        name=body.name,
        move="parent_id" in sent,
        parent_wire_id=body.parent_id,
    )
    return MailboxFolder.of(folder)


@operation(
    operations,
    "DELETE",
    "/mailboxes/{id}/folders/{folder_id}",
    operation_id="deleteMailboxFolder",
    summary="Delete mailbox folder",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def delete_folder(ctx: Context[None, None]) -> None:
    """Delete a custom folder and its subfolders: their messages move to Trash first (Email/set),
    then the folders are destroyed, children first (Mailbox/set, RFC 8621 sections 2.5 and 4.6).
    No message is ever deleted; a failure part-way leaves the moved messages in Trash and a
    repeated DELETE completes. 409: a system folder. 404: unknown mailbox or folder."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"], with_rules=True)  # the rule guard
    await service.delete_folder(ctx.services, ctx.session, row, ctx.path["folder_id"])
