"""The one Sieve script (RFC 5228) a mailbox runs at delivery, assembled from the row's typed settings.

In the order it runs (each part a section of :func:`shipmail.sieve.script.assemble`):

0. while a deletion is scheduled (``mailboxes.deletion_scheduled_at``), only
   ``ereject "<reason>"; stop;`` (RFC 5429): the server refuses every message at delivery time
   (Cyrus: LMTP ``550 5.7.1 <reason>``, no bounce of its own), the rest never runs;
1. the mail server's prelude (:meth:`~shipmail.mailserver.base.MailServer.delivery_sieve`): the
   extensions every script declares and, for servers that do not set it on delivery, the
   ``$HasAttachment`` keyword (RFC 8621 section 4.1.1) from the server's own test (Cyrus:
   ``jmapquery`` of its ``hasAttachment`` OR a part of a type never shown inline, approximating
   the API's rule "the RFC 8621 ``attachments`` list is not empty",
   :meth:`shipmail.mailserver.cyrus_server.CyrusMailServer.delivery_sieve`), so this module knows
   no server::

       # Filter: has-attachment
       if jmapquery "{\\"operator\\":\\"OR\\",\\"conditions\\":[{\\"hasAttachment\\":true}, ...]}" {
           addflag "$HasAttachment";
       }

2. the spam threshold (``mailboxes.spam_filter_threshold``, :func:`shipmail.settings.sieve.spam_section`):
   spam goes to Junk and stops there, so nothing below sees it;
3. forwarding (``mailboxes.forward_to``, the confirmed destinations,
   :func:`shipmail.forwarding.sieve.forwarding_section`): ``redirect :copy`` to each, once per
   message (loop header), before anything that could stop or discard;
4. the auto-reply (``mailboxes.auto_reply``, :func:`shipmail.settings.sieve.auto_reply_section`);
5. the inbox rules (``mailboxes.rules``, :func:`shipmail.rules.sieve.rule_sections`).

The script is text built once: every string quoted (:mod:`shipmail.sieve.build`), nothing parsed
back at run time (the unit tests parse the outputs back with sievelib).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from shipmail.forwarding.sieve import forwarding_section
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import DeliverySieve, SieveTest
from shipmail.rules.schemas import MailboxRule
from shipmail.rules.sieve import rule_sections
from shipmail.settings.schemas import THRESHOLD_DEFAULT, THRESHOLD_MAX, THRESHOLD_MIN, AutoReply
from shipmail.settings.sieve import auto_reply_section, spam_section
from shipmail.sieve.build import HAS_ATTACHMENT, STOP, action, test
from shipmail.sieve.script import Section, SieveBuildError, assemble

logger = logging.getLogger("shipmail.delivery.script")

#: Section name of the prelude, written as a ``# Filter:`` comment.
RULE_HAS_ATTACHMENT = "has-attachment"

#: Section name of the refusal while a deletion is scheduled, and the refusal's text.
RULE_DELETION_SCHEDULED = "deletion-scheduled"
DELETION_SCHEDULED_REASON = "This mailbox is scheduled for deletion and accepts no mail."

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class ScriptOptions:
    """Everything a mailbox's delivery script is made of.

    ``server``: what the mail server needs in every script; ``address``: the mailbox address (the
    auto-reply's From); ``spam_threshold``: None for no spam rule; ``auto_reply``: None (or
    disabled) for none; ``rules``: the inbox rules as saved (disabled ones are left out).
    """

    server: DeliverySieve = field(default_factory=DeliverySieve)
    address: str = ""
    spam_threshold: int | None = None
    auto_reply: AutoReply | None = None
    rules: Sequence[MailboxRule] = ()
    forward_to: Sequence[str] = ()
    deletion_scheduled: bool = False

    @classmethod
    def of(cls, server: DeliverySieve, row: Mailbox) -> ScriptOptions:
        """The script of ``row`` (the database is the source of truth). An out-of-range stored
        threshold falls back to the default (logged). A row-like object with only ``id`` and
        ``address`` (some callers of :func:`shipmail.delivery.service.install` pass one) gets the
        defaults: threshold 5, no auto-reply, no rules, no forwarding."""
        threshold = getattr(row, "spam_filter_threshold", THRESHOLD_DEFAULT)
        if not isinstance(threshold, int) or not THRESHOLD_MIN <= threshold <= THRESHOLD_MAX:
            logger.error("mailbox %s has spam_filter_threshold %r; using %d", row.id, threshold, THRESHOLD_DEFAULT)
            threshold = THRESHOLD_DEFAULT
        return cls(
            server=server,
            address=row.address,
            spam_threshold=threshold,
            auto_reply=getattr(row, "auto_reply", None),
            rules=getattr(row, "rules", ()),
            forward_to=tuple(getattr(row, "forward_to", None) or ()),
            deletion_scheduled=getattr(row, "deletion_scheduled_at", None) is not None,
        )


def prelude(has_attachment: SieveTest) -> Section:
    """``if <server test> { addflag "$HasAttachment"; }``."""
    name = has_attachment.name.lower()
    if not _IDENTIFIER.match(name):
        raise SieveBuildError(f"invalid Sieve test name {has_attachment.name!r}")
    return Section(
        RULE_HAS_ATTACHMENT,
        test(name, has_attachment.argument),
        [action("addflag", HAS_ATTACHMENT)],
        requires=(has_attachment.extension, "imap4flags"),
    )


def build_script(options: ScriptOptions) -> str:
    """The delivery script for ``options`` (UTF-8 text; without any part, a script that only
    declares the server's requirements, i.e. the implicit ``keep``)."""
    sections: list[Section] = []
    if options.deletion_scheduled:
        return assemble(
            [
                Section(
                    RULE_DELETION_SCHEDULED,
                    test("true"),
                    [action("ereject", DELETION_SCHEDULED_REASON), STOP],
                    requires=("ereject",),
                )
            ],
            options.server.requires,
        )
    if options.server.has_attachment is not None:
        sections.append(prelude(options.server.has_attachment))
    if options.spam_threshold is not None:
        sections.append(spam_section(options.spam_threshold))
    forwarding = forwarding_section(options.forward_to, options.address)
    if forwarding is not None:
        sections.append(forwarding)
    if options.auto_reply is not None:
        reply = auto_reply_section(options.auto_reply, options.address)
        if reply is not None:
            sections.append(reply)
    sections += rule_sections(options.rules)
    return assemble(sections, options.server.requires)
