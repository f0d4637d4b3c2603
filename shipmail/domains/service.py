"""Domains: create (status ``pending``), list, get, delete (409 while mailboxes use it), verify.

Source: Shipmail ``POST/GET /v1/domains``, ``GET/DELETE /v1/domains/{id}``. Verification by DNS
does not exist yet: the operator marks a domain verified with ``shipmail domains verify NAME``
(:func:`mark_verified`, outside any request). The request functions work in the route's session.
"""

from __future__ import annotations

import re

import idna
import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.db import repository
from shipmail.db.engine import begin_write
from shipmail.domains.models import Domain
from shipmail.http.errors import Conflict, NotFound, ValidationFailed, detail
from shipmail.http.listing import cursor_page
from shipmail.ids import new_id
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain_name(name: str) -> str:
    """The ASCII (IDNA) lower-case form of ``name``; ValueError with the reason if invalid."""
    value = name.strip()
    if value.endswith("."):
        value = value[:-1]  # one trailing dot: the fully qualified form
    if not value:
        raise ValueError("must not be empty")
    try:
        # IDNA 2008 with UTS 46 mapping, non-transitional (what registries and browsers use).
        ascii_name = idna.encode(value, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValueError("is not a valid domain name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253:
        raise ValueError("must be at most 253 characters long")
    if len(labels) < 2:
        raise ValueError("must be a fully qualified domain name such as example.com")
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError("is not a valid domain name")
    return ascii_name


async def create(session: AsyncSession, organization_id: str, name: str) -> Domain:
    """A new ``pending`` domain, committed in ``session``. 422 for an invalid name (detail
    ``name``/``invalid_domain``), 409 when the name is already taken (by any organisation)."""
    try:
        normalized = normalize_domain_name(name)
    except ValueError as exc:
        raise ValidationFailed(
            f"Invalid domain name: {exc}.", details=[detail("name", "invalid_domain", str(exc))]
        ) from None
    existing = (await session.exec(select(Domain.id).where(col(Domain.name) == normalized))).first()
    if existing is not None:
        raise Conflict(f"The domain {normalized} is already registered.")
    now = utc.now()
    domain = Domain(
        id=new_id("dom"),
        organization_id=organization_id,
        name=normalized,
        status="pending",
        created_at=now,
        updated_at=now,
    )
    session.add(domain)
    try:
        await session.commit()
    except sa.exc.IntegrityError:
        raise Conflict(f"The domain {normalized} is already registered.") from None
    return domain


async def get(session: AsyncSession, organization_id: str, domain_id: str, *, for_update: bool = False) -> Domain:
    """The organisation's domain ``domain_id`` read in ``session``; 404 ``not_found`` for an
    unknown id or another organisation's. ``for_update`` reads it inside the write transaction
    (begun if it was not) and locks it until the transaction ends (SQLite ``BEGIN IMMEDIATE``,
    PostgreSQL ``FOR UPDATE``)."""
    domain = await repository.get_owned(session, Domain, organization_id, domain_id, for_update=for_update)
    if domain is None:
        raise NotFound(f"No domain with id {domain_id!r}.")
    return domain


async def get_by_name(session: AsyncSession, organization_id: str, name: str) -> Domain:
    """The organisation's domain called ``name`` (any case, IDNA or Unicode); 404 ``not_found``
    for an invalid or unknown name and another organisation's domain alike."""
    try:
        ascii_name = normalize_domain_name(name)
    except ValueError:
        raise NotFound(f"Domain not found: {name}") from None
    stmt = select(Domain).where(col(Domain.organization_id) == organization_id, col(Domain.name) == ascii_name)
    domain = (await session.exec(stmt)).first()
    if domain is None:
        raise NotFound(f"Domain not found: {ascii_name}")
    return domain


async def list_page(
    svc: Services, session: AsyncSession, organization_id: str, cursor: str | None, limit: int
) -> tuple[list[Domain], str | None, bool]:
    """A page of the organisation's domains in creation order: ``(rows, next_cursor, has_more)``;
    422 for a cursor of another list."""
    return await cursor_page(
        session,
        svc.cursors,
        Domain,
        kind="domains",
        binding={"o": organization_id},
        where=[col(Domain.organization_id) == organization_id],
        cursor=cursor,
        limit=limit,
    )


async def delete(session: AsyncSession, organization_id: str, domain_id: str) -> None:
    """Delete the domain (the row locked, then committed in ``session``); 404 as :func:`get`, 409
    while it still has mailboxes (delete those first). The mailboxes are counted inside the write
    transaction, so a mailbox being created on the domain either counts or is refused (422)."""
    domain = await get(session, organization_id, domain_id, for_update=True)
    count = (
        await session.exec(select(func.count()).select_from(Mailbox).where(col(Mailbox.domain_id) == domain.id))
    ).one()
    if count:
        raise Conflict(f"The domain {domain.name} still has {count} mailbox(es): delete them first.")
    await session.delete(domain)
    await session.commit()


async def mark_verified(session: AsyncSession, name: str) -> Domain | None:
    """Operator override: mark the domain ``name`` verified (None when there is no such domain);
    read and changed in one write transaction."""
    await begin_write(session)
    domain = (await session.exec(select(Domain).where(col(Domain.name) == normalize_domain_name(name)))).first()
    if domain is None:
        return None
    now = utc.now()
    domain.status = "verified"
    domain.verified_at = domain.verified_at or now
    domain.updated_at = now
    session.add(domain)
    await session.commit()
    return domain
