"""A mailbox's lifecycle beyond create and delete: batch create, pause (suspend/resume by
status), scheduled deletion and restore, the storage quota and its usage.

Source: Scaleway's Mailbox API (batch create, scheduled deletion with restore), Robotomail's
mailboxes (``PATCH {"status": "paused" | "active"}``, usage counters), on Shipmail's
``/v1/mailboxes``.

Scheduled deletion (``DELETE /v1/mailboxes/{id}?grace_days=N``, N in 1..30): the row gets
``deletion_scheduled_at`` = now + N days (a day is ``SHIPMAIL_TEST_GRACE_DAY_SECONDS`` seconds in
tests) and, in the same write, the mailbox's delivery script becomes a refusal
(:mod:`shipmail.delivery.script`: Cyrus answers LMTP ``550 5.7.1``); owner logins fail (the login
checker reads only mailboxes without a scheduled deletion, :mod:`shipmail.mailboxes.logins`); the
mail stays, and the API can still read it. A suspended mailbox's delivery block (a ``STORAGE 0``
quota, answered 452) is lifted meanwhile so the refusal is the permanent 550, and put back by the
restore. :func:`restore` before the date undoes all of it. At the date :func:`purge` deletes the
mailbox as ``DELETE`` does (:func:`shipmail.mailboxes.service.delete` with ``due_by``: a restore
that committed first wins).

Every change follows the suspension's order (:mod:`shipmail.mailboxes.suspension`): the row is
locked and changed (not committed), the mail server changed, then the commit; a failed server
change rolls the row back, a failed commit undoes the server change.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs, utc
from shipmail.delivery import service as delivery
from shipmail.http.errors import (
    Conflict,
    InternalError,
    NotFound,
    ServiceUnavailable,
    ShipmailError,
    ValidationFailed,
    detail,
)
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes import suspension
from shipmail.mailboxes.models import Mailbox
from shipmail.mailboxes.schemas import BatchMailboxEntry
from shipmail.mailserver.base import AccountNotFound, MailServerError, MailServerUnavailable
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.mailboxes.lifecycle")

#: Loader options that leave the ``rules`` column out (reads that never use it).
WITHOUT_RULES = mailboxes.WITHOUT_RULES

#: Seconds of one ``grace_days`` day outside tests.
DAY_SECONDS = 86400.0


def _unavailable(exc: Exception) -> ServiceUnavailable:
    logger.warning("mail server unavailable: %s", type(exc).__name__)
    return ServiceUnavailable("The mail server is unavailable; retry shortly.")


# ---------------------------------------------------------------------------------------------
# Batch create


def _at_index(exc: ShipmailError, index: int) -> ShipmailError:
    """``exc`` with its message and every detail's field prefixed by ``mailboxes[<index>]``."""
    where = f"mailboxes[{index}]"
    details = [{**d, "field": f"{where}.{d['field']}"} for d in exc.details] or [detail(where, "invalid", exc.message)]
    located = copy.copy(exc)
    located.message, located.details = f"{where}: {exc.message}", details
    located.args = (located.message,)
    return located


async def batch_create(
    svc: Services, session: AsyncSession, organization_id: str, domain_id: str, entries: list[BatchMailboxEntry]
) -> list[Mailbox]:
    """Create every mailbox of ``entries`` on ``domain_id``, or none.

    First every entry is checked as :func:`shipmail.mailboxes.service.prepare` checks a create
    (422/409 name the entry: ``mailboxes[3]: ...``, details ``mailboxes[3].address``), the
    addresses against each other (422 ``duplicate_address``) and the organisation's limit (403);
    nothing is written until all pass. Then the mailboxes are created one after another; when one
    fails (the mail server refused or went away), the ones already made are deleted again, account
    and row, and the error is raised with its index. A deletion that cannot be done then (the
    mail server is down) is left to the reconciliation as a ``deleting`` row."""
    prepared: list[mailboxes.NewMailbox] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        try:
            new = await mailboxes.prepare(
                svc,
                session,
                organization_id,
                domain_id=domain_id,
                local_part=entry.address,
                display_name=entry.display_name,
                password=entry.password,
            )
        except ShipmailError as exc:
            raise _at_index(exc, index) from None
        if new.address in seen:
            raise _at_index(
                ValidationFailed(
                    f"The address {new.address} is also entry {seen[new.address]}.",
                    details=[detail("address", "duplicate_address", "address repeated in the batch")],
                ),
                index,
            )
        seen[new.address] = index
        prepared.append(new)
    await mailboxes.check_room(svc, session, organization_id, len(prepared))

    created: list[Mailbox] = []
    for index, new in enumerate(prepared):
        try:
            created.append(await mailboxes.create_prepared(svc, session, organization_id, new))
        except BaseException as exc:
            logger.warning("batch create failed at entry %d; deleting the %d made before it", index, len(created))
            for row in created:
                try:
                    await mailboxes.delete(svc, session, organization_id, row.id)
                except Exception:
                    logger.exception("could not delete %s after a failed batch; the reconciliation finishes it", row.id)
            if isinstance(exc, ShipmailError):
                raise _at_index(exc, index) from None
            raise
    return created


