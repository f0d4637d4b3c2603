"""Mailboxes: a database row plus an account on the mail server, kept in step.

Source: Shipmail ``POST/GET /v1/mailboxes``, ``GET/PATCH/DELETE /v1/mailboxes/{id}``,
``PATCH /v1/mailboxes/{id}/password``. Suspension is in :mod:`shipmail.mailboxes.suspension`.

Every function works in the caller's ``session`` (the request's unit of work, opened by the
route); a write reads and locks its row in that session (``for_update``: SQLite ``BEGIN
IMMEDIATE``, PostgreSQL ``FOR UPDATE``) and commits it. No database lock is held while the mail
server works: create and delete commit their intent first and finish in a short transaction.

Consistency across the two stores: a write that spans both records its intent in
``mailboxes.state`` and COMMITS it before the mail server is touched, so a crash at any point
leaves a row that says what was under way; :mod:`shipmail.mailboxes.reconcile` completes or rolls
it back (at start-up, ``shipmail doctor --repair``, or a create of the same address once the
intent is stale).

- create: the row is committed in state ``provisioning`` (the address is taken from then on), the
  account is provisioned, its system folders read and its delivery script installed, then the
  row is committed ``active``. Any failure undoes it: the account is removed (when this create
  may have made it) and the row deleted; if that undo cannot be done (the mail server or the
  database is down), the row stays ``provisioning`` for the reconciliation.
- delete: the row is committed in state ``deleting``, the account is deprovisioned (one already
  gone counts as deprovisioned), then the row is deleted. When the mail server could not be
  reached at all, the row goes back to ``active`` (503, nothing changed); when it was reached but
  did not answer, the outcome is unknown: the row stays ``deleting`` (503) and the delete is
  finished by a retried DELETE or by the reconciliation.
- password reset: the new hash is flushed, the server told (:meth:`MailServer.set_password`;
  nothing to do for Cyrus, whose logins are checked against this database), then committed; 503
  from the server rolls the row back.

A mailbox in ``provisioning`` or ``deleting`` is not usable: :func:`get` (every read and write of
one mailbox goes through it) answers 409 ``conflict`` "The mailbox ... is being created/deleted;
retry in a moment", lists leave it out, its owner cannot log in, and creating its address answers
the same 409 (until the intent is stale: see :data:`shipmail.mailboxes.reconcile.STALE_AFTER`).
409 rather than 404: the address and the id are taken, and the answer will change by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.aliases.models import MailboxAlias
from shipmail.db import repository
from shipmail.db.types import UTCDateTime
from shipmail.delivery import service as delivery
from shipmail.domains.models import Domain
from shipmail.http.cursors import invalid_cursor
from shipmail.http.errors import Conflict, NotFound, OverLimit, ServiceUnavailable, ValidationFailed, detail
from shipmail.ids import new_id
from shipmail.mailboxes import passwords, reconcile
from shipmail.mailboxes.accounts import fetch_system_folders
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.mailboxes.schemas import LOCAL_PART_PATTERN
from shipmail.mailserver.base import (
    AccountExists,
    AccountNotFound,
    MailServerError,
    MailServerUnavailable,
    MailServerUnreachable,
)
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


def half_made(state: str, address: str) -> Conflict:
    """The 409 for an address or a mailbox whose create or delete is under way."""
    doing = "created" if state == MailboxState.PROVISIONING else "deleted"
    return Conflict(f"The mailbox {address} is being {doing}; retry in a moment.")


#: Reads that neither change the mailbox nor use its rules leave the ``rules`` column out: it is
#: validated into models on every load (about 3 ms for 50 rules of 10 conditions), and most
#: mailbox-scoped requests (messages, folders, identities, ...) never look at it. Touching it on
#: such a row raises (``raiseload``) instead of loading it behind the caller's back.
_WITHOUT_RULES = (defer(Mailbox.rules, raiseload=True),)  # type: ignore[arg-type]
#: The same, for other modules of the feature.
WITHOUT_RULES = _WITHOUT_RULES


async def _get_any(
    session: AsyncSession, organization_id: str, mailbox_id: str, *, for_update: bool, with_rules: bool = True
) -> Mailbox:
    without = () if for_update or with_rules else ("rules",)
    mailbox = await repository.get_owned(
        session, Mailbox, organization_id, mailbox_id, for_update=for_update, without=without
    )
    if mailbox is None:
        raise NotFound(f"No mailbox with id {mailbox_id!r}.")
    return mailbox


async def get(
    session: AsyncSession, organization_id: str, mailbox_id: str, *, for_update: bool = False, with_rules: bool = False
) -> Mailbox:
    """The organisation's usable (``active``) mailbox ``mailbox_id`` (the REST ``{id}``) read in the
    request's ``session``; 404 ``not_found`` for an unknown id or another organisation's, 409
    ``conflict`` while it is being created or deleted (:func:`half_made`). ``for_update`` reads
    it inside the write transaction (begun if it was not) and locks it until the transaction ends
    (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``FOR UPDATE``): concurrent changes of one mailbox are
    serialised, in every process. The row comes without its ``rules`` unless ``with_rules`` or
    ``for_update`` (:data:`_WITHOUT_RULES`)."""
    mailbox = await _get_any(session, organization_id, mailbox_id, for_update=for_update, with_rules=with_rules)
    if mailbox.state != MailboxState.ACTIVE:
        raise half_made(mailbox.state, mailbox.address)
    return mailbox


@dataclass(frozen=True)
class NewMailbox:
    """A mailbox checked by :func:`prepare` and not yet created: its address and password hash."""

    domain_id: str
    local_part: str
    address: str
    display_name: str | None
    password_hash: str = field(repr=False)


async def prepare(
    svc: Services,
    session: AsyncSession,
    organization_id: str,
    *,
    domain_id: str,
    local_part: str,
    display_name: str | None,
    password: str | None,
) -> NewMailbox:
    """Every check of :func:`create` that needs neither a write nor the mail server, and the
    password's hash: 422 unknown/unverified domain, invalid or reserved address, weak password;
    409 the address is a mailbox, an alias (:mod:`shipmail.aliases`), or a half-made mailbox
    (a stale one is resolved first)."""
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

    domain = await repository.get_owned(session, Domain, organization_id, domain_id)
    if domain is None:
        raise ValidationFailed(
            f"No domain with id {domain_id!r}.", details=[detail("domain_id", "not_found", "unknown domain")]
        )
    if domain.status != "verified":
        raise ValidationFailed(
            f"The domain {domain.name} is not verified yet.",
            details=[detail("domain_id", "domain_not_verified", "domain not verified")],
        )
    address = f"{local_part.lower()}@{domain.name}"
    problem = svc.mail.address_problem(address)
    if problem is not None:
        raise ValidationFailed(
            f"The address {address} cannot be used: {problem}.",
            details=[detail("address", "reserved_address", problem)],
        )
    domain_row_id = domain.id
    if (await session.exec(select(MailboxAlias.id).where(col(MailboxAlias.address) == address))).first():
        raise Conflict(f"The address {address} is an alias of another mailbox.")
    existing = (await session.exec(select(Mailbox).where(col(Mailbox.address) == address))).first()
    if existing is not None:
        if existing.state == MailboxState.ACTIVE:
            raise Conflict(f"The mailbox {address} already exists.")
        if not reconcile.is_stale(existing.updated_at):
            raise half_made(existing.state, address)
        await _resolve_abandoned(svc, session, existing)
    return NewMailbox(domain_row_id, local_part.lower(), address, display_name, password_hash)


async def check_room(svc: Services, session: AsyncSession, organization_id: str, adding: int) -> None:
    """403 ``over_limit`` when ``adding`` more mailboxes would take the organisation over
    ``SHIPMAIL_MAX_MAILBOXES_PER_ORG`` (every row counts, also half-made and scheduled ones)."""
    limit = svc.settings.max_mailboxes_per_org
    if not limit:
        return
    have = await count(session, organization_id)
    if have + adding > limit:
        raise OverLimit(
            f"The organisation has {have} of its {limit} mailboxes; "
            + ("it cannot have more." if adding == 1 else f"{adding} more do not fit.")
            + " Delete mailboxes or ask the operator to raise SHIPMAIL_MAX_MAILBOXES_PER_ORG."
        )


async def count(session: AsyncSession, organization_id: str) -> int:
    """How many mailboxes (rows in any state) the organisation has."""
    stmt = sa.select(sa.func.count()).select_from(Mailbox).where(col(Mailbox.organization_id) == organization_id)
    return int((await session.exec(stmt)).one()[0])  # type: ignore[call-overload]


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
    one that is never shown. The row is committed ``provisioning`` first; after provisioning, the
    system folders' ids are stored on the row, the delivery script is put on the server
    (:func:`shipmail.delivery.service.install`) and the row is committed ``active``; if any step
    fails, the account is removed again and the row deleted (see the module docstring).

    422: unknown/unverified domain, invalid address, an address the mail server reserves or
    cannot hold (``reserved_address``, :meth:`MailServer.address_problem`, asked before anything
    is written), weak password. 409: the address exists (as a mailbox or an alias), is
    being created or deleted (a stale intent is resolved first: :mod:`.reconcile`), or has an
    account on the mail server that no mailbox owns (``shipmail doctor`` reports it). 403
    ``over_limit``: the organisation has ``SHIPMAIL_MAX_MAILBOXES_PER_ORG`` mailboxes. 503: the
    mail server is unavailable (nothing is left behind, or a ``provisioning`` row that the
    reconciliation resolves).
    """
    new = await prepare(
        svc,
        session,
        organization_id,
        domain_id=domain_id,
        local_part=local_part,
        display_name=display_name,
        password=password,
    )
    await check_room(svc, session, organization_id, 1)
    return await create_prepared(svc, session, organization_id, new)


