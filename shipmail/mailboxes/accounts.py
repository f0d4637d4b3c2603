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

from shipmail.mailboxes.models import Mailbox
from shipmail.http.errors import ServiceUnavailable
from shipmail.mailboxes import service as mailboxes
from shipmail.runtime import Services

SYSTEM_ROLES = ("inbox", "drafts", "sent", "trash", "junk", "archive")


async def account(svc: Services, organization_id: str, mailbox_id: str) -> Mailbox:
    """The organisation's mailbox ``mailbox_id`` (404 ``not_found`` otherwise)."""
    return await mailboxes.get(svc, organization_id, mailbox_id)


async def fetch_system_folders(svc: Services, address: str) -> dict[str, str]:
    """Ask the server (Mailbox/get, RFC 8621 section 2.1) for the system folders' ids by role."""
    results = await svc.jmap.call(address, [MailboxGet(ids=None, properties=["id", "role"])])
    listed = results.raw("single.Mailbox/get", what="folder listing")["list"]
    roles = {m["role"]: m["id"] for m in listed if m.get("role") in SYSTEM_ROLES}
    missing = [r for r in SYSTEM_ROLES if r not in roles]
    if missing:
        raise ServiceUnavailable(f"The mailbox account lacks its system folders ({', '.join(missing)}).")
    return roles


async def system_folders(svc: Services, row: Mailbox) -> dict[str, str]:
    """``{role: JMAP Mailbox id}`` of ``row``'s system folders (stored; fetched once if absent)."""
    if row.folder_ids:
        stored: dict[str, str] = json.loads(row.folder_ids)
        return stored
    roles = await fetch_system_folders(svc, row.address)
    async with svc.db.session() as session:
        fresh = await session.get(Mailbox, row.id)
        if fresh is not None:
            fresh.folder_ids = json.dumps(roles)
            session.add(fresh)
            await session.commit()
    row.folder_ids = json.dumps(roles)
    return roles
