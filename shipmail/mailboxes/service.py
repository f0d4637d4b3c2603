"""Mailboxes: a database row plus an account on the mail server, kept in step.

Source: Shipmail ``POST/GET /v1/mailboxes``, ``GET/PATCH/DELETE /v1/mailboxes/{id}``,
``PATCH /v1/mailboxes/{id}/password``. Suspension is in :mod:`shipmail.mailboxes.suspension`.

Every function works in the caller's ``session`` (the request's unit of work, opened by the
route); a write reads and locks its row in that session (``for_update``: inside the write
transaction, :func:`shipmail.db.engine.begin_write`) and commits it.

Consistency across the two stores:
- create: the checks read the database (no lock), then the account is provisioned, its system
  folders read and its delivery script installed, with no database lock held (these mail server
  calls are the slow part); only then a short write transaction checks the domain again and
  inserts the row. A failed provisioning leaves nothing; a failure after it (set-up, the insert,
  the commit) deprovisions the account.
- delete: the row is read (no lock), the account deprovisioned, then the row deleted in a short
  write transaction. A failed deprovisioning changes nothing (both stay); an account already gone
  counts as deprovisioned, so a retried DELETE completes. (Until mailboxes have a ``deleting``
  state, a change of the mailbox that runs between the two answers an error from the mail
  server; the row is deleted all the same.)
- password reset: the new hash is flushed, the server told (:meth:`MailServer.set_password`;
  nothing to do for Cyrus, whose logins are checked against this database), then committed; 503
  from the server rolls the row back.
"""

from __future__ import annotations

import json
import logging
import re

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.db import repository
from shipmail.delivery import service as delivery
from shipmail.domains.models import Domain
from shipmail.http.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed, detail
from shipmail.http.listing import cursor_page
from shipmail.ids import new_id
from shipmail.mailboxes import passwords
from shipmail.mailboxes.accounts import fetch_system_folders
from shipmail.mailboxes.models import Mailbox
from shipmail.mailboxes.schemas import LOCAL_PART_PATTERN
from shipmail.mailserver.base import AccountExists, AccountNotFound, MailServerUnavailable
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.mailboxes.service")

LOCAL_PART = re.compile(LOCAL_PART_PATTERN)


async def check_password(password: str, field: str = "password") -> None:
    """422 with one ``weak_password`` detail per problem when ``password`` breaks the policy
    (:func:`shipmail.mailboxes.passwords.policy_problems`, in a worker thread)."""
    problems = await passwords.policy_problems_async(password)
    if problems:
        raise ValidationFailed(
            "Password " + "; ".join(problems) + ".",
            details=[detail(field, "weak_password", p) for p in problems],
        )


def _unavailable(exc: Exception) -> ServiceUnavailable:
    logger.warning("mail server unavailable: %s", type(exc).__name__)
    return ServiceUnavailable("The mail server is unavailable; retry shortly.")


async def get(session: AsyncSession, organization_id: str, mailbox_id: str, *, for_update: bool = False) -> Mailbox:
    """The organisation's mailbox ``mailbox_id`` (the REST ``{id}``) read in the request's
    ``session``; 404 ``not_found`` for an unknown id or another organisation's. ``for_update``
    reads it inside the write transaction (begun if it was not) and locks it until the
    transaction ends (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``FOR UPDATE``): concurrent changes
    of one mailbox are serialised, in every process."""
    mailbox = await repository.get_owned(session, Mailbox, organization_id, mailbox_id, for_update=for_update)
    if mailbox is None:
        raise NotFound(f"No mailbox with id {mailbox_id!r}.")
    return mailbox


