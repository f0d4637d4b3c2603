"""Inbox threads end to end on the real Cyrus: replies join their thread (In-Reply-To/References),
the thread list carries counts and the latest message, a thread comes back with its bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

from tests.integration.conftest import ApiEnv
from tests.integration.test_inbox_messages import (
    build,
    costs_one_request,
    deliver,
    get,
    new_mailbox,
)


def sent_folder(api: ApiEnv, mailbox_id: str) -> str:
    from shipmail.mailboxes.models import Mailbox

    svc = api.client.app.state.services  # type: ignore[attr-defined]

    async def read() -> str:
        async with svc.db.session() as session:
            row = await session.get(Mailbox, mailbox_id)
        return "fld_" + str(json.loads(row.folder_ids)["sent"])

    return str(api.client.portal.call(read))  # type: ignore[union-attr]


def test_threads_list_and_get(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/mailboxes/{mbx['id']}/inbox"
    # Received two minutes ago, one minute ago, now (receivedAt has whole seconds).
    now = datetime.now(UTC)
    first = build("Project kickoff", body="Shall we start on Monday?\n")
    api.import_email(addr, first.as_bytes(policy=policy.SMTP), now - timedelta(minutes=2))
    unrelated = build("Unrelated", sender="other@else.example")
    api.import_email(addr, unrelated.as_bytes(policy=policy.SMTP), now - timedelta(minutes=1))
    reply = build(
        "Re: Project kickoff", sender=f"<{addr}>", to="ann@sender.example", body="Monday works.\n", reply_to=first
    )
    deliver(api, addr, reply)

    page = costs_one_request(api, lambda: get(api, f"{base}/threads"))
    assert page["object"] == "inbox_threads" and page["mailbox_id"] == mbx["id"] and page["address"] == addr
    # Per reply state: the kickoff thread was answered from the mailbox's own address, the
    # unrelated one waits for a reply.
    assert page["summary"] == {
        "total": 2,
        "needs_reply": 1,
        "waiting_on_contact": 1,
        "resolved": 0,
        "no_reply_expected": 0,
    }
    p = page["pagination"]
    assert p["total"] == 2 and p["has_more"] is False and p["next_cursor"] is None and p["limit"] == 25
    assert p["snapshot_at"]
    kickoff, unrelated = page["data"]
    assert kickoff["object"] == "inbox_thread_summary"
    assert kickoff["id"] == kickoff["thread_id"] and kickoff["id"].startswith("thr_")
    assert kickoff["message_count"] == 2 and kickoff["unread_count"] == 2
    assert kickoff["subject"] == "Re: Project kickoff"
    assert kickoff["latest_message"]["subject"] == "Re: Project kickoff"
    assert kickoff["latest_message"]["thread_id"] == kickoff["id"]
    assert kickoff["latest_from_address"] == addr
    assert kickoff["first_message_at"] < kickoff["last_message_at"]
    assert kickoff["latest_message_id"] == kickoff["latest_message"]["id"]
    assert kickoff["latest_email_id"] == kickoff["latest_message_id"].removeprefix("eml_")
    # From the mailbox's own address: outbound, although delivered to its inbox.
    assert kickoff["latest_outbound_message_id"] == kickoff["latest_message_id"]
    assert kickoff["latest_inbound_message_id"] not in (None, kickoff["latest_message_id"])
    assert (kickoff["reply_state"], kickoff["reply_version"]) == ("waiting_on_contact", 2)
    assert unrelated["reply_state"] == "needs_reply" and unrelated["needs_reply_since"] == unrelated["last_message_at"]
    assert unrelated["message_count"] == 1 and unrelated["subject"] == "Unrelated"

    # The reply goes to Sent and gets read: outbound/inbound and unread counts follow.
    reply_id = kickoff["latest_message_id"]
    msgs = f"/v1{base}/messages"
    r = api.client.post(
        f"{msgs}/{reply_id}/move", json={"target_folder_id": sent_folder(api, mbx["id"])}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    assert api.client.patch(f"{msgs}/{reply_id}", json={"read": True}, headers=api.auth()).status_code == 200
    kickoff = get(api, f"{base}/threads")["data"][0]
    assert kickoff["unread_count"] == 1 and kickoff["message_count"] == 2
    assert kickoff["latest_outbound_message_id"] == reply_id
    assert (
        kickoff["latest_inbound_message_id"] != reply_id
        and kickoff["latest_inbound_at"] < kickoff["latest_outbound_at"]
    )

    # Filters select threads by their messages: only the Inbox copy of the kickoff thread.
    inbox_only = get(api, f"{base}/threads", folder_role="inbox")
    assert [t["latest_message"]["subject"] for t in inbox_only["data"]] == ["Unrelated", "Project kickoff"]
    assert inbox_only["data"][1]["message_count"] == 2
    assert get(api, f"{base}/threads", subject="kickoff")["summary"]["total"] == 1

    # One thread with its messages, oldest first, bodies decoded.
    thread = costs_one_request(api, lambda: get(api, f"{base}/threads/{kickoff['id']}"))
    assert thread["object"] == "inbox_thread" and thread["thread_id"] == kickoff["id"]
    assert thread["mailbox_id"] == mbx["id"] and thread["address"] == addr
    assert [m["subject"] for m in thread["data"]] == ["Project kickoff", "Re: Project kickoff"]
    assert all(m["object"] == "inbox_message_full" for m in thread["data"])
    texts = [m["body_values"][m["text_body"][0]["part_id"]]["value"] for m in thread["data"]]
    assert texts == ["Shall we start on Monday?\n", "Monday works.\n"]
    assert thread["data"][1]["in_reply_to"] == [first["Message-ID"].strip("<>")]


def test_thread_paging_and_errors(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    base = f"/mailboxes/{mbx['id']}/inbox/threads"
    for i in range(5):
        deliver(api, mbx["address"], build(f"t{i}"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = get(api, base, limit=2, cursor=cursor)
        pages += 1
        assert page["pagination"]["total"] == 5, (pages, [t["subject"] for t in page["data"]], page["pagination"])
        seen += [t["subject"] for t in page["data"]]
        if pages == 1:  # received at the snapshot's (exclusive) cutoff: outside the snapshot
            late = build("late arrival").as_bytes(policy=policy.SMTP)
            api.import_email(mbx["address"], late, datetime.fromisoformat(page["pagination"]["snapshot_at"]))
        cursor = page["pagination"]["next_cursor"]
        if cursor is None:
            assert page["pagination"]["has_more"] is False
            break
    assert pages == 3 and sorted(seen) == [f"t{i}" for i in range(5)]
    page1 = get(api, base, limit=2)
    costs_one_request(api, lambda: get(api, base, limit=2, cursor=page1["pagination"]["next_cursor"]))
    r = api.client.get(
        f"/v1{base}",
        params={"limit": 2, "cursor": page1["pagination"]["next_cursor"], "subject": "t"},
        headers=api.auth(),
    )
    assert r.status_code == 422

    for tid in ("thr_Tdoesnotexist00", "Tnope", "thr_", "eml_M1", "thr_a/b"):
        r = api.client.get(f"/v1{base}/{tid}", headers=api.auth())
        assert r.status_code == 404, tid
        assert r.json()["error"]["type"] == "not_found"


def test_empty_mailbox_lists_nothing(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    page: dict[str, Any] = get(api, f"/mailboxes/{mbx['id']}/inbox/threads")
    assert page["data"] == [] and page["pagination"]["total"] == 0 and page["pagination"]["has_more"] is False
    page = get(api, f"/mailboxes/{mbx['id']}/inbox/messages")
    assert page["data"] == [] and page["pagination"]["total"] == 0
