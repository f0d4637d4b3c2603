"""The foundation end to end against the real Cyrus: mailboxes are accounts, passwords work over
IMAP through our login checker, deletes remove accounts, and failures leave no orphans."""

from __future__ import annotations

import imaplib
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ApiEnv
from tests.integration.conftest import imap_login as connect

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mail-fixtures"


def imap_login(api: ApiEnv, user: str, password: str) -> imaplib.IMAP4:
    return connect(api.cyrus.instance.connect_host, api.cyrus.instance.imap_port, user, password)


def login_fails(api: ApiEnv, user: str, password: str) -> bool:
    try:
        imap_login(api, user, password).logout()
    except imaplib.IMAP4.error:
        return True
    return False


def create_mailbox(api: ApiEnv, domain_id: str, address: str, password: str, **extra: Any) -> dict[str, Any]:
    r = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": domain_id, "address": address, "password": password, **extra},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_status_sees_the_mail_server(api: ApiEnv) -> None:
    r = api.client.get("/v1/status")
    assert r.status_code == 200
    parts = ("database", "jmap", "imap", "lmtp", "login_checker")
    assert r.json()["components"] == {name: {"status": "up"} for name in parts}


def test_mailbox_lifecycle_on_cyrus(api: ApiEnv) -> None:
    dom = api.verified_domain("lifecycle.example")
    mbx = create_mailbox(api, dom["id"], "Hello", "CorrectHorse9", display_name="Hello")  # type: ignore[arg-type]
    address = mbx["address"]
    assert address == "hello@lifecycle.example"

    # A real message from the corpus, delivered over LMTP, is seen by the owner over IMAP.
    raw = (CORPUS / "plain_emails" / "basic_email.eml").read_bytes()
    assert api.lmtp(address, raw) == {}
    imap = imap_login(api, address, "CorrectHorse9")
    try:
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data[0] == b"1"
        typ, fetched = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        assert b"Subject:" in fetched[0][1]  # type: ignore[index,operator]
        typ, folders = imap.list()
        names = b"\n".join(f for f in folders if isinstance(f, bytes))
        for folder in (b"Drafts", b"Sent", b"Trash", b"Junk", b"Archive"):
            assert folder in names
    finally:
        imap.logout()
    assert login_fails(api, address, "WrongPassword1")
    assert login_fails(api, "hello", "CorrectHorse9")  # no domain: refused

    # Password reset: the old one fails from now on, the new one works.
    r = api.client.patch(
        f"/v1/mailboxes/{mbx['id']}/password", json={"password": "N3wAndBetterOne"}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    assert login_fails(api, address, "CorrectHorse9")
    imap_login(api, address, "N3wAndBetterOne").logout()

    # Delete: the account and its mail are gone and delivery is refused.
    assert api.client.delete(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 204
    import smtplib

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        api.lmtp(address, raw)
    assert refused.value.recipients[address][0] == 550
    assert login_fails(api, address, "N3wAndBetterOne")
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 404


def test_provisioned_account_has_jmap_roles(api: ApiEnv) -> None:
    dom = api.verified_domain("roles.example")
    mbx = create_mailbox(api, dom["id"], "roles", "CorrectHorse9")  # type: ignore[arg-type]
    import httpx

    access = api.cyrus.server.jmap_access(mbx["address"])
    with httpx.Client() as http:
        session = http.get(access.session_url, headers={"Authorization": access.authorization}).json()
        api_url = httpx.URL(access.session_url).join(session["apiUrl"])
        body = {
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
            "methodCalls": [["Mailbox/get", {"accountId": access.account_id, "ids": None}, "0"]],
        }
        resp = http.post(api_url, json=body, headers={"Authorization": access.authorization}).json()
    roles = {m["role"] for m in resp["methodResponses"][0][1]["list"]}
    assert roles == {"inbox", "drafts", "sent", "trash", "junk", "archive"}


def test_account_already_on_server_is_409_and_no_row(api: ApiEnv) -> None:
    import asyncio

    from shipmail.mailserver.cyrus_server import CyrusMailServer

    dom = api.verified_domain("orphan.example")

    async def pre_provision() -> None:
        server = CyrusMailServer.from_instance(api.cyrus.instance)
        try:
            await server.provision("taken@orphan.example")
        finally:
            await server.aclose()

    asyncio.run(pre_provision())
    r = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "taken", "password": "CorrectHorse9"},
        headers=api.auth(),
    )
    assert r.status_code == 409
    assert api.client.get("/v1/mailboxes", headers=api.auth()).json()["data"] == []


