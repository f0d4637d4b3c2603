"""Thread reply state and reply drafts on the real Cyrus (issue 11; issue 9's thread-list item):
inbound mail needs a reply, a reply sent waits on the contact, the user resolves with the
current ``reply_version`` (a stale one: 409), a new message reopens; per-state ``summary``
counts, ``reply_state``/``sort_by``/``order`` with keyset paging; recipient-safe drafts bound
to the version (sending one after the thread moved on: 409); the official SDK's methods."""

from __future__ import annotations

import email
import email.policy
import secrets
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any

from tests.integration.conftest import ApiEnv
from tests.integration.test_folders import load_sdk
from tests.integration.test_inbox_messages import build, costs_one_request, deliver, get, jmap_requests, new_mailbox
from tests.integration.test_sending import wait_status


def threads(api: ApiEnv, mbx: dict[str, Any], **params: Any) -> dict[str, Any]:
    return get(api, f"/mailboxes/{mbx['id']}/inbox/threads", **params)  # type: ignore[no-any-return]


def by_subject(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["latest_message"]["subject"]: t for t in page["data"]}


def patch_state(api: ApiEnv, mbx: dict[str, Any], thread_id: str, body: dict[str, Any]) -> Any:
    return api.client.patch(f"/v1/mailboxes/{mbx['id']}/inbox/threads/{thread_id}", json=body, headers=api.auth())


def counts(page: dict[str, Any]) -> tuple[int, int, int, int]:
    s = page["summary"]
    return (s["needs_reply"], s["waiting_on_contact"], s["resolved"], s["no_reply_expected"])


