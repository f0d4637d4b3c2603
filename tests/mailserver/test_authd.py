"""The saslauthd-protocol daemon over a real Unix socket (no Cyrus needed)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import argon2
import pytest

from shipmail.mailserver.authd import MAX_REQUEST_BYTES, AuthDaemon, AuthDaemonError, encode_request

# Cheap argon2id parameters: the protocol is under test, not the hash's cost.
HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
PASSWORD = "Correct-Horse-7"
ADDRESS = "first.last@example.com"


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def ask(path: Path, request: bytes, timeout: float = 5.0) -> str:
    """Send one raw request and return the reply text."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(request)
        (length,) = struct.unpack(">H", _recv_exact(sock, 2))
        return _recv_exact(sock, length).decode()


def login(path: Path, login_name: str, password: str | bytes, realm: str, service: str = "imap") -> str:
    return ask(path, encode_request(login_name, password, service, realm))


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="shipmail-authd-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def hashes() -> dict[str, str]:
    return {ADDRESS: HASHER.hash(PASSWORD)}


@pytest.fixture
def daemon(socket_dir: Path, hashes: dict[str, str]) -> Iterator[AuthDaemon]:
    authd = AuthDaemon(socket_dir / "authd.sock", hashes.get, hasher=HASHER, read_timeout=0.5)
    authd.start()
    yield authd
    authd.stop()


def test_right_password_is_ok(daemon: AuthDaemon) -> None:
    assert login(daemon.socket_path, "first.last", PASSWORD, "example.com") == "OK"


def test_address_is_lower_cased(daemon: AuthDaemon) -> None:
    assert login(daemon.socket_path, "First.Last", PASSWORD, "Example.COM") == "OK"


def test_wrong_password_is_no(daemon: AuthDaemon) -> None:
    assert login(daemon.socket_path, "first.last", "wrong", "example.com").startswith("NO")
    assert login(daemon.socket_path, "first.last", "", "example.com").startswith("NO")


def test_unknown_user_is_no(daemon: AuthDaemon) -> None:
    assert login(daemon.socket_path, "nobody", PASSWORD, "example.com").startswith("NO")


def test_empty_realm_is_no(daemon: AuthDaemon, hashes: dict[str, str]) -> None:
    looked_up: list[str] = []

    def lookup(address: str) -> str | None:
        looked_up.append(address)
        return hashes.get(address)

    daemon.lookup = lookup
    # A login without a domain, as the failed admin login arrives.
    assert login(daemon.socket_path, "admin", PASSWORD, "").startswith("NO")
    assert login(daemon.socket_path, "first.last", PASSWORD, "").startswith("NO")
    assert login(daemon.socket_path, "", PASSWORD, "example.com").startswith("NO")
    assert looked_up == []


def test_oversized_request_is_no_and_daemon_survives(daemon: AuthDaemon) -> None:
    huge = "x" * MAX_REQUEST_BYTES
    assert login(daemon.socket_path, "first.last", huge, "example.com").startswith("NO")
    # A 300-byte, non-ASCII password of a real user still works afterwards.
    long_password = "pässwörd-" * 30
    daemon.lookup = {ADDRESS: HASHER.hash(long_password)}.get
    assert login(daemon.socket_path, "first.last", long_password, "example.com") == "OK"


def test_truncated_and_slow_requests_do_not_block(daemon: AuthDaemon) -> None:
    # Half a request, then silence: the per-connection read timeout ends it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.connect(str(daemon.socket_path))
        slow.sendall(struct.pack(">H", 10) + b"first")
        started = time.monotonic()
        assert login(daemon.socket_path, "first.last", PASSWORD, "example.com") == "OK"
        assert time.monotonic() - started < 0.5
    # A client that closes mid-request.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as closer:
        closer.connect(str(daemon.socket_path))
        closer.sendall(struct.pack(">H", 10))
    assert login(daemon.socket_path, "first.last", PASSWORD, "example.com") == "OK"


