"""Every background job kind and its handler (:mod:`shipmail.jobs`), as ``routes.py`` lists the
operations: each feature with background work exposes ``handlers: dict[str, Handler]`` (kinds
named ``<feature>.<what>``) and is added here."""

from __future__ import annotations

from shipmail.domains import tasks as domains
from shipmail.exports import tasks as exports
from shipmail.http import idempotency
from shipmail.imports import tasks as imports
from shipmail.inbound import service as inbound
from shipmail.jobs import Handler
from shipmail.mailboxes import lifecycle as mailbox_lifecycle
from shipmail.messages import outbound, scheduled
from shipmail.webhooks import service as webhooks

HANDLERS: dict[str, Handler] = {
    **mailbox_lifecycle.handlers,
    **domains.handlers,
    **exports.handlers,
    **imports.handlers,
    **inbound.handlers,
    **outbound.handlers,
    **scheduled.handlers,
    **webhooks.handlers,
    idempotency.PURGE_JOB: idempotency.purge_job,
}
