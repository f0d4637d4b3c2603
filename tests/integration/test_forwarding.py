"""Forwarding on the real Cyrus (issue 14, section 3).

A destination gets a confirmation mail (through :func:`shipmail.forwarding.service._send_confirmation`:
over LMTP for a mailbox of ours, to ``SHIPMAIL_SMTP_RELAY`` or the outbox otherwise) and nothing
else until the link is followed; then each message delivered to the mailbox goes, through the
mailbox's one Sieve script (``redirect :copy``) and Cyrus's ``sendmail`` program, to the
destination as envelope recipient, while the mailbox keeps its copy. Spam is not forwarded, a
message that already went through the mailbox is not forwarded again, removal stops it. With a
relay (an aiosmtpd server started by the test and a Cyrus instance set up from
``SHIPMAIL_SMTP_RELAY``) an external destination receives the confirmation and the messages.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.testclient import TestClient

from tests.integration.conftest import ApiEnv, free_port
from tests.integration.conftest import imap_login as connect

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mail-fixtures"
PASSWORD = "CorrectHorse9Battery"
LINK = re.compile(r"https?://[^\s]+/v1/forwarding-confirmations/[A-Za-z0-9_-]+")


def corpus_message(subject: str, to: str, extra_headers: str = "") -> bytes:
    """A message from the corpus with a fresh Message-ID and Subject (Cyrus drops a second
    delivery of a Message-ID it has seen), CRLF line ends."""
    raw = (CORPUS / "plain_emails" / "basic_email.eml").read_bytes().replace(b"\r\n", b"\n")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for name in ("Message-ID", "Subject", "To"):
        del msg[name]
    msg["Message-ID"] = f"<{uuid.uuid4()}@test.example>"
    msg["Subject"] = subject
    msg["To"] = to
    head = extra_headers.replace("\r\n", "\n").encode()
    return (head + msg.as_bytes()).replace(b"\n", b"\r\n")


def outbox_for(outbox: Path, rcpt: str) -> list[EmailMessage]:
    """Messages in the outbox whose envelope recipient is ``rcpt`` (sendmail's X-Envelope-To)."""
    found = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if f"<{rcpt}>" in str(msg.get("X-Envelope-To", "")):
            found.append(msg)
    return found


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def imap_messages(api: ApiEnv, address: str, folder: str = "INBOX") -> list[EmailMessage]:
    conn = connect(api.cyrus.instance.connect_host, api.cyrus.instance.imap_port, address, PASSWORD)
    try:
        status, _ = conn.select(folder, readonly=True)
        assert status == "OK"
        _, data = conn.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, parts = conn.fetch(num, "(BODY.PEEK[])")
            raw = parts[0][1]  # type: ignore[index]
            assert isinstance(raw, bytes)
            out.append(email.message_from_bytes(raw, policy=email.policy.default))
        return out
    finally:
        conn.logout()


def subjects(messages: list[EmailMessage]) -> list[str]:
    return [str(m["Subject"]) for m in messages]


def body_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def confirm(client: TestClient, link: str) -> Any:
    path = "/v1/" + link.split("/v1/", 1)[1]
    page = client.get(path)
    assert page.status_code == 200 and 'method="post"' in page.text, page.text
    return client.post(path)


def test_forwarding_to_a_local_mailbox(api: ApiEnv) -> None:
    a = api.new_mailbox("fwd-a.example", password=PASSWORD)
    b = api.new_mailbox("fwd-b.example", password=PASSWORD)
    base = f"/v1/mailboxes/{a['id']}/forwarding"

    r = api.client.post(base, json={"destination": b["address"].upper()}, headers=api.auth())
    assert r.status_code == 200, r.text
    fwd = r.json()
    assert fwd["status"] == "pending" and fwd["destination"] == b["address"]
    assert fwd["verification_sent_at"] is not None and fwd["verified_at"] is None
    listed = api.client.get(base, headers=api.auth()).json()
    assert listed["object"] == "mailbox_forwarding_list" and listed["data"] == [fwd]

    # The confirmation arrived in B (over LMTP), with the link in its text.
    (confirmation,) = wait_for(lambda: imap_messages(api, b["address"]))
    assert confirmation["Auto-Submitted"] == "auto-generated" and confirmation["From"] == a["address"]
    (link,) = LINK.findall(body_text(confirmation))

    # Unconfirmed: B gets nothing but the confirmation.
    assert api.lmtp(a["address"], corpus_message("before confirming", a["address"])) == {}
    assert "before confirming" in subjects(wait_for(lambda: imap_messages(api, a["address"])))
    time.sleep(1.0)
    assert subjects(imap_messages(api, b["address"])) == [confirmation["Subject"]]

    r = confirm(api.client, link)
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "mailbox_forwarding_confirmation", "destination": b["address"], "status": "active"}
    (active,) = api.client.get(base, headers=api.auth()).json()["data"]
    assert active["status"] == "active" and active["verified_at"] is not None
    assert api.client.post("/v1/" + link.split("/v1/", 1)[1]).status_code == 404  # single use

    # A message to A: redirected to B (envelope recipient), A keeps its copy.
    assert api.lmtp(a["address"], corpus_message("forward me", a["address"]), sender="alice@sender.example") == {}
    # It leaves through the one outgoing queue, which delivers a local destination over LMTP.
    (forwarded,) = wait_for(lambda: [m for m in imap_messages(api, b["address"]) if m["Subject"] == "forward me"])
    assert forwarded["X-Shipmail-Forwarded"] == a["address"]
    assert "forward me" in subjects(imap_messages(api, a["address"]))

    # Spam is not forwarded (it goes to A's Junk).
    spam = corpus_message("cheap pills", a["address"], extra_headers="X-Spam-Score: 9.5\r\n")
    assert api.lmtp(a["address"], spam) == {}
    assert "cheap pills" in subjects(wait_for(lambda: imap_messages(api, a["address"], "Junk")))
    # A message that already went through A (a loop) is not forwarded again, but kept.
    looped = corpus_message("been here", a["address"], extra_headers=f"X-Shipmail-Forwarded: {a['address']}\r\n")
    assert api.lmtp(a["address"], looped) == {}
    assert "been here" in subjects(wait_for(lambda: imap_messages(api, a["address"])))
    time.sleep(1.0)
    assert subjects(imap_messages(api, b["address"])) == [confirmation["Subject"], "forward me"]

    # Removal: the script no longer forwards.
    r = api.client.delete(f"{base}/{fwd['id']}", headers=api.auth())
    assert r.status_code == 204, r.text
    assert api.client.get(base, headers=api.auth()).json()["data"] == []
    assert api.lmtp(a["address"], corpus_message("after removal", a["address"])) == {}
    assert "after removal" in subjects(wait_for(lambda: imap_messages(api, a["address"])))
    time.sleep(1.0)
    assert subjects(imap_messages(api, b["address"])) == [confirmation["Subject"], "forward me"]


