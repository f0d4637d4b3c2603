"""The health of the real Cyrus instance as ``GET /v1/status`` and ``serve`` see it, and the clean-up
after its master is killed (orphaned children, stale pid file), on instances of their own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from shipmail.mailserver import procs
from shipmail.mailserver.base import MailHealth
from shipmail.mailserver.cyrus import CyrusInstance
from shipmail.mailserver.cyrus_server import CyrusMailServer

from .conftest import CyrusFixture, free_port

pytestmark = pytest.mark.integration


async def test_health_of_the_running_instance(cyrus: CyrusFixture) -> None:
    # The fixture's login checker answers the health request too.
    assert await cyrus.server.health() == MailHealth(jmap=True, imap=True, lmtp=True, login_checker=True)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (backlog) but never says a word: a hung server."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
async def test_health_of_an_absent_or_hung_server_is_all_down_and_bounded(
    kind: str, silent_port: int, cyrus: CyrusFixture
) -> None:
    port = silent_port if kind == "silent" else free_port()
    silent_socket = cyrus.root / "silent-authd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(silent_socket))
    listener.listen(8)
    server = CyrusMailServer(
        host="127.0.0.1",
        imap_port=port,
        jmap_port=port,
        lmtp_port=port,
        admin_user="admin",
        admin_password="x",
        jwt_secret=os.urandom(32),
        timeout=2.0,
        authd_socket=silent_socket if kind == "silent" else cyrus.root / "no-such.sock",
    )
    try:
        health = await asyncio.wait_for(server.health(), 10)  # never a hang
        assert health == MailHealth(jmap=False, imap=False, lmtp=False, login_checker=False)
    finally:
        await server.aclose()
        listener.close()
        silent_socket.unlink()


def test_stop_after_a_killed_master_ends_the_orphans_and_start_works_again(cyrus: CyrusFixture) -> None:
    instance = CyrusInstance(
        cyrus.root / "orphans",
        jmap_port=free_port(),
        lmtp_port=free_port(),
        imap_port=free_port(),
        outbox_dir=cyrus.root / "outbox-orphans",
    )
    instance.prepare()
    instance.start()
    try:
        assert instance.probe("imap") is None and instance.probe("lmtp") is None
        master = instance.master_pid()
        assert master is not None
        os.kill(master, signal.SIGKILL)
        assert procs.wait_gone([master], 5) == []
        orphans = instance.processes()
        assert orphans, "a killed master leaves its children running"
        assert not instance.is_running() and instance.layout.pid_file.exists()
        began = time.monotonic()
        instance.stop()
        assert instance.processes() == [] and not instance.layout.pid_file.exists()
        assert time.monotonic() - began < 10  # SIGTERM, then SIGKILL after 3 s: no 10 s wait per orphan
        instance.start()  # the ports the orphans held are free again
        assert instance.probe("jmap") is None and instance.probe("imap") is None and instance.probe("lmtp") is None
    finally:
        instance.stop()
    assert instance.processes() == []
