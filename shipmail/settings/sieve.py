"""The spam threshold and the auto-reply -> Sieve: two sections of the mailbox's delivery script
(assembled by :mod:`shipmail.delivery.script`, spam first).

Spam (:func:`spam_section`)
---------------------------
A message whose score header is at or above the threshold goes to Junk, and the script stops there
(no auto-reply, no inbox rules). The score is the header the inbound filter writes
(:data:`SPAM_SCORE_HEADER`, SpamAssassin and rspamd convention: a decimal such as ``5.3``, ``-1.2``,
``0``). The test is ONE regular expression (RFC 5228 ``header :regex``, Cyrus's ``regex``
extension, POSIX extended syntax) that matches exactly the plain decimals whose value is at least
the threshold::

    # Filter: spam-threshold
    if header :regex "X-Spam-Score" "^[+]?0*([6-9]|5|[1-9][0-9]{1,})([.][0-9]*)?$" {
        fileinto "Junk";
        stop;
    }

Why not ``:value "ge" :comparator "i;ascii-numeric"`` (RFC 4790, RFC 5231): that comparator reads
only the leading digits and ranks every string that does not start with a digit as +infinity, so
``-1.2``, ``abc``, an empty value, ``+6`` all count as "at or above any threshold" (measured on
Cyrus 3.6), and an ``allof`` of a format check and the comparison can be satisfied by two
different copies of the header. With the single expression, per header copy:

* a negative score, garbage, an empty header or no header never matches: not spam;
* the threshold is an integer, so "score >= threshold" is "integer part >= threshold", which the
  expression spells out digit by digit (leading zeros and a ``+`` sign allowed; any fraction);
* several copies of the header: spam when any copy is at or above the threshold (a sender can add
  a copy to junk its own mail, not to escape the filter's own header).

Cyrus strips the leading and trailing white space of a header value before the test.

Auto-reply (:func:`auto_reply_section`)
---------------------------------------
Sieve ``vacation`` (RFC 5230) behind its date window and RFC 3834 checks. Example (window
2026-12-20 to 2027-01-04 UTC, custom subject; the test is written on one line)::

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

The reply's From and ``:addresses`` are the mailbox address; it goes at most once every
:data:`AUTO_REPLY_DAYS` to each sender. The text goes as a MIME part (``:mime``, RFC 5230 section
4.4): ``text/plain; charset=utf-8`` in quoted-printable, lines of at most 76 characters. Cyrus
otherwise sends the text as 8bit with its lines as they are, and a long paragraph breaks the
998-character line limit of RFC 5322 (measured: a 1,500-character line went out unchanged). As a
bonus the text in the script is plain ASCII. Line breaks (CR, LF, CRLF) become CRLF.

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

User text (subject and quoted-printable body) reaches the script only as quoted strings
(:mod:`shipmail.sieve.build`). The script never requires ``variables``, so ``${...}`` in the text
is literal. :func:`check_text` refuses what cannot be sent at all (NUL, lone surrogates; a line
break or other control character in the subject: Cyrus cuts a subject at a tab).
"""

from __future__ import annotations

import re
from datetime import datetime
from email import quoprimime

from shipmail import utc
from shipmail.settings.schemas import AutoReply
from shipmail.sieve.build import IS, REGEX, STOP, Tag, Test, action, allof, anyof, not_, test
from shipmail.sieve.script import Section

#: Section names, written as ``# Filter: <name>`` comments.
RULE_SPAM = "spam-threshold"
RULE_AUTO_REPLY = "auto-reply"

#: The header the inbound filter writes the spam score into (SpamAssassin/rspamd: ``5.3``, ``-1.2``).
SPAM_SCORE_HEADER = "X-Spam-Score"
#: The folder spam goes to: the system Junk folder (system folders are never renamed).
JUNK_FOLDER = "Junk"

#: Interval between two auto-replies to the same sender, in days (RFC 5230 ``:days``). The mail
#: server must allow it (Cyrus: ``sieve_vacation_min_response``, see
#: :data:`shipmail.mailserver.cyrus_config.VACATION_MIN_RESPONSE_SECONDS`).
AUTO_REPLY_DAYS = 1
#: The zone ``currentdate`` is asked for: UTC.
UTC_ZONE = "+0000"
#: Headers of list mail (RFC 2369, RFC 2919): their presence means no reply.
LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "List-Owner", "List-Archive")
#: ``Precedence`` values of bulk mail (RFC 3834 section 2).
BULK_PRECEDENCE = ("bulk", "list", "junk")

_ZONE, _VALUE = Tag(":zone"), Tag(":value")
_DAYS, _SUBJECT, _FROM, _ADDRESSES, _MIME = Tag(":days"), Tag(":subject"), Tag(":from"), Tag(":addresses"), Tag(":mime")

#: What a subject cannot hold: control characters (C0 including tab, DEL, C1), Unicode line and
#: paragraph separators, lone surrogates.
_SUBJECT_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: What a body cannot hold: NUL, lone surrogates.
_BODY_BAD = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACE = re.compile(r"\s")


# --------------------------------------------------------------------------- spam


