"""Every implemented operation, in the order of the OpenAPI document."""

from __future__ import annotations

from shipmail.account import routes as account
from shipmail.aliases import routes as aliases
from shipmail.app_passwords import routes as app_passwords
from shipmail.capabilities import routes as capabilities
from shipmail.domains import routes as domains
from shipmail.events import routes as events
from shipmail.exports import routes as exports
from shipmail.folders import routes as folders
from shipmail.forwarding import routes as forwarding
from shipmail.http.routing import Operation
from shipmail.identities import routes as identities
from shipmail.imports import routes as imports
from shipmail.inbox import attachment_routes as attachments
from shipmail.inbox import routes as inbox
from shipmail.mailboxes import routes as mailboxes
from shipmail.messages import routes as messages
from shipmail.replydrafts import routes as replydrafts
from shipmail.rules import routes as rules
from shipmail.settings import routes as mailbox_settings
from shipmail.status import routes as status
from shipmail.webhooks import routes as webhooks

OPERATIONS: list[Operation] = [
    *status.operations,
    *capabilities.operations,
    *domains.operations,
    *mailboxes.operations,
    *aliases.operations,
    *account.operations,
    *mailbox_settings.operations,
    *app_passwords.operations,
    *forwarding.operations,
    *folders.operations,
    *rules.operations,
    *identities.operations,
    *inbox.operations,
    *attachments.operations,
    *exports.operations,
    *imports.operations,
    *messages.operations,
    *replydrafts.operations,
    *events.operations,
    *webhooks.operations,
]
