"""Wire models of events (``GET /v1/mailboxes/{id}/events``; the same objects go into webhooks).

An :class:`Event` is ``{"object": "event", "id": "evt_...", "type", "mailbox_id", "data",
"created_at"}``; ``data`` depends on ``type``:

* ``message.received``: the delivered message as the inbox lists it (Shipmail's
  ``InboxMessage`` fields: ``id`` ``eml_...``, ``thread_id``, ``folder_ids``, ``from``, ``to``,
  ``subject``, ``preview``, ``has_attachment``, ``size`` in bytes, ``received_at``, ...) plus
  ``folder_id`` (the first folder holding it).
* ``mailbox.rule_matched``: ``rule_id``, ``rule_name``, ``message_id`` (``eml_...``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shipmail.events.models import Event as EventRow
from shipmail.http.schemas import Query, Wire

#: Event types this server produces (a subset of Shipmail's ``WebhookEventType``).
EventType = Literal[
    "message.received",
    "message.sent",
    "message.delivered",
    "message.bounced",
    "mailbox.rule_matched",
    "domain.verified",
    "domain.verification_failed",
]

MESSAGE_RECEIVED = "message.received"
RULE_MATCHED = "mailbox.rule_matched"


class Event(Wire):
    object: Literal["event"] = "event"
    id: str = Field(description="Event id (evt_...); also the SSE event id's source (see the stream).")
    type: str = Field(description="message.received, mailbox.rule_matched, message.sent, ...")
    mailbox_id: str | None
    data: dict[str, Any] = Field(description="The event's payload (depends on type).")
    created_at: datetime

    @classmethod
    def of(cls, row: EventRow) -> Event:
        return cls(id=row.id, type=row.type, mailbox_id=row.mailbox_id, data=row.data, created_at=row.created_at)


class EventPagination(Wire):
    has_more: bool
    next_cursor: str | None = Field(
        description="Opaque; pass as ?cursor= to read the events after this page. Present on every page "
        "(also the last), so a consumer keeps it to catch up later."
    )


class EventPage(Wire):
    data: list[Event]
    pagination: EventPagination


class EventListQuery(Query):
    cursor: str | None = Field(default=None, max_length=2048, description="next_cursor of an earlier page.")
    limit: int = Field(default=50, ge=1, le=200)
