"""Wire models of ``/v1/messages`` and the reply operations (Shipmail's ``SendMessageRequest``,
``ReplyToThreadRequest``, ``Message`` and its list).

Source: Shipmail ``sendMessage``, ``listMessages``, ``getMessage``, ``replyToMessage``,
``replyToMailboxInboxMessage``, ``replyToMailboxInboxThread``. Recipients and outbound headers
are the sandbox's (:mod:`shipmail.sandbox.schemas`: the same reference types).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from shipmail.http.schemas import PageQuery, Pagination, Request, Wire
from shipmail.sandbox.schemas import OutboundHeader, Recipient

#: Most recipients of one message (to + cc + bcc).
MAX_RECIPIENTS = 50
#: Most attachments of one message, and the largest decoded size of one and of all together.
MAX_ATTACHMENTS = 20
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024
#: Base64 of :data:`MAX_ATTACHMENT_BYTES` (what the JSON may carry per attachment).
MAX_ATTACHMENT_BASE64 = (MAX_ATTACHMENT_BYTES + 2) // 3 * 4

_SOURCE_MSG_ID = r"^<[^<>\s@]+@[^<>\s@]+>$"
_MSG_ID = r"^<[^<>\r\n]+>$"

Scalar = str | int | float | bool | None


class AttachmentInput(Request):
    """A base64 attachment (the reference's deprecated ``Attachment``; still the only kind here)."""

    filename: str = Field(min_length=1, max_length=256, description="File name (any Unicode; RFC 2231 on the wire).")
    content: str = Field(max_length=MAX_ATTACHMENT_BASE64, description="Base64-encoded file content (at most 3 MB).")
    content_type: str | None = Field(
        default=None, max_length=256, description="MIME type (type/subtype). Defaults to application/octet-stream."
    )


class _Outgoing(Request):
    """What every send and reply body carries."""

    html: str | None = Field(
        default=None, max_length=524288, description="HTML body. At least one of html or text is required."
    )
    text: str | None = Field(
        default=None, max_length=262144, description="Plain text body. At least one of html or text is required."
    )
    client_reference: str | None = Field(
        default=None, min_length=1, max_length=255, description="Caller-defined reference (organisation-scoped)."
    )
    metadata: dict[str, Scalar] | None = Field(
        default=None, max_length=20, description="Up to 20 scalar values, kept with the message."
    )
    source_rfc_message_id: str | None = Field(
        default=None,
        max_length=998,
        pattern=_SOURCE_MSG_ID,
        description="Message-ID to use (<left@sender domain>); generated on the sender's domain when absent.",
    )
    headers: list[OutboundHeader] | None = Field(
        default=None, max_length=20, description="List-Unsubscribe, List-Unsubscribe-Post or non-reserved X-* headers."
    )


class SendMessageRequest(_Outgoing):
    """Send from a mailbox: ``from`` (its address) or ``mailbox_id``."""

    from_: str | None = Field(
        default=None,
        alias="from",
        max_length=320,
        description="Address of the sending mailbox (one of its identities); alternative to mailbox_id.",
    )
    mailbox_id: str | None = Field(default=None, max_length=64, description="ID of the sending mailbox.")
    to: list[Recipient] = Field(min_length=1, max_length=MAX_RECIPIENTS, description="To recipients (at least one).")
    cc: list[Recipient] | None = Field(default=None, max_length=MAX_RECIPIENTS)
    bcc: list[Recipient] | None = Field(
        default=None, max_length=MAX_RECIPIENTS, description="Envelope recipients only: never in a header."
    )
    reply_to: Recipient | None = Field(default=None, description="Reply-To address.")
    subject: str = Field(max_length=998, description="Subject (no CR/LF).")
    in_reply_to: str | None = Field(default=None, max_length=998, pattern=_MSG_ID, description="Message-ID replied to.")
    references: list[Annotated[str, Field(max_length=998, pattern=_MSG_ID)]] | None = Field(
        default=None, max_length=50, description="Message-IDs for threading."
    )
    attachments: list[AttachmentInput] | None = Field(
        default=None, max_length=MAX_ATTACHMENTS, description="Base64 attachments: at most 20, 3 MB each, 3 MB total."
    )


class ReplyToThreadRequest(_Outgoing):
    """A reply: threading headers and the subject come from the message replied to."""

    to: list[Recipient] = Field(min_length=1, max_length=MAX_RECIPIENTS, description="To recipients (at least one).")
    cc: list[Recipient] | None = Field(default=None, max_length=MAX_RECIPIENTS)


class MessageRecipient(Wire):
    address: str
    name: str | None = None


class AttachmentMetadata(Wire):
    filename: str
    size: int = Field(ge=0, description="Size in bytes (decoded).")
    content_type: str


class MessageHeader(Wire):
    name: str
    value: str


class Message(Wire):
    """A message sent from a mailbox (Shipmail's ``Message``)."""

    object: Literal["message"] = "message"
    id: str = Field(description="msg_...")
    mailbox_id: str
    thread_id: str | None = Field(description="Thread of the Sent copy (thr_...), as the inbox lists it.")
    conversation_id: str | None = Field(
        default=None,
        description="Shipmail SDK 0.6.7's conversation id (not in the reference's Message): the thread id, as the "
        "inbox's `conversation_id`.",
    )
    email_id: str | None = Field(default=None, description="The Sent copy (eml_...), as the inbox lists it.")
    source_rfc_message_id: str | None = Field(description="The Message-ID header the message was sent with.")
    delivered_rfc_message_id: str | None = None
    client_reference: str | None
    metadata: dict[str, Scalar] = Field(description="The metadata sent with the message ({} when none was).")
    headers: list[MessageHeader]
    subject: str | None
    from_address: str | None
    to_addresses: list[MessageRecipient] | None
    cc_addresses: list[MessageRecipient] | None
    bcc_addresses: list[MessageRecipient] | None
    attachments: list[AttachmentMetadata] | None
    source: Literal["api", "dashboard", "newsletter", "inbound", "smtp", "assistant"]
    mode: Literal["live", "test"] = "live"
    status: Literal[
        "scheduled", "queued", "sent", "delivered", "bounced", "complained", "failed", "suppressed", "cancelled"
    ]
    last_error: str | None = Field(
        default=None, description="Why the message is still queued (a temporary refusal being retried) or failed."
    )
    rule_disposition: None = None
    scheduled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MessageList(Wire):
    data: list[Message]
    pagination: Pagination


class ListMessagesQuery(PageQuery):
    mailbox_id: str | None = Field(default=None, max_length=64, description="Only this mailbox's messages.")
    client_reference: str | None = Field(default=None, min_length=1, max_length=255, description="Exact match.")

    @field_validator("mailbox_id", "client_reference")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return value or None