def integer_at_least(threshold: int) -> str:
    """A POSIX extended regular expression (no anchors) for the decimal integers without leading
    zeros whose value is >= ``threshold`` (a non-negative integer)."""
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    if threshold == 0:
        return "(0|[1-9][0-9]*)"
    digits = str(threshold)
    width = len(digits)
    alternatives: list[str] = []
    for i, ch in enumerate(digits):
        lowest = int(ch) + 1
        if lowest > 9:
            continue
        rest = width - i - 1
        alternatives.append(digits[:i] + f"[{lowest}-9]" + ("[0-9]" * rest if rest < 3 else f"[0-9]{{{rest}}}"))
    alternatives.append(digits)
    alternatives.append(f"[1-9][0-9]{{{width},}}")  # more digits than the threshold
    return "(" + "|".join(alternatives) + ")"


def score_pattern(threshold: int) -> str:
    """The anchored expression a score header value must match to be spam at ``threshold``."""
    return f"^[+]?0*{integer_at_least(threshold)}([.][0-9]*)?$"


def spam_section(threshold: int) -> Section:
    """The spam rule for ``threshold`` (ValueError below 1)."""
    if threshold < 1:
        raise ValueError("the spam threshold must be at least 1")
    return Section(
        RULE_SPAM,
        test("header", REGEX, SPAM_SCORE_HEADER, score_pattern(threshold)),
        [action("fileinto", JUNK_FOLDER), STOP],
        requires=("regex", "fileinto"),
    )


# --------------------------------------------------------------------------- auto-reply


class UnsafeText(ValueError):
    """Text that cannot go into an auto-reply (``field`` names which)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _surrogate(ch: str) -> bool:
    return _SURROGATE.match(ch) is not None


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be a reply's Subject header, or None: control characters (C0
    including tab, DEL, C1), Unicode line and paragraph separators, lone surrogates."""
    found = _SUBJECT_BAD.search(subject)
    if found is None:
        return None
    ch = found.group()
    if _surrogate(ch):
        return f"lone surrogate U+{ord(ch):04X} is not valid Unicode"
    return f"control character U+{ord(ch):04X} is not allowed in a subject"


def body_problem(body: str) -> str | None:
    """Why ``body`` cannot be a reply's text, or None: NUL and lone surrogates (cannot be
    encoded). Line breaks (CR, LF, CRLF: the server sends CRLF) and other characters are fine."""
    found = _BODY_BAD.search(body)
    if found is None:
        return None
    ch = found.group()
    if ch == "\x00":
        return "NUL characters are not allowed"
    return f"lone surrogate U+{ord(ch):04X} is not valid Unicode"


def check_text(auto_reply: AutoReply, address: str) -> None:
    """Raise :class:`UnsafeText` for a subject, body or mailbox address that cannot be sent."""
    if auto_reply.subject is not None:
        problem = subject_problem(auto_reply.subject)
        if problem:
            raise UnsafeText("subject", problem)
    problem = body_problem(auto_reply.body or "")
    if problem:
        raise UnsafeText("body", problem)
    if not address or subject_problem(address) or _SPACE.search(address):
        raise UnsafeText("addresses", f"invalid address {address!r}")


def iso8601_key(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS`` (seconds truncated; naive means UTC)."""
    return utc.to_second(moment).replace(tzinfo=None).isoformat(timespec="seconds")


def _currentdate(relation: str, moment: datetime) -> Test:
    return test("currentdate", _ZONE, UTC_ZONE, _VALUE, relation, "iso8601", iso8601_key(moment))


def reply_condition(auto_reply: AutoReply) -> Test:
    """The ``allof`` test under which the auto-reply is sent (date window, RFC 3834 checks);
    needs ``date`` and ``relational`` when there is a window."""
    tests: list[Test] = []
    if auto_reply.from_date is not None:
        tests.append(_currentdate("ge", auto_reply.from_date))
    if auto_reply.to_date is not None:
        tests.append(_currentdate("lt", auto_reply.to_date))
    tests.append(not_(anyof([test("exists", h) for h in LIST_HEADERS])))
    tests.append(not_(test("header", IS, "Precedence", BULK_PRECEDENCE)))
    tests.append(anyof([not_(test("exists", "Auto-Submitted")), test("header", IS, "Auto-Submitted", "no")]))
    return allof(tests)


def reply_part(body: str) -> str:
    """``body`` as the MIME part ``vacation :mime`` sends: headers, blank line, quoted-printable
    UTF-8 text with CRLF line breaks (CR, LF and CRLF in ``body`` all count as line breaks)."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    # body_encode works on one character per octet: the UTF-8 octets, read as Latin-1.
    encoded = quoprimime.body_encode(text.encode("utf-8").decode("latin-1"), maxlinelen=76, eol="\r\n")
    return "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded


def auto_reply_section(auto_reply: AutoReply, address: str) -> Section | None:
    """The auto-reply of the mailbox ``address`` (its From and ``:addresses``); None when it is
    disabled or has no body. Raises :class:`UnsafeText` for text that cannot be sent."""
    if not auto_reply.enabled or not auto_reply.body:
        return None
    check_text(auto_reply, address)
    subject = (_SUBJECT, auto_reply.subject) if auto_reply.subject is not None else ()
    vacation = action(
        "vacation",
        *subject,
        _DAYS,
        AUTO_REPLY_DAYS,
        _FROM,
        address,
        _ADDRESSES,
        [address],
        _MIME,
        reply_part(auto_reply.body),
    )
    window = auto_reply.from_date is not None or auto_reply.to_date is not None
    requires = ("vacation", "date", "relational") if window else ("vacation",)
    return Section(RULE_AUTO_REPLY, reply_condition(auto_reply), [vacation], requires=requires)
