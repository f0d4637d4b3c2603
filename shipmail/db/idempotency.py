"""The ``idempotency_keys`` table: one row per (API key, ``Idempotency-Key``) in use, and the
store operations of :mod:`shipmail.http.idempotency` (claim, complete, release, purge).

A row is claimed (``state="pending"``) in a transaction of its own BEFORE the operation runs, so
of two concurrent requests with the same key exactly one inserts it (the primary key decides, on
SQLite and PostgreSQL alike); the other sees the pending row and waits for it. When the operation
has answered, the row becomes ``state="done"`` with the response (status, the headers worth
replaying, the body bytes) until ``expires_at`` (24 hours after the claim).

Nothing secret is kept in clear: the ``Idempotency-Key`` value is stored as its SHA-256
(``key_hash``) and the request as an HMAC-SHA256 under the service's secret key (``fingerprint``:
a request body may hold a password). Responses of mutating operations hold no secret (the
operations that answer a shown-once secret refuse ``Idempotency-Key``).

Expired rows are taken over by the next request with the same key and deleted in bulk by
:func:`purge_expired`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.db.types import timestamp_field

PENDING = "pending"
DONE = "done"


class IdempotencyKey(SQLModel, table=True):
    """One ``Idempotency-Key`` of one API key, and what its first request answered."""

    __tablename__ = "idempotency_keys"

    #: The API key (``api_keys.id``) that sent the request: keys are scoped to it.
    key_id: str = Field(primary_key=True, max_length=64)
    #: SHA-256 (hex) of the ``Idempotency-Key`` header value.
    key_hash: str = Field(primary_key=True, max_length=64)
    #: HMAC-SHA256 (hex) of method, path, query and body of the first request.
    fingerprint: str = Field(max_length=64)
    #: ``pending`` while the first request runs, ``done`` once its response is stored.
    state: str = Field(max_length=16)
    #: The operation that claimed the key (for operators reading the table).
    operation_id: str = Field(max_length=100)
    status_code: int | None = Field(default=None)
    #: The replayed response headers, a JSON list of ``[name, value]`` pairs.
    headers: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    #: The response body; NULL with ``state="done"`` when it could not be kept (streamed or over
    #: the size limit): a replay then answers 409.
    body: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary(), nullable=True))
    #: Random token of the request that holds (or held) the claim: only it completes or releases.
    claim: str = Field(max_length=32)
    claimed_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field(index=True)


@dataclass(frozen=True)
class Stored:
    """A finished request's response as kept: ``body`` None when it was not replayable."""

    status_code: int
    headers: list[tuple[str, str]]
    body: bytes | None


async def insert_claim(
    session: AsyncSession,
    key_id: str,
    key_hash: str,
    fingerprint: str,
    operation_id: str,
    claim: str,
    now: datetime,
    ttl: timedelta,
) -> bool:
    """Insert a pending row and commit; False if (key_id, key_hash) exists already."""
    session.add(
        IdempotencyKey(
            key_id=key_id,
            key_hash=key_hash,
            fingerprint=fingerprint,
            state=PENDING,
            operation_id=operation_id,
            claim=claim,
            claimed_at=now,
            expires_at=now + ttl,
        )
    )
    try:
        await session.commit()
    except sa.exc.IntegrityError:
        await session.rollback()
        return False
    return True


async def take_over(
    session: AsyncSession,
    key_id: str,
    key_hash: str,
    fingerprint: str,
    operation_id: str,
    claim: str,
    now: datetime,
    ttl: timedelta,
    stale_before: datetime,
) -> bool:
    """Claim an existing row that has expired, or is pending since before ``stale_before`` (its
    request died without an answer); one conditional UPDATE, committed. True if this call now
    owns the row."""
    result = await session.exec(
        sa.update(IdempotencyKey)
        .where(
            col(IdempotencyKey.key_id) == key_id,
            col(IdempotencyKey.key_hash) == key_hash,
            sa.or_(
                col(IdempotencyKey.expires_at) <= now,
                sa.and_(col(IdempotencyKey.state) == PENDING, col(IdempotencyKey.claimed_at) <= stale_before),
            ),
        )
        .values(
            fingerprint=fingerprint,
            state=PENDING,
            operation_id=operation_id,
            status_code=None,
            headers=None,
            body=None,
            claim=claim,
            claimed_at=now,
            expires_at=now + ttl,
        )
    )
    await session.commit()
    assert isinstance(result, CursorResult)
    return bool(result.rowcount == 1)


async def read(session: AsyncSession, key_id: str, key_hash: str) -> IdempotencyKey | None:
    """The row of (key_id, key_hash), fresh from the database."""
    stmt = (
        select(IdempotencyKey)
        .where(col(IdempotencyKey.key_id) == key_id, col(IdempotencyKey.key_hash) == key_hash)
        .execution_options(populate_existing=True)
    )
    return (await session.exec(stmt)).first()


def stored(row: IdempotencyKey) -> Stored:
    """The response kept in a ``done`` row."""
    pairs = json.loads(row.headers or "[]")
    return Stored(int(row.status_code or 500), [(str(k), str(v)) for k, v in pairs], row.body)


async def complete(session: AsyncSession, key_id: str, key_hash: str, claim: str, response: Stored) -> None:
    """Store the response of the request holding ``claim`` (a row taken over since is left
    alone) and commit."""
    await session.exec(
        sa.update(IdempotencyKey)
        .where(
            col(IdempotencyKey.key_id) == key_id,
            col(IdempotencyKey.key_hash) == key_hash,
            col(IdempotencyKey.state) == PENDING,
            col(IdempotencyKey.claim) == claim,
        )
        .values(
            state=DONE,
            status_code=response.status_code,
            headers=json.dumps(response.headers),
            body=response.body,
        )
    )
    await session.commit()


async def release(session: AsyncSession, key_id: str, key_hash: str, claim: str) -> None:
    """Delete the pending row of the request holding ``claim`` (the request failed without a
    result worth replaying: a retry runs it again) and commit."""
    await session.exec(
        sa.delete(IdempotencyKey).where(
            col(IdempotencyKey.key_id) == key_id,
            col(IdempotencyKey.key_hash) == key_hash,
            col(IdempotencyKey.state) == PENDING,
            col(IdempotencyKey.claim) == claim,
        )
    )
    await session.commit()


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Delete every row expired at ``now`` and commit; how many were deleted."""
    result = await session.exec(sa.delete(IdempotencyKey).where(col(IdempotencyKey.expires_at) <= now))
    await session.commit()
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