def test_forwarding_limits_and_errors(api: ApiEnv) -> None:
    a = api.new_mailbox("fwd-limits.example", password=PASSWORD)
    base = f"/v1/mailboxes/{a['id']}/forwarding"
    for destination in ("not-an-address", "x@", "a b@example.org", a["address"]):
        r = api.client.post(base, json={"destination": destination}, headers=api.auth())
        assert r.status_code == 422, (destination, r.text)
    made = []
    for n in range(3):
        r = api.client.post(base, json={"destination": f"d{n}@elsewhere.example"}, headers=api.auth())
        assert r.status_code == 200, r.text
        made.append(r.json())
    r = api.client.post(base, json={"destination": "d3@elsewhere.example"}, headers=api.auth())
    assert r.status_code == 422 and r.json()["error"]["details"][0]["code"] == "too_many_destinations"
    # Again for a pending one: a new link (the first stops working), same record.
    # The confirmations leave through the outgoing queue (no relay here: into the outbox).
    links_before = wait_for(lambda: outbox_for(api.settings.outbox_dir, "d0@elsewhere.example"))
    again = api.client.post(base, json={"destination": "d0@elsewhere.example"}, headers=api.auth())
    assert again.status_code == 200 and again.json()["id"] == made[0]["id"]
    sent = wait_for(
        lambda: found if len(found := outbox_for(api.settings.outbox_dir, "d0@elsewhere.example")) > 1 else []
    )
    assert len(sent) == len(links_before) + 1 == 2
    (first_link,) = LINK.findall(body_text(sent[0]))
    (second_link,) = LINK.findall(body_text(sent[1]))
    assert api.client.post("/v1/" + first_link.split("/v1/", 1)[1]).status_code == 404
    assert api.client.post("/v1/" + second_link.split("/v1/", 1)[1]).status_code == 200
    # Unknown tokens and ids, scopes, other organisations.
    assert api.client.post("/v1/forwarding-confirmations/" + "A" * 43).status_code == 404
    assert api.client.get("/v1/forwarding-confirmations/short").status_code == 404
    assert api.client.delete(f"{base}/fwd_{'0' * 24}", headers=api.auth()).status_code == 404
    reader = api.new_key(scopes=["mailbox_forwarding:read"])
    assert api.client.get(base, headers=api.auth(reader)).status_code == 200
    r = api.client.post(base, json={"destination": "z@elsewhere.example"}, headers=api.auth(reader))
    assert r.status_code == 403
    other = api.new_key(org="globex")
    assert api.client.get(base, headers=api.auth(other)).status_code == 404
    # The mailbox can be deleted with its destinations.
    assert api.client.delete(f"/v1/mailboxes/{a['id']}", headers=api.auth()).status_code == 204


