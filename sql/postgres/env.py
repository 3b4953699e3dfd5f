"""Alembic environment of the run history.

Uses the connection passed in ``config.attributes["connection"]`` (see
``admf_assets.history.migrate``); otherwise connects to ``ADMF_POSTGRES_URL`` (or
``sqlalchemy.url`` of the ini file). Offline mode (``--sql``) renders SQL for that URL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from admf_assets.history.migrate import VERSION_TABLE
from admf_assets.history.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    from admf_assets.history.repository import normalize_url

    url = os.environ.get("ADMF_POSTGRES_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set ADMF_POSTGRES_URL (e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/admf)")
    return normalize_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
