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
