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
   ``message.received`` (and one ``mailbox.rule_matched`` per inbox rule that matched), their
   webhook deliveries, and counts the message in the mailbox's ``received_this_month``, in one
   database transaction that also deletes the job (:func:`record_deliveries`). One run covers
   every record job of the mailbox queued behind it (at most :data:`BATCH`): one JMAP request
   finds all their messages when they are the newest (:func:`find_delivered_many`) and one
   transaction records them in delivery order and deletes all their jobs, so the CPU per message
   falls as deliveries come faster (measured on a loaded 2-core machine: 18-22 ms of API CPU per
   message with one run per delivery and the ORM, 7-8 ms now, mostly the JMAP request). A mail
   server that does not answer retries the job later (the later ones wait behind it).

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
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import sqlalchemy as sa
from jmapc.methods import EmailGet
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs, utc
from shipmail.db.engine import Database, begin_write
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
from shipmail.rules.schemas import MailboxRule, sends_webhook
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
class Delivery:
    """One accepted delivery to record: the gateway's delivery id, the Message-ID (without angle
    brackets) or None, and when the gateway accepted it (None: unknown)."""

    delivery_id: str
    message_id: str | None = None
    since: datetime | None = None


_DELIVERY_ID = re.compile(r"id ([^\s;]+);")


def _delivery_ids(email: dict[str, Any]) -> set[str]:
    """The delivery ids of the ``Received`` fields of ``email`` (``... id <delivery_id>;``): what
    :func:`_carries` tests, for many delivery ids at once."""
    found: set[str] = set()
    for f in email.get("header:Received:asText:all") or []:
        found.update(_DELIVERY_ID.findall(f or ""))
    return found


