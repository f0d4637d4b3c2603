"""Sandbox: inject an inbound message into a mailbox (``POST /v1/mailboxes/{id}/sandbox/inbound``)."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.inbox.schemas import InboxFullMessage
from shipmail.mailboxes import service as mailboxes
from shipmail.sandbox import service as sandbox
from shipmail.sandbox.schemas import InjectSandboxInboundRequest

operations: list[Operation] = []


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/sandbox/inbound",
    operation_id="injectSandboxInbound",
    summary="Inject a sandbox inbound message",
    scope=Scope.MESSAGES_WRITE,
    tier=Tier.WRITE,
    body=InjectSandboxInboundRequest,
    response=InboxFullMessage,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes", "Messages"),
)
async def inject_sandbox_inbound(ctx: Context[InjectSandboxInboundRequest, None]) -> InboxFullMessage:
    """Build an RFC 5322 message from the body (text/plain, text/html, or multipart/alternative
    when both bodies are given; Date from `received_at`; a Message-ID is generated when absent)
    and deliver it to the mailbox through the mail server's inbound path, so the mailbox's
    delivery rules run as for mail from the internet. Nothing is sent to the `from`, `to` or `cc`
    addresses. Answers 201 with the delivered message as stored (ids `eml_...`, `thr_...`;
    `in_reply_to`/`references` thread it with earlier messages).

    422: no text nor html, CR/LF/NUL or other control characters in any header value, an invalid
    address or message id, a header other than List-Unsubscribe, List-Unsubscribe-Post (RFC 8058)
    and non-reserved X-*. 409: a message with this `message_id` is already in the mailbox, or the
    mailbox is suspended (`POST /mailboxes/{id}/resume` first). 404:
    not a mailbox of this organisation. 503: the mail server is unavailable (Retry-After)."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    return await sandbox.inject(ctx.services, row, ctx.body)
