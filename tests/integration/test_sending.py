"""Sending on the real Cyrus: ``POST /v1/messages`` and the replies go through Email/import +
EmailSubmission/set, Cyrus's sendmail spool and the one outgoing queue; local recipients get the
mail over LMTP. A sends to B, B replies, the reply is in A's thread; Sent folders, ``$answered``
and an IMAP login as A agree."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import ApiEnv, AuthRegistry, CyrusFixture, api_env, free_port, imap_login


def mailbox(api: ApiEnv, domain: str, local: str, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"password": "CorrectHorse9!x"}
    if name is not None:
        body["display_name"] = name
    return api.new_mailbox(domain, local, **body)


def send(api: ApiEnv, body: dict[str, Any], key: str | None = None) -> Any:
    return api.client.post("/v1/messages", json=body, headers=api.auth(key))


def wait_inbox(api: ApiEnv, mailbox_id: str, subject: str, timeout: float = 15.0) -> dict[str, Any]:
    """The first inbox message of ``mailbox_id`` with ``subject`` (waits for the queue)."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.client.get(
            f"/v1/mailboxes/{mailbox_id}/inbox/messages", params={"folder_role": "inbox"}, headers=api.auth()
        )
        assert r.status_code == 200, r.text
        found = [m for m in r.json()["data"] if m["subject"] == subject]
        if found:
            full = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages/{found[0]['id']}", headers=api.auth())
            assert full.status_code == 200, full.text
            return full.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{subject!r} did not arrive in {mailbox_id}"
        time.sleep(0.1)


