"""Domains: create (status ``pending``, with its ownership token and DKIM keys), list, get, update
(catch-all), delete (409 while mailboxes use it), the live DNS check and verification, the
background re-check, the catch-all resolver.

Source: Shipmail ``POST/GET/PATCH/DELETE /v1/domains[/{id}]``, ``GET /v1/domains/{id}/dns-records``,
``POST /v1/domains/{id}/verification``. The DNS logic is :mod:`shipmail.domains.verification`; the
operator can still mark a domain verified with ``shipmail domains verify NAME``
(:func:`mark_verified`, outside any request). The request functions work in the route's session.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from datetime import timedelta
from typing import Any, ClassVar

import idna
import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs, utc
from shipmail.config import Settings
from shipmail.db import repository
from shipmail.db.engine import begin_write
from shipmail.domains import dkim, verification
from shipmail.domains.models import Domain
from shipmail.domains.schemas import DomainDnsRecordSet, VerificationResult
from shipmail.events import service as events
from shipmail.http.errors import Conflict, NotFound, ShipmailError, ValidationFailed, detail
from shipmail.http.listing import cursor_page
from shipmail.ids import new_id
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.domains")

#: The periodic background re-check (:mod:`shipmail.domains.tasks`): its job kind and key.
RECHECK_KIND = "domains.recheck"
RECHECK_KEY = "domains.recheck"
#: Longest pause between two re-check runs, in seconds.
RECHECK_MAX_PERIOD = 60.0


def recheck_period(settings: Settings) -> float:
    """Seconds between two re-check runs: a minute, or the re-check interval when shorter."""
    return min(RECHECK_MAX_PERIOD, float(settings.domain_recheck_seconds))


async def ensure_recheck_scheduled(session: AsyncSession, settings: Settings) -> None:
    """Enqueue the periodic re-check in ``session`` (first run one period from now) unless it is
    queued or running already; the caller commits. Creating and verifying a domain call this, so
    a deployment with domains always has the job."""
    await jobs.enqueue(
        session, RECHECK_KIND, key=RECHECK_KEY, run_at=utc.now() + timedelta(seconds=recheck_period(settings))
    )


class NotSupported(ShipmailError):
    """501 ``not_supported``: an operation of Shipmail's API this server does not offer (buying
    domains). The SDK raises it as a ``ShipmailError`` with ``status == 501`` and
    ``type == "not_supported"``; it does not retry a POST without an idempotency key."""

    status_code: ClassVar[int] = 501
    error_type: ClassVar[str] = "not_supported"


async def _emit(session: AsyncSession, event_type: str, domain: Domain, data: dict[str, Any] | None = None) -> None:
    """Record the event ``event_type`` (``domain.verified`` / ``domain.verification_failed``)
    about ``domain`` in ``session``'s transaction, before its commit
    (:func:`shipmail.events.service.record`: the organisation's webhooks get it)."""
    await events.record(
        session,
        organization_id=domain.organization_id,
        mailbox_id=None,
        type=event_type,
        data={"domain_id": domain.id, "name": domain.name, "status": domain.status, **(data or {})},
    )


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


async def create(session: AsyncSession, settings: Settings, organization_id: str, name: str) -> Domain:
    """A new ``pending`` domain with its ownership token and DKIM keys (private keys encrypted
    with the service secret), committed in ``session`` with the periodic re-check scheduled. 422
    for an invalid name (detail ``name``/``invalid_domain``), 409 when the name is already taken
    (by any organisation)."""
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
        ownership_token=secrets.token_hex(16),
        created_at=now,
        updated_at=now,
    )
    # RSA key generation takes ~0.1-0.4 s of CPU: off the event loop.
    await asyncio.to_thread(dkim.ensure_keys, domain, settings.secret_key)
    session.add(domain)
    await ensure_recheck_scheduled(session, settings)
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
    read and changed in one write transaction; ``domain.verified`` is emitted when it was not."""
    await begin_write(session)
    domain = (await session.exec(select(Domain).where(col(Domain.name) == normalize_domain_name(name)))).first()
    if domain is None:
        return None
    now = utc.now()
    if domain.status != "verified":
        domain.status = "verified"
        domain.verified_by = "operator"
        domain.verified_at = now
        await _emit(session, "domain.verified", domain, {"verified_by": "operator"})
    domain.verified_at = domain.verified_at or now
    domain.updated_at = now
    session.add(domain)
    await session.commit()
    return domain


async def _with_keys(session: AsyncSession, domain: Domain, secret: bytes) -> Domain:
    """``domain`` with its DKIM keys (made and committed now for a domain older than them)."""
    if domain.dkim_private_key is not None and domain.dkim_ed25519_private_key is not None:
        return domain
    domain = await get(session, domain.organization_id, domain.id, for_update=True)
    if await asyncio.to_thread(dkim.ensure_keys, domain, secret):
        session.add(domain)
        await session.commit()
    return domain


async def dns_records(
    session: AsyncSession, settings: Settings, organization_id: str, domain_id: str
) -> DomainDnsRecordSet:
    """The records the domain must publish, each with what a live lookup found now. Changes no
    verification state (only makes the DKIM keys of a domain older than them). 404 as :func:`get`;
    a resolver that does not answer gives ``dns_unavailable`` records, never an error."""
    domain = await _with_keys(session, await get(session, organization_id, domain_id), settings.secret_key)
    result = await verification.check(domain, settings, utc.now)
    return result.record_set(domain)


async def verify(session: AsyncSession, settings: Settings, organization_id: str, domain_id: str) -> VerificationResult:
    """Check the domain's records now and persist the outcome (:func:`verification.apply`):
    ``pending``/``degraded`` -> ``verified`` when ownership and MX hold, ``verified`` ->
    ``degraded`` when they no longer do; a DNS outage changes nothing but ``last_check_error``.
    Emits ``domain.verified`` / ``domain.verification_failed``. 404 as :func:`get`."""
    domain = await _with_keys(session, await get(session, organization_id, domain_id), settings.secret_key)
    result = await verification.check(domain, settings, utc.now)  # no lock held while DNS answers
    domain = await get(session, organization_id, domain_id, for_update=True)
    event = verification.apply(domain, result, explicit=True)
    session.add(domain)
    if event is not None:
        await _emit(session, event, domain, {"records": {r.key: r.status for r in result.records}})
    await ensure_recheck_scheduled(session, settings)
    await session.commit()
    return result.verification(domain)


async def recheck_due(session: AsyncSession, settings: Settings, *, limit: int | None = None) -> int:
    """The background re-check: check the domains whose last check is older than
    ``settings.domain_recheck_seconds`` (never-checked first, then oldest), at most ``limit``
    (default ``settings.domain_recheck_batch``) of them, one after the other, persisting each
    outcome like :func:`verify` (``verified`` -> ``degraded`` when MX or ownership went away;
    no event for a pending domain that still fails). Returns how many were checked. Meant to run
    as a periodic job: the rate is bounded by ``limit`` per run and the interval per domain."""
    limit = limit or settings.domain_recheck_batch
    horizon = utc.now() - timedelta(seconds=settings.domain_recheck_seconds)
    rows = (
        await session.exec(
            select(Domain.id, Domain.organization_id)
            .where(sa.or_(col(Domain.last_checked_at).is_(None), col(Domain.last_checked_at) < horizon))
            .order_by(col(Domain.last_checked_at).asc().nulls_first(), col(Domain.id))
            .limit(limit)
        )
    ).all()
    await session.rollback()  # no transaction held across the lookups
    for domain_id, organization_id in rows:
        domain = await repository.get_owned(session, Domain, organization_id, domain_id)
        if domain is None:
            continue
        domain = await _with_keys(session, domain, settings.secret_key)
        result = await verification.check(domain, settings, utc.now)
        locked = await repository.get_owned(session, Domain, organization_id, domain_id, for_update=True)
        if locked is None:
            await session.rollback()
            continue
        event = verification.apply(locked, result, explicit=False)
        session.add(locked)
        if event is not None:
            await _emit(session, event, locked, {"records": {r.key: r.status for r in result.records}})
        await session.commit()
    return len(rows)


async def update(
    session: AsyncSession, organization_id: str, domain_id: str, catch_all_mailbox_id: str | None
) -> Domain:
    """Set (or, with None, clear) the domain's catch-all mailbox, committed in ``session``. 404 as
    :func:`get`; 422 (``catch_all_mailbox_id``/``invalid_mailbox``) unless the mailbox is an
    active mailbox of this domain and organisation (another organisation's id reads as unknown)."""
    domain = await get(session, organization_id, domain_id, for_update=True)
    if catch_all_mailbox_id is not None:
        mailbox = await repository.get_owned(session, Mailbox, organization_id, catch_all_mailbox_id)
        if mailbox is None or mailbox.domain_id != domain.id or mailbox.state != MailboxState.ACTIVE.value:
            raise ValidationFailed(
                f"No active mailbox {catch_all_mailbox_id!r} on the domain {domain.name}.",
                details=[detail("catch_all_mailbox_id", "invalid_mailbox", "must be an active mailbox of this domain")],
            )
    domain.catch_all_mailbox_id = catch_all_mailbox_id
    domain.updated_at = utc.now()
    session.add(domain)
    await session.commit()
    return domain


async def resolve_catch_all(session: AsyncSession, address: str) -> str | None:
    """The address of the catch-all mailbox that mail to ``address`` goes to, or None: when the
    address is not of a known domain, its domain has no catch-all, the address belongs to a
    mailbox of its own (it is not unknown), or the catch-all mailbox is not active (being
    created or deleted). Case-insensitive on the domain and the local part. Reads only."""
    local, at, domain_part = address.strip().rpartition("@")
    if not at or not local:
        return None
    try:
        name = normalize_domain_name(domain_part)
    except ValueError:
        return None
    domain = (await session.exec(select(Domain).where(col(Domain.name) == name))).first()
    if domain is None or domain.catch_all_mailbox_id is None:
        return None
    own = (await session.exec(select(Mailbox.id).where(col(Mailbox.address) == f"{local.lower()}@{name}"))).first()
    if own is not None:
        return None
    target = (
        await session.exec(
            select(Mailbox.address).where(
                col(Mailbox.id) == domain.catch_all_mailbox_id,
                col(Mailbox.state) == MailboxState.ACTIVE.value,
            )
        )
    ).first()
    return target
