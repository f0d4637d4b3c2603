"""Fixtures for unit tests: an app on a freshly migrated database and a fake mail server.

``settings`` is parametrised over the database backends of :mod:`tests.dbfixtures` for tests that
ask for ``db_backend``; others run on SQLite only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shipmail.app import create_app
from shipmail.config import Settings
from shipmail.db.engine import Database
from shipmail.keys import service as key_service
from tests.dbfixtures import BACKENDS, migrated_database
from tests.dnsserver import Zone, dns_server
from tests.fakes import FakeMailServer

#: What the unit tests' settings say customers' records must point at.
MX_HOST = "mx.shipmail.test"
OUTBOUND_HOST = "out.shipmail.test"


@pytest.fixture(scope="session")
def dns_served() -> Iterator[tuple[Zone, str]]:
    """The session's authoritative test DNS server (``tests.dnsserver``): ``(zone, "host:port")``."""
    with dns_server() as served:
        yield served


@pytest.fixture
def zone(dns_served: tuple[Zone, str]) -> Zone:
    """The test DNS server's zone, emptied for this test (and answering again)."""
    dns_served[0].clear()
    return dns_served[0]


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    backend = request.getfixturevalue("db_backend") if "db_backend" in request.fixturenames else "sqlite"
    with migrated_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings (e.g. rate limits)."""
    return {}


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, settings_overrides: dict[str, Any], dns_served: tuple[Zone, str]
) -> Settings:
    """The DNS checks ask the test DNS server (never the machine's resolver)."""
    values: dict[str, Any] = {
        "dns_resolver": dns_served[1],
        "dns_timeout": 1.0,
        "mx_host": MX_HOST,
        "outbound_host": OUTBOUND_HOST,
        **settings_overrides,
    }
    return Settings.from_env(data_dir=tmp_path, database_url=database_url, secret_key=b"test-secret", **values)


@pytest.fixture
def mail() -> FakeMailServer:
    return FakeMailServer()


@pytest.fixture
def client(settings: Settings, mail: FakeMailServer) -> Iterator[TestClient]:
    import httpx

    from tests.fakes import FakeJmap

    app = create_app(settings, mail_server=mail, jmap_transport=httpx.MockTransport(FakeJmap()))
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def key(settings: Settings) -> str:
    """A ``*`` key of organisation ``acme``."""
    return make_key(settings)


@pytest.fixture
def mbx(client: TestClient, settings: Settings, key: str) -> dict[str, Any]:
    """``hello@example.com`` on a verified domain, created through the API (a Mailbox object)."""
    dom = client.post("/v1/domains", json={"name": "example.com"}, headers=auth(key)).json()
    verify_domain(settings, "example.com")
    r = client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": "hello", "password": "CorrectHorse9"},
        headers=auth(key),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def run_db(settings: Settings, fn: Any) -> Any:
    """Run ``await fn(session)`` on the settings' database (outside the app)."""

    async def go() -> Any:
        db = Database(settings.database_url)
        try:
            async with db.session() as s:
                return await fn(s)
        finally:
            await db.dispose()

    return asyncio.run(go())


def make_key(settings: Settings, org: str = "acme", scopes: list[str] | None = None, **kw: Any) -> str:
    """A new API key (full secret) for organisation ``org``."""
    from shipmail.auth.scopes import parse_scopes

    async def go(s: Any) -> str:
        o = await key_service.ensure_organization(s, org)
        created = await key_service.create_key(s, settings.secret_key, o.id, parse_scopes(scopes or ["*"]), **kw)
        return created.secret

    return str(run_db(settings, go))


def verify_domain(settings: Settings, name: str) -> None:
    """Operator override: mark ``name`` verified."""
    from shipmail.domains import service as domains

    run_db(settings, lambda s: domains.mark_verified(s, name))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
