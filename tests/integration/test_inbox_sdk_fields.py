"""The inbox keys Shipmail's SDK 0.6.7 declares beyond the reference's (issue 9), against the real
Cyrus: ``reply_text`` and ``security`` of each message, ``authentication_results`` (the
reference's, from the border MTA's trusted Authentication-Results), ``junk_total`` of the message
list and ``conversation_id`` of the sandbox's ``Message``."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ApiEnv, AuthRegistry, CyrusFixture, api_env

TRUSTED = "mx.shipmail-test.example"


@pytest.fixture
def env(cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(cyrus, authd_registry, tmp_path, authserv_ids=f"{TRUSTED}, other.example") as e:
        yield e


def _mail(to: str, subject: str, body: str, *, extra: str = "", html: bool = False) -> bytes:
    kind = "text/html" if html else "text/plain"
    return (
        f"{extra}From: Ann <ann@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\nContent-Type: {kind}; charset=utf-8\r\n\r\n{body}"
    ).encode()


def _messages(api: ApiEnv, mbx: dict[str, Any], **params: Any) -> dict[str, Any]:
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages", params=params, headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _by_subject(api: ApiEnv, mbx: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["subject"]: m for m in _messages(api, mbx, limit=50)["data"]}


def _full(api: ApiEnv, mbx: dict[str, Any], message_id: str) -> dict[str, Any]:
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages/{message_id}", headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_reply_text_is_the_new_text_without_the_quotation(env: ApiEnv) -> None:
    mbx = env.new_mailbox(f"reply-{secrets.token_hex(4)}.example", "bob")
    to = mbx["address"]
    mails = {
        "gmail": _mail(
            to,
            "gmail",
            "Sounds good, see you then.\r\n\r\n-- \r\nBob\r\n\r\n"
            "On Mon, Jan 5, 2026 at 10:00 AM Ann <ann@example.org> wrote:\r\n> Shall we meet?\r\n> Ann\r\n",
        ),
        "outlook": _mail(
            to,
            "outlook",
            "Yes.\r\n\r\n-----Original Message-----\r\nFrom: Ann\r\nSent: Monday\r\nSubject: Plan\r\n\r\nShall we?\r\n",
        ),
        "trailing": _mail(to, "trailing", "Fine by me.\r\n\r\n> Shall we?\r\n> Ann\r\n"),
        "interleaved": _mail(to, "interleaved", "> question one?\r\nanswer one\r\n> question two?\r\nanswer two\r\n"),
        "plain": _mail(to, "plain", "    indented code\r\nstays as it is.\r\n"),
        "html": _mail(
            to,
            "html",
            '<div>Sure &amp; thanks.</div><div class="gmail_quote"><div>On Mon, Jan 5, 2026 Ann wrote:</div>'
            "<blockquote>Shall we?</blockquote></div>",
            html=True,
        ),
    }
    for raw in mails.values():
        assert env.lmtp(to, raw) == {}
    listed = _by_subject(env, mbx)
    expected = {
        "gmail": "Sounds good, see you then.\n\n-- \nBob",
        "outlook": "Yes.",
        "trailing": "Fine by me.",
        "interleaved": "> question one?\nanswer one\n> question two?\nanswer two",
        "plain": "    indented code\nstays as it is.",
        "html": "Sure & thanks.",
    }
    for subject, text in expected.items():
        assert listed[subject]["reply_text"] == text, subject
        # The full read says the same.
        assert _full(env, mbx, listed[subject]["id"])["reply_text"] == text, subject


def test_reply_text_is_null_without_a_text_body(env: ApiEnv) -> None:
    mbx = env.new_mailbox(f"noreply-{secrets.token_hex(4)}.example", "bob")
    raw = (
        f"From: ann@example.org\r\nTo: {mbx['address']}\r\nSubject: file only\r\nMessage-ID: <f1@example.org>\r\n"
        "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
    ).encode()
    assert env.lmtp(mbx["address"], raw) == {}
    (message,) = _messages(env, mbx)["data"]
    assert message["attachments"] and message["text_body"] == []
    assert message["reply_text"] is None


def test_authentication_results_trust_only_the_configured_authserv_id(env: ApiEnv) -> None:
    mbx = env.new_mailbox(f"auth-{secrets.token_hex(4)}.example", "bob")
    to = mbx["address"]
    # The topmost header is a forgery's (an authserv-id nobody trusts); below it, ours (folded).
    checked = (
        "Authentication-Results: evil.example; spf=pass; dkim=pass; dmarc=pass\r\n"
        f"Authentication-Results: {TRUSTED};\r\n spf=softfail smtp.mailfrom=ann@example.org;\r\n"
        " dkim=fail header.d=example.org; dkim=pass header.d=example.net;\r\n dmarc=fail header.from=example.org\r\n"
        "Received-SPF: softfail (mx: domain does not designate) client-ip=192.0.2.1\r\n"
        "X-Spam-Status: Yes, score=7.25 required=5.0 tests=BAYES_99\r\n"
    )
    assert env.lmtp(to, _mail(to, "checked", "hi\r\n", extra=checked)) == {}
    assert env.lmtp(to, _mail(to, "none", "hi\r\n", extra=f"Authentication-Results: {TRUSTED}; none\r\n")) == {}
    forged = "Authentication-Results: evil.example; spf=pass; dkim=pass; dmarc=pass\r\n"
    assert env.lmtp(to, _mail(to, "forged", "hi\r\n", extra=forged)) == {}
    assert env.lmtp(to, _mail(to, "bare", "hi\r\n")) == {}
    listed = _by_subject(env, mbx)

    results = listed["checked"]["authentication_results"]
    assert results == {
        "spf": "softfail",
        "dkim": "pass",  # one of the two signatures passed
        "dmarc": "fail",
        "spam": {"isSpam": True, "scoreMilli": 7250},
        "raw": {
            "authenticationResults": f"{TRUSTED}; spf=softfail smtp.mailfrom=ann@example.org; dkim=fail "
            "header.d=example.org; dkim=pass header.d=example.net; dmarc=fail header.from=example.org",
            "receivedSpf": "softfail (mx: domain does not designate) client-ip=192.0.2.1",
            "spamStatus": "Yes, score=7.25 required=5.0 tests=BAYES_99",
        },
    }
    assert _full(env, mbx, listed["checked"]["id"])["authentication_results"] == results
    none = listed["none"]["authentication_results"]
    assert (none["spf"], none["dkim"], none["dmarc"]) == ("none", "none", "none")
    assert none["spam"] == {"isSpam": None, "scoreMilli": None}
    # A header of an untrusted authserv-id alone counts as nothing at all.
    assert listed["forged"]["authentication_results"] is None
    assert listed["bare"]["authentication_results"] is None


def test_security_is_not_scanned_and_names_the_exact_message(env: ApiEnv) -> None:
    mbx = env.new_mailbox(f"sec-{secrets.token_hex(4)}.example", "bob")
    to = mbx["address"]
    assert env.lmtp(to, _mail(to, "one", "first\r\n")) == {}
    assert env.lmtp(to, _mail(to, "two", "second\r\n")) == {}
    listed = _by_subject(env, mbx)
    digests = set()
    for message in listed.values():
        security = message["security"]
        assert security["status"] == "not_scanned" and security["risk_codes"] == [] and security["review"] is None
        assert security["scanner"] == "pattern_v1"
        assert len(security["content_sha256"]) == 64 and int(security["content_sha256"], 16) >= 0
        assert security["content_sha256"] != hashlib.sha256(b"").hexdigest()
        assert _full(env, mbx, message["id"])["security"] == security
        digests.add(security["content_sha256"])
    assert len(digests) == 2


def test_junk_total_counts_the_junk_folder_whatever_the_filters(env: ApiEnv) -> None:
    mbx = env.new_mailbox(f"junk-{secrets.token_hex(4)}.example", "bob")
    to = mbx["address"]
    assert _messages(env, mbx)["junk_total"] == 0
    for subject in ("a", "b", "c"):
        assert env.lmtp(to, _mail(to, subject, "x\r\n")) == {}
    listed = _by_subject(env, mbx)
    for subject in ("a", "b"):
        r = env.client.post(
            f"/v1/mailboxes/{mbx['id']}/inbox/messages/{listed[subject]['id']}/move",
            json={"target_role": "junk"},
            headers=env.auth(),
        )
        assert r.status_code == 200, r.text
    assert _messages(env, mbx)["junk_total"] == 2
    inbox = _messages(env, mbx, folder_role="inbox")
    assert [m["subject"] for m in inbox["data"]] == ["c"] and inbox["junk_total"] == 2
    assert _messages(env, mbx, folder_role="junk", limit=1)["junk_total"] == 2


def test_sandbox_message_conversation_id_is_its_thread(env: ApiEnv) -> None:
    mbx = env.new_mailbox(f"conv-{secrets.token_hex(4)}.example", "bob")
    r = env.client.post(
        f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
        json={"from": "dan@example.org", "subject": "Injected", "text": "hi"},
        headers=env.auth(),
    )
    assert r.status_code == 201, r.text
    message = r.json()
    assert message["conversation_id"] is not None and message["conversation_id"] == message["thread_id"]
    (listed,) = _messages(env, mbx)["data"]
    assert listed["conversation_id"] == listed["thread_id"] == message["thread_id"]
