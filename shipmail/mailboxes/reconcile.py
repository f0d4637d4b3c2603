"""The reconciliation: complete or roll back every mailbox write that a crash left half done.

A create or a delete records its intent in ``mailboxes.state`` before it touches the mail server
(:mod:`shipmail.mailboxes.service`), so a process killed in the middle leaves a row in
``provisioning`` or ``deleting``. :func:`reconcile` resolves each one; ``shipmail serve`` runs it
before the API answers (bounded in time) and ``shipmail doctor --repair`` on demand.

What it does with each state:

- ``deleting``: the delete is finished. The account is removed (one that is already gone counts as
  removed), then the row. The client asked for the delete; a retried DELETE does the same.
- ``provisioning``: the create is ROLLED BACK, never finished. The client never got its 201 (the
  request failed or died), so no client holds the id, and its retry makes a fresh mailbox. The
  account at the address, if any, is removed when it holds no mail, then the row is deleted.
  Finishing instead would hand the tenant whatever account is at the address, and that need not
  be the one this create made: an account that was on the server BEFORE the create (the create
  then answers 409, and a crash can strike before its row is removed) holds someone else's mail.
  So an account that holds mail is never removed nor handed over here: the row goes, the account
  stays, and ``shipmail doctor`` reports it as an account without a row, which only
  ``--repair --purge-orphans`` removes after saving its mail.

Concurrency: each row is *claimed* first, in a transaction held until the row is resolved: a no-op
``UPDATE ... WHERE id = :id AND state = :state`` (on SQLite it takes the database's write lock, on
PostgreSQL the row lock). A row that is gone or changed state is left alone (someone else resolved
it), and a create or delete still running in another process waits for the lock and then finds
its row gone (:func:`claim` is what :mod:`shipmail.mailboxes.service` uses too). The mail server
calls made while the claim is held are bounded by its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.aliases.models import MailboxAlias
from shipmail.http.errors import ShipmailError
from shipmail.mailboxes.accounts import count_messages
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.mailserver.base import AccountNotFound, MailServerError
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.mailboxes.reconcile")

#: An intent whose row has not changed for this long is abandoned: no request takes this long
#: (every mail server step is bounded by ``SHIPMAIL_JMAP_TIMEOUT``), so a create meeting such a
#: row resolves it at once instead of answering 409 (:func:`shipmail.mailboxes.service.create`).
STALE_AFTER = timedelta(minutes=2)

#: How long ``shipmail serve`` lets the start-up reconciliation run before it starts the API anyway
#: (what is left is resolved by the next run, by ``shipmail doctor --repair``, or by a create of
#: the address once :data:`STALE_AFTER` has passed).
STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    """What :func:`resolve` did with one row: ``state`` is the state it found, ``action`` one of
    ``deleted`` (a delete finished), ``rolled back`` (a create undone, account removed or never
    made), ``rolled back, account kept`` (the account holds mail: see the module docstring),
    ``failed`` (left as it was; ``detail`` says why) or ``gone`` (resolved by someone else)."""

    mailbox_id: str
    address: str
    state: str
    action: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f" ({self.detail})" if self.detail else ""
        return f"{self.mailbox_id} {self.address}: {self.state} -> {self.action}{tail}"


async def claim(session: AsyncSession, mailbox_id: str, state: MailboxState) -> bool:
    """Lock the row ``mailbox_id`` in ``session``'s transaction if it is still in ``state``
    (a no-op UPDATE: the write lock on SQLite, the row lock on PostgreSQL); whether it was."""
    result = await session.exec(
        sa.update(Mailbox)
        .where(col(Mailbox.id) == mailbox_id, col(Mailbox.state) == state.value)
        .values(state=col(Mailbox.state))
    )
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


async def delete_row(session: AsyncSession, mailbox_id: str, state: MailboxState) -> bool:
    """Delete the row ``mailbox_id`` if it is in ``state``, and its aliases (not committed);
    whether it was."""
    owner = select(col(Mailbox.id)).where(col(Mailbox.id) == mailbox_id, col(Mailbox.state) == state.value)
    await session.exec(sa.delete(MailboxAlias).where(col(MailboxAlias.mailbox_id).in_(owner)))
    result = await session.exec(
        sa.delete(Mailbox).where(col(Mailbox.id) == mailbox_id, col(Mailbox.state) == state.value)
    )
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


async def pending(svc: Services, *, older_than: timedelta | None = None) -> list[Mailbox]:
    """The rows in ``provisioning`` or ``deleting`` (oldest change first); with ``older_than``,
    only those unchanged for at least that long."""
    stmt = select(Mailbox).where(col(Mailbox.state) != MailboxState.ACTIVE.value)
    if older_than is not None:
        stmt = stmt.where(col(Mailbox.updated_at) <= utc.now() - older_than)
    async with svc.db.session() as session:
        return list((await session.exec(stmt.order_by(col(Mailbox.updated_at), col(Mailbox.id)))).all())


def is_stale(updated_at: datetime) -> bool:
    """Whether an intent last changed at ``updated_at`` is older than :data:`STALE_AFTER`."""
    return utc.now() - utc.as_utc(updated_at) >= STALE_AFTER


async def resolve(svc: Services, mailbox_id: str, state: MailboxState) -> Outcome:
    """Complete (``deleting``) or roll back (``provisioning``) the row ``mailbox_id`` if it is
    still in ``state`` (see the module docstring). Errors from the database or the mail server
    propagate with the row left as it was (its transaction rolls back)."""
    async with svc.db.session() as session:
        if not await claim(session, mailbox_id, state):
            await session.rollback()
            return Outcome(mailbox_id, "", state.value, "gone", "no longer in this state")
        row = await session.get(Mailbox, mailbox_id)
        assert row is not None  # claimed in this transaction
        address = row.address
        action, detail = "deleted", ""
        if state is MailboxState.DELETING:
            try:
                await svc.mail.deprovision(address)
            except AccountNotFound:
                detail = "the account was already gone"
        else:
            action, detail = await _undo_account(svc, address)
        svc.jmap.forget(address)
        await delete_row(session, mailbox_id, state)
        await session.commit()
    outcome = Outcome(mailbox_id, address, state.value, action, detail)
    logger.info("reconciled %s", outcome)
    return outcome


async def _undo_account(svc: Services, address: str) -> tuple[str, str]:
    """Remove the account a rolled-back create may have made, unless it holds mail."""
    if not await svc.mail.exists(address):
        return "rolled back", "no account had been made"
    try:
        messages = await count_messages(svc, address)
    except ShipmailError as exc:  # a half-made account JMAP cannot read: its mail is unknown
        return "rolled back, account kept", f"its mail could not be counted: {exc.message}"
    if messages:
        return "rolled back, account kept", f"the account holds {messages} message(s); see shipmail doctor"
    with contextlib.suppress(AccountNotFound):
        await svc.mail.deprovision(address)
    return "rolled back", "the half-made account was removed"


async def reconcile(svc: Services, *, older_than: timedelta | None = None) -> list[Outcome]:
    """Resolve every pending row (:func:`pending`, :func:`resolve`), one after the other; a row
    that fails is reported as ``failed`` and stays for the next run. Returns one outcome per row."""
    outcomes = []
    for row in await pending(svc, older_than=older_than):
        state = MailboxState(row.state)
        try:
            outcomes.append(await resolve(svc, row.id, state))
        except (MailServerError, ShipmailError, sa.exc.SQLAlchemyError, ValueError) as exc:
            logger.warning("could not reconcile %s (%s): %s", row.id, state.value, exc)
            outcomes.append(Outcome(row.id, row.address, state.value, "failed", f"{type(exc).__name__}: {exc}"))
    return outcomes


async def reconcile_at_startup(svc: Services, seconds: float = STARTUP_SECONDS) -> list[Outcome]:
    """:func:`reconcile` bounded by ``seconds`` (``shipmail serve`` runs it before the API answers);
    on time-out what was resolved so far stays resolved and the rest waits. Never raises for the
    mail server or the database: a start-up must not fail over it (logged instead)."""
    try:
        return await asyncio.wait_for(reconcile(svc), seconds)
    except TimeoutError:
        logger.warning("start-up reconciliation stopped after %.0f s; run `shipmail doctor --repair`", seconds)
    except (MailServerError, ShipmailError, sa.exc.SQLAlchemyError) as exc:
        logger.warning("start-up reconciliation failed: %s; run `shipmail doctor --repair`", exc)
    return []