async def create(
    svc: Services,
    session: AsyncSession,
    organization_id: str,
    *,
    domain_id: str,
    local_part: str,
    display_name: str | None,
    password: str | None,
) -> Mailbox:
    """Create the mailbox and its account, committed in ``session``. ``password=None`` generates
    one that is never shown. After provisioning, the system folders' ids are stored on the row
    and the delivery script is put on the server (:func:`shipmail.delivery.service.install`); no
    database lock is held during these mail server calls. The row is inserted last, in a short
    write transaction; if anything after the provisioning fails, the account is removed again.

    422: unknown/unverified domain, invalid address, an address the mail server reserves or
    cannot hold (``reserved_address``, :meth:`MailServer.address_problem`, asked before anything
    is written), weak password. 409: the address exists.
    503: the mail server is unavailable (nothing is left behind).
    """
    if not LOCAL_PART.match(local_part) or ".." in local_part or len(local_part) > 64:
        raise ValidationFailed(
            "Invalid address: use letters, digits, '.', '_' and '-', starting and ending with a letter or digit.",
            details=[detail("address", "invalid_address", "invalid local part")],
        )
    if password is not None:
        await check_password(password)
    secret = password if password is not None else passwords.generate_password()
    password_hash = await passwords.hash_password_async(secret)
    del secret

    domain = await _usable_domain(session, organization_id, domain_id)
    address = f"{local_part.lower()}@{domain.name}"
    problem = svc.mail.address_problem(address)
    if problem is not None:
        raise ValidationFailed(
            f"The address {address} cannot be used: {problem}.",
            details=[detail("address", "reserved_address", problem)],
        )
    if (await session.exec(select(Mailbox.id).where(col(Mailbox.address) == address))).first():
        raise Conflict(f"The mailbox {address} already exists.")
    # The checks are done: end their transaction (and give its connection back) before the slow
    # mail server calls; the row is written in a transaction of its own afterwards.
    await session.commit()
    now = utc.now()
    mailbox = Mailbox(
        id=new_id("mbx"),
        organization_id=organization_id,
        domain_id=domain.id,
        local_part=local_part.lower(),
        address=address,
        display_name=display_name,
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
    )

    try:
        await svc.mail.provision(address)
    except AccountExists:
        raise Conflict(f"The mailbox {address} already exists on the mail server.") from None
    except MailServerUnavailable as exc:
        raise _unavailable(exc) from None

    try:
        mailbox.folder_ids = json.dumps(await fetch_system_folders(svc, address))
        await delivery.install(svc, mailbox)
        # Locked: a concurrent domain delete either sees this mailbox or has deleted the domain.
        await _usable_domain(session, organization_id, domain_id, for_update=True)
        session.add(mailbox)
        try:
            await session.commit()
        except sa.exc.IntegrityError:
            raise Conflict(f"The mailbox {address} already exists.") from None
    except BaseException:
        logger.warning("set-up failed after provisioning %s; removing the account", mailbox.id)
        svc.jmap.forget(address)
        try:
            await svc.mail.deprovision(address)
        except Exception:
            logger.exception("could not remove the account of %s after a failed write", mailbox.id)
        raise
    return mailbox


async def _usable_domain(
    session: AsyncSession, organization_id: str, domain_id: str, *, for_update: bool = False
) -> Domain:
    """The organisation's verified domain ``domain_id`` (``for_update``: locked, in the write
    transaction); 422 ``domain_id`` otherwise."""
    domain = await repository.get_owned(session, Domain, organization_id, domain_id, for_update=for_update)
    if domain is None:
        raise ValidationFailed(
            f"No domain with id {domain_id!r}.", details=[detail("domain_id", "not_found", "unknown domain")]
        )
    if domain.status != "verified":
        raise ValidationFailed(
            f"The domain {domain.name} is not verified yet.",
            details=[detail("domain_id", "domain_not_verified", "domain not verified")],
        )
    return domain


async def list_page(
    svc: Services, session: AsyncSession, organization_id: str, domain_id: str | None, cursor: str | None, limit: int
) -> tuple[list[Mailbox], str | None, bool]:
    """A page of the organisation's mailboxes (optionally of one domain) in creation order:
    ``(rows, next_cursor, has_more)``; 422 for a cursor of another list or other filters."""
    where = [col(Mailbox.organization_id) == organization_id]
    if domain_id is not None:
        where.append(col(Mailbox.domain_id) == domain_id)
    return await cursor_page(
        session,
        svc.cursors,
        Mailbox,
        kind="mailboxes",
        binding={"o": organization_id, "d": domain_id},
        where=where,
        cursor=cursor,
        limit=limit,
    )


async def update_display_name(
    session: AsyncSession, organization_id: str, mailbox_id: str, display_name: str | None
) -> Mailbox:
    """Set (or with None clear) the display name; the row is locked, changed and committed. 404
    as :func:`get`."""
    mailbox = await get(session, organization_id, mailbox_id, for_update=True)
    mailbox.display_name = display_name
    mailbox.updated_at = utc.now()
    session.add(mailbox)
    await session.commit()
    return mailbox


async def reset_password(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, password: str
) -> Mailbox:
    """Replace the password: from the commit on, the old one fails and the new one works. 422
    weak password, 404 as :func:`get`, 503 mail server unavailable (nothing changed)."""
    await check_password(password)
    password_hash = await passwords.hash_password_async(password)
    mailbox = await get(session, organization_id, mailbox_id, for_update=True)
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


async def delete(svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str) -> None:
    """Delete the mailbox, its account and all its mail; delivery to it is refused afterwards.
    The account is removed first, with no database lock held (the slow part), then the row in a
    short write transaction. 404 as :func:`get`; 503 mail server unavailable (both stay)."""
    mailbox = await get(session, organization_id, mailbox_id)
    await session.commit()  # end the read's transaction before the slow mail server call
    try:
        await svc.mail.deprovision(mailbox.address)
    except AccountNotFound:
        logger.info("account of %s was already gone", mailbox.id)
    except MailServerUnavailable as exc:
        raise _unavailable(exc) from None
    svc.jmap.forget(mailbox.address)
    row = await repository.get_owned(session, Mailbox, organization_id, mailbox_id, for_update=True)
    if row is not None:  # else a concurrent DELETE removed it first: gone either way
        await session.delete(row)
        await session.commit()
