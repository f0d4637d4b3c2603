"""Fixtures for unit tests: an app on a fresh migrated SQLite database and a fake mail server."""

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
from shipmail.db.migrate import upgrade
from shipmail.services import keys as key_service
from tests.fakes import FakeMailServer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    return Settings.from_env(data_dir=tmp_path, database_url=url, secret_key=b"test-secret")


@pytest.fixture
def mail() -> FakeMailServer:
    return FakeMailServer()


@pytest.fixture
def client(settings: Settings, mail: FakeMailServer) -> Iterator[TestClient]:
    app = create_app(settings, mail_server=mail)  # type: ignore[arg-type]
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def make_key(settings: Settings, org: str = "acme", scopes: list[str] | None = None, **kw: Any) -> str:
    from shipmail.auth.scopes import parse_scopes

    async def go() -> str:
        db = Database(settings.database_url)
        try:
            async with db.session() as s:
                o = await key_service.ensure_organization(s, org)
                created = await key_service.create_key(
                    s, settings.secret_key, o.id, parse_scopes(scopes or ["*"]), **kw
                )
                return created.secret
        finally:
            await db.dispose()

    return asyncio.run(go())


def verify_domain(settings: Settings, name: str) -> None:
    from shipmail.services import domains

    async def go() -> None:
        db = Database(settings.database_url)
        try:
            async with db.session() as s:
                await domains.mark_verified(s, name)
        finally:
            await db.dispose()

    asyncio.run(go())


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
