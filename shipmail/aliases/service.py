"""Mailbox aliases: rows in our database, resolved by the inbound gateway.

Source: ``POST/GET/DELETE /v1/mailboxes/{id}/aliases``. An address belongs to one mailbox or one
alias, never both: :func:`create` answers 409 for an address that is a mailbox (in any state) or
another alias (also when a concurrent create wins: the unique index), and
:func:`shipmail.mailboxes.service.create` answers 409 for an address that is an alias.

The mail server knows nothing of aliases (Cyrus has no alias table of its own without an MTA in
front: LMTP to an alias address answers 550 5.1.1); the inbound gateway in front of it calls
:func:`resolve_alias` for each recipient and delivers to the mailbox it names.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.aliases.models import MailboxAlias
from shipmail.aliases.schemas import ALIASES_PER_MAILBOX
from shipmail.domains.models import Domain
from shipmail.http.errors import Conflict, NotFound, OverLimit
from shipmail.ids import new_id
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox, MailboxState


async def create(
    session: AsyncSession, organization_id: str, mailbox_id: str, local_part: str, description: str | None
) -> MailboxAlias:
    """Add the alias ``local_part@<the mailbox's domain>`` to the mailbox, committed. 404/409 as
    :func:`shipmail.mailboxes.service.get`; 409 the address is a mailbox or an alias; 403
    ``over_limit`` beyond :data:`ALIASES_PER_MAILBOX`."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    domain = await session.get(Domain, mailbox.domain_id)
    assert domain is not None
    address = f"{local_part.lower()}@{domain.name}"
    if (await session.exec(select(Mailbox.id).where(col(Mailbox.address) == address))).first():
        raise Conflict(f"The address {address} is a mailbox.")
    if (await session.exec(select(MailboxAlias.id).where(col(MailboxAlias.address) == address))).first():
        raise Conflict(f"The address {address} is already an alias.")
    counted = select(func.count()).select_from(MailboxAlias).where(col(MailboxAlias.mailbox_id) == mailbox.id)
    have = (await session.exec(counted)).one()
    if int(have) >= ALIASES_PER_MAILBOX:
        raise OverLimit(f"The mailbox {mailbox.address} has {ALIASES_PER_MAILBOX} aliases, the most it may have.")
    row = MailboxAlias(
        id=new_id("mal"),
        organization_id=organization_id,
        mailbox_id=mailbox.id,
        local_part=local_part.lower(),
        address=address,
        description=description,
        created_at=utc.now(),
    )
    session.add(row)
    try:
        await session.commit()
    except sa.exc.IntegrityError:
        await session.rollback()
        raise Conflict(f"The address {address} is already taken.") from None
    return row


async def list_for(session: AsyncSession, organization_id: str, mailbox_id: str) -> list[MailboxAlias]:
    """The mailbox's aliases in creation order (at most :data:`ALIASES_PER_MAILBOX`)."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id)
    stmt = (
        select(MailboxAlias)
        .where(col(MailboxAlias.mailbox_id) == mailbox.id)
        .order_by(col(MailboxAlias.created_at), col(MailboxAlias.id))
    )
    return list((await session.exec(stmt)).all())


async def delete(session: AsyncSession, organization_id: str, mailbox_id: str, alias_id: str) -> None:
    """Remove the alias (mail to it is no longer delivered), committed; 404 for an unknown alias
    or one of another mailbox."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    row = (
        await session.exec(
            select(MailboxAlias).where(col(MailboxAlias.id) == alias_id, col(MailboxAlias.mailbox_id) == mailbox.id)
        )
    ).first()
    if row is None:
        raise NotFound(f"No alias with id {alias_id!r}.")
    await session.delete(row)
    await session.commit()


async def resolve_alias(session: AsyncSession, address: str) -> str | None:
    """The address of the mailbox the alias ``address`` delivers to (any case), or None when
    ``address`` is no alias or its mailbox is not usable (being created or deleted). For the
    inbound gateway; a mailbox suspended or scheduled for deletion is still returned (its own
    delivery refusal then applies)."""
    stmt = (
        select(Mailbox.address)
        .join(MailboxAlias, col(MailboxAlias.mailbox_id) == col(Mailbox.id))
        .where(col(MailboxAlias.address) == address.strip().lower(), col(Mailbox.state) == MailboxState.ACTIVE.value)
    )
    found = (await session.exec(stmt)).first()
    return str(found) if found is not None else None
