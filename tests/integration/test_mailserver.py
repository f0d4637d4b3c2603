"""CyrusMailServer, CyrusInstance and AuthDaemon against the real private Cyrus instance."""

from __future__ import annotations

import asyncio
import imaplib
import itertools
import os
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipmail.mailserver import cyrus_admin
from shipmail.mailserver.base import (
    SPECIAL_USE_FOLDERS,
    AccountExists,
    AccountNotFound,
    MailServerError,
    MailServerUnavailable,
    MailServerUnreachable,
)
from shipmail.mailserver.cyrus import CyrusInstance, CyrusStartError
from shipmail.mailserver.cyrus_server import CyrusMailServer, make_jwt

from .conftest import AuthRegistry, CyrusFixture, free_port

pytestmark = pytest.mark.integration

_counter = itertools.count()
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"]


def new_address(domain: str = "example.com") -> str:
    """A fresh address with a dot in the local part (unixhierarchysep must handle it)."""
    return f"user.{os.getpid()}.{next(_counter)}@{domain}"


async def jmap(cyrus: CyrusFixture, address: str, calls: list[list[Any]]) -> list[list[Any]]:
    access = cyrus.server.jmap_access(address)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            access.session_url,
            headers={"Authorization": access.authorization},
            json={"using": USING, "methodCalls": calls},
        )
    assert response.status_code == 200, response.text
    result: list[list[Any]] = response.json()["methodResponses"]
    return result


def imap_login(cyrus: CyrusFixture, user: str, password: str) -> imaplib.IMAP4:
    conn = imaplib.IMAP4(cyrus.instance.connect_host, cyrus.instance.imap_port, timeout=10)
    try:
        conn.login(user, password)
    except BaseException:
        conn.shutdown()
        raise
    return conn


def lmtp_deliver(cyrus: CyrusFixture, recipient: str, subject: str) -> None:
    message = (
        f"From: sender@example.net\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.net>\r\n\r\nHello.\r\n"
    )
    with smtplib.LMTP(str(cyrus.instance.lmtp_socket), timeout=10) as lmtp:  # Cyrus itself
        lmtp.sendmail("sender@example.net", [recipient], message)


async def test_ping(cyrus: CyrusFixture) -> None:
    assert await cyrus.server.ping() is True
    assert cyrus.instance.is_running()


async def test_provision_creates_the_special_use_folders(cyrus: CyrusFixture) -> None:
    address = new_address()
    assert await cyrus.server.exists(address) is False
    await cyrus.server.provision(address)
    assert await cyrus.server.exists(address) is True
    ((name, result, _),) = await jmap(cyrus, address, [["Mailbox/get", {"accountId": address}, "0"]])
    assert name == "Mailbox/get"
    roles = {mailbox["role"]: mailbox["name"] for mailbox in result["list"]}
    assert roles == {"inbox": "Inbox", **{role: folder for folder, role, _ in SPECIAL_USE_FOLDERS}}
    assert set(roles) == {"inbox", "drafts", "sent", "trash", "junk", "archive"}


async def test_duplicate_provision_raises_account_exists(cyrus: CyrusFixture) -> None:
    address = new_address()
    await cyrus.server.provision(address)
    with pytest.raises(AccountExists):
        await cyrus.server.provision(address)
    # The failed second attempt did not damage the account.
    ((_, result, _),) = await jmap(cyrus, address, [["Mailbox/get", {"accountId": address}, "0"]])
    assert len(result["list"]) == 6


async def test_logins_go_through_authd(cyrus: CyrusFixture, authd_registry: AuthRegistry) -> None:
    address = new_address()
    await cyrus.server.provision(address)
    authd_registry.set_password(address, "Right-Password-1")
    conn = imap_login(cyrus, address, "Right-Password-1")
    status, data = conn.select("INBOX")
    assert status == "OK" and data == [b"0"]
    conn.logout()
    for user, password in ((address, "wrong"), (address.split("@")[0], "Right-Password-1")):
        started = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match="authentication failure"):
            imap_login(cyrus, user, password)
        assert time.monotonic() - started < 1.5  # failedloginpause: 0
    # JMAP with HTTP Basic goes through authd too (service "HTTP").
    async with httpx.AsyncClient(timeout=10) as client:
        right = await client.get(cyrus.server.session_url, auth=(address, "Right-Password-1"))
        wrong = await client.get(cyrus.server.session_url, auth=(address, "wrong"))
    assert (right.status_code, wrong.status_code) == (200, 401)
    # A swapped lookup (as the app's tests do) is used at the next login.
    seen: list[str] = []

    def lookup(candidate: str) -> str | None:
        seen.append(candidate)
        return authd_registry.hashes.get(candidate)

    authd_registry.lookup = lookup
    imap_login(cyrus, address.upper(), "Right-Password-1").logout()
    assert seen == [address]


