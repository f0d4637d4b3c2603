"""``GET /v1/account``: the calling organisation's totals and limits. Wire model:
:mod:`shipmail.account.schemas`."""

from __future__ import annotations

from shipmail.account import service
from shipmail.account.schemas import Account
from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation

operations: list[Operation] = []


@operation(
    operations,
    "GET",
    "/account",
    operation_id="getAccount",
    summary="Get the organisation's totals and limits",
    scope=Scope.MAILBOXES_READ,
    tier=Tier.READ,
    response=Account,
    errors=(401, 403, 429),
    tags=("Account",),
)
async def get_account(ctx: Context[None, None]) -> Account:
    """The organisation's mailboxes by status and their limit (`SHIPMAIL_MAX_MAILBOXES_PER_ORG`;
    creating one more answers 403 `over_limit`), the storage its mailboxes use (as the mail server
    counts it; null while the mail server cannot answer) and their quotas, and its alias count."""
    return await service.summary(ctx.services, ctx.session, ctx.organization_id)
