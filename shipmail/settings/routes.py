"""Mailbox delivery settings: ``PATCH /v1/mailboxes/{id}/auto-reply`` and
``PATCH /v1/mailboxes/{id}/spam-filter`` (both answer the Mailbox)."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.mailboxes.schemas import Mailbox
from shipmail.settings import service
from shipmail.settings.schemas import UpdateAutoReplyRequest, UpdateSpamFilterRequest

operations: list[Operation] = []


@operation(
    operations,
    "PATCH",
    "/mailboxes/{id}/auto-reply",
    operation_id="updateAutoReply",
    summary="Update auto-reply settings",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=UpdateAutoReplyRequest,
    response=Mailbox,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def update_auto_reply(ctx: Context[UpdateAutoReplyRequest, None]) -> Mailbox:
    """Configure the auto-reply (out-of-office) of a mailbox. The request states the whole
    setting: fields left out are cleared.

    While enabled, the mail server answers each incoming message, from the mailbox address, with
    the body, only between from_date and to_date (UTC, checked when the message arrives, to the
    second), at most once a day to each sender, and never to mailing-list mail (List-* headers,
    Precedence bulk/list/junk), automatic mail (Auto-Submitted other than "no"), bounces, mail
    that does not name the mailbox in To/Cc, or messages filed as spam."""
    row = await service.update_auto_reply(
        ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.body.auto_reply()
    )
    return Mailbox.of(row, ctx.services.settings)


@operation(
    operations,
    "PATCH",
    "/mailboxes/{id}/spam-filter",
    operation_id="updateSpamFilter",
    summary="Update spam filter threshold",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=UpdateSpamFilterRequest,
    response=Mailbox,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def update_spam_filter(ctx: Context[UpdateSpamFilterRequest, None]) -> Mailbox:
    """Set the mailbox spam filter threshold. Lower values are stricter; messages whose spam
    score (the X-Spam-Score header written by the inbound filter) is at or above the threshold
    are moved to Junk, get no auto-reply, and no inbox rule runs on them. A message without a
    score, or with a negative or unreadable one, is not spam."""
    row = await service.update_spam_threshold(
        ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.body.threshold
    )
    return Mailbox.of(row, ctx.services.settings)