async def create_prepared(svc: Services, session: AsyncSession, organization_id: str, new: NewMailbox) -> Mailbox:
    """The writing half of :func:`create` for a mailbox :func:`prepare` checked."""
    domain_row_id, address, display_name, password_hash = (
        new.domain_id,
        new.address,
        new.display_name,
        new.password_hash,
    )
    # The intent: committed before the mail server is touched.
    now = utc.now()
    mailbox_id = new_id("mbx")
    mailbox = Mailbox(
        id=mailbox_id,
        organization_id=organization_id,
        domain_id=domain_row_id,
        local_part=new.local_part,
        address=address,
        display_name=display_name,
        password_hash=password_hash,
        state=MailboxState.PROVISIONING.value,
        created_at=now,
        updated_at=now,
    )
    session.add(mailbox)
    try:
        await session.commit()
    except sa.exc.IntegrityError:
        await session.rollback()
        raise await _taken(session, address) from None

    try:
        await svc.mail.provision(address)
    except AccountExists:
        await _abandon(svc, session, mailbox_id, address, account_made=False)
        raise Conflict(
            f"The mailbox {address} already exists on the mail server, in an account no mailbox owns; "
            "the operator can release it with `shipmail doctor --repair`."
        ) from None
    except (MailServerUnreachable, ValueError) as exc:  # nothing was asked of the server
        await _abandon(svc, session, mailbox_id, address, account_made=False)
        if isinstance(exc, MailServerUnreachable):
            raise _unavailable(exc) from None
        raise
    except BaseException as exc:
        await _abandon(svc, session, mailbox_id, address, account_made=True)
        if isinstance(exc, MailServerUnavailable):
            raise _unavailable(exc) from None
        raise

    try:
        mailbox.folder_ids = json.dumps(await fetch_system_folders(svc, address))
        await delivery.install(svc, mailbox)
        mailbox.state = MailboxState.ACTIVE.value
        mailbox.updated_at = utc.now()
        session.add(mailbox)
        await session.commit()
    except BaseException as exc:
        logger.warning("set-up failed after provisioning %s; removing the account", mailbox_id)
        await _abandon(svc, session, mailbox_id, address, account_made=True)
        if isinstance(exc, sa.orm.exc.StaleDataError):  # the reconciliation rolled it back meanwhile
            raise ServiceUnavailable("The creation of the mailbox was interrupted; retry it.") from None
        if isinstance(exc, MailServerUnavailable):
            raise _unavailable(exc) from None
        raise
    return mailbox


