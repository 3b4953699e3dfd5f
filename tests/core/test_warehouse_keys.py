"""Keys of the bulk-replaced warehouse tables: enforced by replace_rows instead of DDL constraints,
and warehouses created with the old PRIMARY KEY / UNIQUE / CREATE INDEX DDL migrated on connect."""

from __future__ import annotations


import duckdb
import pandas as pd
import pytest

from admf_assets.core.warehouse import TABLE_KEYS, TABLES, apply_schema, connect, replace_rows, transaction

# The DDL of these tables before the constraints were removed (strategies trimmed to a few columns).
OLD_DDL = """
CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, created_at TIMESTAMP);
CREATE TABLE strategies (
    strategy_id VARCHAR PRIMARY KEY, run_id VARCHAR REFERENCES runs(run_id), strategy_hash VARCHAR NOT NULL,
    strategy_type VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, sharpe_ratio DOUBLE,
    max_drawdown DOUBLE
);
CREATE INDEX idx_strategies_performance ON strategies(sharpe_ratio, max_drawdown);
CREATE INDEX idx_strategies_type ON strategies(strategy_type, symbol);
CREATE TABLE strategy_parameters (
    strategy_id VARCHAR NOT NULL, strategy_type VARCHAR NOT NULL, parameter_name VARCHAR NOT NULL,
    parameter_value DOUBLE NOT NULL, PRIMARY KEY (strategy_id, parameter_name)
);
CREATE TABLE run_strategies (
    run_id VARCHAR NOT NULL, strategy_id VARCHAR NOT NULL, strategy_hash VARCHAR NOT NULL, strategy_type VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, grid_id VARCHAR NOT NULL, config_hash VARCHAR NOT NULL,
    parameters JSON, sharpe_ratio DOUBLE, total_trades BIGINT, recorded_at TIMESTAMP, PRIMARY KEY (run_id, strategy_id)
);
CREATE INDEX idx_run_strategies_hash ON run_strategies(strategy_hash);
INSERT INTO runs VALUES ('r1', NULL), ('r2', NULL);
INSERT INTO strategies SELECT 'SPY_5m_sma_' || i, 'r1', 'h' || i, 'sma', 'SPY', '5m', i / 10, 0.1 FROM range(50) t(i);
INSERT INTO strategy_parameters SELECT 'SPY_5m_sma_' || i, 'sma', p, i FROM range(50) t(i), (VALUES ('fast'), ('slow')) v(p);
INSERT INTO run_strategies SELECT r, 'SPY_5m_sma_' || i, 'h' || i, 'sma', 'SPY', '5m', 'SPY_5m_g', 'g', NULL, i, 3, NULL
    FROM range(50) t(i), (VALUES ('r1'), ('r2')) v(r);
"""
MIGRATED = ("strategies", "strategy_parameters", "run_strategies")


def _strategies(ids, run_id="r1") -> pd.DataFrame:
    return pd.DataFrame(
        {"strategy_id": ids, "run_id": run_id, "strategy_hash": [f"h{i}" for i in ids], "strategy_type": "sma", "symbol": "SPY", "timeframe": "5m"}
    )


def _registry(run_id: str, ids) -> pd.DataFrame:
    return _strategies(ids, run_id).assign(grid_id="SPY_5m_g", config_hash="g")


