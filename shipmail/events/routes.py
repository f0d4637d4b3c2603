"""``GET /v1/mailboxes/{id}/events``: the mailbox's events, as a live Server-Sent Events stream
(``Accept: text/event-stream``) or as a JSON page with an opaque catch-up cursor.

The stream (https://html.spec.whatwg.org/multipage/server-sent-events.html): each event is
``id: <evt_...>``, ``event: <type>``, ``data: <the Event object as JSON>``; a comment line
``: heartbeat`` every :data:`HEARTBEAT_SECONDS` seconds without events keeps proxies from closing
it. It starts after the newest event (nothing old is replayed) unless the request names where it
left off: ``Last-Event-ID: <evt_...>`` (what a browser's ``EventSource`` sends by itself when it
reconnects) or ``?cursor=`` (a JSON page's ``next_cursor``); it then first sends every later event,
without a gap, then new ones as they are recorded. Events are recorded in another process (the
job worker of another API worker) or in this one; a commit that recorded events wakes every
stream of this machine (:mod:`shipmail.db.wake`), which then reads what is new: a new message is
on screen within milliseconds of its event. Streams still read every :data:`FALLBACK_SECONDS`
seconds (every :data:`POLL_SECONDS` when wake-ups are not available). On shutdown the stream
ends within :data:`SHUTDOWN_CHECK_SECONDS` seconds (``retry: 1000`` was sent first: the client
reconnects with its ``Last-Event-ID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from shipmail.auth.scopes import Scope
from shipmail.db import wake
from shipmail.events import service
from shipmail.events.schemas import Event, EventListQuery, EventPage, EventPagination
from shipmail.http.cursors import CursorCodec, invalid_cursor
from shipmail.http.errors import ValidationFailed, detail
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.mailboxes import service as mailboxes
from shipmail.runtime import SHUTTING_DOWN, Services

operations: list[Operation] = []

KIND = "mailbox_events"
#: Seconds between two reads of new events by an open stream when wake-ups are not available.
POLL_SECONDS = 0.25
#: Seconds between two reads of an open stream that is woken by new events (a safety net only:
#: events recorded by a process on another machine sharing a PostgreSQL database).
FALLBACK_SECONDS = 5.0
#: Seconds within which an open stream notices the server shutting down.
SHUTDOWN_CHECK_SECONDS = 0.5
#: Seconds without an event after which the stream sends a heartbeat comment.
HEARTBEAT_SECONDS = 15.0
#: Events read at once by the stream.
BATCH = 100


def _cursor(codec: CursorCodec, mailbox_id: str, seq: int) -> str:
    return codec.encode(KIND, {"m": mailbox_id}, {"s": seq})


def _seq_of_cursor(codec: CursorCodec, mailbox_id: str, cursor: str) -> int:
    position = codec.decode(cursor, KIND, {"m": mailbox_id})
    seq = position.get("s")
    if not isinstance(seq, int) or seq < 0:
        raise invalid_cursor()
    return seq


def _sse(event: Event) -> bytes:
    data = json.dumps(event.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def _wait(news: asyncio.Event, seconds: float) -> None:
    """Until ``news`` is set, the server shuts down, or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while not news.is_set() and not SHUTTING_DOWN.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), min(left, SHUTDOWN_CHECK_SECONDS))


async def _stream(svc: Services, mailbox_id: str, seq: int) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    listener = await wake.listen(svc.db.url)
    news = asyncio.Event()
    unsubscribe = listener.subscribe(wake.EVENTS, news.set)
    try:
        quiet_since = time.monotonic()
        while not SHUTTING_DOWN.is_set():
            news.clear()  # before the read: an event committed after it wakes the wait below
            async with svc.db.session() as session:
                rows = await service.after(session, mailbox_id, seq, BATCH)
            for row in rows:
                assert row.seq is not None
                seq = row.seq
                yield _sse(Event.of(row))
            now = time.monotonic()
            if rows:
                quiet_since = now
                if len(rows) == BATCH:
                    continue
            elif now - quiet_since >= HEARTBEAT_SECONDS:
                quiet_since = now
                yield b": heartbeat\n\n"
            interval = FALLBACK_SECONDS if listener.active else POLL_SECONDS
            await _wait(news, max(0.0, min(interval, quiet_since + HEARTBEAT_SECONDS - time.monotonic())))
        yield b": shutting down\n\n"
    finally:
        unsubscribe()


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/events",
    operation_id="listMailboxEvents",
    summary="List or stream mailbox events",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=EventListQuery,
    response=EventPage,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
    responses={
        "200": {
            "description": "A page of events (JSON), or the live stream (text/event-stream) when asked for.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/EventPage"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    },
)
async def list_events(ctx: Context[None, EventListQuery]) -> Response | EventPage:
    """The mailbox's events in the order they happened: `message.received` (a message delivered
    through the inbound gateway or the sandbox; `data` is the message as the inbox lists it, plus
    `folder_id`) and `mailbox.rule_matched` (`data`: `rule_id`, `rule_name`, `message_id`).

    JSON (default): up to `limit` (1-200, default 50) events after `cursor`, oldest first;
    without a cursor, from the oldest kept (30 days). `pagination.next_cursor` is on every page,
    the last one too: keep it and pass it later to get only what happened since (a catch-up
    cursor). An invalid cursor answers 422.

    `Accept: text/event-stream`: a Server-Sent Events stream of the same events (`id` is the
    event id, `event` its type, `data` the Event object) that stays open; it resumes after the
    `Last-Event-ID` header (422 for an id this mailbox does not have) or after `cursor`, else
    starts with the next new event; a `: heartbeat` comment every 15 s without events. 404 for
    an unknown mailbox or one of another organisation."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    codec = ctx.services.cursors
    q = ctx.query
    seq = _seq_of_cursor(codec, row.id, q.cursor) if q.cursor else None
    if "text/event-stream" in ctx.request.headers.get("accept", ""):
        last_id = ctx.request.headers.get("last-event-id", "").strip()
        if last_id:
            seq = await service.seq_of(ctx.session, row.id, last_id)
            if seq is None:
                raise ValidationFailed(
                    f"Last-Event-ID {last_id[:64]!r} names no event of this mailbox.",
                    details=[detail("Last-Event-ID", "invalid_event_id", "unknown event id")],
                )
        if seq is None:
            seq = await service.last_seq(ctx.session, row.id)
        return StreamingResponse(
            _stream(ctx.services, row.id, seq),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    rows = await service.after(ctx.session, row.id, seq or 0, q.limit + 1)
    has_more = len(rows) > q.limit
    rows = rows[: q.limit]
    last = rows[-1].seq if rows else seq or 0
    assert last is not None
    return EventPage(
        data=[Event.of(r) for r in rows],
        pagination=EventPagination(has_more=has_more, next_cursor=_cursor(codec, row.id, last)),
    )
