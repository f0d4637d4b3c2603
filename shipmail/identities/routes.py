"""Identities: Shipmail ``GET /v1/mailboxes/{id}/identities`` (JMAP Identity, RFC 8621 section 6).
Wire models: :mod:`shipmail.identities.schemas`."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.identities import service
from shipmail.identities.schemas import MailboxIdentities
from shipmail.mailboxes import service as mailboxes

operations: list[Operation] = []


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/identities",
    operation_id="listMailboxIdentities",
    summary="List mailbox identities",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=MailboxIdentities,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def list_identities(ctx: Context[None, None]) -> MailboxIdentities:
    """The JMAP sending identities of the mailbox (RFC 8621 section 6.1, Identity/get; one JMAP
    request). The mail server has one identity per mailbox, its address; the name is the mailbox's
    display name. 404 for an unknown mailbox or one of another organisation."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    found = await service.list_identities(ctx.services, row)
    return MailboxIdentities(mailbox_id=row.id, address=row.address, data=found)
