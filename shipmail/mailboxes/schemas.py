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
from shipmail.http.schemas import PageQuery, Pagination, Query, Request, Wire
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
#: Largest storage quota the API accepts: 1 PiB (Cyrus keeps the limit in KiB as a 64-bit number).
STORAGE_QUOTA_MAX_BYTES = 1 << 50
#: Smallest: 1 KiB (Cyrus's unit; smaller limits are rounded up to it anyway).
STORAGE_QUOTA_MIN_BYTES = 1024


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
    status: Literal["paused", "active"] | None = Field(
        default=None,
        description="`paused` suspends the mailbox (as `POST /mailboxes/{id}/suspend`), `active` resumes it "
        "(as `POST /mailboxes/{id}/resume`); 409 while a deletion is scheduled (restore it first).",
    )
    storage_quota_bytes: int | None = Field(
        default=None,
        ge=STORAGE_QUOTA_MIN_BYTES,
        le=STORAGE_QUOTA_MAX_BYTES,
        description="Most bytes of mail the mailbox may hold (the mail server counts in KiB and rounds up), "
        "or null for no limit. Over it, inbound mail is refused temporarily (LMTP 452) until mail is deleted.",
    )


class BatchMailboxEntry(Request):
    """One mailbox of a batch create: ``createMailbox``'s fields less ``domain_id``."""

    address: str = Field(
        min_length=1, max_length=64, pattern=LOCAL_PART_PATTERN, description="Local part of the address."
    )
    password: str | None = Field(
        default=None,
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description="Initial password (the policy of createMailbox). Never returned.",
        json_schema_extra={"format": "password"},
    )
    generate_password: Literal[True] | None = Field(default=None, description="Generate a password, never shown.")
    display_name: DisplayName | None = Field(default=None, description="Display name for the mailbox.")

    @model_validator(mode="after")
    def _one_password_source(self) -> BatchMailboxEntry:
        if (self.password is None) == (self.generate_password is None):
            raise ValueError("send exactly one of password and generate_password")
        return self


#: Most mailboxes one batch create may hold.
BATCH_MAX = 100


class BatchCreateMailboxesRequest(Request):
    domain_id: str = Field(min_length=1, max_length=64, description="ID of the domain of every mailbox.")
    mailboxes: list[BatchMailboxEntry] = Field(
        min_length=1, max_length=BATCH_MAX, description=f"1-{BATCH_MAX} mailboxes, created all or none."
    )


class ResetMailboxPasswordRequest(Request):
    password: str = Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        description="New password: 8-128 characters with lower case, upper case and a digit; common ones refused.",
    )


#: ``status`` of a mailbox on the wire: ``deletion_scheduled`` wins over ``suspended``.
MailboxStatus = Literal["active", "suspended", "deletion_scheduled"]

#: List orders: by creation time or address, ascending or descending (ties broken by id).
MailboxOrder = Literal["created_at_asc", "created_at_desc", "address_asc", "address_desc"]


class MailboxListQuery(PageQuery):
    domain_id: str | None = Field(default=None, max_length=64, description="Only mailboxes of this domain.")
    status: MailboxStatus | None = Field(default=None, description="Only mailboxes in this status.")
    search: str | None = Field(
        default=None,
        min_length=1,
        max_length=320,
        description="Only mailboxes whose address or display name contains this text (case-insensitive).",
    )
    order_by: MailboxOrder = Field(default="created_at_asc", description="Order of the list.")
    include_total: bool = Field(default=False, description="Also count every mailbox of the filter (`total_count`).")
    include_usage: bool = Field(
        default=False, description="Ask the mail server for each mailbox's `storage_used_bytes` (null otherwise)."
    )


class GetMailboxQuery(Query):
    include_usage: bool = Field(
        default=False, description="Ask the mail server for `storage_used_bytes` (null otherwise)."
    )


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
    status: MailboxStatus = Field(
        description="`deletion_scheduled` (a deletion with a grace period is pending: logins refused, inbound "
        "mail refused with 550, mail kept until the date), `suspended`, or `active`."
    )
    deletion_scheduled_at: datetime | None = Field(
        default=None, description="When the scheduled deletion purges the mailbox; null when none is scheduled."
    )
    storage_quota_bytes: int | None = Field(
        default=None, description="Most bytes of mail the mailbox may hold; null for no limit."
    )
    storage_used_bytes: int | None = Field(
        default=None,
        description="Bytes of mail the mailbox holds, as the mail server counts them; measured only when "
        "getMailbox or listMailboxes is asked with `include_usage=true` (null otherwise, and when the mail "
        "server cannot answer).",
    )

    @classmethod
    def of(cls, row: MailboxRow, settings: Settings, storage_used_bytes: int | None = None) -> Mailbox:
        """The wire form of a ``mailboxes`` row; ``suspension_reasons`` is ``["manual"]`` while
        suspended (the only reason this service sets); send counters as of now, limits with the
        service's defaults (``settings``); ``storage_used_bytes`` as measured by the caller
        (:meth:`MailServer.storage_usage`), else null."""
        use = usage(row, settings, utc.now())
        status: Literal["active", "suspended", "deletion_scheduled"] = "active"
        if row.deletion_scheduled_at is not None:
            status = "deletion_scheduled"
        elif row.suspended_at is not None:
            status = "suspended"
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
            status=status,
            deletion_scheduled_at=row.deletion_scheduled_at,
            storage_quota_bytes=row.storage_quota_bytes,
            storage_used_bytes=storage_used_bytes,
        )


class MailboxList(Wire):
    data: list[Mailbox]
    pagination: Pagination
    total_count: int | None = Field(
        default=None, description="Mailboxes matching the filters, all pages (with `include_total=true`)."
    )


class DeleteMailboxQuery(Query):
    grace_days: int = Field(
        default=0,
        ge=0,
        le=30,
        description="0 (default): delete now. 1-30: schedule the deletion that many days ahead; until then "
        "the mailbox is `deletion_scheduled` and `POST /mailboxes/{id}/restore` brings it back.",
    )


class MailboxBatch(Wire):
    object: Literal["list"] = "list"
    data: list[Mailbox]
