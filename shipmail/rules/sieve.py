"""Inbox rules (:mod:`shipmail.rules.schemas`) -> Sieve: RFC 5228 ``if``/``allof``/``anyof``, RFC
5232 imap4flags, RFC 5228 ``fileinto`` with RFC 8579 ``:specialuse`` and RFC 9042 ``:mailboxid``,
RFC 5233 subaddress.

Each enabled rule, in ``position`` order (ties: list order), becomes one section of the
mailbox's delivery script (:mod:`shipmail.delivery.script`)::

    # Filter: rule <uuid>
    if allof(<test>, <test>, ...) {        # anyof(...) for match_mode "any"; a lone test bare
        addflag "$shipmail-rule-<n>";        # the mark of the n-th rule that runs (rule_keyword)
        addflag "\\Seen";                   # mark_read
        addflag "\\Flagged";                # star
        fileinto :mailboxid "<id>" "<path>"; # move (custom folder)
        stop;                                # the rule's stop flag
    }

Conditions (every value matched literally; :is and :contains use the default comparator
``i;ascii-casemap``, i.e. ASCII letters case-insensitively; ``*`` and ``?`` are wildcards only for
``:matches``, which is never used):

================================ ===========================================================
``from_is``                      ``address :all :is "from" v``
``from_contains``                ``address :all :contains "from" v`` (the address, not the
                                 display name)
``recipient_is``                 ``anyof(address :all :is ["to", "cc", "delivered-to"] v,
                                 envelope :all :is "to" v)``: a To or Cc address, or the address
                                 the message was delivered to (which covers Bcc copies): the
                                 envelope's for the mailbox's own address, ``Delivered-To`` (RFC
                                 9228, added by the inbound gateway, :mod:`shipmail.inbound.gateway`)
                                 for one of its aliases or the domain's catch-all
``plus_tag_is``                  ``envelope :detail :is "to" v`` (``local+v@domain``)
``subject_contains``             ``header :contains "subject" v`` (the decoded Subject)
``has_attachment``               ``hasflag "$HasAttachment"``: the keyword the delivery prelude
                                 (see :mod:`shipmail.delivery.script`) put in the imap4flags
                                 internal variable; hasflag compares case-insensitively
``list_unsubscribe_exists``      ``exists "List-Unsubscribe"`` (top-level header only)
``group``                        ``allof(...)``/``anyof(...)`` of its conditions
================================ ===========================================================

Each condition type of the schema has its case in :meth:`_Compiler.value_test` /
:meth:`_Compiler.flag_test`; mypy (``assert_never``) fails on a type without one.

Actions: the rule's flags are added first (``addflag`` inside the ``if``, so they never touch a
message the rule did not match), then its move, then ``stop``. imap4flags keeps the flags in one
internal variable for the whole script: a later ``fileinto`` (another rule's move) and the
implicit keep carry every flag added so far by the rules that matched. A move of a rule that did
not ``stop`` does not prevent a later matching rule's move: the message is then filed in both
folders (the same JMAP Email in two mailboxes).

Moves: ``inbox`` -> ``fileinto "INBOX"``; archive/junk/trash -> ``fileinto :specialuse "\\Junk"
"Junk"`` (RFC 8579: the folder holding that special use, the name as a fallback); a custom folder
-> ``fileinto :mailboxid "<JMAP Mailbox id>" "<path>"`` (RFC 9042: renaming or moving the
folder keeps the id; the path at the time the rules were saved is only a fallback). A move whose
folder no longer exists at all leaves the message in the Inbox (Cyrus adds ``$SieveFailed``).

Safety: every string is quoted by :mod:`shipmail.sieve.build`; rule names are never written into
the script (the ``# Filter:`` comment carries the rule's UUID). No ``variables`` extension is
required, so ``${`` in a value is literal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import assert_never

from shipmail.jmap.email import SERVICE_KEYWORD_PREFIX
from shipmail.rules.schemas import (
    FlagConditionType,
    MailboxRule,
    MailboxRuleCondition,
    MailboxRuleCustomTarget,
    MailboxRuleFlagAction,
    MailboxRuleFlagCondition,
    MailboxRuleGroupCondition,
    MailboxRuleMoveAction,
    MailboxRuleMoveTarget,
    SystemRole,
    ValueConditionType,
)
from shipmail.sieve.build import (
    ALL,
    CONTAINS,
    DETAIL,
    FLAGGED,
    HAS_ATTACHMENT,
    IS,
    SEEN,
    STOP,
    Action,
    Tag,
    Test,
    action,
    anyof,
    combine,
    test,
)
from shipmail.sieve.script import Section

#: ``fileinto`` for the system roles a rule may move to: (special-use flag or None, mailbox name).
SYSTEM_TARGETS: dict[SystemRole, tuple[str | None, str]] = {
    "inbox": (None, "INBOX"),
    "archive": ("\\Archive", "Archive"),
    "junk": ("\\Junk", "Junk"),
    "trash": ("\\Trash", "Trash"),
}

_SPECIALUSE, _MAILBOXID = Tag(":specialuse"), Tag(":mailboxid")


class _Compiler:
    """Builds the tests and actions of rules, noting the extensions they need in the order they are
    first needed."""

    def __init__(self) -> None:
        self.requires: dict[str, None] = {}

    def need(self, *extensions: str) -> None:
        for extension in extensions:
            self.requires.setdefault(extension)

    # ---- tests

    def condition(self, condition: MailboxRuleCondition) -> Test:
        if isinstance(condition, MailboxRuleGroupCondition):
            return combine(condition.match_mode, [self.condition(c) for c in condition.conditions])
        if isinstance(condition, MailboxRuleFlagCondition):
            return self.flag_test(condition.type)
        return self.value_test(condition.type, condition.value)

    def value_test(self, kind: ValueConditionType, value: str) -> Test:
        match kind:
            case "from_is":
                return test("address", ALL, IS, "from", value)
            case "from_contains":
                return test("address", ALL, CONTAINS, "from", value)
            case "recipient_is":
                self.need("envelope")
                headers = test("address", ALL, IS, ["to", "cc", "delivered-to"], value)
                return anyof([headers, test("envelope", ALL, IS, "to", value)])
            case "plus_tag_is":
                self.need("envelope", "subaddress")
                return test("envelope", DETAIL, IS, "to", value)
            case "subject_contains":
                return test("header", CONTAINS, "subject", value)
            case _:
                assert_never(kind)

    def flag_test(self, kind: FlagConditionType) -> Test:
        match kind:
            case "has_attachment":
                self.need("imap4flags")
                return test("hasflag", HAS_ATTACHMENT)
            case "list_unsubscribe_exists":
                return test("exists", "List-Unsubscribe")
            case _:
                assert_never(kind)

    # ---- actions

    def flag(self, action_: MailboxRuleFlagAction) -> Action:
        self.need("imap4flags")
        return action("addflag", SEEN if action_.type == "mark_read" else FLAGGED)

    def move(self, target: MailboxRuleMoveTarget) -> Action:
        self.need("fileinto")
        if isinstance(target, MailboxRuleCustomTarget):
            self.need("mailboxid")
            return action("fileinto", _MAILBOXID, target.mailbox_id, target.fallback_name)
        special_use, name = SYSTEM_TARGETS[target.role]
        if special_use is None:
            return action("fileinto", name)
        self.need("special-use")
        return action("fileinto", _SPECIALUSE, special_use, name)

    def rule(self, rule: MailboxRule, number: int) -> Section:
        self.requires = {}
        condition = combine(rule.match_mode, [self.condition(c) for c in rule.conditions])
        flags: dict[str, MailboxRuleFlagAction] = {}
        for a in rule.actions:
            if isinstance(a, MailboxRuleFlagAction):
                flags.setdefault(a.type, a)
        self.need("imap4flags")
        actions = [action("addflag", rule_keyword(number))]
        actions += [self.flag(a) for a in flags.values()]
        actions += [self.move(a.target) for a in rule.actions if isinstance(a, MailboxRuleMoveAction)]
        if rule.stop:
            actions.append(STOP)
        return Section(f"rule {rule.id}", condition, actions, requires=tuple(self.requires))


def ordered(rules: Iterable[MailboxRule]) -> list[MailboxRule]:
    """The rules that run, in the order they run: enabled ones by ``position`` (stable: ties keep
    their list order)."""
    return sorted((r for r in rules if r.enabled), key=lambda r: r.position)


def rule_keyword(number: int) -> str:
    """The keyword the delivery script adds to a message the ``number``-th rule that runs
    (1-based, :func:`ordered`) matched: ``$shipmail-rule-<number>``. At most 50 distinct names
    (Cyrus keeps at most 128 user flags per folder), hidden from the API's keywords
    (:data:`shipmail.jmap.email.SERVICE_KEYWORD_PREFIX`)."""
    return f"{SERVICE_KEYWORD_PREFIX}rule-{number}"


def matched_rules(rules: Sequence[MailboxRule], keywords: Iterable[str]) -> list[MailboxRule]:
    """The rules whose :func:`rule_keyword` is among ``keywords`` (JMAP lower-cases them), in
    the order they ran."""
    present = {k.lower() for k in keywords}
    return [rule for i, rule in enumerate(ordered(rules), 1) if rule_keyword(i) in present]


def rule_sections(rules: Sequence[MailboxRule]) -> list[Section]:
    """One section per rule that runs (:func:`ordered`); the ``# Filter:`` comment is
    ``rule <uuid>``, never user text. Each rule first marks the message it matched with its
    :func:`rule_keyword` (read back by the inbound gateway: ``mailbox.rule_matched``)."""
    compiler = _Compiler()
    return [compiler.rule(rule, i) for i, rule in enumerate(ordered(rules), 1)]
