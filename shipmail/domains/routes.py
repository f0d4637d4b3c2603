"""Domains: Shipmail ``/v1/domains`` (create, list, get, delete). Wire models:
:mod:`shipmail.domains.schemas`; rules: :mod:`shipmail.domains.service`."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.domains import service as domains
from shipmail.domains.schemas import CreateDomainRequest, Domain, DomainList
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import PageQuery, Pagination

operations: list[Operation] = []


@operation(
    operations,
    "POST",
    "/domains",
    operation_id="createDomain",
    summary="Create a domain",
    scope=Scope.DOMAINS_WRITE,
    tier=Tier.WRITE,
    body=CreateDomainRequest,
    response=Domain,
    status_code=201,
    errors=(401, 403, 409, 422, 429),
    tags=("Domains",),
)
async def create_domain(ctx: Context[CreateDomainRequest, None]) -> Domain:
    """Add a domain; it starts ``pending`` until verified. 409 when the name is already registered."""
    return Domain.of(await domains.create(ctx.session, ctx.organization_id, ctx.body.name))


@operation(
    operations,
    "GET",
    "/domains",
    operation_id="listDomains",
    summary="List domains",
    scope=Scope.DOMAINS_READ,
    tier=Tier.READ,
    query=PageQuery,
    response=DomainList,
    errors=(401, 403, 422, 429),
    tags=("Domains",),
)
async def list_domains(ctx: Context[None, PageQuery]) -> DomainList:
    """The organisation's domains in creation order, with cursor pagination."""
    rows, next_cursor, has_more = await domains.list_page(
        ctx.services, ctx.session, ctx.organization_id, ctx.query.cursor, ctx.query.limit
    )
    return DomainList(
        data=[Domain.of(r) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=ctx.query.limit),
    )


@operation(
    operations,
    "GET",
    "/domains/{id}",
    operation_id="getDomain",
    summary="Get a domain",
    scope=Scope.DOMAINS_READ,
    tier=Tier.READ,
    response=Domain,
    errors=(401, 403, 404, 429),
    tags=("Domains",),
)
async def get_domain(ctx: Context[None, None]) -> Domain:
    """One domain of the organisation; 404 for unknown ids and other organisations' ids alike."""
    return Domain.of(await domains.get(ctx.session, ctx.organization_id, ctx.path["id"]))


@operation(
    operations,
    "DELETE",
    "/domains/{id}",
    operation_id="deleteDomain",
    summary="Delete a domain",
    scope=Scope.DOMAINS_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 429),
    tags=("Domains",),
)
async def delete_domain(ctx: Context[None, None]) -> None:
    """Delete a domain; 409 while it still has mailboxes."""
    await domains.delete(ctx.session, ctx.organization_id, ctx.path["id"])
