"""Folders: Shipmail ``/v1/mailboxes/{id}/folders`` (list, create, rename/move, delete).

A folder is a JMAP Mailbox (RFC 8621 section 2) of the mailbox's account; its id is ``fld_`` +
the JMAP Mailbox id. The rules (names, reserved names, what may be moved or deleted) and the JMAP
cost of each operation are in :mod:`shipmail.folders.service`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Request, Wire
from shipmail.auth.scopes import Scope
from shipmail.mailboxes.models import Mailbox as MailboxRow
from shipmail.http.errors import ValidationFailed
from shipmail.jmap import ids
from shipmail.http.ratelimit import Tier
from shipmail.mailboxes import service as mailboxes
from shipmail.folders import service as service

operations: list[Operation] = []

_NAME_DESCRIPTION = (
    "Folder name, 1-100 characters (Unicode, stored NFC). Refused with 422: the system names Inbox, "
    "Drafts, Sent, Trash, Junk and Archive (any case) at the top level; path separators and other "
    "characters the mail server cannot store (/ \\ \" % * ; < > ` { | } ^ !), control characters, "
    "leading or trailing white space."
)


def _string_only(schema: dict[str, Any]) -> None:
    """Document an optional-but-not-nullable field as a plain string (null is refused)."""
    schema.pop("default", None)
    branches = schema.pop("anyOf", None)
    if isinstance(branches, list):
        for branch in branches:
            if branch.get("type") == "string":
                schema.update(branch)


class CreateMailboxFolderRequest(Request):
    name: str = Field(min_length=1, max_length=100, description=_NAME_DESCRIPTION)
    parent_id: str | None = Field(
        default=None, max_length=300,
        description="Parent folder ID (fld_...) for a subfolder; null or absent for a top-level folder. "
                    "An unknown parent is a 422 naming parent_id.",
    )


class UpdateMailboxFolderRequest(Request):
    """Send name to rename, parent_id to move (null: to the top level), or both (at least one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    name: str | None = Field(
        default=None, min_length=1, max_length=100, description=_NAME_DESCRIPTION,
        json_schema_extra=_string_only,
    )
    parent_id: str | None = Field(
        default=None, max_length=300,
        description="New parent folder ID (fld_...), or null to move the folder to the top level. "
                    "Not the folder itself or one of its subfolders (422).",
    )

    @model_validator(mode="after")
    def _name_not_null(self) -> UpdateMailboxFolderRequest:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null (leave it out to keep the name)")
        return self


class MailboxFolder(Wire):
    object: Literal["mailbox_folder"] = "mailbox_folder"
    id: str = Field(description="fld_ + the JMAP Mailbox id.")
    name: str
    parent_id: str | None = Field(description="Parent folder ID for subfolders, or null for a root folder.")
    role: str | None = Field(description="JMAP role of a system folder (inbox, drafts, sent, trash, junk, archive).")
    kind: Literal["custom", "system"]
    total_emails: int = Field(ge=0, description="Messages in the folder.")
    unread_emails: int = Field(ge=0, description="Messages in the folder without $seen.")
    unread_threads: int = Field(ge=0, description="Threads with at least one unread message in the folder.")
    sort_order: int = Field(description="The mail server's sort order (lower first; the list is already sorted).")

    @classmethod
    def of(cls, f: service.Folder) -> MailboxFolder:
        return cls(
            id=ids.to_wire(ids.FOLDER, f.id), name=f.name,
            parent_id=ids.to_wire(ids.FOLDER, f.parent_id) if f.parent_id else None,
            role=f.role, kind=f.kind,  # type: ignore[arg-type]
            total_emails=f.total_emails, unread_emails=f.unread_emails, unread_threads=f.unread_threads,
            sort_order=f.sort_order,
        )


class MailboxFolders(Wire):
    object: Literal["mailbox_folders"] = "mailbox_folders"
    mailbox_id: str
    address: str = Field(json_schema_extra={"format": "email"})
    data: list[MailboxFolder] = Field(
        description="Every folder, depth first: each folder followed by its subfolders; siblings by "
                    "sort_order then name (system folders first)."
    )


async def _mailbox(ctx: Context[Any, Any]) -> MailboxRow:
    return await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations, "GET", "/mailboxes/{id}/folders", operation_id="listMailboxFolders",
    summary="List mailbox folders", scope=Scope.MAILBOXES_READ, tier=Tier.READ, response=MailboxFolders,
    errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def list_folders(ctx: Context[None, None]) -> MailboxFolders:
    """System and custom folders with their message counts (RFC 8621 section 2, Mailbox/get; one
    JMAP request). 404 for an unknown mailbox or one of another organisation."""
    row = await _mailbox(ctx)
    found = await service.list_folders(ctx.services, row)
    return MailboxFolders(mailbox_id=row.id, address=row.address, data=[MailboxFolder.of(f) for f in found])


@operation(
    operations, "POST", "/mailboxes/{id}/folders", operation_id="createMailboxFolder",
    summary="Create mailbox folder", scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE,
    body=CreateMailboxFolderRequest, response=MailboxFolder, status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503), tags=("Mailboxes",),
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
    operations, "PATCH", "/mailboxes/{id}/folders/{folder_id}", operation_id="updateMailboxFolder",
    summary="Rename mailbox folder", scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE,
    body=UpdateMailboxFolderRequest, response=MailboxFolder,
    errors=(401, 403, 404, 409, 422, 429, 503), tags=("Mailboxes",),
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
            "Send name, parent_id or both.",
            details=[{"field": "body", "code": "missing", "message": "name or parent_id required"}],
        )
    kwargs: dict[str, Any] = {}
    if "name" in sent:
        kwargs["name"] = body.name
    if "parent_id" in sent:
        kwargs["parent_wire_id"] = body.parent_id
    folder = await service.update_folder(ctx.services, row, ctx.path["folder_id"], **kwargs)
    return MailboxFolder.of(folder)


@operation(
    operations, "DELETE", "/mailboxes/{id}/folders/{folder_id}", operation_id="deleteMailboxFolder",
    summary="Delete mailbox folder", scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE, status_code=204,
    errors=(401, 403, 404, 409, 422, 429, 503), tags=("Mailboxes",),
)
async def delete_folder(ctx: Context[None, None]) -> None:
    """Delete a custom folder and its subfolders: their messages move to Trash first (Email/set),
    then the folders are destroyed, children first (Mailbox/set, RFC 8621 sections 2.5 and 4.6).
    No message is ever deleted; a failure part-way leaves the moved messages in Trash and a
    repeated DELETE completes. 409: a system folder. 404: unknown mailbox or folder."""
    row = await _mailbox(ctx)
    await service.delete_folder(ctx.services, row, ctx.path["folder_id"])
