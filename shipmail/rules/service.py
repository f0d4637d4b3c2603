"""Inbox rules: ``GET/PUT /v1/mailboxes/{id}/rules`` (Shipmail ``getMailboxRules``,
``updateMailboxRules``), compiled into the mailbox's delivery Sieve script.

The database row (``mailboxes.rules``: a JSON list of the rules in the API's shape) is the source
of truth; :func:`plan_rules` turns it into the compiler's input (:mod:`shipmail.sieve.model`,
compiled by :mod:`shipmail.sieve.rules`). A custom ``move`` target is stored with one field the
API never shows, ``fallback_name``: the folder's path (``Parent/Child``) when the rules were saved,
the name argument of ``fileinto :mailboxid`` (the JMAP Mailbox id is what Cyrus uses; the name
only if that id no longer exists).

Costs: GET is one database read and ONE JMAP request (Mailbox/get, for the folders a rule may
target). PUT is one Mailbox/get (checks the custom targets), then
:func:`shipmail.delivery.service.update_and_install` (the row is changed, the new script
uploaded and activated, then committed: a script the server refuses leaves the old script active
and the row unchanged): three JMAP requests in all.

Limits beyond the reference schema's (so that the largest accepted set stays a script Cyrus takes
and runs quickly): groups nest at most :data:`MAX_GROUP_DEPTH` levels (a rule's own conditions
are level 1), a rule holds at most :data:`MAX_CONDITIONS_PER_RULE` value and flag conditions at
all levels (groups are not counted), a rule has at most one ``move`` and no action twice,
rule ids are unique, values and names hold no character that no header can carry (control
characters other than TAB, surrogates).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.mailboxes.models import Mailbox
from shipmail.http.errors import Conflict, ValidationFailed
from shipmail.jmap import ids
from shipmail.mailboxes import service as mailboxes
from shipmail.delivery import service as sieve_sync
from shipmail.folders import service as folder_service
from shipmail.runtime import Services
from shipmail.sieve.model import Action, Condition, FlagCondition, GroupCondition, MoveTarget, Rule, ValueCondition
from shipmail.sieve.rules import SYSTEM_TARGETS

logger = logging.getLogger("shipmail.rules.service")

MAX_RULES = 50
MAX_NAME_LENGTH = 120
#: Conditions in one list (a rule's, or a group's).
MAX_CONDITIONS = 10
MAX_ACTIONS = 4
MAX_VALUE_LENGTH = 256
#: Levels of conditions: a rule's own are level 1, a group's level 2, a group's in a group 3.
MAX_GROUP_DEPTH = 3
#: Value and flag conditions of a rule at every level (groups themselves not counted): keeps the
#: largest set at 50 x 10 values, whatever the nesting.
MAX_CONDITIONS_PER_RULE = 10
MAX_POSITION = 2**31 - 1
#: The system folders a rule may move to (RFC 8621 roles).
TARGET_ROLES = tuple(SYSTEM_TARGETS)

VALUE_TYPES = ("from_is", "from_contains", "recipient_is", "plus_tag_is", "subject_contains")
FLAG_TYPES = ("has_attachment", "list_unsubscribe_exists")
ACTION_TYPES = ("move", "mark_read", "star")
#: In Shipmail's reference but not offered here (422 with this explanation).
UNSUPPORTED_ACTIONS = {
    "send_webhook": "send_webhook actions are not supported by this server; use move, mark_read or star.",
}


@dataclass(frozen=True)
class RuleFolder:
    """A folder a rule may move to (``MailboxRuleFolder``); ids are wire ids (``fld_...``)."""

    id: str
    name: str
    parent_id: str | None
    role: str | None
    kind: str


@dataclass(frozen=True)
class MailboxRules:
    """What GET and PUT answer: the mailbox, its rules (API shape) and the target folders."""

    row: Mailbox
    rules: list[dict[str, Any]]
    folders: list[RuleFolder]


# --------------------------------------------------------------------------- pure checks


def _problem(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}


def bad_characters(text: str) -> list[str]:
    """The characters of ``text`` no header can carry: control characters except TAB (Unicode
    Cc: C0, DEL, C1) and surrogates (Cs, which UTF-8 cannot encode)."""
    out: list[str] = []
    for ch in text:
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cs") and ch not in out:
            out.append(ch)
    return out


def _characters(text: str, field: str, what: str) -> list[dict[str, str]]:
    bad = bad_characters(text)
    if not bad:
        return []
    shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad[:5])
    return [_problem(field, "invalid_character",
                     f"{what} must not contain control characters (other than TAB) or surrogates ({shown}).")]


def _conditions(conditions: list[dict[str, Any]], where: str, depth: int,
                problems: list[dict[str, str]]) -> int:
    """Check a condition list at ``depth``; returns how many value and flag conditions it holds
    at every level."""
    total = 0
    for index, condition in enumerate(conditions):
        path = f"{where}[{index}]"
        kind = condition.get("type")
        if kind != "group":
            total += 1
        if kind in VALUE_TYPES:
            problems += _characters(str(condition.get("value", "")), f"{path}.value", "A condition value")
        elif kind == "group":
            if depth >= MAX_GROUP_DEPTH:
                problems.append(_problem(f"{path}.type", "too_deep",
                                         f"Groups nest at most {MAX_GROUP_DEPTH - 1} levels deep "
                                         f"({MAX_GROUP_DEPTH} levels of conditions in all)."))
                continue
            total += _conditions(list(condition.get("conditions") or []), f"{path}.conditions", depth + 1, problems)
    return total


def check_rules(rules: list[dict[str, Any]]) -> None:
    """422 (every problem, with its field path ``rules[i]...``) for what the schema cannot say:
    duplicate ids, characters no header can carry, groups nested too deep, too many conditions in
    a rule, a second move or a repeated action in a rule."""
    problems: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        rule_id = str(rule.get("id"))
        if rule_id in seen:
            problems.append(_problem(f"{where}.id", "duplicate_id",
                                     f"Rule id {rule_id} is already used by rules[{seen[rule_id]}]."))
        else:
            seen[rule_id] = i
        problems += _characters(str(rule.get("name", "")), f"{where}.name", "A rule name")
        total = _conditions(list(rule.get("conditions") or []), f"{where}.conditions", 1, problems)
        if total > MAX_CONDITIONS_PER_RULE:
            problems.append(_problem(f"{where}.conditions", "too_many_conditions",
                                     f"A rule holds at most {MAX_CONDITIONS_PER_RULE} conditions, nested ones "
                                     f"included and groups not counted ({total} given)."))
        used: dict[str, int] = {}
        for j, action in enumerate(rule.get("actions") or []):
            kind = str(action.get("type"))
            if kind in used:
                message = ("A rule moves a message to one folder only." if kind == "move"
                           else f"The action {kind} is already in actions[{used[kind]}].")
                problems.append(_problem(f"{where}.actions[{j}].type", "duplicate_action", message))
            else:
                used[kind] = j
    if problems:
        raise ValidationFailed("Invalid rules.", details=problems)


def _targetable(folder: folder_service.Folder) -> bool:
    return folder.role in TARGET_ROLES or folder.kind == "custom"


def rule_folders(folders: Iterable[folder_service.Folder]) -> list[RuleFolder]:
    """The folders a rule may move to, in folder-tree order: Inbox, Archive, Junk, Trash and every
    custom folder (Drafts and Sent are not targets)."""
    return [
        RuleFolder(
            id=ids.to_wire(ids.FOLDER, f.id), name=f.name,
            parent_id=ids.to_wire(ids.FOLDER, f.parent_id) if f.parent_id else None,
            role=f.role, kind=f.kind,
        )
        for f in folder_service.tree_order(folders) if _targetable(f)
    ]


def resolve_targets(rules: list[dict[str, Any]], folders: list[folder_service.Folder]) -> list[dict[str, Any]]:
    """``rules`` as stored: each custom target's ``folder_id`` checked against ``folders`` (422
    ``rules[i].actions[j].target.folder_id`` for an unknown folder, or a system one) and given its
    ``fallback_name`` (the folder's path)."""
    by_id = {f.id: f for f in folders}
    problems: list[dict[str, str]] = []
    stored: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        rule = json.loads(json.dumps(rule))  # a deep copy
        for j, action in enumerate(rule.get("actions") or []):
            target = action.get("target")
            if action.get("type") != "move" or not isinstance(target, dict) or target.get("kind") != "custom":
                continue
            field = f"rules[{i}].actions[{j}].target.folder_id"
            wire = str(target.get("folder_id"))
            head = ids.FOLDER + "_"
            folder = by_id.get(wire[len(head):]) if wire.startswith(head) else None
            if folder is None:
                problems.append(_problem(field, "not_found", f"No folder with id {wire!r} in this mailbox."))
            elif folder.kind != "custom":
                hint = (f'use {{"kind": "system", "role": "{folder.role}"}}' if folder.role in TARGET_ROLES
                        else "rules cannot move messages there")
                problems.append(_problem(field, "system_folder", f"{folder.name!r} is a system folder: {hint}."))
            else:
                target["fallback_name"] = "/".join(folder_service.path_of(by_id, folder.id))
        stored.append(rule)
    if problems:
        raise ValidationFailed("Invalid rules.", details=problems)
    return stored


def public(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored rules in the API's shape (without ``fallback_name``)."""
    out = json.loads(json.dumps(stored))
    for rule in out:
        for action in rule.get("actions") or []:
            target = action.get("target")
            if isinstance(target, dict):
                target.pop("fallback_name", None)
    return out  # type: ignore[no-any-return]


def stored_rules(row: Mailbox) -> list[dict[str, Any]]:
    """The rules stored on ``row`` (empty when none were ever saved, or for a row-like object
    without the column, as some callers of ``sieve_sync.install`` pass)."""
    text = getattr(row, "rules", None)
    if not text:
        return []
    loaded = json.loads(text)
    if not isinstance(loaded, list):
        raise ValueError(f"mailboxes.rules of {row.id} is not a JSON list")
    return loaded


# --------------------------------------------------------------------------- compiler input


def _condition(data: dict[str, Any]) -> Condition:
    kind = data["type"]
    if kind in VALUE_TYPES:
        return ValueCondition(type=kind, value=str(data["value"]))
    if kind in FLAG_TYPES:
        return FlagCondition(type=kind)
    if kind == "group":
        return GroupCondition(match_mode=data["match_mode"],
                              conditions=tuple(_condition(c) for c in data["conditions"]))
    raise ValueError(f"unknown condition type {kind!r}")


def _action(data: dict[str, Any]) -> Action:
    kind = data["type"]
    if kind != "move":
        if kind not in ACTION_TYPES:
            raise ValueError(f"unknown action type {kind!r}")
        return Action(type=kind)
    target = data["target"]
    if target["kind"] == "system":
        role = str(target["role"])
        return Action(type="move", target=MoveTarget(name=SYSTEM_TARGETS[role][1], role=role))
    mailbox_id = ids.from_wire(ids.FOLDER, str(target["folder_id"]))
    return Action(type="move", target=MoveTarget(name=str(target.get("fallback_name") or ""), mailbox_id=mailbox_id))


def to_model(data: dict[str, Any]) -> Rule:
    """One stored rule as the compiler's :class:`~shipmail.sieve.model.Rule`."""
    return Rule(
        id=str(data["id"]), name=str(data["name"]), enabled=bool(data["enabled"]), position=int(data["position"]),
        match_mode=data["match_mode"], stop=bool(data["stop"]),
        conditions=tuple(_condition(c) for c in data["conditions"]),
        actions=tuple(_action(a) for a in data["actions"]),
    )


def plan_rules(row: Mailbox) -> tuple[Rule, ...]:
    """The stored rules of ``row`` as compiler input (enabled or not; the compiler skips disabled)."""
    return tuple(to_model(r) for r in stored_rules(row))


# --------------------------------------------------------------------------- folders


def targeting(row: Mailbox, folder_ids: Collection[str]) -> list[dict[str, Any]]:
    """The stored rules (enabled or not) that move messages to one of ``folder_ids`` (JMAP ids)."""
    wanted = {ids.to_wire(ids.FOLDER, f) for f in folder_ids}
    found = []
    for rule in stored_rules(row):
        for action in rule.get("actions") or []:
            target = action.get("target")
            if isinstance(target, dict) and target.get("kind") == "custom" and target.get("folder_id") in wanted:
                found.append(rule)
                break
    return found


def ensure_not_targeted(row: Mailbox, folder_ids: Collection[str]) -> None:
    """409 when a rule of ``row`` moves messages to one of ``folder_ids`` (JMAP ids): the folder
    (or a subfolder) cannot be deleted until the rule is changed."""
    rules = targeting(row, folder_ids)
    if rules:
        first = rules[0]
        more = f" (and {len(rules) - 1} more)" if len(rules) > 1 else ""
        raise Conflict(f"The rule {first.get('name')!r} (id {first.get('id')}){more} moves messages to this folder "
                       "or one of its subfolders: change or delete the rule first.")


# --------------------------------------------------------------------------- operations


async def _folders(svc: Services, row: Mailbox) -> list[folder_service.Folder]:
    return await folder_service.list_folders(svc, row)


async def get_rules(svc: Services, organization_id: str, mailbox_id: str) -> MailboxRules:
    """The mailbox's rules and target folders (404 for an unknown mailbox or another
    organisation's). One database read, one JMAP request."""
    async with svc.db.session() as session:  # TEMPORARY: the route's session
        row = await mailboxes.get(session, organization_id, mailbox_id)
    folders = await _folders(svc, row)
    return MailboxRules(row=row, rules=public(stored_rules(row)), folders=rule_folders(folders))


async def replace_rules(svc: Services, organization_id: str, mailbox_id: str,
                        rules: list[dict[str, Any]]) -> MailboxRules:
    """Replace every rule of the mailbox with ``rules`` (API shape, schema-valid) and activate the
    script compiled from them; both or neither (see the module docstring). 422: :func:`check_rules`,
    :func:`resolve_targets`, a script the server refuses; 404: unknown mailbox."""
    check_rules(rules)
    async with svc.db.session() as session:  # TEMPORARY: the route's session
        row = await mailboxes.get(session, organization_id, mailbox_id)
    folders = await _folders(svc, row)
    stored = resolve_targets(rules, folders)
    text = json.dumps(stored, ensure_ascii=False, separators=(",", ":"))

    async def mutate(session: AsyncSession, locked: Mailbox) -> None:
        locked.rules = text

    saved = await sieve_sync.update_and_install(svc, organization_id, mailbox_id, mutate)
    return MailboxRules(row=saved, rules=public(stored), folders=rule_folders(folders))
