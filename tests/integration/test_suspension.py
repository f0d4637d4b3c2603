"""Suspend / resume on the real Cyrus: owner logins fail (IMAP, JMAP Basic), LMTP refuses mail
TEMPORARILY (452 4.2.2, so the sending MTA retries), delivery rules and the auto-reply do not
run, while the API keeps reading and managing the mail; resume restores logins and delivery, the
retried message arrives, and mail from before the suspension is intact."""

from __future__ import annotations

import asyncio
import imaplib
import re
import secrets
import smtplib
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from shipmail import utc
from shipmail.mailserver import cyrus_admin
from shipmail.mailserver.base import AccountNotFound, DeliveryRefused
from tests.integration.conftest import ApiEnv
from tests.integration.corpus import ids_by_message_id
from tests.integration.test_api_cyrus import imap_login, login_fails
from tests.integration.test_auto_reply import replies, wait_replies

PASSWORD = "CorrectHorse9"


def new_mailbox(api: ApiEnv, label: str, key: str | None = None) -> dict[str, Any]:
    return api.new_mailbox(f"{label}-{secrets.token_hex(4)}.example", key=key, password=PASSWORD)


def post(api: ApiEnv, mbx: dict[str, Any], action: str, key: str | None = None) -> Any:
    return api.client.post(f"/v1/mailboxes/{mbx['id']}/{action}", headers=api.auth(key))


def message(to: str, subject: str, frm: str = "ann@sender.example") -> tuple[bytes, str]:
    mid = f"s.{secrets.token_hex(8)}@suspension.test"
    return (
        f"From: Ann <{frm}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
        f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\nBody of {subject}.\r\n"
    ).encode(), mid


def lmtp_reply(
    api: ApiEnv, rcpt: str, data: bytes, sender: str = "ann@sender.example", *, direct: bool = False
) -> tuple[str, int, str]:
    """One LMTP transaction through the inbound gateway (``direct``: straight to Cyrus's LMTP
    socket, for an account without a mailbox row); ``(stage, code, text)`` of the first reply that
    is not 2xx/3xx, or ``("done", 250, ...)`` when delivered."""
    host, port = (str(api.cyrus.instance.lmtp_socket), 0) if direct else ("127.0.0.1", api.lmtp_port)
    with smtplib.LMTP(host, port, timeout=15) as lmtp:
        lmtp.ehlo()
        code, text = lmtp.mail(sender)
        assert code == 250
        code, text = lmtp.rcpt(rcpt)
        if code != 250:
            return "rcpt", code, text.decode()
        code, text = lmtp.data(data)
        return ("done" if code == 250 else "data"), code, text.decode()


def basic_jmap_status(api: ApiEnv, address: str, password: str) -> int:
    return httpx.get(api.cyrus.server.session_url, auth=(address, password), timeout=10).status_code


