"""App passwords: Shipmail ``/v1/mailboxes/{id}/app-passwords`` (list, create, revoke). Wire
models: :mod:`shipmail.app_passwords.schemas`; rules: :mod:`shipmail.app_passwords.service`."""

from __future__ import annotations

from shipmail.app_passwords import service
from shipmail.app_passwords.schemas import (
    CreatedMailboxAppPassword,
    CreateMailboxAppPasswordRequest,
    MailboxAppPassword,
    MailboxAppPasswordList,
)
from shipmail.auth.scopes import Scope
from shipmail.http.idempotency import Idempotency
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation

operations: list[Operation] = []


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/app-passwords",
    operation_id="listMailboxAppPasswords",
    summary="List mailbox app passwords",
    scope=Scope.MAILBOX_CREDENTIALS_READ,
    tier=Tier.READ,
    response=MailboxAppPasswordList,
    errors=(401, 403, 404, 409, 429),
    tags=("Mailboxes",),
)
async def list_app_passwords(ctx: Context[None, None]) -> MailboxAppPasswordList:
    """Every app password of the mailbox, oldest first, revoked and expired ones included
    (metadata only: secrets are never returned). 404 for an unknown mailbox or another
    organisation's; 409 while it is being created or deleted."""
    rows = await service.list_all(ctx.session, ctx.organization_id, ctx.path["id"])
    return MailboxAppPasswordList(data=[MailboxAppPassword.of(r) for r in rows])


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/app-passwords",
    operation_id="createMailboxAppPassword",
    summary="Create a mailbox app password",
    scope=Scope.MAILBOX_CREDENTIALS_WRITE,
    tier=Tier.WRITE,
    body=CreateMailboxAppPasswordRequest,
    response=CreatedMailboxAppPassword,
    status_code=201,
    idempotency=Idempotency.REFUSED,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def create_app_password(ctx: Context[CreateMailboxAppPasswordRequest, None]) -> CreatedMailboxAppPassword:
    """Create a revocable IMAP and JMAP credential for a mail client: the mailbox address with
    this secret logs in wherever the mailbox password does, until it is revoked or expires
    (checked at every login). The secret is in this response only; the service keeps an argon2id
    hash. At most five active app passwords per mailbox (409 beyond). ``expires_at`` defaults to
    90 days from now and may be at most 365 days ahead (422 otherwise). ``Idempotency-Key`` is
    refused (422): replaying this response would need the secret to be kept. ``allowed_cidrs``
    must be empty (422 ``unsupported``). A suspended mailbox refuses every login, app passwords
    included."""
    b = ctx.body
    expires_at = service.check_request(b.expires_at, b.allowed_cidrs)
    row, secret = await service.create(ctx.session, ctx.organization_id, ctx.path["id"], b.name, expires_at)
    return CreatedMailboxAppPassword(**MailboxAppPassword.of(row).model_dump(), secret=secret)


@operation(
    operations,
    "DELETE",
    "/mailboxes/{id}/app-passwords/{app_password_id}",
    operation_id="revokeMailboxAppPassword",
    summary="Revoke a mailbox app password",
    scope=Scope.MAILBOX_CREDENTIALS_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 429),
    tags=("Mailboxes",),
)
async def revoke_app_password(ctx: Context[None, None]) -> None:
    """Revoke one app password for good (revoking it again answers 204 too). The next login
    with it is refused; IMAP sessions already open stay open until they end. 404 for an id that
    is not one of this mailbox's."""
    await service.revoke(ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["app_password_id"])
