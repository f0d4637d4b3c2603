"""Staged attachments and scheduled sends on the real Cyrus (issue 11): bytes staged into the
sending mailbox's account arrive byte-identical at the recipient; a message scheduled a few
seconds ahead is sent by the service's job worker, a cancelled one never is, a rescheduled one
leaves with its new content; a restart in between still sends it, once. Also the
``client_reference`` uniqueness and the ``metadata`` bound of the reference."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.integration.conftest import ApiEnv, AuthRegistry, CyrusFixture, api_env
from tests.integration.test_sending import mailbox, messages_in, send, wait_inbox, wait_status


def stage(api: ApiEnv, mailbox_id: str, name: str, data: bytes, kind: str, key: str | None = None) -> Any:
    return api.client.post(
        f"/v1/mailboxes/{mailbox_id}/staged-attachments",
        params={"filename": name},
        content=data,
        headers={**api.auth(key), "Content-Type": kind},
    )


def download(api: ApiEnv, path: str) -> bytes:
    r = api.client.get(f"/v1{path}" if path.startswith("/") else f"/v1/{path}", headers=api.auth())
    assert r.status_code == 200, r.text
    return r.content


def ahead(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def pair(api: ApiEnv, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    tag = secrets.token_hex(3)
    return mailbox(api, f"{prefix}a-{tag}.example", "alice", name="Alice"), mailbox(
        api, f"{prefix}b-{tag}.example", "bob", name="Bob"
    )


def inbox_subjects(api: ApiEnv, mailbox_id: str) -> list[str]:
    return [m["subject"] for m in messages_in(api, mailbox_id, "inbox")]


# ------------------------------------------------------------------------- staged attachments


def test_staged_attachment_arrives_byte_identical(api: ApiEnv) -> None:
    a, b = pair(api, "st")
    blob = os.urandom(700_000) + b"\x00\r\n\x00end"
    r = stage(api, a["id"], "Bericht über Zahlen.bin", blob, "application/x-shipmail-test")
    assert r.status_code == 201, r.text
    staged = r.json()
    assert staged["object"] == "staged_attachment" and staged["id"].startswith("sat_")
    assert staged["size"] == len(blob) and staged["sha256"] == hashlib.sha256(blob).hexdigest()
    assert staged["mailbox_id"] == a["id"] and staged["content_type"] == "application/x-shipmail-test"
    expires = datetime.fromisoformat(staged["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)

    small = b"plain inline attachment"
    import base64

    subject = f"staged {secrets.token_hex(3)}"
    r = send(
        api,
        {
            "from": a["address"],
            "to": [b["address"]],
            "subject": subject,
            "text": "see attached",
            "staged_attachment_ids": [staged["id"]],
            "attachments": [{"filename": "note.txt", "content": base64.b64encode(small).decode()}],
        },
    )
    assert r.status_code == 201, r.text
    assert {x["filename"]: x["size"] for x in r.json()["attachments"]} == {
        "Bericht über Zahlen.bin": len(blob),
        "note.txt": len(small),
    }
    got = wait_inbox(api, b["id"], subject)
    by_name = {att["name"]: att for att in got["attachments"]}
    assert set(by_name) == {"Bericht über Zahlen.bin", "note.txt"}
    assert by_name["Bericht über Zahlen.bin"]["content_type"] == "application/x-shipmail-test"
    assert download(api, by_name["Bericht über Zahlen.bin"]["download_path"]) == blob
    assert download(api, by_name["note.txt"]["download_path"]) == small


def test_staged_ids_are_bound_to_key_organisation_and_mailbox(api: ApiEnv) -> None:
    a, b = pair(api, "sb")
    staged = stage(api, a["id"], "x.txt", b"bound", "text/plain").json()
    body = {"from": a["address"], "to": [b["address"]], "subject": "bound", "text": "t"}

    other_org = api.new_key(org=f"other-{secrets.token_hex(3)}")
    other_box = mailbox(api, f"sbo-{secrets.token_hex(3)}.example", "o", name=None)
    r = send(api, {**body, "from": None, "mailbox_id": other_box["id"], "staged_attachment_ids": [staged["id"]]})
    assert r.status_code == 404, r.text  # another mailbox of the same organisation
    r = send(api, {**body, "staged_attachment_ids": [staged["id"]]}, key=api.new_key())
    assert r.status_code == 404, r.text  # another key of the same organisation
    r = send(api, {**body, "staged_attachment_ids": ["sat_doesnotexist"]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    r = api.client.post(
        f"/v1/mailboxes/{a['id']}/staged-attachments",
        params={"filename": "y"},
        content=b"z",
        headers=api.auth(other_org),
    )
    assert r.status_code == 404  # another organisation's mailbox
    assert send(api, {**body, "staged_attachment_ids": [staged["id"], staged["id"]]}).status_code == 422
    assert send(api, {**body, "staged_attachment_ids": ["not-an-id"]}).status_code == 422
    assert messages_in(api, a["id"], "sent") == []

    assert stage(api, a["id"], "empty", b"", "text/plain").status_code == 422
    assert stage(api, a["id"], "bad\r\nname", b"x", "text/plain").status_code == 422
    assert stage(api, a["id"], "bad type", b"x", "not a type").status_code == 422
    r = stage(api, a["id"], "huge.bin", b"\0" * (26214400 + 1), "application/octet-stream")
    assert r.status_code == 413, r.text
    assert send(api, {**body, "staged_attachment_ids": [staged["id"]]}).status_code == 201


def test_prepared_upload_is_single_use_and_checks_the_declared_bytes(api: ApiEnv) -> None:
    a, b = pair(api, "su")
    data = os.urandom(50_000)
    declared = {"filename": "report.pdf", "content_type": "application/pdf", "size": len(data)}
    r = api.client.post(
        f"/v1/mailboxes/{a['id']}/staged-attachment-upload-tokens",
        json={**declared, "sha256": hashlib.sha256(data).hexdigest()},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    prepared = r.json()
    assert prepared["object"] == "staged_attachment_upload" and prepared["size"] == len(data)
    path = urlsplit(prepared["upload_url"]).path
    assert path.startswith("/v1/staged-attachment-uploads/")
    r = api.client.post(
        f"/v1/mailboxes/{a['id']}/staged-attachment-upload-tokens",
        json={**declared, "sha256": "0" * 64},
        headers={**api.auth(), "Idempotency-Key": "k1"},
    )
    assert r.status_code == 422  # the reference forbids Idempotency-Key here

    assert api.client.post(path, content=data[:-1]).status_code == 422  # fewer bytes
    assert api.client.post(path, content=data + b"x").status_code == 413  # more bytes
    assert api.client.post(path, content=os.urandom(len(data))).status_code == 422  # other bytes
    r = api.client.post(path, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    staged = r.json()
    assert staged["content_type"] == "application/pdf" and staged["sha256"] == hashlib.sha256(data).hexdigest()
    assert api.client.post(path, content=data).status_code == 404  # consumed
    assert api.client.post("/v1/staged-attachment-uploads/nope", content=data).status_code == 404

    subject = f"prepared {secrets.token_hex(3)}"
    r = send(
        api,
        {
            "from": a["address"],
            "to": [b["address"]],
            "subject": subject,
            "text": "t",
            "staged_attachment_ids": [staged["id"]],
        },
    )
    assert r.status_code == 201, r.text
    (att,) = wait_inbox(api, b["id"], subject)["attachments"]
    assert att["name"] == "report.pdf" and download(api, att["download_path"]) == data


# ------------------------------------------------------------------------- scheduled sends


def test_scheduled_send_arrives_and_shows_its_lifecycle(api: ApiEnv) -> None:
    a, b = pair(api, "sc")
    staged = stage(api, a["id"], "plan.txt", b"the plan", "text/plain").json()
    subject = f"later {secrets.token_hex(3)}"
    when = ahead(4)
    r = send(
        api,
        {
            "from": a["address"],
            "to": [b["address"]],
            "subject": subject,
            "text": "scheduled body",
            "scheduled_at": when,
            "staged_attachment_ids": [staged["id"]],
        },
    )
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["status"] in ("scheduled", "queued", "sent")  # "scheduled" unless the machine stalled 4 s
    assert datetime.fromisoformat(msg["scheduled_at"].replace("Z", "+00:00")) == datetime.fromisoformat(when)
    if msg["status"] == "scheduled":
        listed = api.client.get("/v1/scheduled-messages", headers=api.auth()).json()
        assert listed["object"] == "scheduled_message_list"
        ours = [m for m in listed["data"] if m["id"] == msg["id"]]
        if ours:  # still waiting when listed
            assert ours[0]["subject"] == subject and ours[0]["text"] == "scheduled body"
            assert ours[0]["mailbox_address"] == a["address"] and ours[0]["kind"] == "scheduled"
            assert ours[0]["attachments"] == [{"filename": "plan.txt", "size": 8, "content_type": "text/plain"}]
    got = wait_inbox(api, b["id"], subject, timeout=40)
    (att,) = got["attachments"]
    assert download(api, att["download_path"]) == b"the plan"
    done = wait_status(api, msg["id"], "sent", timeout=30)
    assert done["email_id"] == msg["email_id"]  # the draft became the Sent copy
    assert [m["id"] for m in messages_in(api, a["id"], "sent")] == [msg["email_id"]]
    assert messages_in(api, a["id"], "drafts") == []
    assert api.client.get(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth()).status_code == 404
    r = api.client.delete(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth())
    assert r.status_code == 409  # dispatched: too late to cancel
    time.sleep(1.0)
    assert inbox_subjects(api, b["id"]).count(subject) == 1


def test_cancelled_message_never_arrives(api: ApiEnv) -> None:
    a, b = pair(api, "cx")
    subject = f"never {secrets.token_hex(3)}"
    r = send(
        api, {"from": a["address"], "to": [b["address"]], "subject": subject, "text": "x", "scheduled_at": ahead(6)}
    )
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["status"] == "scheduled"
    assert [m["subject"] for m in messages_in(api, a["id"], "drafts")] == [subject]  # waits in Drafts
    assert api.client.get("/v1/mailboxes/" + a["id"], headers=api.auth()).json()["daily_send_count"] == 1
    got = api.client.get(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth())
    assert got.status_code == 200 and got.json()["scheduled_message_id"] == msg["id"]
    r = api.client.delete(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth())
    assert r.status_code == 204, r.text
    assert api.client.get(f"/v1/messages/{msg['id']}", headers=api.auth()).json()["status"] == "cancelled"
    assert api.client.get(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth()).status_code == 404
    assert api.client.delete(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth()).status_code == 409
    assert api.client.get("/v1/mailboxes/" + a["id"], headers=api.auth()).json()["daily_send_count"] == 0
    assert messages_in(api, a["id"], "drafts") == []
    time.sleep(9)  # past its time, with room for the worker
    assert subject not in inbox_subjects(api, b["id"])
    assert messages_in(api, a["id"], "sent") == []
    other = api.new_key(org=f"o-{secrets.token_hex(3)}")
    assert api.client.get(f"/v1/scheduled-messages/{msg['id']}", headers=api.auth(other)).status_code == 404


def test_reschedule_and_edit_before_dispatch(api: ApiEnv) -> None:
    a, b = pair(api, "rs")
    staged = stage(api, a["id"], "keep.txt", b"kept bytes", "text/plain").json()
    subject = f"first {secrets.token_hex(3)}"
    r = send(
        api,
        {
            "from": a["address"],
            "to": [f"nobody@{b['address'].split('@')[1]}"],
            "subject": subject,
            "text": "old body",
            "scheduled_at": ahead(3600),
            "staged_attachment_ids": [staged["id"]],
        },
    )
    assert r.status_code == 201, r.text
    msg = r.json()
    new_subject = f"edited {secrets.token_hex(3)}"
    r = api.client.patch(
        f"/v1/scheduled-messages/{msg['id']}",
        json={"to": [b["address"]], "subject": new_subject, "scheduled_at": ahead(3)},
        headers=api.auth(),
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["subject"] == new_subject and edited["text"] == "old body"  # bodies kept
    assert edited["to"] == [{"address": b["address"], "name": None}]
    assert edited["attachments"] == [{"filename": "keep.txt", "size": 10, "content_type": "text/plain"}]
    got = wait_inbox(api, b["id"], new_subject, timeout=40)
    assert got["body_values"][got["text_body"][0]["part_id"]]["value"].startswith("old body")
    (att,) = got["attachments"]
    assert download(api, att["download_path"]) == b"kept bytes"
    wait_status(api, msg["id"], "sent", timeout=30)
    assert messages_in(api, a["id"], "drafts") == []  # the first draft was removed
    assert [m["subject"] for m in messages_in(api, a["id"], "sent")] == [new_subject]
    r = api.client.patch(
        f"/v1/scheduled-messages/{msg['id']}",
        json={"to": [b["address"]], "subject": "too late", "scheduled_at": ahead(60)},
        headers=api.auth(),
    )
    assert r.status_code == 409


def test_scheduled_reply_and_bounds(api: ApiEnv) -> None:
    a, b = pair(api, "sr")
    subject = f"ask {secrets.token_hex(3)}"
    assert send(api, {"from": a["address"], "to": [b["address"]], "subject": subject, "text": "q"}).status_code == 201
    got = wait_inbox(api, b["id"], subject)
    r = api.client.post(
        f"/v1/mailboxes/{b['id']}/inbox/messages/{got['id']}/reply",
        json={"to": [a["address"]], "text": "later answer", "scheduled_at": ahead(3)},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["subject"] == f"Re: {subject}" and reply["scheduled_at"] is not None
    back = wait_inbox(api, a["id"], f"Re: {subject}", timeout=40)
    assert back["in_reply_to"] == got["message_id"]
    wait_status(api, reply["id"], "sent", timeout=30)
    again = api.client.get(f"/v1/mailboxes/{b['id']}/inbox/messages/{got['id']}", headers=api.auth()).json()
    assert again["keywords"].get("$answered") is True

    body = {"from": a["address"], "to": [b["address"]], "subject": "bounds", "text": "t"}
    too_far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    r = send(api, {**body, "scheduled_at": too_far})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "scheduled_at"
    past = send(api, {**body, "subject": "past", "scheduled_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 201 and past.json()["status"] == "queued" and past.json()["scheduled_at"] is None
    assert send(api, {**body, "scheduled_at": "tomorrow"}).status_code == 422


def test_scheduled_message_survives_a_restart_and_is_sent_once(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    """Scheduled, then the service stops before its time; a new service on the same data sends
    it once its time has passed, exactly once."""
    with api_env(cyrus, authd_registry, tmp_path) as api:
        a, b = pair(api, "dr")
        subject = f"durable {secrets.token_hex(3)}"
        r = send(
            api, {"from": a["address"], "to": [b["address"]], "subject": subject, "text": "x", "scheduled_at": ahead(4)}
        )
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]
    time.sleep(5)  # its time passes while no service runs
    with api_env(cyrus, authd_registry, tmp_path) as again:
        wait_inbox(again, b["id"], subject, timeout=40)
        wait_status(again, message_id, "sent", timeout=30)
        time.sleep(2.0)
        assert inbox_subjects(again, b["id"]).count(subject) == 1
        assert len(messages_in(again, a["id"], "sent")) == 1


# ------------------------------------------------------------------------- bounds of the reference


def test_client_reference_is_unique_and_metadata_is_at_most_8_kb(api: ApiEnv) -> None:
    a, b = pair(api, "cr")
    ref = f"order-{secrets.token_hex(3)}"
    body = {"from": a["address"], "to": [b["address"]], "subject": "ref", "text": "t", "client_reference": ref}
    assert send(api, body).status_code == 201
    r = send(api, body)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["type"] == "conflict" and r.json()["error"]["details"][0]["field"] == "client_reference"
    got = wait_inbox(api, b["id"], "ref")
    r = api.client.post(
        f"/v1/mailboxes/{b['id']}/inbox/messages/{got['id']}/reply",
        json={"to": [a["address"]], "text": "t", "client_reference": ref},
        headers=api.auth(),
    )
    assert r.status_code == 409  # replies share the organisation's references
    assert messages_in(api, b["id"], "sent") == []
    other = api.new_key(org=f"cr-{secrets.token_hex(3)}")
    c = api.new_mailbox(f"crc-{secrets.token_hex(3)}.example", "c", key=other)
    r = send(api, {**body, "from": c["address"]}, key=other)
    assert r.status_code == 201, r.text  # unique within an organisation only
    assert len(api.client.get("/v1/messages", params={"client_reference": ref}, headers=api.auth()).json()["data"]) == 1

    fits = {f"k{i}": "v" * 390 for i in range(20)}  # 20 values, under 8 KB of JSON
    assert send(api, {**body, "client_reference": None, "metadata": fits}).status_code == 201
    too_big = {f"k{i}": "v" * 420 for i in range(20)}  # over 8 KB
    r = send(api, {**body, "client_reference": None, "metadata": too_big})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"].startswith("metadata")
