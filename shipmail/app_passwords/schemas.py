"""Wire models of Shipmail's ``/v1/mailboxes/{id}/app-passwords``.

Source: Shipmail ``listMailboxAppPasswords``, ``createMailboxAppPassword``,
``revokeMailboxAppPassword`` (``MailboxAppPassword``, ``CreatedMailboxAppPassword``,
``CreateMailboxAppPasswordRequest``).
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from shipmail import utc
from shipmail.app_passwords.models import AppPassword as AppPasswordRow
from shipmail.http.schemas import Request, Wire

#: At most this many active (not revoked, not expired) app passwords per mailbox.
MAX_ACTIVE = 5
#: Expiry when the request gives none, and the latest allowed, in days from creation.
DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 365
NAME_MAX_LENGTH = 100


def _label(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    if any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value):
        raise PydanticCustomError("control_characters", "must not contain control characters or line breaks")
    return value


Label = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH), AfterValidator(_label)]


class CreateMailboxAppPasswordRequest(Request):
    name: Label = Field(description="A label for the client that uses it (1-100 characters).")
    expires_at: datetime | None = Field(
        default=None,
        description=f"When it stops working (ISO 8601 with a time zone). Default: {DEFAULT_EXPIRY_DAYS} days "
        f"from now; at most {MAX_EXPIRY_DAYS} days from now; must be in the future.",
    )
    allowed_cidrs: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Not supported: the mail server does not tell the login checker the client's "
        "address, so a non-empty list is refused (422 unsupported) rather than silently ignored.",
    )


class MailboxAppPassword(Wire):
    """An app password's metadata (never its secret)."""

    object: Literal["mailbox_app_password"] = "mailbox_app_password"
    id: str = Field(pattern=r"^appwd_[0-9a-z]+$")
    mailbox_id: str
    name: str
    state: Literal["pending_create", "active", "pending_revoke", "revoked", "failed"] = Field(
        description="active or revoked (an expired one stays active with expires_at in the past: logins "
        "are refused from expires_at on)."
    )
    purpose: Literal["operator_client", "partner_embedded_webmail"] = "operator_client"
    expires_at: datetime | None
    allowed_cidrs: list[str] = Field(default_factory=list)
    last_used_at: datetime | None = Field(description="Last successful login with it, to the minute.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: AppPasswordRow) -> MailboxAppPassword:
        return cls(
            id=row.id,
            mailbox_id=row.mailbox_id,
            name=row.name,
            state="revoked" if row.revoked_at is not None else "active",
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )

    def usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > utc.now())


class CreatedMailboxAppPassword(MailboxAppPassword):
    secret: str = Field(
        description="The password for the mail client, shown this once: it is stored only as "
        "an argon2id hash and never returned again."
    )


class MailboxAppPasswordList(Wire):
    object: Literal["list"] = "list"
    data: list[MailboxAppPassword]