def test_reply_state_follows_the_messages_and_the_user(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/v1/mailboxes/{mbx['id']}/inbox"
    now = datetime.now(UTC)
    first: dict[str, EmailMessage] = {}
    for hours, name in ((3, "Alpha"), (2, "Beta"), (1, "Gamma")):
        msg = build(name, to=addr)
        first[name] = msg
        api.import_email(addr, msg.as_bytes(policy=policy.SMTP), now - timedelta(hours=hours))

    page = threads(api, mbx)
    assert counts(page) == (3, 0, 0, 0) and page["summary"]["total"] == 3
    alpha = by_subject(page)["Alpha"]
    assert (alpha["reply_state"], alpha["reply_version"], alpha["attention_state"]) == ("needs_reply", 1, "needs_reply")
    assert alpha["needs_reply_since"] == alpha["latest_inbound_at"] == alpha["first_message_at"]
    assert alpha["conversation_id"] == alpha["id"] and alpha["version"] == 1 and alpha["done_at"] is None
    # The default view is still one JMAP request (the reply-state scan rides along).
    costs_one_request(api, lambda: threads(api, mbx))

    # The reply queue, oldest first (the reference's default direction with sort_by), and back.
    queue = threads(api, mbx, reply_state="needs_reply", sort_by="needs_reply_since")
    assert [t["latest_message"]["subject"] for t in queue["data"]] == ["Alpha", "Beta", "Gamma"]
    assert threads(api, mbx, reply_state="needs_reply")["data"] == queue["data"]  # the reference's defaults
    queue = threads(api, mbx, reply_state="needs_reply", sort_by="needs_reply_since", order="desc")
    assert [t["latest_message"]["subject"] for t in queue["data"]] == ["Gamma", "Beta", "Alpha"]
    # A queue view costs two JMAP requests, whatever the number of threads.
    before = jmap_requests(api)
    threads(api, mbx, reply_state="needs_reply", sort_by="needs_reply_since")
    assert jmap_requests(api) - before == 2

    # Beta is answered through the API: it waits on the contact, its version moves on.
    beta = by_subject(page)["Beta"]
    r = api.client.post(
        f"{base}/threads/{beta['id']}/reply", json={"to": ["ann@sender.example"], "text": "On it."}, headers=api.auth()
    )
    assert r.status_code == 201, r.text
    page = threads(api, mbx)
    beta = next(t for t in page["data"] if t["id"] == beta["id"])
    assert (beta["reply_state"], beta["reply_version"], beta["needs_reply_since"]) == ("waiting_on_contact", 2, None)
    assert beta["latest_outbound_message_id"] == beta["latest_message_id"]
    assert counts(page) == (2, 1, 0, 0)
    waiting = threads(api, mbx, reply_state="waiting_on_contact")
    assert [t["id"] for t in waiting["data"]] == [beta["id"]] and waiting["pagination"]["total"] == 1
    assert [t["id"] for t in threads(api, mbx, attention_state="waiting_on_them")["data"]] == [beta["id"]]

    # The user resolves Alpha with its current version; the same version again is stale.
    r = patch_state(api, mbx, alpha["id"], {"reply_state": "resolved", "expected_reply_version": 1})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["object"] == "inbox_thread_reply_state" and done["thread_id"] == alpha["id"]
    assert (done["reply_state"], done["reply_version"], done["needs_reply_since"]) == ("resolved", 2, None)
    assert done["attention_state"] == "done" and done["done_at"] is not None
    r = patch_state(api, mbx, alpha["id"], {"reply_state": "no_reply_expected", "expected_reply_version": 1})
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict", r.text
    assert counts(threads(api, mbx)) == (1, 1, 1, 0)
    thread = get(api, f"/mailboxes/{mbx['id']}/inbox/threads/{alpha['id']}")
    assert (thread["reply_state"], thread["reply_version"], thread["version"]) == ("resolved", 2, 2)
    assert thread["latest_inbound_message_id"] == alpha["latest_inbound_message_id"]

    # A new inbound message in Alpha reopens it: needs a reply since that message.
    deliver(api, addr, build("Re: Alpha", to=addr, reply_to=first["Alpha"]))
    page = threads(api, mbx)
    alpha = next(t for t in page["data"] if t["id"] == alpha["id"])
    assert (alpha["reply_state"], alpha["reply_version"]) == ("needs_reply", 3)
    assert alpha["needs_reply_since"] == alpha["first_message_at"]  # nothing was ever sent in Alpha
    assert counts(page) == (2, 1, 0, 0)
    # An old version is refused; the current one suppresses it; reopening works the same way.
    assert (
        patch_state(api, mbx, alpha["id"], {"reply_state": "resolved", "expected_reply_version": 2}).status_code == 409
    )
    r = patch_state(api, mbx, alpha["id"], {"reply_state": "no_reply_expected", "expected_reply_version": 3})
    assert r.status_code == 200, r.text
    assert (r.json()["reply_state"], r.json()["reply_version"]) == ("no_reply_expected", 4)
    r = patch_state(api, mbx, beta["id"], {"reply_state": "needs_reply", "expected_reply_version": 2})
    assert r.status_code == 200 and r.json()["needs_reply_since"] is not None, r.text
    assert counts(threads(api, mbx)) == (2, 0, 0, 1)

    # Bad bodies and unknown threads.
    for body in ({"reply_state": "waiting_on_contact", "expected_reply_version": 1}, {"reply_state": "resolved"}, {}):
        assert patch_state(api, mbx, alpha["id"], body).status_code == 422, body
    r = patch_state(api, mbx, "thr_nope", {"reply_state": "resolved", "expected_reply_version": 1})
    assert r.status_code == 404, r.text


def test_reply_queue_keyset_paging(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    now = datetime.now(UTC)
    for i in range(5):
        msg = build(f"q{i}", to=mbx["address"])
        api.import_email(mbx["address"], msg.as_bytes(policy=policy.SMTP), now - timedelta(minutes=10 - i))
    seen: list[str] = []
    params: dict[str, Any] = {"reply_state": "needs_reply", "sort_by": "needs_reply_since", "limit": 2}
    cursor = None
    for _ in range(5):
        page = threads(api, mbx, **params, cursor=cursor)
        seen += [t["latest_message"]["subject"] for t in page["data"]]
        assert page["pagination"]["total"] == 5 and page["summary"]["needs_reply"] == 5
        cursor = page["pagination"]["next_cursor"]
        if not page["pagination"]["has_more"]:
            assert cursor is None
            break
    assert seen == [f"q{i}" for i in range(5)]
    # The cursor is bound to the view: another reply_state with it answers 422.
    first = threads(api, mbx, **params)
    r = api.client.get(
        f"/v1/mailboxes/{mbx['id']}/inbox/threads",
        params={**params, "reply_state": "resolved", "cursor": first["pagination"]["next_cursor"]},
        headers=api.auth(),
    )
    assert r.status_code == 422, r.text


def _outbox_messages(api: ApiEnv, subject: str, timeout: float = 15.0) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(api.outbox.glob("*.eml")) if api.outbox.exists() else []:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if msg["Subject"] == subject:
                found.append(msg)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_reply_drafts_are_bound_to_the_thread_version(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/v1/mailboxes/{mbx['id']}/inbox"
    tag = secrets.token_hex(3)
    original = build(
        f"Quote {tag}",
        sender='"Ann" <ann@sender.example>',
        to=f"{addr}, Bob <bob@sender.example>",
        Cc=f"Cat <cat@sender.example>, {addr.upper()}",
    )
    deliver(api, addr, original)
    (summary,) = threads(api, mbx)["data"]
    thread_id, version = summary["id"], summary["reply_version"]
    inbound_id = summary["latest_inbound_message_id"]
    drafts_url = f"{base}/threads/{thread_id}/drafts"

    # A stale version and a body without text/html are refused.
    r = api.client.post(drafts_url, json={"text": "x", "expected_reply_version": version + 1}, headers=api.auth())
    assert r.status_code == 409, r.text
    assert api.client.post(drafts_url, json={"expected_reply_version": version}, headers=api.auth()).status_code == 422

    r = api.client.post(
        drafts_url,
        json={"text": "Thanks, all.", "reply_mode": "reply_all", "expected_reply_version": version},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    draft = r.json()
    assert draft["object"] == "inbox_reply_draft" and draft["id"].startswith("drf_")
    assert (draft["thread_id"], draft["mailbox_id"], draft["status"]) == (thread_id, mbx["id"], "draft")
    assert draft["based_on_message_id"] == inbound_id and draft["expected_reply_version"] == version
    assert draft["to"] == [{"address": "ann@sender.example", "name": "Ann"}]
    assert draft["cc"] == [
        {"address": "bob@sender.example", "name": "Bob"},
        {"address": "cat@sender.example", "name": "Cat"},
    ]
    assert draft["subject"] == f"Re: Quote {tag}" and len(draft["content_sha256"]) == 64
    # The draft is the mailbox's Drafts message, in the thread, and does not move the version.
    drafts = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", folder_role="drafts")["data"]
    assert [m["id"] for m in drafts] == [draft["draft_message_id"]]
    assert drafts[0]["keywords"].get("$draft") and drafts[0]["thread_id"] == thread_id
    assert drafts[0]["in_reply_to"] == [original["Message-ID"].strip("<>")]
    assert threads(api, mbx)["data"][0]["reply_version"] == version

    # Sent through the sending path: a Message, the Sent copy, $answered, Drafts empty again.
    r = api.client.post(f"{drafts_url}/{draft['id']}/send", headers=api.auth())
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["object"] == "inbox_reply_draft_send" and sent["draft_id"] == draft["id"]
    assert sent["status"] == "sent" and sent["message"]["thread_id"] == thread_id
    assert sent["message"]["to_addresses"] == draft["to"] and sent["message"]["cc_addresses"] == draft["cc"]
    assert get(api, f"/mailboxes/{mbx['id']}/inbox/messages", folder_role="drafts")["data"] == []
    assert get(api, f"/mailboxes/{mbx['id']}/inbox/messages/{inbound_id}")["keywords"].get("$answered")
    wait_status(api, sent["message"]["id"], "sent")
    (out,) = _outbox_messages(api, f"Re: Quote {tag}")
    assert out["In-Reply-To"] == original["Message-ID"] and "cat@sender.example" in out["Cc"]
    (summary,) = threads(api, mbx)["data"]
    assert summary["reply_state"] == "waiting_on_contact" and summary["reply_version"] == version + 1
    # A sent draft is not sent twice.
    assert api.client.post(f"{drafts_url}/{draft['id']}/send", headers=api.auth()).status_code == 409

    # Ann answers; a draft made for that version is refused once the thread moves on again.
    deliver(api, addr, build(f"Re: Quote {tag}", to=addr, reply_to=original))
    version = threads(api, mbx)["data"][0]["reply_version"]
    r = api.client.post(
        drafts_url, json={"html": "<p>Sure.</p>", "expected_reply_version": version}, headers=api.auth()
    )
    assert r.status_code == 201, r.text
    late = r.json()
    assert late["cc"] == [] and late["based_on_message_id"] != inbound_id
    deliver(api, addr, build(f"Re: Quote {tag}", to=addr, body="One more thing.\n", reply_to=original))
    r = api.client.post(f"{drafts_url}/{late['id']}/send", headers=api.auth())
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict", r.text
    listed = api.client.get("/v1/messages", params={"mailbox_id": mbx["id"]}, headers=api.auth()).json()["data"]
    assert [m["id"] for m in listed] == [sent["message"]["id"]]  # nothing else was sent
    # Invalidated for good; unknown drafts and threads are 404.
    assert api.client.post(f"{drafts_url}/{late['id']}/send", headers=api.auth()).status_code == 409
    assert api.client.post(f"{drafts_url}/drf_nope/send", headers=api.auth()).status_code == 404
    r = api.client.post(
        f"{base}/threads/thr_nope/drafts", json={"text": "x", "expected_reply_version": 1}, headers=api.auth()
    )
    assert r.status_code == 404


def test_draft_scope(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    deliver(api, mbx["address"], build("Scoped", to=mbx["address"]))
    (summary,) = threads(api, mbx)["data"]
    url = f"/v1/mailboxes/{mbx['id']}/inbox/threads/{summary['id']}/drafts"
    body = {"text": "x", "expected_reply_version": summary["reply_version"]}
    reader = api.new_key(scopes=["messages:read", "messages:send"])
    assert api.client.post(url, json=body, headers=api.auth(reader)).status_code == 403
    writer = api.new_key(scopes=["drafts:write"])
    assert api.client.post(url, json=body, headers=api.auth(writer)).status_code == 201
    r = patch_state(api, mbx, summary["id"], {"reply_state": "resolved", "expected_reply_version": 1})
    assert r.status_code == 200
    other = api.new_key(org="other-org", scopes=["*"])
    r = api.client.post(url, json=body, headers=api.auth(other))
    assert r.status_code == 404

    # The thread state and the draft go with their mailbox (ON DELETE CASCADE).
    from sqlmodel import select

    from shipmail.inbox.models import InboxThreadState
    from shipmail.replydrafts.models import InboxReplyDraftRow

    svc = api.client.app.state.services  # type: ignore[attr-defined]

    async def rows() -> tuple[int, int]:
        async with svc.db.session() as session:
            states = (
                await session.exec(select(InboxThreadState).where(InboxThreadState.mailbox_id == mbx["id"]))
            ).all()
            drafts = (
                await session.exec(select(InboxReplyDraftRow).where(InboxReplyDraftRow.mailbox_id == mbx["id"]))
            ).all()
        return len(states), len(drafts)

    assert api.client.portal.call(rows) == (1, 1)  # type: ignore[union-attr]
    assert api.client.delete(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 204
    assert api.client.portal.call(rows) == (0, 0)  # type: ignore[union-attr]


def test_sdk_thread_state_and_drafts(api: ApiEnv) -> None:
    client = load_sdk().client(api)
    mbx = new_mailbox(api)
    first = build("SDK state", sender="Dee <dee@sender.example>", to=mbx["address"])
    deliver(api, mbx["address"], first)
    listed = client.mailboxes.list_inbox_threads(
        mbx["id"], {"attention_state": "needs_reply", "sort_by": "attention_since"}
    )
    (summary,) = listed["data"]
    assert summary["attention_state"] == "needs_reply" and listed["summary"]["needs_reply"] == 1
    thread = client.mailboxes.get_inbox_thread(mbx["id"], summary["thread_id"])
    assert thread["version"] == summary["version"] and thread["conversation_id"] == summary["thread_id"]

    done = client.mailboxes.update_inbox_thread_attention(
        mbx["id"], summary["thread_id"], {"expected_version": thread["version"], "done": True}
    )
    assert done["attention_state"] == "done" and done["version"] == thread["version"] + 1
    reopened = client.mailboxes.update_inbox_thread_attention(
        mbx["id"], summary["thread_id"], {"expected_version": done["version"], "done": False}
    )
    assert reopened["attention_state"] == "needs_reply"

    draft = client.mailboxes.create_inbox_reply_draft(
        mbx["id"], summary["thread_id"], {"expected_version": reopened["version"], "text": "Hello Dee"}
    )
    assert draft["expected_version"] == reopened["version"] and draft["to"][0]["address"] == "dee@sender.example"
    # The SDK's other draft methods: list, get, update (a new Drafts copy), delete.
    tid = summary["thread_id"]
    assert [d["id"] for d in client.mailboxes.list_inbox_reply_drafts(mbx["id"], tid)["data"]] == [draft["id"]]
    assert client.mailboxes.get_inbox_reply_draft(mbx["id"], tid, draft["id"])["text"] == "Hello Dee"
    changed = client.mailboxes.update_inbox_reply_draft(mbx["id"], tid, draft["id"], {"text": "Hello again, Dee"})
    assert changed["text"] == "Hello again, Dee" and changed["content_sha256"] != draft["content_sha256"]
    assert changed["draft_message_id"] != draft["draft_message_id"]
    drafts_folder = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", folder_role="drafts")["data"]
    assert [m["id"] for m in drafts_folder] == [changed["draft_message_id"]]
    spare = client.mailboxes.create_inbox_reply_draft(
        mbx["id"], tid, {"expected_version": reopened["version"], "html": "<p>x</p>"}
    )
    client.mailboxes.delete_inbox_reply_draft(mbx["id"], tid, spare["id"])
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/threads/{tid}/drafts/{spare['id']}", headers=api.auth())
    assert r.status_code == 404
    drafts_folder = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", folder_role="drafts")["data"]
    assert [m["id"] for m in drafts_folder] == [changed["draft_message_id"]]
    sent = client.mailboxes.send_inbox_reply_draft(mbx["id"], summary["thread_id"], draft["id"])
    assert sent["status"] == "sent" and sent["message"]["subject"] == "Re: SDK state"
    assert client.mailboxes.get_inbox_reply_draft(mbx["id"], tid, draft["id"])["status"] == "sent"
    after = client.mailboxes.list_inbox_threads(mbx["id"], {"attention_state": "waiting_on_them"})
    assert [t["thread_id"] for t in after["data"]] == [summary["thread_id"]]
