"""Serialised writes and the SQLite set-up (issue 8): every connection in WAL mode with a busy
timeout, database files 0600, ``begin_write`` taking SQLite's write lock before the row is read,
the lock held while a settings change installs its script but not while a mailbox is provisioned
or deprovisioned, and a lock timeout answering 503 with ``Retry-After``."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.db import engine as db_engine
from shipmail.db import repository
from shipmail.db.engine import Database, begin_write, create_sync_engine, is_lock_timeout, sqlite_path
from shipmail.db.migrate import upgrade
from shipmail.mailboxes.models import Mailbox
from tests.fakes import FakeJmap, FakeMailServer
from tests.unit.conftest import auth, make_key, verify_domain

PRAGMAS = ("journal_mode", "busy_timeout", "foreign_keys")
INSERT_ORG = "INSERT INTO organizations (id, name, created_at) VALUES ('o', 'o', '2026-01-01 00:00:00')"


def db_file(settings: Settings) -> Path:
    path = sqlite_path(settings.database_url)
    assert path is not None
    return path


def write_lock_free(path: Path) -> bool:
    """Whether another connection could take the database's write lock right now (no waiting)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc), exc
        return False
    else:
        conn.execute("ROLLBACK")
        return True
    finally:
        conn.close()


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


# ----------------------------------------------------------------------------- connections and files


async def test_every_sqlite_connection_has_wal_a_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    """Both engine factories (the API's async one; the sync one of migrations, the CLI, the API
    key lookup and the login checker) set up every new connection the same way."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    pragmas = PRAGMAS
    expected = {"journal_mode": "wal", "busy_timeout": db_engine.SQLITE_BUSY_TIMEOUT_MS, "foreign_keys": 1}
    sync = create_sync_engine(url)
    try:
        with sync.connect() as conn:
            assert {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in pragmas} == expected
    finally:
        sync.dispose()
    db = Database(url)
    try:
        async with db.engine.connect() as aconn:
            assert {p: (await aconn.exec_driver_sql(f"PRAGMA {p}")).scalar() for p in pragmas} == expected
    finally:
        await db.dispose()


def test_the_key_lookup_and_the_login_checker_set_up_their_connections(
    settings: Settings, mail: FakeMailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The synchronous engines of the API key lookup (:func:`shipmail.app.create_app`) and of the
    login checker (:func:`shipmail.app_passwords.logins.credential_lookup`) get the same set-up."""
    from shipmail.app_passwords.logins import credential_lookup

    seen: list[tuple[object, ...]] = []
    original = db_engine._sqlite_pragmas

    def recording(dbapi_conn: Any, record: Any) -> None:
        original(dbapi_conn, record)
        if isinstance(dbapi_conn, sqlite3.Connection):  # the sync engines only
            cur = dbapi_conn.cursor()
            seen.append(tuple(cur.execute(f"PRAGMA {p}").fetchone()[0] for p in PRAGMAS))
            cur.close()

    monkeypatch.setattr(db_engine, "_sqlite_pragmas", recording)
    lookup, close = credential_lookup(settings.database_url)
    try:
        assert lookup("nobody@example.com") is None
    finally:
        close()
    assert seen == [("wal", db_engine.SQLITE_BUSY_TIMEOUT_MS, 1)]
    seen.clear()
    app = create_app(settings, mail_server=mail, jmap_transport=httpx.MockTransport(FakeJmap()))
    with TestClient(app) as client:
        assert client.get("/v1/domains", headers=auth(make_key(settings))).status_code == 200
    assert seen == [("wal", db_engine.SQLITE_BUSY_TIMEOUT_MS, 1)]


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_database_files_are_created_private(tmp_path: Path, loose_umask: None) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade(url)  # the first connection ever: the migrations
    db = Database(url)
    try:
        async with db.session() as session:
            await (await session.connection()).exec_driver_sql(INSERT_ORG)
            await session.commit()
            names = sorted(p.name for p in tmp_path.iterdir())
            assert names == ["new.db", "new.db-shm", "new.db-wal"]  # WAL files exist while in use
            assert {name: mode(tmp_path / name) for name in names} == dict.fromkeys(names, "0o600")
    finally:
        await db.dispose()


def test_loose_database_files_left_by_an_older_version_are_made_private(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url)
    for name in ("old.db", "old.db-wal", "old.db-shm"):
        (tmp_path / name).touch()
        os.chmod(tmp_path / name, 0o644)
    create_sync_engine(url).dispose()
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
        "old.db": "0o600",
        "old.db-wal": "0o600",
        "old.db-shm": "0o600",
    }


