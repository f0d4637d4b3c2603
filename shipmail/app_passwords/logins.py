"""Credential lookups for the mail server's login checker (:mod:`shipmail.mailserver.authd`): the
mailbox password and every active app password of a usable mailbox.

Runs in authd's worker threads, so it uses a synchronous engine of its own (two ``SELECT``s on
one connection per login). A mailbox that is suspended, or being created or deleted, has no
credential at all; an app password counts while it is not revoked and ``expires_at`` is ahead,
read at each login, so a revocation or an expiry takes effect on the next login. A login with an
app password sets its ``last_used_at``, at most once every :data:`LAST_USED_RESOLUTION` (one
conditional ``UPDATE``, so concurrent logins do not write more often either).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import col

from shipmail import utc
from shipmail.app_passwords.models import AppPassword
from shipmail.db.engine import create_sync_engine
from shipmail.mailboxes.logins import can_log_in
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.authd import Credential

#: ``last_used_at`` is written at most this often per app password.
LAST_USED_RESOLUTION = timedelta(minutes=1)

CredentialLookup = Callable[[str], Sequence[Credential] | None]


def credential_lookup(database_url: str) -> tuple[CredentialLookup, Callable[[], None]]:
    """``(lookup, close)``: ``lookup(address)`` gives the credentials of a usable mailbox (its
    password first, then its active app passwords, oldest first), else None."""
    engine = create_sync_engine(database_url)
    mailbox_stmt = sa.select(col(Mailbox.id), col(Mailbox.password_hash)).where(
        col(Mailbox.address) == sa.bindparam("address"), *can_log_in()
    )
    app_stmt = (
        sa.select(col(AppPassword.id), col(AppPassword.password_hash))
        .where(
            col(AppPassword.mailbox_id) == sa.bindparam("mailbox_id"),
            col(AppPassword.revoked_at).is_(None),
            col(AppPassword.expires_at) > sa.bindparam("now"),
        )
        .order_by(col(AppPassword.created_at), col(AppPassword.id))
    )
    touch_stmt = (
        sa.update(AppPassword)
        .where(
            col(AppPassword.id) == sa.bindparam("app_password_id"),
            sa.or_(col(AppPassword.last_used_at).is_(None), col(AppPassword.last_used_at) < sa.bindparam("before")),
        )
        .values(last_used_at=sa.bindparam("now"))
    )

    def touch(app_password_id: str) -> Callable[[], None]:
        def used() -> None:
            now = utc.now()
            with engine.begin() as conn:
                conn.execute(
                    touch_stmt, {"app_password_id": app_password_id, "before": now - LAST_USED_RESOLUTION, "now": now}
                )

        return used

    def lookup(address: str) -> list[Credential] | None:
        with engine.connect() as conn:
            row = conn.execute(mailbox_stmt, {"address": address.lower()}).first()
            if row is None:
                return None
            mailbox_id, password_hash = row
            apps = conn.execute(app_stmt, {"mailbox_id": mailbox_id, "now": utc.now()}).all()
        return [Credential(str(password_hash))] + [Credential(str(h), touch(str(i))) for i, h in apps]

    return lookup, engine.dispose
