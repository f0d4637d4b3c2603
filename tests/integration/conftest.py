"""Fixtures for tests against a real, private Cyrus instance (root and the Cyrus packages needed).

* ``cyrus`` (session): a prepared and started :class:`CyrusInstance` in a fresh ``mkdtemp``
  directory under /tmp (mode 0755: user cyrus must traverse it, which pytest's ``tmp_path`` base
  does not allow) on free ports, an :class:`AuthDaemon` on its socket, and a ready
  :class:`CyrusMailServer`. Teardown stops everything, checks that no process of the instance is
  left and removes the directory.
* ``authd_registry``: the object the AuthDaemon asks; by default a dict of address -> argon2id
  hash (``.hashes``, filled with ``.set_password``). Replace ``.lookup`` with any
  :data:`~shipmail.mailserver.authd.Lookup` to check logins against something else (e.g. the app's database);
  it is restored after each test.

Every test under tests/integration gets the ``integration`` marker. :func:`require` skips a test
whose precondition (root, the SDK virtualenv) is missing, and fails it instead under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import argon2
import pytest
import pytest_asyncio

from shipmail.mailserver.authd import AuthDaemon, Lookup
from shipmail.mailserver.cyrus import CyrusInstance
from shipmail.mailserver.cyrus_server import CyrusMailServer

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from shipmail.config import Settings

#: Cheap argon2id parameters for hashes the tests make (verification reads them from the hash).
TEST_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def under_ci() -> bool:
    """True when ``CI`` says so (``true``, ``1`` or ``yes``; CI services set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip the calling test (or fixture) unless ``condition`` holds; under CI fail it instead,
    because CI must run the whole suite: a missing SDK virtualenv or root is a broken CI machine."""
    if condition:
        return
    if under_ci():
        pytest.fail(f"{reason} (CI is set: this fails rather than skips)", pytrace=False)
    pytest.skip(reason)


def require_root(what: str) -> None:
    require(os.geteuid() == 0, f"{what} needs root (Cyrus's master drops to user cyrus)")


def imap_login(host: str, port: int, user: str, password: str) -> imaplib.IMAP4:
    """An IMAP session logged in as ``user`` (raises ``imaplib.IMAP4.error`` when refused)."""
    conn = imaplib.IMAP4(host, port, timeout=15)
    try:
        conn.login(user, password)
    except imaplib.IMAP4.error:
        conn.logout()
        raise
    return conn


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AuthRegistry:
    """What the test AuthDaemon consults: ``lookup(address)`` -> argon2id hash or None."""

    hashes: dict[str, str] = field(default_factory=dict)
    lookup: Lookup = field(init=False)

    def __post_init__(self) -> None:
        self.lookup = self.hashes.get

    def set_password(self, address: str, password: str) -> None:
        self.hashes[address] = TEST_HASHER.hash(password)

    def reset(self) -> None:
        self.hashes.clear()
        self.lookup = self.hashes.get


@dataclass
class CyrusFixture:
    """The running test instance and what goes with it."""

    instance: CyrusInstance
    registry: AuthRegistry
    authd: AuthDaemon
    server: CyrusMailServer
    root: Path  # the mkdtemp directory holding the instance and the outbox

    @property
    def outbox(self) -> Path:
        return self.instance.outbox_dir


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cyrus() -> AsyncIterator[CyrusFixture]:
    require_root("the Cyrus integration tests")
    root = Path(tempfile.mkdtemp(prefix="shipmail-cyrus-", dir="/tmp"))
    os.chmod(root, 0o755)
    instance = CyrusInstance(
        root / "cyrus",
        jmap_port=free_port(),
        imap_port=free_port(),  # LMTP: the Unix socket only, as under serve (tests go through the gateway)
        outbox_dir=root / "outbox",
        failed_login_pause=0,  # wrong-password tests answer at once
    )
    registry = AuthRegistry()
    authd = AuthDaemon(instance.authd_socket, lambda address: registry.lookup(address), hasher=TEST_HASHER)
    server: CyrusMailServer | None = None
    try:
        instance.prepare()
        authd.start()
        instance.start()
        server = CyrusMailServer.from_instance(instance, timeout=2.0)
        yield CyrusFixture(instance, registry, authd, server, root)
    finally:
        if server is not None:
            await server.aclose()
        instance.stop()
        authd.stop()
        left = instance.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert left == [], f"Cyrus processes left behind: {left}"


@pytest.fixture
def authd_registry(cyrus: CyrusFixture) -> Iterator[AuthRegistry]:
    cyrus.registry.reset()
    yield cyrus.registry
    cyrus.registry.reset()


@dataclass
class ApiEnv:
    """The API app on a fresh database, wired to the session's Cyrus instance and authd."""

    client: TestClient
    settings: Settings
    cyrus: CyrusFixture
    key: str

    @property
    def outbox(self) -> Path:
        """Where mail for other domains lands (no relay set): what the outgoing queue made of the
        mail Cyrus sent (vacation replies, redirects) and of our sends."""
        return self.settings.outbox_dir

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def new_key(self, org: str = "acme", scopes: list[str] | None = None) -> str:
        from tests.unit.conftest import make_key

        return make_key(self.settings, org=org, scopes=scopes)

    def verified_domain(self, name: str, key: str | None = None) -> dict[str, object]:
        from tests.unit.conftest import verify_domain

        r = self.client.post("/v1/domains", json={"name": name}, headers=self.auth(key))
        assert r.status_code == 201, r.text
        verify_domain(self.settings, name)
        return r.json()  # type: ignore[no-any-return]

    def new_mailbox(self, domain: str, local: str = "hello", key: str | None = None, **body: object) -> dict[str, Any]:
        """A mailbox ``local`` on the new verified domain ``domain`` (a generated password unless
        ``body`` gives ``password``); the created Mailbox object."""
        dom = self.verified_domain(domain, key)
        payload: dict[str, object] = {"domain_id": dom["id"], "address": local, **body}
        if "password" not in payload:
            payload["generate_password"] = True
        r = self.client.post("/v1/mailboxes", json=payload, headers=self.auth(key))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    @property
    def lmtp_port(self) -> int:
        """The inbound gateway's LMTP port (``settings.lmtp_port``), in front of Cyrus."""
        return self.settings.lmtp_port

    def journalled(self) -> list[dict[str, object]]:
        """The deliveries in the inbound gateway's journal (committed before the 250, not yet
        moved into the job queue: :mod:`shipmail.inbound.journal`), oldest first."""
        import sqlite3

        from shipmail.inbound.journal import journal_path

        path = journal_path(self.settings.data_dir)
        if not path.exists():
            return []
        conn = sqlite3.connect(path, timeout=15)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM deliveries ORDER BY id")]
        finally:
            conn.close()

    def moved(self, timeout: float = 15.0) -> None:
        """Wait until the inbound gateway's journal is empty: every delivery it accepted is an
        ``inbound.record`` job. Fails the test after ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while left := len(self.journalled()):
            assert time.monotonic() < deadline, f"{left} inbound deliveries not moved to the job queue in {timeout} s"
            time.sleep(0.01)

    def recorded(self, timeout: float = 15.0) -> None:
        """Wait until every delivery the inbound gateway accepted has been recorded: its durable
        journal entry (committed before the 250) has become an ``inbound.record`` job, which has
        run and made its events. Fails the test after ``timeout`` seconds."""
        import time

        import sqlalchemy as sa

        self.moved(timeout)
        engine = sa.create_engine(self.settings.database_url)
        try:
            deadline = time.monotonic() + timeout
            while True:
                with engine.connect() as conn:
                    left = conn.execute(
                        sa.text("SELECT count(*) FROM jobs WHERE kind = 'inbound.record' AND state = 'queued'")
                    ).scalar_one()
                if left == 0:
                    return
                assert time.monotonic() < deadline, f"{left} inbound deliveries not recorded in {timeout} s"
                time.sleep(0.02)
        finally:
            engine.dispose()

    def lmtp(self, recipient: str, message: bytes, sender: str = "sender@example.org") -> dict[str, object]:
        """Deliver ``message`` over LMTP through the inbound gateway (as an MTA would); returns
        smtplib's refused-recipients dict."""
        import smtplib

        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=15) as lmtp:
            return dict(lmtp.sendmail(sender, [recipient], message))

    def import_email(self, address: str, message: bytes, received_at: datetime) -> str:
        """Store ``message`` (CRLF line ends) in ``address``'s Inbox with the given ``receivedAt``
        (whole seconds, UTC) through JMAP ``Email/import`` (RFC 8621 section 4.8), for tests that
        need mail received at known instants: LMTP delivery always stamps the current second.
        No Sieve script runs. Returns the JMAP email id."""
        import httpx

        access = self.cyrus.server.jmap_access(address)
        headers = {"Authorization": access.authorization}
        upload = access.session_url.rsplit("/jmap/", 1)[0] + f"/jmap/upload/{address}/"
        r = httpx.post(upload, content=message, headers={**headers, "Content-Type": "message/rfc822"}, timeout=10)
        assert r.status_code in (200, 201), r.text
        blob_id = r.json()["blobId"]

        def call(method: str, args: dict[str, Any]) -> dict[str, Any]:
            body = {
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                "methodCalls": [[method, {"accountId": address, **args}, "c"]],
            }
            r = httpx.post(access.session_url, json=body, headers=headers, timeout=10)
            assert r.status_code == 200, r.text
            ((name, result, _),) = r.json()["methodResponses"]
            assert name == method, result
            return result  # type: ignore[no-any-return]

        (inbox,) = call("Mailbox/query", {"filter": {"role": "inbox"}})["ids"]
        stamp = received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        done = call(
            "Email/import",
            {"emails": {"m": {"blobId": blob_id, "mailboxIds": {inbox: True}, "keywords": {}, "receivedAt": stamp}}},
        )
        assert "m" in (done.get("created") or {}), done
        return str(done["created"]["m"]["id"])


