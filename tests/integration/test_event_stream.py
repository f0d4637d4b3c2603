"""``GET /v1/mailboxes/{id}/events`` as Server-Sent Events on a real HTTP server (uvicorn) and the
real Cyrus: a client streaming with httpx sees a message delivered over LMTP within 2 s, and after
a disconnect resumes from ``Last-Event-ID`` without missing what arrived meanwhile."""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from shipmail.events import routes as event_routes
from shipmail.runtime import SHUTTING_DOWN
from tests.integration.conftest import ApiEnv
from tests.integration.corpus import corpus_bytes, unique
from tests.integration.live_app import live_server


class SseClient:
    """Reads one SSE stream in a thread; parsed events land in ``events`` (a queue)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.comments: list[str] = []
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._url, self._headers = url, {**headers, "Accept": "text/event-stream"}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the stream did not open"

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self._url, headers=self._headers) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                self._ready.set()
                fields: dict[str, str] = {}
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif not line:
                        if "data" in fields:
                            self.events.put({**fields, "at": time.monotonic()})
                        fields = {}
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._ready.set()

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._client.close()
        self._thread.join(5)


def test_a_stream_shows_new_mail_within_two_seconds_and_resumes(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stream reads the database only when woken by a recorded event (the fallback read is
    # pushed out of reach here): what arrives within 2 s came through the wake-up.
    monkeypatch.setattr(event_routes, "FALLBACK_SECONDS", 60.0)
    monkeypatch.setattr(event_routes, "POLL_SECONDS", 60.0)
    mbx = api.new_mailbox("stream.example", "hello")
    with live_server(api) as base:
        url = f"{base}/v1/mailboxes/{mbx['id']}/events"
        client = SseClient(url, api.auth())
        assert client.status == 200 and client.content_type.startswith("text/event-stream")
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "live")
        assert api.lmtp(mbx["address"], raw) == {}
        delivered = time.monotonic()  # the gateway's 250: the message is stored, its record durable
        first = client.next()
        assert first["event"] == "message.received"
        assert first["at"] - delivered < 2.0, first["at"] - delivered
        body = json.loads(first["data"])
        assert body["id"] == first["id"] and body["mailbox_id"] == mbx["id"]
        client.close()

        # Offline: two messages arrive; the resumed stream sends both, in order, then goes live.
        missed = []
        for i in range(2):
            raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), f"missed{i}")
            assert api.lmtp(mbx["address"], raw) == {}
        api.recorded()
        page = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]
        missed = [e["id"] for e in page if e["id"] != first["id"]]
        assert len(missed) == 2
        resumed = SseClient(url, {**api.auth(), "Last-Event-ID": first["id"]})
        assert [resumed.next()["id"], resumed.next()["id"]] == missed
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "after")
        assert api.lmtp(mbx["address"], raw) == {}
        live = resumed.next()
        assert live["id"] not in missed and live["id"] != first["id"]
        resumed.close()

        # An unknown Last-Event-ID is refused before the stream starts.
        r = httpx.get(url, headers={**api.auth(), "Accept": "text/event-stream", "Last-Event-ID": "evt_nope"})
        assert r.status_code == 422, r.text


def _age_events(api: ApiEnv, mailbox_id: str, days: float) -> None:
    """Move the mailbox's events ``days`` back in time (the clock of the rows, not of the test)."""
    from sqlmodel import Session, col, select

    from shipmail.events.models import Event

    engine = sa.create_engine(api.settings.database_url)
    with Session(engine) as session:
        for row in session.exec(select(Event).where(col(Event.mailbox_id) == mailbox_id)).all():
            row.created_at = row.created_at - timedelta(days=days)
            session.add(row)
        session.commit()
    engine.dispose()


def test_last_event_id_resumes_within_seven_days_and_not_after_retention(api: ApiEnv) -> None:
    """An event recorded almost 7 days ago (rows moved back in time) is still a valid resume
    point, and everything after it comes; one older than the 30 days the events are kept is
    refused (422: the client must start over from the JSON page)."""
    mbx = api.new_mailbox("stream-window.example", "hello")
    for i in range(3):
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), f"old{i}")
        assert api.lmtp(mbx["address"], raw) == {}
    api.recorded()
    page = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]
    ids = [e["id"] for e in page]
    assert len(ids) == 3
    _age_events(api, mbx["id"], days=6.99)
    with live_server(api) as base:
        url = f"{base}/v1/mailboxes/{mbx['id']}/events"
        resumed = SseClient(url, {**api.auth(), "Last-Event-ID": ids[0]})
        assert resumed.status == 200
        assert [resumed.next()["id"], resumed.next()["id"]] == ids[1:]
        resumed.close()
        _age_events(api, mbx["id"], days=23.1)  # now 30.09 days old
        r = httpx.get(url, headers={**api.auth(), "Accept": "text/event-stream", "Last-Event-ID": ids[0]})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "Last-Event-ID"


def test_a_stream_ends_cleanly_when_the_server_shuts_down(api: ApiEnv) -> None:
    mbx = api.new_mailbox("stream-shutdown.example", "hello")
    with live_server(api) as base:
        client = SseClient(f"{base}/v1/mailboxes/{mbx['id']}/events", api.auth())
        assert client.status == 200
        SHUTTING_DOWN.set()
        try:
            client._thread.join(5)
            assert not client._thread.is_alive(), "the stream did not end"
            assert client.comments[-1] == ": shutting down"
        finally:
            SHUTTING_DOWN.clear()
            client.close()