def inbox(api: ApiEnv, mbx: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{subject: message} of the mailbox's messages, through the API (JMAP as the service)."""
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages", headers=api.auth())
    assert r.status_code == 200, r.text
    return {m["subject"]: m for m in r.json()["data"]}


def wait_inbox(api: ApiEnv, mbx: dict[str, Any], subject: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = inbox(api, mbx).get(subject)
        if found is not None or time.monotonic() > deadline:
            assert found is not None, f"{subject!r} not listed"
            return found
        time.sleep(0.05)


def storage_limit(api: ApiEnv, address: str) -> int | None:
    """The account's STORAGE quota limit in KiB (None: no limit), read as the Cyrus admin from
    ``GETQUOTAROOT`` (``<root> (STORAGE <usage> <limit>)``)."""
    inst = api.cyrus.instance
    conn = imaplib.IMAP4(inst.connect_host, inst.imap_port, timeout=15)
    try:
        conn.login(inst.admin_user, inst.admin_password)
        status, data = conn.getquotaroot(cyrus_admin.quote(cyrus_admin.mailbox_name(address)))
        assert status == "OK", data
    finally:
        conn.logout()
    match = re.search(rb"\(STORAGE \d+ (\d+)\)", b" ".join(x for part in data for x in part if isinstance(x, bytes)))
    return int(match.group(1)) if match else None


def test_suspend_blocks_logins_delivery_and_rules_and_resume_restores(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "susp")
    address = mbx["address"]
    sentinel = new_mailbox(api, "susp-sentinel")  # answers everyone: proves replies are made
    r = api.client.patch(
        f"/v1/mailboxes/{sentinel['id']}/auto-reply", json={"enabled": True, "body": "Here."}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    folders = api.client.get(f"/v1/mailboxes/{mbx['id']}/folders", headers=api.auth()).json()["data"]
    archive = next(f["id"] for f in folders if f["role"] == "archive")

    # Before: a message, a rule that stars "urgent" mail, an auto-reply, working logins.
    before, before_mid = message(address, "before suspension")
    assert api.lmtp(address, before) == {}
    rule = {
        "id": str(uuid.uuid4()),
        "name": "star urgent",
        "enabled": True,
        "position": 0,
        "match_mode": "all",
        "stop": False,
        "conditions": [{"type": "subject_contains", "value": "urgent"}],
        "actions": [{"type": "star"}],
    }
    r = api.client.put(f"/v1/mailboxes/{mbx['id']}/rules", json={"rules": [rule]}, headers=api.auth())
    assert r.status_code == 200, r.text
    r = api.client.patch(
        f"/v1/mailboxes/{mbx['id']}/auto-reply", json={"enabled": True, "body": "Away."}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    imap_login(api, address, PASSWORD).logout()
    assert basic_jmap_status(api, address, PASSWORD) == 200

    r = post(api, mbx, "suspend")
    assert r.status_code == 200, r.text
    suspended = r.json()
    assert suspended["suspended_at"] is not None and suspended["suspension_reasons"] == ["manual"]
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json() == suspended
    assert storage_limit(api, address) == 0

    # Owner authentication is refused: IMAP LOGIN and JMAP Basic.
    assert login_fails(api, address, PASSWORD)
    assert basic_jmap_status(api, address, PASSWORD) == 401

    # Receiving is refused TEMPORARILY (the MTA keeps the message and retries), so neither the
    # rule nor the auto-reply runs.
    urgent, urgent_mid = message(address, "urgent while suspended", frm="bob@sender.example")
    stage, code, text = lmtp_reply(api, address, urgent, sender="bob@sender.example")
    assert (stage, code) == ("rcpt", 452) and "4.2.2" in text
    with pytest.raises(DeliveryRefused) as refused:
        asyncio.run(api.cyrus.server.deliver([address], urgent, "bob@sender.example"))
    assert refused.value.temporary and refused.value.refused[address][0] == 452
    r = api.client.post(
        f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
        headers=api.auth(),
        json={"from": "carl@sender.example", "subject": "sandbox", "text": "hi"},
    )
    assert r.status_code == 409 and "suspended" in r.json()["error"]["message"]
    # Mail to a mailbox that is not suspended is answered: once that reply is out, none to bob's
    # refused mail can still come.
    dan = f"dan.{secrets.token_hex(4)}@sender.example"
    ping, _ = message(sentinel["address"], "to the sentinel", frm=dan)
    assert api.lmtp(sentinel["address"], ping, sender=dan) == {}
    assert len(wait_replies(api.outbox, dan)) == 1
    assert replies(api.outbox, "bob@sender.example") == []
    assert set(inbox(api, mbx)) == {"before suspension"}

    # The API keeps reading and managing the mail, and the rules can still be edited.
    item = inbox(api, mbx)["before suspension"]
    msg_base = f"/v1/mailboxes/{mbx['id']}/inbox/messages/{item['id']}"
    full = api.client.get(msg_base, headers=api.auth())
    assert full.status_code == 200 and "Body of before suspension." in full.text
    assert api.client.patch(msg_base, json={"read": True, "starred": True}, headers=api.auth()).status_code == 200
    assert (
        api.client.post(f"{msg_base}/move", json={"target_folder_id": archive}, headers=api.auth()).status_code == 200
    )
    assert api.client.post(f"{msg_base}/move", json={"target_role": "inbox"}, headers=api.auth()).status_code == 200
    r = api.client.put(f"/v1/mailboxes/{mbx['id']}/rules", json={"rules": [rule]}, headers=api.auth())
    assert r.status_code == 200, r.text

    r = post(api, mbx, "resume")
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert resumed["suspended_at"] is None and resumed["suspension_reasons"] == []
    assert storage_limit(api, address) is None

    # Logins work again; the old mail is intact (flags set while suspended kept).
    assert basic_jmap_status(api, address, PASSWORD) == 200
    conn = imap_login(api, address, PASSWORD)
    try:
        typ, data = conn.select("INBOX")
        assert typ == "OK" and data[0] == b"1"
        typ, fetched = conn.fetch("1", "(FLAGS BODY.PEEK[])")
        assert typ == "OK"
        assert b"\\Seen" in fetched[0][0] and b"\\Flagged" in fetched[0][0]  # type: ignore[index,operator]
        body = fetched[0][1]  # type: ignore[index]
        assert isinstance(body, bytes) and body.endswith(before) and f"<{before_mid}>".encode() in body
    finally:
        conn.logout()

    # The sending MTA's retry (same message, same Message-ID) is delivered now; the rule and the
    # auto-reply run on it.
    assert lmtp_reply(api, address, urgent, sender="bob@sender.example")[:2] == ("done", 250)
    got = wait_inbox(api, mbx, "urgent while suspended")
    assert got["keywords"].get("$flagged") is True
    assert len(wait_replies(api.outbox, "bob@sender.example")) == 1
    assert urgent_mid in ids_by_message_id(api, address)  # delivered under its original id
    r = api.client.post(
        f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
        headers=api.auth(),
        json={"from": "carl@sender.example", "subject": "sandbox", "text": "hi"},
    )
    assert r.status_code == 201, r.text


def test_an_empty_account_refuses_at_data_and_loses_nothing(api: ApiEnv) -> None:
    """An account with no stored byte at all (made with the MailServer directly: a new API
    mailbox holds its uploaded Sieve script blob until the upload expires, so it is refused at
    RCPT) is over a STORAGE 0 quota only because Cyrus counts the message's size
    (``lmtp_strict_quota: yes``): 452 comes at DATA."""
    server = api.cyrus.server
    address = f"bare{secrets.token_hex(4)}@bare.example"

    async def run(*steps: Any) -> None:
        for step in steps:
            await step

    asyncio.run(
        run(server.provision(address), server.set_suspended(address, True), server.set_suspended(address, True))
    )
    try:
        data, mid = message(address, "first ever")
        for _ in range(2):  # it stays refused: nothing slipped in
            # Straight to Cyrus: the gateway refuses an address no mailbox row has (550 5.1.1).
            stage, code, text = lmtp_reply(api, address, data, direct=True)
            assert (stage, code) == ("data", 452) and "4.2.2" in text
        assert ids_by_message_id(api, address) == {}
        asyncio.run(run(server.set_suspended(address, False), server.set_suspended(address, False)))
        # The retry is not taken for a duplicate of the refused attempts.
        assert lmtp_reply(api, address, data, direct=True)[:2] == ("done", 250)
        assert list(ids_by_message_id(api, address)) == [mid]
    finally:
        asyncio.run(run(server.deprovision(address)))
    with pytest.raises(AccountNotFound):
        asyncio.run(run(server.set_suspended(address, True)))


def test_idempotent_on_cyrus(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    mbx = new_mailbox(api, "idem")
    first = post(api, mbx, "suspend").json()
    # From here the service's clock reads an hour later: a second stamp could not go unnoticed.
    later = utc.now().replace(microsecond=0) + timedelta(hours=1)
    monkeypatch.setattr(utc, "now", lambda: later)
    again = post(api, mbx, "suspend")
    assert again.status_code == 200 and again.json() == first
    data, _ = message(mbx["address"], "still refused")
    assert lmtp_reply(api, mbx["address"], data)[1] == 452
    assert login_fails(api, mbx["address"], PASSWORD)

    resumed = post(api, mbx, "resume").json()
    assert datetime.fromisoformat(resumed["updated_at"]) == later  # the clock above is the one used
    again = post(api, mbx, "resume")
    assert again.status_code == 200 and again.json() == resumed
    assert lmtp_reply(api, mbx["address"], data)[:2] == ("done", 250)
    imap_login(api, mbx["address"], PASSWORD).logout()


def test_another_organisations_mailbox_is_404(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "tenant")
    other = api.new_key(org="globex")
    for action in ("suspend", "resume"):
        r = post(api, mbx, action, key=other)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    data, _ = message(mbx["address"], "still delivered")
    assert lmtp_reply(api, mbx["address"], data)[:2] == ("done", 250)
    imap_login(api, mbx["address"], PASSWORD).logout()
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["suspended_at"] is None


def test_failed_commit_leaves_delivery_open(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    mbx = new_mailbox(api, "undo")

    async def failing_commit(self: AsyncSession) -> None:
        raise RuntimeError("database write failed")

    original = AsyncSession.commit
    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    r = post(api, mbx, "suspend")
    monkeypatch.setattr(AsyncSession, "commit", original)
    assert r.status_code == 500
    assert storage_limit(api, mbx["address"]) is None
    data, _ = message(mbx["address"], "delivered anyway")
    assert lmtp_reply(api, mbx["address"], data)[:2] == ("done", 250)
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["suspended_at"] is None


def test_deleting_a_suspended_mailbox_leaves_no_block(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "gone")
    assert post(api, mbx, "suspend").status_code == 200
    assert api.client.delete(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 204
    r = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": mbx["domain_id"], "address": "hello", "password": PASSWORD},
        headers=api.auth(),
    )
    assert r.status_code == 201 and r.json()["suspended_at"] is None
    data, _ = message(mbx["address"], "to the new account")
    assert lmtp_reply(api, mbx["address"], data)[:2] == ("done", 250)


def test_official_sdk_suspend_and_resume(api: ApiEnv) -> None:
    from tests.integration.test_folders import load_sdk

    sdk = load_sdk()
    client = sdk.client(api)
    mbx = new_mailbox(api, "sdk")
    suspended = client.mailboxes.suspend(mbx["id"])
    assert suspended["id"] == mbx["id"] and suspended["suspended_at"] is not None
    assert suspended["suspension_reasons"] == ["manual"]
    assert client.mailboxes.suspend(mbx["id"])["suspended_at"] == suspended["suspended_at"]
    assert login_fails(api, mbx["address"], PASSWORD)
    resumed = client.mailboxes.resume(mbx["id"])
    assert resumed["suspended_at"] is None and resumed["suspension_reasons"] == []
    imap_login(api, mbx["address"], PASSWORD).logout()
    with pytest.raises(sdk.error):
        client.mailboxes.suspend("mbx_doesnotexist")
