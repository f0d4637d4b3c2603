"""Wire models of ``/v1/mailboxes/{id}/aliases``: other addresses on the mailbox's domain whose
mail is delivered into the mailbox.

Source: Scaleway's mailbox aliases (``local_part`` on the mailbox's domain, an optional
``description``), on Shipmail's conventions (prefixed id ``mal_``, ``object``, ``data`` list).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shipmail.aliases.models import MailboxAlias as MailboxAliasRow
from shipmail.http.schemas import Request, Wire
from shipmail.mailboxes.schemas import LOCAL_PART_PATTERN, DisplayName

#: Most aliases one mailbox may have.
ALIASES_PER_MAILBOX = 100


class CreateAliasRequest(Request):
    local_part: str = Field(
        min_length=1,
        max_length=64,
        pattern=LOCAL_PART_PATTERN,
        description="Local part of the alias on the mailbox's domain (sales for sales@example.com).",
    )
    description: DisplayName | None = Field(default=None, description="A note for people (at most 200 characters).")


class MailboxAlias(Wire):
    object: Literal["mailbox_alias"] = "mailbox_alias"
    id: str
    mailbox_id: str
    address: str
    local_part: str
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: MailboxAliasRow) -> MailboxAlias:
        return cls(
            id=row.id,
            mailbox_id=row.mailbox_id,
            address=row.address,
            local_part=row.local_part,
            description=row.description,
            created_at=row.created_at,
        )


class MailboxAliasList(Wire):
    object: Literal["list"] = "list"
    data: list[MailboxAlias]
