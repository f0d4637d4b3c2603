"""Mailboxes: a database row plus an account on the mail server, kept in step.

Source: Shipmail ``POST/GET /v1/mailboxes``, ``GET/PATCH/DELETE /v1/mailboxes/{id}``,
``PATCH /v1/mailboxes/{id}/password``.

Consistency across the two stores:
- create: the row is written (not committed), then the account is provisioned, then the row is
  committed. A failed provisioning rolls the row back; a failed commit deprovisions the account.
- delete: the row is deleted (not committed), the account is deprovisioned, then the commit. A
  failed deprovisioning rolls back (both stay); an account already gone counts as deprovisioned,
  so a retried DELETE completes.
"""

from __future__ import annotations

import json
import logging
import re

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.db import repository
from shipmail.domains.models import Domain
from shipmail.mailboxes.models import Mailbox
from shipmail import utc
from shipmail.http.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from shipmail.ids import new_id
from shipmail.mailserver.base import AccountExists, AccountNotFound, MailServerUnavailable
from shipmail.domains import service as domains
from shipmail.mailboxes import passwords
from shipmail.runtime import Services
from shipmail.http.listing import cursor_page

logger = logging.getLogger("shipmail.mailboxes.service")

LOCAL_PART = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$")


def check_password(password: str, field: str = "password") -> None:
    """422 with a field detail when ``password`` breaks the policy."""
    problems = passwords.policy_problems(password)
    if problems:
        raise ValidationFailed(
            "Password " + "; ".join(problems) + ".",
            details=[{"field": field, "code": "weak_password", "message": p} for p in problems],
        )


def _unavailable(exc: Exception) -> ServiceUnavailable:
    logger.warning("mail server unavailable: %s", type(exc).__name__)
    return ServiceUnavailable("The mail server is unavailable; retry shortly.")


async def get(
    session: AsyncSession, organization_id: str, mailbox_id: str, *, for_update: bool = False
) -> Mailbox:
    """The organisation's mailbox ``mailbox_id`` (the REST ``{id}``) read in the request's
    ``session``; 404 ``not_found`` for an unknown id or another organisation's. ``for_update``
    locks the row until the transaction ends (PostgreSQL ``FOR UPDATE``)."""
    mailbox = await repository.get_owned(session, Mailbox, organization_id, mailbox_id, for_update=for_update)
    if mailbox is None:
        raise NotFound(f"No mailbox with id {mailbox_id!r}.")
    return mailbox


async def create(
    svc: Services,
    organization_id: str,
    *,
    domain_id: str,
    local_part: str,
    display_name: str | None,
    password: str | None,
) -> Mailbox:
    """Create the mailbox and its account. ``password=None`` generates one that is never shown.

    422: unknown/unverified domain, invalid address, weak password. 409: the address exists.
    503: the mail server is unavailable (nothing is left behind).
    """
    if not LOCAL_PART.match(local_part) or ".." in local_part or len(local_part) > 64:
        raise ValidationFailed(
            "Invalid address: use letters, digits, '.', '_' and '-', starting and ending with a letter or digit.",
            details=[{"field": "address", "code": "invalid_address", "message": "invalid local part"}],
        )
    if password is not None:
        check_password(password)
    secret = password if password is not None else passwords.generate_password()
    password_hash = await passwords.hash_password_async(secret)
    del secret

    async with svc.db.session() as session:
        domain = await repository.get_owned(session, Domain, organization_id, domain_id)
        if domain is None:
            raise ValidationFailed(
                f"No domain with id {domain_id!r}.",
                details=[{"field": "domain_id", "code": "not_found", "message": "unknown domain"}],
            )
        if domain.status != "verified":
            raise ValidationFailed(
                f"The domain {domain.name} is not verified yet.",
                details=[{"field": "domain_id", "code": "domain_not_verified", "message": "domain not verified"}],
            )
        address = f"{local_part.lower()}@{domain.name}"
        if (await session.exec(select(Mailbox.id).where(col(Mailbox.address) == address))).first():
            raise Conflict(f"The mailbox {address} already exists.")
        now = utc.now()
        mailbox = Mailbox(
            id=new_id("mbx"), organization_id=organization_id, domain_id=domain.id,
            local_part=local_part.lower(), address=address, display_name=display_name,
            password_hash=password_hash, created_at=now, updated_at=now,
        )
        session.add(mailbox)
        try:
            await session.flush()
        except sa.exc.IntegrityError:
            raise Conflict(f"The mailbox {address} already exists.") from None

        try:
            await svc.mail.provision(address)
        except AccountExists:
            raise Conflict(f"The mailbox {address} already exists on the mail server.") from None
        except MailServerUnavailable as exc:
            raise _unavailable(exc) from None

        try:
            from shipmail.mailboxes.accounts import fetch_system_folders

            mailbox.folder_ids = json.dumps(await fetch_system_folders(svc, address))
            from shipmail.delivery import service as sieve_sync

            await sieve_sync.install(svc, mailbox)
            session.add(mailbox)
            await session.commit()
        except BaseException:
            logger.warning("set-up failed after provisioning %s; removing the account", mailbox.id)
            svc.jmap.forget(address)
            try:
                await svc.mail.deprovision(address)
            except Exception:
                logger.exception("could not remove the account of %s after a failed write", mailbox.id)
            raise
    return mailbox


