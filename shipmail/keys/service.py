"""Organisations and API keys (operator CLI) and the key lookup behind Bearer authentication."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.auth.bearer import Principal, forget_key
from shipmail.auth.keys import display_prefix, generate_key, key_digest
from shipmail.auth.scopes import Scope
from shipmail.ids import new_id
from shipmail.keys.models import ApiKey, Organization
from shipmail.mailboxes.models import Mailbox


@dataclass(frozen=True)
class CreatedKey:
    """A freshly created key: ``secret`` is the full key, shown once and never stored."""

    record: ApiKey
    secret: str


async def ensure_organization(session: AsyncSession, name: str) -> Organization:
    """The organisation called ``name``, created if needed (committed)."""
    org = (await session.exec(select(Organization).where(col(Organization.name) == name))).first()
    if org is None:
        org = Organization(id=new_id("org"), name=name, created_at=utc.now())
        session.add(org)
        await session.commit()
    return org


async def create_key(
    session: AsyncSession,
    secret_key: bytes,
    organization_id: str,
    scopes: list[Scope],
    name: str | None = None,
    expires_at: datetime | None = None,
    mailbox_ids: Sequence[str] | None = None,
) -> CreatedKey:
    """A new key for the organisation; only its digest and display prefix are stored.
    ``mailbox_ids``: the only mailboxes it may see (each must be one of the organisation's:
    ``ValueError`` naming the first that is not); None: all of them."""
    if mailbox_ids is not None:
        mailbox_ids = list(dict.fromkeys(mailbox_ids))
        if not mailbox_ids:
            raise ValueError("a key limited to mailboxes needs at least one mailbox")
        owned = set(
            (
                await session.exec(
                    select(Mailbox.id).where(
                        col(Mailbox.organization_id) == organization_id, col(Mailbox.id).in_(mailbox_ids)
                    )
                )
            ).all()
        )
        for mailbox_id in mailbox_ids:
            if mailbox_id not in owned:
                raise ValueError(f"no mailbox {mailbox_id!r} in this organisation")
    key = generate_key()
    record = ApiKey(
        id=new_id("key"),
        organization_id=organization_id,
        name=name,
        prefix=display_prefix(key),
        digest=key_digest(secret_key, key),
        scopes=" ".join(s.value for s in (scopes or [Scope.ALL])),
        created_at=utc.now(),
        expires_at=expires_at,
        mailbox_ids=" ".join(mailbox_ids) if mailbox_ids is not None else None,
    )
    session.add(record)
    await session.commit()
    return CreatedKey(record=record, secret=key)


async def list_keys(session: AsyncSession, organization_id: str) -> list[ApiKey]:
    """The organisation's keys, oldest first."""
    stmt = select(ApiKey).where(col(ApiKey.organization_id) == organization_id).order_by(col(ApiKey.created_at))
    return list((await session.exec(stmt)).all())


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    """Revoke the key ``key_id`` (idempotent); None when there is no such key.

    The key stops working at once in this process (its cached lookups are dropped:
    :func:`shipmail.auth.bearer.forget_key`) and within
    :data:`~shipmail.auth.bearer.KEY_CACHE_SECONDS` in every other (other workers)."""
    record = await session.get(ApiKey, key_id)
    if record is None:
        return None
    if record.revoked_at is None:
        record.revoked_at = utc.now()
        session.add(record)
        await session.commit()
    forget_key(key_id)
    return record


def principal_for(conn: Connection, secret_key: bytes, key: str) -> Principal | None:
    """The Principal of ``key`` looked up by its digest (HMAC-SHA256 under ``secret_key``), or None
    for an unknown key; revoked and expired keys are returned as they are (authlib's validator
    refuses them).

    Runs for every key not in the key cache (:class:`shipmail.auth.bearer.KeyCache`), inside
    authlib's validator in a worker thread, so it is one Core ``SELECT`` of six columns on a
    plain synchronous connection (no ORM session). ``mailbox_ids`` becomes
    :attr:`Principal.mailbox_ids`."""
    digest = key_digest(secret_key, key)
    stmt = sa.select(
        col(ApiKey.id),
        col(ApiKey.organization_id),
        col(ApiKey.scopes),
        col(ApiKey.expires_at),
        col(ApiKey.revoked_at),
        col(ApiKey.mailbox_ids),
    ).where(col(ApiKey.digest) == digest)
    row = conn.execute(stmt).first()
    if row is None:
        return None
    key_id, organization_id, scopes, expires_at, revoked_at, mailbox_ids = row
    return Principal(
        key_id=key_id,
        organization_id=organization_id,
        scopes=tuple(scopes.split()),
        expires_at=expires_at,
        revoked_at=revoked_at,
        mailbox_ids=tuple(mailbox_ids.split()) if mailbox_ids is not None else None,
    )
