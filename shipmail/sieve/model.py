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
    trash) or a folder by JMAP Mailbox ``mailbox_id`` (RFC 9042 ``:mailboxid``); ``name`` is the
    folder's current name, the fallback ``fileinto`` argument."""

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
    """One inbox rule; rules run in ``position`` order, disabled ones are left out."""

    id: str
    name: str
    enabled: bool
    position: int
    match_mode: MatchMode
    stop: bool
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class AutoReply:
    """An out-of-office reply (RFC 5230 ``vacation``), only inside ``[from_date, to_date)``
    (UTC; None: open), at most once per sender per ``days``, never to lists or auto-submitted
    mail. ``addresses``: the mailbox's own addresses (``:addresses``)."""

    body: str
    subject: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None
    addresses: tuple[str, ...] = ()
    days: int = 1


@dataclass(frozen=True)
class SpamFilter:
    """Messages whose ``header`` (a decimal score, SpamAssassin/rspamd convention) is at or
    above ``threshold`` go to Junk."""

    threshold: int
    header: str = "X-Spam-Score"


@dataclass(frozen=True)
class DeliveryPlan:
    """The user-controlled parts of the script, in the order they run: spam, auto-reply, rules."""

    spam: SpamFilter | None = None
    auto_reply: AutoReply | None = None
    rules: tuple[Rule, ...] = field(default_factory=tuple)
