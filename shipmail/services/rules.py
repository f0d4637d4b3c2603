"""Inbox rules (``GET/PUT /v1/mailboxes/{id}/rules``). To be written."""

from __future__ import annotations

from shipmail.db.models import Mailbox
from shipmail.sieve.model import Rule


def plan_rules(row: Mailbox) -> tuple[Rule, ...]:
    """The stored rules of ``row`` as compiler input (enabled or not; the compiler skips disabled)."""
    return ()
