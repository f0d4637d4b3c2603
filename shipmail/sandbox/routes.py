"""Sandbox: inject an inbound message into a mailbox (``POST /v1/mailboxes/{id}/sandbox/inbound``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from shipmail.inbox.schemas import InboxFullMessage
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Request
from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.sandbox import service as sandbox
from shipmail.mailboxes import service as mailboxes

operations: list[Operation] = []

_MSG_ID = r"^<[^<>\r\n]+>$"


class RecipientObject(Request):
    address: str = Field(min_length=3, max_length=254, description="Email address.",
                         json_schema_extra={"format": "email"})
    name: str | None = Field(default=None, max_length=200, description="Display name (optional).")


Recipient = RecipientObject | str
"""Email recipient: ``{address, name}`` or a string (``user@example.com`` or ``Jane <user@example.com>``)."""


class OutboundHeader(Request):
    name: str = Field(min_length=1, max_length=78,
                      description="List-Unsubscribe, List-Unsubscribe-Post, or a non-reserved X-* header.")
    value: str = Field(min_length=1, max_length=998)


class InjectSandboxInboundRequest(Request):
    from_: Recipient = Field(alias="from", description="Sender (From header and envelope sender).")
    subject: str = Field(min_length=1, max_length=998)
    to: list[Recipient] | None = Field(default=None, max_length=50,
                                       description="To header; the mailbox's address when absent.")
    cc: list[Recipient] | None = Field(default=None, max_length=50)
    text: str | None = Field(default=None, max_length=256000,
                             description="Plain text body. At least one of text or html is required.")
    html: str | None = Field(default=None, max_length=512000,
                             description="HTML body. At least one of text or html is required.")
    message_id: str | None = Field(default=None, max_length=998, pattern=_MSG_ID,
                                   description="Message-ID: <left@right> (RFC 5322 msg-id, ASCII, at most 900 characters); "
                                               "generated when absent.")
    in_reply_to: str | None = Field(default=None, max_length=998, pattern=_MSG_ID,
                                    description="In-Reply-To: the parent's Message-ID (threading).")
    references: list[Annotated[str, Field(max_length=998, pattern=_MSG_ID)]] | None = Field(
        default=None, max_length=50, description="References (threading); [in_reply_to] when absent.")
    received_at: datetime | None = Field(
        default=None,
        description="Date header (UTC when no offset is given; now when absent). The server's "
                    "received_at of the delivered message is the delivery time.",
    )
    headers: list[OutboundHeader] | None = Field(
        default=None, max_length=20,
        description="Custom headers: List-Unsubscribe, List-Unsubscribe-Post (RFC 8058: "
                    "List-Unsubscribe=One-Click with an https List-Unsubscribe URI) or non-reserved X-* "
                    "(X-Shipmail-*, X-SES-*, X-Amz*, routing and identity headers are refused).",
    )


def _party(value: RecipientObject | str) -> str | dict[str, str | None]:
    return value if isinstance(value, str) else {"address": value.address, "name": value.name}


@operation(
    operations, "POST", "/mailboxes/{id}/sandbox/inbound", operation_id="injectSandboxInbound",
    summary="Inject a sandbox inbound message", scope=Scope.MESSAGES_WRITE, tier=Tier.WRITE,
    body=InjectSandboxInboundRequest, response=InboxFullMessage, status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503), tags=("Mailboxes", "Messages"),
)
async def inject_sandbox_inbound(ctx: Context[InjectSandboxInboundRequest, None]) -> InboxFullMessage:
    """Build an RFC 5322 message from the body (text/plain, text/html, or multipart/alternative
    when both bodies are given; Date from `received_at`; a Message-ID is generated when absent)
    and deliver it to the mailbox through the mail server's inbound path, so the mailbox's
    delivery rules run as for mail from the internet. Nothing is sent to the `from`, `to` or `cc`
    addresses. Answers 201 with the delivered message as stored (ids `eml_...`, `thr_...`;
    `in_reply_to`/`references` thread it with earlier messages).

    422: no text nor html, CR/LF/NUL or other control characters in any header value, an invalid
    address or message id, a header other than List-Unsubscribe, List-Unsubscribe-Post (RFC 8058)
    and non-reserved X-*. 409: a message with this `message_id` is already in the mailbox, or the
    mailbox is suspended (`POST /mailboxes/{id}/resume` first). 404:
    not a mailbox of this organisation. 503: the mail server is unavailable (Retry-After)."""
    body = ctx.body
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    spec = sandbox.InboundMessage(
        sender=_party(body.from_),
        subject=body.subject,
        to=[_party(r) for r in body.to] if body.to is not None else None,
        cc=[_party(r) for r in body.cc] if body.cc is not None else None,
        text=body.text,
        html=body.html,
        message_id=body.message_id,
        in_reply_to=body.in_reply_to,
        references=body.references,
        received_at=body.received_at,
        headers=[(h.name, h.value) for h in body.headers or []],
    )
    return await sandbox.inject(ctx.services, row, spec)
