"""Plain tenant reads of one row (``repository.get_owned`` in a fresh session of
``Database.session``) go through the database's PointReader instead of the ORM: the object must
behave exactly as if the session had loaded it (issue 10)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from shipmail.config import Settings
from shipmail.db import repository
from shipmail.db.engine import READER, Database, PointReader
from shipmail.mailboxes.models import Mailbox
from tests.unit.conftest import run_db

#: SQLite (the read on the event loop) and, with SHIPMAIL_TEST_POSTGRES_URL, PostgreSQL (async engine).
pytestmark = pytest.mark.usefixtures("db_backend")


def org_of(settings: Settings, mailbox_id: str) -> str:
    async def read(s: Any) -> str:
        row = await s.get(Mailbox, mailbox_id)
        return str(row.organization_id)

    return str(run_db(settings, read))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The parameters of every point read made."""
    made: list[dict[str, Any]] = []
    original = PointReader.one

    async def one(self: PointReader, statement: Any, params: dict[str, Any]) -> Any:
        made.append(params)
        return await original(self, statement, params)

    monkeypatch.setattr(PointReader, "one", one)
    return made


def test_a_point_read_gives_a_persistent_object_whose_changes_the_session_commits(
    settings: Settings, mbx: dict[str, Any], reads: list[dict[str, Any]]
) -> None:
    org = org_of(settings, mbx["id"])

    async def change(s: Any) -> tuple[bool, str]:
        assert isinstance(s.info[READER], PointReader)
        row = await repository.get_owned(s, Mailbox, org, mbx["id"])
        assert row is not None
        row.display_name = "Changed through a point read"
        await s.commit()
        return row in s, row.address

    attached, address = run_db(settings, change)
    assert attached and address == mbx["address"]
    assert reads == [{"id": mbx["id"], "org": org}]

    async def read(s: Any) -> str | None:
        return (await s.get(Mailbox, mbx["id"])).display_name  # type: ignore[no-any-return]

    assert run_db(settings, read) == "Changed through a point read"


def test_another_organisation_reads_nothing(
    settings: Settings, mbx: dict[str, Any], reads: list[dict[str, Any]]
) -> None:
    async def read(s: Any) -> Mailbox | None:
        return await repository.get_owned(s, Mailbox, "org_someone_else", mbx["id"])

    assert run_db(settings, read) is None
    assert len(reads) == 1


def test_a_column_left_out_raises_instead_of_loading(
    settings: Settings, mbx: dict[str, Any], reads: list[dict[str, Any]]
) -> None:
    org = org_of(settings, mbx["id"])

    async def read(s: Any) -> None:
        row = await repository.get_owned(s, Mailbox, org, mbx["id"], without=("rules",))
        assert row is not None and row.address == mbx["address"]
        with pytest.raises(sa.exc.SQLAlchemyError):
            _ = row.rules

    run_db(settings, read)
    assert len(reads) == 1


def test_a_session_that_has_written_reads_through_the_orm(
    settings: Settings, mbx: dict[str, Any], reads: list[dict[str, Any]]
) -> None:
    """Its own uncommitted changes are visible only on its own connection."""
    org = org_of(settings, mbx["id"])

    async def read(s: Any) -> str | None:
        await (await s.connection()).execute(
            sa.update(Mailbox).where(sa.column("id") == mbx["id"]).values(display_name="uncommitted")
        )
        row = await repository.get_owned(s, Mailbox, org, mbx["id"])
        assert row is not None
        name = row.display_name
        await s.rollback()
        return name

    assert run_db(settings, read) == "uncommitted"
    assert reads == []


async def test_for_update_never_uses_the_point_reader(
    settings: Settings, mbx: dict[str, Any], reads: list[dict[str, Any]]
) -> None:
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            org = (await s.get(Mailbox, mbx["id"])).organization_id  # type: ignore[union-attr]
        async with db.session() as s:
            row = await repository.get_owned(s, Mailbox, org, mbx["id"], for_update=True)
            assert row is not None
            await s.rollback()
    finally:
        await db.dispose()
    assert reads == []


def test_the_api_reads_the_mailbox_of_the_path_through_the_point_reader(
    client: Any, key: str, mbx: dict[str, Any], reads: list[dict[str, Any]]
) -> None:
    r = client.get(f"/v1/mailboxes/{mbx['id']}", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json() == mbx | {k: r.json()[k] for k in r.json() if k not in mbx}
    assert [p["id"] for p in reads] == [mbx["id"]]


def test_a_point_read_that_meets_a_lock_reads_through_the_session(
    settings: Settings, mbx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database is locked" on the event loop: the ORM reads it instead (waiting off the loop)."""
    org = org_of(settings, mbx["id"])
    tried: list[str] = []

    async def locked(self: PointReader, statement: Any, params: dict[str, Any]) -> Any:
        tried.append(params["id"])
        if is_sqlite:
            raise sqlite3.OperationalError("database is locked")
        raise sa.exc.OperationalError("SELECT", {}, Exception("lock_not_available"))

    is_sqlite = settings.database_url.startswith("sqlite")
    monkeypatch.setattr(PointReader, "one", locked)

    async def read(s: Any) -> str:
        row = await repository.get_owned(s, Mailbox, org, mbx["id"])
        assert row is not None
        return row.address

    if is_sqlite:
        assert run_db(settings, read) == mbx["address"]
    else:  # not a lock timeout on PostgreSQL's terms: raised as it is
        with pytest.raises(sa.exc.OperationalError):
            run_db(settings, read)
    assert tried == [mbx["id"]]
