"""Mailbox delivery settings: ``PATCH /v1/mailboxes/{id}/auto-reply`` and
``PATCH /v1/mailboxes/{id}/spam-filter`` (both answer the Mailbox)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shipmail.mailboxes.routes import Mailbox
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Request
from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.settings import service as mailbox_settings
from shipmail.settings.service import BODY_MAX_CHARS, SUBJECT_MAX_CHARS, AutoReplySettings

operations: list[Operation] = []


class UpdateAutoReplyRequest(Request):
    enabled: bool = Field(strict=True, description="Whether auto-reply is active.")
    subject: str | None = Field(
        default=None, min_length=1, max_length=SUBJECT_MAX_CHARS,
        description="Subject of the reply (one line, no control characters). Null or absent: "
                    "\"Auto: \" followed by the subject of the message replied to.",
    )
    body: str | None = Field(
        default=None, max_length=BODY_MAX_CHARS,
        description="Reply message text (plain text; line breaks kept). Required when enabled is true.",
    )
    from_date: datetime | None = Field(
        default=None,
        description="Start date in UTC ISO 8601 (a time without offset is UTC). No reply before it; null: no start.",
    )
    to_date: datetime | None = Field(
        default=None,
        description="End date in UTC ISO 8601, after from_date. No reply from then on; null: no end.",
    )


class UpdateSpamFilterRequest(Request):
    threshold: int = Field(
        strict=True, ge=1, le=14,
        description="Spam score threshold for moving messages to junk. Lower is stricter.",
    )


@operation(
    operations, "PATCH", "/mailboxes/{id}/auto-reply", operation_id="updateAutoReply",
    summary="Update auto-reply settings", scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE,
    body=UpdateAutoReplyRequest, response=Mailbox, errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def update_auto_reply(ctx: Context[UpdateAutoReplyRequest, None]) -> Mailbox:
    """Configure the auto-reply (out-of-office) of a mailbox. The request states the whole
    setting: fields left out are cleared.

    While enabled, the mail server answers each incoming message, from the mailbox address, with
    the body, only between from_date and to_date (UTC, checked when the message arrives, to the
    second), at most once a day to each sender, and never to mailing-list mail (List-* headers,
    Precedence bulk/list/junk), automatic mail (Auto-Submitted other than "no"), bounces, mail
    that does not name the mailbox in To/Cc, or messages filed as spam."""
    body = ctx.body
    row = await mailbox_settings.update_auto_reply(
        ctx.services, ctx.organization_id, ctx.path["id"],
        AutoReplySettings(enabled=body.enabled, subject=body.subject, body=body.body,
                          from_date=body.from_date, to_date=body.to_date),
    )
    return Mailbox.of(row)


@operation(
    operations, "PATCH", "/mailboxes/{id}/spam-filter", operation_id="updateSpamFilter",
    summary="Update spam filter threshold", scope=Scope.MAILBOXES_WRITE, tier=Tier.WRITE,
    body=UpdateSpamFilterRequest, response=Mailbox, errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def update_spam_filter(ctx: Context[UpdateSpamFilterRequest, None]) -> Mailbox:
    """Set the mailbox spam filter threshold. Lower values are stricter; messages whose spam
    score (the X-Spam-Score header written by the inbound filter) is at or above the threshold
    are moved to Junk, get no auto-reply, and no inbox rule runs on them. A message without a
    score, or with a negative or unreadable one, is not spam."""
    row = await mailbox_settings.update_spam_threshold(
        ctx.services, ctx.organization_id, ctx.path["id"], ctx.body.threshold
    )
    return Mailbox.of(row)
