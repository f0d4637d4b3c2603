"""Every background job kind and its handler (:mod:`shipmail.jobs`), as ``routes.py`` lists the
operations: each feature with background work exposes ``handlers: dict[str, Handler]`` (kinds
named ``<feature>.<what>``) and is added here."""

from __future__ import annotations

from shipmail.domains import tasks as domains
from shipmail.jobs import Handler

HANDLERS: dict[str, Handler] = {
    **domains.handlers,
}
