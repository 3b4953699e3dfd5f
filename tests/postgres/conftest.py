"""PostgreSQL test setup: a real server, never mocked.

``ADMF_POSTGRES_URL`` names the server (e.g. ``postgresql+psycopg2://postgres@127.0.0.1:5432/test``).
When it is unset or the server is unreachable, every test here is skipped with the reason,
except under ``CI=true``, where that is an error. Each session creates uniquely named databases
``admf_test_<random>`` through the ``postgres`` maintenance database and drops them at the end.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admf_assets.history import migrate
from admf_assets.history.repository import make_engine, normalize_url

URL_ENV = "ADMF_POSTGRES_URL"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"PostgreSQL tests cannot run under CI=true: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The psycopg2 URL of the server, checked to answer (skip/fail otherwise)."""
    raw = os.environ.get(URL_ENV, "").strip()
    if not raw:
        _unavailable(f"{URL_ENV} is not set")
    url = normalize_url(raw)
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # any connection failure
        _unavailable(f"cannot connect to {make_url(url).render_as_string()}: {str(err).splitlines()[0]}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def make_database(pg_server_url):
    """Factory: ``make_database() -> url`` of a new empty database, dropped at session end."""
    admin_url = make_url(pg_server_url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def factory() -> str:
        name = f"admf_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        created.append(name)
        return make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)

    yield factory
    with admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def db_url(make_database) -> str:
    """A session database migrated to head."""
    url = make_database()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clean(engine):
    """Empty history tables before the test."""
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE performance_metrics, backtest_runs RESTART IDENTITY CASCADE")
    return engine
