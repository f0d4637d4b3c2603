"""App passwords on the real Cyrus (issue 14, section 1): an app password logs in over IMAP and
JMAP Basic through our login checker (as ``shipmail serve-login-checker`` composes it:
:func:`shipmail.app_passwords.logins.credential_lookup`), stops working after revocation and
after its expiry, and never on a suspended mailbox; the mailbox password keeps working
throughout."""

from __future__ import annotations

import base64
import imaplib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.integration.conftest import ApiEnv
from tests.integration.conftest import imap_login as connect

PASSWORD = "CorrectHorse9Battery"


def imap_ok(api: ApiEnv, user: str, password: str) -> bool:
    try:
        connect(api.cyrus.instance.connect_host, api.cyrus.instance.imap_port, user, password).logout()
    except imaplib.IMAP4.error:
        return False
    return True


def jmap_basic_status(api: ApiEnv, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return httpx.get(api.cyrus.server.session_url, headers={"Authorization": f"Basic {token}"}, timeout=15).status_code


def mailbox(api: ApiEnv, domain: str) -> dict[str, Any]:
    return api.new_mailbox(domain, password=PASSWORD)


def create(api: ApiEnv, mbx: dict[str, Any], **body: Any) -> Any:
    return api.client.post(
        f"/v1/mailboxes/{mbx['id']}/app-passwords", json={"name": "Thunderbird", **body}, headers=api.auth()
    )


def listed(api: ApiEnv, mbx: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/app-passwords", headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "list"
    return r.json()["data"]  # type: ignore[no-any-return]


def test_app_password_logs_in_until_revoked_and_main_password_keeps_working(api: ApiEnv) -> None:
    mbx = mailbox(api, "apppw.example")
    address = mbx["address"]
    r = create(api, mbx)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert created["object"] == "mailbox_app_password" and created["state"] == "active"
    assert created["purpose"] == "operator_client" and created["last_used_at"] is None
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=89, hours=23) < expires - datetime.now(UTC) <= timedelta(days=90)

    assert imap_ok(api, address, secret)
    assert jmap_basic_status(api, address, secret) == 200
    assert imap_ok(api, address, PASSWORD)
    assert jmap_basic_status(api, address, PASSWORD) == 200
    assert not imap_ok(api, address, secret + "x")

    (row,) = listed(api, mbx)
    assert "secret" not in row and row["id"] == created["id"]
    assert row["last_used_at"] is not None  # the login checker wrote it

    r = api.client.delete(f"/v1/mailboxes/{mbx['id']}/app-passwords/{created['id']}", headers=api.auth())
    assert r.status_code == 204, r.text
    assert not imap_ok(api, address, secret)
    assert jmap_basic_status(api, address, secret) == 401
    assert imap_ok(api, address, PASSWORD)
    assert jmap_basic_status(api, address, PASSWORD) == 200
    (row,) = listed(api, mbx)
    assert row["state"] == "revoked" and row["revoked_at"] is not None
    # Revoking again is fine; an id of nothing is a 404.
    again = api.client.delete(f"/v1/mailboxes/{mbx['id']}/app-passwords/{created['id']}", headers=api.auth())
    assert again.status_code == 204
    missing = api.client.delete(f"/v1/mailboxes/{mbx['id']}/app-passwords/appwd_{'0' * 24}", headers=api.auth())
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


def test_app_password_stops_at_its_expiry(api: ApiEnv) -> None:
    mbx = mailbox(api, "apppw-expiry.example")
    address = mbx["address"]
    expires_at = datetime.now(UTC) + timedelta(seconds=4)
    r = create(api, mbx, expires_at=expires_at.isoformat())
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    assert imap_ok(api, address, secret)
    assert jmap_basic_status(api, address, secret) == 200
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
    assert not imap_ok(api, address, secret)
    assert jmap_basic_status(api, address, secret) == 401
    assert imap_ok(api, address, PASSWORD)
    assert jmap_basic_status(api, address, PASSWORD) == 200


def test_suspended_mailbox_refuses_app_passwords_too(api: ApiEnv) -> None:
    mbx = mailbox(api, "apppw-susp.example")
    address = mbx["address"]
    secret = create(api, mbx).json()["secret"]
    assert imap_ok(api, address, secret)
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/suspend", json={}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert not imap_ok(api, address, secret) and not imap_ok(api, address, PASSWORD)
    assert jmap_basic_status(api, address, secret) == 401
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/resume", json={}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert imap_ok(api, address, secret) and imap_ok(api, address, PASSWORD)


def test_last_used_at_is_written_at_most_once_a_minute(api: ApiEnv) -> None:
    mbx = mailbox(api, "apppw-used.example")
    secret = create(api, mbx).json()["secret"]
    assert imap_ok(api, mbx["address"], secret)
    (first,) = listed(api, mbx)
    assert first["last_used_at"] is not None
    assert imap_ok(api, mbx["address"], secret)
    (second,) = listed(api, mbx)
    assert second["last_used_at"] == first["last_used_at"]


def test_limits_expiry_and_idempotency_key(api: ApiEnv) -> None:
    mbx = mailbox(api, "apppw-limits.example")
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"expires_at": (now + timedelta(days=366)).isoformat()}, "expires_at"),
        ({"expires_at": (now - timedelta(minutes=1)).isoformat()}, "expires_at"),
        ({"allowed_cidrs": ["10.0.0.0/8"]}, "allowed_cidrs"),
        ({"name": ""}, "name"),
    ]
    for body, field in cases:
        r = create(api, mbx, **body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["details"][0]["field"] == field
    r = api.client.post(
        f"/v1/mailboxes/{mbx['id']}/app-passwords",
        json={"name": "phone"},
        headers={**api.auth(), "Idempotency-Key": "once"},
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert listed(api, mbx) == []  # nothing was made by the refused requests
    year = create(api, mbx, expires_at=(now + timedelta(days=364)).isoformat())
    assert year.status_code == 201, year.text
    ids = [year.json()["id"]] + [create(api, mbx).json()["id"] for _ in range(4)]
    sixth = create(api, mbx)
    assert sixth.status_code == 409 and sixth.json()["error"]["type"] == "conflict"
    api.client.delete(f"/v1/mailboxes/{mbx['id']}/app-passwords/{ids[0]}", headers=api.auth())
    assert create(api, mbx).status_code == 201  # a revoked one no longer counts
    assert len(listed(api, mbx)) == 6
    # Scopes: mailbox_credentials:read lists but cannot create; mailboxes:write is not enough.
    reader = api.new_key(scopes=["mailbox_credentials:read"])
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}/app-passwords", headers=api.auth(reader)).status_code == 200
    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/app-passwords", json={"name": "x"}, headers=api.auth(reader))
    assert r.status_code == 403
    writer = api.new_key(scopes=["mailboxes:write"])
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}/app-passwords", headers=api.auth(writer)).status_code == 403
    # Another organisation: 404, as for an id that does not exist.
    other = api.new_key(org="globex")
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/app-passwords", headers=api.auth(other))
    assert r.status_code == 404


