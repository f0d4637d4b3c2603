"""The thread list's incremental reply-state scan (:mod:`shipmail.inbox.threadscan`) on the real
Cyrus: after deliveries, replies, flag changes, moves, deletes, sends and the user's updates,
every view (summary, order, pages) is exactly what a full scan of the window answers; a cached
state the server cannot compute changes from falls back to the full scan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

import pytest

from shipmail.inbox import threadscan
from tests.integration.conftest import ApiEnv
from tests.integration.test_inbox_messages import build, deliver, get, jmap_requests, new_mailbox
from tests.integration.test_reply_state import patch_state

#: The views compared: the default one (paged), the reply queues, filters.
VIEWS: list[dict[str, Any]] = [
    {},
    {"limit": 2},
    {"reply_state": "needs_reply", "sort_by": "needs_reply_since", "limit": 2},
    {"reply_state": "waiting_on_contact"},
    {"reply_state": "resolved"},
    {"sort_by": "last_message_at", "order": "desc", "limit": 3},
    {"folder_role": "inbox"},
    {"not_keyword": "$seen", "limit": 2},
    {"folder_role": "archive"},
]


def walk(api: ApiEnv, mbx: dict[str, Any], view: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of ``view``, without what depends on the second it was read at (the snapshot
    and the cursors that carry it)."""
    pages, cursor = [], None
    while True:
        page = get(api, f"/mailboxes/{mbx['id']}/inbox/threads", **view, cursor=cursor)
        cursor = page["pagination"].pop("next_cursor")
        page["pagination"].pop("snapshot_at")
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 20


