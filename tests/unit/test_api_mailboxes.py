"""Mailboxes against the fake mail server: shapes, validation, consistency of the two stores."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import MailServerUnavailable
from tests.fakes import FakeMailServer
from tests.unit.conftest import auth, run_db, verify_domain

pytestmark = pytest.mark.usefixtures("db_backend")


@pytest.fixture
def domain(client: TestClient, settings: Settings, key: str) -> dict[str, Any]:
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    verify_domain(settings, "example.com")
    return dom  # type: ignore[no-any-return]


def _create(client: TestClient, key: str, domain_id: str, **body: Any) -> Any:
    body = {"domain_id": domain_id, "address": "hello", "password": "CorrectHorse9", **body}
    return client.post("/v1/mailboxes", json=body, headers=auth(key))


def _rows(settings: Settings) -> list[Mailbox]:
    from sqlmodel import select

    async def go(s: Any) -> list[Mailbox]:
        return list((await s.exec(select(Mailbox))).all())

    return run_db(settings, go)  # type: ignore[no-any-return]


def test_create_shape_and_account(client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer) -> None:
    r = _create(client, key, domain["id"], address="Hello.World", display_name="Hello")
    assert r.status_code == 201, r.text
    mbx = r.json()
    assert mbx["object"] == "mailbox" and mbx["id"].startswith("mbx_")
    assert mbx["address"] == "hello.world@example.com" and mbx["domain_id"] == domain["id"]
    assert mbx["display_name"] == "Hello" and mbx["suspended_at"] is None and mbx["suspension_reasons"] == []
    assert 1 <= mbx["spam_filter_threshold"] <= 14
    assert mbx["auto_reply"] == {"enabled": False, "subject": None, "body": None, "from_date": None, "to_date": None}
    assert "password" not in r.text.lower()
    assert mail.accounts == {"hello.world@example.com"}
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json() == mbx


def test_generate_password(client: TestClient, key: str, domain: dict[str, Any], settings: Settings) -> None:
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": domain["id"], "address": "gen", "generate_password": True},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    (row,) = _rows(settings)
    assert row.password_hash.startswith("$argon2id$")
    import json

    assert set(json.loads(row.folder_ids or "{}")) == {"inbox", "drafts", "sent", "trash", "junk", "archive"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "-bad"}, "address"),
        ({"address": "a..b"}, "address"),
        ({"address": "x" * 65}, "address"),
        ({"password": "short1A"}, "password"),
        ({"password": "alllowercase1"}, "password"),
        ({"password": "Password1"}, "password"),
        ({"password": "CorrectHorse9", "generate_password": True}, "body"),
        ({"password": None}, "body"),
        ({"generate_password": False, "password": None}, "generate_password"),
        ({"display_name": "x" * 201}, "display_name"),
        ({"display_name": "Ann\r\nBcc: x@evil.example"}, "display_name"),
    ],
)
def test_invalid_input_is_422(
    client: TestClient, key: str, domain: dict[str, Any], body: dict[str, Any], field: str, mail: FakeMailServer
) -> None:
    r = _create(client, key, domain["id"], **body)
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert field in fields or (field == "body" and fields), fields
    assert mail.accounts == set()


def test_unverified_or_unknown_domain_is_422(client: TestClient, key: str, mail: FakeMailServer) -> None:
    dom = client.post("/v1/domains", json={"name": "pending.example"}, headers=auth(key)).json()
    for domain_id in (dom["id"], "dom_unknown"):
        r = _create(client, key, domain_id)
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "domain_id"
    assert mail.calls == []


def test_duplicate_is_409(client: TestClient, key: str, domain: dict[str, Any]) -> None:
    assert _create(client, key, domain["id"]).status_code == 201
    r = _create(client, key, domain["id"], address="HELLO")
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict"


def test_list_filter_and_pagination(client: TestClient, key: str, domain: dict[str, Any], settings: Settings) -> None:
    other = client.post("/v1/domains", json={"name": "other.example"}, headers=auth(key)).json()
    verify_domain(settings, "other.example")
    for i in range(3):
        assert _create(client, key, domain["id"], address=f"m{i}").status_code == 201
    assert _create(client, key, other["id"], address="o").status_code == 201
    all_ = client.get("/v1/mailboxes", headers=auth(key)).json()
    assert [m["address"] for m in all_["data"]] == [
        "m0@example.com",
        "m1@example.com",
        "m2@example.com",
        "o@other.example",
    ]
    page1 = client.get("/v1/mailboxes", params={"domain_id": domain["id"], "limit": 2}, headers=auth(key)).json()
    assert [m["address"] for m in page1["data"]] == ["m0@example.com", "m1@example.com"]
    assert page1["pagination"]["has_more"] is True
    cursor = page1["pagination"]["next_cursor"]
    page2 = client.get(
        "/v1/mailboxes", params={"domain_id": domain["id"], "limit": 2, "cursor": cursor}, headers=auth(key)
    ).json()
    assert [m["address"] for m in page2["data"]] == ["m2@example.com"]
    assert page2["pagination"] == {"next_cursor": None, "has_more": False, "limit": 2}
    # The cursor is bound to its filter.
    r = client.get("/v1/mailboxes", params={"domain_id": other["id"], "cursor": cursor}, headers=auth(key))
    assert r.status_code == 422
    assert client.get("/v1/mailboxes?limit=101", headers=auth(key)).status_code == 422


def test_update_display_name(client: TestClient, key: str, domain: dict[str, Any]) -> None:
    mbx = _create(client, key, domain["id"], display_name="Old").json()
    url = f"/v1/mailboxes/{mbx['id']}"
    assert client.patch(url, json={}, headers=auth(key)).json()["display_name"] == "Old"
    r = client.patch(url, json={"display_name": "New"}, headers=auth(key))
    assert r.status_code == 200 and r.json()["display_name"] == "New"
    assert r.json()["updated_at"] >= mbx["updated_at"]
    assert client.patch(url, json={"display_name": None}, headers=auth(key)).json()["display_name"] is None
    assert client.patch(url, json={"display_name": "x" * 201}, headers=auth(key)).status_code == 422
    assert client.patch(url, json={"address": "new"}, headers=auth(key)).status_code == 422


def test_reset_password(client: TestClient, key: str, domain: dict[str, Any], settings: Settings) -> None:
    from shipmail.mailboxes.passwords import verify_password

    mbx = _create(client, key, domain["id"]).json()
    url = f"/v1/mailboxes/{mbx['id']}/password"
    r = client.patch(url, json={"password": "N3wAndBetterOne"}, headers=auth(key))
    assert r.status_code == 200 and r.json()["id"] == mbx["id"]
    (row,) = _rows(settings)
    assert verify_password(row.password_hash, "N3wAndBetterOne")
    assert not verify_password(row.password_hash, "CorrectHorse9")
    for weak in ("Sh0rtpw", "nocapitals123", "NOLOWER123", "NoDigitsHere", "Passw0rd", "x" * 129):
        r = client.patch(url, json={"password": weak}, headers=auth(key))
        assert r.status_code == 422 and weak not in r.text
    assert (
        client.patch(
            "/v1/mailboxes/mbx_none/password", json={"password": "N3wAndBetterOne"}, headers=auth(key)
        ).status_code
        == 404
    )


def test_delete_removes_account(client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer) -> None:
    mbx = _create(client, key, domain["id"]).json()
    assert client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 204
    assert mail.accounts == set()
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 404
    # The address can be used again.
    assert _create(client, key, domain["id"]).status_code == 201


def test_failed_provisioning_leaves_no_row(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    mail.fail_next = MailServerUnavailable("down")
    r = _create(client, key, domain["id"])
    assert r.status_code == 503 and r.json()["error"]["type"] == "internal_error"
    assert "retry-after" in r.headers
    assert _rows(settings) == [] and mail.accounts == set()


def test_failed_write_after_provisioning_removes_account(
    client: TestClient,
    key: str,
    domain: dict[str, Any],
    mail: FakeMailServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    original = AsyncSession.commit
    failures: list[bool] = []

    async def failing_commit(self: AsyncSession) -> None:
        # The commit that makes the row active fails once; the undo's own commit works.
        if ("provision", "hello@example.com") in mail.calls and not failures:
            failures.append(True)
            raise RuntimeError("database went away")
        await original(self)

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    r = _create(client, key, domain["id"])
    assert r.status_code == 500 and failures
    assert mail.accounts == set()
    assert mail.calls[-1] == ("deprovision", "hello@example.com")
    monkeypatch.setattr(AsyncSession, "commit", original)
    assert _rows(settings) == []
    assert _create(client, key, domain["id"]).status_code == 201


def _reconcile(client: TestClient) -> list[Any]:
    from shipmail.mailboxes.reconcile import reconcile

    assert client.portal is not None
    return client.portal.call(reconcile, client.app.state.services)  # type: ignore[attr-defined]


def test_database_gone_after_provisioning_leaves_an_intent_the_reconciliation_rolls_back(
    client: TestClient,
    key: str,
    domain: dict[str, Any],
    mail: FakeMailServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    original = AsyncSession.commit

    async def failing_commit(self: AsyncSession) -> None:
        if ("provision", "hello@example.com") in mail.calls:
            raise RuntimeError("database went away")
        await original(self)

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    r = _create(client, key, domain["id"])
    monkeypatch.setattr(AsyncSession, "commit", original)
    assert r.status_code == 500
    # The undo removed the account but could not delete the row: it stays provisioning, unusable.
    assert mail.accounts == set()
    (row,) = _rows(settings)
    assert row.state == "provisioning"
    assert client.get("/v1/mailboxes", headers=auth(key)).json()["data"] == []
    again = _create(client, key, domain["id"])
    assert again.status_code == 409
    assert again.json()["error"]["message"] == "The mailbox hello@example.com is being created; retry in a moment."
    assert client.get(f"/v1/mailboxes/{row.id}", headers=auth(key)).status_code == 409
    from shipmail.app_passwords.logins import credential_lookup

    lookup, close = credential_lookup(settings.database_url)
    try:
        assert lookup("hello@example.com") is None  # no login into a half-made mailbox
    finally:
        close()
    (outcome,) = _reconcile(client)
    assert (outcome.mailbox_id, outcome.state, outcome.action) == (row.id, "provisioning", "rolled back")
    assert _rows(settings) == []
    assert _create(client, key, domain["id"]).status_code == 201


def _left_deleting(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer
) -> tuple[dict[str, Any], Any]:
    """A new mailbox whose DELETE the mail server does not answer (503): left ``deleting``.
    Returns the mailbox and the DELETE's response."""
    mbx = _create(client, key, domain["id"]).json()
    mail.fail_next = MailServerUnavailable("no answer")
    r = client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key))
    assert r.status_code == 503, r.text
    return mbx, r