async def _taken(session: AsyncSession, address: str) -> Conflict:
    """The 409 for an address another create or delete holds (a concurrent insert won)."""
    other = (await session.exec(select(Mailbox.state).where(col(Mailbox.address) == address))).first()
    if other is not None and other != MailboxState.ACTIVE:
        return half_made(other, address)
    return Conflict(f"The mailbox {address} already exists.")


async def _resolve_abandoned(svc: Services, session: AsyncSession, row: Mailbox) -> None:
    """Resolve the stale intent ``row`` holding an address before creating it again (503 when the
    mail server cannot be reached; then the row stays as it was)."""
    row_id, state, address = row.id, MailboxState(row.state), row.address
    await session.rollback()  # end this read before the reconciliation writes in its own session
    logger.warning("mailbox %s was left %s; resolving it before %s is created again", row_id, state.value, address)
    try:
        await reconcile.resolve(svc, row_id, state)
    except MailServerUnavailable as exc:
        raise _unavailable(exc) from None


async def _abandon(svc: Services, session: AsyncSession, mailbox_id: str, address: str, *, account_made: bool) -> None:
    """Undo a create whose intent row ``mailbox_id`` is committed: remove the account if this
    create may have made it (``account_made``), then delete the row, in a session of its own and
    only while the row is still this create's (:func:`shipmail.mailboxes.reconcile.claim`: the
    reconciliation may have taken it over). Never raises: what cannot be undone now stays in
    ``provisioning`` for the reconciliation (logged)."""
    with contextlib.suppress(Exception):
        await session.rollback()
    svc.jmap.forget(address)
    try:
        async with svc.db.session() as undo:
            if not await reconcile.claim(undo, mailbox_id, MailboxState.PROVISIONING):
                logger.warning("the create of %s was already resolved by the reconciliation", mailbox_id)
                return
            if account_made:
                with contextlib.suppress(AccountNotFound, ValueError):  # ValueError: it cannot have one
                    await svc.mail.deprovision(address)
            await reconcile.delete_row(undo, mailbox_id, MailboxState.PROVISIONING)
            await undo.commit()
    except Exception:
        logger.exception("could not undo the create of %s; it stays provisioning for the reconciliation", mailbox_id)