def test_mail_server_down_is_503_and_leaves_nothing(api: ApiEnv, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from shipmail.app import create_app
    from shipmail.mailserver.cyrus_server import CyrusMailServer
    from tests.integration.conftest import free_port

    dom = api.verified_domain("down.example")
    inst = api.cyrus.instance
    dead = dict(
        host=inst.connect_host,
        imap_port=free_port(),
        jmap_port=free_port(),
        admin_user=inst.admin_user,
        admin_password=inst.admin_password,
        jwt_secret=inst.jwt_secret,
        timeout=1.0,
    )
    app = create_app(api.settings, mail_server_factory=lambda s: CyrusMailServer(**dead))  # type: ignore[arg-type]
    with TestClient(app) as client:
        r = client.post(
            "/v1/mailboxes",
            json={"domain_id": dom["id"], "address": "nobody", "password": "CorrectHorse9"},
            headers=api.auth(),
        )
        assert r.status_code == 503 and "retry-after" in r.headers
        assert client.get("/v1/status").status_code == 503
    assert api.client.get("/v1/mailboxes", headers=api.auth()).json()["data"] == []


def test_failed_write_after_provisioning_removes_the_account(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from sqlmodel.ext.asyncio.session import AsyncSession

    from shipmail.mailserver.cyrus_server import CyrusMailServer

    dom = api.verified_domain("rollback.example")

    async def failing_commit(self: AsyncSession) -> None:
        raise RuntimeError("database write failed")

    original = AsyncSession.commit
    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    r = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "ghost", "password": "CorrectHorse9"},
        headers=api.auth(),
    )
    monkeypatch.setattr(AsyncSession, "commit", original)
    assert r.status_code == 500

    async def exists() -> bool:
        server = CyrusMailServer.from_instance(api.cyrus.instance)
        try:
            return await server.exists("ghost@rollback.example")
        finally:
            await server.aclose()

    assert asyncio.run(exists()) is False
    assert api.client.get("/v1/mailboxes", headers=api.auth()).json()["data"] == []


def test_plain_password_is_stored_nowhere(api: ApiEnv, caplog: pytest.LogCaptureFixture) -> None:
    first, second = "Unique1stSecretXyz", "Unique2ndSecretQrs"
    with caplog.at_level(logging.DEBUG):
        dom = api.verified_domain("secrets.example")
        mbx = create_mailbox(api, dom["id"], "secret", first)  # type: ignore[arg-type]
        imap_login(api, mbx["address"], first).logout()
        r = api.client.patch(f"/v1/mailboxes/{mbx['id']}/password", json={"password": second}, headers=api.auth())
        assert r.status_code == 200
        imap_login(api, mbx["address"], second).logout()
        assert login_fails(api, mbx["address"], first)
        # An app password (issue 14): shown once, then only its argon2id hash anywhere.
        r = api.client.post(f"/v1/mailboxes/{mbx['id']}/app-passwords", json={"name": "phone"}, headers=api.auth())
        assert r.status_code == 201, r.text
        app_secret = r.json()["secret"]
        imap_login(api, mbx["address"], app_secret).logout()
        listed = api.client.get(f"/v1/mailboxes/{mbx['id']}/app-passwords", headers=api.auth())
        assert app_secret not in listed.text
    needles = [p.encode() for p in (first, second, app_secret)]
    scanned = 0
    for root in (api.settings.data_dir, api.cyrus.root):
        for path in Path(root).rglob("*"):
            if path.is_file() and not path.is_symlink() and not path.is_socket():
                data = path.read_bytes()
                scanned += 1
                for needle in needles:
                    assert needle not in data, f"plain-text password found in {path}"
    assert scanned > 10
    for record in caplog.records:
        text = record.getMessage() + str(record.args)
        assert first not in text and second not in text and app_secret not in text