@pytest.fixture
def full_scan(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function running its argument with the incremental scan switched off."""

    def run(fn: Any) -> Any:
        monkeypatch.setattr(threadscan, "INCREMENTAL", False)
        try:
            return fn()
        finally:
            monkeypatch.setattr(threadscan, "INCREMENTAL", True)

    yield run


def cached(api: ApiEnv, mbx: dict[str, Any]) -> Any:
    svc = api.client.app.state.services  # type: ignore[attr-defined]
    cache = threadscan._CACHES.get(svc.jmap)
    return None if cache is None else next((a for k, a in cache.accounts.items() if k[0] == mbx["id"]), None)


def same_as_full_scan(api: ApiEnv, mbx: dict[str, Any], full_scan: Any) -> dict[str, Any]:
    """Every view read incrementally equals the full scan's; the default view's first page."""
    assert cached(api, mbx) is not None  # warmed by an earlier read
    for view in VIEWS:
        incremental = walk(api, mbx, view)
        assert incremental == full_scan(lambda view=view: walk(api, mbx, view)), view
    # The default view still costs one JMAP request with the cache up to date.
    before = jmap_requests(api)
    page = get(api, f"/mailboxes/{mbx['id']}/inbox/threads")
    assert jmap_requests(api) - before == 1
    return page  # type: ignore[no-any-return]


def message_id(api: ApiEnv, mbx: dict[str, Any], subject: str, **params: Any) -> str:
    listed = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", **params)["data"]
    return str(next(m["id"] for m in listed if m["subject"] == subject))


def thread_of(page: dict[str, Any], subject: str) -> dict[str, Any]:
    return next(t for t in page["data"] if t["subject"] == subject)


def test_incremental_scan_equals_the_full_scan(api: ApiEnv, full_scan: Any) -> None:
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/v1/mailboxes/{mbx['id']}/inbox"
    now = datetime.now(UTC)
    sent: dict[str, Any] = {}
    for minutes, name, sender in (
        (50, "Alpha", "ann@sender.example"),
        (40, "Beta", "bob@sender.example"),
        (30, "Gamma", "carl@sender.example"),
        (20, "Delta", f"<{addr}>"),
    ):
        sent[name] = build(name, sender=sender, to=addr if name != "Delta" else "dan@else.example")
        api.import_email(addr, sent[name].as_bytes(policy=policy.SMTP), now - timedelta(minutes=minutes))
    get(api, f"/mailboxes/{mbx['id']}/inbox/threads")  # warms the cache
    state = cached(api, mbx).state
    page = same_as_full_scan(api, mbx, full_scan)
    assert page["summary"]["total"] == 4 and page["summary"]["needs_reply"] == 3

    # Deliveries: a reply joins Alpha's thread, a new thread starts.
    deliver(api, addr, build("Re: Alpha", sender="ann@sender.example", to=addr, reply_to=sent["Alpha"]))
    deliver(api, addr, build("Epsilon", sender="eve@sender.example", to=addr))
    api.recorded()
    page = same_as_full_scan(api, mbx, full_scan)
    assert cached(api, mbx).state != state
    assert page["summary"]["total"] == 5 and thread_of(page, "Re: Alpha")["message_count"] == 2

    # A flag change (read), a move to the archive.
    r = api.client.patch(f"{base}/messages/{message_id(api, mbx, 'Beta')}", json={"read": True}, headers=api.auth())
    assert r.status_code == 200, r.text
    r = api.client.post(
        f"{base}/messages/{message_id(api, mbx, 'Gamma')}/move", json={"target_role": "archive"}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    page = same_as_full_scan(api, mbx, full_scan)
    assert walk(api, mbx, {"folder_role": "archive"})[0]["summary"]["total"] == 1

    # A delete (from the Trash): Alpha's thread loses its reply, Gamma's thread goes.
    for subject in ("Re: Alpha", "Gamma"):
        folder = "inbox" if subject == "Re: Alpha" else "archive"
        mid = message_id(api, mbx, subject, folder_role=folder)
        r = api.client.post(f"{base}/messages/{mid}/move", json={"target_role": "trash"}, headers=api.auth())
        assert r.status_code == 200, r.text
        r = api.client.delete(f"{base}/messages/{mid}", headers=api.auth())
        assert r.status_code in (200, 204), r.text
    page = same_as_full_scan(api, mbx, full_scan)
    assert thread_of(page, "Alpha")["message_count"] == 1

    # A send: a reply through the API makes Epsilon's thread wait on the contact.
    epsilon = thread_of(page, "Epsilon")
    body = {"to": ["eve@sender.example"], "text": "Noted."}
    r = api.client.post(f"{base}/threads/{epsilon['id']}/reply", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
    page = same_as_full_scan(api, mbx, full_scan)
    assert thread_of(page, "Re: Epsilon")["reply_state"] == "waiting_on_contact"

    # What the user sets (read from the database on every request), then a new reply reopening it.
    beta = thread_of(page, "Beta")
    r = patch_state(api, mbx, beta["id"], {"reply_state": "resolved", "expected_reply_version": beta["reply_version"]})
    assert r.status_code == 200, r.text
    page = same_as_full_scan(api, mbx, full_scan)
    assert thread_of(page, "Beta")["reply_state"] == "resolved"
    deliver(api, addr, build("Re: Beta", sender="bob@sender.example", to=addr, reply_to=sent["Beta"]))
    api.recorded()
    page = same_as_full_scan(api, mbx, full_scan)
    assert thread_of(page, "Re: Beta")["reply_state"] == "needs_reply"


def test_unusable_state_falls_back_to_the_full_scan(api: ApiEnv, full_scan: Any) -> None:
    mbx = new_mailbox(api)
    deliver(api, mbx["address"], build("Zeta", to=mbx["address"]))
    api.recorded()
    assert get(api, f"/mailboxes/{mbx['id']}/inbox/threads")["data"][0]["unread_count"] == 1
    account = cached(api, mbx)
    # A state the server cannot compute changes from (Cyrus 3.6 answers invalidArguments to a
    # malformed one): a change to a cached thread is still seen, the window is read again in full.
    account.state = "not-a-state"
    mid = message_id(api, mbx, "Zeta")
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}/inbox/messages/{mid}", json={"read": True}, headers=api.auth())
    assert r.status_code == 200, r.text
    page = same_as_full_scan(api, mbx, full_scan)
    assert page["data"][0]["unread_count"] == 0
    assert cached(api, mbx).state != "not-a-state"
