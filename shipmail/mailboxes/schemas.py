"""Wire models of Shipmail's ``/v1/mailboxes`` (requests, the ``Mailbox`` object, its list).

Source: Shipmail ``createMailbox``, ``listMailboxes``, ``getMailbox``, ``updateMailbox``,
``resetMailboxPassword``, ``suspendMailbox``, ``resumeMailbox`` (and the settings operations, which
answer the same ``Mailbox``).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from shipmail import utc
from shipmail.config import Settings
from shipmail.http.schemas import PageQuery, Pagination, Request, Wire
from shipmail.mailboxes.models import Mailbox as MailboxRow
from shipmail.mailboxes.models import usage
from shipmail.settings.schemas import AutoReply

#: A local part the service accepts: letters, digits, ``.``, ``_`` and ``-``, starting and ending
#: with a letter or digit (the service also refuses ``..``).
LOCAL_PART_PATTERN = r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$"


#: Password length limits in characters (code points), Shipmail's documented 8-128: the same on
#: the wire, in the policy (:mod:`shipmail.mailboxes.passwords`) and at login (no limit there below
#: libsasl's 8 KiB request: 128 characters are at most 512 UTF-8 bytes).
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128

#: Longest display name, in characters, on create and on update alike. Shipmail's reference
#: documents 128 on ``createMailbox`` and 200 on ``updateMailbox``; one limit must hold both, and
#: 200 refuses nothing the reference accepts (the column holds 200).
DISPLAY_NAME_MAX_LENGTH = 200


def _no_control_characters(value: str) -> str:
    """The display name becomes the sending name of the mailbox's identity (a ``From`` header):
    control characters (Unicode ``Cc``: C0, DEL, C1, so CR and LF) and the line and paragraph
    separators U+2028/U+2029 are refused (``control_characters``)."""
    if any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value):
        raise PydanticCustomError("control_characters", "must not contain control characters or line breaks")
    return value


#: A mailbox's display name: at most :data:`DISPLAY_NAME_MAX_LENGTH` characters, no control
#: characters or line breaks. The one definition for ``createMailbox`` and ``updateMailbox``.
DisplayName = Annotated[str, Field(max_length=DISPLAY_NAME_MAX_LENGTH), AfterValidator(_no_control_characters)]


class CreateMailboxRequest(Request):
    domain_id: str = Field(min_length=1, max_length=64, description="ID of the domain for this mailbox.")
    address: str = Field(
        min_length=1,
        max_length=64,
        pattern=LOCAL_PART_PATTERN,
        description="Local part of the address (hello for hello@example.com). Names the mail server "
        "reserves (for Cyrus: anyone, anybody, anonymous) and addresses longer than it can log in with "
        "are refused (422 reserved_address).",
    )
    password: str | None = Field(
        default=None,
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description="Initial password: lower case, upper case and a digit; common passwords are refused. "
        "Never returned.",
        json_schema_extra={"format": "password"},
    )
    generate_password: Literal[True] | None = Field(
        default=None, description="Generate a strong password on the server and never return it."
    )
    display_name: DisplayName | None = Field(
        default=None,
        description=f"Display name for the mailbox (at most {DISPLAY_NAME_MAX_LENGTH} characters, "
        "no control characters or line breaks).",
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> CreateMailboxRequest:
        if (self.password is None) == (self.generate_password is None):
            raise ValueError("send exactly one of password and generate_password")
        return self


#: Largest per-mailbox send limit accepted.
SEND_LIMIT_MAX = 10_000_000


class UpdateMailboxRequest(Request):
    display_name: DisplayName | None = Field(
        default=None,
        description=f"Display name (at most {DISPLAY_NAME_MAX_LENGTH} characters, no control characters or "
        "line breaks), or null to clear.",
    )
    daily_send_limit: int | None = Field(
        default=None,
        ge=0,
        le=SEND_LIMIT_MAX,
        description="Messages the mailbox may send per UTC day; null: the service's default.",
    )
    monthly_send_limit: int | None = Field(
        default=None,
        ge=0,
        le=SEND_LIMIT_MAX,
        description="Messages the mailbox may send per UTC month; null: the service's default.",
    )


class ResetMailboxPasswordRequest(Request):
    password: str = Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
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
    daily_send_count: int = Field(ge=0, description="Messages sent through the API this UTC day.")
    daily_send_limit: int = Field(ge=0, description="Messages it may send per UTC day (429 beyond).")
    monthly_send_count: int = Field(ge=0, description="Messages sent through the API this UTC month.")
    monthly_send_limit: int = Field(ge=0, description="Messages it may send per UTC month (429 beyond).")
    received_this_month: int = Field(
        ge=0, description="Messages delivered to this mailbox in the current calendar month (UTC)."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: MailboxRow, settings: Settings) -> Mailbox:
        """The wire form of a ``mailboxes`` row; ``suspension_reasons`` is ``["manual"]`` while
        suspended (the only reason this service sets); send counters as of now, limits with the
        service's defaults (``settings``)."""
        use = usage(row, settings, utc.now())
        return cls(
            id=row.id,
            domain_id=row.domain_id,
            address=row.address,
            display_name=row.display_name,
            suspended_at=row.suspended_at,
            suspension_reasons=["manual"] if row.suspended_at else [],
            spam_filter_threshold=row.spam_filter_threshold,
            auto_reply=row.auto_reply,
            daily_send_count=use.daily_count,
            daily_send_limit=use.daily_limit,
            monthly_send_count=use.monthly_count,
            monthly_send_limit=use.monthly_limit,
            received_this_month=row.received_count if row.received_month == utc.month_key(utc.now()) else 0,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class MailboxList(Wire):
    data: list[Mailbox]
    pagination: Pagination
