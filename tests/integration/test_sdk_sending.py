"""The official Shipmail SDK's send and reply methods (issue 11) against the app on a real Cyrus:
``messages.send``, ``messages.get``, ``messages.list``, ``messages.reply``,
``mailboxes.reply_to_inbox_message`` and ``mailboxes.reply_to_inbox_thread``."""

from __future__ import annotations

import secrets

from tests.integration.conftest import ApiEnv
from tests.integration.test_folders import load_sdk
from tests.integration.test_sending import mailbox, wait_inbox, wait_status


def test_sdk_send_and_reply(api: ApiEnv) -> None:
    client = load_sdk().client(api)
    tag = secrets.token_hex(3)
    a = mailbox(api, f"sdk-a-{tag}.example", "alice", name="Alice")
    b = mailbox(api, f"sdk-b-{tag}.example", "bob", name="Bob")
    subject = f"SDK hello {tag}"

    sent = client.messages.send(
        {"from": a["address"], "to": [b["address"]], "subject": subject, "text": "hi", "client_reference": tag}
    )
    assert sent["object"] == "message" and sent["status"] == "queued" and sent["mailbox_id"] == a["id"]
    assert client.messages.get(sent["id"])["id"] == sent["id"]
    listed = client.messages.list({"client_reference": tag})
    assert [m["id"] for m in listed["data"]] == [sent["id"]]
    got = wait_inbox(api, b["id"], subject)
    assert wait_status(api, sent["id"], "sent")["status"] == "sent"

    reply = client.mailboxes.reply_to_inbox_message(b["id"], got["id"], {"to": [a["address"]], "text": "hi back"})
    assert reply["subject"] == f"Re: {subject}" and reply["mailbox_id"] == b["id"]
    back = wait_inbox(api, a["id"], f"Re: {subject}")
    assert back["thread_id"] == sent["thread_id"]

    again = client.mailboxes.reply_to_inbox_thread(a["id"], back["thread_id"], {"to": [b["address"]], "text": "3"})
    assert again["thread_id"] == sent["thread_id"] and again["mailbox_id"] == a["id"]
    follow = client.messages.reply(sent["id"], {"to": [b["address"]], "text": "4"})
    assert follow["thread_id"] == sent["thread_id"]
    for m in (reply, again, follow):
        wait_status(api, m["id"], "sent")


def test_sdk_staged_attachments_and_scheduled_messages(api: ApiEnv) -> None:
    """``mailboxes.stage_attachment``, ``mailboxes.prepare_staged_attachment_upload`` and
    ``scheduled_messages.list/get/update/cancel`` against the server."""
    import hashlib
    from datetime import UTC, datetime, timedelta
    from urllib.parse import urlsplit

    from tests.integration.test_scheduled_sending import download

    client = load_sdk().client(api)
    tag = secrets.token_hex(3)
    a = mailbox(api, f"sdk-sa-{tag}.example", "alice", name="Alice")
    b = mailbox(api, f"sdk-sb-{tag}.example", "bob", name="Bob")
    data = bytes(range(256)) * 40
    staged = client.mailboxes.stage_attachment(a["id"], filename="bytes.bin", data=data, content_type="image/png")
    assert staged["object"] == "staged_attachment" and staged["size"] == len(data)
    assert staged["content_type"] == "image/png" and staged["sha256"] == hashlib.sha256(data).hexdigest()
    prepared = client.mailboxes.prepare_staged_attachment_upload(
        a["id"],
        {"filename": "p.txt", "content_type": "text/plain", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
    )
    assert prepared["object"] == "staged_attachment_upload" and prepared["size"] == 3
    r = api.client.post(urlsplit(prepared["upload_url"]).path, content=b"abc")
    assert r.status_code == 201, r.text

    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    subject = f"SDK later {tag}"
    sent = client.messages.send(
        {
            "from": a["address"],
            "to": [b["address"]],
            "subject": subject,
            "text": "x",
            "scheduled_at": later,
            "staged_attachment_ids": [staged["id"], r.json()["id"]],
        }
    )
    assert sent["status"] == "scheduled"
    listed = client.scheduled_messages.list({"search": subject})
    assert listed["object"] == "scheduled_message_list" and [m["id"] for m in listed["data"]] == [sent["id"]]
    assert listed["total"] == 1
    got = client.scheduled_messages.get(sent["id"])
    assert got["object"] == "scheduled_message" and [x["filename"] for x in got["attachments"]] == [
        "bytes.bin",
        "p.txt",
    ]
    updated = client.scheduled_messages.update(
        sent["id"],
        {
            "to": [b["address"]],
            "subject": f"{subject} now",
            "scheduled_at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat(),
        },
    )
    assert updated["subject"] == f"{subject} now"
    arrived = wait_inbox(api, b["id"], f"{subject} now", timeout=40)
    by_name = {x["name"]: x for x in arrived["attachments"]}
    assert download(api, by_name["bytes.bin"]["download_path"]) == data
    assert download(api, by_name["p.txt"]["download_path"]) == b"abc"

    other = client.messages.send(
        {"from": a["address"], "to": [b["address"]], "subject": f"{subject} never", "text": "x", "scheduled_at": later}
    )
    client.scheduled_messages.cancel(other["id"])
    assert client.messages.get(other["id"])["status"] == "cancelled"
    assert client.scheduled_messages.list({"search": subject})["data"] == []