def test_failed_deprovisioning_keeps_everything(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    mbx, r = _left_deleting(client, key, domain, mail)
    assert r.status_code == 503 and "retry the DELETE" in r.json()["error"]["message"]
    # The outcome is unknown: the mailbox stays, marked deleting, unusable until the delete ends.
    (row,) = _rows(settings)
    assert row.state == "deleting" and mail.accounts == {"hello@example.com"}
    got = client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key))
    assert got.status_code == 409 and "is being deleted" in got.json()["error"]["message"]
    assert _create(client, key, domain["id"]).status_code == 409
    # An account that is already gone does not block the delete.
    mail.accounts.clear()
    assert client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 204
    assert _rows(settings) == []


def test_unreachable_mail_server_leaves_the_mailbox_as_it_was(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    from shipmail.mailserver.base import MailServerUnreachable

    mbx = _create(client, key, domain["id"]).json()
    mail.fail_next = MailServerUnreachable("refused")
    assert client.delete(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).status_code == 503
    (row,) = _rows(settings)
    assert row.state == "active" and mail.accounts == {"hello@example.com"}
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json() == mbx
    # A create that cannot reach the server leaves no row either.
    mail.fail_next = MailServerUnreachable("refused")
    assert _create(client, key, domain["id"], address="other").status_code == 503
    assert [r.address for r in _rows(settings)] == ["hello@example.com"]
    # Nor does an address the server refuses to hold before it is asked (ValueError).
    mail.fail_next = ValueError("not a usable mailbox address")
    assert _create(client, key, domain["id"], address="third").status_code >= 400
    assert [r.address for r in _rows(settings)] == ["hello@example.com"]


def test_reconciliation_finishes_a_delete(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    _left_deleting(client, key, domain, mail)
    (outcome,) = _reconcile(client)
    assert (outcome.state, outcome.action) == ("deleting", "deleted")
    assert _rows(settings) == [] and mail.accounts == set()
    assert _create(client, key, domain["id"]).status_code == 201


def test_a_stale_intent_is_resolved_by_a_create_of_its_address(
    client: TestClient, key: str, domain: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    from datetime import timedelta

    import sqlalchemy as sa

    from shipmail import utc
    from shipmail.mailboxes.reconcile import STALE_AFTER

    mbx, _ = _left_deleting(client, key, domain, mail)
    assert _create(client, key, domain["id"]).status_code == 409  # a fresh intent: wait for it

    async def age(s: Any) -> None:
        then = utc.now() - STALE_AFTER - timedelta(seconds=1)
        await s.exec(sa.update(Mailbox).where(Mailbox.id == mbx["id"]).values(updated_at=then))
        await s.commit()

    run_db(settings, age)
    r = _create(client, key, domain["id"])
    assert r.status_code == 201, r.text
    assert r.json()["id"] != mbx["id"] and mail.accounts == {"hello@example.com"}
    assert [row.id for row in _rows(settings)] == [r.json()["id"]]
