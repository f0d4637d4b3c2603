"""Inbox rules: THE definition of a rule (Shipmail's MailboxRules, MailboxRule, MailboxRuleCondition,
MailboxRuleAction, ...), its limits, and the request and response of ``GET/PUT
/v1/mailboxes/{id}/rules``.

One vocabulary: the route parses :class:`UpdateMailboxRulesRequest`, the service works on its
:class:`MailboxRule` list, the ``mailboxes.rules`` column stores that list (JSON, validated on read:
:data:`RULES` through :class:`shipmail.db.types.PydanticJSON`) and :mod:`shipmail.rules.sieve`
compiles it. The condition and action types are the ``type`` literals below: nothing else lists
them (adding a condition type is an edit here plus its test in :mod:`shipmail.rules.sieve`).

A custom move target is stored with one field the API never shows, ``fallback_name`` (the folder's
path, ``Parent/Child``, when the rules were saved: the name argument of ``fileinto :mailboxid``,
used by the server only if the folder id no longer exists). It is outside the OpenAPI schema and
the wire form; it is read and written only in the storage context
(:data:`shipmail.db.types.STORAGE_CONTEXT`); a request that sends it gets ``extra_forbidden``.

Limits beyond the reference schema's (so that the largest accepted set stays a script Cyrus takes
and runs quickly), checked by :func:`check_rules` when the request is parsed: groups nest at most
:data:`MAX_GROUP_DEPTH` levels (a rule's own conditions are level 1), a rule holds at most
:data:`MAX_CONDITIONS_PER_RULE` value and flag conditions at all levels (groups are not counted), a
rule has at most one ``move`` and no action twice, rule ids are unique, values and names hold no
character that no header can carry (control characters other than TAB, surrogates).
``send_webhook`` adds nothing to the script: the inbound gateway sends the rule's
``mailbox.rule_matched`` event to the organisation's webhooks subscribed to that type (every
matched rule is an event of the mailbox's stream; only rules with ``send_webhook`` go to webhooks).

Validation errors name fields as ``rules[3].conditions[0].value``: the tagged unions (conditions
and actions by ``type``, move targets by ``kind``) would put the tag into pydantic's error location
(``conditions.0.from_is.value``); :class:`UpdateMailboxRulesRequest` renders its own details without
them, and points a bad or missing tag at the ``type``/``kind`` field.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Annotated, Any, Literal, get_args, no_type_check
from uuid import UUID

import pydantic
from pydantic import Field, TypeAdapter, ValidationInfo, field_validator, model_serializer, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails, PydanticCustomError

from shipmail.db.types import is_storage
from shipmail.http.errors import Conflict, Detail, ValidationFailed, detail
from shipmail.http.schemas import Request, Wire
from shipmail.jmap import ids

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

MatchMode = Literal["all", "any"]
#: Conditions that test a header or envelope part against a value.
ValueConditionType = Literal["from_is", "from_contains", "recipient_is", "plus_tag_is", "subject_contains"]
#: Conditions without a value.
FlagConditionType = Literal["has_attachment", "list_unsubscribe_exists"]
#: The system folders a rule may move to (RFC 8621 roles).
SystemRole = Literal["inbox", "archive", "junk", "trash"]
FlagActionType = Literal["mark_read", "star"]

VALUE_TYPES: tuple[ValueConditionType, ...] = get_args(ValueConditionType)
TARGET_ROLES: tuple[SystemRole, ...] = get_args(SystemRole)

#: In Shipmail's reference but not offered here (422 with this explanation).
UNSUPPORTED_ACTIONS: dict[str, str] = {}

_VALUE_DESCRIPTION = (
    "Matched literally (no wildcards), ASCII letters case-insensitively; 1-256 characters, no control "
    "characters other than TAB. from_is / from_contains: the From address; recipient_is: a To or Cc "
    "address, or the address the message was delivered to; plus_tag_is: the +tag of the address it was "
    "delivered to (local+tag@domain); subject_contains: the decoded Subject."
)


class MailboxRuleValueCondition(Request):
    type: ValueConditionType
    value: str = Field(min_length=1, max_length=MAX_VALUE_LENGTH, description=_VALUE_DESCRIPTION)


class MailboxRuleFlagCondition(Request):
    type: FlagConditionType = Field(
        description="has_attachment: the message has an attachment; list_unsubscribe_exists: it has a "
        "List-Unsubscribe header."
    )


class MailboxRuleGroupCondition(Request):
    """Nested conditions with their own match mode. Groups nest at most two levels deep (a group in
    a group), and a rule holds at most 10 conditions at all levels (groups themselves not counted)."""

    # Recursive: one schema in requests and responses (no -Input/-Output pair).
    model_config = pydantic.ConfigDict(extra="forbid", json_schema_mode_override="validation")

    type: Literal["group"]
    match_mode: MatchMode
    conditions: list[MailboxRuleCondition] = Field(min_length=1, max_length=MAX_CONDITIONS)


MailboxRuleCondition = Annotated[
    MailboxRuleValueCondition | MailboxRuleFlagCondition | MailboxRuleGroupCondition,
    Field(discriminator="type"),
]


class MailboxRuleSystemTarget(Request):
    kind: Literal["system"]
    role: SystemRole


class MailboxRuleCustomTarget(Request):
    kind: Literal["custom"]
    folder_id: str = Field(
        min_length=1,
        max_length=300,
        description="A custom folder of the mailbox (fld_...; see folders in the response).",
    )
    #: Stored only (see the module docstring): the folder's path when the rules were saved.
    fallback_name: SkipJsonSchema[str] = Field(default="", exclude=True)

    @field_validator("fallback_name", mode="before")
    @classmethod
    def _stored_only(cls, value: object, info: ValidationInfo) -> object:
        if not is_storage(info.context):
            raise PydanticCustomError("extra_forbidden", "Extra inputs are not permitted")
        return value

    # No annotations: pydantic would take a return annotation for the serialisation schema and put
    # it into the OpenAPI document; no_type_check tells mypy so.
    @model_serializer(mode="wrap")
    @no_type_check
    def _with_fallback_when_stored(self, handler, info):
        """The wire form; plus ``fallback_name`` in the storage context."""
        data = handler(self)
        if is_storage(info.context):
            data["fallback_name"] = self.fallback_name
        return data

    @property
    def mailbox_id(self) -> str:
        """The JMAP Mailbox id of the folder (404 for an id that cannot be one)."""
        return ids.from_wire(ids.FOLDER, self.folder_id)


MailboxRuleMoveTarget = Annotated[MailboxRuleSystemTarget | MailboxRuleCustomTarget, Field(discriminator="kind")]


class MailboxRuleMoveAction(Request):
    type: Literal["move"]
    target: MailboxRuleMoveTarget


class MailboxRuleFlagAction(Request):
    type: FlagActionType = Field(description="mark_read: add \\Seen; star: add \\Flagged.")


class MailboxRuleWebhookAction(Request):
    type: Literal["send_webhook"] = Field(
        description="send_webhook: the match is sent as mailbox.rule_matched to the organisation's webhooks "
        "subscribed to that event type."
    )


MailboxRuleAction = Annotated[
    MailboxRuleMoveAction | MailboxRuleFlagAction | MailboxRuleWebhookAction, Field(discriminator="type")
]


def sends_webhook(rule: MailboxRule) -> bool:
    """Whether ``rule`` has a ``send_webhook`` action."""
    return any(isinstance(a, MailboxRuleWebhookAction) for a in rule.actions)


class MailboxRule(Request):
    id: UUID = Field(description="Client-chosen UUID, unique within the mailbox's rules.")
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    enabled: bool = Field(description="Disabled rules are kept but do not run.")
    position: int = Field(
        ge=0, le=MAX_POSITION, description="Rules run in ascending position; equal positions in list order."
    )
    match_mode: MatchMode
    stop: bool = Field(description="Stop evaluating later rules after this rule matches.")
    conditions: list[MailboxRuleCondition] = Field(min_length=1, max_length=MAX_CONDITIONS)
    actions: list[MailboxRuleAction] = Field(
        min_length=1,
        max_length=MAX_ACTIONS,
        description="At most one move; no action twice. Flags apply before the move.",
    )


#: The ``mailboxes.rules`` column's type: the rules in the order they were saved.
RULES = TypeAdapter(list[MailboxRule])


# --------------------------------------------------------------------------- checks the schema cannot say

#: Characters no header can carry: control characters except TAB (Unicode Cc: C0, DEL, C1) and
#: surrogates (Cs, which UTF-8 cannot encode).
_BAD_CHARACTER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def bad_characters(text: str) -> list[str]:
    """The characters of ``text`` no header can carry (each once, in order of appearance)."""
    return list(dict.fromkeys(_BAD_CHARACTER.findall(text)))


def _characters(text: str, field: str, what: str) -> list[Detail]:
    if _BAD_CHARACTER.search(text) is None:
        return []
    shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad_characters(text)[:5])
    return [
        detail(
            field,
            "invalid_character",
            f"{what} must not contain control characters (other than TAB) or surrogates ({shown}).",
        )
    ]


def _conditions(conditions: Sequence[MailboxRuleCondition], where: str, depth: int, problems: list[Detail]) -> int:
    """Check a condition list at ``depth``; returns how many value and flag conditions it holds
    at every level."""
    total = 0
    for index, condition in enumerate(conditions):
        path = f"{where}[{index}]"
        if isinstance(condition, MailboxRuleGroupCondition):
            if depth >= MAX_GROUP_DEPTH:
                problems.append(
                    detail(
                        f"{path}.type",
                        "too_deep",
                        f"Groups nest at most {MAX_GROUP_DEPTH - 1} levels deep "
                        f"({MAX_GROUP_DEPTH} levels of conditions in all).",
                    )
                )
                continue
            total += _conditions(condition.conditions, f"{path}.conditions", depth + 1, problems)
            continue
        total += 1
        if isinstance(condition, MailboxRuleValueCondition):
            problems += _characters(condition.value, f"{path}.value", "A condition value")
    return total


def check_rules(rules: Sequence[MailboxRule]) -> list[Detail]:
    """What the schema cannot say, as details with field paths ``rules[i]...``: duplicate ids,
    characters no header can carry, groups nested too deep, too many conditions in a rule, a second
    move or a repeated action in a rule. Empty when the rules are fine."""
    problems: list[Detail] = []
    seen: dict[UUID, int] = {}
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if rule.id in seen:
            problems.append(
                detail(f"{where}.id", "duplicate_id", f"Rule id {rule.id} is already used by rules[{seen[rule.id]}].")
            )
        else:
            seen[rule.id] = i
        problems += _characters(rule.name, f"{where}.name", "A rule name")
        total = _conditions(rule.conditions, f"{where}.conditions", 1, problems)
        if total > MAX_CONDITIONS_PER_RULE:
            problems.append(
                detail(
                    f"{where}.conditions",
                    "too_many_conditions",
                    f"A rule holds at most {MAX_CONDITIONS_PER_RULE} conditions, nested ones "
                    f"included and groups not counted ({total} given).",
                )
            )
        used: dict[str, int] = {}
        for j, action in enumerate(rule.actions):
            if action.type in used:
                message = (
                    "A rule moves a message to one folder only."
                    if action.type == "move"
                    else f"The action {action.type} is already in actions[{used[action.type]}]."
                )
                problems.append(detail(f"{where}.actions[{j}].type", "duplicate_action", message))
            else:
                used[action.type] = j
    return problems


# --------------------------------------------------------------------------- error locations


def _tags(union: Any) -> frozenset[str]:
    """The tags of a discriminated union of models (``Annotated[Union[...], Field(discriminator=...)]``)."""
    members, info = get_args(union)
    return frozenset(
        tag for model in get_args(members) for tag in get_args(model.model_fields[info.discriminator].annotation)
    )


#: List fields whose items are tagged unions, and the tags of every union (pydantic puts the tag
#: after the list index or after ``target``).
_TAGGED_LISTS = ("conditions", "actions")
_TAGS = _tags(MailboxRuleCondition) | _tags(MailboxRuleAction) | _tags(MailboxRuleMoveTarget)


def clean_loc(loc: Sequence[int | str]) -> list[int | str]:
    """pydantic's error location without the tags of the tagged unions: a tag follows an index
    into ``conditions``/``actions`` or the ``target`` field."""
    parts = list(loc)
    out: list[int | str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        out.append(part)
        after_union = part == "target" or (isinstance(part, int) and i > 0 and parts[i - 1] in _TAGGED_LISTS)
        if after_union and i + 1 < len(parts) and parts[i + 1] in _TAGS:
            i += 1
        i += 1
    return out


def _path(loc: Sequence[int | str]) -> str:
    return (
        "".join(f"[{part}]" if isinstance(part, int) else ("." if n else "") + part for n, part in enumerate(loc))
        or "body"
    )


def _error_detail(err: ErrorDetails) -> Detail:
    loc = clean_loc(err["loc"])
    code, message = err["type"], err["msg"]
    if code in ("union_tag_invalid", "union_tag_not_found"):
        ctx = err.get("ctx") or {}
        field = str(ctx.get("discriminator") or "'type'").strip("'")
        loc = [*loc, field]
        tag = ctx.get("tag")
        if field == "type" and tag in UNSUPPORTED_ACTIONS and loc[-3:-2] == ["actions"]:
            code, message = "unsupported", UNSUPPORTED_ACTIONS[str(tag)]
        elif code == "union_tag_not_found":
            message = f"{field} is required"
        else:
            message = f"{field} must be one of {ctx.get('expected_tags')}"
    return detail(_path(loc), code, message)


class UpdateMailboxRulesRequest(Request):
    """The complete new set of rules: rules left out are deleted."""

    rules: list[MailboxRule] = Field(max_length=MAX_RULES)

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: pydantic.ValidatorFunctionWrapHandler) -> Any:
        """422 ``Invalid request body.`` for schema errors (field paths without union tags, see the
        module doc), then 422 ``Invalid rules.`` for what :func:`check_rules` finds."""
        try:
            parsed = handler(data)
        except pydantic.ValidationError as exc:
            details = [_error_detail(e) for e in exc.errors(include_url=False, include_input=False)]
            raise ValidationFailed("Invalid request body.", details=details) from None
        problems = check_rules(parsed.rules)
        if problems:
            raise ValidationFailed("Invalid rules.", details=problems)
        return parsed


# --------------------------------------------------------------------------- responses


class MailboxRuleFolder(Wire):
    id: str = Field(description="fld_ + the JMAP Mailbox id.")
    name: str
    parent_id: str | None = Field(description="Parent folder ID for subfolders, or null for a root folder.")
    role: str | None = Field(description="inbox, archive, junk or trash for those system folders; null otherwise.")
    kind: Literal["custom", "system"]


class MailboxRules(Wire):
    # Its rules are the request's models: one schema for both (no MailboxRule-Input/-Output).
    model_config = pydantic.ConfigDict(from_attributes=True, json_schema_mode_override="validation")

    object: Literal["mailbox_rules"] = "mailbox_rules"
    mailbox_id: str
    address: str = Field(json_schema_extra={"format": "email"})
    rules: list[MailboxRule] = Field(description="In the order they were saved; they run by position.")
    folders: list[MailboxRuleFolder] = Field(
        description="The folders a move may target: Inbox, Archive, Junk, Trash (kind system, by role) and "
        "every custom folder (by folder_id), depth first."
    )


# --------------------------------------------------------------------------- folders


def targeting(rules: Sequence[MailboxRule], folder_ids: Collection[str]) -> list[MailboxRule]:
    """The ``rules`` (enabled or not) that move messages to one of ``folder_ids``
    (JMAP ids)."""
    wanted = {ids.to_wire(ids.FOLDER, f) for f in folder_ids}
    return [
        rule
        for rule in rules
        if any(
            isinstance(a, MailboxRuleMoveAction)
            and isinstance(a.target, MailboxRuleCustomTarget)
            and a.target.folder_id in wanted
            for a in rule.actions
        )
    ]


def ensure_not_targeted(rules: Sequence[MailboxRule], folder_ids: Collection[str]) -> None:
    """409 when one of ``rules`` moves messages to one of ``folder_ids`` (JMAP ids): the folder
    (or a subfolder) cannot be deleted until the rule is changed (folder delete,
    :func:`shipmail.folders.service.delete_folder`)."""
    found = targeting(rules, folder_ids)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise Conflict(
            f"The rule {first.name!r} (id {first.id}){more} moves messages to this folder "
            "or one of its subfolders: change or delete the rule first."
        )
