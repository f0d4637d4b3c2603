"""What the gateway does once the mail server has stored a message for a mailbox (its ``250``).

Two steps, so that the gateway's answer does not wait for the mail server's JMAP:

1. Before the gateway answers ``250``: one durable entry in the gateway's own journal
   (:mod:`shipmail.inbound.journal`) naming the mailbox, the gateway's delivery id, the
   Message-ID and the mail server's reply, committed together with those of the other deliveries
   finishing at the same moment (:class:`shipmail.inbound.gateway.Recorder`: one commit for all).
   Once it is committed the delivery cannot be forgotten. Right after, the gateway's mover turns
   it into the ``inbound.record`` job (:func:`accept_many`, :mod:`shipmail.jobs`) in the service's
   database; a crash in between leaves the entry to the next mover pass.
2. The job (:func:`record_job`, run by the API's worker, woken across processes by
   :mod:`shipmail.db.wake`, in delivery order per mailbox: its ordering key is the mailbox) finds
   the stored message with ONE JMAP request (:func:`find_delivered`) and records
   ``message.received`` (and one ``mailbox.rule_matched`` per inbox rule that matched) and counts
   the message in the mailbox's ``received_this_month``, in one database transaction
   (:func:`record_delivery`). A mail server that does not answer retries the job later.

So an event is never lost (the journal entry is durable before the ``250``) and never emitted for a message
that was not stored (the event is made only from the stored copy the job finds).

Finding the message: the gateway adds a ``Received:`` trace field with its delivery id
(``dlv_...``) on top of every message it relays (:func:`received_field`). One JMAP request asks
for the account's newest :data:`LOOKUP_WINDOW` Emails (every folder, ``receivedAt`` then id,
newest first) with the summary properties, ``messageId``, ``keywords`` and every ``Received``
field; the one carrying the delivery id is the message. The same request reads the keywords the
delivery script added for the rules that matched (:func:`shipmail.rules.sieve.rule_keyword`).

When the delivery id is not among them (more deliveries to the account since: the job ran late),
the Emails received since the gateway accepted the delivery are searched, oldest first, a page of
:data:`SINCE_PAGE` per request (``receivedAt`` is not a text search: it does not wait for the
mail server's search index, unlike a ``header`` filter). When it is still not found (a retry
whose message the server had stored before and now dropped as a duplicate of its Message-ID),
the Message-ID is looked up; a message found by Message-ID only is recorded only if it has no
``message.received`` yet (the event's key is the message's JMAP id). Nothing found means the
server kept nothing (a duplicate, or a rule that discarded it): no event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import sqlalchemy as sa
from jmapc.methods import EmailGet
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs, utc
from shipmail.db.engine import Database
from shipmail.events import service as events
from shipmail.events.schemas import MESSAGE_RECEIVED, RULE_MATCHED
from shipmail.http.errors import ServiceUnavailable
from shipmail.inbound.journal import Entry
from shipmail.inbox.service import message_data
from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap.client import JmapClient
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.rules.schemas import sends_webhook
from shipmail.rules.sieve import matched_rules
from shipmail.runtime import Services

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


def _lookup_request(
    filter: jemail.Filter,
    limit: int,
    sort: list[jemail.EmailComparator] | None = None,
    position: int = 0,
    properties: list[str] | None = None,
) -> tuple[Request, Any]:
    request = Request()
    query = request.add(jemail.query(filter, sort or jemail.NEWEST_FIRST, limit=limit, position=position or None))
    get = request.add(EmailGet(ids=request.ref(query, "/ids"), properties=properties or LOOKUP_PROPERTIES))
    return request, get


#: Received since the delivery, oldest first: where a late lookup finds it.
_OLDEST_FIRST: list[jemail.EmailComparator] = [
    {"property": "receivedAt", "isAscending": True},
    {"property": "id", "isAscending": True},
]
#: Emails per request (only their ``Received`` fields), and requests at most, of the search by
#: delivery time.
SINCE_PAGE = 200
SINCE_PAGES = 10


async def find_delivered(
    jmap: JmapClient, address: str, delivery_id: str, message_id: str | None, since: datetime | None = None
) -> tuple[dict[str, Any] | None, bool]:
    """The raw JMAP Email the mail server stored for delivery ``delivery_id`` in ``address``'s
    account, and whether it was found by its delivery id (True) or only by ``message_id`` (the
    Message-ID without angle brackets; False). ``(None, False)`` when the account holds neither.
    ``since`` (when the gateway accepted it) lets a lookup made late (more mail arrived since)
    find it among what was received from then on, oldest first. Raises 503
    :class:`~shipmail.http.errors.ServiceUnavailable` when the server does not answer."""
    request, get = _lookup_request({}, LOOKUP_WINDOW)
    listed = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
    for email in listed:
        if _carries(email, delivery_id):
            return email, True
    if since is not None and len(listed) == LOOKUP_WINDOW:
        # receivedAt is the mail server's clock, in whole seconds: a margin either side. Only the
        # Received fields of the candidates are read; the one match is then read in full.
        window: jemail.Filter = {"after": jemail.received_at_or_after(since - timedelta(seconds=5))}
        for page in range(SINCE_PAGES):
            request, get = _lookup_request(
                window, SINCE_PAGE, _OLDEST_FIRST, page * SINCE_PAGE, ["id", "header:Received:asText:all"]
            )
            found = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
            match = next((e for e in found if _carries(e, delivery_id)), None)
            if match is not None:
                request = Request()
                get = request.add(EmailGet(ids=[match["id"]], properties=LOOKUP_PROPERTIES))
                full = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
                return (full[0], True) if full else (None, False)
            if len(found) < SINCE_PAGE:
                break
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
    db: Database,
    jmap: JmapClient,
    mailbox: Mailbox,
    delivery_id: str,
    message_id: str | None,
    since: datetime | None = None,
) -> Recorded:
    """Find the message the server stored for ``mailbox`` (:func:`find_delivered`) and record it
    (see the module docstring), committed when this returns. Raises 503
    :class:`~shipmail.http.errors.ServiceUnavailable` (mail server or database), or the database's
    error: then nothing was recorded."""
    email, _by_delivery = await find_delivered(jmap, mailbox.address, delivery_id, message_id, since)
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


# ------------------------------------------------------------------------ the durable record

#: The job kind of step 2 (see the module docstring).
RECORD_JOB = "inbound.record"


def record_ordering(mailbox_id: str) -> str:
    """The ordering key of a mailbox's record jobs: its events are recorded in delivery order."""
    return f"inbound:{mailbox_id}"


