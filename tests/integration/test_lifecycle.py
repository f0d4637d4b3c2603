"""Issue 15 against the real Cyrus: Mailgun's legacy Mailboxes API (its documentation's samples,
run unchanged but for the base URL, key and domain), batch create (all or nothing), the list's
filters, order and total, pause by status, scheduled deletion and restore (logins refused, LMTP
550, mail kept, purged once at the date), and the storage quota (LMTP 452 over it, usage shown)."""

from __future__ import annotations

import dataclasses
import imaplib
import secrets
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.conftest import ApiEnv, imap_login
from tests.integration.live_app import live_server

PASSWORD = "CorrectHorse9"


def message(to: str, subject: str, body: str = "hello") -> bytes:
    mid = f"{secrets.token_hex(8)}@lifecycle.test"
    return (
        f"From: Ann <ann@sender.example>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
        f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def lmtp_reply(api: ApiEnv, rcpt: str, data: bytes) -> tuple[int, str]:
    """``(code, text)`` of the first LMTP reply that is not 2xx/3xx, or ``(250, ...)`` if delivered."""
    with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("ann@sender.example")[0] == 250
        code, text = lmtp.rcpt(rcpt)
        if code != 250:
            return code, text.decode()
        code, text = lmtp.data(data)
        return code, text.decode()


def login_ok(api: ApiEnv, address: str, password: str) -> bool:
    try:
        imap_login("127.0.0.1", api.cyrus.instance.imap_port, address, password).logout()
    except imaplib.IMAP4.error:
        return False
    return True


def inbox_count(api: ApiEnv, address: str, password: str) -> int:
    conn = imap_login("127.0.0.1", api.cyrus.instance.imap_port, address, password)
    try:
        status, data = conn.select("INBOX", readonly=True)
        assert status == "OK", data
        return int(data[0] or 0)
    finally:
        conn.logout()


def domain(api: ApiEnv, label: str) -> dict[str, Any]:
    return api.verified_domain(f"{label}-{secrets.token_hex(4)}.example")


# ------------------------------------------------------------------------------ Mailgun


def test_mailgun_documentation_samples(api: ApiEnv) -> None:
    """Mailgun's samples (Python ``requests`` with ``auth=("api", KEY)`` and ``data={...}``, and
    ``curl -u api:KEY -F mailbox=... -F password=...``), then LMTP delivery and the owner's IMAP
    login with that password; list, password change and delete in Mailgun's shapes."""
    dom = domain(api, "mailgun")
    name = dom["name"]
    key = api.key
    with live_server(api) as base:
        # --- Mailgun's Python sample, unchanged but for the base URL, key and domain. Its password
        # "supasecret" is refused by our policy (Mailgun's 400 shape); the same call with a strong one.
        def create_mailbox(password: str) -> requests.Response:
            return requests.post(
                f"{base}/v3/{name}/mailboxes",
                auth=("api", key),
                data={"mailbox": f"alice@{name}", "password": password},
            )

        weak = create_mailbox("supasecret")
        assert weak.status_code == 400 and set(weak.json()) == {"message"}, weak.text
        r = create_mailbox(PASSWORD)
        assert r.status_code == 200, r.text
        assert r.json() == {"message": "Created 1 mailboxes"}

        # --- Mailgun's curl sample (multipart form), local part only, and over /v2.
        curl = shutil.which("curl")
        assert curl is not None, "curl is needed for Mailgun's curl sample"
        out = subprocess.run(
            [curl, "-s", "--user", f"api:{key}", f"{base}/v2/{name}/mailboxes", "-F", "mailbox=bob.bar",
             "-F", f"password={PASSWORD}x"],
            capture_output=True, check=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.stdout and __import__("json").loads(out.stdout) == {"message": "Created 1 mailboxes"}

        # Mail arrives over LMTP and the owners log in over IMAP with the passwords they set.
        assert lmtp_reply(api, f"alice@{name}", message(f"alice@{name}", "to alice"))[0] == 250
        assert inbox_count(api, f"alice@{name}", PASSWORD) == 1
        assert login_ok(api, f"bob.bar@{name}", PASSWORD + "x")

        # List, field by field as the documentation shows it.
        listed = requests.get(f"{base}/v3/{name}/mailboxes", auth=("api", key), params={"limit": 100, "skip": 0})
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert set(body) == {"total_count", "items"} and body["total_count"] == 2
        by = {item["mailbox"]: item for item in body["items"]}
        assert set(by) == {f"alice@{name}", f"bob.bar@{name}"}
        for item in body["items"]:
            assert set(item) == {"mailbox", "created_at", "size_bytes"}
            assert item["created_at"].endswith(" GMT") and len(item["created_at"]) == len(
                "Tue, 27 Sep 2011 20:24:22 GMT"
            )
        assert by[f"alice@{name}"]["size_bytes"] > 0 and by[f"bob.bar@{name}"]["size_bytes"] == 0
        page = requests.get(f"{base}/v3/{name}/mailboxes?limit=1&skip=1", auth=("api", key)).json()
        assert page["total_count"] == 2 and [i["mailbox"] for i in page["items"]] == [f"bob.bar@{name}"]

        # Password change: the old one fails, the new one works (argon2id in our DB only).
        r = requests.put(f"{base}/v3/{name}/mailboxes/alice", auth=("api", key), data={"password": "N3wAndBetter"})
        assert r.status_code == 200 and r.json() == {"message": "Password changed"}, r.text
        assert not login_ok(api, f"alice@{name}", PASSWORD) and login_ok(api, f"alice@{name}", "N3wAndBetter")

        # JSON bodies work too; errors are Mailgun's {"message"} with 400/401/404.
        r = requests.post(
            f"{base}/v3/{name}/mailboxes", auth=("api", key), json={"mailbox": "carol", "password": PASSWORD}
        )
        assert r.json() == {"message": "Created 1 mailboxes"}
        dup = requests.post(
            f"{base}/v3/{name}/mailboxes", auth=("api", key), data={"mailbox": "carol", "password": PASSWORD}
        )
        assert dup.status_code == 400 and set(dup.json()) == {"message"}
        missing = requests.post(f"{base}/v3/{name}/mailboxes", auth=("api", key), data={"mailbox": "dave"})
        assert missing.status_code == 400 and missing.json() == {"message": "'password' parameter is missing"}
        bad = requests.get(f"{base}/v3/{name}/mailboxes", auth=("api", "sm_live_" + "x" * 40))
        assert bad.status_code == 401 and set(bad.json()) == {"message"}
        assert requests.get(f"{base}/v3/{name}/mailboxes", auth=("user", key)).status_code == 401
        other = requests.get(f"{base}/v3/nowhere-{secrets.token_hex(3)}.example/mailboxes", auth=("api", key))
        assert other.status_code == 404 and set(other.json()) == {"message"}
        foreign = api.new_key(org="someone-else")
        assert requests.get(f"{base}/v3/{name}/mailboxes", auth=("api", foreign)).status_code == 404
        reader = api.new_key(scopes=["mailboxes:read"])
        denied = requests.delete(f"{base}/v3/{name}/mailboxes/carol", auth=("api", reader))
        assert denied.status_code == 403 and set(denied.json()) == {"message"}
        assert requests.delete(f"{base}/v3/{name}/mailboxes/nobody", auth=("api", key)).status_code == 404

        # Delete: the account goes; delivery is refused.
        r = requests.delete(f"{base}/v3/{name}/mailboxes/alice@{name}", auth=("api", key))
        assert r.status_code == 200, r.text
        assert r.json() == {"message": "Mailbox has been deleted", "spec": f"alice@{name}"}
        assert lmtp_reply(api, f"alice@{name}", message(f"alice@{name}", "late"))[0] == 550
        assert requests.get(f"{base}/v3/{name}/mailboxes", auth=("api", key)).json()["total_count"] == 2
        doc = requests.get(f"{base}/v3/openapi.json").json()
        assert "/v3/{domain}/mailboxes" in doc["paths"] and "/v2/{domain}/mailboxes/{mailbox}" in doc["paths"]


# ------------------------------------------------------------------------------ batch


def accounts_like(api: ApiEnv, suffix: str) -> list[str]:
    import asyncio

    return [a for a in asyncio.run(api.cyrus.server.list_accounts()) if a.endswith(suffix)]


def test_batch_create_is_all_or_nothing(api: ApiEnv) -> None:
    dom = domain(api, "batch")
    url = "/v1/mailboxes/batch"
    entries: list[dict[str, Any]] = [{"address": f"b{i}", "generate_password": True} for i in range(5)]
    entries[3] = {"address": "b3", "password": "weak"}
    r = api.client.post(url, json={"domain_id": dom["id"], "mailboxes": entries}, headers=api.auth())
    assert r.status_code == 422 and "mailboxes[3]" in r.text, r.text
    entries[3] = {"address": "b1", "generate_password": True}
    r = api.client.post(url, json={"domain_id": dom["id"], "mailboxes": entries}, headers=api.auth())
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "mailboxes[3].address", r.text
    assert accounts_like(api, "@" + dom["name"]) == []
    assert api.client.get(f"/v1/mailboxes?domain_id={dom['id']}", headers=api.auth()).json()["data"] == []

    # The mail server fails at entry 2 (an account no mailbox owns holds its address): the two
    # made before it are removed again, account and row.
    import asyncio

    asyncio.run(api.cyrus.server.provision(f"b2@{dom['name']}"))
    entries[3] = {"address": "b3", "password": PASSWORD, "display_name": "Bee Three"}
    r = api.client.post(url, json={"domain_id": dom["id"], "mailboxes": entries}, headers=api.auth())
    assert r.status_code == 409 and "mailboxes[2]" in r.text, r.text
    assert accounts_like(api, "@" + dom["name"]) == [f"b2@{dom['name']}"]
    assert api.client.get(f"/v1/mailboxes?domain_id={dom['id']}", headers=api.auth()).json()["data"] == []
    asyncio.run(api.cyrus.server.deprovision(f"b2@{dom['name']}"))

    r = api.client.post(url, json={"domain_id": dom["id"], "mailboxes": entries}, headers=api.auth())
    assert r.status_code == 201, r.text
    assert [m["address"] for m in r.json()["data"]] == [f"b{i}@{dom['name']}" for i in range(5)]
    assert len(accounts_like(api, "@" + dom["name"])) == 5
    assert login_ok(api, f"b3@{dom['name']}", PASSWORD)


# ------------------------------------------------------------------------------ list, pause


def test_list_filters_order_total_and_pause(api: ApiEnv) -> None:
    dom = domain(api, "list")
    ids = {}
    for local, display in (("carl", "Zed"), ("anna", "Support Team"), ("bert", None)):
        body: dict[str, Any] = {"domain_id": dom["id"], "address": local, "password": PASSWORD}
        if display:
            body["display_name"] = display
        r = api.client.post("/v1/mailboxes", json=body, headers=api.auth())
        assert r.status_code == 201, r.text
        ids[local] = r.json()["id"]

    r = api.client.patch(f"/v1/mailboxes/{ids['bert']}", json={"status": "paused"}, headers=api.auth())
    assert r.status_code == 200 and r.json()["status"] == "suspended" and r.json()["suspended_at"], r.text
    assert not login_ok(api, f"bert@{dom['name']}", PASSWORD)
    assert lmtp_reply(api, f"bert@{dom['name']}", message("bert", "paused"))[0] == 452

    def addresses(query: str) -> list[str]:
        r = api.client.get(f"/v1/mailboxes?domain_id={dom['id']}&{query}", headers=api.auth())
        assert r.status_code == 200, r.text
        return [m["address"].split("@")[0] for m in r.json()["data"]]

    assert addresses("order_by=address_asc") == ["anna", "bert", "carl"]
    assert addresses("order_by=address_desc") == ["carl", "bert", "anna"]
    assert addresses("order_by=created_at_desc") == ["bert", "anna", "carl"]
    assert addresses("status=suspended") == ["bert"]
    assert addresses("status=active&order_by=address_asc") == ["anna", "carl"]
    assert addresses("search=SUPPORT") == ["anna"]
    assert addresses("search=ar") == ["carl"]
    # Cursor pages in address order, one at a time, with the total.
    seen, cursor = [], None
    while True:
        q = "order_by=address_desc&limit=1&include_total=true" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(f"/v1/mailboxes?domain_id={dom['id']}&{q}", headers=api.auth()).json()
        assert page["total_count"] == 3
        seen += [m["address"].split("@")[0] for m in page["data"]]
        cursor = page["pagination"]["next_cursor"]
        if not cursor:
            break
    assert seen == ["carl", "bert", "anna"]
    r = api.client.get(
        f"/v1/mailboxes?domain_id={dom['id']}&order_by=address_asc&cursor={cursor or 'x'}", headers=api.auth()
    )
    assert r.status_code == 422

    r = api.client.patch(f"/v1/mailboxes/{ids['bert']}", json={"status": "active"}, headers=api.auth())
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["suspended_at"] is None
    assert login_ok(api, f"bert@{dom['name']}", PASSWORD)
    assert lmtp_reply(api, f"bert@{dom['name']}", message("bert", "resumed"))[0] == 250


# ------------------------------------------------------------------------------ quota


def test_storage_quota_refuses_mail_over_it_with_452_and_shows_usage(api: ApiEnv) -> None:
    dom = domain(api, "quota")
    mbx = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "small", "password": PASSWORD}, headers=api.auth()
    ).json()
    address = mbx["address"]
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}", json={"storage_quota_bytes": 20 * 1024}, headers=api.auth())
    assert r.status_code == 200 and r.json()["storage_quota_bytes"] == 20 * 1024, r.text
    assert lmtp_reply(api, address, message(address, "one", "x" * 12_000))[0] == 250
    code, text = lmtp_reply(api, address, message(address, "two", "y" * 12_000))
    assert code == 452, (code, text)
    got = api.client.get(f"/v1/mailboxes/{mbx['id']}?include_usage=true", headers=api.auth()).json()
    assert 12_000 < got["storage_used_bytes"] < 20 * 1024 and got["storage_quota_bytes"] == 20 * 1024
    # Suspend and resume keep the quota; removing it lets the mail in.
    assert api.client.post(f"/v1/mailboxes/{mbx['id']}/suspend", headers=api.auth()).status_code == 200
    assert api.client.post(f"/v1/mailboxes/{mbx['id']}/resume", headers=api.auth()).status_code == 200
    assert lmtp_reply(api, address, message(address, "three", "z" * 12_000))[0] == 452
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}", json={"storage_quota_bytes": None}, headers=api.auth())
    assert r.status_code == 200 and r.json()["storage_quota_bytes"] is None
    assert lmtp_reply(api, address, message(address, "four", "z" * 12_000))[0] == 250
    listed = api.client.get(f"/v1/mailboxes?domain_id={dom['id']}&include_usage=true", headers=api.auth()).json()
    assert listed["data"][0]["storage_used_bytes"] > 24_000


