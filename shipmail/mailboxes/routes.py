"""Mailboxes: Shipmail ``/v1/mailboxes`` (create, list, get, update, delete, password reset, suspend,
resume). Wire models: :mod:`shipmail.mailboxes.schemas`; rules: :mod:`shipmail.mailboxes.service`
and :mod:`shipmail.mailboxes.suspension`."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Pagination
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes import suspension
from shipmail.mailboxes.schemas import (
    CreateMailboxRequest,
    MailboxList,
    MailboxListQuery,
    ResetMailboxPasswordRequest,
    UpdateMailboxRequest,
)
from shipmail.mailboxes.schemas import (
    Mailbox as Mailbox,  # re-exported for shipmail.settings.routes until it imports the schemas module
)

operations: list[Operation] = []


@operation(
    operations,
    "POST",
    "/mailboxes",
    operation_id="createMailbox",
    summary="Create a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=CreateMailboxRequest,
    response=Mailbox,
    status_code=201,
    errors=(401, 403, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def create_mailbox(ctx: Context[CreateMailboxRequest, None]) -> Mailbox:
    """Create a mailbox on a verified domain: a real account on the mail server with the six
    special-use folders. 422 for an unverified domain, an invalid address or a weak password; 409
    for an address that exists or whose mailbox is being created or deleted (retry in a moment)."""
    row = await mailboxes.create(
        ctx.services,
        ctx.session,
        ctx.organization_id,
        domain_id=ctx.body.domain_id,
        local_part=ctx.body.address,
        display_name=ctx.body.display_name,
        password=ctx.body.password,
    )
    return Mailbox.of(row, ctx.services.settings)


@operation(
    operations,
    "GET",
    "/mailboxes",
    operation_id="listMailboxes",
    summary="List mailboxes",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    query=MailboxListQuery,
    response=MailboxList,
    errors=(401, 403, 422, 429),
    tags=("Mailboxes",),
)
async def list_mailboxes(ctx: Context[None, MailboxListQuery]) -> MailboxList:
    """The organisation's mailboxes in creation order, optionally of one domain (for a key limited
    to some mailboxes, only those)."""
    q = ctx.query
    rows, next_cursor, has_more = await mailboxes.list_page(
        ctx.services,
        ctx.session,
        ctx.organization_id,
        q.domain_id,
        q.cursor,
        q.limit,
        only=ctx.principal.mailbox_ids if ctx.principal is not None else None,
    )
    return MailboxList(
        data=[Mailbox.of(r, ctx.services.settings) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=q.limit),
    )


@operation(
    operations,
    "GET",
    "/mailboxes/{id}",
    operation_id="getMailbox",
    summary="Get a mailbox",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=Mailbox,
    errors=(401, 403, 404, 409, 429),
    tags=("Mailboxes",),
)
async def get_mailbox(ctx: Context[None, None]) -> Mailbox:
    """One mailbox of the organisation; 404 for unknown ids and other organisations' ids alike; 409
    while it is being created or deleted (every operation on one mailbox answers so then)."""
    return Mailbox.of(await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"]), ctx.services.settings)


@operation(
    operations,
    "PATCH",
    "/mailboxes/{id}",
    operation_id="updateMailbox",
    summary="Update a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=UpdateMailboxRequest,
    response=Mailbox,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def update_mailbox(ctx: Context[UpdateMailboxRequest, None]) -> Mailbox:
    """Change the display name (null clears it) and the send limits (`daily_send_limit`,
    `monthly_send_limit`: messages per UTC day / month; null: the service's defaults); fields not
    sent stay as they are."""
    fields = ctx.body.model_fields_set
    changes = {name: getattr(ctx.body, name) for name in fields}
    if changes:
        row = await mailboxes.update(ctx.session, ctx.organization_id, ctx.path["id"], changes)
    else:
        row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    return Mailbox.of(row, ctx.services.settings)


@operation(
    operations,
    "DELETE",
    "/mailboxes/{id}",
    operation_id="deleteMailbox",
    summary="Delete a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 429, 503),
    tags=("Mailboxes",),
)
async def delete_mailbox(ctx: Context[None, None]) -> None:
    """Delete the mailbox, its account and all its mail; delivery to the address is refused. 503:
    the mail server is unavailable; if it was reached, the mailbox stays "being deleted" (409 on
    every other operation) and retrying the DELETE finishes it."""
    await mailboxes.delete(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "PATCH",
    "/mailboxes/{id}/password",
    operation_id="resetMailboxPassword",
    summary="Reset mailbox password",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=ResetMailboxPasswordRequest,
    response=Mailbox,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def reset_password(ctx: Context[ResetMailboxPasswordRequest, None]) -> Mailbox:
    """Set a new login password; the old one stops working at once (IMAP, JMAP Basic)."""
    row = await mailboxes.reset_password(
        ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.body.password
    )
    return Mailbox.of(row, ctx.services.settings)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/suspend",
    operation_id="suspendMailbox",
    summary="Suspend a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    response=Mailbox,
    errors=(401, 403, 404, 409, 429, 503),
    tags=("Mailboxes",),
)
async def suspend_mailbox(ctx: Context[None, None]) -> Mailbox:
    """Add a manual suspension: the owner's logins (IMAP, JMAP) fail, incoming mail is refused
    temporarily (the sending server retries, and the message arrives after the resume), so inbox
    rules and the auto-reply do not run; the sandbox inbound endpoint answers 409. Mail already
    in the mailbox stays, and this API can still list, read and manage it. Idempotent: suspending
    a suspended mailbox keeps its `suspended_at`. Suspension reasons: `manual` (the only one this
    service sets). 503: the mail server is unavailable (nothing changed)."""
    return Mailbox.of(
        await suspension.suspend(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"]), ctx.services.settings
    )


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/resume",
    operation_id="resumeMailbox",
    summary="Resume a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    response=Mailbox,
    errors=(401, 403, 404, 409, 429, 503),
    tags=("Mailboxes",),
)
async def resume_mailbox(ctx: Context[None, None]) -> Mailbox:
    """Remove the manual suspension: logins and delivery work again at once, and mail the
    sending servers kept back arrives on their next retry. Idempotent: resuming an active
    mailbox returns it unchanged. 503: the mail server is unavailable (nothing changed)."""
    return Mailbox.of(
        await suspension.resume(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"]), ctx.services.settings
    )
