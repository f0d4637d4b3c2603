"""The auto-reply -> Sieve ``vacation`` (RFC 5230) behind its date window and RFC 3834 checks.

Example (window 2026-12-20 to 2027-01-04 UTC, custom subject)::

    # Filter: auto-reply
    if allof (currentdate :zone "+0000" :value "ge" "iso8601" "2026-12-20T00:00:00",
              currentdate :zone "+0000" :value "lt" "iso8601" "2027-01-04T00:00:00",
              not anyof (exists "List-Id", exists "List-Unsubscribe", exists "List-Post", ...),
              not header :is "Precedence" ["bulk", "list", "junk"],
              anyof (not exists "Auto-Submitted", header :is "Auto-Submitted" "no")) {
        vacation :subject "Away" :days 1 :from "hello@example.com" :addresses ["hello@example.com"] :mime
                 "Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    I am away until January 4 =E2=80=93 back on the 5th.
    ";
    }

(sievelib writes the test on one line.)

The reply text goes as a MIME part (``:mime``, RFC 5230 section 4.4): ``text/plain;
charset=utf-8`` in quoted-printable, lines of at most 76 characters. Cyrus otherwise sends the
text as 8bit with its lines as they are, and a long paragraph breaks the 998-character line limit
of RFC 5322 (measured: a 1,500-character line went out unchanged). As a bonus the text in the
script is plain ASCII. Line breaks (CR, LF, CRLF) become CRLF.

The date window (RFC 5260 ``currentdate``, checked when the message is delivered):
``:zone "+0000"`` makes the server give the UTC time; the ``iso8601`` date part is then
``YYYY-MM-DDTHH:MM:SSZ`` (Cyrus 3.6 writes ``Z`` whatever the zone, so without ``:zone`` a
server not running in UTC would be off by its offset). The keys are the bounds in the same
fixed-width form without the zone, ``YYYY-MM-DDTHH:MM:SS``; with the default comparator
(``i;ascii-casemap``) and ``:value`` (RFC 5231) the order of these strings is the order of time:
``ge`` from_date holds from that second on (the current value is longer, so an equal prefix
ranks above the key) and ``lt`` to_date holds until the second before. Resolution: one second.

RFC 3834 / RFC 5230 section 4.6: no reply to mail with a ``List-*`` header (RFC 2369, RFC 2919),
``Precedence: bulk|list|junk`` or an ``Auto-Submitted`` other than ``no``. Cyrus 3.6's vacation
already skips all of these (and empty, ``MAILER-DAEMON``, ``owner-*`` and ``*-request``
senders, and mail not addressed to one of ``:addresses``): the script says the header checks
again so they hold on any server.

User text (subject and quoted-printable body) reaches the script only as sievelib-quoted strings
(``"`` and ``\\`` escaped; line breaks stay inside the quotes, which RFC 5228 allows). The script never
requires ``variables``, so ``${...}`` in the text is literal. :func:`check_text` refuses what
cannot be sent at all (NUL, lone surrogates; a line break or other control character in the
subject: Cyrus cuts a subject at a tab).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from email import quoprimime
from datetime import datetime, timezone

from sievelib import commands, tools
from sievelib.factory import FiltersSet

from shipmail.sieve.model import AutoReply

#: Rule name, written by sievelib as a ``# Filter: <name>`` comment.
RULE_AUTO_REPLY = "auto-reply"
#: The zone ``currentdate`` is asked for: UTC.
UTC_ZONE = "+0000"
#: Headers of list mail (RFC 2369, RFC 2919): their presence means no reply.
LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "List-Owner",
                "List-Archive")
#: ``Precedence`` values of bulk mail (RFC 3834 section 2).
BULK_PRECEDENCE = ("bulk", "list", "junk")


#: Makes one test under the given parent command.
Builder = Callable[[commands.Command], commands.Command]


class UnsafeText(ValueError):
    """Text that cannot go into an auto-reply (``field`` names which)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be a reply's Subject header, or None: control characters (C0
    including tab, DEL, C1), Unicode line and paragraph separators, lone surrogates."""
    for ch in subject:
        category = unicodedata.category(ch)
        if category == "Cc" or ch in "\u2028\u2029":
            return f"control character U+{ord(ch):04X} is not allowed in a subject"
        if category == "Cs":
            return f"lone surrogate U+{ord(ch):04X} is not valid Unicode"
    return None


def body_problem(body: str) -> str | None:
    """Why ``body`` cannot be a reply's text, or None: NUL and lone surrogates (cannot be
    encoded). Line breaks (CR, LF, CRLF: the server sends CRLF) and other characters are fine."""
    for ch in body:
        if ch == "\x00":
            return "NUL characters are not allowed"
        if unicodedata.category(ch) == "Cs":
            return f"lone surrogate U+{ord(ch):04X} is not valid Unicode"
    return None


def check_text(auto_reply: AutoReply) -> None:
    """Raise :class:`UnsafeText` for a subject or body that cannot be sent."""
    if auto_reply.subject is not None:
        problem = subject_problem(auto_reply.subject)
        if problem:
            raise UnsafeText("subject", problem)
    problem = body_problem(auto_reply.body)
    if problem:
        raise UnsafeText("body", problem)
    for address in (auto_reply.from_address, *auto_reply.addresses):
        if address is not None and (not address or subject_problem(address) or any(c.isspace() for c in address)):
            raise UnsafeText("addresses", f"invalid address {address!r}")


def iso8601_key(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS`` (seconds truncated; naive means UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat(timespec="seconds")


def _arg(cmd: commands.Command, kind: str, value: str | list[str]) -> None:
    if isinstance(value, list):
        cmd.check_next_arg("stringlist", [tools.quote(v) for v in value], check_extension=False)
    elif kind == "string":
        cmd.check_next_arg("string", tools.quote(value), check_extension=False)
    else:
        cmd.check_next_arg(kind, value, check_extension=False)


def _test(name: str, parent: commands.Command, *args: tuple[str, str | list[str]]) -> commands.Command:
    cmd = commands.get_command_instance(name, parent, False)
    for kind, value in args:
        _arg(cmd, kind, value)
    return cmd


def _combine(name: str, parent: commands.Command, build: list[Builder]) -> commands.Command:
    """``allof``/``anyof`` of the tests that ``build`` makes."""
    cmd = commands.get_command_instance(name, parent, False)
    for make in build:
        cmd.check_next_arg("test", make(cmd), check_extension=False)
    return cmd


def _not(parent: commands.Command, make: Builder) -> commands.Command:
    cmd = commands.get_command_instance("not", parent, False)
    cmd.check_next_arg("test", make(cmd), check_extension=False)
    return cmd


def _currentdate(relation: str, key: str) -> Builder:
    def make(parent: commands.Command) -> commands.Command:
        return _test("currentdate", parent, ("tag", ":zone"), ("string", UTC_ZONE), ("tag", ":value"),
                     ("string", relation), ("string", "iso8601"), ("string", key))
    return make


def _exists(header: str) -> Builder:
    return lambda parent: _test("exists", parent, ("string", header))


def _conditions(auto_reply: AutoReply) -> list[Builder]:
    """Builders of the tests that must all hold for a reply."""
    build: list[Builder] = []
    if auto_reply.from_date is not None:
        build.append(_currentdate("ge", iso8601_key(auto_reply.from_date)))
    if auto_reply.to_date is not None:
        build.append(_currentdate("lt", iso8601_key(auto_reply.to_date)))
    build.append(lambda p: _not(p, lambda q: _combine("anyof", q, [_exists(h) for h in LIST_HEADERS])))
    build.append(lambda p: _not(p, lambda q: _test(
        "header", q, ("tag", ":is"), ("string", "Precedence"), ("string", list(BULK_PRECEDENCE)))))
    build.append(lambda p: _combine("anyof", p, [
        lambda q: _not(q, _exists("Auto-Submitted")),
        lambda q: _test("header", q, ("tag", ":is"), ("string", "Auto-Submitted"), ("string", "no")),
    ]))
    return build


def reply_condition(auto_reply: AutoReply, parent: commands.Command) -> commands.Command:
    """The ``allof`` test under which the auto-reply is sent (date window, RFC 3834 checks);
    needs ``date`` and ``relational`` when there is a window."""
    return _combine("allof", parent, _conditions(auto_reply))


def reply_part(body: str) -> str:
    """``body`` as the MIME part ``vacation :mime`` sends: headers, blank line, quoted-printable
    UTF-8 text with CRLF line breaks (CR, LF and CRLF in ``body`` all count as line breaks)."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    # body_encode works on one character per octet: the UTF-8 octets, read as Latin-1.
    encoded = quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), maxlinelen=76, eol="\r\n")
    return ("Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded)


def _vacation(auto_reply: AutoReply, parent: commands.Command) -> commands.Command:
    cmd = commands.get_command_instance("vacation", parent, False)
    _arg(cmd, "tag", ":days")
    _arg(cmd, "number", str(auto_reply.days))
    if auto_reply.subject is not None:
        _arg(cmd, "tag", ":subject")
        _arg(cmd, "string", auto_reply.subject)
    if auto_reply.from_address is not None:
        _arg(cmd, "tag", ":from")
        _arg(cmd, "string", auto_reply.from_address)
    if auto_reply.addresses:
        _arg(cmd, "tag", ":addresses")
        _arg(cmd, "string", list(auto_reply.addresses))
    _arg(cmd, "tag", ":mime")
    _arg(cmd, "string", reply_part(auto_reply.body))
    return cmd


def add_vacation(fs: FiltersSet, auto_reply: AutoReply | None) -> None:
    """Append the auto-reply to ``fs`` (nothing when None). Raises :class:`UnsafeText` for text
    that cannot be sent, ``ValueError`` for ``days`` < 1."""
    if auto_reply is None:
        return
    check_text(auto_reply)
    if auto_reply.days < 1:
        raise ValueError("days must be at least 1")
    rule = commands.get_command_instance("if", checkexists=False)
    rule.check_next_arg("test", reply_condition(auto_reply, rule), check_extension=False)
    rule.addchild(_vacation(auto_reply, rule))
    fs.require("vacation")
    if auto_reply.from_date is not None or auto_reply.to_date is not None:
        fs.require("date")
        fs.require("relational")
    fs.filters.append({"name": RULE_AUTO_REPLY, "content": rule, "enabled": True})
