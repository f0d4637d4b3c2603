"""Wake-ups across processes (:mod:`shipmail.db.wake`): a datagram published after a commit reaches
the listeners of every process using the same database, and only them; a rolled back transaction
publishes nothing; a socket whose process died is removed."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipmail.db import wake
from shipmail.db.engine import Database
from tests.dbfixtures import POSTGRES_URL

pytestmark = pytest.mark.asyncio


async def _received(listener: wake.Listener, topic: str, action: object, timeout: float = 5.0) -> bool:
    got = asyncio.Event()
    unsubscribe = listener.subscribe(topic, got.set)
    try:
        if callable(action):
            result = action()
            if asyncio.iscoroutine(result):
                await result
        try:
            await asyncio.wait_for(got.wait(), timeout)
        except TimeoutError:
            return False
        return True
    finally:
        unsubscribe()


async def test_a_publish_from_another_process_wakes_the_listener(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    listener = await wake.listen(url)
    try:
        assert listener.active and listener.path is not None
        assert listener.path.parent == wake.wake_dir(url)
        assert (listener.path.parent.stat().st_mode & 0o777) == 0o700

        def other_process() -> None:
            code = f"from shipmail.db import wake; wake.publish({url!r}, 'jobs')"
            subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

        assert await _received(listener, wake.JOBS, lambda: asyncio.to_thread(other_process))
        # Another database's publish does not reach it; the driver name does not matter.
        other = f"sqlite:///{tmp_path / 'b.db'}"
        assert not await _received(listener, wake.JOBS, lambda: wake.publish(other, "jobs"), timeout=0.3)
        assert await _received(
            listener, wake.EVENTS, lambda: wake.publish(url.replace("sqlite", "sqlite+aiosqlite"), "events")
        )
    finally:
        wake.close_all()
    assert not listener.active
    assert not wake.wake_dir(url).exists()  # nothing left behind


async def test_only_a_commit_publishes_and_dead_sockets_are_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    db = Database(url)
    listener = await wake.listen(url)
    dead = wake.wake_dir(url) / "1-dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(dead))  # bound, then closed: its process "died"
    try:

        async def rolled_back() -> None:
            async with db.session() as session:
                wake.after_commit(session, wake.EVENTS)
                await session.rollback()

        assert not await _received(listener, wake.EVENTS, rolled_back, timeout=0.3)

        async def committed() -> None:
            async with db.session() as session:
                wake.after_commit(session, wake.EVENTS)
                wake.after_commit(session, wake.EVENTS)  # once per transaction
                await session.commit()

        assert await _received(listener, wake.EVENTS, committed)
        assert not dead.exists()
    finally:
        wake.close_all()
        await db.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="SHIPMAIL_TEST_POSTGRES_URL is not set")
async def test_postgresql_notifications_wake_a_listener_the_datagrams_cannot_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another machine on the same PostgreSQL database has no path to this machine's sockets: with
    the datagrams switched off, the committed ``NOTIFY`` alone wakes the listener; a rolled back
    transaction wakes nobody; a killed ``LISTEN`` connection is re-established."""
    url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    monkeypatch.setattr(wake, "publish", lambda _url, _topic: None)  # only PostgreSQL carries it
    db = Database(url)
    listener = await wake.listen(url)
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        assert listener.active

        async def commit(topic: str, *, roll_back: bool = False) -> None:
            async with db.session() as session:
                await (await session.connection()).execute(sa.text("SELECT 1"))
                wake.after_commit(session, topic)
                if roll_back:
                    await session.rollback()
                else:
                    await session.commit()

        assert not await _received(listener, wake.JOBS, lambda: commit(wake.JOBS, roll_back=True), timeout=0.5)
        assert await _received(listener, wake.JOBS, lambda: commit(wake.JOBS))
        assert await _received(listener, wake.EVENTS, lambda: commit(wake.EVENTS))

        # The database drops the LISTEN connection: the listener connects again and hears again.
        async with db.session() as session:
            killed = await (await session.connection()).execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query = :q AND pid <> pg_backend_pid()"
                ),
                {"q": f"LISTEN {wake.CHANNEL}"},
            )
            assert any(row[0] for row in killed)
        for _ in range(50):  # the loss is noticed first (listening cleared), then healed
            if not listener.listening.is_set():
                break
            await asyncio.sleep(0.1)
        await asyncio.wait_for(listener.listening.wait(), 10)
        assert await _received(listener, wake.EVENTS, lambda: commit(wake.EVENTS))
    finally:
        wake.close_all()
        await db.dispose()
    assert not listener.active
