"""Every implemented operation, in the order of the OpenAPI document."""

from __future__ import annotations

from shipmail.capabilities import routes as capabilities
from shipmail.domains import routes as domains
from shipmail.folders import routes as folders
from shipmail.http.routing import Operation
from shipmail.identities import routes as identities
from shipmail.inbox import attachment_routes as attachments
from shipmail.inbox import routes as inbox
from shipmail.mailboxes import routes as mailboxes
from shipmail.rules import routes as rules
from shipmail.sandbox import routes as sandbox
from shipmail.settings import routes as mailbox_settings
from shipmail.status import routes as status

OPERATIONS: list[Operation] = [
    *status.operations,
    *capabilities.operations,
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