@dataclass(frozen=True)
class ListFilters:
    """The filters and order of :func:`list_page` (``listMailboxes``' query)."""

    domain_id: str | None = None
    status: str | None = None
    search: str | None = None
    order_by: str = "created_at_asc"


def _filter_where(organization_id: str, filters: ListFilters) -> list[Any]:
    where: list[Any] = [
        col(Mailbox.organization_id) == organization_id,
        col(Mailbox.state) == MailboxState.ACTIVE.value,
    ]
    if filters.domain_id is not None:
        where.append(col(Mailbox.domain_id) == filters.domain_id)
    scheduled, suspended = col(Mailbox.deletion_scheduled_at), col(Mailbox.suspended_at)
    if filters.status == "active":
        where += [scheduled.is_(None), suspended.is_(None)]
    elif filters.status == "suspended":
        where += [scheduled.is_(None), suspended.is_not(None)]
    elif filters.status == "deletion_scheduled":
        where.append(scheduled.is_not(None))
    if filters.search:
        text = filters.search.lower()
        where.append(
            sa.or_(
                sa.func.lower(col(Mailbox.address)).contains(text, autoescape=True),
                sa.func.lower(sa.func.coalesce(col(Mailbox.display_name), "")).contains(text, autoescape=True),
            )
        )
    return where


