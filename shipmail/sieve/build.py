"""Building blocks of Sieve text (RFC 5228): arguments, tests, test lists, actions.

Every string argument is quoted by :func:`quote` (sievelib's ``tools.quote``: ``\\`` and ``"``
escaped; line breaks stay inside the quotes, which RFC 5228 section 2.4.2 allows), so no input can
leave its string; tags and numbers are separate types, so user text never becomes one. Tests and
actions are typed text (:data:`Test`, :data:`Action`): a test is only made by these functions.

The text is laid out exactly as sievelib's printer lays out the same commands
(``address :all :is ["to", "cc"] "v"``, ``anyof (t1, t2)``, ``not t``), so a script built here is
the script sievelib would build from its object model, without building that model: for the
largest rule sets (50 rules of 10 conditions, about 230 KB) that model and parsing the text back
were most of the cost of a ``PUT .../rules``. The unit tests parse the output back with sievelib
(with :mod:`shipmail.sieve.extensions` registered) to prove it parses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NewType

from sievelib import tools

#: A test (RFC 5228 section 5), e.g. ``header :contains "subject" "x"``.
Test = NewType("Test", str)
#: An action command without its ``;`` (RFC 5228 section 4), e.g. ``fileinto "Junk"``.
Action = NewType("Action", str)

_TAG = re.compile(r"^:[a-z][a-z0-9_-]*$")
#: sievelib's quoting (RFC 5228 section 2.4.2), typed.
_quote: Callable[[str], str] = tools.quote


@dataclass(frozen=True)
class Tag:
    """A tagged argument (RFC 5228 section 2.6.2), ``:is``, ``:days``."""

    name: str

    def __post_init__(self) -> None:
        if not _TAG.match(self.name):
            raise ValueError(f"not a Sieve tag: {self.name!r}")


#: One argument: a tag, a number (RFC 5228 section 2.4.1), a string, or a string list.
Arg = Tag | int | str | Sequence[str]

IS, CONTAINS, REGEX = Tag(":is"), Tag(":contains"), Tag(":regex")
ALL, DETAIL = Tag(":all"), Tag(":detail")

#: IMAP system flags (RFC 3501 section 2.3.2) as imap4flags (RFC 5232) writes them.
SEEN, FLAGGED = "\\Seen", "\\Flagged"
#: JMAP keyword for messages with attachments (RFC 8621 section 4.1.1).
HAS_ATTACHMENT = "$HasAttachment"


def quote(value: str) -> str:
    """``value`` as a quoted string (RFC 5228 section 2.4.2)."""
    return _quote(value)


def string_list(values: Sequence[str]) -> str:
    """``["a", "b"]`` (RFC 5228 section 2.4.2.1)."""
    return "[" + ", ".join(map(_quote, values)) + "]"


def _arg(arg: Arg) -> str:
    if isinstance(arg, str):
        return _quote(arg)
    if isinstance(arg, Tag):
        return arg.name
    if isinstance(arg, bool):
        raise TypeError("a Sieve number cannot be a bool")
    if isinstance(arg, int):
        if arg < 0:
            raise ValueError("Sieve numbers are not negative")
        return str(arg)
    return string_list(arg)


def _command(name: str, args: Sequence[Arg]) -> str:
    return " ".join([name, *map(_arg, args)])


def test(name: str, *args: Arg) -> Test:
    """The test ``name`` with ``args``: ``test("header", CONTAINS, "subject", value)``."""
    return Test(_command(name, args))


def allof(tests: Sequence[Test]) -> Test:
    """``allof (t1, t2, ...)`` (RFC 5228 section 5.2)."""
    return Test("allof (" + ", ".join(tests) + ")")


def anyof(tests: Sequence[Test]) -> Test:
    """``anyof (t1, t2, ...)`` (RFC 5228 section 5.3)."""
    return Test("anyof (" + ", ".join(tests) + ")")


def not_(inner: Test) -> Test:
    """``not t`` (RFC 5228 section 5.8)."""
    return Test("not " + inner)


def combine(mode: Literal["all", "any"], tests: Sequence[Test]) -> Test:
    """``allof``/``anyof`` of ``tests``; a single test stands alone. ValueError when empty."""
    if not tests:
        raise ValueError("a test list needs at least one test")
    if len(tests) == 1:
        return tests[0]
    return allof(tests) if mode == "all" else anyof(tests)


def action(name: str, *args: Arg) -> Action:
    """The action ``name`` with ``args``: ``action("fileinto", "Junk")``."""
    return Action(_command(name, args))


STOP = action("stop")
