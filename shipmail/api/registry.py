"""Every implemented operation, in the order of the OpenAPI document."""

from __future__ import annotations

from shipmail.api import attachments, domains, folders, identities, inbox, mailbox_settings, mailboxes, rules, sandbox, status
from shipmail.api.routing import Operation

OPERATIONS: list[Operation] = [
    *status.operations,
    *domains.operations,
    *mailboxes.operations,
    *mailbox_settings.operations,
    *folders.operations,
    *rules.operations,
    *identities.operations,
    *inbox.operations,
    *attachments.operations,
    *sandbox.operations,
]
