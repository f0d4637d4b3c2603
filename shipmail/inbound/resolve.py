"""Which mailbox an inbound address delivers to: one ordered chain of resolvers.

A resolver takes the database session and the recipient address (lower-cased, as given in
``RCPT TO``) and answers the address of the mailbox to deliver to, or None when it does not
know the address. The first resolver of :data:`RESOLVERS` that answers wins; when none does, the
gateway refuses the recipient with ``550 5.1.1``. The answer must be the address of an existing
mailbox: the gateway then reads that mailbox (it must be ``active``) and hands the message to the
mail server for it.

The chain: the mailbox with that address, then an alias of a mailbox (:data:`RESOLVERS`, each
tried for the address and then for it without its ``+detail``), and only when neither knows any
of those, the domain's catch-all mailbox (:data:`FALLBACKS`, for the address as given), so that
``local+tag@`` of an existing mailbox never lands in the catch-all. Adding a resolver is one line
in one of the two tuples.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.aliases.service import resolve_alias
from shipmail.domains.service import resolve_catch_all
from shipmail.mailboxes.models import Mailbox, MailboxState

#: ``(session, address) -> mailbox address or None``.
Resolver = Callable[[AsyncSession, str], Awaitable[str | None]]


async def resolve_exact(session: AsyncSession, address: str) -> str | None:
    """The address itself when a usable (``active``) mailbox has it."""
    found = await session.exec(
        select(Mailbox.address).where(col(Mailbox.address) == address, col(Mailbox.state) == MailboxState.ACTIVE.value)
    )
    return found.first()


#: Tried in order for the address, then for it without ``+detail``: the mailbox, an alias.
RESOLVERS: tuple[Resolver, ...] = (resolve_exact, resolve_alias)
#: Tried for the address as given when no resolver of :data:`RESOLVERS` knew it: the catch-all.
FALLBACKS: tuple[Resolver, ...] = (resolve_catch_all,)


def base_address(address: str) -> str:
    """``local+detail@domain`` without ``+detail`` (RFC 5233 subaddress); others unchanged."""
    local, at, domain = address.rpartition("@")
    if not at or "+" not in local:
        return address
    return f"{local.split('+', 1)[0]}@{domain}"


async def resolve(
    session: AsyncSession,
    address: str,
    resolvers: tuple[Resolver, ...] = RESOLVERS,
    fallbacks: tuple[Resolver, ...] = FALLBACKS,
) -> str | None:
    """The mailbox address ``address`` delivers to (first answer of ``resolvers``, then of
    ``fallbacks``), or None. A subaddress (``local+detail@domain``) that no resolver knows is
    tried again without its detail (the mail server files it into ``local@domain``, and rules
    see the detail) before any fallback."""
    address = address.strip().lower()
    candidates = [address]
    if (base := base_address(address)) != address:
        candidates.append(base)
    for candidate in candidates:
        for resolver in resolvers:
            target = await resolver(session, candidate)
            if target is not None:
                return target
    for fallback in fallbacks:
        target = await fallback(session, address)
        if target is not None:
            return target
    return None
