"""Concurrent writes through the real HTTP stack: ``shipmail serve --workers 2`` (two API processes
sharing one database) against its own Cyrus, on SQLite and, when ``SHIPMAIL_TEST_POSTGRES_URL`` is
set, on PostgreSQL (issue 8, "Serialised settings" and "Real input").

* Settings race: 20 rounds of concurrent ``PUT …/rules``, ``PATCH …/auto-reply`` and
  ``PATCH …/spam-filter`` on one mailbox, from several HTTP clients. Every request answers 200 and,
  after each round, the active Sieve script on Cyrus (JMAP ``SieveScript/get`` plus the blob's
  download) is exactly :func:`shipmail.delivery.script.build_script` of the final database row.
* Create storm: 40 concurrent mailbox creates while settings changes and reads run, then 40
  concurrent deletes: every one answers 201 / 204 (the database used to answer
  "500 database is locked" for 7-12 of the 40 creates on SQLite).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from shipmail.config import Settings
from shipmail.db.engine import create_sync_engine
from shipmail.delivery.script import ScriptOptions, build_script
from shipmail.mailboxes.models import Mailbox
from shipmail.mailserver.cyrus import CyrusInstance
from shipmail.mailserver.cyrus_server import CyrusMailServer
from tests.dbfixtures import BACKENDS, migrated_database
from tests.integration.conftest import require_root
from tests.integration.serve_proc import ServeProcess

SIEVE_USING = ("urn:ietf:params:jmap:core", "https://cyrusimap.org/ns/jmap/sieve")
ROUNDS = 20


@dataclass
class Served:
    """A running ``shipmail serve`` with two workers, its database URL, a ``*`` key, and a client
    of its Cyrus (for the scripts it holds)."""

    serve: ServeProcess
    database_url: str
    key: str
    server: CyrusMailServer

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def row(self, mailbox_id: str) -> Mailbox:
        """The mailbox's row as committed now."""
        engine = create_sync_engine(self.database_url)
        try:
            with Session(engine) as session:
                row = session.get(Mailbox, mailbox_id)
                assert row is not None, mailbox_id
                return row
        finally:
            engine.dispose()

    def active_script(self, address: str) -> str:
        """The text of the account's active Sieve script on Cyrus (exactly one is active)."""
        access = self.server.jmap_access(address)
        auth = {"Authorization": access.authorization}
        body = {
            "using": list(SIEVE_USING),
            "methodCalls": [["SieveScript/get", {"accountId": address, "ids": None}, "s"]],
        }
        r = httpx.post(access.session_url, json=body, headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        ((name, result, _),) = r.json()["methodResponses"]
        assert name == "SieveScript/get", result
        active = [s for s in result["list"] if s["isActive"]]
        assert len(active) == 1, result["list"]
        base = access.session_url.rsplit("/jmap/", 1)[0]
        r = httpx.get(f"{base}/jmap/download/{address}/{active[0]['blobId']}/script.sieve", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        return r.text

    def expected_script(self, mailbox_id: str) -> str:
        return build_script(ScriptOptions.of(self.server.delivery_sieve(), self.row(mailbox_id)))

    def create_mailbox(self, http: httpx.Client, domain_id: str, local: str) -> dict[str, Any]:
        r = http.post("/v1/mailboxes", json={"domain_id": domain_id, "address": local, "generate_password": True})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def verified_domain(self, http: httpx.Client, name: str) -> str:
        r = http.post("/v1/domains", json={"name": name})
        assert r.status_code == 201, r.text
        self.serve.verify_domain(name)
        return str(r.json()["id"])


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_root("shipmail serve")
    backend = str(request.param)
    with migrated_database(backend, tmp_path_factory.mktemp("races")) as url:
        env = {
            "SHIPMAIL_RATELIMIT_READ": "100000/minute",
            "SHIPMAIL_RATELIMIT_WRITE": "100000/minute",
            # The point is the database: a mail server slowed down by this busy machine must not
            # turn into 503s that hide what the database does.
            "SHIPMAIL_JMAP_TIMEOUT": "15",
        }
        if backend != "sqlite":
            env["SHIPMAIL_DATABASE_URL"] = url
        serve = ServeProcess(f"shipmail-races-{backend}-", extra_env=env, workers=2)
        server: CyrusMailServer | None = None
        try:
            serve.start(timeout=60)
            database_url = url if backend != "sqlite" else f"sqlite:///{serve.data_dir / 'shipmail.db'}"
            settings = Settings.from_env(
                data_dir=serve.data_dir,
                database_url=database_url,
                secret_key=b"unused",
                jmap_port=serve.jmap_port,
                lmtp_port=serve.lmtp_port,
                imap_port=serve.imap_port,
            )
            server = CyrusMailServer.from_instance(CyrusInstance.from_settings(settings))
            yield Served(serve, database_url, serve.create_key(), server)
        finally:
            if server is not None:
                asyncio.run(server.aclose())
            print(serve.output())  # shown by pytest when a test failed
            serve.close()


def rules_body(tag: str) -> dict[str, Any]:
    return {
        "rules": [
            {
                "id": str(uuid.uuid4()),
                "name": f"rule {tag}",
                "enabled": True,
                "position": 0,
                "match_mode": "all",
                "stop": False,
                "conditions": [{"type": "subject_contains", "value": f"subject {tag}"}],
                "actions": [{"type": "star"}],
            }
        ]
    }


async def send_all(base_url: str, headers: dict[str, str], calls: list[tuple[str, str, Any]]) -> list[httpx.Response]:
    """Send every ``(method, path, json)`` at once, each on a connection of its own (so both
    workers get some), and return the responses in order."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits) as http:
        return list(await asyncio.gather(*(http.request(m, p, json=j) for m, p, j in calls)))


def test_concurrent_settings_changes_leave_the_script_of_the_final_row(served: Served) -> None:
    with httpx.Client(base_url=served.serve.base_url, headers=served.headers, timeout=30) as http:
        domain_id = served.verified_domain(http, f"race-{secrets.token_hex(3)}.example")
        mbx = served.create_mailbox(http, domain_id, "race")
    base = f"/v1/mailboxes/{mbx['id']}"
    for n in range(ROUNDS):
        calls: list[tuple[str, str, Any]] = []
        for i in range(2):
            tag = f"{n}.{i}"
            calls.append(("PUT", f"{base}/rules", rules_body(tag)))
            calls.append(("PATCH", f"{base}/auto-reply", {"enabled": True, "subject": f"Away {tag}", "body": tag}))
            calls.append(("PATCH", f"{base}/spam-filter", {"threshold": 1 + (2 * n + i) % 14}))
        responses = asyncio.run(send_all(served.serve.base_url, served.headers, calls))
        assert [r.status_code for r in responses] == [200] * len(calls), [r.text for r in responses]
        assert served.active_script(mbx["address"]) == served.expected_script(mbx["id"]), f"round {n}"


def test_concurrent_creates_and_deletes_under_load_all_succeed(served: Served) -> None:
    with httpx.Client(base_url=served.serve.base_url, headers=served.headers, timeout=30) as http:
        domain_id = served.verified_domain(http, f"storm-{secrets.token_hex(3)}.example")
        busy = served.create_mailbox(http, domain_id, "busy")
    base = f"/v1/mailboxes/{busy['id']}"
    creates: list[tuple[str, str, Any]] = [
        ("POST", "/v1/mailboxes", {"domain_id": domain_id, "address": f"s{i}", "generate_password": True})
        for i in range(40)
    ]
    load: list[tuple[str, str, Any]] = []
    for i in range(10):
        load.append(("PATCH", f"{base}/spam-filter", {"threshold": 1 + i}))
        load.append(("GET", f"/v1/mailboxes?domain_id={domain_id}", None))
    responses = asyncio.run(send_all(served.serve.base_url, served.headers, creates + load))
    statuses = [r.status_code for r in responses]
    assert statuses[:40] == [201] * 40, [r.text for r in responses[:40] if r.status_code != 201]
    assert statuses[40:] == [200] * len(load), [r.text for r in responses[40:] if r.status_code != 200]
    created = [r.json() for r in responses[:40]]
    assert sorted(m["address"] for m in created) == sorted(f"s{i}@{busy['address'].split('@')[1]}" for i in range(40))
    for m in created[:3]:  # each new mailbox got its delivery script
        assert served.active_script(m["address"]) == served.expected_script(m["id"])

    deletes: list[tuple[str, str, Any]] = [("DELETE", f"/v1/mailboxes/{m['id']}", None) for m in created]
    load = []
    for i in range(10):
        load.append(("PATCH", f"{base}/auto-reply", {"enabled": True, "body": f"away {i}"}))
        load.append(("GET", f"{base}/rules", None))
    responses = asyncio.run(send_all(served.serve.base_url, served.headers, deletes + load))
    statuses = [r.status_code for r in responses]
    assert statuses[:40] == [204] * 40, [r.text for r in responses[:40] if r.status_code != 204]
    assert statuses[40:] == [200] * len(load), [r.text for r in responses[40:] if r.status_code != 200]
    with httpx.Client(base_url=served.serve.base_url, headers=served.headers, timeout=30) as http:
        left = http.get("/v1/mailboxes", params={"domain_id": domain_id, "limit": 100}).json()["data"]
    assert [m["id"] for m in left] == [busy["id"]]
    assert served.active_script(busy["address"]) == served.expected_script(busy["id"])


def test_concurrent_reply_state_updates_with_one_version_one_wins(served: Served) -> None:
    """Issue 11: updates of one thread's reply state sent at once with the same
    ``expected_reply_version``: exactly one answers 200 (the first one inserts the row, later
    rounds update it), every other 409, and the version moves on by exactly one."""
    import smtplib

    with httpx.Client(base_url=served.serve.base_url, headers=served.headers, timeout=30) as http:
        domain_id = served.verified_domain(http, f"queue-{secrets.token_hex(3)}.example")
        mbx = served.create_mailbox(http, domain_id, "queue")
        message = (
            f"From: ann@sender.example\r\nTo: {mbx['address']}\r\nSubject: Race\r\n"
            f"Message-ID: <race-{secrets.token_hex(4)}@sender.example>\r\n\r\nHello.\r\n"
        ).encode()
        with smtplib.LMTP("127.0.0.1", served.serve.lmtp_port, timeout=15) as lmtp:
            assert lmtp.sendmail("ann@sender.example", [mbx["address"]], message) == {}
        listed = http.get(f"/v1/mailboxes/{mbx['id']}/inbox/threads").json()["data"]
        (thread,) = listed
        url = f"/v1/mailboxes/{mbx['id']}/inbox/threads/{thread['id']}"
        version = thread["reply_version"]
        states = ["resolved", "no_reply_expected", "needs_reply"]
        for _ in range(3):
            calls: list[tuple[str, str, Any]] = [
                ("PATCH", url, {"reply_state": states[i % 3], "expected_reply_version": version}) for i in range(8)
            ]
            responses = asyncio.run(send_all(served.serve.base_url, served.headers, calls))
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] + [409] * 7, [
                (r.status_code, r.text[:300]) for r in responses if r.status_code != 409
            ]
            (won,) = [r.json() for r in responses if r.status_code == 200]
            assert won["reply_version"] == version + 1
            now = http.get(url).json()
            assert (now["reply_state"], now["reply_version"]) == (won["reply_state"], version + 1)
            version += 1


def test_database_files_are_private(served: Served) -> None:
    """The SQLite file and its WAL and shared-memory files, made by ``serve`` under the default
    umask, are 0600 (they hold every tenant's data and the password hashes). With PostgreSQL no
    SQLite file is made at all."""
    files = [served.serve.data_dir / name for name in ("shipmail.db", "shipmail.db-wal", "shipmail.db-shm")]
    if not served.database_url.startswith("sqlite"):
        assert [p for p in files if p.exists()] == []
        return
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o600" for p in files}