def wait_status(api: ApiEnv, message_id: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.client.get(f"/v1/messages/{message_id}", headers=api.auth())
        assert r.status_code == 200, r.text
        if r.json()["status"] == status:
            return r.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{message_id} is {r.json()['status']}, not {status}: {r.json()}"
        time.sleep(0.1)


def messages_in(api: ApiEnv, mailbox_id: str, role: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages", params={"folder_role": role}, headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_a_sends_to_b_and_b_replies_in_the_same_thread(api: ApiEnv) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"a-{tag}.example", "alice", name="Alice Ångström")
    b = mailbox(api, f"b-{tag}.example", "bob", name="Bob Builder")
    subject = f"Quarterly numbers {tag}"
    r = send(
        api,
        {
            "from": a["address"],
            "to": [{"address": b["address"], "name": "Bob"}],
            "subject": subject,
            "text": "Hello Bob,\nthe numbers are in.\n",
            "html": "<p>Hello Bob, the numbers are in.</p>",
            "client_reference": f"ref-{tag}",
            "metadata": {"campaign": "q4", "n": 3},
        },
    )
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["object"] == "message" and sent["id"].startswith("msg_")
    assert sent["mailbox_id"] == a["id"] and sent["from_address"] == a["address"]
    assert sent["status"] == "queued" and sent["source"] == "api"
    assert sent["to_addresses"] == [{"address": b["address"], "name": "Bob"}]
    assert sent["client_reference"] == f"ref-{tag}" and sent["metadata"] == {"campaign": "q4", "n": 3}
    assert sent["thread_id"].startswith("thr_") and sent["email_id"].startswith("eml_")
    assert sent["source_rfc_message_id"].endswith(f"@a-{tag}.example>")

    # B's inbox shows it with A's display name.
    got = wait_inbox(api, b["id"], subject)
    assert got["from"] == [{"name": "Alice Ångström", "email": a["address"]}]
    assert got["message_id"] == [sent["source_rfc_message_id"][1:-1]]
    assert got["body_values"][got["text_body"][0]["part_id"]]["value"].startswith("Hello Bob,")
    assert wait_status(api, sent["id"], "sent")["last_error"] is None

    # A's Sent holds the original (no $draft), Drafts is empty.
    a_sent = messages_in(api, a["id"], "sent")
    assert [m["id"] for m in a_sent] == [sent["email_id"]]
    assert "$draft" not in a_sent[0]["keywords"] and a_sent[0]["keywords"].get("$seen")
    assert messages_in(api, a["id"], "drafts") == []

    # B replies to that message.
    r = api.client.post(
        f"/v1/mailboxes/{b['id']}/inbox/messages/{got['id']}/reply",
        json={"to": [a["address"]], "text": "Thanks, Alice."},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["subject"] == f"Re: {subject}" and reply["from_address"] == b["address"]
    assert reply["thread_id"] == got["thread_id"]  # B's reply joins B's thread

    back = wait_inbox(api, a["id"], f"Re: {subject}")
    assert back["thread_id"] == sent["thread_id"]  # and A's
    assert back["in_reply_to"] == [sent["source_rfc_message_id"][1:-1]]
    assert back["references"] == [sent["source_rfc_message_id"][1:-1]]
    assert back["from"] == [{"name": "Bob Builder", "email": b["address"]}]
    thread = api.client.get(f"/v1/mailboxes/{a['id']}/inbox/threads/{sent['thread_id']}", headers=api.auth())
    assert [m["subject"] for m in thread.json()["data"]] == [subject, f"Re: {subject}"]

    # B's Sent holds the reply; the replied-to message has $answered.
    assert [m["id"] for m in messages_in(api, b["id"], "sent")] == [reply["email_id"]]
    again = api.client.get(f"/v1/mailboxes/{b['id']}/inbox/messages/{got['id']}", headers=api.auth())
    assert again.json()["keywords"].get("$answered") is True
    wait_status(api, reply["id"], "sent")

    # An IMAP client logged in as A sees the same Sent folder.
    conn = imap_login("127.0.0.1", api.cyrus.instance.imap_port, a["address"], "CorrectHorse9!x")
    try:
        status, _ = conn.select("Sent", readonly=True)
        assert status == "OK"
        status, data = conn.search(None, "ALL")
        assert data[0].split() == [b"1"]
        status, fetched = conn.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID BCC)])")
        raw = b"".join(part[1] for part in fetched if isinstance(part, tuple))
        flags = b"".join(part[0] for part in fetched if isinstance(part, tuple))
        assert subject.encode() in raw and sent["source_rfc_message_id"].encode() in raw
        assert b"\\Draft" not in flags and b"\\Seen" in flags
        assert conn.select("Drafts", readonly=True)[1] == [b"0"]
    finally:
        conn.logout()

    # The message list and get.
    listed = api.client.get("/v1/messages", params={"client_reference": f"ref-{tag}"}, headers=api.auth())
    assert [m["id"] for m in listed.json()["data"]] == [sent["id"]]
    listed = api.client.get("/v1/messages", params={"mailbox_id": b["id"]}, headers=api.auth())
    assert [m["id"] for m in listed.json()["data"]] == [reply["id"]]