# --------------------------------------------------------------------------- relay


class Sink:
    """aiosmtpd handler keeping ``(mail_from, rcpt_tos, data)`` of each message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), bytes(data)))
        return "250 OK"

    def to(self, rcpt: str) -> list[EmailMessage]:
        return [
            email.message_from_bytes(data, policy=email.policy.default)
            for _, rcpts, data in self.messages
            if rcpt in rcpts
        ]


@pytest.fixture
def relay() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def test_external_destination_through_the_smtp_relay(
    relay: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch, api: ApiEnv
) -> None:
    """A Cyrus instance and an app set up from settings with SHIPMAIL_SMTP_RELAY (aiosmtpd): the
    external destination gets the confirmation, then the forwarded message; nothing lands in an
    outbox directory."""
    from shipmail.app import create_app
    from shipmail.config import Settings
    from shipmail.mailserver.cyrus import CyrusInstance
    from shipmail.mailserver.cyrus_server import CyrusMailServer
    from tests.dbfixtures import migrated_database
    from tests.unit.conftest import make_key, verify_domain

    sink, port = relay
    monkeypatch.setenv("SHIPMAIL_SMTP_RELAY", f"127.0.0.1:{port}")
    root = Path(tempfile.mkdtemp(prefix="shipmail-fwd-relay-", dir="/tmp"))
    os.chmod(root, 0o755)
    external = "someone@outside.example"
    try:
        with migrated_database("sqlite", root) as url:
            settings = Settings.from_env(
                data_dir=root,
                database_url=url,
                secret_key=b"relay-test",
                jmap_port=free_port(),
                lmtp_port=free_port(),
                imap_port=free_port(),
            )
            assert settings.smtp_relay == f"127.0.0.1:{port}"
            instance = CyrusInstance.from_settings(settings, failed_login_pause=0)
            try:
                instance.prepare()
                instance.start()
                app = create_app(settings, mail_server_factory=lambda s: CyrusMailServer.from_instance(instance))
                key = make_key(settings)
                headers = {"Authorization": f"Bearer {key}"}
                with TestClient(app) as client:
                    dom = client.post("/v1/domains", json={"name": "relay-fwd.example"}, headers=headers).json()
                    verify_domain(settings, "relay-fwd.example")
                    r = client.post(
                        "/v1/mailboxes",
                        json={"domain_id": dom["id"], "address": "hello", "password": PASSWORD},
                        headers=headers,
                    )
                    assert r.status_code == 201, r.text
                    a = r.json()
                    r = client.post(
                        f"/v1/mailboxes/{a['id']}/forwarding", json={"destination": external}, headers=headers
                    )
                    assert r.status_code == 200, r.text
                    (confirmation,) = wait_for(lambda: sink.to(external))
                    (link,) = LINK.findall(body_text(confirmation))
                    assert confirm(client, link).status_code == 200

                    import smtplib

                    with smtplib.LMTP(str(instance.lmtp_socket), timeout=15) as lmtp:
                        message = corpus_message("via the relay", a["address"])
                        assert lmtp.sendmail("alice@sender.example", [a["address"]], message) == {}
                    forwarded = wait_for(lambda: [m for m in sink.to(external) if m["Subject"] == "via the relay"])
                    assert len(forwarded) == 1
                    assert forwarded[0]["X-Shipmail-Forwarded"] == a["address"]
                    r = client.get(f"/v1/mailboxes/{a['id']}/inbox/messages", headers=headers)
                    assert r.status_code == 200, r.text
                    assert "via the relay" in [m.get("subject") for m in r.json()["data"]]
                assert list(settings.outbox_dir.glob("*.eml")) == []
            finally:
                instance.stop()
                left = instance.processes()
                assert left == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
