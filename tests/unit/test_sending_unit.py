"""Unit tests of sending: the message builder (MIME, encodings, no Bcc header) and the spool
format the outgoing queue reads (the one :mod:`shipmail.mailserver.sendmail` writes)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from shipmail.config import Settings
from shipmail.http.errors import ValidationFailed
from shipmail.mailserver.sendmail import store_message
from shipmail.messages import compose, outbound
from shipmail.messages.schemas import AttachmentInput
from shipmail.sandbox.service import Party, Problems

WHEN = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def draft(**kw: object) -> compose.Draft:
    base: dict[str, object] = {
        "sender": Party("a@one.example", "Zoë Ångström"),
        "to": [Party("b@two.example", "Bob")],
        "subject": "Grüße — a long subject " * 5,
        "text": "line one\nline two ✓",
        "message_id": "<msg_x.1@one.example>",
    }
    base.update(kw)
    return compose.Draft(**base)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_build_alternatives_attachments_and_no_bcc() -> None:
    d = draft(
        html="<p>hi ✓</p>",
        bcc=[Party("hidden@three.example")],
        cc=[Party("c@two.example", "Çarol")],
        attachments=[compose.Attachment("résumé 2026.pdf", "application/pdf", b"%PDF\x00\xff" * 100)],
        in_reply_to="<orig@two.example>",
        references=["<root@two.example>", "<orig@two.example>"],
    )
    data = compose.build(d, date=WHEN)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF only (Email/import)
    assert b"hidden@three.example" not in data and b"Bcc" not in data
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert data.isascii()  # RFC 2047 / 2231 / base64: 7-bit on the wire
    msg = parse(data)
    assert msg["From"].addresses[0].display_name == "Zoë Ångström"
    assert msg["Cc"].addresses[0].display_name == "Çarol"
    assert msg["Subject"] == "Grüße — a long subject " * 5
    assert msg["In-Reply-To"] == "<orig@two.example>"
    assert msg["References"] == "<root@two.example> <orig@two.example>"
    assert msg["Date"].datetime == WHEN
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "line one\nline two ✓\n"
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "résumé 2026.pdf"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_content() == b"%PDF\x00\xff" * 100
    assert d.envelope_recipients == ["b@two.example", "c@two.example", "hidden@three.example"]


def test_decode_attachments_problems() -> None:
    problems = Problems("message")
    out = compose.decode_attachments(
        problems,
        [
            AttachmentInput(filename="ok.txt", content="aGk="),
            AttachmentInput(filename="bad\r\nname", content="aGk="),
            AttachmentInput(filename="x", content="***"),
            AttachmentInput(filename="y", content="aGk=", content_type="not a type"),
        ],
    )
    assert [(a.filename, a.content_type, a.data) for a in out] == [("ok.txt", "application/octet-stream", b"hi")]
    fields = [d["field"] for d in problems.details]
    assert fields == ["attachments[1].filename", "attachments[2].content", "attachments[3].content_type"]
    with pytest.raises(ValidationFailed):
        problems.raise_if_any()


def test_spool_files_parse_back(tmp_path: Path) -> None:
    message = b"From: a@one.example\r\nSubject: x\r\n\r\nbody\r\n"
    path = store_message(tmp_path, "a@one.example", ["b@two.example", "c@three.example"], message)
    spooled = outbound.parse_spool_file(path.read_bytes())
    assert spooled == outbound.Spooled("a@one.example", ["b@two.example", "c@three.example"], message)
    null = store_message(tmp_path, "", ["d@four.example"], message)
    assert outbound.parse_spool_file(null.read_bytes()) == outbound.Spooled("", ["d@four.example"], message)
    with pytest.raises(ValueError):
        outbound.parse_spool_file(b"Subject: no envelope\r\n\r\n")


def test_relay_unreachable_is_temporary() -> None:
    settings = Settings(
        data_dir=Path("/tmp/unused"), database_url="sqlite://", secret_key=b"k", smtp_relay="127.0.0.1:9"
    )
    got = outbound.relay(settings, "a@one.example", ["b@two.example"], b"Subject: x\r\n\r\nx\r\n")
    assert got.done == [] and got.refused == {}
    assert "relay unreachable" in got.temporary["b@two.example"]


def test_scheduled_at_bounds_and_metadata_size() -> None:
    from datetime import timedelta

    import pydantic

    from shipmail.messages import service
    from shipmail.messages.schemas import SendMessageRequest
    from shipmail.utc import now

    assert service.due_time(None) is None
    assert service.due_time(now() - timedelta(days=3)) is None  # past: sent at once
    assert service.due_time(now() + timedelta(milliseconds=200)) is None  # near-immediate
    later = now() + timedelta(hours=1)
    assert service.due_time(later) == later
    naive = (now() + timedelta(hours=2)).replace(tzinfo=None)
    assert service.due_time(naive) == naive.replace(tzinfo=UTC)  # no offset: UTC
    with pytest.raises(ValidationFailed):
        service.due_time(now() + timedelta(days=366))
    with pytest.raises(ValidationFailed):  # past year 9999 once in UTC: 422, not an overflow
        service.due_time(datetime.fromisoformat("9999-12-31T23:59:59-10:00"))
    assert service.due_time(datetime.fromisoformat("0001-01-01T00:00:00+10:00")) is None

    base = {"from": "a@one.example", "to": ["b@two.example"], "subject": "s", "text": "t"}
    fits = {f"k{i}": "v" * 390 for i in range(20)}
    assert SendMessageRequest.model_validate({**base, "metadata": fits}).metadata == fits
    with pytest.raises(pydantic.ValidationError, match="8192 bytes"):
        SendMessageRequest.model_validate({**base, "metadata": {"k": "é" * 4100}})  # 8 KB counted in UTF-8 bytes
    with pytest.raises(pydantic.ValidationError, match="unique"):
        SendMessageRequest.model_validate({**base, "staged_attachment_ids": ["sat_a", "sat_a"]})


def test_mime_type_of_a_content_type_header() -> None:
    assert compose.mime_type(None) == "application/octet-stream"
    assert compose.mime_type("Text/Plain; charset=utf-8") == "text/plain"
    assert compose.mime_type("not a type") is None
