"""Identities: Shipmail ``GET /v1/mailboxes/{id}/identities`` (JMAP Identity, RFC 8621 section 6)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Wire
from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.mailboxes import service as mailboxes
from shipmail.identities import service as service

operations: list[Operation] = []


class MailboxIdentity(Wire):
    object: Literal["mailbox_identity"] = "mailbox_identity"
    id: str = Field(description="idn_ + the URL-safe base64 of the JMAP Identity id.")
    name: str = Field(description="Display name used when sending: the mailbox's display_name (\"\" if none).")
    email: str = Field(json_schema_extra={"format": "email"}, description="Sending address.")

    @classmethod
    def of(cls, ident: service.Identity) -> MailboxIdentity:
        return cls(id=ident.id, name=ident.name, email=ident.email)


class MailboxIdentities(Wire):
    object: Literal["mailbox_identities"] = "mailbox_identities"
    mailbox_id: str
    address: str = Field(json_schema_extra={"format": "email"})
    data: list[MailboxIdentity]


@operation(
    operations, "GET", "/mailboxes/{id}/identities", operation_id="listMailboxIdentities",
    summary="List mailbox identities", scope=Scope.MAILBOXES_READ, tier=Tier.READ, response=MailboxIdentities,
    errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def list_identities(ctx: Context[None, None]) -> MailboxIdentities:
    """The JMAP sending identities of the mailbox (RFC 8621 section 6.1, Identity/get; one JMAP
    request). The mail server has one identity per mailbox, its address; the name is the mailbox's
    display name. 404 for an unknown mailbox or one of another organisation."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    found = await service.list_identities(ctx.services, row)
    return MailboxIdentities(mailbox_id=row.id, address=row.address, data=[MailboxIdentity.of(i) for i in found])