def test_deleting_the_mailbox_deletes_its_app_passwords(api: ApiEnv) -> None:
    mbx = mailbox(api, "apppw-delete.example")
    assert create(api, mbx).status_code == 201
    r = api.client.delete(f"/v1/mailboxes/{mbx['id']}", headers=api.auth())
    assert r.status_code == 204, r.text


def test_sdk_app_password_and_forwarding_methods(api: ApiEnv) -> None:
    """The official SDK's create/list/revoke_app_password and create/list/delete_forwarding
    against the server: the app password it creates logs in over IMAP until the SDK revokes it."""
    from tests.integration.test_folders import load_sdk

    client = load_sdk().client(api)
    mbx = mailbox(api, "sdk-apppw.example")
    created = client.mailboxes.create_app_password(mbx["id"], {"name": "phone"})
    assert created["object"] == "mailbox_app_password" and created["name"] == "phone" and created["secret"]
    assert imap_ok(api, mbx["address"], created["secret"])
    listed_ids = [p["id"] for p in client.mailboxes.list_app_passwords(mbx["id"])["data"]]
    assert listed_ids == [created["id"]]
    assert client.mailboxes.revoke_app_password(mbx["id"], created["id"]) is None
    assert not imap_ok(api, mbx["address"], created["secret"])

    forwarding = client.mailboxes.create_forwarding(mbx["id"], {"destination": "me@elsewhere.example"})
    assert forwarding["object"] == "mailbox_forwarding" and forwarding["status"] == "pending"
    assert [f["id"] for f in client.mailboxes.list_forwarding(mbx["id"])["data"]] == [forwarding["id"]]
    assert client.mailboxes.delete_forwarding(mbx["id"], forwarding["id"]) is None
    assert client.mailboxes.list_forwarding(mbx["id"])["data"] == []
