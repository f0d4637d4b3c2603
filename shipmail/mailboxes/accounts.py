"""A mailbox's account on the mail server as the JMAP side sees it.

:func:`account` resolves a REST ``{id}`` to the organisation's mailbox (404 otherwise);
:func:`system_folders` gives the JMAP Mailbox ids of its system folders by role (inbox, drafts,
sent, trash, junk, archive). Those ids never change (system folders cannot be renamed, moved or
deleted through the API), so they are read once, at creation, and kept in ``mailboxes.folder_ids``:
a REST read then costs a single JMAP request.
"""

from __future__ import annotations

import json

from jmapc.methods import MailboxGet
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.mailboxes.models import Mailbox
from shipmail.http.errors import ServiceUnavailable
from shipmail.runtime import Services

SYSTEM_ROLES = ("inbox", "drafts", "sent", "trash", "junk", "archive")


async def fetch_system_folders(svc: Services, address: str) -> dict[str, str]:
    """Ask the server (Mailbox/get, RFC 8621 section 2.1) for the system folders' ids by role."""
    results = await svc.jmap.call(address, [MailboxGet(ids=None, properties=["id", "role"])])
    listed = results.raw("single.Mailbox/get", what="folder listing")["list"]
    roles = {m["role"]: m["id"] for m in listed if m.get("role") in SYSTEM_ROLES}
    missing = [r for r in SYSTEM_ROLES if r not in roles]
    if missing:
        raise ServiceUnavailable(f"The mailbox account lacks its system folders ({', '.join(missing)}).")
    return roles


async def system_folders(svc: Services, session: AsyncSession, row: Mailbox) -> dict[str, str]:
    """``{role: JMAP Mailbox id}`` of ``row``'s system folders: stored on the row; fetched once
    (Mailbox/get) and saved in ``session`` when a row predates the column."""
    if row.folder_ids:
        stored: dict[str, str] = json.loads(row.folder_ids)
        return stored
    roles = await fetch_system_folders(svc, row.address)
    row.folder_ids = json.dumps(roles)
    session.add(row)
    await session.commit()
    return roles


async def system_folders_legacy(svc: Services, row: Mailbox) -> dict[str, str]:  # TEMPORARY
    if row.folder_ids:
        stored: dict[str, str] = json.loads(row.folder_ids)
        return stored
    async with svc.db.session() as session:
        return await system_folders(svc, session, row)