async def list_page(
    svc: Services, organization_id: str, domain_id: str | None, cursor: str | None, limit: int
) -> tuple[list[Mailbox], str | None, bool]:
    """A page of the organisation's mailboxes (optionally of one domain) in creation order."""
    where = [col(Mailbox.organization_id) == organization_id]
    if domain_id is not None:
        where.append(col(Mailbox.domain_id) == domain_id)
    async with svc.db.session() as session:
        return await cursor_page(
            session, svc.cursors, Mailbox, kind="mailboxes", binding={"o": organization_id, "d": domain_id},
            where=where, cursor=cursor, limit=limit,
        )


async def update_display_name(svc: Services, organization_id: str, mailbox_id: str, display_name: str | None) -> Mailbox:
    """Set (or with None clear) the display name."""
    async with svc.db.session() as session:
        mailbox = await get(session, organization_id, mailbox_id)
        mailbox.display_name = display_name
        mailbox.updated_at = utc.now()
        session.add(mailbox)
        await session.commit()
        return mailbox


async def reset_password(svc: Services, organization_id: str, mailbox_id: str, password: str) -> Mailbox:
    """Replace the password: from the commit on, the old one fails and the new one works."""
    check_password(password)
    password_hash = await passwords.hash_password_async(password)
    async with svc.db.session() as session:
        mailbox = await get(session, organization_id, mailbox_id)
        mailbox.password_hash = password_hash
        mailbox.updated_at = utc.now()
        session.add(mailbox)
        await session.flush()
        try:
            await svc.mail.set_password(mailbox.address, password_hash)
        except MailServerUnavailable as exc:
            raise _unavailable(exc) from None
        await session.commit()
        return mailbox


async def delete(svc: Services, organization_id: str, mailbox_id: str) -> None:
    """Delete the mailbox, its account and all its mail; delivery to it is refused afterwards."""
    async with svc.db.session() as session:
        mailbox = await get(session, organization_id, mailbox_id)
        await session.delete(mailbox)
        await session.flush()
        try:
            await svc.mail.deprovision(mailbox.address)
        except AccountNotFound:
            logger.info("account of %s was already gone", mailbox.id)
        except MailServerUnavailable as exc:
            raise _unavailable(exc) from None
        svc.jmap.forget(mailbox.address)
        await session.commit()


async def password_hash_for(session: AsyncSession, address: str) -> str | None:
    """The argon2id hash of the mailbox ``address`` (None when there is no such mailbox)."""
    return (await session.exec(select(Mailbox.password_hash).where(col(Mailbox.address) == address.lower()))).first()


