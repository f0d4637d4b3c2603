"""What a mailbox's delivery script is made of: plain, validated values (no pydantic, no I/O).

The services turn the stored settings (``mailboxes.rules``, ``auto_reply``,
``spam_filter_threshold``) into these; :func:`shipmail.sieve.compiler.build_script` turns them
into Sieve. Strings here are user text: the compiler hands them to sievelib, never splices them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Union

MatchMode = Literal["all", "any"]
ValueConditionType = Literal["from_is", "from_contains", "recipient_is", "plus_tag_is", "subject_contains"]
FlagConditionType = Literal["has_attachment", "list_unsubscribe_exists"]


@dataclass(frozen=True)
class ValueCondition:
    """A test of a header or envelope part against ``value`` (matched literally)."""

    type: ValueConditionType
    value: str


@dataclass(frozen=True)
class FlagCondition:
    """A test without a value (attachment present, List-Unsubscribe present)."""

    type: FlagConditionType


@dataclass(frozen=True)
class GroupCondition:
    """Nested conditions combined with their own match mode (``allof``/``anyof``)."""

    match_mode: MatchMode
    conditions: tuple[Condition, ...]


Condition = Union[ValueCondition, FlagCondition, GroupCondition]


@dataclass(frozen=True)
class MoveTarget:
    """Where ``move`` files a message: a system folder by JMAP ``role`` (inbox, archive, junk,
    trash; RFC 8579 ``:specialuse``) or a folder by JMAP Mailbox ``mailbox_id`` (RFC 9042
    ``:mailboxid``); ``name`` is the fallback ``fileinto`` argument (the folder's path when the
    rules were saved: the id still finds the folder after a rename or move)."""

    name: str
    role: str | None = None
    mailbox_id: str | None = None


@dataclass(frozen=True)
class Action:
    """``move`` (with ``target``), ``mark_read`` (\\Seen) or ``star`` (\\Flagged)."""

    type: Literal["move", "mark_read", "star"]
    target: MoveTarget | None = None


@dataclass(frozen=True)
class Rule:
    """One inbox rule; rules run in ``position`` order (ties: tuple order), disabled ones are left
    out. ``name`` is the user's label: it is never written into the script."""

    id: str
    name: str
    enabled: bool
    position: int
    match_mode: MatchMode
    stop: bool
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]


#: Interval between two auto-replies to the same sender, in days (RFC 5230 ``:days``). The mail
#: server must allow it (Cyrus: ``sieve_vacation_min_response``, see
#: :data:`shipmail.mailserver.cyrus_config.VACATION_MIN_RESPONSE_SECONDS`).
AUTO_REPLY_DAYS = 1

#: The header the inbound filter writes the spam score into (SpamAssassin/rspamd: ``5.3``, ``-1.2``).
SPAM_SCORE_HEADER = "X-Spam-Score"


@dataclass(frozen=True)
class AutoReply:
    """An out-of-office reply (RFC 5230 ``vacation``).

    Sent only while the current time (UTC, checked at delivery, to the second) is inside
    ``[from_date, to_date)`` (None: open on that side; naive datetimes are UTC), at most once per
    sender per ``days``, never to list or auto-submitted mail (RFC 3834). ``body``: the reply
    text (any Unicode; line breaks kept); ``subject``: one line, None for the RFC 5230 default
    ``Auto: <original subject>``; ``from_address``: the reply's From (None: the server's choice);
    ``addresses``: the mailbox's own addresses (``:addresses``: mail to any of them is "to me").
    """

    body: str
    subject: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    from_address: str | None = None
    addresses: tuple[str, ...] = ()
    days: int = AUTO_REPLY_DAYS


@dataclass(frozen=True)
class SpamFilter:
    """Messages whose ``header`` holds a decimal score (SpamAssassin/rspamd convention, e.g.
    ``5.3``) at or above ``threshold`` go to Junk and nothing after the spam rule runs for them.
    A missing header, a negative score or anything that is not a plain decimal is not spam."""

    threshold: int
    header: str = SPAM_SCORE_HEADER


@dataclass(frozen=True)
class DeliveryPlan:
    """The user-controlled parts of the script, in the order they run: spam, auto-reply, rules."""

    spam: SpamFilter | None = None
    auto_reply: AutoReply | None = None
    rules: tuple[Rule, ...] = field(default_factory=tuple)
