"""Wire models of the reply drafts (Shipmail's ``CreateInboxReplyDraftRequest``,
``InboxReplyDraft``, ``InboxReplyDraftSend``), with Shipmail SDK 0.6.7's names of the same
things (``expected_version``, ``conversation_id``, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from shipmail.http.schemas import Request, Wire
from shipmail.messages.schemas import Message

DraftStatusName = Literal["draft", "sending", "sent", "invalidated", "failed"]


class CreateInboxReplyDraftRequest(Request):
    """A reply draft: ``text`` and/or ``html``, the ``reply_mode`` and the thread's
    ``reply_version`` it answers (``expected_reply_version``, or SDK 0.6.7's
    ``expected_version``: one of them)."""

    text: str | None = Field(default=None, max_length=256000, description="Plain text body.")
    html: str | None = Field(default=None, max_length=512000, description="HTML body.")
    reply_mode: Literal["reply", "reply_all"] = Field(
        default="reply",
        description="reply: To = the latest inbound message's Reply-To (else From); reply_all: also Cc = its other "
        "To and Cc recipients, the mailbox's own addresses left out.",
    )
    expected_reply_version: int | None = Field(
        default=None, ge=1, description="The thread's reply_version the draft answers (409 when stale)."
    )
    expected_version: int | None = Field(default=None, ge=1, description="SDK 0.6.7's expected_reply_version.")

    @model_validator(mode="after")
    def _checks(self) -> CreateInboxReplyDraftRequest:
        if self.text is None and self.html is None:
            raise ValueError("send at least one of text and html")
        if (self.expected_reply_version is None) == (self.expected_version is None):
            raise ValueError("send expected_reply_version (or SDK 0.6.7's expected_version), exactly one")
        return self

    @property
    def expected(self) -> int:
        version = self.expected_reply_version if self.expected_reply_version is not None else self.expected_version
        assert version is not None
        return version


class DraftRecipient(Wire):
    address: str = Field(json_schema_extra={"format": "email"})
    name: str | None


class InboxReplyDraft(Wire):
    """A reply draft bound to the thread's ``reply_version``."""

    object: Literal["inbox_reply_draft"] = "inbox_reply_draft"
    id: str = Field(description="drf_...")
    mailbox_id: str
    thread_id: str = Field(description="thr_...")
    conversation_id: str = Field(description="SDK 0.6.7's name of thread_id.")
    based_on_message_id: str | None = Field(description="The inbound message answered (eml_...).")
    expected_reply_version: int
    expected_version: int = Field(description="SDK 0.6.7's name of expected_reply_version.")
    reply_mode: Literal["reply", "reply_all"]
    status: DraftStatusName = Field(
        description="draft; sending; sent; invalidated (the thread moved on before it was sent: it is never sent)."
    )
    to: list[DraftRecipient]
    cc: list[DraftRecipient]
    subject: str | None
    text: str | None
    html: str | None
    content_sha256: str | None = Field(description="SHA-256 (hex) of the subject, text and HTML (canonical JSON).")
    draft_message_id: str | None = Field(description="The draft in the mailbox's Drafts folder (eml_...), if any.")
    sent_message_id: str | None = Field(description="The Message sent from it (msg_...).")
    removed_formatting: list[str] = Field(
        default_factory=list, description="Always empty: the HTML is stored as given."
    )
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class InboxReplyDraftSend(Wire):
    object: Literal["inbox_reply_draft_send"] = "inbox_reply_draft_send"
    draft_id: str
    status: Literal["sent"] = "sent"
    message: Message


class UpdateInboxReplyDraftRequest(Request):
    """Shipmail SDK 0.6.7's draft update: the new body replaces the old one (at least one of
    text and html)."""

    text: str | None = Field(default=None, max_length=256000, description="Plain text body.")
    html: str | None = Field(default=None, max_length=512000, description="HTML body.")

    @model_validator(mode="after")
    def _a_body(self) -> UpdateInboxReplyDraftRequest:
        if self.text is None and self.html is None:
            raise ValueError("send at least one of text and html")
        return self


class InboxReplyDraftList(Wire):
    object: Literal["list"] = "list"
    data: list[InboxReplyDraft] = Field(description="The thread's reply drafts, oldest first.")
