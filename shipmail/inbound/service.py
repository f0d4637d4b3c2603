"""What the gateway does once the mail server has stored a message for a mailbox (its ``250``):
find the stored message with ONE JMAP request, then record ``message.received`` (and one
``mailbox.rule_matched`` per inbox rule that matched) and count the message in the mailbox's
``received_this_month``, in one database transaction, before the gateway answers ``250``.

Finding the message: the gateway adds a ``Received:`` trace field with its delivery id
(``dlv_...``) on top of every message it relays (:func:`received_field`). One JMAP request asks
for the account's newest :data:`LOOKUP_WINDOW` Emails (every folder, ``receivedAt`` then id,
newest first) with the summary properties, ``messageId``, ``keywords`` and every ``Received``
field; the one carrying the delivery id is the message. The same request reads the keywords the
delivery script added for the rules that matched (:func:`shipmail.rules.sieve.rule_keyword`).

When the delivery id is not among them (more than :data:`LOOKUP_WINDOW` deliveries to the
account at the same moment, or a retry whose message the server had stored before and now
dropped as a duplicate of its Message-ID), a second request looks the Message-ID up; a message
found that way is recorded only if it has no ``message.received`` yet (the event's key is the
message's JMAP id). Nothing found means the server kept nothing (a duplicate, or a rule that
discarded it): no event, and the server's ``250`` stands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

import sqlalchemy as sa
from jmapc.methods import EmailGet
from sqlmodel import col

from shipmail import utc
from shipmail.db.engine import Database
from shipmail.events import service as events
from shipmail.events.schemas import MESSAGE_RECEIVED, RULE_MATCHED
from shipmail.inbox.service import message_data
from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap.client import JmapClient
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.rules.schemas import sends_webhook
from shipmail.rules.sieve import matched_rules

logger = logging.getLogger("shipmail.inbound")

#: Newest Emails of the account searched for the delivery id.
LOOKUP_WINDOW = 5

#: What the lookup reads of each of them.
LOOKUP_PROPERTIES = [*jemail.LIST_PROPERTIES, "messageId", "header:Received:asText:all"]


def received_field(delivery_id: str, helo: str | None, peer: str | None, hostname: str) -> bytes:
    """The ``Received:`` trace field (RFC 5321 section 4.4) the gateway puts on top of a message:
    ``from <helo> ([<peer ip>]) by <hostname> (shipmail) with LMTP id <delivery_id>; <date>``.
    Only characters that cannot break the header are kept of ``helo``."""
    safe_helo = "".join(c for c in (helo or "unknown") if c.isascii() and (c.isalnum() or c in ".-_[]:"))[:255]
    where = f" ([{peer}])" if peer else ""
    stamp = format_datetime(utc.now())
    return (
        f"Received: from {safe_helo or 'unknown'}{where}\r\n"
        f"\tby {hostname} (shipmail) with LMTP id {delivery_id};\r\n\t{stamp}\r\n"
    ).encode()


def _carries(email: dict[str, Any], delivery_id: str) -> bool:
    fields = email.get("header:Received:asText:all") or []
    needle = f"id {delivery_id};"
    return any(needle in (f or "") for f in fields)


def _lookup_request(filter: jemail.Filter, limit: int) -> tuple[Request, Any]:
    request = Request()
    query = request.add(jemail.query(filter, jemail.NEWEST_FIRST, limit=limit))
    get = request.add(EmailGet(ids=request.ref(query, "/ids"), properties=LOOKUP_PROPERTIES))
    return request, get


async def find_delivered(
    jmap: JmapClient, address: str, delivery_id: str, message_id: str | None
) -> tuple[dict[str, Any] | None, bool]:
    """The raw JMAP Email the mail server stored for delivery ``delivery_id`` in ``address``'s
    account, and whether it was found by its delivery id (True) or only by ``message_id`` (the
    Message-ID without angle brackets; False). ``(None, False)`` when the account holds neither.
    Raises 503 :class:`~shipmail.http.errors.ServiceUnavailable` when the server does not answer."""
    request, get = _lookup_request({}, LOOKUP_WINDOW)
    listed = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
    for email in listed:
        if _carries(email, delivery_id):
            return email, True
    if not message_id:
        return None, False
    request, get = _lookup_request({"header": ["Message-ID", message_id]}, LOOKUP_WINDOW)
    listed = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
    for email in listed:
        if _carries(email, delivery_id):
            return email, True
    for email in listed:
        if message_id in (email.get("messageId") or []):
            return email, False
    return None, False


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_delivery` wrote: the ``message.received`` event id (None: nothing, the
    message was not stored or was recorded before) and the rule events' ids."""

    event_id: str | None
    rule_event_ids: tuple[str, ...] = ()
    message_id: str | None = None


async def record_delivery(
    db: Database, jmap: JmapClient, mailbox: Mailbox, delivery_id: str, message_id: str | None
) -> Recorded:
    """Find the message the server stored for ``mailbox`` (:func:`find_delivered`) and record it
    (see the module docstring), committed when this returns. Raises 503
    :class:`~shipmail.http.errors.ServiceUnavailable` (mail server or database), or the database's
    error: then nothing was recorded."""
    email, _by_delivery = await find_delivered(jmap, mailbox.address, delivery_id, message_id)
    if email is None:
        return Recorded(None)
    data = message_data(mailbox, email)
    folders = data["folder_ids"]
    data["folder_id"] = folders[0] if folders else None
    wire_id = ids.to_wire(ids.EMAIL, email["id"])
    keywords = [k for k, on in (email.get("keywords") or {}).items() if on]
    async with db.session() as session:
        if await events.exists(session, mailbox_id=mailbox.id, type=MESSAGE_RECEIVED, key=wire_id):
            return Recorded(None, message_id=wire_id)  # a retry of a delivery recorded before
        event = await events.record(
            session,
            organization_id=mailbox.organization_id,
            mailbox_id=mailbox.id,
            type=MESSAGE_RECEIVED,
            data=data,
            key=wire_id,
        )
        rule_events = []
        for rule in matched_rules(mailbox.rules, keywords):
            rule_event = await events.record(
                session,
                organization_id=mailbox.organization_id,
                mailbox_id=mailbox.id,
                type=RULE_MATCHED,
                data={
                    "rule_id": str(rule.id),
                    "rule_name": rule.name,
                    "message_id": wire_id,
                    "thread_id": data["thread_id"],
                    "folder_id": data["folder_id"],
                    "send_webhook": sends_webhook(rule),
                },
                key=f"{wire_id}:{rule.id}",
                notify=sends_webhook(rule),
            )
            rule_events.append(rule_event.id)
        month = utc.month_key(utc.now())
        count = col(Mailbox.received_count)
        await session.exec(
            sa.update(Mailbox)
            .where(col(Mailbox.id) == mailbox.id)
            .values(
                received_count=sa.case((col(Mailbox.received_month) == month, count + 1), else_=1),
                received_month=month,
            )
        )
        await session.commit()
    return Recorded(event.id, tuple(rule_events), wire_id)
