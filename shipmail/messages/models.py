"""The ``messages`` table (every message a mailbox sent through the API: Shipmail's ``Message``)
and the ``outgoing`` table (the durable outgoing queue: every message that leaves, ours and the
mail server's own vacation replies and redirects, until it is delivered, relayed or failed)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class MessageStatus(StrEnum):
    """``messages.status`` (the reference's ``Message.status`` values used here; ``delivered``
    for a sandbox inbound message, the others for sends)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OutboundMessage(SQLModel, table=True):
    """One message sent by a mailbox through the API (``msg_...``), or injected into it by the
    sandbox (``source`` ``inbound``).

    ``rfc_message_id`` is the ``Message-ID`` header we generated (``<...@sender domain>``);
    ``email_id``/``thread_id`` are the JMAP ids of the copy in the sender's Sent folder. Address
    lists are JSON lists of ``{"address", "name"}``; ``bcc_addresses`` is kept here only (never
    in a header). ``status``: :class:`MessageStatus`; ``last_error`` tells why a message is still
    queued (a temporary refusal being retried) or failed.
    """

    __tablename__ = "messages"
    __table_args__ = (sa.Index("ux_messages_org_client_reference", "organization_id", "client_reference", unique=True),)

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(index=True, max_length=64)
    mailbox_id: str = Field(index=True, max_length=64)
    thread_id: str | None = Field(default=None, max_length=300)
    email_id: str | None = Field(default=None, max_length=300)
    rfc_message_id: str = Field(max_length=998, index=True)
    source_rfc_message_id: str | None = Field(default=None, max_length=998)
    client_reference: str | None = Field(default=None, max_length=255, index=True)
    meta: dict[str, Any] | None = Field(default=None, sa_column=sa.Column("metadata", sa.JSON(), nullable=True))
    headers: list[dict[str, str]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    subject: str | None = Field(default=None)
    from_address: str = Field(max_length=320)
    to_addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    cc_addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    bcc_addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_column=sa.Column(sa.JSON(), nullable=True))
    source: str = Field(default="api", max_length=16)
    status: str = Field(default=MessageStatus.QUEUED.value, max_length=16, index=True)
    last_error: str | None = Field(default=None, max_length=1000)
    scheduled_at: datetime | None = timestamp_field(nullable=True)
    #: What a scheduled message keeps until it is dispatched (:mod:`shipmail.messages.scheduled`):
    #: the JMAP identity it is submitted with, the message it answers (gets ``$answered``), its
    #: bodies and threading headers (``getScheduledMessage`` shows them; an update replaces them).
    identity_id: str | None = Field(default=None, max_length=300)
    reply_email_id: str | None = Field(default=None, max_length=300)
    body_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    body_html: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    in_reply_to: str | None = Field(default=None, max_length=998)
    references: list[str] | None = Field(default=None, sa_column=sa.Column(sa.JSON(), nullable=True))
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class StagedAttachmentRow(SQLModel, table=True):
    """Bytes staged for a later send (``sat_...``, Shipmail's ``StagedAttachment``): a blob
    uploaded into the mailbox's JMAP account (RFC 8620 section 6.1, ``blob_id``), usable by the
    API key ``key_id`` of the organisation for sends from that mailbox until ``expires_at``."""

    __tablename__ = "staged_attachments"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(max_length=64)
    mailbox_id: str = Field(index=True, max_length=64)
    key_id: str = Field(max_length=64)
    filename: str = Field(max_length=256)
    content_type: str = Field(max_length=256)
    size: int
    sha256: str = Field(max_length=64)
    blob_id: str = Field(max_length=300)
    expires_at: datetime = timestamp_field(index=True)
    created_at: datetime = timestamp_field()


class StagedAttachmentUploadRow(SQLModel, table=True):
    """A prepared one-time upload (``prepareStagedAttachmentUpload``): the SHA-256 of its URL
    token (the token itself is never stored) and what the upload must be."""

    __tablename__ = "staged_attachment_uploads"

    token_hash: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(max_length=64)
    mailbox_id: str = Field(max_length=64)
    key_id: str = Field(max_length=64)
    filename: str = Field(max_length=256)
    content_type: str = Field(max_length=256)
    size: int
    sha256: str = Field(max_length=64)
    expires_at: datetime = timestamp_field(index=True)


class OutgoingStatus(StrEnum):
    """``outgoing.status``."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class Outgoing(SQLModel, table=True):
    """One message on its way out, with its envelope (what the mail server's ``sendmail`` left
    in its spool, :meth:`shipmail.mailserver.base.MailServer.sent_mail_spool`).

    ``spool_name`` (unique) is the spool file it came from: a file is taken once even when two
    workers see it. ``pending`` are the recipients not yet done, ``delivered`` the ones that got
    it; ``refused`` maps each recipient refused for good to the server's reply. ``message_id``
    links our own sends (``msg_...``; None for the mail server's vacation replies and
    redirects). ``data`` is the message as submitted; what leaves is
    ``outbound._finalize(data, from_domain)``.
    """

    __tablename__ = "outgoing"

    id: int | None = Field(default=None, primary_key=True)
    spool_name: str = Field(max_length=255, unique=True)
    message_id: str | None = Field(default=None, max_length=64, index=True)
    sender: str = Field(max_length=998)
    from_domain: str = Field(max_length=255)
    pending: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    refused: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=False))
    delivered: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary(), nullable=False))
    status: str = Field(default=OutgoingStatus.QUEUED.value, max_length=16, index=True)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
