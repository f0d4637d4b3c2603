"""Domains: Shipmail ``/v1/domains`` (create, list, get, update, delete, DNS records, verification;
search and register answer 501 ``not_supported``). Wire models: :mod:`shipmail.domains.schemas`;
rules: :mod:`shipmail.domains.service` and :mod:`shipmail.domains.verification`."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.domains import service as domains
from shipmail.domains.schemas import (
    CreateDomainRequest,
    Domain,
    DomainDnsRecordSet,
    DomainList,
    UpdateDomainRequest,
    VerificationResult,
)
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import PageQuery, Pagination

operations: list[Operation] = []

#: The only answer of the domain-buying operations: 501 with the error envelope.
_NOT_SUPPORTED = {
    "501": {
        "description": "Not supported by this server (error type not_supported): buying domains is not offered.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
}


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
    return Domain.of(await domains.create(ctx.session, ctx.services.settings, ctx.organization_id, ctx.body.name))


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
    "POST",
    "/domains/search",
    operation_id="searchDomains",
    summary="Search available domains (not supported)",
    scope=Scope.DOMAINS_READ,
    tier=Tier.READ,
    status_code=501,
    errors=(401, 403, 429),
    responses=_NOT_SUPPORTED,
    tags=("Domains",),
)
async def search_domains(ctx: Context[None, None]) -> None:
    """Buying domains is not offered by this server: always 501 ``not_supported`` (whatever the
    body). Register the domain elsewhere and add it with ``POST /domains``."""
    raise domains.NotSupported(
        "Searching for domains to buy is not supported by this server: register the domain with a "
        "registrar and add it with POST /v1/domains."
    )


@operation(
    operations,
    "POST",
    "/domains/register",
    operation_id="registerDomain",
    summary="Register a domain (not supported)",
    scope=Scope.DOMAINS_WRITE,
    tier=Tier.WRITE,
    status_code=501,
    errors=(401, 403, 429),
    responses=_NOT_SUPPORTED,
    tags=("Domains",),
)
async def register_domain(ctx: Context[None, None]) -> None:
    """Buying domains is not offered by this server: always 501 ``not_supported`` (whatever the
    body); nothing is charged or created."""
    raise domains.NotSupported(
        "Registering (buying) domains is not supported by this server: register the domain with a "
        "registrar and add it with POST /v1/domains."
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


@operation(
    operations,
    "PATCH",
    "/domains/{id}",
    operation_id="updateDomain",
    summary="Update a domain",
    scope=Scope.DOMAINS_WRITE,
    tier=Tier.WRITE,
    body=UpdateDomainRequest,
    response=Domain,
    errors=(401, 403, 404, 422, 429),
    tags=("Domains",),
)
async def update_domain(ctx: Context[UpdateDomainRequest, None]) -> Domain:
    """Set the catch-all mailbox (mail to the domain's unknown addresses goes there), or turn it
    off with null. 422 unless it is an active mailbox of this domain and organisation."""
    return Domain.of(
        await domains.update(ctx.session, ctx.organization_id, ctx.path["id"], ctx.body.catch_all_mailbox_id)
    )


@operation(
    operations,
    "GET",
    "/domains/{id}/dns-records",
    operation_id="getDomainDnsRecords",
    summary="Get domain DNS records",
    scope=Scope.DOMAINS_READ,
    tier=Tier.VERIFICATION,
    response=DomainDnsRecordSet,
    errors=(401, 403, 404, 429),
    tags=("Domains",),
)
async def get_domain_dns_records(ctx: Context[None, None]) -> DomainDnsRecordSet:
    """Every record the domain must publish (ownership TXT, MX, SPF, DKIM RSA and Ed25519, DMARC)
    with a live, read-only DNS check of each: ``status`` ``verified`` / ``not_found`` /
    ``mismatch`` (``found_values`` shows what DNS holds) / ``dns_unavailable`` (the resolver did
    not answer within ``SHIPMAIL_DNS_TIMEOUT``; ``dns_error`` says why). Does not change the
    domain's verification state. Rate tier ``verification``: per domain."""
    return await domains.dns_records(ctx.session, ctx.services.settings, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "POST",
    "/domains/{id}/verification",
    operation_id="verifyDomain",
    summary="Verify domain DNS records",
    scope=Scope.DOMAINS_WRITE,
    tier=Tier.VERIFICATION,
    response=VerificationResult,
    errors=(401, 403, 404, 429),
    tags=("Domains",),
)
async def verify_domain(ctx: Context[None, None]) -> VerificationResult:
    """Check the domain's DNS records now and persist the outcome: the domain becomes
    ``verified`` when the ownership TXT record and the MX record are found, ``degraded`` when a
    verified domain loses them; SPF, DKIM and DMARC are reported on their own. A resolver that
    does not answer leaves the status as it was (``outbound_error`` true, ``dns_error`` says
    why). Rate tier ``verification``: 1 per minute per domain by default."""
    return await domains.verify(ctx.session, ctx.services.settings, ctx.organization_id, ctx.path["id"])
