"""Wire models of Shipmail's ``/v1/mailboxes`` (requests, the ``Mailbox`` object, its list).

Source: Shipmail ``createMailbox``, ``listMailboxes``, ``getMailbox``, ``updateMailbox``,
``resetMailboxPassword``, ``suspendMailbox``, ``resumeMailbox`` (and the settings operations, which
answer the same ``Mailbox``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from shipmail.http.schemas import PageQuery, Pagination, Request, Wire
from shipmail.mailboxes.models import Mailbox as MailboxRow
from shipmail.settings.schemas import AutoReply

#: A local part the service accepts: letters, digits, ``.``, ``_`` and ``-``, starting and ending
#: with a letter or digit (the service also refuses ``..``).
LOCAL_PART_PATTERN = r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$"


class CreateMailboxRequest(Request):
    domain_id: str = Field(min_length=1, max_length=64, description="ID of the domain for this mailbox.")
    address: str = Field(
        min_length=1,
        max_length=64,
        pattern=LOCAL_PART_PATTERN,
        description="Local part of the address (hello for hello@example.com).",
    )
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=128,
        description="Initial password: lower case, upper case and a digit; common passwords are refused. "
        "Never returned.",
        json_schema_extra={"format": "password"},
    )
    generate_password: Literal[True] | None = Field(
        default=None, description="Generate a strong password on the server and never return it."
    )
    display_name: str | None = Field(default=None, max_length=128, description="Display name for the mailbox.")

    @model_validator(mode="after")
    def _one_password_source(self) -> CreateMailboxRequest:
        if (self.password is None) == (self.generate_password is None):
            raise ValueError("send exactly one of password and generate_password")
        return self


class UpdateMailboxRequest(Request):
    display_name: str | None = Field(default=None, max_length=200, description="Display name, or null to clear.")


class ResetMailboxPasswordRequest(Request):
    password: str = Field(
        min_length=8,
        max_length=128,
        description="New password: 8-128 characters with lower case, upper case and a digit; common ones refused.",
    )


class MailboxListQuery(PageQuery):
    domain_id: str | None = Field(default=None, max_length=64, description="Only mailboxes of this domain.")


class Mailbox(Wire):
    object: Literal["mailbox"] = "mailbox"
    id: str
    domain_id: str
    address: str
    display_name: str | None
    suspended_at: datetime | None
    suspension_reasons: list[Literal["billing", "manual", "security"]]
    spam_filter_threshold: int = Field(ge=1, le=14)
    auto_reply: AutoReply
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: MailboxRow) -> Mailbox:
        """The wire form of a ``mailboxes`` row; ``suspension_reasons`` is ``["manual"]`` while
        suspended (the only reason this service sets)."""
        return cls(
            id=row.id,
            domain_id=row.domain_id,
            address=row.address,
            display_name=row.display_name,
            suspended_at=row.suspended_at,
            suspension_reasons=["manual"] if row.suspended_at else [],
            spam_filter_threshold=row.spam_filter_threshold,
            auto_reply=row.auto_reply,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class MailboxList(Wire):
    data: list[Mailbox]
    pagination: Pagination