async def find_delivered_many(
    jmap: JmapClient, address: str, deliveries: Sequence[Delivery]
) -> dict[str, tuple[dict[str, Any], bool]]:
    """:func:`find_delivered` for several deliveries to ``address``'s account (in delivery order):
    ONE JMAP request for the account's newest ``LOOKUP_WINDOW + len(deliveries) - 1`` Emails
    finds all of them when they are the newest; what it misses is searched by delivery time (from
    the earliest missing one on, every page matched against all of them) and then by Message-ID.
    Maps each delivery id found to its raw Email and whether it was found by its delivery id;
    a delivery the account holds nothing of is absent. Raises 503
    :class:`~shipmail.http.errors.ServiceUnavailable` when the server does not answer."""
    if len(deliveries) == 1:
        d = deliveries[0]
        email, by_delivery = await find_delivered(jmap, address, d.delivery_id, d.message_id, d.since)
        return {} if email is None else {d.delivery_id: (email, by_delivery)}
    window = LOOKUP_WINDOW + len(deliveries) - 1
    request, get = _lookup_request({}, window)
    listed = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
    wanted = {d.delivery_id for d in deliveries}
    found: dict[str, tuple[dict[str, Any], bool]] = {}
    for email in listed:
        for delivery_id in _delivery_ids(email) & wanted:
            found.setdefault(delivery_id, (email, True))
    missing = [d for d in deliveries if d.delivery_id not in found]
    dated = [d.since for d in missing if d.since is not None]
    if dated and len(listed) == window:
        after: jemail.Filter = {"after": jemail.received_at_or_after(min(dated) - timedelta(seconds=5))}
        searched = {d.delivery_id for d in missing if d.since is not None}
        matches: dict[str, str] = {}
        for page in range(SINCE_PAGES):
            request, get = _lookup_request(
                after, SINCE_PAGE, _OLDEST_FIRST, page * SINCE_PAGE, ["id", "header:Received:asText:all"]
            )
            page_list = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
            for email in page_list:
                for delivery_id in _delivery_ids(email) & searched:
                    matches.setdefault(delivery_id, email["id"])
            if len(matches) == len(searched) or len(page_list) < SINCE_PAGE:
                break
        if matches:
            request = Request()
            get = request.add(EmailGet(ids=list(dict.fromkeys(matches.values())), properties=LOOKUP_PROPERTIES))
            full = {e["id"]: e for e in (await jmap.call(address, request)).get(get, what="delivered message")["list"]}
            for delivery_id, email_id in matches.items():
                if email_id in full:
                    found[delivery_id] = (full[email_id], True)
    for d in deliveries:
        if d.delivery_id in found or not d.message_id:
            continue
        request, get = _lookup_request({"header": ["Message-ID", d.message_id]}, LOOKUP_WINDOW)
        by_message_id = (await jmap.call(address, request)).get(get, what="delivered message")["list"]
        email = next((e for e in by_message_id if _carries(e, d.delivery_id)), None)
        if email is not None:
            found[d.delivery_id] = (email, True)
            continue
        email = next((e for e in by_message_id if d.message_id in (e.get("messageId") or [])), None)
        if email is not None:
            found[d.delivery_id] = (email, False)
    return found


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_deliveries` wrote for one delivery: the ``message.received`` event id
    (None: nothing, the message was not stored or was recorded before), the rule events' ids and
    the message's JMAP id (wire form; None when nothing was found)."""

    event_id: str | None
    rule_event_ids: tuple[str, ...] = ()
    message_id: str | None = None


@dataclass(frozen=True)
class Recipient:
    """What recording needs of a mailbox: its id, organisation, address and inbox rules."""

    id: str
    organization_id: str
    address: str
    rules: Sequence[MailboxRule]


_MAILBOX: Any = sa.select(
    col(Mailbox.id), col(Mailbox.organization_id), col(Mailbox.address), col(Mailbox.rules)
).where(col(Mailbox.id) == sa.bindparam("mailbox_id"))
_MONTH: Any = sa.bindparam("month", type_=sa.String())
_RECEIVED = sa.bindparam("received", type_=sa.Integer())
#: ``received_this_month`` plus ``received``, or ``received`` in a new month.
_MAILBOXES: sa.Table = Mailbox.__table__  # type: ignore[attr-defined]
#: On the table, not the ORM entity: an ORM-enabled UPDATE goes through the ORM's bulk-update
#: machinery (measured: ~5% of the API's CPU per message).
_COUNT: Any = (
    sa.update(_MAILBOXES)
    .where(_MAILBOXES.c.id == sa.bindparam("mailbox_id"))
    .values(
        received_count=sa.case(
            (_MAILBOXES.c.received_month == _MONTH, _MAILBOXES.c.received_count + _RECEIVED), else_=_RECEIVED
        ),
        received_month=_MONTH,
    )
)


async def recipient(db: Database, mailbox_id: str) -> Recipient | None:
    """The mailbox ``mailbox_id`` as :class:`Recipient` (a point read: no ORM session), or None."""
    row = await db.reader.one(_MAILBOX, {"mailbox_id": mailbox_id})
    if row is None:
        return None
    return Recipient(str(row[0]), str(row[1]), str(row[2]), list(row[3] or []))


async def record_deliveries(
    db: Database,
    jmap: JmapClient,
    mailbox: Recipient | Mailbox,
    deliveries: Sequence[Delivery],
    *,
    done: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> list[Recorded]:
    """Find the messages the server stored for ``deliveries`` to ``mailbox`` (in delivery order,
    :func:`find_delivered_many`: one JMAP request when they are the newest) and record them (see
    the module docstring) in ONE database transaction: the events in delivery order (a message
    whose ``message.received`` exists already records nothing), their webhook deliveries, and
    ``received_this_month`` counted once per message recorded; ``done`` runs last in the same
    transaction (the job ends itself there, :func:`shipmail.jobs.complete`). Committed when this
    returns; one :class:`Recorded` per delivery. Raises 503
    :class:`~shipmail.http.errors.ServiceUnavailable` (mail server or database), or the database's
    error: then nothing was recorded."""
    found = await find_delivered_many(jmap, mailbox.address, deliveries)
    planned: list[tuple[str, list[events.NewEvent]] | None] = []
    seen: set[str] = set()
    for d in deliveries:
        hit = found.get(d.delivery_id)
        if hit is None:
            planned.append(None)
            continue
        email = hit[0]
        wire_id = ids.to_wire(ids.EMAIL, email["id"])
        if wire_id in seen:  # two deliveries found the same message (a retry by its Message-ID)
            planned.append((wire_id, []))
            continue
        seen.add(wire_id)
        planned.append((wire_id, _events_of(mailbox, email, wire_id)))
    wanted = [e for p in planned if p is not None for e in p[1]]
    recorded: set[str] = set()
    async with db.session() as session:
        if wanted or done is not None:
            await begin_write(session)
        made = await events.record_many(
            session, organization_id=mailbox.organization_id, mailbox_id=mailbox.id, events=wanted
        )
        recorded = {e.id for e in made}
        received = sum(1 for e in made if e.type == MESSAGE_RECEIVED)
        if received:
            params = {"mailbox_id": mailbox.id, "month": utc.month_key(utc.now()), "received": received}
            await session.exec(_COUNT, params=params)
        if done is not None:
            await done(session)
        await session.commit()
    results = []
    for p in planned:
        if p is None:
            results.append(Recorded(None))
            continue
        wire_id, evs = p
        if not evs or evs[0].id not in recorded:
            results.append(Recorded(None, message_id=wire_id))
            continue
        results.append(Recorded(evs[0].id, tuple(e.id for e in evs[1:]), wire_id))
    return results


def _events_of(mailbox: Recipient | Mailbox, email: dict[str, Any], wire_id: str) -> list[events.NewEvent]:
    """``message.received`` of the stored ``email`` and one ``mailbox.rule_matched`` per rule the
    delivery script marked it with."""
    data = message_data(mailbox, email)  # type: ignore[arg-type]
    folders = data["folder_ids"]
    data["folder_id"] = folders[0] if folders else None
    made = [events.NewEvent(MESSAGE_RECEIVED, data, wire_id)]
    keywords = [k for k, on in (email.get("keywords") or {}).items() if on]
    for rule in matched_rules(mailbox.rules, keywords):
        notify = sends_webhook(rule)
        made.append(
            events.NewEvent(
                RULE_MATCHED,
                {
                    "rule_id": str(rule.id),
                    "rule_name": rule.name,
                    "message_id": wire_id,
                    "thread_id": data["thread_id"],
                    "folder_id": data["folder_id"],
                    "send_webhook": notify,
                },
                f"{wire_id}:{rule.id}",
                notify=notify,
            )
        )
    return made


async def record_delivery(
    db: Database,
    jmap: JmapClient,
    mailbox: Recipient | Mailbox,
    delivery_id: str,
    message_id: str | None,
    since: datetime | None = None,
) -> Recorded:
    """:func:`record_deliveries` of one delivery."""
    return (await record_deliveries(db, jmap, mailbox, [Delivery(delivery_id, message_id, since)]))[0]


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


#: Later queued record jobs of the same mailbox one run covers at most.
BATCH = 50

_FOLLOWERS: sa.Select[Any] = (
    sa.select(col(jobs.Job.id), col(jobs.Job.payload))
    .where(
        col(jobs.Job.ordering_key) == sa.bindparam("ordering_key"),
        col(jobs.Job.kind) == RECORD_JOB,
        col(jobs.Job.state) == jobs.QUEUED,
        col(jobs.Job.id) > sa.bindparam("job_id"),
    )
    .order_by(col(jobs.Job.id))
    .limit(BATCH)
)


def _delivery(payload: dict[str, Any]) -> Delivery:
    at = payload.get("at")
    return Delivery(
        str(payload["delivery_id"]), payload.get("message_id"), datetime.fromisoformat(str(at)) if at else None
    )


async def record_job(job: jobs.Job, svc: Services) -> None:
    """Step 2 (the ``inbound.record`` handler): find the stored messages and record their events.

    One run covers the job and the record jobs of the same mailbox queued after it (at most
    :data:`BATCH`; they cannot be claimed while this one is queued before them, so nobody else
    runs them meanwhile): one JMAP request and one transaction for all of them, in delivery order,
    which also deletes their jobs (:func:`shipmail.jobs.complete`). A crash before that commit
    leaves every one of them queued; after it, none. A mailbox deleted meanwhile records nothing;
    JMAP or the database not answering retries (the later jobs wait behind this one)."""
    payload = job.payload
    mailbox_id = str(payload["mailbox_id"])
    assert job.id is not None
    followers = await svc.db.reader.all(_FOLLOWERS, {"ordering_key": job.ordering_key, "job_id": job.id})
    also = [int(r[0]) for r in followers]
    deliveries = [_delivery(payload)]
    for _, p in followers:
        if str(p.get("mailbox_id")) != mailbox_id:
            break  # never: the ordering key is the mailbox
        deliveries.append(_delivery(p))
    also = also[: len(deliveries) - 1]

    async def done(session: AsyncSession) -> None:
        await jobs.complete(session, job, also)

    try:
        row = await recipient(svc.db, mailbox_id)
        if row is None:
            async with svc.db.session() as session:
                await done(session)
                await session.commit()
            return
        await record_deliveries(svc.db, svc.jmap, row, deliveries, done=done)
    except ServiceUnavailable as exc:
        raise jobs.Retry(after=min(60.0, 2.0 * job.attempts), reason=str(exc)) from None


handlers: dict[str, jobs.Handler] = {RECORD_JOB: record_job}