async def accept_many(session: AsyncSession, entries: Sequence[Entry]) -> None:
    """Add the ``inbound.record`` job of each of ``entries`` (the gateway's journal, in its
    order: each mailbox's jobs run in delivery order) in one ``INSERT``
    (:func:`shipmail.jobs.enqueue_many`); the caller commits. Run by the gateway's mover
    (:class:`shipmail.inbound.gateway.Recorder`)."""
    await jobs.enqueue_many(
        session,
        RECORD_JOB,
        [
            (
                {
                    "mailbox_id": e.mailbox_id,
                    "delivery_id": e.delivery_id,
                    "message_id": e.message_id,
                    "reply": e.reply[:500],
                    "at": e.at,
                },
                record_ordering(e.mailbox_id),
            )
            for e in entries
        ],
    )


async def record_job(job: jobs.Job, svc: Services) -> None:
    """Step 2 (the ``inbound.record`` handler): find the stored message and record its events. A
    mailbox deleted meanwhile records nothing; JMAP or the database not answering retries."""
    payload = job.payload
    async with svc.db.session() as session:
        row = await session.get(Mailbox, str(payload["mailbox_id"]))
        if row is None:
            return
        session.expunge(row)
    try:
        since = datetime.fromisoformat(str(payload["at"])) if payload.get("at") else None
        await record_delivery(svc.db, svc.jmap, row, str(payload["delivery_id"]), payload.get("message_id"), since)
    except ServiceUnavailable as exc:
        raise jobs.Retry(after=min(60.0, 2.0 * job.attempts), reason=str(exc)) from None


handlers: dict[str, jobs.Handler] = {RECORD_JOB: record_job}
