"""Closing a request's session (:meth:`shipmail.db.engine.Database.session`): one that took a
connection is flagged :data:`CONNECTED` and closed through the async path (its connection back in
the pool, its transaction rolled back); one that never did is closed synchronously, its objects
detached; a failed block still rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import object_session

from shipmail.db.engine import CONNECTED, Database
from shipmail.keys.models import Organization  # any table model: attached, never written


def _checked_out(db: Database) -> int:
    count: int = getattr(db.engine.pool, "checkedout")()  # noqa: B009 (QueuePool's, not Pool's)
    return count


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    async with database.engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
    yield database
    await database.dispose()


async def test_a_session_without_connection_closes_and_detaches(db: Database) -> None:
    async with db.session() as session:
        session.add(Organization(id="org_1", name="Org"))
        attached = next(iter(session.new))
    assert CONNECTED not in session.info
    assert object_session(attached) is None
    assert _checked_out(db) == 0


async def test_a_session_that_read_is_flagged_and_gives_its_connection_back(db: Database) -> None:
    async with db.session() as session:
        assert (await (await session.connection()).execute(sa.text("SELECT count(*) FROM t"))).scalar() == 0
        assert session.info.get(CONNECTED) is True
        assert _checked_out(db) == 1
    assert _checked_out(db) == 0


async def test_an_uncommitted_write_is_rolled_back_and_a_failure_too(db: Database) -> None:
    async with db.session() as session:
        await (await session.connection()).execute(sa.text("INSERT INTO t VALUES (1)"))
    with pytest.raises(RuntimeError):
        async with db.session() as session:
            await (await session.connection()).execute(sa.text("INSERT INTO t VALUES (2)"))
            raise RuntimeError("boom")
    async with db.session() as session:
        await (await session.connection()).execute(sa.text("INSERT INTO t VALUES (3)"))
        await session.commit()
    async with db.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT n FROM t"))).scalars().all() == [3]
    assert _checked_out(db) == 0
