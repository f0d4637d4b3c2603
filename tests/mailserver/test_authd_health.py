"""The login checker's health request and probes, and its process model (no Cyrus needed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipmail.mailserver import authd
from shipmail.mailserver.authd import HEALTH_ADDRESS, HEALTH_SERVICE, HEALTHY, UNHEALTHY, AuthDaemon
from tests.mailserver.test_authd import HASHER, ask, login


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="shipmail-authd-health-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


class Lookups:
    """A lookup that records what it is asked and can be made to fail."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.fail = False

    def __call__(self, address: str) -> str | None:
        self.asked.append(address)
        if self.fail:
            raise ConnectionError("database is down")
        return None


@pytest.fixture
def lookups() -> Lookups:
    return Lookups()


@pytest.fixture
def daemon(socket_dir: Path, lookups: Lookups) -> Iterator[AuthDaemon]:
    server = AuthDaemon(socket_dir / "authd.sock", lookups, hasher=HASHER, read_timeout=0.5)
    server.start()
    yield server
    server.stop()


def test_health_request_is_answered_without_a_password_check(daemon: AuthDaemon, lookups: Lookups) -> None:
    assert ask(daemon.socket_path, authd.encode_request("", "", HEALTH_SERVICE, "")) == HEALTHY == "NO healthy"
    assert lookups.asked[-1] == HEALTH_ADDRESS
    assert authd.probe(daemon.socket_path, 2.0) is True
    assert asyncio.run(authd.probe_async(daemon.socket_path, 2.0)) is True


def test_health_request_reports_a_failing_lookup(daemon: AuthDaemon, lookups: Lookups) -> None:
    lookups.fail = True
    assert ask(daemon.socket_path, authd.encode_request("", "", HEALTH_SERVICE, "")) == UNHEALTHY
    assert authd.probe(daemon.socket_path, 2.0) is False
    assert asyncio.run(authd.probe_async(daemon.socket_path, 2.0)) is False


def test_a_login_with_the_health_service_name_is_an_ordinary_login(daemon: AuthDaemon, lookups: Lookups) -> None:
    # Only an empty login and password make a health request; never an OK either way.
    reply = login(daemon.socket_path, "first.last", "pw", "example.com", service=HEALTH_SERVICE)
    assert reply == "NO authentication failure"
    assert lookups.asked[-1] == "first.last@example.com"


def test_probe_fails_when_nobody_answers(socket_dir: Path) -> None:
    path = socket_dir / "silent.sock"
    assert authd.probe(path, 0.5) is False  # no socket file at all
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen(8)  # connections queue, nobody reads or answers (a stopped daemon)
        began = time.monotonic()
        assert authd.probe(path, 0.5) is False
        assert asyncio.run(authd.probe_async(path, 0.5)) is False
        assert time.monotonic() - began < 5  # bounded by the timeouts, never a hang
    assert authd.probe(path, 0.5) is False  # a stale socket file: connection refused


SERVE_SCRIPT = """
import sys
from pathlib import Path
from shipmail.mailserver.authd import AuthDaemon, run_until_signalled
run_until_signalled(AuthDaemon(Path(sys.argv[1]), {}.get, group=None))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_until_signalled_serves_then_stops_cleanly(socket_dir: Path, sig: signal.Signals) -> None:
    path = socket_dir / "authd.sock"
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT, str(path)])
    try:
        deadline = time.monotonic() + 30
        while not authd.probe(path, 1.0):
            assert proc.poll() is None, f"the login checker exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the login checker did not answer within 30 s"
            time.sleep(0.05)
        os.kill(proc.pid, sig)
        assert proc.wait(15) == 0
        assert not path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
