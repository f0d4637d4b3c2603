"""Mailboxes: Shipmail ``/v1/mailboxes`` (create, list, get, update, delete, password reset, suspend,
resume)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import PageQuery, Pagination, Request, Wire
from shipmail.auth.scopes import Scope
from shipmail.mailboxes.models import Mailbox as MailboxRow
from shipmail.http.ratelimit import Tier
from shipmail.mailboxes import service as mailboxes, suspension
from shipmail.settings.schemas import AutoReply

operations: list[Operation] = []

_LOCAL_PART = r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$"


class CreateMailboxRequest(Request):
    domain_id: str = Field(min_length=1, max_length=64, description="ID of the domain for this mailbox.")
    address: str = Field(
        min_length=1, max_length=64, pattern=_LOCAL_PART,
        description="Local part of the address (hello for hello@example.com).",
    )
    password: str | None = Field(
        default=None, min_length=8, max_length=128,
        description="Initial password: lower case, upper case and a digit; common passwords are refused. Never returned.",
        json_schema_extra={"format": "password"},
    )
    generate_password: Literal[True] | None = Field(
        default=None, description="Generate a strong password on the server and never return it."
    )
    display_name: str | None = Field(default=None, max_length=128, description="Display name for the mailbox.")

    @model_validator(mode="after")
    def _one_password_source(self) -> CreateMailboxRequest:
        if (self.password is None) == (self.generate_password is None):
            raise ValueError("send exactly one of password and generate_password")
        return self


class UpdateMailboxRequest(Request):
    display_name: str | None = Field(default=None, max_length=200, description="Display name, or null to clear.")


class ResetMailboxPasswordRequest(Request):
    password: str = Field(
        min_length=8, max_length=128,
        description="New password: 8-128 characters with lower case, upper case and a digit; common ones refused.",
    )


class MailboxListQuery(PageQuery):
    domain_id: str | None = Field(default=None, max_length=64, description="Only mailboxes of this domain.")


class Mailbox(Wire):
    object: Literal["mailbox"] = "mailbox"
    id: str
    domain_id: str
    address: str
    display_name: str | None
    suspended_at: datetime | None
    suspension_reasons: list[Literal["billing", "manual", "security"]]
    spam_filter_threshold: int = Field(ge=1, le=14)
    auto_reply: AutoReply
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: MailboxRow) -> Mailbox:
        return cls(
            id=row.id, domain_id=row.domain_id, address=row.address, display_name=row.display_name,
            suspended_at=row.suspended_at, suspension_reasons=["manual"] if row.suspended_at else [],
            spam_filter_threshold=row.spam_filter_threshold, auto_reply=row.auto_reply,
            created_at=row.created_at, updated_at=row.updated_at,
        )


class MailboxList(Wire):
    data: list[Mailbox]
    pagination: Pagination


@operation(
    operations, "POST", "/mailboxes", operation_id="createMailbox", summary="Create a mailbox",
    scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE, body=CreateMailboxRequest, response=Mailbox, status_code=201,
    errors=(401, 403, 409, 422, 429, 503), tags=("Mailboxes",),
)
async def create_mailbox(ctx: Context[CreateMailboxRequest, None]) -> Mailbox:
    """Create a mailbox on a verified domain: a real account on the mail server with the six
    special-use folders. 422 for an unverified domain, an invalid address or a weak password; 409
    for an address that exists."""
    row = await mailboxes.create(
        ctx.services, ctx.organization_id, domain_id=ctx.body.domain_id, local_part=ctx.body.address,
        display_name=ctx.body.display_name, password=ctx.body.password,
    )
    return Mailbox.of(row)


@operation(
    operations, "GET", "/mailboxes", operation_id="listMailboxes", summary="List mailboxes",
    scope=Scope.MAILBOXES_READ, tier=Tier.READ, query=MailboxListQuery, response=MailboxList,
    errors=(401, 403, 422, 429), tags=("Mailboxes",),
)
async def list_mailboxes(ctx: Context[None, MailboxListQuery]) -> MailboxList:
    """The organisation's mailboxes in creation order, optionally of one domain."""
    q = ctx.query
    rows, next_cursor, has_more = await mailboxes.list_page(
        ctx.services, ctx.organization_id, q.domain_id, q.cursor, q.limit
    )
    return MailboxList(
        data=[Mailbox.of(r) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=q.limit),
    )


