"""Mailboxes: Shipmail ``/v1/mailboxes`` (create, list, get, update, delete, password reset, suspend,
resume). Wire models: :mod:`shipmail.mailboxes.schemas`; rules: :mod:`shipmail.mailboxes.service`
and :mod:`shipmail.mailboxes.suspension`."""

from __future__ import annotations

from starlette.responses import Response

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation, render
from shipmail.http.schemas import Pagination
from shipmail.mailboxes import lifecycle, suspension
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.schemas import (
    BatchCreateMailboxesRequest,
    CreateMailboxRequest,
    DeleteMailboxQuery,
    GetMailboxQuery,
    MailboxBatch,
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
    """The organisation's mailboxes, in creation order unless `order_by` says otherwise
    (`created_at_asc|desc`, `address_asc|desc`), optionally of one domain, in one `status`
    (`active`, `suspended`, `deletion_scheduled`) and whose address or display name contains
    `search` (case-insensitive); `include_total=true` adds `total_count` (every page). The cursor
    is bound to the filters and the order. Each mailbox carries `storage_used_bytes` as the mail
    server counts it with `include_usage=true` (else null). For a key limited to some mailboxes,
    only those."""
    q = ctx.query
    filters = mailboxes.ListFilters(domain_id=q.domain_id, status=q.status, search=q.search, order_by=q.order_by)
    rows, next_cursor, has_more, total = await mailboxes.list_page(
        ctx.services,
        ctx.session,
        ctx.organization_id,
        filters,
        q.cursor,
        q.limit,
        include_total=q.include_total,
        only=ctx.principal.mailbox_ids if ctx.principal is not None else None,
    )
    used = await lifecycle.usage(ctx.services, rows) if q.include_usage else {}
    return MailboxList(
        data=[Mailbox.of(r, ctx.services.settings, used.get(r.address)) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=q.limit),
        total_count=total,
    )


@operation(
    operations,
    "POST",
    "/mailboxes/batch",
    operation_id="createMailboxesBatch",
    summary="Create mailboxes in a batch",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=BatchCreateMailboxesRequest,
    response=MailboxBatch,
    status_code=201,
    errors=(401, 403, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def create_mailboxes_batch(ctx: Context[BatchCreateMailboxesRequest, None]) -> MailboxBatch:
    """Create 1-100 mailboxes on one verified domain, all or none. Every entry is checked first
    (as createMailbox); one that fails answers 422 (or 409 for a taken address) naming its index
    (`mailboxes[3]: ...`, details `mailboxes[3].address`) and nothing is created. 403 `over_limit`
    when they do not all fit in the organisation's mailbox limit. Should the mail server fail in
    the middle, the mailboxes already made are deleted again (account and row)."""
    rows = await lifecycle.batch_create(
        ctx.services, ctx.session, ctx.organization_id, ctx.body.domain_id, ctx.body.mailboxes
    )
    return MailboxBatch(data=[Mailbox.of(r, ctx.services.settings) for r in rows])


@operation(
    operations,
    "GET",
    "/mailboxes/{id}",
    operation_id="getMailbox",
    summary="Get a mailbox",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    query=GetMailboxQuery,
    response=Mailbox,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def get_mailbox(ctx: Context[None, GetMailboxQuery]) -> Mailbox:
    """One mailbox of the organisation (with `include_usage=true`, its `storage_used_bytes` as the
    mail server counts it);
    404 for unknown ids and other organisations' ids alike; 409 while it is being created or
    deleted (every operation on one mailbox answers so then)."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    used = await lifecycle.usage(ctx.services, [row]) if ctx.query.include_usage else {}
    return Mailbox.of(row, ctx.services.settings, used.get(row.address))


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
    """Change the display name (null clears it), the send limits (`daily_send_limit`,
    `monthly_send_limit`: messages per UTC day / month; null: the service's defaults), the storage
    quota (`storage_quota_bytes`, null removes it; enforced by the mail server: over it inbound
    mail is refused temporarily with LMTP 452) and the status (`paused` = suspend, `active` =
    resume: the same state as `POST /mailboxes/{id}/suspend|resume`); fields not sent stay as
    they are. 409 for a status change while a deletion is scheduled; 503: the mail server is
    unavailable."""
    sent = ctx.body.model_fields_set
    mailbox_id = ctx.path["id"]
    row = None
    changes = {name: getattr(ctx.body, name) for name in sent & mailboxes.UPDATABLE}
    if changes:
        row = await mailboxes.update(ctx.session, ctx.organization_id, mailbox_id, changes)
    if "storage_quota_bytes" in sent:
        row = await lifecycle.set_quota(
            ctx.services, ctx.session, ctx.organization_id, mailbox_id, ctx.body.storage_quota_bytes
        )
    if ctx.body.status is not None:
        row = await lifecycle.set_status(ctx.services, ctx.session, ctx.organization_id, mailbox_id, ctx.body.status)
    if row is None:
        row = await mailboxes.get(ctx.session, ctx.organization_id, mailbox_id)
    return Mailbox.of(row, ctx.services.settings)


@operation(
    operations,
    "DELETE",
    "/mailboxes/{id}",
    operation_id="deleteMailbox",
    summary="Delete a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    query=DeleteMailboxQuery,
    status_code=204,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
    responses={
        "200": {
            "description": "With `grace_days` of 1-30: the deletion is scheduled; the mailbox in status "
            "`deletion_scheduled`.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Mailbox"}}},
        }
    },
)
async def delete_mailbox(ctx: Context[None, DeleteMailboxQuery]) -> Response | None:
    """Without `grace_days` (or 0): delete the mailbox, its account and all its mail now (204);
    delivery to the address is refused. 503: the mail server is unavailable; if it was reached,
    the mailbox stays "being deleted" (409 on every other operation) and retrying the DELETE
    finishes it.

    With `grace_days` 1-30: schedule the deletion that many days ahead (200, the mailbox in status
    `deletion_scheduled` with `deletion_scheduled_at`). Until then the owner cannot log in, inbound
    mail is refused permanently (SMTP/LMTP 550), the mail is kept and this API can still read it;
    `POST /mailboxes/{id}/restore` brings everything back. At the date the mailbox is deleted as
    above, once, also across restarts of the service. Scheduling again sets a new date."""
    if ctx.query.grace_days == 0:
        await mailboxes.delete(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"])
        return None
    scheduled = await lifecycle.schedule_deletion(
        ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.query.grace_days
    )
    return render(Mailbox.of(scheduled.row, ctx.services.settings), 200)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/restore",
    operation_id="restoreMailbox",
    summary="Restore a mailbox scheduled for deletion",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    response=Mailbox,
    errors=(401, 403, 404, 409, 429, 503),
    tags=("Mailboxes",),
)
async def restore_mailbox(ctx: Context[None, None]) -> Mailbox:
    """Cancel a scheduled deletion before its date: logins (unless suspended) and delivery work
    again at once, the mail is as it was. Idempotent: a mailbox without a scheduled deletion is
    returned unchanged. 503: the mail server is unavailable (nothing changed)."""
    row = await lifecycle.restore(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"])
    return Mailbox.of(row, ctx.services.settings)


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