# ---------------------------------------------------------------------------------------------
# Pause (Robotomail): the same state as suspend / resume


async def set_status(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, status: str
) -> Mailbox:
    """``paused`` suspends, ``active`` resumes (:mod:`shipmail.mailboxes.suspension`); 409 while a
    deletion is scheduled."""
    if status == "paused":
        return await suspension.suspend(svc, session, organization_id, mailbox_id)
    return await suspension.resume(svc, session, organization_id, mailbox_id)


# ---------------------------------------------------------------------------------------------
# Storage quota and usage


async def set_quota(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, quota_bytes: int | None
) -> Mailbox:
    """Set (None: remove) the mailbox's storage quota, on the row and the mail server together.
    While the mailbox is suspended or scheduled for deletion only the row changes (its block is
    a quota of its own); the resume or restore puts this quota on the server. 404/409 as
    :func:`shipmail.mailboxes.service.get`; 503 mail server unavailable (nothing changed)."""
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    before = row.storage_quota_bytes
    row.storage_quota_bytes = quota_bytes
    row.updated_at = utc.now()
    session.add(row)
    await session.flush()
    blocked = row.suspended_at is not None and row.deletion_scheduled_at is None
    if not blocked:
        await _server_quota(svc, row, quota_bytes)
    try:
        await session.commit()
    except BaseException:
        if not blocked:
            try:
                await svc.mail.set_storage_quota(row.address, before)
            except Exception:
                logger.exception("could not put the previous quota of %s back", row.id)
        raise
    return row


async def _server_quota(svc: Services, row: Mailbox, quota_bytes: int | None) -> None:
    try:
        await svc.mail.set_storage_quota(row.address, quota_bytes)
    except MailServerUnavailable as exc:
        raise _unavailable(exc) from None
    except AccountNotFound:
        logger.error("mailbox %s has no account on the mail server", row.id)
        raise InternalError("The mailbox's account is missing on the mail server.") from None


async def usage(svc: Services, rows: list[Mailbox]) -> dict[str, int]:
    """``{address: bytes held}`` of ``rows`` as the mail server counts them
    (:meth:`MailServer.storage_usage`, one request); empty when the mail server cannot answer
    (the callers show null then: a list must not fail because a counter is unavailable)."""
    if not rows:
        return {}
    try:
        return await svc.mail.storage_usage([r.address for r in rows])
    except (MailServerError, ValueError) as exc:
        logger.warning("storage usage not available: %s", type(exc).__name__)
        return {}


# ---------------------------------------------------------------------------------------------
# Scheduled deletion and restore


def grace_delta(svc: Services, grace_days: int) -> timedelta:
    """``grace_days`` days (a day is ``SHIPMAIL_TEST_GRACE_DAY_SECONDS`` seconds when set)."""
    day = svc.settings.test_grace_day_seconds or DAY_SECONDS
    return timedelta(seconds=day * grace_days)


@dataclass(frozen=True)
class Scheduled:
    """The outcome of :func:`schedule_deletion`: the row and when it is purged."""

    row: Mailbox
    purge_at: datetime


async def schedule_deletion(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, grace_days: int
) -> Scheduled:
    """Schedule the deletion of the mailbox ``grace_days`` (1..30) days from now (again: the new
    date replaces the old). The refusing script is installed and a suspension's block lifted
    (see the module docstring) before the commit; the caller makes :func:`purge` run at
    ``purge_at``. 404/409 as :func:`shipmail.mailboxes.service.get`; 503 (nothing changed)."""
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    was = row.deletion_scheduled_at
    now = utc.now()
    row.deletion_scheduled_at = now + grace_delta(svc, grace_days)
    row.updated_at = now
    session.add(row)
    await session.flush()
    await _apply_scheduled(svc, row, scheduled=True, first=was is None)
    assert row.deletion_scheduled_at is not None
    await jobs.enqueue(
        session,
        PURGE_KIND,
        {"organization_id": organization_id, "mailbox_id": row.id},
        key=purge_key(row.id),
        run_at=row.deletion_scheduled_at,
        replace=True,
    )
    try:
        await session.commit()
    except BaseException:
        if was is None:
            row.deletion_scheduled_at = None
            await _undo(svc, row, scheduled=False)
        raise
    assert row.deletion_scheduled_at is not None
    return Scheduled(row, row.deletion_scheduled_at)


