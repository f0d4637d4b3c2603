"""Forwarding: Shipmail ``/v1/mailboxes/{id}/forwarding`` (list, add, remove) and the public
confirmation link ``/v1/forwarding-confirmations/{token}`` (GET shows a page with a button, POST
confirms: a link scanner that only fetches the link confirms nothing). Wire models:
:mod:`shipmail.forwarding.schemas`; rules: :mod:`shipmail.forwarding.service`."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

from shipmail.auth.scopes import Scope
from shipmail.forwarding import service
from shipmail.forwarding.schemas import (
    CreateMailboxForwardingRequest,
    ForwardingConfirmation,
    MailboxForwarding,
    MailboxForwardingList,
)
from shipmail.http.errors import NotFound
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation

operations: list[Operation] = []


@operation(
    operations,
    "GET",
    "/mailboxes/{id}/forwarding",
    operation_id="listMailboxForwarding",
    summary="List mailbox forwarding destinations",
    scope=Scope.MAILBOX_FORWARDING_READ,
    tier=Tier.READ,
    response=MailboxForwardingList,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes",),
)
async def list_forwarding(ctx: Context[None, None]) -> MailboxForwardingList:
    """The pending and active forwarding destinations of the mailbox (at most three), oldest
    first. 404 for an unknown mailbox or another organisation's."""
    mailbox, rows = await service.list_all(ctx.session, ctx.organization_id, ctx.path["id"])
    return MailboxForwardingList(mailbox_id=mailbox.id, data=[MailboxForwarding.of(r) for r in rows])


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/forwarding",
    operation_id="createMailboxForwarding",
    summary="Add a mailbox forwarding destination",
    scope=Scope.MAILBOX_FORWARDING_WRITE,
    tier=Tier.WRITE,
    body=CreateMailboxForwardingRequest,
    response=MailboxForwarding,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def create_forwarding(ctx: Context[CreateMailboxForwardingRequest, None]) -> MailboxForwarding:
    """Send a confirmation email to a forwarding destination; it becomes active only after the
    recipient opens the link (valid 24 hours, once) and confirms. Active forwarding sends each
    incoming message to the destination with ``redirect :copy`` in the mailbox's delivery script:
    the mailbox keeps its copy (inbox rules still apply to it), messages classified as spam are
    not forwarded, and a message that already went through this mailbox is not forwarded again
    (header ``X-Shipmail-Forwarded``). Repeating the request for a pending destination sends a
    new link (the previous one stops working); for an active one it answers it unchanged. At most
    three destinations per mailbox; the mailbox's own address is refused (422). 503 when the
    confirmation cannot be sent (nothing is saved)."""
    row = await service.create(
        ctx.services,
        ctx.session,
        ctx.organization_id,
        ctx.path["id"],
        ctx.body.destination,
        str(ctx.request.base_url),
    )
    return MailboxForwarding.of(row)


@operation(
    operations,
    "DELETE",
    "/mailboxes/{id}/forwarding/{forwarding_id}",
    operation_id="deleteMailboxForwarding",
    summary="Remove a mailbox forwarding destination",
    scope=Scope.MAILBOX_FORWARDING_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes",),
)
async def delete_forwarding(ctx: Context[None, None]) -> None:
    """Remove a pending or active destination. An active one is first removed from the mailbox's
    delivery script on the mail server, then the record is deleted (if the mail server cannot be
    reached, 503 and nothing changes). 404 for an id that is not one of this mailbox's."""
    await service.delete(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"], ctx.path["forwarding_id"])


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Confirm forwarding</title>
<meta name="robots" content="noindex"></head>
<body><h1>Confirm forwarding</h1>
<p>Press the button to receive forwarded mail at the address this link was sent to.</p>
<form method="post" action="{action}"><button type="submit">Confirm forwarding</button></form>
</body></html>
"""


@operation(
    operations,
    "GET",
    "/forwarding-confirmations/{token}",
    operation_id="showMailboxForwardingConfirmation",
    summary="Show the forwarding confirmation page",
    scope=None,
    tier=None,
    errors=(404,),
    tags=("Mailboxes",),
    responses={
        "200": {
            "description": "An HTML page whose button POSTs to this same URL.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    },
)
async def show_confirmation(ctx: Context[None, None]) -> HTMLResponse:
    """Public (no API key): the page the confirmation link opens. Changes nothing (mail scanners
    fetch links); its button confirms with a POST. 404 for a malformed token; an unknown or
    expired one is only reported by the POST."""
    token = ctx.path["token"]
    if not 20 <= len(token) <= 128:
        raise NotFound("This confirmation link is unknown, already used or expired.")
    action = html.escape(str(ctx.request.url.path), quote=True)
    return HTMLResponse(_PAGE.format(action=action), headers={"Cache-Control": "no-store"})


@operation(
    operations,
    "POST",
    "/forwarding-confirmations/{token}",
    operation_id="confirmMailboxForwarding",
    summary="Confirm a forwarding destination",
    scope=None,
    tier=None,
    response=ForwardingConfirmation,
    errors=(404, 409, 503),
    tags=("Mailboxes",),
)
async def confirm_forwarding(ctx: Context[None, None]) -> ForwardingConfirmation:
    """Public (the token is the credential: 256 random bits, single use, 24 hours): make the
    destination the link was sent to active; from the next delivery on, the mailbox forwards to
    it. 404 for an unknown, used or expired token; 503 when the mail server cannot be reached
    (the destination stays pending and the link keeps working)."""
    row = await service.confirm(ctx.services, ctx.session, ctx.path["token"])
    return ForwardingConfirmation(destination=row.destination)
