"""Wire models of ``/v1/messages`` and the reply operations (Shipmail's ``SendMessageRequest``,
``ReplyToThreadRequest``, ``Message`` and its list).

Source: Shipmail ``sendMessage``, ``listMessages``, ``getMessage``, ``replyToMessage``,
``replyToMailboxInboxMessage``, ``replyToMailboxInboxThread``. Recipients and outbound headers
are the sandbox's (:mod:`shipmail.sandbox.schemas`: the same reference types).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from shipmail.http.schemas import PageQuery, Pagination, Query, Request, Wire
from shipmail.sandbox.schemas import OutboundHeader, Recipient

#: Most recipients of one message (to + cc + bcc).
MAX_RECIPIENTS = 50
#: Most attachments of one message, and the largest decoded size of one and of all together.
MAX_ATTACHMENTS = 20
MAX_ATTACHMENT_BYTES = 3 * 1024 * 1024
#: Base64 of :data:`MAX_ATTACHMENT_BYTES` (what the JSON may carry per attachment).
MAX_ATTACHMENT_BASE64 = (MAX_ATTACHMENT_BYTES + 2) // 3 * 4

#: Largest staged attachment (``StagedAttachment.size``), and of all attachments of one message.
MAX_STAGED_BYTES = 26214400
#: Largest ``metadata`` as compact JSON (the reference's MessageMetadata: "8 KB of JSON").
MAX_METADATA_BYTES = 8192
#: Staged attachment ids (``sat_...``).
STAGED_ID = r"^sat_[0-9a-z]+$"

_SOURCE_MSG_ID = r"^<[^<>\s@]+@[^<>\s@]+>$"
_MSG_ID = r"^<[^<>\r\n]+>$"

Scalar = str | int | float | bool | None


def _unique_staged_ids(cls: type, value: list[str] | None) -> list[str] | None:
    """``staged_attachment_ids`` without repeats (the validator of every request that takes them)."""
    if value is not None and len(set(value)) != len(value):
        raise ValueError("staged_attachment_ids must be unique")
    return value


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
        default=None, max_length=20, description="Up to 20 scalar values and 8 KB of JSON, kept with the message."
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
    scheduled_at: datetime | None = Field(
        default=None,
        description="UTC ISO 8601 time to send later (at most 365 days ahead); past or near-immediate times "
        "(within 1 s) are sent immediately.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Scalar] | None) -> dict[str, Scalar] | None:
        if value is not None:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            if size > MAX_METADATA_BYTES:
                raise ValueError(f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON ({size} given)")
        return value


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
    staged_attachment_ids: list[Annotated[str, Field(max_length=64, pattern=STAGED_ID)]] | None = Field(
        default=None,
        max_length=MAX_ATTACHMENTS,
        json_schema_extra={"uniqueItems": True},
        description="IDs returned by stageMailboxAttachment (sat_...): of this API key, organisation and sending "
        "mailbox, not expired. At most 20 attachments in all (base64 and staged), 25 MB together.",
    )

    _unique_staged = field_validator("staged_attachment_ids")(_unique_staged_ids)


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


# ------------------------------------------------------------------------- staged attachments


class StageAttachmentQuery(Query):
    filename: str = Field(min_length=1, max_length=256, description="File name of the attachment (any Unicode).")


class StagedAttachment(Wire):
    """Bytes staged for a send (Shipmail's ``StagedAttachment``)."""

    object: Literal["staged_attachment"] = "staged_attachment"
    id: str = Field(pattern=STAGED_ID)
    mailbox_id: str
    filename: str
    content_type: str
    size: int = Field(ge=1, le=MAX_STAGED_BYTES, description="Bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the bytes (hex).")
    expires_at: datetime


class PrepareStagedAttachmentUploadRequest(Request):
    filename: str = Field(min_length=1, max_length=256)
    content_type: str = Field(min_length=1, max_length=256, description="MIME type (type/subtype).")
    size: int = Field(ge=1, le=MAX_STAGED_BYTES, description="Exact byte size of the upload.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the exact bytes (lower-case hex).")


class StagedAttachmentUpload(Wire):
    """A one-time upload URL (Shipmail's ``StagedAttachmentUpload``)."""

    object: Literal["staged_attachment_upload"] = "staged_attachment_upload"
    mailbox_id: str
    filename: str
    content_type: str
    size: int = Field(ge=1, le=MAX_STAGED_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    upload_url: str = Field(description="Absolute URL: POST the exact bytes to it once, without an API key.")
    expires_at: datetime


# ------------------------------------------------------------------------- scheduled messages


class ScheduledAttachment(Wire):
    blob_id: str
    filename: str
    content_type: str
    size: int


class ScheduledMessage(Wire):
    """A message waiting for its ``scheduled_at`` (Shipmail's ``ScheduledMessage``)."""

    object: Literal["scheduled_message"] = "scheduled_message"
    id: str = Field(description="The message (msg_...) used by the scheduled-message endpoints.")
    scheduled_message_id: str = Field(description="The same id (one row per scheduled message here).")
    kind: Literal["scheduled", "undo"] = "scheduled"
    mailbox_id: str
    mailbox_address: str
    from_address: str
    identity_id: str
    mode: Literal["live", "test"] = "live"
    subject: str
    to: list[MessageRecipient]
    cc: list[MessageRecipient]
    bcc: list[MessageRecipient]
    attachments: list[AttachmentMetadata]
    scheduled_at: datetime
    created_at: datetime
    updated_at: datetime
    last_error: str | None
    draft_email_id: str | None = Field(default=None, description="The draft in the mailbox's Drafts (eml_...).")
    from_name: str | None = None
    text: str | None = None
    html: str | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    uploaded_attachments: list[ScheduledAttachment] = Field(default_factory=list)


class ScheduledMessageList(Wire):
    object: Literal["scheduled_message_list"] = "scheduled_message_list"
    data: list[ScheduledMessage]
    total: int = Field(ge=0)


class ListScheduledMessagesQuery(Query):
    include_held: bool = Field(default=False, description="Undo holds are never made here: no effect.")
    search: str | None = Field(default=None, max_length=200, description="Substring of the subject or a recipient.")
    limit: int = Field(default=100, ge=1, le=200)


class UpdateScheduledMessageRequest(Request):
    """Replace recipients, content, staged attachments and the time of a scheduled message."""

    to: list[Recipient] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[Recipient] | None = Field(default=None, max_length=MAX_RECIPIENTS)
    bcc: list[Recipient] | None = Field(default=None, max_length=MAX_RECIPIENTS)
    subject: str = Field(max_length=998)
    html: str | None = Field(default=None, max_length=524288, description="Kept when neither html nor text is given.")
    text: str | None = Field(default=None, max_length=262144)
    in_reply_to: str | None = Field(default=None, max_length=998, pattern=_MSG_ID)
    references: list[Annotated[str, Field(max_length=998, pattern=_MSG_ID)]] | None = Field(default=None, max_length=50)
    staged_attachment_ids: list[Annotated[str, Field(max_length=64, pattern=STAGED_ID)]] | None = Field(
        default=None,
        max_length=MAX_ATTACHMENTS,
        json_schema_extra={"uniqueItems": True},
        description="The attachments from now on (absent: the current ones are kept; [] removes them).",
    )
    scheduled_at: datetime = Field(description="New send time (UTC ISO 8601, at most 365 days ahead).")

    _unique_staged = field_validator("staged_attachment_ids")(_unique_staged_ids)