async def restore(svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str) -> Mailbox:
    """Cancel the scheduled deletion: the usual delivery script is back, a suspension's block
    too, logins work again (unless suspended) from the commit on. Idempotent: a mailbox without
    a scheduled deletion is answered as it is. 404/409 as :func:`shipmail.mailboxes.service.get`;
    503 (nothing changed)."""
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    if row.deletion_scheduled_at is None:
        await session.commit()  # ends the write transaction; nothing changed
        return row
    row.deletion_scheduled_at = None
    row.updated_at = utc.now()
    session.add(row)
    await session.flush()
    await _apply_scheduled(svc, row, scheduled=False, first=True)
    await jobs.cancel(session, purge_key(row.id))  # a purge running now finds nothing due
    try:
        await session.commit()
    except BaseException:
        row.deletion_scheduled_at = utc.now()
        await _undo(svc, row, scheduled=True)
        raise
    return row


async def _apply_scheduled(svc: Services, row: Mailbox, *, scheduled: bool, first: bool) -> None:
    """The mail server side of scheduling (``scheduled``) or restoring: the delivery script of
    the row as it now is, and the delivery block of a suspended mailbox lifted / put back."""
    if not first:
        return  # a new date for a mailbox already scheduled: the server is already refusing
    try:
        await delivery.install(svc, row)
        if row.suspended_at is not None:
            await svc.mail.set_suspended(row.address, not scheduled, row.storage_quota_bytes)
    except MailServerUnavailable as exc:
        raise _unavailable(exc) from None


async def _undo(svc: Services, row: Mailbox, *, scheduled: bool) -> None:
    """Best effort after a failed commit: the server as the row was before."""
    try:
        await delivery.install(svc, row)
        if row.suspended_at is not None:
            await svc.mail.set_suspended(row.address, not scheduled, row.storage_quota_bytes)
    except Exception:
        logger.exception("could not undo the deletion schedule change of %s on the mail server", row.id)


async def purge(svc: Services, organization_id: str, mailbox_id: str) -> bool:
    """Delete the mailbox if its scheduled deletion is due (in a session of its own): account,
    mail, row and aliases, as ``DELETE`` does. False when there is nothing to do (restored,
    rescheduled later, already gone). Raises what the delete raises (503: retry later)."""
    async with svc.db.session() as session:
        try:
            return await mailboxes.delete(svc, session, organization_id, mailbox_id, due_by=utc.now())
        except NotFound:
            return False


#: The job kind of a scheduled purge (:mod:`shipmail.jobs`), payload ``{organization_id, mailbox_id}``.
PURGE_KIND = "mailboxes.purge"

#: Seconds before a purge the mail server could not do is tried again.
PURGE_RETRY_SECONDS = 30.0


def purge_key(mailbox_id: str) -> str:
    """The job key of the mailbox's scheduled purge (one per mailbox)."""
    return f"purge:{mailbox_id}"


async def purge_job(job: jobs.Job, svc: Services) -> None:
    """The :data:`PURGE_KIND` handler: :func:`purge`; retried while the mail server is away or the
    mailbox is half-deleted. Idempotent (a repeat finds the mailbox gone or not due)."""
    organization_id, mailbox_id = str(job.payload["organization_id"]), str(job.payload["mailbox_id"])
    try:
        done = await purge(svc, organization_id, mailbox_id)
    except (ServiceUnavailable, MailServerUnavailable, Conflict) as exc:
        raise jobs.Retry(after=PURGE_RETRY_SECONDS, reason=type(exc).__name__) from None
    logger.info("scheduled purge of %s: %s", mailbox_id, "deleted" if done else "nothing due")


#: Background job handlers of this feature (listed in :mod:`shipmail.tasks`).
handlers: dict[str, jobs.Handler] = {PURGE_KIND: purge_job}
