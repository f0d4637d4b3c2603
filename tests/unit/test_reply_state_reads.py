"""The reply state's database reads (the mailbox's aliases, the user's thread states) through the
PointReader (``repository.point_rows``, a fresh session) give exactly what the ORM reads (a
session that has begun a transaction), for any number of thread ids (issue 10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipmail.aliases.models import MailboxAlias
from shipmail.config import Settings
from shipmail.db.engine import PointReader
from shipmail.inbox import service
from shipmail.inbox.models import InboxThreadState
from shipmail.mailboxes.models import Mailbox
from tests.unit.conftest import run_db

pytestmark = pytest.mark.usefixtures("db_backend")

COLUMNS = ("mailbox_id", "thread_id", "user_state", "basis_email_id", "updates", "set_at", "updated_at")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every many-row point read made."""
    made: list[int] = []
    original = PointReader.all

    async def all_rows(self: PointReader, statement: Any, params: dict[str, Any]) -> Any:
        rows = await original(self, statement, params)
        made.append(len(rows))
        return rows

    monkeypatch.setattr(PointReader, "all", all_rows)
    return made


def seed(settings: Settings, mbx: dict[str, Any]) -> list[str]:
    """600 thread states and two aliases for ``mbx``; the thread ids."""
    at = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)

    async def go(s: Any) -> list[str]:
        row = await s.get(Mailbox, mbx["id"])
        ids = [f"T{i:05d}" for i in range(600)]
        for i, thread_id in enumerate(ids):
            s.add(
                InboxThreadState(
                    mailbox_id=row.id,
                    thread_id=thread_id,
                    user_state=(None, "resolved", "needs_reply")[i % 3],
                    basis_email_id=f"M{i}" if i % 2 else None,
                    updates=i,
                    set_at=at + timedelta(seconds=i) if i % 3 else None,
                    updated_at=at,
                )
            )
        domain = row.address.split("@")[1]
        for local in ("sales", "help"):
            s.add(
                MailboxAlias(
                    id=f"als_{local}",
                    organization_id=row.organization_id,
                    mailbox_id=row.id,
                    local_part=local,
                    address=f"{local}@{domain}",
                    created_at=at,
                )
            )
        await s.commit()
        return ids

    return list(run_db(settings, go))


def read(settings: Settings, mbx: dict[str, Any], wanted: list[str], *, orm: bool) -> tuple[list[str], dict[str, Any]]:
    """The mailbox's own addresses and the states of ``wanted``: ``orm``, in a session that read
    the mailbox row itself (a transaction begun), else in an untouched one."""

    async def go(s: Any) -> tuple[list[str], dict[str, Any]]:
        row = await s.get(Mailbox, mbx["id"]) if orm else await _row(settings, mbx)
        own = await service.own_addresses(s, row)
        states = await service.stored_states(s, row, wanted)
        return sorted(own), {k: tuple(getattr(v, c) for c in COLUMNS) for k, v in states.items()}

    return run_db(settings, go)  # type: ignore[no-any-return]


async def _row(settings: Settings, mbx: dict[str, Any]) -> Mailbox:
    """The mailbox row, read in a session of its own (the reading session stays untouched)."""
    from shipmail.db.engine import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            row = await s.get(Mailbox, mbx["id"])
            assert row is not None
            return row
    finally:
        await db.dispose()


@pytest.mark.parametrize("count", [0, 1, 2, 8, 9, 65, 513, 600])
def test_point_reads_equal_the_orm(settings: Settings, mbx: dict[str, Any], reads: list[int], count: int) -> None:
    ids = seed(settings, mbx)
    wanted = [*ids[:count], "Tunknown"]
    reads.clear()
    fast = read(settings, mbx, wanted, orm=False)
    assert reads  # through the point reader (no ORM session involved)
    reads.clear()
    slow = read(settings, mbx, wanted, orm=True)
    assert reads == []  # a session in a transaction reads through the ORM
    assert fast == slow
    own, states = fast
    assert len(own) == 3 and mbx["address"] in own
    assert sorted(states) == sorted(ids[:count])
    if count > 2:
        assert states[ids[2]][5] == datetime(2026, 12, 6, 12, 0, 2, tzinfo=UTC)
