"""Addresses the inbound gateway resolves beyond a mailbox's own (issue 13's catch-all, issue 15's
aliases), against the real Cyrus through the gateway (:mod:`shipmail.inbound.resolve`): an alias
delivers into its mailbox; an unknown address of a domain with a catch-all delivers into the
catch-all mailbox and, without one, is refused with 550 5.1.1; ``local+tag@`` of an existing
mailbox stays with that mailbox rather than the catch-all."""

from __future__ import annotations

import secrets
import smtplib
import time
import uuid
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


def _full(api: ApiEnv, mailbox_id: str, subject: str) -> dict[str, Any]:
    """The full inbox message of ``mailbox_id`` with ``subject`` (waits for it)."""
    assert subject in subjects(api, mailbox_id, subject)
    listed = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages", headers=api.auth()).json()["data"]
    (found,) = [m for m in listed if m["subject"] == subject]
    r = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages/{found['id']}", headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _delivered_to(message: dict[str, Any]) -> list[str]:
    return [h["value"] for h in message["headers"] if h["name"].lower() == "delivered-to"]


def _star_rule(recipient: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "name": f"star mail to {recipient}",
        "enabled": True,
        "position": 0,
        "match_mode": "all",
        "stop": False,
        "conditions": [{"type": "recipient_is", "value": recipient}],
        "actions": [{"type": "star"}],
    }


def test_rules_match_an_alias_or_the_catch_all_as_the_recipient(api: ApiEnv) -> None:
    """Mail to an alias (or through the catch-all) that does not name it in To/Cc (a Bcc copy, a
    list) still matches ``recipient_is <that address>``: the gateway gives that copy
    ``Delivered-To: <address>``, and no other recipient of the same transaction sees it."""
    domain = f"alias-rules-{secrets.token_hex(4)}.example"
    dom: dict[str, Any] = api.verified_domain(domain)
    made = {}
    for local in ("hello", "other", "catch"):
        body = {"domain_id": dom["id"], "address": local, "generate_password": True}
        r = api.client.post("/v1/mailboxes", json=body, headers=api.auth())
        assert r.status_code == 201, r.text
        made[local] = r.json()
    hello, other, catch = made["hello"], made["other"], made["catch"]
    r = api.client.post(f"/v1/mailboxes/{hello['id']}/aliases", json={"local_part": "sales"}, headers=api.auth())
    assert r.status_code == 201, r.text
    r = api.client.patch(f"/v1/domains/{dom['id']}", json={"catch_all_mailbox_id": catch["id"]}, headers=api.auth())
    assert r.status_code == 200, r.text
    for box, recipient in ((hello, f"sales@{domain}"), (catch, f"nobody@{domain}")):
        rules = {"rules": [_star_rule(recipient)]}
        r = api.client.put(f"/v1/mailboxes/{box['id']}/rules", json=rules, headers=api.auth())
        assert r.status_code == 200, r.text

    # Bcc'd to the alias (To names someone else): the rule matches.
    assert api.lmtp(f"sales@{domain}", message("list@example.net", "bcc to the alias")) == {}
    via_alias = _full(api, hello["id"], "bcc to the alias")
    assert via_alias["keywords"].get("$flagged") is True
    assert _delivered_to(via_alias) == [f"sales@{domain}"]
    # The mailbox's own address: no Delivered-To, the alias rule does not match.
    assert api.lmtp(hello["address"], message("list@example.net", "to the mailbox")) == {}
    direct = _full(api, hello["id"], "to the mailbox")
    assert not direct["keywords"].get("$flagged") and _delivered_to(direct) == []
    # Through the catch-all.
    assert api.lmtp(f"nobody@{domain}", message("list@example.net", "to nobody")) == {}
    caught = _full(api, catch["id"], "to nobody")
    assert caught["keywords"].get("$flagged") is True and _delivered_to(caught) == [f"nobody@{domain}"]

    # One transaction for the alias and another mailbox: each copy is its own; replies in order.
    raw = message("list@example.net", "shared transaction")
    with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("ann@sender.example")[0] == 250
        assert lmtp.rcpt(other["address"])[0] == 250
        assert lmtp.rcpt(f"sales@{domain}")[0] == 250
        assert lmtp.rcpt(f"nobody+x@{domain}")[0] == 250
        assert lmtp.data(raw)[0] == 250
        assert lmtp.getreply()[0] == 250
        assert lmtp.getreply()[0] == 250
    mine = _full(api, hello["id"], "shared transaction")
    assert mine["keywords"].get("$flagged") is True and _delivered_to(mine) == [f"sales@{domain}"]
    theirs = _full(api, other["id"], "shared transaction")
    assert _delivered_to(theirs) == [] and not theirs["keywords"].get("$flagged")
    assert _delivered_to(_full(api, catch["id"], "shared transaction")) == [f"nobody+x@{domain}"]
