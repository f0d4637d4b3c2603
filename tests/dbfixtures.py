"""Database URLs for tests: SQLite always, PostgreSQL too when SHIPMAIL_TEST_POSTGRES_URL is set.

Each PostgreSQL use gets a schema of its own (``search_path`` in the URL), dropped afterwards, so
tests never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from shipmail.db.migrate import upgrade

POSTGRES_URL = os.environ.get("SHIPMAIL_TEST_POSTGRES_URL", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@contextmanager
def migrated_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of ``backend``; yields its (sync) URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shipmail.sqlite'}"
        upgrade(url)
        yield url
        return
    schema = "t_" + secrets.token_hex(6)
    base = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
