"""Sending from a mailbox over its storage quota (issue 15): the mail server's quota refuses the
copy the send keeps (JMAP ``Email/import``: ``overQuota``, RFC 8620 section 5.3 / RFC 8621 section
4.8), and the API answers 422 ``quota_exceeded``, leaving no message, no counted send and nothing on
the mail server; with room again the same send goes out."""

from __future__ import annotations

import secrets
import smtplib
from typing import Any

from tests.integration.conftest import ApiEnv

PASSWORD = "CorrectHorse9!x"


def _fill(api: ApiEnv, address: str, size: int) -> int:
    raw = (
        f"From: ann@example.org\r\nTo: {address}\r\nSubject: filler {secrets.token_hex(4)}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\n\r\n" + ("y" * 76 + "\r\n") * (size // 78)
    ).encode()
    try:
        with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
            lmtp.sendmail("ann@example.org", [address], raw)
    except smtplib.SMTPRecipientsRefused as exc:
        return int(next(iter(exc.recipients.values()))[0])
    except smtplib.SMTPDataError as exc:
        return int(exc.smtp_code)
    return 250


def _mailbox(api: ApiEnv, key: str | None = None) -> dict[str, Any]:
    return api.new_mailbox(f"quota-send-{secrets.token_hex(4)}.example", "sender", key=key, password=PASSWORD)


def test_a_send_from_a_mailbox_over_its_quota_is_422_and_leaves_nothing(api: ApiEnv) -> None:
    sender = _mailbox(api)
    target = api.new_mailbox(f"quota-rcpt-{secrets.token_hex(4)}.example", "rcpt", password=PASSWORD)
    r = api.client.patch(f"/v1/mailboxes/{sender['id']}", json={"storage_quota_bytes": 20 * 1024}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert _fill(api, sender["address"], 12_000) == 250
    assert _fill(api, sender["address"], 12_000) == 452  # the mail server's quota is in force
    before = api.client.get(f"/v1/mailboxes/{sender['id']}", headers=api.auth()).json()
    body = {"from": sender["address"], "to": [target["address"]], "subject": "over", "text": "z" * 12_000}

    r = api.client.post("/v1/messages", json=body, headers=api.auth())
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "quota_exceeded"
    assert sender["address"] in error["message"] and "storage quota" in error["message"]
    assert error["details"][0]["field"] == "from" and error["details"][0]["code"] == "mailbox_over_quota"
    after = api.client.get(f"/v1/mailboxes/{sender['id']}", headers=api.auth()).json()
    assert after["monthly_send_count"] == before["monthly_send_count"]
    assert after["daily_send_count"] == before["daily_send_count"]
    listed = api.client.get("/v1/messages", params={"mailbox_id": sender["id"]}, headers=api.auth()).json()
    assert listed["data"] == []
    drafts = api.client.get(
        f"/v1/mailboxes/{sender['id']}/inbox/messages", params={"folder_role": "drafts"}, headers=api.auth()
    ).json()
    assert drafts["data"] == []

    # A reply from the same mailbox is refused the same way.
    (first, *_rest) = api.client.get(
        f"/v1/mailboxes/{sender['id']}/inbox/messages", params={"folder_role": "inbox"}, headers=api.auth()
    ).json()["data"]
    r = api.client.post(
        f"/v1/mailboxes/{sender['id']}/inbox/messages/{first['id']}/reply",
        json={"to": [target["address"]], "text": "z" * 12_000},
        headers=api.auth(),
    )
    assert r.status_code == 422 and r.json()["error"]["type"] == "quota_exceeded", r.text

    # Room again (no quota): the same send goes out.
    r = api.client.patch(f"/v1/mailboxes/{sender['id']}", json={"storage_quota_bytes": None}, headers=api.auth())
    assert r.status_code == 200, r.text
    r = api.client.post("/v1/messages", json=body, headers=api.auth())
    assert r.status_code == 201, r.text