def test_thread_reply_and_reply_to_message_follow_up(api: ApiEnv) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"ta-{tag}.example", "a")
    b = mailbox(api, f"tb-{tag}.example", "b")
    subject = f"Thread {tag}"
    first = send(api, {"mailbox_id": a["id"], "to": [b["address"]], "subject": subject, "text": "one"}).json()
    got = wait_inbox(api, b["id"], subject)

    def reply_state(mbx: dict[str, Any], thread_id: str) -> tuple[str, int]:
        t = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/threads/{thread_id}", headers=api.auth()).json()
        return t["reply_state"], t["reply_version"]

    # Reply state (issue 11): A waits for B, B owes A a reply.
    assert reply_state(a, first["thread_id"]) == ("waiting_on_contact", 1)
    assert reply_state(b, got["thread_id"]) == ("needs_reply", 1)
    # B answers the thread (its newest inbound message).
    r = api.client.post(
        f"/v1/mailboxes/{b['id']}/inbox/threads/{got['thread_id']}/reply",
        json={"to": [a["address"]], "html": "<p>two</p>"},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    back = wait_inbox(api, a["id"], f"Re: {subject}")
    assert back["thread_id"] == first["thread_id"]
    # Now B waits for A, and A owes B a reply.
    assert reply_state(b, got["thread_id"]) == ("waiting_on_contact", 2)
    assert reply_state(a, first["thread_id"]) == ("needs_reply", 2)
    # A follows up on its own first message through /messages/{id}/reply.
    r = api.client.post(
        f"/v1/messages/{first['id']}/reply", json={"to": [b["address"]], "text": "three"}, headers=api.auth()
    )
    assert r.status_code == 201, r.text
    assert r.json()["thread_id"] == first["thread_id"]
    # Unknown ids are 404.
    assert (
        api.client.post(
            f"/v1/mailboxes/{b['id']}/inbox/threads/thr_nope/reply",
            json={"to": [a["address"]], "text": "x"},
            headers=api.auth(),
        ).status_code
        == 404
    )
    assert api.client.get("/v1/messages/msg_nope", headers=api.auth()).status_code == 404


def test_bcc_is_delivered_but_never_in_a_header(api: ApiEnv) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"ba-{tag}.example", "a")
    b = mailbox(api, f"bb-{tag}.example", "b")
    c = mailbox(api, f"bc-{tag}.example", "c")
    subject = f"Blind {tag}"
    r = send(api, {"from": a["address"], "to": [b["address"]], "bcc": [c["address"]], "subject": subject, "text": "x"})
    assert r.status_code == 201, r.text
    assert r.json()["bcc_addresses"] == [{"address": c["address"], "name": None}]
    for box in (b, c):
        got = wait_inbox(api, box["id"], subject)
        assert got["bcc"] is None
        assert all(h["name"].lower() != "bcc" for h in got["headers"])
        assert all(c["address"] not in h["value"] for h in got["headers"] if h["name"].lower() in ("to", "cc"))
    sent_copy = messages_in(api, a["id"], "sent")[0]
    full = api.client.get(f"/v1/mailboxes/{a['id']}/inbox/messages/{sent_copy['id']}", headers=api.auth()).json()
    assert all(h["name"].lower() != "bcc" for h in full["headers"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "subject"),
        ({"to": [{"address": "x@example.org", "name": "Evil\nBcc: v@example.org"}]}, "to[0].name"),
        ({"to": [f"u{i}@example.org" for i in range(30)], "cc": [f"c{i}@example.org" for i in range(21)]}, "to"),
        ({"text": None}, "text"),
        ({"from": "nobody@nowhere.example"}, "from"),
        ({"attachments": [{"filename": "a.bin", "content": "!!notbase64"}]}, "attachments[0].content"),
    ],
)
def test_invalid_sends_answer_422_and_send_nothing(api: ApiEnv, change: dict[str, Any], field: str) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"ia-{tag}.example", "a")
    body: dict[str, Any] = {"from": a["address"], "to": ["x@example.org"], "subject": "ok", "text": "body"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    r = send(api, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "validation_error"
    assert any(d["field"] == field for d in r.json()["error"]["details"]), r.json()
    assert messages_in(api, a["id"], "sent") == [] and messages_in(api, a["id"], "drafts") == []
    assert api.client.get("/v1/messages", params={"mailbox_id": a["id"]}, headers=api.auth()).json()["data"] == []


def test_from_must_be_an_identity_of_mailbox_id_and_suspended_cannot_send(api: ApiEnv) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"sa-{tag}.example", "a")
    b = mailbox(api, f"sb-{tag}.example", "b")
    r = send(api, {"mailbox_id": a["id"], "from": b["address"], "to": ["x@example.org"], "subject": "s", "text": "t"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["code"] == "not_an_identity"
    other = api.new_key(org="other-org")
    r = send(api, {"mailbox_id": a["id"], "to": ["x@example.org"], "subject": "s", "text": "t"}, key=other)
    assert r.status_code == 404
    r = send(api, {"from": a["address"], "to": ["x@example.org"], "subject": "s", "text": "t"}, key=other)
    assert r.status_code == 422
    assert api.client.post(f"/v1/mailboxes/{a['id']}/suspend", headers=api.auth()).status_code == 200
    r = send(api, {"mailbox_id": a["id"], "to": ["x@example.org"], "subject": "s", "text": "t"})
    assert r.status_code == 409, r.text
    assert messages_in(api, a["id"], "sent") == []


def test_external_recipients_land_in_the_outbox_without_a_relay(api: ApiEnv) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"oa-{tag}.example", "a", name="Outbox Sender")
    payload = bytes(range(256)) * 10
    r = send(
        api,
        {
            "from": a["address"],
            "to": [f"far-{tag}@elsewhere.example"],
            "subject": f"Out {tag}",
            "text": "to the world",
            "attachments": [{"filename": "data.bin", "content": base64.b64encode(payload).decode()}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["attachments"] == [
        {"filename": "data.bin", "size": 2560, "content_type": "application/octet-stream"}
    ]
    done = wait_status(api, r.json()["id"], "sent")
    assert done["last_error"] is None
    files = [p for p in api.settings.outbox_dir.glob("*.eml") if f"far-{tag}@".encode() in p.read_bytes()]
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["X-Envelope-From"] == f"<{a['address']}>"
    assert msg["Subject"] == f"Out {tag}" and msg["From"].addresses[0].display_name == "Outbox Sender"
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content() == payload


# ------------------------------------------------------------------------------------ the relay


@dataclass
class Relay:
    """An SMTP server (aiosmtpd) the test starts; ``replies`` are the answers to DATA in turn
    (the last one repeats), ``received`` what it accepted."""

    replies: list[str]
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    answered: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.replies[min(self.answered, len(self.replies) - 1)]
        self.answered += 1
        if reply.startswith("250"):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return reply


@contextlib.contextmanager
def relay_env(
    api_cyrus: CyrusFixture, registry: AuthRegistry, tmp_path: Path, *replies: str
) -> Iterator[tuple[ApiEnv, Relay]]:
    from aiosmtpd.controller import Controller

    relay = Relay(list(replies) or ["250 OK"])
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with api_env(
            api_cyrus, registry, tmp_path, smtp_relay=f"127.0.0.1:{port}", send_retry_base=0.3, send_retry_seconds=8
        ) as env:
            yield env, relay
    finally:
        controller.stop()


def test_external_mail_reaches_the_relay_as_valid_mime(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    with relay_env(cyrus, authd_registry, tmp_path, "250 OK") as (api, relay):
        tag = secrets.token_hex(3)
        a = mailbox(api, f"ra-{tag}.example", "sales", name="Sales Désk")
        b = mailbox(api, f"rb-{tag}.example", "local")
        pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
        png = bytes.fromhex("89504e470d0a1a0a") + secrets.token_bytes(3000)
        body = {
            "from": a["address"],
            "to": [{"address": f"ext-{tag}@far.example", "name": "Ëxternal Person"}, b["address"]],
            "cc": [f"cc-{tag}@far.example"],
            "bcc": [f"bcc-{tag}@far.example"],
            "reply_to": "Replies <replies@ra-" + tag + ".example>",
            "subject": "Offer №7 — prices inside",
            "text": "Plain text ✓\nsecond line",
            "html": "<p>HTML ✓</p>",
            "headers": [{"name": "X-Campaign", "value": "winter"}],
            "attachments": [
                {"filename": "offer.pdf", "content": base64.b64encode(pdf).decode(), "content_type": "application/pdf"},
                {"filename": "bild ä.png", "content": base64.b64encode(png).decode(), "content_type": "image/png"},
            ],
        }
        r = send(api, body)
        assert r.status_code == 201, r.text
        wait_status(api, r.json()["id"], "sent")
        ((mail_from, rcpts, data),) = relay.received
        assert mail_from == a["address"]
        assert sorted(rcpts) == sorted([f"ext-{tag}@far.example", f"cc-{tag}@far.example", f"bcc-{tag}@far.example"])
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        assert msg["From"].addresses[0].display_name == "Sales Désk"
        assert msg["From"].addresses[0].addr_spec == a["address"]
        assert [x.addr_spec for x in msg["To"].addresses] == [f"ext-{tag}@far.example", b["address"]]
        assert msg["To"].addresses[0].display_name == "Ëxternal Person"
        assert [x.addr_spec for x in msg["Cc"].addresses] == [f"cc-{tag}@far.example"]
        assert msg["Bcc"] is None and f"bcc-{tag}".encode() not in data
        assert msg["Reply-To"].addresses[0].addr_spec == f"replies@ra-{tag}.example"
        assert msg["Subject"] == "Offer №7 — prices inside"
        assert msg["Message-ID"] == r.json()["source_rfc_message_id"]
        assert msg["X-Campaign"] == "winter" and msg["MIME-Version"] == "1.0"
        assert msg.get_content_type() == "multipart/mixed"
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert text is not None and html is not None
        # Text travels in canonical form (CRLF line ends, RFC 2046 section 4.1.1).
        assert text.get_content().replace("\r\n", "\n").rstrip("\n") == "Plain text ✓\nsecond line"
        assert html.get_content().replace("\r\n", "\n").rstrip("\n") == "<p>HTML ✓</p>"
        files = {p.get_filename(): (p.get_content_type(), p.get_content()) for p in msg.iter_attachments()}
        assert files == {"offer.pdf": ("application/pdf", pdf), "bild ä.png": ("image/png", png)}
        # Signed with the sender domain's DKIM key (issue 13): dkimpy verifies it against the TXT
        # record getDomainDnsRecords asks the customer to publish; a changed body fails.
        records = api.client.get(f"/v1/domains/{a['domain_id']}/dns-records", headers=api.auth()).json()["records"]
        published = {f"{r['host']}.ra-{tag}.example": r["value"] for r in records if r["type"] == "TXT"}

        def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
            value = published.get(name.decode().rstrip("."))
            return value.encode() if value is not None else None

        assert b"DKIM-Signature:" in data and dkim.verify(data, dnsfunc=dnsfunc) is True
        assert dkim.verify(data.replace(b"second line", b"second lime"), dnsfunc=dnsfunc) is False
        # The local recipient got it over LMTP, not through the relay.
        got = wait_inbox(api, b["id"], "Offer №7 — prices inside")
        assert [x["name"] for x in got["attachments"]] == ["offer.pdf", "bild ä.png"]


def test_a_temporary_refusal_is_retried_and_a_permanent_one_fails(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    with relay_env(cyrus, authd_registry, tmp_path, "451 4.3.0 try later", "250 OK") as (api, relay):
        tag = secrets.token_hex(3)
        a = mailbox(api, f"ta-{tag}.example", "a")
        r = send(api, {"from": a["address"], "to": [f"x-{tag}@far.example"], "subject": "retry", "text": "t"})
        assert r.status_code == 201, r.text
        queued = wait_status(api, r.json()["id"], "queued")
        deadline = time.monotonic() + 10
        while relay.answered == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The relay has answered 451; the service records the refusal just after: wait for it (or
        # for the retry, which may already have succeeded).
        while True:
            seen = api.client.get(f"/v1/messages/{r.json()['id']}", headers=api.auth()).json()
            assert seen["status"] in ("queued", "sent"), seen
            if seen["status"] == "sent" or seen["last_error"]:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        if seen["status"] == "queued":
            assert "451" in seen["last_error"], seen
        done = wait_status(api, queued["id"], "sent")
        assert done["last_error"] is None
        assert relay.answered == 2 and len(relay.received) == 1

    with relay_env(cyrus, authd_registry, tmp_path / "b", "550 5.1.1 no such user") as (api, relay):
        tag = secrets.token_hex(3)
        a = mailbox(api, f"pa-{tag}.example", "a")
        r = send(api, {"from": a["address"], "to": [f"y-{tag}@far.example"], "subject": "perm", "text": "t"})
        failed = wait_status(api, r.json()["id"], "failed")
        assert "550" in failed["last_error"]
        time.sleep(1.0)
        assert relay.answered == 1  # never tried again


def test_vacation_replies_leave_through_the_queue_to_the_relay(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    with relay_env(cyrus, authd_registry, tmp_path, "250 OK") as (api, relay):
        tag = secrets.token_hex(3)
        a = mailbox(api, f"va-{tag}.example", "away")
        r = api.client.patch(
            f"/v1/mailboxes/{a['id']}/auto-reply",
            json={"enabled": True, "body": "I am away."},
            headers=api.auth(),
        )
        assert r.status_code == 200, r.text
        who = f"friend-{tag}@far.example"
        raw = (
            f"From: {who}\r\nTo: {a['address']}\r\nSubject: hello\r\nMessage-ID: <v{tag}@far.example>\r\n\r\nhi\r\n"
        ).encode()
        assert api.lmtp(a["address"], raw, sender=who) == {}
        deadline = time.monotonic() + 10
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.05)
        ((mail_from, rcpts, data),) = relay.received
        assert rcpts == [who] and mail_from in ("", "<>")  # the null sender (aiosmtpd shows "<>")
        assert b"I am away." in data


# ----------------------------------------------------------------------------- Unicode round trip

_FORBIDDEN = "\u2028\u2029"
_UNICODE = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters=_FORBIDDEN)
_NAMES = st.text(_UNICODE, min_size=1, max_size=60).map(str.strip).filter(bool)
_BODY = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00\r" + _FORBIDDEN), max_size=400)


@given(subject=_NAMES, sender_name=_NAMES, recipient_name=_NAMES, filename=_NAMES, body=_BODY)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
def test_unicode_survives_a_to_b(
    api: ApiEnv, subject: str, sender_name: str, recipient_name: str, filename: str, body: str
) -> None:
    """Arbitrary Unicode subjects, display names, file names and bodies arrive exactly as sent,
    as B's side of the API decodes them (text in canonical CRLF form compared as lines)."""
    a, b = _round_trip_pair(api)
    r = api.client.patch(f"/v1/mailboxes/{a['id']}", json={"display_name": sender_name}, headers=api.auth())
    assert r.status_code == 200, r.text
    marker = secrets.token_hex(6)
    content = secrets.token_bytes(64)
    r = send(
        api,
        {
            "from": a["address"],
            "to": [{"address": b["address"], "name": recipient_name}],
            "subject": subject,
            "text": body,
            "headers": [{"name": "X-Marker", "value": marker}],
            "attachments": [{"filename": filename, "content": base64.b64encode(content).decode()}],
        },
    )
    assert r.status_code == 201, r.text
    got = _wait_marker(api, b, marker)
    assert got["subject"] == subject
    assert got["from"] == [{"name": sender_name, "email": a["address"]}]
    assert got["to"] == [{"name": recipient_name, "email": b["address"]}]
    text = got["body_values"][got["text_body"][0]["part_id"]]["value"]
    assert text.replace("\r\n", "\n").removesuffix("\n") == body.removesuffix("\n")
    (attachment,) = got["attachments"]
    assert attachment["name"] == filename
    download = api.client.get(f"/v1{attachment['download_path']}", headers=api.auth())
    assert download.status_code == 200 and download.content == content


_PAIR: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


def _round_trip_pair(api: ApiEnv) -> tuple[dict[str, Any], dict[str, Any]]:
    key = str(api.settings.data_dir)
    if key not in _PAIR:
        tag = secrets.token_hex(3)
        _PAIR[key] = (mailbox(api, f"ua-{tag}.example", "a"), mailbox(api, f"ub-{tag}.example", "b"))
    return _PAIR[key]


def _wait_marker(api: ApiEnv, b: dict[str, Any], marker: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.client.get(f"/v1/mailboxes/{b['id']}/inbox/messages", params={"limit": 5}, headers=api.auth())
        for m in r.json()["data"]:
            full = api.client.get(f"/v1/mailboxes/{b['id']}/inbox/messages/{m['id']}", headers=api.auth()).json()
            if any(h["name"] == "X-Marker" and h["value"].strip() == marker for h in full["headers"]):
                return full  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "the message did not arrive"
        time.sleep(0.1)


def test_queued_mail_survives_a_restart_and_leaves_once(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    """The relay is down: the message stays queued (last_error says why) while the service runs;
    the service stops; the relay comes up; a new service on the same data sends it, once."""
    from aiosmtpd.controller import Controller

    port = free_port()
    overrides: dict[str, Any] = {"smtp_relay": f"127.0.0.1:{port}", "send_retry_base": 0.5}
    tag = secrets.token_hex(3)
    with api_env(cyrus, authd_registry, tmp_path, **overrides) as api:
        a = mailbox(api, f"da-{tag}.example", "a")
        r = send(api, {"from": a["address"], "to": [f"z-{tag}@far.example"], "subject": "durable", "text": "t"})
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]
        deadline = time.monotonic() + 15
        while True:
            seen = api.client.get(f"/v1/messages/{message_id}", headers=api.auth()).json()
            if seen["last_error"]:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert seen["status"] == "queued" and "relay unreachable" in seen["last_error"]
    relay = Relay(["250 OK"])
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with api_env(cyrus, authd_registry, tmp_path, **overrides) as again:
            done = wait_status(again, message_id, "sent", timeout=20)
            assert done["last_error"] is None
            time.sleep(1.0)
        assert len(relay.received) == 1 and relay.received[0][1] == [f"z-{tag}@far.example"]
    finally:
        controller.stop()


# ------------------------------------------------------------------------------------ send limits


def test_send_limits_per_mailbox(api: ApiEnv) -> None:
    tag = secrets.token_hex(3)
    a = mailbox(api, f"la-{tag}.example", "a")
    assert (a["daily_send_count"], a["daily_send_limit"]) == (0, api.settings.daily_send_limit)
    assert (a["monthly_send_count"], a["monthly_send_limit"]) == (0, api.settings.monthly_send_limit)
    r = api.client.patch(f"/v1/mailboxes/{a['id']}", json={"daily_send_limit": 2}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.json()["daily_send_limit"] == 2 and r.json()["display_name"] is None
    body = {"from": a["address"], "to": [f"q-{tag}@far.example"], "subject": "limited", "text": "t"}
    assert send(api, {**body, "text": None, "html": None}).status_code == 422  # refused sends do not count
    for _ in range(2):
        assert send(api, body).status_code == 201
    r = send(api, body)
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["type"] == "rate_limit_error" and "daily limit of 2" in error["message"]
    assert error["details"][0]["field"] == "daily_send_limit" and "resets at" in error["details"][0]["message"]
    assert error["details"][0]["message"].endswith("T00:00:00Z")
    assert 0 < int(r.headers["Retry-After"]) <= 86400 and error["retry_after"] == int(r.headers["Retry-After"])
    shown = api.client.get(f"/v1/mailboxes/{a['id']}", headers=api.auth()).json()
    assert (shown["daily_send_count"], shown["daily_send_limit"], shown["monthly_send_count"]) == (2, 2, 2)
    assert len(api.client.get("/v1/messages", params={"mailbox_id": a["id"]}, headers=api.auth()).json()["data"]) == 2

    # Back to the default daily limit; a monthly limit of 3 allows one more.
    r = api.client.patch(
        f"/v1/mailboxes/{a['id']}", json={"daily_send_limit": None, "monthly_send_limit": 3}, headers=api.auth()
    )
    assert r.json()["daily_send_limit"] == api.settings.daily_send_limit and r.json()["monthly_send_limit"] == 3
    assert send(api, body).status_code == 201
    r = send(api, body)
    assert r.status_code == 429 and "monthly limit of 3" in r.json()["error"]["message"]
    assert r.json()["error"]["details"][0]["message"].endswith("-01T00:00:00Z")
    # Replies count too.
    got = api.client.get("/v1/messages", params={"mailbox_id": a["id"]}, headers=api.auth()).json()["data"][0]
    r = api.client.post(
        f"/v1/messages/{got['id']}/reply", json={"to": [f"q-{tag}@far.example"], "text": "x"}, headers=api.auth()
    )
    assert r.status_code == 429
    bad = api.client.patch(f"/v1/mailboxes/{a['id']}", json={"daily_send_limit": -1}, headers=api.auth())
    assert bad.status_code == 422
