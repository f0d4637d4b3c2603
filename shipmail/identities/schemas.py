"""Wire models of Shipmail's ``GET /v1/mailboxes/{id}/identities`` (``listMailboxIdentities``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shipmail.http.schemas import Wire


class MailboxIdentity(Wire):
    object: Literal["mailbox_identity"] = "mailbox_identity"
    id: str = Field(description="idn_ + the URL-safe base64 of the JMAP Identity id.")
    name: str = Field(description='Display name used when sending: the mailbox\'s display_name ("" if none).')
    email: str = Field(json_schema_extra={"format": "email"}, description="Sending address.")


class MailboxIdentities(Wire):
    object: Literal["mailbox_identities"] = "mailbox_identities"
    mailbox_id: str
    address: str = Field(json_schema_extra={"format": "email"})
    data: list[MailboxIdentity]