@contextlib.contextmanager
def api_env(cyrus: CyrusFixture, registry: AuthRegistry, tmp_path: Path, **overrides: Any) -> Iterator[ApiEnv]:
    """An :class:`ApiEnv` on a fresh database in ``tmp_path``; ``overrides`` are Settings fields
    (``smtp_relay=...``). Logins to Cyrus are checked against this app's database."""
    from starlette.testclient import TestClient

    from shipmail.app import create_app
    from shipmail.app_passwords.logins import credential_lookup
    from shipmail.config import Settings
    from tests.dbfixtures import migrated_database
    from tests.integration.gateway_thread import GatewayThread
    from tests.unit.conftest import make_key

    with migrated_database("sqlite", tmp_path) as url, GatewayThread(url, cyrus.instance, tmp_path) as gateway:
        inst = cyrus.instance
        settings = Settings.from_env(
            **{
                "data_dir": tmp_path,
                "database_url": url,
                "secret_key": b"integration-secret",
                "jmap_port": inst.jmap_port,
                "lmtp_port": gateway.port,
                "imap_port": inst.imap_port,
                **overrides,
            }
        )
        lookup, close = credential_lookup(url)  # as `shipmail serve-login-checker` composes it
        registry.lookup = lookup
        app = create_app(settings, mail_server_factory=lambda s: gateway_mail_server(inst, s))
        try:
            with TestClient(app) as client:
                yield ApiEnv(client=client, settings=settings, cyrus=cyrus, key=make_key(settings))
        finally:
            close()


@pytest.fixture
def api(cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path) -> Iterator[ApiEnv]:
    """An :class:`ApiEnv` (:func:`api_env` with the default settings)."""
    with api_env(cyrus, authd_registry, tmp_path) as env:
        yield env


def gateway_mail_server(instance: CyrusInstance, settings: Settings) -> CyrusMailServer:
    """The app's mail server on the session's Cyrus, delivering (sandbox) through the inbound
    gateway on ``settings.lmtp_port``, as ``shipmail serve`` does."""
    return CyrusMailServer.from_instance(instance, timeout=2.0, lmtp_port=settings.lmtp_port)