# ------------------------------------------------------------------------------ scheduled deletion


@pytest.fixture
def short_days(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """One ``grace_days`` day lasts 3 seconds in the app the ``api`` fixture makes next."""
    monkeypatch.setenv("SHIPMAIL_TEST_GRACE_DAY_SECONDS", "3")
    monkeypatch.setenv("SHIPMAIL_JOBS_POLL_INTERVAL", "0.2")
    yield 3.0


def test_scheduled_deletion_restore_and_purge(short_days: float, api: ApiEnv) -> None:
    assert api.settings.test_grace_day_seconds == short_days
    dom = domain(api, "sched")
    mbx = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "leaving", "password": PASSWORD}, headers=api.auth()
    ).json()
    address = mbx["address"]
    assert lmtp_reply(api, address, message(address, "kept"))[0] == 250

    r = api.client.delete(f"/v1/mailboxes/{mbx['id']}?grace_days=30", headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "deletion_scheduled" and r.json()["deletion_scheduled_at"]
    assert not login_ok(api, address, PASSWORD)
    code, text = lmtp_reply(api, address, message(address, "refused"))
    assert code == 550, (code, text)
    # The mail is kept and the API still reads it.
    msgs = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages", headers=api.auth()).json()["data"]
    assert [m["subject"] for m in msgs] == ["kept"]
    listed = api.client.get(f"/v1/mailboxes?status=deletion_scheduled&domain_id={dom['id']}", headers=api.auth())
    assert [m["id"] for m in listed.json()["data"]] == [mbx["id"]]
    assert api.client.post(f"/v1/mailboxes/{mbx['id']}/suspend", headers=api.auth()).status_code == 409

    r = api.client.post(f"/v1/mailboxes/{mbx['id']}/restore", headers=api.auth())
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["deletion_scheduled_at"] is None
    assert login_ok(api, address, PASSWORD)
    assert lmtp_reply(api, address, message(address, "after restore"))[0] == 250
    assert inbox_count(api, address, PASSWORD) == 2

    # Scheduled again for one (3-second) day: purged by the job queue, once, at the date.
    r = api.client.delete(f"/v1/mailboxes/{mbx['id']}?grace_days=1", headers=api.auth())
    assert r.status_code == 200, r.text
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 200
    deadline = time.monotonic() + 30
    while api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code != 404:
        assert time.monotonic() < deadline, "the scheduled purge did not happen"
        time.sleep(0.3)
    assert accounts_like(api, "@" + dom["name"]) == []
    assert lmtp_reply(api, address, message(address, "gone"))[0] == 550
    assert api.client.get(f"/v1/mailboxes?domain_id={dom['id']}", headers=api.auth()).json()["data"] == []


@pytest.fixture
def no_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app the ``api`` fixture makes next runs no job worker."""
    monkeypatch.setenv("SHIPMAIL_JOBS_WORKER", "false")
    yield


def test_scheduled_purge_survives_a_restart(short_days: float, no_worker: None, api: ApiEnv) -> None:
    """The purge is a durable job: scheduled while no worker runs, the date passes, and a
    service started afterwards purges the mailbox."""
    dom = domain(api, "restart")
    mbx = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "later", "password": PASSWORD}, headers=api.auth()
    ).json()
    r = api.client.delete(f"/v1/mailboxes/{mbx['id']}?grace_days=1", headers=api.auth())
    assert r.status_code == 200, r.text
    time.sleep(short_days + 1)
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 200
    with live_server(dataclasses.replace(api, settings=api.settings.model_copy(update={"jobs_worker": True}))):
        deadline = time.monotonic() + 30
        while api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code != 404:
            assert time.monotonic() < deadline, "the scheduled purge did not happen after the restart"
            time.sleep(0.3)
    assert accounts_like(api, "@" + dom["name"]) == []


# ------------------------------------------------------------------------------ aliases, account


def resolve(api: ApiEnv, address: str) -> str | None:
    import asyncio

    from shipmail.aliases.service import resolve_alias
    from shipmail.db.engine import Database

    async def run() -> str | None:
        db = Database(api.settings.database_url)
        try:
            async with db.session() as session:
                return await resolve_alias(session, address)
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_aliases_resolve_to_their_mailbox_and_never_collide(api: ApiEnv) -> None:
    dom = domain(api, "alias")
    name = dom["name"]
    mbx = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "owner", "password": PASSWORD}, headers=api.auth()
    ).json()
    url = f"/v1/mailboxes/{mbx['id']}/aliases"
    r = api.client.post(url, json={"local_part": "Sales", "description": "the sales desk"}, headers=api.auth())
    assert r.status_code == 201, r.text
    alias = r.json()
    assert alias["address"] == f"sales@{name}" and alias["mailbox_id"] == mbx["id"] and alias["id"].startswith("mal_")
    assert api.client.get(url, headers=api.auth()).json()["data"] == [alias]
    # An alias is no second alias, no mailbox, and no mailbox is made on it.
    assert api.client.post(url, json={"local_part": "sales"}, headers=api.auth()).status_code == 409
    assert api.client.post(url, json={"local_part": "owner"}, headers=api.auth()).status_code == 409
    r = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "sales", "password": PASSWORD}, headers=api.auth()
    )
    assert r.status_code == 409, r.text
    other = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "other", "generate_password": True},
        headers=api.auth(),
    ).json()
    r = api.client.post(f"/v1/mailboxes/{other['id']}/aliases", json={"local_part": "sales"}, headers=api.auth())
    assert r.status_code == 409
    foreign = api.new_key(org="alias-stranger")
    assert api.client.get(url, headers=api.auth(foreign)).status_code == 404

    # The inbound gateway's lookup: the alias names its mailbox; delivering there lands in it.
    assert resolve(api, f"SALES@{name}") == f"owner@{name}"
    assert resolve(api, f"owner@{name}") is None
    target = resolve(api, f"sales@{name}")
    assert target is not None and lmtp_reply(api, target, message(f"sales@{name}", "to the alias"))[0] == 250
    assert inbox_count(api, f"owner@{name}", PASSWORD) == 1
    # Cyrus alone knows no alias; LMTP to the alias itself goes through the gateway, which
    # resolves it: delivered into the mailbox.
    assert lmtp_reply(api, f"sales@{name}", message(f"sales@{name}", "direct"))[0] == 250
    assert inbox_count(api, f"owner@{name}", PASSWORD) == 2

    assert api.client.delete(f"{url}/{alias['id']}", headers=api.auth()).status_code == 204
    assert api.client.delete(f"{url}/{alias['id']}", headers=api.auth()).status_code == 404
    assert resolve(api, f"sales@{name}") is None
    r = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "sales", "password": PASSWORD}, headers=api.auth()
    )
    assert r.status_code == 201, r.text
    # A deleted mailbox takes its aliases along.
    assert api.client.post(url, json={"local_part": "info"}, headers=api.auth()).status_code == 201
    assert api.client.delete(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).status_code == 204
    assert resolve(api, f"info@{name}") is None


@pytest.fixture
def two_mailboxes_per_org(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setenv("SHIPMAIL_MAX_MAILBOXES_PER_ORG", "2")
    yield 2


def test_account_totals_and_the_mailbox_limit(two_mailboxes_per_org: int, api: ApiEnv) -> None:
    key = api.new_key(org=f"limited-{secrets.token_hex(3)}")
    dom = api.verified_domain(f"acct-{secrets.token_hex(4)}.example", key)
    batch = [{"address": f"m{i}", "password": PASSWORD} for i in range(3)]
    r = api.client.post("/v1/mailboxes/batch", json={"domain_id": dom["id"], "mailboxes": batch}, headers=api.auth(key))
    assert r.status_code == 403 and r.json()["error"]["type"] == "over_limit", r.text
    r = api.client.post(
        "/v1/mailboxes/batch", json={"domain_id": dom["id"], "mailboxes": batch[:2]}, headers=api.auth(key)
    )
    assert r.status_code == 201, r.text
    first, second = r.json()["data"]
    r = api.client.post(
        "/v1/mailboxes", json={"domain_id": dom["id"], "address": "m9", "password": PASSWORD}, headers=api.auth(key)
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "over_limit", r.text
    assert "2 of its 2 mailboxes" in r.json()["error"]["message"]

    assert lmtp_reply(api, first["address"], message(first["address"], "sized", "q" * 3000))[0] == 250
    api.client.patch(f"/v1/mailboxes/{first['id']}", json={"storage_quota_bytes": 1 << 20}, headers=api.auth(key))
    api.client.post(f"/v1/mailboxes/{second['id']}/suspend", headers=api.auth(key))
    api.client.post(f"/v1/mailboxes/{first['id']}/aliases", json={"local_part": "hi"}, headers=api.auth(key))
    account = api.client.get("/v1/account", headers=api.auth(key)).json()
    assert account["mailboxes"] == {"count": 2, "active": 1, "suspended": 1, "deletion_scheduled": 0, "limit": 2}
    assert account["storage"]["quota_bytes"] == 1 << 20 and account["storage"]["mailboxes_without_quota"] == 1
    assert 3000 < account["storage"]["used_bytes"] < 6000
    assert account["aliases"] == 1 and account["object"] == "account"


def test_account_counts_the_organisations_sends_and_deliveries_this_month(api: ApiEnv) -> None:
    key = api.new_key(org=f"sends-{secrets.token_hex(3)}")
    other = api.new_key(org=f"other-{secrets.token_hex(3)}")
    dom = api.verified_domain(f"sends-{secrets.token_hex(4)}.example", key)
    made = []
    for local in ("ann", "bob"):
        body = {"domain_id": dom["id"], "address": local, "password": PASSWORD}
        r = api.client.post("/v1/mailboxes", json=body, headers=api.auth(key))
        assert r.status_code == 201, r.text
        made.append(r.json())
    ann, bob = made
    # Another organisation's send counts for it, not for this one.
    outsider = api.new_mailbox(f"out-{secrets.token_hex(4)}.example", "eve", key=other, password=PASSWORD)
    empty = api.client.get("/v1/account", headers=api.auth(key)).json()["messages"]
    assert empty["sent_this_month"] == 0 and empty["received_this_month"] == 0
    assert empty["monthly_send_limit"] == 2 * api.settings.monthly_send_limit
    assert empty["month"] == time.strftime("%Y-%m", time.gmtime())

    sends = [(ann, bob), (ann, bob), (bob, ann), (outsider, ann)]
    for sender, rcpt in sends:
        who = other if sender is outsider else key
        body = {"from": sender["address"], "to": [rcpt["address"]], "subject": "count me", "text": "hi"}
        r = api.client.post("/v1/messages", json=body, headers=api.auth(who))
        assert r.status_code == 201, r.text
    deadline = time.monotonic() + 20
    while True:
        totals = api.client.get("/v1/account", headers=api.auth(key)).json()["messages"]
        if totals["received_this_month"] >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert totals["sent_this_month"] == 3
    assert totals["received_this_month"] == 4  # the outsider's message arrived here too
    per_mailbox = [api.client.get(f"/v1/mailboxes/{m['id']}", headers=api.auth(key)).json() for m in made]
    assert totals["sent_this_month"] == sum(m["monthly_send_count"] for m in per_mailbox)
    assert totals["received_this_month"] == sum(m["received_this_month"] for m in per_mailbox)
    assert api.client.get("/v1/account", headers=api.auth(other)).json()["messages"]["sent_this_month"] == 1
