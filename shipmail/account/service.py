"""The organisation's totals (``GET /v1/account``): counted in the database, storage use asked of
the mail server for every mailbox (one IMAP request per 50 mailboxes on Cyrus)."""

from __future__ import annotations

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.account.schemas import Account, MailboxTotals, MessageTotals, StorageTotals
from shipmail.aliases.models import MailboxAlias
from shipmail.mailboxes import lifecycle
from shipmail.mailboxes.models import Mailbox, MailboxState, usage
from shipmail.runtime import Services


async def summary(svc: Services, session: AsyncSession, organization_id: str) -> Account:
    """The organisation's mailbox counts by status, storage use and quotas, alias count and limits,
    and its sends (the mailboxes' monthly send counters) and deliveries of the current UTC month."""
    rows = list(
        (
            await session.exec(
                select(Mailbox).where(col(Mailbox.organization_id) == organization_id).options(*lifecycle.WITHOUT_RULES)
            )
        ).all()
    )
    usable = [r for r in rows if r.state == MailboxState.ACTIVE]
    scheduled = sum(1 for r in usable if r.deletion_scheduled_at is not None)
    suspended = sum(1 for r in usable if r.deletion_scheduled_at is None and r.suspended_at is not None)
    used = await lifecycle.usage(svc, usable)
    counted = select(func.count()).select_from(MailboxAlias).where(col(MailboxAlias.organization_id) == organization_id)
    aliases = int((await session.exec(counted)).one())
    limit = svc.settings.max_mailboxes_per_org or None
    now = utc.now()
    month = utc.month_key(now)
    uses = [usage(r, svc.settings, now) for r in rows]
    return Account(
        organization_id=organization_id,
        mailboxes=MailboxTotals(
            count=len(rows),
            active=len(usable) - scheduled - suspended,
            suspended=suspended,
            deletion_scheduled=scheduled,
            limit=limit,
        ),
        storage=StorageTotals(
            used_bytes=sum(used.values()) if used or not usable else None,
            quota_bytes=sum(r.storage_quota_bytes or 0 for r in rows),
            mailboxes_without_quota=sum(1 for r in rows if r.storage_quota_bytes is None),
        ),
        aliases=aliases,
        messages=MessageTotals(
            month=month,
            sent_this_month=sum(u.monthly_count for u in uses),
            monthly_send_limit=sum(u.monthly_limit for u in uses),
            received_this_month=sum(r.received_count for r in rows if r.received_month == month),
        ),
    )
