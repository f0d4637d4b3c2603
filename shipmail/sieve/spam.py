"""The spam threshold -> Sieve: a message whose score header is at or above the threshold goes to
Junk, and the script stops there (no auto-reply, no inbox rules).

The score is the header the inbound filter writes (``X-Spam-Score``, SpamAssassin and rspamd
convention: a decimal such as ``5.3``, ``-1.2``, ``0``). The test is ONE regular expression
(RFC 5228 ``header :regex``, Cyrus's ``regex`` extension, POSIX extended syntax) that matches
exactly the plain decimals whose value is at least the threshold::

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
"""

from __future__ import annotations

from sievelib import commands, tools
from sievelib.factory import FiltersSet

from shipmail.sieve.model import SpamFilter

#: Rule name, written by sievelib as a ``# Filter: <name>`` comment.
RULE_SPAM = "spam-threshold"
#: The folder spam goes to: the system Junk folder (system folders are never renamed).
JUNK_FOLDER = "Junk"


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


def add_spam(fs: FiltersSet, spam: SpamFilter | None) -> None:
    """Append the spam rule to ``fs`` (nothing when None)."""
    if spam is None:
        return
    if spam.threshold < 1:
        raise ValueError("the spam threshold must be at least 1")
    rule = commands.get_command_instance("if", checkexists=False)
    test = commands.get_command_instance("header", rule, False)
    test.check_next_arg("tag", ":regex", check_extension=False)
    test.check_next_arg("string", tools.quote(spam.header), check_extension=False)
    test.check_next_arg("string", tools.quote(score_pattern(spam.threshold)), check_extension=False)
    rule.check_next_arg("test", test)
    into = commands.get_command_instance("fileinto", rule, False)
    into.check_next_arg("string", tools.quote(JUNK_FOLDER), check_extension=False)
    rule.addchild(into)
    rule.addchild(commands.get_command_instance("stop", rule, False))
    fs.require("regex")
    fs.require("fileinto")
    fs.filters.append({"name": RULE_SPAM, "content": rule, "enabled": True})
