"""Forwarding without a mail server: the Sieve section and its place in the one delivery script,
destination validation, the confirmation message (issue 14, section 3)."""

from __future__ import annotations

import email
import email.policy
import uuid
from typing import Any

import pydantic
import pytest

from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.forwarding.schemas import CreateMailboxForwardingRequest
from shipmail.forwarding.service import confirmation_message, token_digest
from shipmail.forwarding.sieve import FORWARDED_HEADER, forwarding_section
from shipmail.mailserver.cyrus_server import CyrusMailServer
from shipmail.rules.schemas import RULES
from shipmail.settings.schemas import AutoReply
from shipmail.sieve.script import parses

ADDRESS = "hello@example.com"


def _rule(**kw: Any) -> Any:
    base = {
        "id": str(uuid.uuid4()),
        "name": "r",
        "enabled": True,
        "position": 0,
        "match_mode": "all",
        "stop": True,
        "conditions": [{"type": "subject_contains", "value": "x"}],
        "actions": [{"type": "star"}],
    }
    return RULES.validate_python([{**base, **kw}])


def test_no_destination_no_section() -> None:
    assert forwarding_section([], ADDRESS) is None
    assert "redirect" not in build_script(ScriptOptions(address=ADDRESS, spam_threshold=5))


def test_forwarding_runs_after_spam_and_before_auto_reply_and_rules() -> None:
    server = CyrusMailServer.delivery_sieve(None)  # type: ignore[arg-type]
    script = build_script(
        ScriptOptions(
            server=server,
            address=ADDRESS,
            spam_threshold=5,
            auto_reply=AutoReply(enabled=True, body="Away."),
            rules=_rule(),
            forward_to=("one@elsewhere.example", "two@elsewhere.example"),
        )
    )
    assert parses(script, server.has_attachment) is None  # type: ignore[arg-type]
    spam, forwarding, reply, rule = (
        script.index("# Filter: spam-threshold"),
        script.index("# Filter: forwarding"),
        script.index("# Filter: auto-reply"),
        script.index("# Filter: rule"),
    )
    assert spam < forwarding < reply < rule
    assert 'redirect :copy "one@elsewhere.example";' in script
    assert 'redirect :copy "two@elsewhere.example";' in script
    assert f'if not header :is "{FORWARDED_HEADER}" "{ADDRESS}"' in script
    assert f'addheader "{FORWARDED_HEADER}" "{ADDRESS}";' in script
    assert '"editheader"' in script and '"copy"' in script


def test_quotes_cannot_leave_their_string() -> None:
    script = build_script(ScriptOptions(address='we"ird@example.com', forward_to=('x";discard;"@e.example',)))
    assert parses(script) is None
    assert "\ndiscard" not in script and 'redirect :copy "x\\";discard;\\"@e.example";' in script


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        "@example.com",
        "a@",
        "a b@example.com",
        "a@example",
        "<a@example.com>",
        "A <a@example.com>",
        "a@example.com\r\nBcc: x@y.z",
        "a@[127.0.0.1]",
        "x" * 65 + "@example.com",
        "ü@example.com",
    ],
)
def test_destination_must_be_a_plain_address(value: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        CreateMailboxForwardingRequest(destination=value)


def test_destination_is_lower_cased() -> None:
    assert (
        CreateMailboxForwardingRequest(destination="Some.One+tag@Example.ORG").destination == "some.one+tag@example.org"
    )


def test_confirmation_message() -> None:
    raw = confirmation_message(
        ADDRESS, "dest@elsewhere.example", "https://api.example/v1/forwarding-confirmations/t", "soon"
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"] == ADDRESS and msg["To"] == "dest@elsewhere.example"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "https://api.example/v1/forwarding-confirmations/t" in raw.decode()


def test_token_digest_is_sha256_hex() -> None:
    assert len(token_digest("abc")) == 64 and token_digest("abc") != token_digest("abd")
