"""Inbox rules -> Sieve (RFC 5228 ``if``/``allof``/``anyof``, RFC 5232 imap4flags, RFC 5228
``fileinto`` with RFC 8579 ``:specialuse`` and RFC 9042 ``:mailboxid``, RFC 5233 subaddress).

Each enabled rule, in ``position`` order (ties: list order), becomes one ``if``::

    # Filter: rule <uuid>
    if allof(<test>, <test>, ...) {        # anyof(...) for match_mode "any"; a lone test bare
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
``recipient_is``                 ``anyof(address :all :is ["to", "cc"] v, envelope :all :is
                                 "to" v)``: a To or Cc address, or the address the message was
                                 delivered to (which covers Bcc copies)
``plus_tag_is``                  ``envelope :detail :is "to" v`` (``local+v@domain``)
``subject_contains``             ``header :contains "subject" v`` (the decoded Subject)
``has_attachment``               ``hasflag "$HasAttachment"``: the keyword the delivery prelude
                                 (see :mod:`shipmail.sieve.compiler`) put in the imap4flags
                                 internal variable; hasflag compares case-insensitively
``list_unsubscribe_exists``      ``exists "List-Unsubscribe"`` (top-level header only)
``group``                        ``allof(...)``/``anyof(...)`` of its conditions
================================ ===========================================================

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

Safety: every string goes through ``sievelib.tools.quote``; rule names are never written into the
script (the ``# Filter:`` comment carries the rule's UUID only when it is one). No ``variables``
extension is required, so ``${`` in a value is literal.

sievelib 1.6 knows neither ``:specialuse`` nor ``:mailboxid`` on ``fileinto`` nor the
subaddress parts ``:user``/``:detail``: :func:`extend_sievelib` teaches them to it (for building
and for the compiler's parse-back), once, at import.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from sievelib import commands, tools
from sievelib.factory import FiltersSet

from shipmail.sieve.model import Action, Condition, FlagCondition, GroupCondition, MoveTarget, Rule, ValueCondition

#: The keyword the delivery prelude sets for messages with attachments (RFC 8621 section 4.1.1).
HAS_ATTACHMENT_KEYWORD = "$HasAttachment"
SEEN = "\\Seen"
FLAGGED = "\\Flagged"
#: ``fileinto`` for the system roles a rule may move to: (special-use flag or None, mailbox name).
SYSTEM_TARGETS: dict[str, tuple[str | None, str]] = {
    "inbox": (None, "INBOX"),
    "archive": ("\\Archive", "Archive"),
    "junk": ("\\Junk", "Junk"),
    "trash": ("\\Trash", "Trash"),
}

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_lock = threading.Lock()
_extended = False

_FILEINTO_TAGS: list[dict[str, Any]] = [
    # RFC 8579 section 4: fileinto [:specialuse <special-use-flag: string>] <mailbox: string>
    {"name": "specialuse", "type": ["tag"], "values": [":specialuse"], "required": False,
     "extra_arg": {"type": "string"}, "extension": "special-use"},
    # RFC 9042 section 3: fileinto [:mailboxid <mailboxid: string>] <mailbox: string>
    {"name": "mailboxid", "type": ["tag"], "values": [":mailboxid"], "required": False,
     "extra_arg": {"type": "string"}, "extension": "mailboxid"},
]


class RuleBuildError(Exception):
    """A rule cannot be compiled (a move without a usable target)."""


def extend_sievelib() -> None:
    """Teach sievelib (process-wide, idempotent) ``fileinto :specialuse``/``:mailboxid`` and the
    RFC 5233 address parts ``:user``/``:detail`` (``address``, ``envelope``), each valid after
    its ``require``."""
    global _extended
    with _lock:
        if _extended:
            return
        definition = commands.FileintoCommand.args_definition
        known = {arg["name"] for arg in definition}
        position = next(i for i, arg in enumerate(definition) if arg["name"] == "mailbox")
        for tag in _FILEINTO_TAGS:
            if tag["name"] not in known:
                definition.insert(position, tag)
                position += 1
        for cls in (commands.AddressCommand, commands.EnvelopeCommand):
            for arg in cls.args_definition:
                if arg["name"] == "address-part":
                    extra = arg.setdefault("extension_values", {})
                    extra.setdefault(":user", "subaddress")
                    extra.setdefault(":detail", "subaddress")
        _extended = True


extend_sievelib()


# --------------------------------------------------------------------------- building blocks


def _command(name: str, parent: commands.Command | None) -> commands.Command:
    return commands.get_command_instance(name, parent, False)


def _tag(cmd: commands.Command, tag: str) -> None:
    if not cmd.check_next_arg("tag", tag, check_extension=False):
        raise RuleBuildError(f"sievelib refused {tag} on {cmd.name}")


def _string(cmd: commands.Command, value: str) -> None:
    if not cmd.check_next_arg("string", tools.quote(value), check_extension=False):
        raise RuleBuildError(f"sievelib refused a string argument on {cmd.name}")


def _strings(cmd: commands.Command, values: list[str]) -> None:
    if not cmd.check_next_arg("stringlist", [tools.quote(v) for v in values], check_extension=False):
        raise RuleBuildError(f"sievelib refused a string list on {cmd.name}")


class _Builder:
    """Builds the tests and actions of the rules, noting the extensions they need."""

    def __init__(self) -> None:
        self.requires: list[str] = []

    def need(self, *extensions: str) -> None:
        for ext in extensions:
            if ext not in self.requires:
                self.requires.append(ext)

    # ---- tests

    def _address(self, parent: commands.Command, kind: str, part: str, match: str,
                 headers: list[str], value: str) -> commands.Command:
        cmd = _command(kind, parent)
        _tag(cmd, part)
        _tag(cmd, match)
        if len(headers) == 1:
            _string(cmd, headers[0])
        else:
            _strings(cmd, headers)
        _string(cmd, value)
        return cmd

    def _combine(self, parent: commands.Command, mode: str,
                 builders: list[Callable[[commands.Command], commands.Command]]) -> commands.Command:
        """``allof``/``anyof`` (``mode`` all/any) of the tests the ``builders`` make under it; a
        single test stands alone."""
        if len(builders) == 1:
            return builders[0](parent)
        cmd = _command("allof" if mode == "all" else "anyof", parent)
        for make in builders:
            if not cmd.check_next_arg("test", make(cmd), check_extension=False):
                raise RuleBuildError("sievelib refused a test in a test list")
        return cmd

    def test(self, condition: Condition, parent: commands.Command) -> commands.Command:
        if isinstance(condition, GroupCondition):
            if not condition.conditions:
                raise RuleBuildError("a group without conditions")
            return self._combine(parent, condition.match_mode, [partial(self.test, c) for c in condition.conditions])
        if isinstance(condition, FlagCondition):
            if condition.type == "has_attachment":
                self.need("imap4flags")
                cmd = _command("hasflag", parent)
                _string(cmd, HAS_ATTACHMENT_KEYWORD)
                return cmd
            if condition.type == "list_unsubscribe_exists":
                cmd = _command("exists", parent)
                _string(cmd, "List-Unsubscribe")
                return cmd
            raise RuleBuildError(f"unknown condition {condition.type!r}")
        if not isinstance(condition, ValueCondition):
            raise RuleBuildError(f"unknown condition {condition!r}")
        value = condition.value
        if condition.type == "from_is":
            return self._address(parent, "address", ":all", ":is", ["from"], value)
        if condition.type == "from_contains":
            return self._address(parent, "address", ":all", ":contains", ["from"], value)
        if condition.type == "recipient_is":
            self.need("envelope")
            return self._combine(parent, "any", [
                lambda p: self._address(p, "address", ":all", ":is", ["to", "cc"], value),
                lambda p: self._address(p, "envelope", ":all", ":is", ["to"], value),
            ])
        if condition.type == "plus_tag_is":
            self.need("envelope", "subaddress")
            return self._address(parent, "envelope", ":detail", ":is", ["to"], value)
        if condition.type == "subject_contains":
            cmd = _command("header", parent)
            _tag(cmd, ":contains")
            _string(cmd, "subject")
            _string(cmd, value)
            return cmd
        raise RuleBuildError(f"unknown condition {condition.type!r}")

    # ---- actions

    def flag(self, parent: commands.Command, flag: str) -> commands.Command:
        self.need("imap4flags")
        cmd = _command("addflag", parent)
        _string(cmd, flag)
        return cmd

    def move(self, parent: commands.Command, target: MoveTarget) -> commands.Command:
        self.need("fileinto")
        cmd = _command("fileinto", parent)
        if target.mailbox_id is not None:
            self.need("mailboxid")
            _tag(cmd, ":mailboxid")
            _string(cmd, target.mailbox_id)
            _string(cmd, target.name)
            return cmd
        if target.role is None or target.role not in SYSTEM_TARGETS:
            raise RuleBuildError(f"a move needs a folder id or one of the roles {', '.join(SYSTEM_TARGETS)}")
        special_use, name = SYSTEM_TARGETS[target.role]
        if special_use is not None:
            self.need("special-use")
            _tag(cmd, ":specialuse")
            _string(cmd, special_use)
        _string(cmd, name)
        return cmd

    def rule(self, rule: Rule) -> commands.Command:
        if not rule.conditions or not rule.actions:
            raise RuleBuildError("a rule needs at least one condition and one action")
        cmd = _command("if", None)
        test = self._combine(cmd, rule.match_mode, [partial(self.test, c) for c in rule.conditions])
        if not cmd.check_next_arg("test", test, check_extension=False):
            raise RuleBuildError("sievelib refused the rule's test")
        for action in _flag_actions(rule.actions):
            cmd.addchild(self.flag(cmd, SEEN if action.type == "mark_read" else FLAGGED))
        for action in rule.actions:
            if action.type == "move":
                if action.target is None:
                    raise RuleBuildError("a move without a target")
                cmd.addchild(self.move(cmd, action.target))
        if rule.stop:
            cmd.addchild(_command("stop", cmd))
        return cmd


def _flag_actions(actions: Iterable[Action]) -> list[Action]:
    out: list[Action] = []
    for action in actions:
        if action.type in ("mark_read", "star") and all(a.type != action.type for a in out):
            out.append(action)
    return out


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """The rules that run, in the order they run: enabled ones by ``position`` (stable: ties keep
    their list order)."""
    return sorted((r for r in rules if r.enabled), key=lambda r: r.position)


def label(rule: Rule) -> str:
    """The ``# Filter:`` comment of ``rule``: its UUID, never user text."""
    return f"rule {rule.id}" if _UUID.match(rule.id) else "rule"


def add_rules(fs: FiltersSet, rules: tuple[Rule, ...]) -> None:
    """Append ``rules`` (enabled ones, by position) to ``fs``."""
    builder = _Builder()
    built = [(label(rule), builder.rule(rule)) for rule in ordered(rules)]
    for extension in builder.requires:
        fs.require(extension)
    for name, content in built:
        fs.filters.append({"name": name, "content": content, "enabled": True})
