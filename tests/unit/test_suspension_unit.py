"""Suspend / resume against the fake mail server: shapes, idempotency, tenancy, scope, and the
database and the mail server changing together (the real Cyrus: tests/integration/test_suspension.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.config import Settings
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.base import AccountNotFound, MailServerUnavailable
from tests.fakes import FakeMailServer
from tests.unit.conftest import auth, make_key, run_db

pytestmark = pytest.mark.usefixtures("db_backend")

ADDRESS = "hello@example.com"


def _row(settings: Settings, mailbox_id: str) -> Mailbox:
    async def go(s: Any) -> Mailbox:
        row = await s.get(Mailbox, mailbox_id)
        assert row is not None
        return row  # type: ignore[no-any-return]

    return run_db(settings, go)  # type: ignore[no-any-return]


def _post(client: TestClient, key: str, mailbox_id: str, action: str) -> Any:
    return client.post(f"/v1/mailboxes/{mailbox_id}/{action}", headers=auth(key))


def test_suspend_then_resume(
    client: TestClient, key: str, mbx: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    r = _post(client, key, mbx["id"], "suspend")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "mailbox" and body["id"] == mbx["id"]
    assert body["suspended_at"] is not None and body["suspension_reasons"] == ["manual"]
    assert body["updated_at"] > mbx["updated_at"] and body["created_at"] == mbx["created_at"]
    assert mail.suspended == {ADDRESS}
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json() == body
    assert _row(settings, mbx["id"]).suspended_at is not None

    r = _post(client, key, mbx["id"], "resume")
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert resumed["suspended_at"] is None and resumed["suspension_reasons"] == []
    assert resumed["updated_at"] > body["updated_at"]
    assert mail.suspended == set()
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json() == resumed
    listed = client.get("/v1/mailboxes", headers=auth(key)).json()["data"]
    assert listed == [resumed]


def test_both_are_idempotent(client: TestClient, key: str, mbx: dict[str, Any], mail: FakeMailServer) -> None:
    first = _post(client, key, mbx["id"], "suspend").json()
    again = _post(client, key, mbx["id"], "suspend")
    assert again.status_code == 200
    assert again.json() == first  # suspended_at and updated_at kept
    # The server state is asserted again each time (repairs a block lost on the server).
    assert mail.calls.count(("set_suspended", ADDRESS)) == 2 and mail.suspended == {ADDRESS}

    resumed = _post(client, key, mbx["id"], "resume").json()
    again = _post(client, key, mbx["id"], "resume")
    assert again.status_code == 200 and again.json() == resumed
    assert mail.suspended == set()


def test_resume_of_an_active_mailbox_changes_nothing(client: TestClient, key: str, mbx: dict[str, Any]) -> None:
    r = _post(client, key, mbx["id"], "resume")
    assert r.status_code == 200
    assert r.json() == mbx


def test_other_organisation_and_unknown_ids_are_404(
    client: TestClient, settings: Settings, mbx: dict[str, Any], mail: FakeMailServer
) -> None:
    other = make_key(settings, org="globex")
    calls = list(mail.calls)
    for action in ("suspend", "resume"):
        for mailbox_id in (mbx["id"], "mbx_doesnotexist"):
            r = _post(client, other if mailbox_id == mbx["id"] else make_key(settings), mailbox_id, action)
            assert r.status_code == 404, r.text
            assert r.json()["error"]["type"] == "not_found"
    assert mail.calls == calls and mail.suspended == set()
    assert _row(settings, mbx["id"]).suspended_at is None


def test_scope_mailboxes_write_is_needed(client: TestClient, settings: Settings, mbx: dict[str, Any]) -> None:
    reader = make_key(settings, scopes=["mailboxes:read"])
    for action in ("suspend", "resume"):
        r = _post(client, reader, mbx["id"], action)
        assert r.status_code == 403, r.text
    writer = make_key(settings, scopes=["mailboxes:write"])
    assert _post(client, writer, mbx["id"], "suspend").status_code == 200
    assert client.post(f"/v1/mailboxes/{mbx['id']}/suspend").status_code == 401


def test_mail_server_down_is_503_and_changes_nothing(
    client: TestClient, key: str, mbx: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    mail.fail_next = MailServerUnavailable("down")
    r = _post(client, key, mbx["id"], "suspend")
    assert r.status_code == 503 and "retry-after" in r.headers
    assert _row(settings, mbx["id"]).suspended_at is None and mail.suspended == set()

    suspended = _post(client, key, mbx["id"], "suspend").json()
    mail.fail_next = MailServerUnavailable("down")
    r = _post(client, key, mbx["id"], "resume")
    assert r.status_code == 503
    assert _row(settings, mbx["id"]).suspended_at is not None and mail.suspended == {ADDRESS}
    assert client.get(f"/v1/mailboxes/{mbx['id']}", headers=auth(key)).json() == suspended


def test_missing_account_is_500_and_changes_nothing(
    client: TestClient, key: str, mbx: dict[str, Any], mail: FakeMailServer, settings: Settings
) -> None:
    mail.fail_next = AccountNotFound(ADDRESS)
    r = _post(client, key, mbx["id"], "suspend")
    assert r.status_code == 500
    assert "missing" in r.json()["error"]["message"]
    assert _row(settings, mbx["id"]).suspended_at is None


@pytest.mark.parametrize("action", ["suspend", "resume"])
def test_failed_commit_undoes_the_server_change(
    client: TestClient,
    key: str,
    mbx: dict[str, Any],
    mail: FakeMailServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    if action == "resume":
        assert _post(client, key, mbx["id"], "suspend").status_code == 200
    before = _row(settings, mbx["id"]).suspended_at
    server_before = set(mail.suspended)
    original = AsyncSession.commit

    async def failing_commit(self: AsyncSession) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    r = _post(client, key, mbx["id"], action)
    monkeypatch.setattr(AsyncSession, "commit", original)
    assert r.status_code == 500
    undo = "set_unsuspended" if action == "suspend" else "set_suspended"
    assert mail.calls[-1] == (undo, ADDRESS)
    assert mail.suspended == server_before
    assert _row(settings, mbx["id"]).suspended_at == before


def test_no_undo_when_nothing_changed(
    client: TestClient, key: str, mbx: dict[str, Any], mail: FakeMailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    assert _post(client, key, mbx["id"], "suspend").status_code == 200
    original = AsyncSession.commit

    async def failing_commit(self: AsyncSession) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    r = _post(client, key, mbx["id"], "suspend")
    monkeypatch.setattr(AsyncSession, "commit", original)
    assert r.status_code == 500
    assert mail.calls[-1] == ("set_suspended", ADDRESS) and mail.suspended == {ADDRESS}


def test_concurrent_suspends_keep_one_suspended_at(client: TestClient, key: str, mbx: dict[str, Any]) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: _post(client, key, mbx["id"], "suspend"), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["suspended_at"] for a in answers}) == 1


def test_login_lookup_refuses_a_suspended_mailbox(
    client: TestClient, key: str, mbx: dict[str, Any], settings: Settings
) -> None:
    from shipmail.app_passwords.logins import credential_lookup

    lookup, close = credential_lookup(settings.database_url)

    def password_hash() -> str | None:
        found = lookup(ADDRESS)
        return found[0].password_hash if found else None

    try:
        assert (password_hash() or "").startswith("$argon2id$")
        _post(client, key, mbx["id"], "suspend")
        assert lookup(ADDRESS) is None
        _post(client, key, mbx["id"], "resume")
        assert (password_hash() or "").startswith("$argon2id$")
    finally:
        close()


def test_sandbox_inbound_to_a_suspended_mailbox_is_409(
    client: TestClient, key: str, mbx: dict[str, Any], mail: FakeMailServer
) -> None:
    _post(client, key, mbx["id"], "suspend")
    r = client.post(
        f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
        headers=auth(key),
        json={"from": "a@example.org", "subject": "hi", "text": "hello"},
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"]["type"] == "conflict" and "suspended" in r.json()["error"]["message"]
    assert not any(name == "deliver" for name, _ in mail.calls) and mail.delivered == []
    # Invalid input is still 422 first.
    r = client.post(
        f"/v1/mailboxes/{mbx['id']}/sandbox/inbound", headers=auth(key), json={"from": "a@example.org", "subject": "hi"}
    )
    assert r.status_code == 422