def test_sqlite_path_only_for_files() -> None:
    assert sqlite_path("sqlite:////var/lib/x/shipmail.db") == Path("/var/lib/x/shipmail.db")
    assert sqlite_path("sqlite+aiosqlite:///rel.db") == Path("rel.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u@h/db") is None


# ----------------------------------------------------------------------------- begin_write


async def test_begin_write_takes_the_write_lock_before_anything_is_written(settings: Settings) -> None:
    path = db_file(settings)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await (await session.connection()).exec_driver_sql("SELECT 1")  # no lock (sqlite3 legacy mode)
            assert write_lock_free(path)
            await begin_write(session)
            assert not write_lock_free(path)
            await begin_write(session)  # idempotent
            await session.commit()
        assert write_lock_free(path)
        async with db.session() as session:
            await (await session.connection()).exec_driver_sql(INSERT_ORG)
            await begin_write(session)  # the driver's own transaction already holds the lock
            assert not write_lock_free(path)
            await session.rollback()
        assert write_lock_free(path)
    finally:
        await db.dispose()


async def test_for_update_reads_the_committed_row_even_if_loaded_before(
    db_backend: str, settings: Settings, client: TestClient, mbx: dict[str, Any]
) -> None:
    """A row the session read before the write transaction began is read again, not taken from
    the session's identity map."""
    db = Database(settings.database_url)
    try:
        async with db.session() as first, db.session() as other:
            row = await first.get(Mailbox, mbx["id"])
            assert row is not None and row.spam_filter_threshold == 5
            org = row.organization_id
            changed = await other.get(Mailbox, mbx["id"])
            assert changed is not None
            changed.spam_filter_threshold = 9
            other.add(changed)
            await other.commit()
            locked = await repository.get_owned(first, Mailbox, org, mbx["id"], for_update=True)
            assert locked is row and locked.spam_filter_threshold == 9
            await first.rollback()
    finally:
        await db.dispose()


def test_is_lock_timeout() -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert is_lock_timeout(sa.exc.OperationalError("BEGIN IMMEDIATE", {}, busy))
    assert is_lock_timeout(sa.exc.OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked")))
    assert is_lock_timeout(sa.exc.TimeoutError("QueuePool limit reached"))
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = sqlite3.SQLITE_READONLY
    assert not is_lock_timeout(sa.exc.OperationalError("UPDATE", {}, readonly))
    assert not is_lock_timeout(sa.exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_lock_timeout(ValueError("database is locked"))


# ----------------------------------------------------------------------------- what the API holds


class ProbingJmap(FakeJmap):
    """:class:`FakeJmap` that calls ``probe()`` whenever a Sieve script is set (installed)."""

    def __init__(self, probe: Callable[[], None]) -> None:
        super().__init__()
        self.probe = probe

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and b"SieveScript/set" in request.content:
            self.probe()
        return super().__call__(request)


@pytest.fixture
def lock_seen(settings: Settings) -> list[tuple[str, bool]]:
    """(what, whether the write lock was free) at every probe."""
    return []


@pytest.fixture
def probed(
    settings: Settings, mail: FakeMailServer, lock_seen: list[tuple[str, bool]]
) -> Iterator[tuple[TestClient, str]]:
    """An app whose mail server records, at provision/deprovision/set_suspended and at every
    script install, whether the database's write lock was free; and a ``*`` key."""
    path = db_file(settings)

    def probe(what: str) -> None:
        lock_seen.append((what, write_lock_free(path)))

    for name in ("provision", "deprovision", "set_suspended"):
        original = getattr(mail, name)

        async def probed_call(*args: Any, _original: Any = original, _name: str = name) -> Any:
            probe(_name)
            return await _original(*args)

        setattr(mail, name, probed_call)
    # No background job worker: its own short claim transactions would be seen by the probes,
    # which are about what the request path holds.
    app = create_app(
        settings,
        mail_server=mail,
        jmap_transport=httpx.MockTransport(ProbingJmap(lambda: probe("install"))),
        job_handlers={},
    )
    with TestClient(app) as client:
        yield client, make_key(settings)


def new_mailbox(client: TestClient, settings: Settings, key: str, domain: str = "example.com") -> dict[str, Any]:
    dom = client.post("/v1/domains", json={"name": domain}, headers=auth(key))
    assert dom.status_code == 201, dom.text
    verify_domain(settings, domain)
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": dom.json()["id"], "address": "hello", "password": "CorrectHorse9"},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_mail_server_calls_of_create_and_delete_hold_no_database_lock(
    probed: tuple[TestClient, str], settings: Settings, lock_seen: list[tuple[str, bool]]
) -> None:
    client, key = probed
    mbx = new_mailbox(client, settings, key)
    assert lock_seen == [("provision", True), ("install", True)]
    lock_seen.clear()
    assert client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 204
    assert lock_seen == [("deprovision", True)]
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 404


def test_settings_changes_and_suspension_hold_the_lock_while_the_mail_server_changes(
    probed: tuple[TestClient, str], settings: Settings, lock_seen: list[tuple[str, bool]]
) -> None:
    client, key = probed
    base = f"/v1/mailboxes/{new_mailbox(client, settings, key)['id']}"
    lock_seen.clear()
    assert client.patch(f"{base}/spam-filter", json={"threshold": 7}, headers=auth(key)).status_code == 200
    assert (
        client.patch(f"{base}/auto-reply", json={"enabled": True, "body": "away"}, headers=auth(key)).status_code == 200
    )
    assert client.put(f"{base}/rules", json={"rules": []}, headers=auth(key)).status_code == 200
    assert client.post(f"{base}/suspend", headers=auth(key)).status_code == 200
    assert lock_seen == [("install", False), ("install", False), ("install", False), ("set_suspended", False)]


def test_a_domain_cannot_be_deleted_while_a_mailbox_on_it_is_provisioned(
    probed: tuple[TestClient, str], settings: Settings, mail: FakeMailServer
) -> None:
    """The create's intent (a ``provisioning`` row) is committed before the mail server is asked,
    so a domain delete that comes in meanwhile counts that mailbox (409) and the create
    completes."""
    client, key = probed
    dom = client.post("/v1/domains", json={"name": "busy.example"}, headers=auth(key)).json()
    verify_domain(settings, "busy.example")
    provision = mail.provision
    seen: list[int] = []

    async def provision_then_delete_domain(address: str) -> None:
        await provision(address)
        conn = sqlite3.connect(db_file(settings), timeout=5)
        try:
            (count,) = conn.execute("SELECT count(*) FROM mailboxes WHERE domain_id = ?", (dom["id"],)).fetchone()
        finally:
            conn.close()
        seen.append(count)

    mail.provision = provision_then_delete_domain  # type: ignore[method-assign]
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "early", "password": "CorrectHorse9"},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    assert seen == [1]  # the intent row was there while the mail server worked
    r = client.delete(f"/v1/domains/{dom['id']}", headers=auth(key))
    assert r.status_code == 409, r.text


