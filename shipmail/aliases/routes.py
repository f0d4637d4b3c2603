"""Aliases: ``/v1/mailboxes/{id}/aliases`` (create, list, delete). Wire models:
:mod:`shipmail.aliases.schemas`; rules: :mod:`shipmail.aliases.service`."""

from __future__ import annotations

from shipmail.aliases import service
from shipmail.aliases.schemas import CreateAliasRequest, MailboxAlias, MailboxAliasList
from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation

operations: list[Operation] = []


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/aliases",
    operation_id="createMailboxAlias",
    summary="Add an alias to a mailbox",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    body=CreateAliasRequest,
    response=MailboxAlias,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def create_alias(ctx: Context[CreateAliasRequest, None]) -> MailboxAlias:
    """Add `local_part@<the mailbox's domain>` as an alias: mail to it is delivered into the
    mailbox by the inbound gateway. 409 when the address is a mailbox or another alias; 403
    `over_limit` beyond 100 aliases per mailbox."""
    row = await service.create(
        ctx.session, ctx.organization_id, ctx.path["id"], ctx.body.local_part, ctx.body.description
    )
    return MailboxAlias.of(row)


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/aliases",
    operation_id="listMailboxAliases",
    summary="List a mailbox's aliases",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=MailboxAliasList,
    errors=(401, 403, 404, 409, 429),
    tags=("Mailboxes",),
)
async def list_aliases(ctx: Context[None, None]) -> MailboxAliasList:
    """Every alias of the mailbox (at most 100), oldest first."""
    rows = await service.list_for(ctx.session, ctx.organization_id, ctx.path["id"])
    return MailboxAliasList(data=[MailboxAlias.of(r) for r in rows])


@operation(
    operations,
    "DELETE",
    "/mailboxes/{id}/aliases/{alias_id}",
    operation_id="deleteMailboxAlias",
    summary="Remove an alias",
    scope=Scope.MAILBOXES_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 429),
    tags=("Mailboxes",),
)
async def delete_alias(ctx: Context[None, None]) -> None:
    """Remove the alias; its address is free again (for a mailbox or another alias)."""
    await service.delete(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["alias_id"])
