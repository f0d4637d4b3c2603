"""Sandbox inbound: a message built from a JSON description and delivered like real inbound mail.

Source: Shipmail ``POST /v1/mailboxes/{id}/sandbox/inbound`` (``injectSandboxInbound``); the input
is the request body itself (:class:`~shipmail.sandbox.schemas.InjectSandboxInboundRequest`).

:func:`build_message` makes an RFC 5322 message with Python's :mod:`email` package
(``EmailMessage``, ``policy.SMTP``: CRLF line ends, folded headers, RFC 2047 encoded words for
non-ASCII display names and subjects): ``text/plain``, ``text/html`` or ``multipart/alternative``
when both bodies are given. :func:`inject` delivers it to the mailbox over the mail server's
inbound path (:meth:`MailServer.deliver`: LMTP for Cyrus), so the mailbox's delivery script runs
exactly as for mail from the internet, then finds the delivered message by its Message-ID (one
JMAP request: Email/query with a ``header`` filter and Email/get) and returns it as the inbox renders
it (:func:`shipmail.inbox.service.get_message`).

Header injection is impossible by construction: every header value is checked for CR, LF, NUL and
the other C0 control characters (422), and custom headers are limited to ``List-Unsubscribe``,
``List-Unsubscribe-Post`` and non-reserved ``X-*`` names (RFC 8058 rules for the unsubscribe pair).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from jmapc.methods import EmailGet

from shipmail import utc
from shipmail.http.errors import Conflict, Detail, InternalError, ServiceUnavailable, ValidationFailed, detail
from shipmail.inbox import service as inbox
from shipmail.inbox.schemas import InboxFullMessage
from shipmail.jmap import email as jemail
from shipmail.jmap.errors import QuotaExceeded
from shipmail.jmap.request import Request
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import DeliveryRefused, MailServerUnavailable
from shipmail.runtime import Services
from shipmail.sandbox.schemas import InjectSandboxInboundRequest, OutboundHeader, Recipient, RecipientObject

logger = logging.getLogger("shipmail.sandbox.service")

#: How long (seconds) to wait for the delivered message to be searchable (Cyrus's search index
#: lags delivery by about 0.1 s), and the pause between looks.
FIND_TIMEOUT = 5.0
FIND_INTERVALS = (0.03, 0.05, 0.1, 0.2)

#: Longest message id accepted: its header line must stay within RFC 5322's 998 characters.
MAX_MESSAGE_ID = 900

#: Custom header names that are allowed besides non-reserved ``X-*`` ones.
LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"

#: ``X-`` header prefixes reserved for Shipmail, the sending infrastructure (SES), routing and
#: identity (lower case): a sandbox message must not forge them.
RESERVED_X_PREFIXES = (
    "x-shipmail",
    "x-ses-",
    "x-amz",
    "x-original-",
    "x-forwarded-",
    "x-envelope-",
    "x-delivered-",
    "x-received",
    "x-rcpt-",
    "x-sender",
    "x-originating-",
    "x-authenticated",
    "x-auth-",
    "x-real-ip",
    "x-client-ip",
    "x-sieve",
    "x-cyrus",
)

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*$")
_NAME_ADDR = re.compile(r"^\s*(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)
#: RFC 5322 msg-id without the obsolete forms: ``<dot-atom-text@(dot-atom-text | [no-fold-literal])>``.
_MSG_ID = re.compile(rf"^<{_ATOM}(?:\.{_ATOM})*@(?:{_ATOM}(?:\.{_ATOM})*|\[[\x21-\x5a\x5e-\x7e]*\])>$")
_URI_LIST = re.compile(r"^\s*<[^<>\s]+>(\s*,\s*<[^<>\s]+>)*\s*$")


@dataclass(frozen=True)
class Party:
    """An address with an optional display name (``Recipient`` on the wire)."""

    address: str
    name: str | None = None


class Problems:
    """The field-level problems of one request, reported together (422)."""

    def __init__(self, what: str = "sandbox message") -> None:
        self.what = what
        self.details: list[Detail] = []

    def add(self, field_name: str, code: str, message: str) -> None:
        self.details.append(detail(field_name, code, message))

    def raise_if_any(self) -> None:
        if self.details:
            raise ValidationFailed(f"Invalid {self.what}: " + self.details[0]["message"] + ".", details=self.details)


def check_header_text(problems: Problems, field_name: str, value: str) -> bool:
    """False (and a problem) when ``value`` holds CR, LF, NUL or another control character."""
    if _CONTROL.search(value):
        problems.add(
            field_name, "header_injection", "header values must not contain CR, LF, NUL or other control characters"
        )
        return False
    return True


def parse_party(problems: Problems, field_name: str, value: Recipient) -> Party | None:
    """A ``Recipient``: ``"user@host"``, ``"Name <user@host>"`` or ``{address, name}``; None (and
    a problem named ``field_name``) when it is not an address or holds control characters."""
    name: str | None
    if isinstance(value, RecipientObject):
        address = value.address
        name = value.name
        ok = check_header_text(problems, f"{field_name}.address", address)
        if name is not None:
            ok = check_header_text(problems, f"{field_name}.name", name) and ok
        if not ok:
            return None
    else:
        if not check_header_text(problems, field_name, value):
            return None
        match = _NAME_ADDR.match(value)
        if match:
            name = match.group("name").strip() or None
            address = match.group("addr").strip()
            if name and len(name) >= 2 and name[0] == name[-1] == '"':
                name = re.sub(r"\\(.)", r"\1", name[1:-1])
        else:
            name, address = None, value.strip()
    if len(address) > 254 or not _ADDR_SPEC.match(address) or len(address.split("@")[0]) > 64:
        where = f"{field_name}.address" if isinstance(value, RecipientObject) else field_name
        problems.add(where, "invalid_address", "not an email address (local@domain, ASCII)")
        return None
    return Party(address=address, name=name or None)


def header_address(party: Party) -> Address:
    local, _, domain = party.address.partition("@")
    return Address(display_name=party.name or "", username=local, domain=domain)


def check_custom_headers(problems: Problems, headers: list[OutboundHeader]) -> list[tuple[str, str]]:
    """The allowed custom headers as ``(name, value)`` pairs; a problem for each refused one."""
    seen: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for i, header in enumerate(headers):
        name, value = header.name, header.value
        where = f"headers[{i}]"
        lower = name.lower()
        if not _FIELD_NAME.match(name):
            problems.add(f"{where}.name", "invalid_header_name", "header names are letters, digits and '-'")
            continue
        if lower not in (LIST_UNSUBSCRIBE.lower(), LIST_UNSUBSCRIBE_POST.lower()):
            if not lower.startswith("x-") or len(lower) < 3:
                problems.add(
                    f"{where}.name",
                    "header_not_allowed",
                    f"{name} is not allowed: use List-Unsubscribe, List-Unsubscribe-Post or an X-* header",
                )
                continue
            if lower.startswith(RESERVED_X_PREFIXES):
                problems.add(f"{where}.name", "header_reserved", f"{name} is a reserved header")
                continue
        if lower in seen:
            problems.add(f"{where}.name", "duplicate_header", f"{name} is given twice")
            continue
        if not check_header_text(problems, f"{where}.value", value):
            continue
        if not value.strip():
            problems.add(f"{where}.value", "empty", "header values must not be blank")
            continue
        seen[lower] = value
        out.append((name, value))
    unsubscribe = seen.get(LIST_UNSUBSCRIBE.lower())
    if unsubscribe is not None:
        uris = re.findall(r"<([^<>\s]+)>", unsubscribe)
        if not _URI_LIST.match(unsubscribe) or not all(u.lower().startswith(("https://", "mailto:")) for u in uris):
            problems.add(
                "headers",
                "invalid_list_unsubscribe",
                "List-Unsubscribe is a comma-separated list of <https://...> or <mailto:...> URIs",
            )
    post = seen.get(LIST_UNSUBSCRIBE_POST.lower())
    if post is not None:
        if post.strip() != ONE_CLICK:
            problems.add("headers", "invalid_list_unsubscribe_post", f"List-Unsubscribe-Post must be {ONE_CLICK!r}")
        if unsubscribe is None or not any(
            u.lower().startswith("https://") for u in re.findall(r"<([^<>\s]+)>", unsubscribe)
        ):
            problems.add(
                "headers",
                "list_unsubscribe_post_needs_https",
                "List-Unsubscribe-Post needs a List-Unsubscribe header with an https URI (RFC 8058)",
            )
    return out


def new_message_id(domain: str) -> str:
    """A fresh ``<sandbox.<32 hex>@domain>``."""
    return f"<sandbox.{secrets.token_hex(16)}@{domain}>"


def build_message(spec: InjectSandboxInboundRequest, *, recipient: str) -> tuple[bytes, str, str]:
    """``(message bytes, Message-ID, envelope sender)`` for ``spec``, delivered to ``recipient``
    (the mailbox address; the ``To`` header when ``spec.to`` is empty). ``received_at`` becomes
    the ``Date`` header (UTC when naive, its own offset kept otherwise; now when absent).

    422 on invalid input, every problem at once, ``field`` named as in the JSON request body."""
    problems = Problems()
    sender = parse_party(problems, "from", spec.from_)
    to = [parse_party(problems, f"to[{i}]", r) for i, r in enumerate(spec.to or [])]
    cc = [parse_party(problems, f"cc[{i}]", r) for i, r in enumerate(spec.cc or [])]
    check_header_text(problems, "subject", spec.subject)
    if spec.text is None and spec.html is None:
        problems.add("text", "missing", "at least one of text and html is required")
    for name, body in (("text", spec.text), ("html", spec.html)):
        if body is not None and "\x00" in body:
            problems.add(name, "nul_character", "bodies must not contain NUL characters")
    ids = [("message_id", spec.message_id), ("in_reply_to", spec.in_reply_to)]
    ids += [(f"references[{i}]", ref) for i, ref in enumerate(spec.references or [])]
    for name, value in ids:
        if value is None or not check_header_text(problems, name, value):
            continue
        if not _MSG_ID.match(value):
            problems.add(name, "invalid_message_id", "a message id is <left@right> (RFC 5322 msg-id, ASCII, no spaces)")
        elif len(value) > MAX_MESSAGE_ID:
            problems.add(name, "too_long", f"message ids are at most {MAX_MESSAGE_ID} characters (one header line)")
    custom = check_custom_headers(problems, spec.headers or [])
    problems.raise_if_any()
    assert sender is not None

    domain = recipient.partition("@")[2] or "sandbox.invalid"
    message_id = spec.message_id or new_message_id(domain)
    when = spec.received_at or utc.now()
    if when.tzinfo is None:
        when = utc.as_utc(when)

    msg = EmailMessage(policy=policy.SMTP)
    try:
        msg["From"] = header_address(sender)
        msg["To"] = [header_address(p) for p in to if p] or recipient
        if cc:
            msg["Cc"] = [header_address(p) for p in cc if p]
        msg["Subject"] = spec.subject
        msg["Date"] = format_datetime(when)
        msg["Message-ID"] = message_id
        if spec.in_reply_to:
            msg["In-Reply-To"] = spec.in_reply_to
        references = spec.references or ([spec.in_reply_to] if spec.in_reply_to else [])
        if references:
            msg["References"] = " ".join(references)
        for name, value in custom:
            msg[name] = value
        if spec.text is not None and spec.html is not None:
            msg.set_content(spec.text)
            msg.add_alternative(spec.html, subtype="html")
        elif spec.html is not None:
            msg.set_content(spec.html, subtype="html")
        else:
            msg.set_content(spec.text or "")
        data = msg.as_bytes(policy=policy.SMTP)
    except (ValueError, TypeError, IndexError) as exc:  # the email package refused a value
        raise ValidationFailed(
            f"The message could not be built: {exc}.", details=[detail("body", "unbuildable", str(exc))]
        ) from None
    return data, message_id, sender.address


def _bare(message_id: str) -> str:
    return message_id[1:-1] if message_id.startswith("<") and message_id.endswith(">") else message_id


async def find_by_message_id(svc: Services, row: Mailbox, message_id: str) -> list[str]:
    """JMAP ids of ``row``'s messages whose Message-ID is exactly ``message_id`` (one request:
    Email/query with a ``header`` filter, which matches substrings, then Email/get to compare)."""
    request = Request()
    query = request.add(
        jemail.query({"header": ["Message-ID", _bare(message_id)]}, jemail.NEWEST_RECEIVED_FIRST, limit=256)
    )
    get = request.add(EmailGet(ids=request.ref(query, "/ids"), properties=["id", "messageId"]))
    results = await svc.jmap.call(row.address, request)
    listed = results.get(get, what="message lookup").get("list") or []
    want = _bare(message_id)
    return [str(e["id"]) for e in listed if want in (e.get("messageId") or [])]


async def _wait_for(svc: Services, row: Mailbox, message_id: str) -> str:
    deadline = time.monotonic() + FIND_TIMEOUT
    attempt = 0
    while True:
        found = await find_by_message_id(svc, row, message_id)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            logger.warning("delivered sandbox message of %s not found within %.1f s", row.id, FIND_TIMEOUT)
            raise ServiceUnavailable("The message was delivered but is not searchable yet; list the inbox shortly.")
        await asyncio.sleep(FIND_INTERVALS[min(attempt, len(FIND_INTERVALS) - 1)])
        attempt += 1


def _refusal(exc: DeliveryRefused, row: Mailbox) -> Exception:
    code, text = next(iter(exc.refused.values()))
    logger.warning("the mail server refused a sandbox message for %s: %s %s", row.id, code, text)
    if exc.temporary:
        return ServiceUnavailable("The mail server deferred the message; retry shortly.")
    if code == 552 or "5.2.2" in text:
        return QuotaExceeded("The mailbox is over its quota.")
    return InternalError(f"The mail server refused the message ({code}).")


async def inject(svc: Services, row: Mailbox, spec: InjectSandboxInboundRequest) -> InboxFullMessage:
    """Build, deliver and return the message (``InboxFullMessage`` of the delivered copy).

    422 invalid input (fields named in details); 409 a message with this ``message_id`` is already
    in the mailbox (the mail server would drop the duplicate) or the mailbox is suspended (it
    receives no mail); 403 ``quota_exceeded``; 503 the mail server is unavailable, deferred the
    message, or has not indexed it within 5 s.
    """
    data, message_id, sender = build_message(spec, recipient=row.address)
    if row.suspended_at is not None:
        raise Conflict("The mailbox is suspended: it receives no mail until it is resumed.")
    if spec.message_id is not None and await find_by_message_id(svc, row, message_id):
        raise Conflict(f"A message with Message-ID {message_id} is already in this mailbox.")
    try:
        await svc.mail.deliver([row.address], data, sender)
    except DeliveryRefused as exc:
        raise _refusal(exc, row) from None
    except MailServerUnavailable:
        raise ServiceUnavailable("The mail server is unavailable; retry shortly.") from None
    email_id = await _wait_for(svc, row, message_id)
    return await inbox.get_message(svc, row, email_id)
