"""Inbox rules: Shipmail ``GET/PUT /v1/mailboxes/{id}/rules`` (``getMailboxRules``,
``updateMailboxRules``).

The request and response models, and the checks beyond the JSON schema (unique ids, nesting
depth, characters, one move per rule), are :mod:`shipmail.rules.schemas`; existing folders and how
rules become the mailbox's delivery Sieve script are :mod:`shipmail.rules.service`.
"""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.rules import service
from shipmail.rules.schemas import MailboxRules, UpdateMailboxRulesRequest

__all__ = ["MailboxRules", "UpdateMailboxRulesRequest", "get_rules", "operations", "update_rules"]

operations: list[Operation] = []


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/rules",
    operation_id="getMailboxRules",
    summary="Get mailbox rules",
    scope=Scope.MAILBOX_RULES_READ,
    tier=Tier.READ,
    response=MailboxRules,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def get_rules(ctx: Context[None, None]) -> MailboxRules:
    """The mailbox's inbox rules (as saved) and the folders a rule can move messages to (one JMAP
    request: Mailbox/get). 404 for an unknown mailbox or one of another organisation."""
    return await service.get_rules(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "PUT",
    "/mailboxes/{id}/rules",
    operation_id="updateMailboxRules",
    summary="Replace mailbox rules",
    scope=Scope.MAILBOX_RULES_WRITE,
    tier=Tier.WRITE,
    body=UpdateMailboxRulesRequest,
    response=MailboxRules,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def update_rules(ctx: Context[UpdateMailboxRulesRequest, None]) -> MailboxRules:
    """Replace all inbox rules (GET first to keep the ones that should stay). They run at delivery,
    in position order: each enabled rule whose conditions match (all or any) adds its flags, then
    moves the message; stop ends the evaluation. Flags carry over to later moves and to the Inbox;
    a message matched by two rules that move it (without stop) lands in both folders. The rules
    take effect at once and atomically: a set the mail server refuses changes nothing.
    422: invalid rules (details name the fields, e.g. rules[3].conditions[0].value), duplicate
    rule ids, a move to an unknown folder. 404: unknown mailbox."""
    return await service.replace_rules(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.body.rules)