async def list_page(
    svc: Services,
    session: AsyncSession,
    organization_id: str,
    filters: ListFilters,
    cursor: str | None,
    limit: int,
    *,
    include_total: bool = False,
    only: Sequence[str] | None = None,
) -> tuple[list[Mailbox], str | None, bool, int | None]:
    """A page of the organisation's usable mailboxes (not half-made) matching ``filters``:
    ``(rows, next_cursor, has_more, total_count)``; ``total_count`` (every row of the filters)
    only with ``include_total``. Keyset pagination on ``(created_at, id)`` or ``address`` (unique),
    so a page never repeats or skips a row that stays. ``search`` is a case-insensitive substring
    of the address or the display name (``%`` and ``_`` match themselves). 422 for a cursor of
    another list, filters or order. ``only``: just those ids (a key limited to some mailboxes)."""
    where = _filter_where(organization_id, filters)
    if only is not None:
        where.append(col(Mailbox.id).in_(list(only)))
    binding = {
        "o": organization_id,
        "d": filters.domain_id,
        "s": filters.status,
        "q": filters.search,
        "ob": filters.order_by,
    }
    by_address = filters.order_by.startswith("address")
    descending = filters.order_by.endswith("_desc")
    created, ident, address = col(Mailbox.created_at), col(Mailbox.id), col(Mailbox.address)
    stmt = select(Mailbox).where(*where).options(*_WITHOUT_RULES)
    if cursor:
        pos = svc.cursors.decode(cursor, "mailboxes", binding)
        try:
            if by_address:
                key: Any = address
                value: Any = str(pos["a"])
            else:
                key = sa.tuple_(created, ident)
                value = sa.tuple_(sa.literal(datetime.fromisoformat(pos["t"]), UTCDateTime()), str(pos["i"]))
        except (KeyError, TypeError, ValueError):
            raise invalid_cursor() from None
        stmt = stmt.where(key < value if descending else key > value)
    order = [address] if by_address else [created, ident]
    stmt = stmt.order_by(*(c.desc() if descending else c.asc() for c in order)).limit(limit + 1)
    rows = list((await session.exec(stmt)).all())
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        position = {"a": last.address} if by_address else {"t": last.created_at.isoformat(), "i": last.id}
        next_cursor = svc.cursors.encode("mailboxes", binding, position)
    total = None
    if include_total:
        counted = sa.select(sa.func.count()).select_from(Mailbox).where(*where)
        total = int((await session.exec(counted)).one()[0])  # type: ignore[call-overload]
    return rows, next_cursor, has_more, total


