"""Addresses the inbound gateway resolves beyond a mailbox's own (issue 13's catch-all, issue 15's
aliases), against the real Cyrus through the gateway (:mod:`shipmail.inbound.resolve`): an alias
delivers into its mailbox; an unknown address of a domain with a catch-all delivers into the
catch-all mailbox and, without one, is refused with 550 5.1.1; ``local+tag@`` of an existing
mailbox stays with that mailbox rather than the catch-all."""

from __future__ import annotations

import secrets
import smtplib
import time
from typing import Any

from tests.integration.conftest import ApiEnv


def message(to: str, subject: str) -> bytes:
    return (
        f"From: Ann <ann@sender.example>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@resolution.test>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
        f"\r\nhello\r\n"
    ).encode()


def rcpt_reply(api: ApiEnv, rcpt: str) -> int:
    """The gateway's reply code to ``RCPT TO:<rcpt>``."""
    with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("ann@sender.example")[0] == 250
        return int(lmtp.rcpt(rcpt)[0])


def subjects(api: ApiEnv, mailbox_id: str, want: str, timeout: float = 10.0) -> list[str]:
    """Subjects in the mailbox's inbox once ``want`` is among them (or the timeout ran out)."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages", headers=api.auth())
        assert r.status_code == 200, r.text
        found = [str(m.get("subject")) for m in r.json()["data"]]
        if want in found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_aliases_and_the_catch_all_deliver_through_the_gateway(api: ApiEnv) -> None:
    domain = "resolution.example"
    dom: dict[str, Any] = api.verified_domain(domain)
    made = []
    for local in ("hello", "catch"):
        r = api.client.post(
            "/v1/mailboxes",
            json={"domain_id": dom["id"], "address": local, "generate_password": True},
            headers=api.auth(),
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    hello, catch = made

    # An alias delivers into its mailbox.
    r = api.client.post(f"/v1/mailboxes/{hello['id']}/aliases", json={"local_part": "sales"}, headers=api.auth())
    assert r.status_code == 201, r.text
    assert api.lmtp(f"sales@{domain}", message(f"sales@{domain}", "to the alias")) == {}
    assert "to the alias" in subjects(api, hello["id"], "to the alias")

    # No catch-all: an unknown address is refused at RCPT.
    assert rcpt_reply(api, f"nobody@{domain}") == 550

    # With a catch-all: it lands there; the mailbox's own +tag address still goes to the mailbox.
    r = api.client.patch(f"/v1/domains/{dom['id']}", json={"catch_all_mailbox_id": catch["id"]}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert api.lmtp(f"nobody@{domain}", message(f"nobody@{domain}", "to nobody")) == {}
    assert "to nobody" in subjects(api, catch["id"], "to nobody")
    assert api.lmtp(f"hello+news@{domain}", message(f"hello+news@{domain}", "tagged")) == {}
    assert "tagged" in subjects(api, hello["id"], "tagged")
    assert "tagged" not in subjects(api, catch["id"], "tagged", timeout=1.0)
    assert "to nobody" not in subjects(api, hello["id"], "to nobody", timeout=0.5)

    # Catch-all off again: refused as before.
    r = api.client.patch(f"/v1/domains/{dom['id']}", json={"catch_all_mailbox_id": None}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert rcpt_reply(api, f"nobody@{domain}") == 550
