"""Wire models of the sandbox (Shipmail's ``InjectSandboxInboundRequest`` and its parts).

Source: Shipmail ``POST /v1/mailboxes/{id}/sandbox/inbound`` (``injectSandboxInbound``). The
service (:mod:`shipmail.sandbox.service`) builds the message from these models directly and checks
every header value again (the email package must never see CR, LF or NUL); the answer is the
inbox's :class:`~shipmail.inbox.schemas.InboxFullMessage`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from shipmail.http.schemas import Request

_MSG_ID = r"^<[^<>\r\n]+>$"


class RecipientObject(Request):
    address: str = Field(
        min_length=3, max_length=254, description="Email address.", json_schema_extra={"format": "email"}
    )
    name: str | None = Field(default=None, max_length=200, description="Display name (optional).")


Recipient = RecipientObject | str
"""Email recipient: ``{address, name}`` or a string (``user@example.com`` or ``Jane <user@example.com>``)."""


class OutboundHeader(Request):
    name: str = Field(
        min_length=1,
        max_length=78,
        description="List-Unsubscribe, List-Unsubscribe-Post, or a non-reserved X-* header.",
    )
    value: str = Field(min_length=1, max_length=998)


class InjectSandboxInboundRequest(Request):
    from_: Recipient = Field(alias="from", description="Sender (From header and envelope sender).")
    subject: str = Field(min_length=1, max_length=998)
    to: list[Recipient] | None = Field(
        default=None, max_length=50, description="To header; the mailbox's address when absent."
    )
    cc: list[Recipient] | None = Field(default=None, max_length=50)
    text: str | None = Field(
        default=None, max_length=256000, description="Plain text body. At least one of text or html is required."
    )
    html: str | None = Field(
        default=None, max_length=512000, description="HTML body. At least one of text or html is required."
    )
    message_id: str | None = Field(
        default=None,
        max_length=998,
        pattern=_MSG_ID,
        description="Message-ID: <left@right> (RFC 5322 msg-id, ASCII, at most 900 characters); generated when absent.",
    )
    in_reply_to: str | None = Field(
        default=None, max_length=998, pattern=_MSG_ID, description="In-Reply-To: the parent's Message-ID (threading)."
    )
    references: list[Annotated[str, Field(max_length=998, pattern=_MSG_ID)]] | None = Field(
        default=None, max_length=50, description="References (threading); [in_reply_to] when absent."
    )
    received_at: datetime | None = Field(
        default=None,
        description="Date header (UTC when no offset is given; now when absent). The server's "
        "received_at of the delivered message is the delivery time.",
    )
    headers: list[OutboundHeader] | None = Field(
        default=None,
        max_length=20,
        description="Custom headers: List-Unsubscribe, List-Unsubscribe-Post (RFC 8058: "
        "List-Unsubscribe=One-Click with an https List-Unsubscribe URI) or non-reserved X-* "
        "(X-Shipmail-*, X-SES-*, X-Amz*, routing and identity headers are refused).",
    )
