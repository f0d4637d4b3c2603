"""The sandbox message builder: proper RFC 5322/MIME output from Python's email package, and every
way to smuggle a header in refused with a 422 naming the field. The request bodies are built
without pydantic's validation (``model_construct``), so the service's own checks are what is tested."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from shipmail.http.errors import ValidationFailed
from shipmail.sandbox.schemas import InjectSandboxInboundRequest, OutboundHeader, Recipient, RecipientObject
from shipmail.sandbox.service import build_message

MAILBOX = "hello@example.com"


def _recipient(value: str | dict[str, Any]) -> Recipient:
    return value if isinstance(value, str) else RecipientObject.model_construct(**value)


def _request(
    sender: str | dict[str, Any] = "a@sender.example",
    *,
    to: list[Any] | None = None,
    cc: list[Any] | None = None,
    headers: list[tuple[str, str]] | None = None,
    **kw: Any,
) -> InjectSandboxInboundRequest:
    """The body of ``POST /sandbox/inbound`` as given, unvalidated (``sender`` is ``from``)."""
    values: dict[str, Any] = {"from_": _recipient(sender), "subject": "s", "text": "t", **kw}
    if to is not None:
        values["to"] = [_recipient(r) for r in to]
    if cc is not None:
        values["cc"] = [_recipient(r) for r in cc]
    if headers is not None:
        values["headers"] = [OutboundHeader.model_construct(name=n, value=v) for n, v in headers]
    return InjectSandboxInboundRequest.model_construct(**values)


def build(**kw: Any) -> tuple[EmailMessage, bytes, str, str]:
    data, message_id, sender = build_message(_request(**kw), recipient=MAILBOX)
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed, data, message_id, sender


def refused(**kw: Any) -> list[str]:
    with pytest.raises(ValidationFailed) as exc:
        build(**kw)
    return [d["field"] for d in exc.value.details]


def test_crlf_lines_and_required_headers() -> None:
    msg, data, message_id, sender = build()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert msg["To"] == MAILBOX and msg["From"] == "a@sender.example" and sender == "a@sender.example"
    assert msg["Message-ID"] == message_id
    assert message_id.startswith("<sandbox.") and message_id.endswith("@example.com>")
    assert msg["Date"] is not None and msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"


def test_bodies() -> None:
    msg, *_ = build(text="plain ü", html="<p>html ü</p>")
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().strip() == "plain ü"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().strip() == "<p>html ü</p>"  # type: ignore[union-attr]
    msg, *_ = build(text=None, html="<b>x</b>")
    assert msg.get_content_type() == "text/html"
    long_line = "x" * 5000
    msg, data, *_ = build(text=long_line)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert msg.get_content().rstrip("\r\n") == long_line


def test_addresses_names_and_threading() -> None:
    msg, *_ = build(
        sender={"address": "a@sender.example", "name": 'Ünï "Quoted", Name'},
        to=["Bob <bob@x.example>", {"address": "c@x.example", "name": None}],
        cc=['"Doe, Jane" <jane@x.example>'],
        subject="Grüße " + "word " * 250,
        in_reply_to="<p@x>",
        received_at=datetime(2026, 1, 2, 3, 4, 5),
        headers=[
            ("X-Tag", "ä"),
            ("List-Unsubscribe", "<https://x.example/u>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ],
    )
    assert msg["From"].addresses[0].display_name == 'Ünï "Quoted", Name'
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@x.example", "c@x.example"]
    assert msg["Cc"].addresses[0].display_name == "Doe, Jane"
    assert str(msg["Subject"]) == "Grüße " + "word " * 250
    assert msg["In-Reply-To"] == "<p@x>" and msg["References"] == "<p@x>"
    assert msg["Date"].datetime == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert msg["X-Tag"] == "ä" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    msg, *_ = build(in_reply_to="<p@x>", references=["<r@x>", "<p@x>"], message_id="<given@x>")
    assert msg["References"] == "<r@x> <p@x>" and msg["Message-ID"] == "<given@x>"


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"subject": "a\r\nBcc: v@x"}, "subject"),
        ({"subject": "a\rb"}, "subject"),
        ({"subject": "a\x00"}, "subject"),
        ({"subject": "a\x1bb"}, "subject"),
        ({"sender": "a@x\nBcc: v@x"}, "from"),
        ({"sender": {"address": "a@x.example", "name": "n\n"}}, "from.name"),
        ({"sender": {"address": "a@x.example\r"}}, "from.address"),
        ({"to": ["ok@x.example", "b@x\r\nBcc: v@x"]}, "to[1]"),
        ({"cc": [{"address": "c@x.example", "name": "\x00"}]}, "cc[0].name"),
        ({"message_id": "<a\r\n@x>"}, "message_id"),
        ({"in_reply_to": "<a b@x>"}, "in_reply_to"),
        ({"message_id": "<no-at-sign>"}, "message_id"),
        ({"message_id": "<a(comment)@x>"}, "message_id"),
        ({"message_id": "<ü@x>"}, "message_id"),
        ({"message_id": "<" + "x" * 950 + "@y>"}, "message_id"),
        ({"references": ["<ok@x>", "no-brackets"]}, "references[1]"),
        ({"headers": [("X-A", "v\r\nBcc: v@x")]}, "headers[0].value"),
        ({"headers": [("X-A: b", "v")]}, "headers[0].name"),
        ({"headers": [("Bcc", "v@x")]}, "headers[0].name"),
        ({"headers": [("From", "v@x")]}, "headers[0].name"),
        ({"headers": [("X-Shipmail-Key", "v")]}, "headers[0].name"),
        ({"headers": [("x-ses-tags", "v")]}, "headers[0].name"),
        ({"headers": [("X-Forwarded-For", "1.2.3.4")]}, "headers[0].name"),
        ({"headers": [("X-", "v")]}, "headers[0].name"),
        ({"headers": [("X-A", "1"), ("X-a", "2")]}, "headers[1].name"),
        ({"headers": [("X-A", "  ")]}, "headers[0].value"),
        ({"headers": [("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]}, "headers"),
        ({"headers": [("List-Unsubscribe-Post", "yes"), ("List-Unsubscribe", "<https://x/u>")]}, "headers"),
        ({"headers": [("List-Unsubscribe", "<javascript:alert(1)>")]}, "headers"),
        ({"text": None, "html": None}, "text"),
        ({"html": "a\x00b"}, "html"),
        ({"sender": "nobody"}, "from"),
        ({"sender": "a@-bad-.example"}, "from"),
        ({"sender": "ü@x.example"}, "from"),
        ({"to": [{"address": "x" * 65 + "@x.example"}]}, "to[0].address"),
    ],
)
def test_refusals_name_the_field(kw: dict[str, Any], field: str) -> None:
    assert field in refused(**kw)


def test_all_problems_are_reported_at_once() -> None:
    fields = refused(subject="a\nb", sender="nobody", headers=[("Bcc", "x")])
    assert {"subject", "from", "headers[0].name"} <= set(fields)
