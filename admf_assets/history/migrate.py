"""Alembic migrations of the history schema, configured programmatically.

The Alembic script location is ``sql/postgres`` at the repository root (found relative to this
file, so ``admf db upgrade`` works from any working directory). The database URL is passed in
(CLI and tests read it from ``ADMF_POSTGRES_URL``); the migration runs on a connection handed to
``sql/postgres/env.py`` through ``Config.attributes``, so URLs containing ``%`` need no escaping.

Raises (all functions): :class:`admf_assets.history.repository.DatabaseUnavailableError` when
the server cannot be reached; :class:`~admf_assets.history.repository.InvalidInputError` for an
unknown revision (Alembic ``CommandError``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

SCRIPT_LOCATION = Path(__file__).resolve().parents[2] / "sql" / "postgres"
"""Folder holding ``env.py``, ``script.py.mako`` and ``versions/``."""


def alembic_config() -> Config:
    """An Alembic :class:`Config` pointing at :data:`SCRIPT_LOCATION` (no ini file needed)."""
    cfg = Config(str(SCRIPT_LOCATION / "alembic.ini"))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def _run(url_or_engine: str | Engine, action, *args) -> None:
    from alembic.util.exc import CommandError

    from admf_assets.history.repository import InvalidInputError, database_errors, make_engine

    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    cfg = alembic_config()
    try:
        with database_errors(engine):
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                action(cfg, *args)
    except CommandError as err:
        raise InvalidInputError(f"migration: {err}") from None
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def upgrade(url: str | Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default ``head``) in one transaction."""
    _run(url, command.upgrade, revision)


def downgrade(url: str | Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (``base`` drops every history table, ``-1`` one step)."""
    _run(url, command.downgrade, revision)


VERSION_TABLE = "admf_history_alembic_version"
"""Alembic's version table for these migrations. Not the default ``alembic_version``: Dagster's
own PostgreSQL storage keeps its schema version there, and both may share one database."""


def head_revision() -> str:
    """The newest revision id in ``sql/postgres/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(url: str | Engine) -> str | None:
    """The revision the database is at (``None`` when no migration was applied)."""
    from admf_assets.history.repository import database_errors, make_engine

    engine = make_engine(url) if isinstance(url, str) else url
    try:
        with database_errors(engine):
            with engine.connect() as conn:
                if not inspect(conn).has_table(VERSION_TABLE):
                    return None
                return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    finally:
        if isinstance(url, str):
            engine.dispose()
