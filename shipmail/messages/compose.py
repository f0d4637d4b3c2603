"""Building the RFC 5322 message of a send or reply with Python's :mod:`email` package.

``EmailMessage`` with ``policy.SMTP`` made 7-bit (CRLF line ends, which Cyrus's ``Email/import``
needs; folded headers; quoted-printable or base64 for non-ASCII text; RFC 2047 encoded words for
non-ASCII display names and subjects; RFC 2231 parameters for non-ASCII file names): ``text/plain``, ``text/html``, or
``multipart/alternative`` of both; with attachments, ``multipart/mixed`` around it, each
attachment base64. ``Bcc`` is never written: blind recipients are envelope recipients only
(Cyrus sends the stored bytes as they are, a ``Bcc`` header included: measured). Header
injection is impossible by construction: every header value was checked for CR, LF and the
other control characters before it gets here (:func:`check_text`).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from shipmail.http.errors import ValidationFailed, detail
from shipmail.messages.schemas import MAX_ATTACHMENT_BYTES, MAX_RECIPIENTS, AttachmentInput
from shipmail.sandbox.schemas import Recipient
from shipmail.sandbox.service import Party, Problems, check_header_text, header_address, parse_party

#: CRLF, folded headers, and 7-bit only: non-ASCII text goes quoted-printable or base64, so any
#: relay takes the message unchanged (no 8BITMIME needed; a DKIM signature survives).
_POLICY = policy.SMTP.clone(cte_type="7bit")

_MIME_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Draft:
    """Everything of one outgoing message, checked."""

    sender: Party
    to: list[Party]
    cc: list[Party] = field(default_factory=list)
    bcc: list[Party] = field(default_factory=list)
    reply_to: Party | None = None
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    message_id: str = ""
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def envelope_recipients(self) -> list[str]:
        """Every recipient address once, in order (to, cc, bcc)."""
        seen: dict[str, None] = {}
        for party in [*self.to, *self.cc, *self.bcc]:
            seen.setdefault(party.address, None)
        return list(seen)


def mime_type(value: str | None) -> str | None:
    """``value`` (a Content-Type, parameters dropped) as a lower-case ``type/subtype``;
    ``application/octet-stream`` when empty; None when it is not a MIME type."""
    bare = (value or "").split(";", 1)[0].strip().lower() or "application/octet-stream"
    return bare if _MIME_TYPE.match(bare) else None


def new_message_id(message_id: str, domain: str) -> str:
    """``<msg_....<16 hex>@domain>``: unique, on the sender's domain, naming our message row."""
    return f"<{message_id}.{secrets.token_hex(8)}@{domain}>"


def parse_recipients(problems: Problems, name: str, values: list[Recipient] | None) -> list[Party]:
    """The parties of a recipient list (problems named ``name[i]``)."""
    out = []
    for i, value in enumerate(values or []):
        party = parse_party(problems, f"{name}[{i}]", value)
        if party is not None:
            out.append(party)
    return out


def check_text(problems: Problems, name: str, value: str | None) -> None:
    """A problem when ``value`` (a header value) holds CR, LF or another control character."""
    if value is not None:
        check_header_text(problems, name, value)


def check_bodies(problems: Problems, text: str | None, html: str | None) -> None:
    if text is None and html is None:
        problems.add("text", "missing", "at least one of text and html is required")
    for name, body in (("text", text), ("html", html)):
        if body is not None and "\x00" in body:
            problems.add(name, "nul_character", "bodies must not contain NUL characters")


def check_recipient_count(problems: Problems, *lists: list[Party]) -> None:
    if sum(len(x) for x in lists) > MAX_RECIPIENTS:
        problems.add("to", "too_many_recipients", f"at most {MAX_RECIPIENTS} recipients (to + cc + bcc)")


def decode_attachments(problems: Problems, items: list[AttachmentInput] | None) -> list[Attachment]:
    """The decoded attachments; problems for bad base64, a bad type, a name with control
    characters, or more than 3 MB (each and together)."""
    out: list[Attachment] = []
    total = 0
    for i, item in enumerate(items or []):
        where = f"attachments[{i}]"
        if not check_header_text(problems, f"{where}.filename", item.filename):
            continue
        content_type = (item.content_type or "application/octet-stream").strip().lower()
        if not _MIME_TYPE.match(content_type):
            problems.add(f"{where}.content_type", "invalid_content_type", "a MIME type is type/subtype")
            continue
        try:
            data = base64.b64decode(item.content.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            problems.add(f"{where}.content", "invalid_base64", "content must be base64")
            continue
        if len(data) > MAX_ATTACHMENT_BYTES:
            problems.add(f"{where}.content", "too_large", "an attachment is at most 3 MB")
            continue
        total += len(data)
        out.append(Attachment(filename=item.filename, content_type=content_type, data=data))
    if total > MAX_ATTACHMENT_BYTES:
        problems.add("attachments", "too_large", "attachments are at most 3 MB together")
    return out


def build(draft: Draft, *, date: datetime) -> bytes:
    """The message bytes (CRLF) of ``draft``; 422 when the email package refuses a value."""
    msg = EmailMessage(policy=_POLICY)
    try:
        msg["From"] = header_address(draft.sender)
        msg["To"] = [header_address(p) for p in draft.to]
        if draft.cc:
            msg["Cc"] = [header_address(p) for p in draft.cc]
        if draft.reply_to is not None:
            msg["Reply-To"] = header_address(draft.reply_to)
        msg["Subject"] = draft.subject
        msg["Date"] = format_datetime(date)
        msg["Message-ID"] = draft.message_id
        if draft.in_reply_to:
            msg["In-Reply-To"] = draft.in_reply_to
        if draft.references:
            msg["References"] = " ".join(draft.references)
        for name, value in draft.headers:
            msg[name] = value
        if draft.text is not None and draft.html is not None:
            msg.set_content(draft.text)
            msg.add_alternative(draft.html, subtype="html")
        elif draft.html is not None:
            msg.set_content(draft.html, subtype="html")
        else:
            msg.set_content(draft.text or "")
        for attachment in draft.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            msg.add_attachment(
                attachment.data,
                maintype=maintype,
                subtype=subtype,
                filename=attachment.filename,
                cte="base64",
            )
        return msg.as_bytes(policy=_POLICY)
    except (ValueError, TypeError, IndexError) as exc:
        raise ValidationFailed(
            f"The message could not be built: {exc}.", details=[detail("body", "unbuildable", str(exc))]
        ) from None