def _contents(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def _key_constraints_and_indexes(conn) -> list[tuple]:
    return conn.execute(
        """SELECT table_name, constraint_type FROM duckdb_constraints()
           WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND list_contains(?, table_name)
           UNION ALL SELECT table_name, index_name FROM duckdb_indexes() WHERE list_contains(?, table_name)""",
        [list(TABLE_KEYS), list(TABLE_KEYS)],
    ).fetchall()


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "analytics.duckdb"
    with connect(path) as conn, transaction(conn):
        conn.execute("INSERT INTO runs (run_id) VALUES ('r1'), ('r2')")
        replace_rows(conn, "strategies", _strategies(["a", "b"]))
        replace_rows(conn, "run_strategies", _registry("r1", ["a", "b"]))
        replace_rows(conn, "run_strategies", _registry("r2", ["a"]), where="run_id = ?", params=["r2"])
    return path


def test_new_schema_has_no_key_constraints_on_bulk_tables(database):
    assert set(TABLE_KEYS) <= set(TABLES)
    with connect(database) as conn:
        assert _key_constraints_and_indexes(conn) == []
        kept = conn.execute("SELECT DISTINCT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'").fetchall()
        assert {"runs", "daily_signal_summary", "archive_manifest"} <= {t for (t,) in kept}


def test_duplicate_key_is_refused_and_nothing_is_written(database):
    with connect(database) as conn:
        before = _contents(conn, "strategies")
        bad = pd.DataFrame({"strategy_id": ["x", "a", "x", "a"], "strategy_type": "sma", "parameter_name": ["p", "q", "p", "q"], "parameter_value": 1.0})
        with pytest.raises(ValueError, match="duplicate") as error:
            with transaction(conn):
                replace_rows(conn, "strategies", _strategies(["c"]))
                replace_rows(conn, "strategy_parameters", bad)
        message = str(error.value)
        assert "strategy_parameters" in message and "(strategy_id, parameter_name)" in message
        assert "4 incoming row(s)" in message and "('a', 'q'), ('a', 'q')" in message
        assert _contents(conn, "strategies") == before
        assert _contents(conn, "strategy_parameters") == []


def test_null_key_is_refused(database):
    rows = pd.DataFrame({"strategy_id": ["a", "a"], "classifier_id": ["trend", "trend"], "regime": ["up", None], "sharpe_ratio": [1.0, 2.0]})
    with connect(database) as conn:
        with pytest.raises(ValueError, match=r"regime_performance: NULL in key \(strategy_id, classifier_id, regime\) in 1 incoming row\(s\), first: \('a', 'trend', None\)"):
            with transaction(conn):
                replace_rows(conn, "regime_performance", rows)
        assert _contents(conn, "regime_performance") == []
        with pytest.raises(ValueError, match="lack key column"):
            replace_rows(conn, "regime_performance", rows.drop(columns="regime"))


def test_where_replace_keeps_the_key_unique_table_wide(database):
    with connect(database) as conn:
        before = _contents(conn, "run_strategies")
        # rows of run r2 written under the delete of run r1 would duplicate r2's kept rows
        with pytest.raises(ValueError, match=r"run_strategies: duplicate key of rows kept by WHERE run_id = \? \(run_id, strategy_id\) in 1 incoming row\(s\), first: \('r2', 'a'\)"):
            with transaction(conn):
                replace_rows(conn, "run_strategies", _registry("r2", ["a"]), where="run_id = ?", params=["r1"])
        assert _contents(conn, "run_strategies") == before
        with transaction(conn):
            replace_rows(conn, "run_strategies", _registry("r1", ["a", "b", "c"]), where="run_id = ?", params=["r1"])
        counts = conn.execute("SELECT run_id, count(*) FROM run_strategies GROUP BY ALL ORDER BY ALL").fetchall()
        assert counts == [("r1", 3), ("r2", 1)]


def test_rematerializing_replaces_instead_of_duplicating(database):
    for _ in range(2):
        with connect(database) as conn, transaction(conn):
            assert replace_rows(conn, "strategies", _strategies(["a", "b", "c"])) == 3
            replace_rows(conn, "run_strategies", _registry("r1", ["a", "b", "c"]), where="run_id = ?", params=["r1"])
    with connect(database) as conn:
        assert conn.execute("SELECT list(strategy_id ORDER BY strategy_id) FROM strategies").fetchone()[0] == ["a", "b", "c"]
        assert conn.execute("SELECT count(*) FROM run_strategies").fetchone()[0] == 4


def test_old_ddl_is_migrated_on_connect_keeping_every_row(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(OLD_DDL)
        old = {t: _contents(conn, t) for t in MIGRATED}
        assert len(_key_constraints_and_indexes(conn)) == 6
    with connect(path) as conn:
        assert _key_constraints_and_indexes(conn) == []
        for table in MIGRATED:
            columns = [c for (c,) in conn.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table]).fetchall()]
            assert len(conn.execute(f"SELECT * FROM {table}").fetchall()) == len(old[table])
            if table == "strategies":  # new columns (from 010_analytics.sql and the current DDL) are NULL
                assert "deflated_sharpe_ratio" in columns
                kept = "strategy_id, run_id, strategy_hash, strategy_type, symbol, timeframe, sharpe_ratio, max_drawdown"
                assert conn.execute(f"SELECT {kept} FROM strategies ORDER BY ALL").fetchall() == old[table]
            else:
                assert _contents(conn, table) == old[table]
        fk = conn.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'strategies' AND constraint_type = 'FOREIGN KEY'").fetchone()[0]
        assert fk == 1
        tables = conn.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY 1").fetchall()
        contents = {t: _contents(conn, t) for t in MIGRATED}
    with connect(path) as conn:  # second connect: nothing to migrate, nothing rebuilt
        assert conn.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY 1").fetchall() == tables
        assert {t: _contents(conn, t) for t in MIGRATED} == contents
        oids = conn.execute("SELECT table_name, table_oid FROM duckdb_tables() ORDER BY 1").fetchall()
        assert apply_schema(conn) == []
        assert conn.execute("SELECT table_name, table_oid FROM duckdb_tables() ORDER BY 1").fetchall() == oids
        with transaction(conn):  # the migrated tables take the writer's replace
            replace_rows(conn, "strategy_parameters", pd.DataFrame({"strategy_id": ["a"], "strategy_type": "sma", "parameter_name": "p", "parameter_value": 1.0}))
        assert conn.execute("SELECT count(*) FROM strategy_parameters").fetchone()[0] == 1


def test_a_warehouse_with_the_current_schema_digest_skips_the_ddl(tmp_path, monkeypatch):
    """apply_schema records the schema digest; a later connection whose warehouse holds it runs no
    DDL, and one holding another digest (older DDL, or another migration version) runs it again."""
    from admf_assets.core import warehouse

    path = tmp_path / "wh.duckdb"
    with connect(path) as conn:  # new warehouse: DDL, digest recorded
        assert conn.execute("SELECT digest FROM admf_schema").fetchall() == [(warehouse.schema_digest(),)]
        assert set(TABLES) <= {t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}

    ddl = []  # the DDL text executed on a connection
    real_sql = warehouse.schema_sql()

    class Spy:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, *args):
            if sql == real_sql:
                ddl.append(sql)
            return self.conn.execute(sql, *args)

    def apply(conn):
        return warehouse.apply_schema(Spy(conn))

    with connect(path, apply_schema=False) as conn:
        assert apply(conn) == [] and ddl == []  # the digest matched: no DDL
        conn.execute("UPDATE admf_schema SET digest = 'an older schema'")
        assert apply(conn) == [] and len(ddl) == 1  # another digest: the DDL ran, the digest is recorded again
        assert conn.execute("SELECT digest FROM admf_schema").fetchall() == [(warehouse.schema_digest(),)]
        monkeypatch.setattr(warehouse, "MIGRATION_VERSION", "2: a migration changed without the DDL")
        assert apply(conn) == [] and len(ddl) == 2
        assert conn.execute("SELECT digest FROM admf_schema").fetchall() == [(warehouse.schema_digest(),)]
