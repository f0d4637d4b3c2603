"""Wire models of Shipmail's ``/v1/mailboxes/{id}/forwarding``.

Source: Shipmail ``listMailboxForwarding``, ``createMailboxForwarding``, ``deleteMailboxForwarding``
(``MailboxForwarding``, ``MailboxForwardingList``, ``CreateMailboxForwardingRequest``), and our
own public confirmation endpoint (not in the reference: the reference says only that the
destination confirms through a link).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from shipmail.forwarding.models import MailboxForwarding as ForwardingRow
from shipmail.http.schemas import Request, Wire

#: At most this many destinations (pending and active) per mailbox (the reference's ``maxItems``).
MAX_DESTINATIONS = 3

#: A plain ``local@domain`` address: a dot-atom local part (RFC 5322 section 3.4.1, ASCII, no
#: quoted strings) and a domain of LDH labels with a dot; no display name, no comments, no
#: address literals. What the mail server's ``redirect`` and an SMTP ``RCPT TO`` take as they are.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)


def _address(value: str) -> str:
    local, _, _domain = value.rpartition("@")
    if len(local) > 64 or not _ADDRESS.match(value):
        raise PydanticCustomError("email", "must be a plain address local@domain.example")
    return value.lower()


Destination = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_address)]


class CreateMailboxForwardingRequest(Request):
    destination: Destination = Field(
        description="The address to forward to (plain local@domain, ASCII; stored lower-cased). It gets a "
        "confirmation link and receives nothing else until someone follows it.",
        json_schema_extra={"format": "email"},
    )


class MailboxForwarding(Wire):
    """One forwarding destination of a mailbox."""

    object: Literal["mailbox_forwarding"] = "mailbox_forwarding"
    id: str = Field(pattern=r"^fwd_[0-9a-z]{24}$")
    mailbox_id: str
    destination: str = Field(json_schema_extra={"format": "email"})
    status: Literal["pending", "active"]
    verification_sent_at: datetime | None
    verified_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: ForwardingRow) -> MailboxForwarding:
        return cls(
            id=row.id,
            mailbox_id=row.mailbox_id,
            destination=row.destination,
            status="active" if row.status == "active" else "pending",
            verification_sent_at=row.verification_sent_at,
            verified_at=row.verified_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class MailboxForwardingList(Wire):
    object: Literal["mailbox_forwarding_list"] = "mailbox_forwarding_list"
    mailbox_id: str
    data: list[MailboxForwarding] = Field(max_length=MAX_DESTINATIONS)


class ForwardingConfirmation(Wire):
    """The answer of the public confirmation endpoint."""

    object: Literal["mailbox_forwarding_confirmation"] = "mailbox_forwarding_confirmation"
    destination: str
    status: Literal["active"] = "active"