@operation(
    operations, "GET", "/mailboxes/{id}", operation_id="getMailbox", summary="Get a mailbox",
    scope=Scope.MAILBOXES_READ, tier=Tier.READ, response=Mailbox, errors=(401, 403, 404, 429), tags=("Mailboxes",),
)
async def get_mailbox(ctx: Context[None, None]) -> Mailbox:
    """One mailbox of the organisation; 404 for unknown ids and other organisations' ids alike."""
    return Mailbox.of(await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"]))


@operation(
    operations, "PATCH", "/mailboxes/{id}", operation_id="updateMailbox", summary="Update a mailbox",
    scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE, body=UpdateMailboxRequest, response=Mailbox,
    errors=(401, 403, 404, 422, 429), tags=("Mailboxes",),
)
async def update_mailbox(ctx: Context[UpdateMailboxRequest, None]) -> Mailbox:
    """Change the display name (null clears it); fields not sent stay as they are."""
    if "display_name" in ctx.body.model_fields_set:
        row = await mailboxes.update_display_name(
            ctx.services, ctx.organization_id, ctx.path["id"], ctx.body.display_name
        )
    else:
        row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    return Mailbox.of(row)


@operation(
    operations, "DELETE", "/mailboxes/{id}", operation_id="deleteMailbox", summary="Delete a mailbox",
    scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE, status_code=204, errors=(401, 403, 404, 429, 503),
    tags=("Mailboxes",),
)
async def delete_mailbox(ctx: Context[None, None]) -> None:
    """Delete the mailbox, its account and all its mail; delivery to the address is refused."""
    await mailboxes.delete(ctx.services, ctx.organization_id, ctx.path["id"])


@operation(
    operations, "PATCH", "/mailboxes/{id}/password", operation_id="resetMailboxPassword",
    summary="Reset mailbox password", scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE,
    body=ResetMailboxPasswordRequest, response=Mailbox, errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def reset_password(ctx: Context[ResetMailboxPasswordRequest, None]) -> Mailbox:
    """Set a new login password; the old one stops working at once (IMAP, JMAP Basic)."""
    row = await mailboxes.reset_password(ctx.services, ctx.organization_id, ctx.path["id"], ctx.body.password)
    return Mailbox.of(row)


@operation(
    operations, "POST", "/mailboxes/{id}/suspend", operation_id="suspendMailbox", summary="Suspend a mailbox",
    scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE, response=Mailbox, errors=(401, 403, 404, 429, 503),
    tags=("Mailboxes",),
)
async def suspend_mailbox(ctx: Context[None, None]) -> Mailbox:
    """Add a manual suspension: the owner's logins (IMAP, JMAP) fail, incoming mail is refused
    temporarily (the sending server retries, and the message arrives after the resume), so inbox
    rules and the auto-reply do not run; the sandbox inbound endpoint answers 409. Mail already
    in the mailbox stays, and this API can still list, read and manage it. Idempotent: suspending
    a suspended mailbox keeps its `suspended_at`. Suspension reasons: `manual` (the only one this
    service sets). 503: the mail server is unavailable (nothing changed)."""
    return Mailbox.of(await suspension.suspend(ctx.services, ctx.organization_id, ctx.path["id"]))


@operation(
    operations, "POST", "/mailboxes/{id}/resume", operation_id="resumeMailbox", summary="Resume a mailbox",
    scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE, response=Mailbox, errors=(401, 403, 404, 429, 503),
    tags=("Mailboxes",),
)
async def resume_mailbox(ctx: Context[None, None]) -> Mailbox:
    """Remove the manual suspension: logins and delivery work again at once, and mail the
    sending servers kept back arrives on their next retry. Idempotent: resuming an active
    mailbox returns it unchanged. 503: the mail server is unavailable (nothing changed)."""
    return Mailbox.of(await suspension.resume(ctx.services, ctx.organization_id, ctx.path["id"]))