def test_concurrent_logins(daemon: AuthDaemon) -> None:
    users = {f"user{i}@example.com": f"password-{i}" for i in range(16)}
    table = {address: HASHER.hash(password) for address, password in users.items()}
    daemon.lookup = table.get
    results: dict[tuple[str, bool], str] = {}
    lock = threading.Lock()

    def worker(address: str, password: str) -> None:
        local, _, domain = address.partition("@")
        good = login(daemon.socket_path, local, password, domain)
        bad = login(daemon.socket_path, local, password + "x", domain)
        with lock:
            results[(address, True)] = good
            results[(address, False)] = bad

    threads = [threading.Thread(target=worker, args=item) for item in users.items() for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 2 * len(users)
    for (_address, right), reply in results.items():
        assert (reply == "OK") is right


def test_lookup_raising_is_no_and_daemon_keeps_running(daemon: AuthDaemon, hashes: dict[str, str]) -> None:
    def broken(address: str) -> str | None:
        raise RuntimeError("database is down")

    daemon.lookup = broken
    assert login(daemon.socket_path, "first.last", PASSWORD, "example.com").startswith("NO")
    daemon.lookup = hashes.get
    assert login(daemon.socket_path, "first.last", PASSWORD, "example.com") == "OK"


def test_invalid_stored_hash_is_no(daemon: AuthDaemon) -> None:
    daemon.lookup = {ADDRESS: "not-an-argon2-hash"}.get
    assert login(daemon.socket_path, "first.last", PASSWORD, "example.com").startswith("NO")


def test_password_never_logged(daemon: AuthDaemon, hashes: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sup3r-Secret-Do-Not-Log"
    table = {ADDRESS: HASHER.hash(secret)}

    def raising(address: str) -> str | None:
        raise ValueError("lookup exploded")

    lookups: list[Callable[[str], str | None]] = [table.get, raising, {ADDRESS: "garbage"}.get]
    for lookup in lookups:
        daemon.lookup = lookup
        for password in (secret, secret + "x"):
            for login_name, realm in (("first.last", "example.com"), ("admin", ""), ("nobody", "example.com")):
                login(daemon.socket_path, login_name, password, realm)
    login(daemon.socket_path, "first.last", secret * 1000, "example.com")
    assert caplog.records, "the daemon should log outcomes"
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in str(record.args) and secret not in record.getMessage()


def test_stale_socket_is_replaced_and_live_one_refused(socket_dir: Path, hashes: dict[str, str]) -> None:
    path = socket_dir / "authd.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    with AuthDaemon(path, hashes.get, hasher=HASHER) as first:
        assert login(path, "first.last", PASSWORD, "example.com") == "OK"
        with pytest.raises(AuthDaemonError):
            AuthDaemon(path, hashes.get, hasher=HASHER).start()
        assert oct(path.stat().st_mode & 0o777) == oct(0o660)
        assert first.socket_path == path
    assert not path.exists()


def test_stop_joins_threads(socket_dir: Path, hashes: dict[str, str]) -> None:
    before = {t.name for t in threading.enumerate()}
    authd = AuthDaemon(socket_dir / "authd.sock", hashes.get, hasher=HASHER)
    authd.start()
    assert login(authd.socket_path, "first.last", PASSWORD, "example.com") == "OK"
    authd.stop()
    left = {t.name for t in threading.enumerate()} - before
    assert not [name for name in left if name.startswith("shipmail-authd")]
    assert not os.path.exists(authd.socket_path)


def test_a_credential_list_logs_in_with_any_of_them(socket_dir: Path) -> None:
    """The lookup may answer every password of the account (issue 14: the mailbox password and its
    app passwords): any of them logs in, the matching one's ``used`` runs, a failing ``used``
    does not refuse the login, an empty list is an unknown account."""
    from shipmail.mailserver.authd import Credential

    used: list[str] = []

    def boom() -> None:
        raise RuntimeError("database gone")

    accounts = {
        ADDRESS: [
            Credential(HASHER.hash(PASSWORD)),
            Credential(HASHER.hash("app-one"), lambda: used.append("one")),
            Credential(HASHER.hash("app-two"), boom),
        ],
        "empty@example.com": [],
    }
    with AuthDaemon(socket_dir / "authd.sock", accounts.get, hasher=HASHER) as authd:
        local, realm = ADDRESS.split("@")
        assert login(authd.socket_path, local, PASSWORD, realm) == "OK"
        assert used == []
        assert login(authd.socket_path, local, "app-one", realm) == "OK"
        assert used == ["one"]
        assert login(authd.socket_path, local, "app-two", realm) == "OK"
        assert login(authd.socket_path, local, "app-three", realm).startswith("NO")
        assert login(authd.socket_path, "empty", PASSWORD, "example.com").startswith("NO")
        assert used == ["one"]
