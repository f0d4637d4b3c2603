"""Persistence: sqlmodel tables, engines and the alembic migrations.

SQLite (through aiosqlite) is the embedded default; PostgreSQL (through psycopg 3) scales out.
The same URL is given in its synchronous form (``sqlite:///...``, ``postgresql+psycopg://...``);
:func:`shipmail.db.engine.async_url` derives the async driver.
"""
