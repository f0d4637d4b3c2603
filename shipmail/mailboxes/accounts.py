"""A mailbox's account on the mail server as the JMAP side sees it: its system folders.

:func:`system_folders` gives the JMAP Mailbox ids of the system folders by role (inbox, drafts,
sent, trash, junk, archive; RFC 8621 section 2). Those ids never change (system folders cannot be
renamed, moved or deleted through the API), so they are read once, at creation, and kept in
``mailboxes.folder_ids``: a REST read then costs a single JMAP request.
"""

from __future__ import annotations

import json

from jmapc.methods import EmailQuery, MailboxGet
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.http.errors import ServiceUnavailable
from shipmail.jmap import mailbox as jmap_mailbox
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.runtime import Services

SYSTEM_ROLES = ("inbox", "drafts", "sent", "trash", "junk", "archive")


async def fetch_system_folders(svc: Services, address: str) -> dict[str, str]:
    """``{role: JMAP Mailbox id}`` of the system folders of ``address``'s account, asked of the
    server (ONE JMAP request: Mailbox/get, RFC 8621 section 2.1). 503 when one is missing."""
    request = Request()
    call = request.add(MailboxGet(ids=None, properties=jmap_mailbox.ROLE_PROPERTIES))
    results = await svc.jmap.call(address, request)
    roles = jmap_mailbox.roles(results.get(call, what="folder listing")["list"], SYSTEM_ROLES)
    missing = [r for r in SYSTEM_ROLES if r not in roles]
    if missing:
        raise ServiceUnavailable(f"The mailbox account lacks its system folders ({', '.join(missing)}).")
    return roles


async def count_messages(svc: Services, address: str) -> int:
    """How many messages ``address``'s account holds, in all its folders (ONE JMAP request:
    ``Email/query`` with ``calculateTotal`` and ``limit: 0``, RFC 8621 section 4.4). Errors:
    :meth:`shipmail.jmap.client.JmapClient.call`'s (404 ``not_found`` without an account)."""
    request = Request()
    call = request.add(EmailQuery(limit=0, calculate_total=True))
    results = await svc.jmap.call(address, request)
    return int(results.get(call, what="message count").get("total") or 0)


async def system_folders(svc: Services, session: AsyncSession, row: Mailbox) -> dict[str, str]:
    """``{role: JMAP Mailbox id}`` of ``row``'s system folders: stored on the row; fetched once
    (:func:`fetch_system_folders`) and committed in ``session`` when a row predates the column."""
    if row.folder_ids:
        stored: dict[str, str] = json.loads(row.folder_ids)
        return stored
    roles = await fetch_system_folders(svc, row.address)
    row.folder_ids = json.dumps(roles)
    session.add(row)
    await session.commit()
    return roles