async def test_lmtp_delivery_reaches_the_inbox(cyrus: CyrusFixture, authd_registry: AuthRegistry) -> None:
    address = new_address()
    await cyrus.server.provision(address)
    lmtp_deliver(cyrus, address, "first-delivery")
    authd_registry.set_password(address, "pw-for-imap")
    conn = imap_login(cyrus, address, "pw-for-imap")
    try:
        status, data = conn.select("INBOX", readonly=True)
        assert status == "OK" and data == [b"1"]
        status, fetched = conn.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK" and b"first-delivery" in repr(fetched).encode()
    finally:
        conn.logout()


async def test_deprovision_removes_the_account(cyrus: CyrusFixture) -> None:
    address = new_address()
    await cyrus.server.provision(address)
    lmtp_deliver(cyrus, address, "before-delete")
    await cyrus.server.deprovision(address)
    assert await cyrus.server.exists(address) is False
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        lmtp_deliver(cyrus, address, "after-delete")
    assert refused.value.recipients[address][0] == 550
    with pytest.raises(AccountNotFound):
        await cyrus.server.deprovision(address)
    # The address can be provisioned afresh, empty.
    await cyrus.server.provision(address)
    ((_, result, _),) = await jmap(cyrus, address, [["Email/query", {"accountId": address}, "0"]])
    assert result["ids"] == []


async def test_list_accounts_sees_every_domain(cyrus: CyrusFixture) -> None:
    addresses = [new_address("one.example"), new_address("two.example"), "x@one.example"]
    for address in addresses:
        await cyrus.server.provision(address)
    listed = await cyrus.server.list_accounts()
    assert set(addresses) <= set(listed) and listed == sorted(listed)
    # Folders below an account are not accounts.
    assert not [a for a in listed if "/" in a]
    await cyrus.server.deprovision(addresses[0])
    after = await cyrus.server.list_accounts()
    assert addresses[0] not in after and set(addresses[1:]) <= set(after)


