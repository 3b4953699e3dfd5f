"""Alembic upgrade -> downgrade -> upgrade on an empty database, checked in the catalogs."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from admf_assets.history import migrate
from admf_assets.history.models import INDEX_NAMES
from admf_assets.history.repository import make_engine

TABLES = {"backtest_runs", "performance_metrics"}


def _tables(conn) -> set[str]:
    rows = conn.execute(
        text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
    )
    return {r[0] for r in rows}


def _indexes(conn) -> dict[str, str]:
    rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    return {r[0]: r[1] for r in rows}


def test_upgrade_downgrade_upgrade(make_database):
    url = make_database()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert not (_tables(conn) & TABLES)
        assert migrate.current_revision(url) is None

        migrate.upgrade(url)
        assert migrate.current_revision(url) == migrate.head_revision()
        with engine.connect() as conn:
            assert TABLES <= _tables(conn)
            idx = _indexes(conn)
        for name in INDEX_NAMES.values():
            assert name in idx, name
        assert "gin (config_snapshot jsonb_path_ops)" in idx[INDEX_NAMES["config_gin"]]
        assert "(created_at DESC, id DESC)" in idx[INDEX_NAMES["created"]]
        assert "(strategy_name, created_at DESC, id DESC)" in idx[INDEX_NAMES["strategy"]]
        assert "(instrument_symbol, created_at DESC, id DESC)" in idx[INDEX_NAMES["symbol"]]
        assert "(sharpe_ratio DESC NULLS LAST, backtest_run_id)" in idx[INDEX_NAMES["sharpe"]]
        assert "UNIQUE" in idx["uq_backtest_runs_run_id"]
        assert "UNIQUE" in idx["uq_performance_metrics_backtest_run_id"]

        migrate.downgrade(url, "base")
        assert migrate.current_revision(url) is None
        with engine.connect() as conn:
            assert not (_tables(conn) & TABLES)
            assert not (set(_indexes(conn)) & set(INDEX_NAMES.values()))

        migrate.upgrade(url, "head")
        with engine.connect() as conn:
            assert TABLES <= _tables(conn)
            assert set(INDEX_NAMES.values()) <= set(_indexes(conn))
    finally:
        engine.dispose()


def test_schema_constraints(engine, clean):
    """The CHECK on config_snapshot, the FK cascade and the unique run id hold in the database."""
    insert = text(
        "INSERT INTO backtest_runs (run_id, strategy_name, strategy_type, instrument_symbol, start_date, end_date,"
        " config_snapshot, execution_status) VALUES (gen_random_uuid(), 's', 't', 'SPY', now(), now(),"
        " CAST(:snap AS jsonb), 'success') RETURNING id"
    )
    for bad in ([1, 2], {"type": "x"}, {"parameters": {}}, "text"):
        with pytest.raises(IntegrityError, match="ck_backtest_runs_config_snapshot_shape"):
            with engine.begin() as conn:
                conn.execute(insert, {"snap": json.dumps(bad)})
    with engine.begin() as conn:
        run_pk = conn.execute(insert, {"snap": json.dumps({"type": "x", "parameters": {}})}).scalar_one()
        conn.execute(text("INSERT INTO performance_metrics (backtest_run_id, sharpe_ratio) VALUES (:i, 1.0)"), {"i": run_pk})
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM backtest_runs WHERE id = :i"), {"i": run_pk})
        assert conn.execute(text("SELECT count(*) FROM performance_metrics")).scalar_one() == 0


def test_constraint_names(engine):
    with engine.connect() as conn:
        names = set(
            conn.execute(
                text(
                    "SELECT conname FROM pg_constraint WHERE conrelid IN "
                    "('backtest_runs'::regclass, 'performance_metrics'::regclass)"
                )
            ).scalars()
        )
    assert {
        "ck_backtest_runs_config_snapshot_shape",
        "ck_backtest_runs_execution_status_valid",
        "uq_backtest_runs_run_id",
        "fk_backtest_runs_reproduced_from_run_id_backtest_runs",
        "fk_performance_metrics_backtest_run_id_backtest_runs",
        "uq_performance_metrics_backtest_run_id",
    } <= names


def test_models_match_migration(engine):
    """Alembic autogenerate finds no difference between the models and the migrated schema."""
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from admf_assets.history.migrate import VERSION_TABLE
    from admf_assets.history.models import Base

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = compare_metadata(context, Base.metadata)
    assert diff == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {VERSION_TABLE}").scalar() == 1
