"""Wire models of Mailgun's legacy Mailboxes API (its documentation's shapes, field by field).

Source: Mailgun's "Mailboxes" API documentation (``GET/POST /<domain>/mailboxes``,
``PUT/DELETE /<domain>/mailboxes/<mailbox>``): list ``{"total_count", "items": [{"mailbox",
"created_at", "size_bytes"}]}`` with RFC 2822 dates (``Tue, 27 Sep 2011 20:24:22 GMT``), answers
``{"message": ...}`` (``"Created 1 mailboxes"``, ``"Password changed"``), delete
``{"message": "Mailbox has been deleted", "spec": "<address>"}``, errors ``{"message": ...}``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MailgunForm(BaseModel):
    """Base of request bodies (form fields or JSON): other fields are ignored, as Mailgun does."""

    model_config = ConfigDict(extra="ignore")


class CreateMailboxForm(MailgunForm):
    mailbox: str = Field(
        min_length=1,
        max_length=320,
        description="The name of the mailbox (`bob.bar`) or its address (`bob.bar@domain`).",
    )
    password: str = Field(min_length=1, max_length=1024, description="Mailbox password (stored as argon2id only).")


class PasswordForm(MailgunForm):
    password: str = Field(min_length=1, max_length=1024, description="New mailbox password.")


class ListQuery(MailgunForm):
    limit: int = Field(default=100, ge=1, le=1000, description="Maximum number of records to return (100 by default).")
    skip: int = Field(default=0, ge=0, le=10_000_000, description="Number of records to skip (0 by default).")


class MailgunMailbox(BaseModel):
    mailbox: str = Field(description="The address.")
    created_at: str = Field(description="RFC 2822 date in GMT: `Tue, 27 Sep 2011 20:24:22 GMT`.")
    size_bytes: int | None = Field(description="Bytes of mail stored, as the mail server counts them; null if unknown.")


class MailgunMailboxList(BaseModel):
    total_count: int
    items: list[MailgunMailbox]


class MailgunMessage(BaseModel):
    message: str


class MailgunDeleted(BaseModel):
    message: str
    spec: str = Field(description="The deleted address.")
