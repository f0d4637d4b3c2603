"""alembic environment: runs migrations on the URL set by :func:`shipmail.db.migrate.alembic_config`."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from shipmail.aliases import models as _aliases  # noqa: F401  (registers the tables)
from shipmail.app_passwords import models as _app_passwords  # noqa: F401
from shipmail.db import idempotency as _idempotency  # noqa: F401
from shipmail.db.engine import create_sync_engine
from shipmail.domains import models as _domains  # noqa: F401
from shipmail.events import models as _events  # noqa: F401
from shipmail.exports import models as _exports  # noqa: F401
from shipmail.forwarding import models as _forwarding  # noqa: F401
from shipmail.imports import models as _imports  # noqa: F401
from shipmail.inbox import models as _inbox  # noqa: F401
from shipmail.jobs import models as _jobs  # noqa: F401
from shipmail.keys import models as _keys  # noqa: F401
from shipmail.mailboxes import models as _mailboxes  # noqa: F401
from shipmail.messages import models as _messages  # noqa: F401
from shipmail.replydrafts import models as _replydrafts  # noqa: F401
from shipmail.webhooks import models as _webhooks  # noqa: F401

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = create_sync_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
