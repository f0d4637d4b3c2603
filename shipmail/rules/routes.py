"""Inbox rules: Shipmail ``GET/PUT /v1/mailboxes/{id}/rules`` (``getMailboxRules``,
``updateMailboxRules``).

The schema follows Shipmail's reference (MailboxRules, MailboxRule, MailboxRuleCondition, ...);
what it cannot express (unique ids, nesting depth, characters, one move per rule, existing
folders) is checked by :mod:`shipmail.rules.service`, which also says how rules become the
mailbox's delivery Sieve script. ``send_webhook`` (in the reference) is refused with a 422 that
says so.

Validation errors name fields as ``rules[3].conditions[0].value``: the tagged unions
(conditions and actions by ``type``, move targets by ``kind``) would put the tag into pydantic's
error location (``conditions.0.from_is.value``); :class:`UpdateMailboxRulesRequest` renders its own
details without them, and points a bad or missing tag at the ``type``/``kind`` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import pydantic
from pydantic import Field, model_validator

from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Request, Wire
from shipmail.auth.scopes import Scope
from shipmail.http.errors import ValidationFailed
from shipmail.http.ratelimit import Tier
from shipmail.rules import service as service

operations: list[Operation] = []

MatchMode = Literal["all", "any"]

_VALUE_DESCRIPTION = (
    "Matched literally (no wildcards), ASCII letters case-insensitively; 1-256 characters, no control "
    "characters other than TAB. from_is / from_contains: the From address; recipient_is: a To or Cc "
    "address, or the address the message was delivered to; plus_tag_is: the +tag of the address it was "
    "delivered to (local+tag@domain); subject_contains: the decoded Subject."
)


class MailboxRuleValueCondition(Request):
    type: Literal["from_is", "from_contains", "recipient_is", "plus_tag_is", "subject_contains"]
    value: str = Field(min_length=1, max_length=service.MAX_VALUE_LENGTH, description=_VALUE_DESCRIPTION)


class MailboxRuleFlagCondition(Request):
    type: Literal["has_attachment", "list_unsubscribe_exists"] = Field(
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
    conditions: list[MailboxRuleCondition] = Field(min_length=1, max_length=service.MAX_CONDITIONS)


MailboxRuleCondition = Annotated[
    Union[MailboxRuleValueCondition, MailboxRuleFlagCondition, MailboxRuleGroupCondition],
    Field(discriminator="type"),
]


class MailboxRuleSystemTarget(Request):
    kind: Literal["system"]
    role: Literal["inbox", "archive", "junk", "trash"]


class MailboxRuleCustomTarget(Request):
    kind: Literal["custom"]
    folder_id: str = Field(min_length=1, max_length=300,
                           description="A custom folder of the mailbox (fld_...; see folders in the response).")


MailboxRuleMoveTarget = Annotated[
    Union[MailboxRuleSystemTarget, MailboxRuleCustomTarget], Field(discriminator="kind")
]


class MailboxRuleMoveAction(Request):
    type: Literal["move"]
    target: MailboxRuleMoveTarget


class MailboxRuleFlagAction(Request):
    type: Literal["mark_read", "star"] = Field(description="mark_read: add \\Seen; star: add \\Flagged.")


MailboxRuleAction = Annotated[Union[MailboxRuleMoveAction, MailboxRuleFlagAction], Field(discriminator="type")]


class MailboxRule(Request):
    id: UUID = Field(description="Client-chosen UUID, unique within the mailbox's rules.")
    name: str = Field(min_length=1, max_length=service.MAX_NAME_LENGTH)
    enabled: bool = Field(description="Disabled rules are kept but do not run.")
    position: int = Field(ge=0, le=service.MAX_POSITION,
                          description="Rules run in ascending position; equal positions in list order.")
    match_mode: MatchMode
    stop: bool = Field(description="Stop evaluating later rules after this rule matches.")
    conditions: list[MailboxRuleCondition] = Field(min_length=1, max_length=service.MAX_CONDITIONS)
    actions: list[MailboxRuleAction] = Field(
        min_length=1, max_length=service.MAX_ACTIONS,
        description="At most one move; no action twice. Flags apply before the move.",
    )


# --------------------------------------------------------------------------- error locations

_TAGGED_LISTS = ("conditions", "actions")
_TAGS = {"from_is", "from_contains", "recipient_is", "plus_tag_is", "subject_contains", "has_attachment",
         "list_unsubscribe_exists", "group", "move", "mark_read", "star", "system", "custom"}


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
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "body"


def _detail(err: Any) -> dict[str, str]:
    loc = clean_loc(err["loc"])
    code, message = str(err["type"]), str(err["msg"])
    if code in ("union_tag_invalid", "union_tag_not_found"):
        ctx = err.get("ctx") or {}
        field = str(ctx.get("discriminator") or "'type'").strip("'")
        loc = [*loc, field]
        tag = ctx.get("tag")
        if field == "type" and tag in service.UNSUPPORTED_ACTIONS and loc[-3:-2] == ["actions"]:
            code, message = "unsupported", service.UNSUPPORTED_ACTIONS[str(tag)]
        elif code == "union_tag_not_found":
            message = f"{field} is required"
        else:
            message = f"{field} must be one of {ctx.get('expected_tags')}"
    return {"field": _path(loc), "code": code, "message": message}


class UpdateMailboxRulesRequest(Request):
    """The complete new set of rules: rules left out are deleted."""

    rules: list[MailboxRule] = Field(max_length=service.MAX_RULES)

    @model_validator(mode="wrap")
    @classmethod
    def _clean_errors(cls, data: Any, handler: pydantic.ValidatorFunctionWrapHandler) -> Any:
        """Validation errors as a 422 whose field paths carry no union tags (see the module doc)."""
        try:
            return handler(data)
        except pydantic.ValidationError as exc:
            details = [_detail(e) for e in exc.errors(include_url=False, include_input=False)]
            raise ValidationFailed("Invalid request body.", details=details) from None


# --------------------------------------------------------------------------- responses


class MailboxRuleFolder(Wire):
    id: str = Field(description="fld_ + the JMAP Mailbox id.")
    name: str
    parent_id: str | None = Field(description="Parent folder ID for subfolders, or null for a root folder.")
    role: str | None = Field(description="inbox, archive, junk or trash for those system folders; null otherwise.")
    kind: Literal["custom", "system"]

    @classmethod
    def of(cls, f: service.RuleFolder) -> MailboxRuleFolder:
        return cls(id=f.id, name=f.name, parent_id=f.parent_id, role=f.role, kind=f.kind)  # type: ignore[arg-type]


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

    @classmethod
    def of(cls, found: service.MailboxRules) -> MailboxRules:
        return cls(
            mailbox_id=found.row.id, address=found.row.address,
            rules=[MailboxRule.model_validate(r) for r in found.rules],
            folders=[MailboxRuleFolder.of(f) for f in found.folders],
        )


# --------------------------------------------------------------------------- operations


@operation(
    operations, "GET", "/mailboxes/{id}/rules", operation_id="getMailboxRules", summary="Get mailbox rules",
    scope=Scope.MAILBOX_RULES_READ, tier=Tier.READ, response=MailboxRules,
    errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def get_rules(ctx: Context[None, None]) -> MailboxRules:
    """The mailbox's inbox rules (as saved) and the folders a rule can move messages to (one JMAP
    request: Mailbox/get). 404 for an unknown mailbox or one of another organisation."""
    return MailboxRules.of(await service.get_rules(ctx.services, ctx.organization_id, ctx.path["id"]))


@operation(
    operations, "PUT", "/mailboxes/{id}/rules", operation_id="updateMailboxRules", summary="Replace mailbox rules",
    scope=Scope.MAILBOX_RULES_WRITE, tier=Tier.WRITE, body=UpdateMailboxRulesRequest, response=MailboxRules,
    errors=(401, 403, 404, 422, 429, 503), tags=("Mailboxes",),
)
async def update_rules(ctx: Context[UpdateMailboxRulesRequest, None]) -> MailboxRules:
    """Replace all inbox rules (GET first to keep the ones that should stay). They run at delivery,
    in position order: each enabled rule whose conditions match (all or any) adds its flags, then
    moves the message; stop ends the evaluation. Flags carry over to later moves and to the Inbox;
    a message matched by two rules that move it (without stop) lands in both folders. The rules
    take effect at once and atomically: a set the mail server refuses changes nothing.
    422: invalid rules (details name the fields, e.g. rules[3].conditions[0].value), duplicate
    rule ids, a move to an unknown folder, send_webhook (not supported). 404: unknown mailbox."""
    rules = [r.model_dump(mode="json") for r in ctx.body.rules]
    return MailboxRules.of(await service.replace_rules(ctx.services, ctx.organization_id, ctx.path["id"], rules))
