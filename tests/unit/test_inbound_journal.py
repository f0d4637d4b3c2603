"""The inbound gateway's journal (shipmail.inbound.journal) and its mover
(shipmail.inbound.gateway.Recorder), on SQLite and PostgreSQL service databases (real databases,
no mocks): a delivery is durable in the journal when ``record`` returns, and becomes exactly the
``inbound.record`` job the worker runs, in delivery order, even after a crash in between."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shipmail.db.engine import Database
from shipmail.inbound.gateway import Recorder
from shipmail.inbound.journal import Entry, Journal, journal_path
from shipmail.inbound.service import RECORD_JOB, record_ordering
from tests.dbfixtures import BACKENDS, migrated_database


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    with migrated_database(request.param, tmp_path) as url:
        database = Database(url)
        try:
            yield database
        finally:
            await database.dispose()


async def _jobs(db: Database) -> list[tuple[str, str | None, dict[str, Any]]]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT kind, ordering_key, payload FROM jobs ORDER BY id"))).all()
    return [(r[0], r[1], json.loads(r[2]) if isinstance(r[2], str) else r[2]) for r in rows]


async def test_a_record_is_journalled_when_it_returns_and_then_moved_to_one_job(db: Database, tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path))
    recorder = Recorder(db, journal)  # the mover is not started: nothing moves on its own
    try:
        await recorder.record("mbx_1", "dlv_1", "m1@example.org", "250 2.1.5 Ok SESSIONID=<x>")
        (entry,) = await journal.oldest()
        assert (entry.mailbox_id, entry.delivery_id, entry.message_id) == ("mbx_1", "dlv_1", "m1@example.org")
        assert await _jobs(db) == []
        assert await recorder.move() == 1
        assert await journal.oldest() == []
        ((kind, ordering, payload),) = await _jobs(db)
        assert kind == RECORD_JOB and ordering == record_ordering("mbx_1")
        assert payload == {
            "mailbox_id": "mbx_1",
            "delivery_id": "dlv_1",
            "message_id": "m1@example.org",
            "reply": "250 2.1.5 Ok SESSIONID=<x>",
            "at": entry.at,
        }
        assert await recorder.move() == 0
    finally:
        await journal.close()
    assert stat.S_IMODE(journal_path(tmp_path).stat().st_mode) == 0o600


async def test_records_finishing_together_share_commits_and_keep_their_order(db: Database, tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path))
    recorder = Recorder(db, journal)
    try:
        await asyncio.gather(*(recorder.record(f"mbx_{i % 3}", f"dlv_{i}", None, "250 ok") for i in range(30)))
        assert [e.delivery_id for e in await journal.oldest()] == [f"dlv_{i}" for i in range(30)]
        recorder.MOVE_BATCH = 7  # several transactions
        assert await recorder.move() == 30
        jobs = await _jobs(db)
        assert [p["delivery_id"] for _, _, p in jobs] == [f"dlv_{i}" for i in range(30)]
        assert all(ordering == record_ordering(p["mailbox_id"]) for _, ordering, p in jobs)
    finally:
        await journal.close()


async def test_what_a_killed_gateway_left_is_moved_when_the_next_one_starts(db: Database, tmp_path: Path) -> None:
    """Entries committed before a crash (journal written, never moved) become jobs as soon as
    the next gateway's mover starts, with no new delivery to wake it."""
    left = Journal(journal_path(tmp_path))
    await left.append([Entry("mbx_a", f"dlv_{i}", None, "250 ok", "2026-01-01T00:00:00+00:00") for i in range(3)])
    await left.close()
    journal = Journal(journal_path(tmp_path))
    recorder = Recorder(db, journal)
    recorder.start()
    try:
        for _ in range(500):
            if len(await _jobs(db)) == 3:
                break
            await asyncio.sleep(0.01)
        assert [p["delivery_id"] for _, _, p in await _jobs(db)] == ["dlv_0", "dlv_1", "dlv_2"]
        assert await journal.oldest() == []
        await recorder.record("mbx_a", "dlv_3", None, "250 ok")  # and what comes next, at once
        for _ in range(500):
            if len(await _jobs(db)) == 4:
                break
            await asyncio.sleep(0.01)
        assert [p["delivery_id"] for _, _, p in await _jobs(db)][-1] == "dlv_3"
    finally:
        await recorder.stop()
        await journal.close()


async def test_a_database_that_fails_leaves_the_entries_in_the_journal(db: Database, tmp_path: Path) -> None:
    """The service database failing after the 250 loses nothing: the entries stay journalled and
    the next pass moves them."""
    journal = Journal(journal_path(tmp_path))
    broken = Database(f"sqlite:///{tmp_path / 'not-migrated.sqlite'}")  # no jobs table
    try:
        await Recorder(broken, journal).record("mbx_1", "dlv_1", None, "250 ok")
        with pytest.raises(sa.exc.OperationalError):
            await Recorder(broken, journal).move()
        assert [e.delivery_id for e in await journal.oldest()] == ["dlv_1"]
        assert await Recorder(db, journal).move() == 1
        assert [p["delivery_id"] for _, _, p in await _jobs(db)] == ["dlv_1"]
    finally:
        await broken.dispose()
        await journal.close()


async def test_a_journal_that_cannot_be_written_fails_the_record(tmp_path: Path) -> None:
    """No journal, no 250: the gateway answers 451 when ``record`` raises."""
    journal = Journal(tmp_path / "missing-dir" / "journal.sqlite")
    recorder = Recorder(Database(f"sqlite:///{tmp_path / 'x.sqlite'}"), journal)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await recorder.record("mbx_1", "dlv_1", None, "250 ok")
    finally:
        await recorder.db.dispose()
        await journal.close()