async def test_jmap_session_and_bearer_tokens(cyrus: CyrusFixture) -> None:
    address = new_address()
    await cyrus.server.provision(address)
    access = cyrus.server.jmap_access(address)
    assert access.account_id == address
    async with httpx.AsyncClient(timeout=10) as client:
        # GET of the session makes Cyrus run the sendmail program (it speaks SMTP).
        response = await client.get(access.session_url, headers={"Authorization": access.authorization})
        assert response.status_code == 200
        session = response.json()
        assert address in session["accounts"]
        assert cyrus.server.sieve_capability in session["capabilities"]
        assert "urn:ietf:params:jmap:submission" in session["capabilities"]
        # A token signed with another key, or with an old iat, is refused.
        forged = make_jwt(os.urandom(32), address)
        stale = make_jwt(cyrus.instance.jwt_secret, address, now=time.time() - 7200)
        for token in (forged, stale):
            response = await client.get(access.session_url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401


async def test_submission_lands_in_the_outbox(cyrus: CyrusFixture) -> None:
    address = new_address()
    await cyrus.server.provision(address)
    mailboxes = await jmap(cyrus, address, [["Mailbox/get", {"accountId": address}, "m"]])
    drafts = next(m["id"] for m in mailboxes[0][1]["list"] if m["role"] == "drafts")
    identities = await jmap(cyrus, address, [["Identity/get", {"accountId": address}, "i"]])
    identity = identities[0][1]["list"][0]["id"]
    recipient = f"outbox-{os.getpid()}-{next(_counter)}@example.net"
    responses = await jmap(
        cyrus,
        address,
        [
            [
                "Email/set",
                {
                    "accountId": address,
                    "create": {
                        "e": {
                            "mailboxIds": {drafts: True},
                            "keywords": {"$draft": True},
                            "from": [{"email": address}],
                            "to": [{"email": recipient}],
                            "subject": "via the outbox",
                            "bodyValues": {"b": {"value": "Hello."}},
                            "textBody": [{"partId": "b", "type": "text/plain"}],
                        }
                    },
                },
                "0",
            ],
            [
                "EmailSubmission/set",
                {
                    "accountId": address,
                    "create": {
                        "s": {
                            "identityId": identity,
                            "emailId": "#e",
                        }
                    },
                },
                "1",
            ],
        ],
    )
    assert "e" in responses[0][1].get("created", {}), responses[0]
    assert "s" in responses[1][1].get("created", {}), responses[1]
    deadline = time.monotonic() + 5
    found: list[Path] = []
    while not found and time.monotonic() < deadline:
        found = [path for path in cyrus.outbox.glob("*.eml") if f"<{recipient}>".encode() in path.read_bytes()]
        await asyncio.sleep(0.05)
    assert found, "EmailSubmission did not reach the outbox"
    content = found[0].read_bytes()
    assert content.startswith(f"X-Envelope-From: <{address}>\r\n".encode())
    assert b"Subject: via the outbox" in content


async def test_closed_port_is_unavailable_quickly() -> None:
    port = free_port()  # nothing listens there
    server = CyrusMailServer(
        host="127.0.0.1",
        imap_port=port,
        jmap_port=port,
        admin_user="admin",
        admin_password="x",
        jwt_secret=os.urandom(32),
        timeout=1.0,
    )
    try:
        started = time.monotonic()
        with pytest.raises(MailServerUnreachable):  # nothing was asked: certainly not done
            await server.provision("a@example.com")
        with pytest.raises(MailServerUnreachable):
            await server.exists("a@example.com")
        with pytest.raises(MailServerUnreachable):
            await server.list_accounts()
        assert await server.ping() is False
        assert time.monotonic() - started < 2
    finally:
        await server.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (backlog) but never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield int(listener.getsockname()[1])
    listener.close()


async def test_silent_server_times_out(silent_port: int) -> None:
    server = CyrusMailServer(
        host="127.0.0.1",
        imap_port=silent_port,
        jmap_port=silent_port,
        admin_user="admin",
        admin_password="x",
        jwt_secret=os.urandom(32),
        timeout=0.5,
    )
    try:
        started = time.monotonic()
        with pytest.raises(MailServerUnavailable):
            await server.deprovision("a@example.com")
        assert await server.ping() is False
        assert time.monotonic() - started < 2.5
    finally:
        await server.aclose()


def test_a_second_instance_starts_restarts_and_stops_clean(cyrus: CyrusFixture) -> None:
    """Lifecycle on its own directory: stale pid file, context manager, restart, clean stop."""
    directory = cyrus.root / "second"
    instance = CyrusInstance(
        directory,
        jmap_port=free_port(),
        lmtp_port=free_port(),
        imap_port=free_port(),
        outbox_dir=cyrus.root / "outbox2",
    )
    instance.prepare()
    instance.layout.pid_file.write_text("999999\n")  # a stale pid file from a dead master
    with instance:
        assert instance.is_running()
        first_password = instance.admin_password
        instance.prepare()  # idempotent, even while running
        assert instance.admin_password == first_password
        imap = imaplib.IMAP4(instance.connect_host, instance.imap_port, timeout=5)
        imap.login(instance.admin_user, instance.admin_password)
        imap.logout()
    assert not instance.is_running()
    assert instance.processes() == []
    instance.start()  # restart on the same directory
    try:
        assert instance.is_running()
    finally:
        instance.stop()
    assert instance.processes() == []


def test_a_failing_start_explains_itself_and_leaves_nothing(cyrus: CyrusFixture) -> None:
    had_syslog = Path("/dev/log").exists()
    instance = CyrusInstance(
        cyrus.root / "broken",
        jmap_port=free_port(),
        lmtp_port=free_port(),
        imap_port=free_port(),
        outbox_dir=cyrus.root / "outbox3",
    )
    instance.prepare()
    conf = instance.layout.cyrus_conf
    conf.write_text(
        conf.read_text().replace("SERVICES {", 'SERVICES {\n  bogus cmd="/nonexistent/bogus" listen="127.0.0.1:1"')
    )
    with pytest.raises(CyrusStartError) as failure:
        instance.start(timeout=10)
    if not had_syslog:  # the start-up window caught Cyrus's own explanation
        assert "cannot find executable for service 'bogus'" in str(failure.value)
    assert instance.processes() == []
    assert Path("/dev/log").exists() == had_syslog


async def test_failed_provisioning_leaves_no_half_account(cyrus: CyrusFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    address = new_address()
    broken = (*SPECIAL_USE_FOLDERS, ("Bogus", "bogus", "\\NoSuchUse"))
    monkeypatch.setattr(cyrus_admin, "SPECIAL_USE_FOLDERS", broken)
    with pytest.raises(MailServerError) as failure:
        await cyrus.server.provision(address)
    assert not isinstance(failure.value, (AccountExists, MailServerUnavailable))
    assert await cyrus.server.exists(address) is False
    monkeypatch.undo()
    await cyrus.server.provision(address)  # a clean retry works
    assert await cyrus.server.exists(address) is True
