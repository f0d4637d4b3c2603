"""Record events and read them back in order.

:func:`record` is what other features call, inside their own transaction, when something
happened (the inbound gateway's ``message.received`` and ``mailbox.rule_matched``; sending's
``message.sent`` and domains' ``domain.verified`` when they are wired): the event is durable
exactly when their change is. Readers go by ``seq`` (:mod:`shipmail.events.models`):
:func:`after` for the stream and the catch-up page.

Ordering: ``seq`` is assigned at insert, and two PostgreSQL transactions could commit out of
their ``seq`` order; a reader that saw the later one first would skip the earlier for good.
:func:`record` therefore takes a transaction-scoped advisory lock on PostgreSQL before inserting,
so event-writing transactions commit one at a time in ``seq`` order (SQLite has one writer at a
time anyway).

Once the transaction commits, open event streams of this machine are woken
(:func:`shipmail.db.wake.after_commit`). Every recorded event is handed to the organisation's
webhooks in the same transaction (:func:`shipmail.webhooks.service.fan_out`): a delivery exists
exactly when its event does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.db import wake
from shipmail.events.models import Event
from shipmail.ids import new_id
from shipmail.webhooks import service as webhooks

#: The PostgreSQL advisory lock key that serialises event-writing transactions.
EVENT_LOCK_KEY = 0x5EB_E7E7

#: How long events are kept readable for the stream's ``Last-Event-ID`` and the catch-up cursor.
RETENTION = timedelta(days=30)


async def record(
    session: AsyncSession,
    *,
    organization_id: str,
    mailbox_id: str | None,
    type: str,
    data: dict[str, Any],
    key: str | None = None,
    notify: bool = True,
) -> Event:
    """Add an event to ``session``'s transaction (flushed: ``seq`` is set; the caller commits),
    and, unless ``notify`` is False, its deliveries to the organisation's webhooks.

    ``key`` makes it idempotent per (``mailbox_id``, ``type``): when an event with the same key
    exists, that one is returned and nothing is added (a retried delivery's ``message.received``).
    """
    await _lock(session)
    if key is not None:
        existing = (
            await session.exec(
                select(Event).where(col(Event.mailbox_id) == mailbox_id, col(Event.type) == type, col(Event.key) == key)
            )
        ).first()
        if existing is not None:
            return existing
    event = Event(
        id=new_id("evt"),
        organization_id=organization_id,
        mailbox_id=mailbox_id,
        type=type,
        key=key,
        data=data,
        created_at=utc.now(),
    )
    session.add(event)
    await session.flush()
    wake.after_commit(session, wake.EVENTS)
    if notify:
        await webhooks.fan_out(session, event)
    return event


@dataclass
class NewEvent:
    """One event for :func:`record_many`: its ``type``, ``data``, ``key`` (idempotency per mailbox
    and type) and whether it goes to webhooks (``notify``); ``id`` is set when it is recorded."""

    type: str
    data: dict[str, Any]
    key: str
    notify: bool = True
    id: str = field(default="")


_TABLE: sa.Table = Event.__table__  # type: ignore[attr-defined]
#: Built once: a statement object keeps its compiled cache key (recomputing it costs more CPU than
#: running the statement).
_LOCK: Any = sa.select(sa.func.pg_advisory_xact_lock(EVENT_LOCK_KEY))
_EXISTING: Any = sa.select(_TABLE.c.type, _TABLE.c.key).where(
    _TABLE.c.mailbox_id == sa.bindparam("mailbox_id"), _TABLE.c.key.in_(sa.bindparam("keys", expanding=True))
)
_INSERT = sa.insert(_TABLE)


async def _lock(session: AsyncSession) -> None:
    """On PostgreSQL, take the transaction's event lock (events get their ``seq`` in commit order)."""
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await session.exec(_LOCK)


async def record_many(
    session: AsyncSession, *, organization_id: str, mailbox_id: str, events: Sequence[NewEvent]
) -> list[NewEvent]:
    """:func:`record` for several events of one mailbox at once, in their order (``seq`` follows
    it), with one statement per step rather than one ORM object per event: the event lock, one
    read of which ``(type, key)`` exist already (those are skipped, as :func:`record` does), one
    ``INSERT`` of the rest, and their webhook deliveries (:func:`shipmail.webhooks.service.fan_out_many`).
    The caller commits. Returns the events recorded, their ``id`` set."""
    if not events:
        return []
    await _lock(session)
    keys = list({e.key for e in events})
    found = await session.exec(_EXISTING, params={"mailbox_id": mailbox_id, "keys": keys})
    existing = {(t, k) for t, k in found.all()}
    made: list[NewEvent] = []
    now = utc.now()
    for e in events:
        if (e.type, e.key) in existing:
            continue
        existing.add((e.type, e.key))
        e.id = new_id("evt")
        made.append(e)
    if not made:
        return []
    await session.exec(
        _INSERT,
        params=[
            {
                "id": e.id,
                "organization_id": organization_id,
                "mailbox_id": mailbox_id,
                "type": e.type,
                "key": e.key,
                "data": e.data,
                "created_at": now,
            }
            for e in made
        ],
    )
    wake.after_commit(session, wake.EVENTS)
    await webhooks.fan_out_many(
        session, organization_id, [(e.id, e.type, mailbox_id, e.data) for e in made if e.notify]
    )
    return made


async def exists(session: AsyncSession, *, mailbox_id: str, type: str, key: str) -> bool:
    """Whether an event of ``type`` with ``key`` was recorded for the mailbox."""
    found = await session.exec(
        select(Event.seq).where(col(Event.mailbox_id) == mailbox_id, col(Event.type) == type, col(Event.key) == key)
    )
    return found.first() is not None


async def after(session: AsyncSession, mailbox_id: str, seq: int, limit: int) -> list[Event]:
    """The mailbox's events with ``seq`` greater than ``seq``, oldest first, at most ``limit``."""
    rows = await session.exec(
        select(Event)
        .where(col(Event.mailbox_id) == mailbox_id, col(Event.seq) > seq)
        .order_by(col(Event.seq))
        .limit(limit)
    )
    return list(rows.all())


async def last_seq(session: AsyncSession, mailbox_id: str) -> int:
    """The ``seq`` of the mailbox's newest event, 0 when it has none."""
    value = (await session.exec(select(sa.func.max(Event.seq)).where(col(Event.mailbox_id) == mailbox_id))).first()
    return int(value or 0)


async def seq_of(session: AsyncSession, mailbox_id: str, event_id: str) -> int | None:
    """The ``seq`` of the mailbox's event ``event_id`` (None: unknown, another mailbox's, or older
    than :data:`RETENTION`)."""
    value = (
        await session.exec(
            select(Event.seq).where(
                col(Event.id) == event_id,
                col(Event.mailbox_id) == mailbox_id,
                col(Event.created_at) >= utc.now() - RETENTION,
            )
        )
    ).first()
    return int(value) if value is not None else None