async def get_by_address(session: AsyncSession, organization_id: str, address: str) -> Mailbox:
    """The organisation's usable mailbox with this address (lower-cased); 404 / 409 as :func:`get`."""
    row = (
        await session.exec(
            select(Mailbox).where(
                col(Mailbox.organization_id) == organization_id, col(Mailbox.address) == address.lower()
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"No mailbox {address}.")
    if row.state != MailboxState.ACTIVE:
        raise half_made(row.state, row.address)
    return row


async def offset_page(
    session: AsyncSession, organization_id: str, domain_id: str, skip: int, limit: int
) -> tuple[list[Mailbox], int]:
    """``(rows, total)``: ``limit`` usable mailboxes of the domain from position ``skip`` in creation
    order, and how many there are in all (Mailgun's ``skip``/``limit`` listing)."""
    where = [
        col(Mailbox.organization_id) == organization_id,
        col(Mailbox.domain_id) == domain_id,
        col(Mailbox.state) == MailboxState.ACTIVE.value,
    ]
    stmt = (
        select(Mailbox)
        .where(*where)
        .options(*_WITHOUT_RULES)
        .order_by(col(Mailbox.created_at), col(Mailbox.id))
        .offset(skip)
        .limit(limit)
    )
    rows = list((await session.exec(stmt)).all())
    counted = sa.select(sa.func.count()).select_from(Mailbox).where(*where)
    total = int((await session.exec(counted)).one()[0])  # type: ignore[call-overload]
    return rows, total


#: Columns :func:`update` may change (``PATCH /v1/mailboxes/{id}``).
UPDATABLE = frozenset({"display_name", "daily_send_limit", "monthly_send_limit"})


async def update(session: AsyncSession, organization_id: str, mailbox_id: str, changes: dict[str, Any]) -> Mailbox:
    """Set the given :data:`UPDATABLE` columns (None clears: default limits, no display name);
    the row is locked, changed and committed. 404 as :func:`get`."""
    mailbox = await get(session, organization_id, mailbox_id, for_update=True)
    for name, value in changes.items():
        if name not in UPDATABLE:
            raise ValueError(name)
        setattr(mailbox, name, value)
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


async def delete(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, *, due_by: datetime | None = None
) -> bool:
    """Delete the mailbox, its account and all its mail; delivery to it is refused afterwards.

    The row is committed ``deleting`` first (see the module docstring); a mailbox already in
    ``deleting`` (an earlier DELETE answered 503) is finished. 404 as :func:`get`; 409 while it
    is being created; 503 when the mail server is unavailable: unreachable, nothing changed; no
    answer, the mailbox stays ``deleting`` (409 on reads) until a retried DELETE or the
    reconciliation finishes it. Its aliases go with the row.

    ``due_by`` (the scheduled purge, :func:`shipmail.mailboxes.lifecycle.purge`): delete only a
    mailbox whose ``deletion_scheduled_at`` is at or before it (checked under the row lock, so a
    restore that committed first wins); returns whether it deleted.
    """
    mailbox = await _get_any(session, organization_id, mailbox_id, for_update=True)
    if mailbox.state == MailboxState.PROVISIONING:
        raise half_made(mailbox.state, mailbox.address)
    if due_by is not None and mailbox.state == MailboxState.ACTIVE:
        scheduled = mailbox.deletion_scheduled_at
        if scheduled is None or utc.as_utc(scheduled) > due_by:
            await session.rollback()
            return False
    address, before = mailbox.address, mailbox.updated_at
    if mailbox.state == MailboxState.ACTIVE:
        mailbox.state = MailboxState.DELETING.value
        mailbox.updated_at = utc.now()
        session.add(mailbox)
        await session.commit()  # the intent, before the mail server is touched
    try:
        await svc.mail.deprovision(address)
    except AccountNotFound:
        logger.info("account of %s was already gone", mailbox_id)
    except MailServerUnreachable as exc:  # nothing was done: back to active
        await _undo_delete(session, mailbox_id, before)
        raise _unavailable(exc) from None
    except MailServerUnavailable as exc:
        logger.warning("mail server did not answer while deleting %s: %s", mailbox_id, type(exc).__name__)
        raise ServiceUnavailable(
            f"The mail server did not answer; the mailbox {address} is being deleted: retry the DELETE to finish it."
        ) from None
    except MailServerError:  # the server refused: the account is still there
        await _undo_delete(session, mailbox_id, before)
        raise
    svc.jmap.forget(address)
    await reconcile.delete_row(session, mailbox_id, MailboxState.DELETING)
    await session.commit()
    return True


async def _undo_delete(session: AsyncSession, mailbox_id: str, updated_at: datetime) -> None:
    """Put a ``deleting`` row back to ``active`` (with its previous ``updated_at``) after a delete
    that certainly did not reach the account."""
    await session.rollback()
    await session.exec(
        sa.update(Mailbox)
        .where(col(Mailbox.id) == mailbox_id, col(Mailbox.state) == MailboxState.DELETING.value)
        .values(state=MailboxState.ACTIVE.value, updated_at=updated_at)
    )
    await session.commit()
