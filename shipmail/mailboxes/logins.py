"""The one condition under which a mailbox's credentials may log in, for the mail server's login
checker (:mod:`shipmail.mailserver.authd`).

The lookup itself is :func:`shipmail.app_passwords.logins.credential_lookup` (the mailbox password
and its app passwords): a suspended mailbox, one scheduled for deletion, and one being created or
deleted (``mailboxes.state``) has no usable credential.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col

from shipmail.mailboxes.models import Mailbox, MailboxState


def can_log_in() -> tuple[sa.ColumnElement[bool], ...]:
    """The conditions on a ``mailboxes`` row under which any of its credentials may log in: not
    suspended, no deletion scheduled, state ``active``. The one definition every login lookup
    uses (:func:`shipmail.app_passwords.logins.credential_lookup`)."""
    return (
        col(Mailbox.suspended_at).is_(None),
        col(Mailbox.deletion_scheduled_at).is_(None),
        col(Mailbox.state) == MailboxState.ACTIVE.value,
    )
