"""Auto-reply and spam threshold (``PATCH /v1/mailboxes/{id}/auto-reply|spam-filter``). To be written."""

from __future__ import annotations

from shipmail.db.models import Mailbox
from shipmail.sieve.model import AutoReply, SpamFilter


def plan_auto_reply(row: Mailbox) -> AutoReply | None:
    """The stored auto-reply of ``row`` as compiler input (None when disabled)."""
    return None


def plan_spam(row: Mailbox) -> SpamFilter | None:
    """The spam threshold of ``row`` as compiler input."""
    return None