# ----------------------------------------------------------------------------- lock timeout: 503


@pytest.fixture
def quick_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 50)


def test_a_lock_not_had_in_time_answers_503_with_retry_after(
    quick_busy_timeout: None, settings: Settings, mail: FakeMailServer
) -> None:
    app = create_app(settings, mail_server=mail, jmap_transport=httpx.MockTransport(FakeJmap()))
    with TestClient(app) as client:
        key = make_key(settings)
        mbx = new_mailbox(client, settings, key)
        other = client.post("/v1/domains", json={"name": "other.example"}, headers=auth(key)).json()
        verify_domain(settings, "other.example")
        holder = sqlite3.connect(db_file(settings), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        try:
            answers = [
                client.patch(f"/v1/mailboxes/{mbx['id']}/spam-filter", json={"threshold": 3}, headers=auth(key)),
                client.post("/v1/domains", json={"name": "busy.example"}, headers=auth(key)),
                client.post(
                    "/v1/mailboxes",
                    json={"domain_id": other["id"], "address": "busy", "password": "CorrectHorse9"},
                    headers=auth(key),
                ),
            ]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == str(db_engine.LOCK_RETRY_AFTER)
            assert r.json()["error"]["type"] == "internal_error"
            assert "retry" in r.json()["error"]["message"]
        assert mail.accounts == {mbx["address"]}  # the create's account was removed again
        r = client.patch(f"/v1/mailboxes/{mbx['id']}/spam-filter", json={"threshold": 3}, headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.json()["spam_filter_threshold"] == 3


def test_lock_timeout_of_a_delete_keeps_the_row_and_a_retry_completes(
    quick_busy_timeout: None, settings: Settings, mail: FakeMailServer
) -> None:
    """The account is gone before the row's write transaction; the retried DELETE finds the
    account gone (counts as deprovisioned) and deletes the row."""
    app = create_app(settings, mail_server=mail, jmap_transport=httpx.MockTransport(FakeJmap()))
    with TestClient(app) as client:
        key = make_key(settings)
        mbx = new_mailbox(client, settings, key)
        holder = sqlite3.connect(db_file(settings), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            r = client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert r.status_code == 503, r.text
        assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 200
        assert client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 204
        assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 404
        assert mail.accounts == set()
