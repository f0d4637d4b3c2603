"""App passwords of a mailbox: create (secret shown once, argon2id hash stored), list, revoke.

Rules (Shipmail ``createMailboxAppPassword``): at most :data:`~shipmail.app_passwords.schemas.MAX_ACTIVE`
active (not revoked, not expired) per mailbox, counted with the mailbox row locked so concurrent
creates cannot pass the limit together (409 ``conflict`` beyond it); expiry default 90 days, at
most 365 days ahead and in the future (422); ``Idempotency-Key`` refused (422: a replay would
have to keep the plain-text secret); ``allowed_cidrs`` must be empty (422 ``unsupported``: the
login checker is not told the client's address). Logins: :mod:`shipmail.app_passwords.logins`.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.app_passwords.models import AppPassword
from shipmail.app_passwords.schemas import DEFAULT_EXPIRY_DAYS, MAX_ACTIVE, MAX_EXPIRY_DAYS
from shipmail.http.errors import Conflict, NotFound, ValidationFailed
from shipmail.ids import new_id
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.passwords import hash_password_async

#: The secret's alphabet (Crockford base32, lower case: no i, l, o, u) and shape: five groups of
#: four, 100 random bits, easy to type into a phone's mail settings.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_GROUPS, _GROUP_LENGTH = 5, 4


def generate_secret() -> str:
    """A new app-password secret, e.g. ``k3v9-x2mq-7tbd-a0re-hw5c``."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LENGTH)) for _ in range(_GROUPS))


def _problem(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": field, "code": code, "message": message}])


def check_request(expires_at: datetime | None, allowed_cidrs: list[str]) -> datetime:
    """The expiry to store (422 for a refused request; see the module doc). ``Idempotency-Key``
    is refused by the operation's declaration (``Idempotency.REFUSED``) before this runs."""
    if allowed_cidrs:
        raise _problem(
            "allowed_cidrs",
            "unsupported",
            "allowed_cidrs is not supported: the mail server does not pass the client's address to the "
            "login checker. Send an empty list or leave it out.",
        )
    now = utc.now()
    if expires_at is None:
        return now + timedelta(days=DEFAULT_EXPIRY_DAYS)
    if expires_at.tzinfo is None:
        raise _problem("expires_at", "timezone_required", "expires_at needs a time zone (e.g. Z).")
    expires_at = utc.as_utc(expires_at)
    if expires_at <= now:
        raise _problem("expires_at", "in_the_past", "expires_at must be in the future.")
    if expires_at > now + timedelta(days=MAX_EXPIRY_DAYS):
        raise _problem("expires_at", "too_far", f"expires_at must be at most {MAX_EXPIRY_DAYS} days from now.")
    return expires_at


def _active(mailbox_id: str, now: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        col(AppPassword.mailbox_id) == mailbox_id,
        col(AppPassword.revoked_at).is_(None),
        col(AppPassword.expires_at) > now,
    ]


async def create(
    session: AsyncSession,
    organization_id: str,
    mailbox_id: str,
    name: str,
    expires_at: datetime,
) -> tuple[AppPassword, str]:
    """A new app password of the mailbox, committed: ``(row, secret)``. 404/409 as
    :func:`shipmail.mailboxes.service.get`; 409 when the mailbox has :data:`MAX_ACTIVE` active ones."""
    secret = generate_secret()
    password_hash = await hash_password_async(secret)  # before the lock: ~0.1 s of CPU
    mailbox = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    now = utc.now()
    count = (
        await session.exec(select(sa.func.count()).select_from(AppPassword).where(*_active(mailbox.id, now)))
    ).one()
    if count >= MAX_ACTIVE:
        raise Conflict(f"Mailbox {mailbox.id!r} already has {MAX_ACTIVE} active app passwords; revoke one first.")
    row = AppPassword(
        id=new_id("appwd"),
        mailbox_id=mailbox.id,
        name=name,
        password_hash=password_hash,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    await session.commit()
    return row, secret


async def list_all(session: AsyncSession, organization_id: str, mailbox_id: str) -> list[AppPassword]:
    """Every app password of the mailbox (revoked and expired ones too), oldest first."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id)
    stmt = (
        select(AppPassword)
        .where(col(AppPassword.mailbox_id) == mailbox.id)
        .order_by(col(AppPassword.created_at), col(AppPassword.id))
    )
    return list((await session.exec(stmt)).all())


async def revoke(session: AsyncSession, organization_id: str, mailbox_id: str, app_password_id: str) -> None:
    """Revoke one app password (idempotent); the next login with it is refused. 404 for an id that
    is not one of this mailbox's."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    row = (
        await session.exec(
            select(AppPassword).where(col(AppPassword.id) == app_password_id, col(AppPassword.mailbox_id) == mailbox.id)
        )
    ).first()
    if row is None:
        raise NotFound(f"No app password with id {app_password_id!r}.")
    if row.revoked_at is None:
        row.revoked_at = utc.now()
        session.add(row)
    await session.commit()
