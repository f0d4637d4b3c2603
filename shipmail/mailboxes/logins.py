"""Password lookups for the mail server's login checker (:mod:`shipmail.mailserver.authd`).

Runs in authd's worker threads, so it uses a synchronous engine of its own. Only argon2id hashes
are read; a suspended mailbox, one scheduled for deletion, and one being created or deleted
(``mailboxes.state``), has no usable password.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlmodel import col, select

from shipmail.db.engine import create_sync_engine
from shipmail.mailboxes.models import Mailbox, MailboxState


def can_log_in() -> tuple[sa.ColumnElement[bool], ...]:
    """The conditions on a ``mailboxes`` row under which any of its credentials may log in: not
    suspended, no deletion scheduled, state ``active``. The one definition every login lookup
    uses (the mailbox password here, app passwords in :mod:`shipmail.app_passwords.logins`)."""
    return (
        col(Mailbox.suspended_at).is_(None),
        col(Mailbox.deletion_scheduled_at).is_(None),
        col(Mailbox.state) == MailboxState.ACTIVE.value,
    )


def password_lookup(database_url: str) -> tuple[Callable[[str], str | None], Callable[[], None]]:
    """``(lookup, close)``: ``lookup(address)`` gives the argon2id hash of a mailbox that may log
    in (:func:`can_log_in`), else None."""
    engine = create_sync_engine(database_url)
    stmt = select(Mailbox.password_hash).where(col(Mailbox.address) == sa.bindparam("address"), *can_log_in())

    def lookup(address: str) -> str | None:
        with engine.connect() as conn:
            value = conn.execute(stmt, {"address": address.lower()}).scalar_one_or_none()
        return str(value) if value is not None else None

    return lookup, engine.dispose
