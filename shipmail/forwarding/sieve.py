"""Active forwarding -> Sieve: one section of the mailbox's delivery script (assembled by
:mod:`shipmail.delivery.script`, right after the spam threshold, whose ``stop`` keeps spam from
being forwarded, and before the auto-reply and the inbox rules, which cannot undo it)::

    # Filter: forwarding
    if not header :is "X-Shipmail-Forwarded" "hello@example.com" {
        addheader "X-Shipmail-Forwarded" "hello@example.com";
        redirect :copy "elsewhere@example.org";
    }

``redirect :copy`` (RFC 5228 section 4.2, RFC 3894) sends the message to each destination and
keeps the implicit ``keep``, so the mailbox holds its copy (and the rules still file it).

Loops: the section adds :data:`FORWARDED_HEADER` naming the mailbox (RFC 5293 ``addheader``)
before redirecting, and forwards nothing that already carries it, so a message that went through
this mailbox once is not forwarded by it again (A -> B -> A stops at A's second delivery, whatever
the other server does with headers it does not know). The copy kept in the mailbox carries the
header too (editheader changes the message for every later action). Destinations and the address
are quoted strings (:mod:`shipmail.sieve.build`).
"""

from __future__ import annotations

from collections.abc import Sequence

from shipmail.sieve.build import IS, Tag, action, not_, test
from shipmail.sieve.script import Section

RULE_FORWARDING = "forwarding"
#: The header that marks a message forwarded by a mailbox (value: the mailbox address).
FORWARDED_HEADER = "X-Shipmail-Forwarded"

_COPY = Tag(":copy")


def forwarding_section(destinations: Sequence[str], address: str) -> Section | None:
    """The forwarding section for the active ``destinations`` of mailbox ``address`` (None: none)."""
    if not destinations:
        return None
    actions = [action("addheader", FORWARDED_HEADER, address)]
    actions += [action("redirect", _COPY, destination) for destination in destinations]
    return Section(
        RULE_FORWARDING,
        not_(test("header", IS, FORWARDED_HEADER, address)),
        actions,
        requires=("editheader", "copy"),
    )
