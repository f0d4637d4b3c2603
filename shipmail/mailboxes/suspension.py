"""Manual suspension of a mailbox: ``mailboxes.suspended_at`` plus a delivery block on the mail
server, kept in step.

Source: Shipmail ``POST /v1/mailboxes/{id}/suspend`` (``suspendMailbox``) and
``POST /v1/mailboxes/{id}/resume`` (``resumeMailbox``).

What a suspension blocks, and how:
- owner logins (IMAP, JMAP Basic): the login checker reads only mailboxes whose
  ``suspended_at`` is null (:mod:`shipmail.mailboxes.logins`), so from the commit on every new
  login fails like a wrong password. A session opened BEFORE the suspension is not cut (Cyrus
  has no admin command over IMAP for that); it can read, but not ``APPEND`` (over quota).
- receiving: :meth:`MailServer.set_suspended` makes the server refuse delivery TEMPORARILY
  (Cyrus: a ``STORAGE 0`` quota, LMTP ``452 4.2.2 Over quota``), so the sending MTA keeps the
  message and retries; after the resume the retry is delivered normally. The sandbox inbound
  endpoint answers 409 for a suspended mailbox.
- inbox rules, auto-reply, spam filing: they live in the mailbox's delivery Sieve script, which
  runs only when a message is delivered; nothing is delivered while suspended, so NO Sieve
  change is needed (the stored rules and the installed script stay as they are, can still be
  edited, and apply to mail delivered after the resume).

What stays: the mail already in the mailbox, and the API's own access to it (the service acts
over JMAP with its own credential, not the owner's login): listing, reading, flagging, moving and
deleting messages, folders and rules keep working.

Reasons: this service knows only the ``manual`` reason (billing and security suspensions do not
exist here), so ``suspended_at`` IS the manual suspension and resume clears it.

Both operations are idempotent: suspending a suspended mailbox keeps its ``suspended_at``;
resuming an active one changes nothing. Either way the server state is asserted again, which
also repairs a block lost on the server side.

Consistency across the two stores (as :func:`shipmail.mailboxes.service.create`), in the
request's session: the row is locked and changed (not committed), the server is changed, then the
commit. A failed server change rolls the row back (503 when unreachable); a failed commit
undoes the server change. Concurrent calls on one mailbox are serialised by the row lock
(PostgreSQL ``FOR UPDATE``) or the write lock (SQLite ``BEGIN IMMEDIATE``), taken BEFORE the row
is read (:func:`shipmail.mailboxes.service.get` with ``for_update``), so the decision and the
server change always match the committed state.
"""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.http.errors import Conflict, InternalError, ServiceUnavailable
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import AccountNotFound, MailServerUnavailable
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.mailboxes.suspension")


async def _apply(svc: Services, row: Mailbox, suspended: bool) -> None:
    """The server side: block or unblock delivery; 503 when unreachable, 500 without account."""
    try:
        await svc.mail.set_suspended(row.address, suspended, row.storage_quota_bytes)
    except MailServerUnavailable as exc:
        logger.warning(
            "mail server unavailable while %s %s: %s",
            "suspending" if suspended else "resuming",
            row.id,
            type(exc).__name__,
        )
        raise ServiceUnavailable("The mail server is unavailable; retry shortly.") from None
    except AccountNotFound:
        logger.error("mailbox %s has no account on the mail server", row.id)
        raise InternalError("The mailbox's account is missing on the mail server.") from None


async def _set(svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, suspended: bool) -> Mailbox:
    row = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    if row.deletion_scheduled_at is not None:
        raise Conflict(
            f"The mailbox {row.address} is scheduled for deletion; restore it first "
            f"(POST /v1/mailboxes/{row.id}/restore)."
        )
    changed = (row.suspended_at is None) == suspended
    if changed:
        now = utc.now()
        row.suspended_at = now if suspended else None
        row.updated_at = now
        session.add(row)
        await session.flush()
    await _apply(svc, row, suspended)
    try:
        await session.commit()
    except BaseException:
        if changed:
            logger.warning("suspension change of %s not saved; undoing it on the mail server", row.id)
            try:
                await svc.mail.set_suspended(row.address, not suspended, row.storage_quota_bytes)
            except Exception:
                logger.exception("could not undo the suspension change of %s on the mail server", row.id)
        raise
    return row


async def suspend(svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str) -> Mailbox:
    """Suspend the mailbox manually (see the module docstring), committed in ``session``;
    ``suspended_at`` of an already suspended mailbox is kept. 404 not the organisation's mailbox;
    503 mail server unavailable (nothing changed)."""
    return await _set(svc, session, organization_id, mailbox_id, True)


async def resume(svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str) -> Mailbox:
    """Remove the manual suspension, committed in ``session``: logins and delivery work again
    from the commit on; an active mailbox is answered as it is. 404 / 503 as :func:`suspend`."""
    return await _set(svc, session, organization_id, mailbox_id, False)
