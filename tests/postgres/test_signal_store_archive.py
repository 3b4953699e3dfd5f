"""The Postgres signal store (admf_signals.daily_signal_summary, range-partitioned by month) and
its archive: publish, detach + export + verify + drop, resume after a crash, checksum mismatch;
storage_health's Postgres figures. Runs against the real server (see conftest.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import admf_assets.core.archive as archive_mod
from admf_assets.core.archive import ArchiveLocation, ArchiveVerificationError, ManifestEntry, rows_checksum
from admf_assets.history import migrate
from admf_assets.lib.postgres_io import (
    SIGNAL_STORE_COLUMNS,
    DetachedPartitionError,
    archive_signal_store,
    publish_daily_summary,
    signal_store_arrow_schema,
    signal_store_partitions,
)

JUNE = [dt.date(2025, 6, d) for d in (26, 27, 30)]
JULY = [dt.date(2025, 7, d) for d in (1, 2, 3)]


def _rows(days, scale=1.0) -> pd.DataFrame:
    out = []
    for day in days:
        for symbol in ("AAPL", "SPY"):
            for i, stype in enumerate(("bollinger_bands", "rsi_bands")):
                out.append({"date": day, "symbol": symbol, "strategy_type": stype, "strategy_count": 10 + i, "signal_changes": 40 + day.day,
                            "trades_closed": 7, "wins": 4, "losses": 3, "net_pnl": scale * (0.001 * day.day - 0.01 * i), "avg_trade_return": None if i else 0.0004})
    return pd.DataFrame(out, columns=SIGNAL_STORE_COLUMNS)


@pytest.fixture
def store(make_database):
    url = make_database()
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    yield url, engine
    engine.dispose()


def _count(engine, where="TRUE", params=None):
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM admf_signals.daily_signal_summary WHERE {where}"), params or {}).scalar_one()


def test_signal_store_is_range_partitioned_by_month_and_publish_replaces(store):
    url, engine = store
    assert publish_daily_summary(url, _rows(JUNE + JULY), JUNE + JULY) == 24
    with engine.connect() as conn:
        strategy = conn.execute(sa.text(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'admf_signals.daily_signal_summary'::regclass")).scalar_one()
        assert strategy == "r"  # declarative RANGE partitioning
        assert signal_store_partitions(conn) == {
            "2025-06": ("daily_signal_summary_y2025m06", True), "2025-07": ("daily_signal_summary_y2025m07", True)}
        bounds = conn.execute(sa.text(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'daily_signal_summary_y2025m06'")).scalar_one()
        assert bounds == "FOR VALUES FROM ('2025-06-01') TO ('2025-07-01')"
        assert conn.execute(sa.text("SELECT count(*) FROM admf_signals.daily_signal_summary_y2025m07")).scalar_one() == 12
    # re-publishing days replaces their rows, never duplicates them
    publish_daily_summary(url, _rows(JULY[:1], scale=2.0), JULY[:1])
    assert _count(engine) == 24
    with engine.connect() as conn:
        pnl = conn.execute(sa.text("SELECT net_pnl FROM admf_signals.daily_signal_summary WHERE date = '2025-07-01' AND symbol = 'SPY' "
                                   "AND strategy_type = 'bollinger_bands'")).scalar_one()
    assert pnl == pytest.approx(2.0 * 0.001)
    # a partition-pruned plan: a July query touches only the July partition
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(sa.text(
            "EXPLAIN SELECT * FROM admf_signals.daily_signal_summary WHERE date = '2025-07-02'")))
    assert "y2025m07" in plan and "y2025m06" not in plan


def test_archive_detaches_exports_verifies_and_drops_past_months(store, tmp_path):
    url, engine = store
    publish_daily_summary(url, _rows(JUNE + JULY), JUNE + JULY)
    with engine.connect() as conn:
        june = pd.read_sql_query(sa.text("SELECT * FROM admf_signals.daily_signal_summary_y2025m06 ORDER BY date, symbol, strategy_type"), conn)
    archive = ArchiveLocation(tmp_path / "archive")
    recorded: list[ManifestEntry] = []
    moved = archive_signal_store(url, archive, dt.date(2025, 7, 10), record=recorded.extend)
    # June lies wholly before the cutoff; July does not. One archived partition (and manifest row) per day.
    assert [e.partition_key for e in moved] == [d.isoformat() for d in JUNE] and recorded == moved
    with engine.connect() as conn:
        assert signal_store_partitions(conn) == {"2025-07": ("daily_signal_summary_y2025m07", True)}
    assert _count(engine) == 12
    path = Path(tmp_path / "archive" / "postgres" / "daily_signal_summary" / "2025-06.parquet")
    exported = pq.read_table(path).drop_columns(["partition_date"])
    assert exported.num_rows == len(june) == 12
    assert [e.rows for e in moved] == [4, 4, 4]
    for entry, day in zip(moved, JUNE):
        day_rows = june[june["date"] == day].reset_index(drop=True)
        assert entry.checksum == rows_checksum(pa.Table.from_pandas(day_rows, schema=signal_store_arrow_schema(), preserve_index=False))
    assert sorted(exported.to_pandas()["date"].unique()) == JUNE
    assert archive.archived_days("postgres/daily_signal_summary", "daily_signal_summary") == {d: str(path) for d in JUNE}
    assert moved[0].source == "postgres:admf_signals.daily_signal_summary_y2025m06" and moved[0].target == str(path)
    # nothing more to move
    assert archive_signal_store(url, archive, dt.date(2025, 7, 10), record=recorded.extend) == []


def _june_left_detached(store, tmp_path) -> ArchiveLocation:
    """June and July published, then an archive run (cutoff 2025-08-01) that detaches and exports
    June and fails before the drop: June is out of the serving table but kept as a table."""
    url, engine = store
    publish_daily_summary(url, _rows(JUNE + JULY), JUNE + JULY)
    archive = ArchiveLocation(tmp_path / "archive")

    def crash(entries):
        raise RuntimeError("simulated crash after the export, before the drop")

    with pytest.raises(RuntimeError, match="simulated crash"):
        archive_signal_store(url, archive, dt.date(2025, 8, 1), record=crash)
    with engine.connect() as conn:
        assert signal_store_partitions(conn)["2025-06"] == ("daily_signal_summary_y2025m06", False)
        assert conn.execute(sa.text("SELECT count(*) FROM admf_signals.daily_signal_summary_y2025m06")).scalar_one() == 12
    return archive


def test_archive_resumes_after_a_crash_between_detach_and_drop(store, tmp_path, monkeypatch):
    url, engine = store
    archive = _june_left_detached(store, tmp_path)  # July not touched yet
    recorded = []
    moved = archive_signal_store(url, archive, dt.date(2025, 8, 1), record=recorded.extend)
    assert [e.partition_key for e in moved] == [d.isoformat() for d in JUNE + JULY]
    with engine.connect() as conn:
        assert signal_store_partitions(conn) == {}
    june = pq.read_table(tmp_path / "archive" / "postgres" / "daily_signal_summary" / "2025-06.parquet")
    assert june.num_rows == 12  # exported twice, stored once


def test_publishing_into_a_month_left_detached_is_refused_until_the_archive_finishes(store, tmp_path):
    """An archive run that detached (and exported) June, then failed before the drop, leaves
    admf_signals.daily_signal_summary_y2025m06 as a standalone table. Publishing a June day must
    not fail with PostgreSQL's bare "no partition of relation found for row" nor re-attach rows
    that are already archived: it is refused, naming the table and `admf archive run`, and writes
    nothing (not even the other month's days of the same publication). Once the archive run has
    finished the month, the day publishes into a fresh partition and is archived once."""
    url, engine = store
    archive = _june_left_detached(store, tmp_path)
    day = JUNE[1]
    with pytest.raises(DetachedPartitionError, match=r"admf_signals\.daily_signal_summary_y2025m06.*not attached.*admf archive run"):
        publish_daily_summary(url, _rows([day, JULY[0]], scale=3.0), [day, JULY[0]])
    with engine.connect() as conn:  # nothing written, nothing re-attached
        assert signal_store_partitions(conn)["2025-06"] == ("daily_signal_summary_y2025m06", False)
        assert conn.execute(sa.text("SELECT count(*) FROM admf_signals.daily_signal_summary_y2025m06")).scalar_one() == 12
        july_pnl = conn.execute(sa.text("SELECT sum(net_pnl) FROM admf_signals.daily_signal_summary WHERE date = :d"), {"d": JULY[0]}).scalar_one()
    assert july_pnl == pytest.approx(_rows([JULY[0]])["net_pnl"].sum())
    assert _count(engine) == 12  # July only: June is out of the serving table

    # the next archive run finishes the detached month even though its cutoff does not pass June
    recorded: list[ManifestEntry] = []
    moved = archive_signal_store(url, archive, dt.date(2025, 6, 15), record=recorded.extend)
    assert [e.partition_key for e in moved] == [d.isoformat() for d in JUNE]
    with engine.connect() as conn:
        assert signal_store_partitions(conn) == {"2025-07": ("daily_signal_summary_y2025m07", True)}

    # now the day publishes (a fresh June partition holding that day only) and archives once
    assert publish_daily_summary(url, _rows([day], scale=3.0), [day]) == 4
    assert _count(engine, "date = :d", {"d": day}) == 4 and _count(engine) == 16
    moved = archive_signal_store(url, archive, dt.date(2025, 7, 1), record=recorded.extend)
    assert [e.partition_key for e in moved] == [day.isoformat()]
    month = archive.read_month(archive.month_path("postgres/daily_signal_summary", "daily_signal_summary", "2025-06"))
    assert month.days() == JUNE and month.table.num_rows == 12  # each June row archived exactly once
    rows = month.table.to_pandas()
    assert rows[rows["date"] == day]["net_pnl"].tolist() == pytest.approx(_rows([day], scale=3.0)["net_pnl"].tolist())


def test_checksum_mismatch_keeps_the_detached_partition(store, tmp_path, monkeypatch):
    url, engine = store
    publish_daily_summary(url, _rows(JUNE), JUNE)
    real = ArchiveLocation.write_month

    def corrupting(self, path, month, expected=None):
        table = month.table
        pnl = table["net_pnl"].to_pylist()
        pnl[0] = (pnl[0] or 0.0) + 1e-9
        table = table.set_column(table.column_names.index("net_pnl"), "net_pnl", pa.array(pnl, pa.float64()))
        return real(self, path, archive_mod.MonthFile(table, month.partitions), expected)

    monkeypatch.setattr(ArchiveLocation, "write_month", corrupting)
    with pytest.raises(ArchiveVerificationError, match="2025-06.parquet.*checksum"):
        archive_signal_store(url, ArchiveLocation(tmp_path / "archive"), dt.date(2025, 7, 10), record=lambda e: None)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM admf_signals.daily_signal_summary_y2025m06")).scalar_one() == 12


def test_downgrade_removes_the_signal_store(store):
    url, engine = store
    publish_daily_summary(url, _rows(JUNE), JUNE)
    migrate.downgrade(url, "0001_run_history")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = 'admf_signals'")).scalar_one() == 0
    migrate.upgrade(url)
    assert _count(engine) == 0


def test_storage_health_reports_postgres_sizes_and_index_usage(store, tmp_path):
    from admf_assets.defs.operations.storage import storage_health
    from admf_assets.defs.resources import build_resources
    from admf_assets.lib.pipeline import with_overrides
    from admf_assets.lib.settings import Settings

    url, engine = store
    publish_daily_summary(url, _rows(JUNE), JUNE)
    settings = with_overrides(Settings.from_env(), workspace=str(tmp_path / "ws"), archive_url=str(tmp_path / "arch"),
                              postgres_url=url, postgres_warn_bytes=1000)
    with dg.instance_for_test() as instance:
        result = dg.materialize([storage_health], resources=build_resources(settings), instance=instance)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    assert abs(meta["pg_database_size"].value - size) < 5_000_000
    assert "daily_signal_summary_y2025m06" in meta["pg_tables"].value
    assert "ix_" in meta["pg_index_usage"].value or "pk_" in meta["pg_index_usage"].value
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "postgres_size"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def test_signal_store_asset_publishes_and_archive_job_records_postgres_moves(store, tmp_path):
    """End to end: DuckDB summaries -> signal_store asset -> execute_archive with the Postgres store."""
    import duckdb

    from admf_assets.core.warehouse import connect, replace_rows, transaction
    from admf_assets.defs.operations.archive import execute_archive
    from admf_assets.defs.operations.signal_store import signal_store
    from admf_assets.defs.resources import build_resources
    from admf_assets.lib.pipeline import with_overrides
    from admf_assets.lib.settings import Settings

    url, engine = store
    workspace = tmp_path / "ws"
    database = workspace / "analytics.duckdb"
    rows = _rows(JUNE + JULY)
    with connect(database) as conn, transaction(conn):
        replace_rows(conn, "daily_signal_summary", rows)
    settings = with_overrides(Settings.from_env(), workspace=str(workspace), archive_url=str(tmp_path / "arch"),
                              postgres_url=url, signal_store=True)
    with dg.instance_for_test() as instance:  # one single-run backfill over the six trading days
        tags = {"dagster/asset_partition_range_start": JUNE[0].isoformat(), "dagster/asset_partition_range_end": JULY[-1].isoformat()}
        result = dg.materialize([signal_store], tags=tags, resources=build_resources(settings), instance=instance)
        assert result.success and len(result.get_asset_materialization_events()) == 6
    assert _count(engine) == 24
    with engine.connect() as conn:
        stored = pd.read_sql_query(sa.text("SELECT date, symbol, strategy_type, net_pnl FROM admf_signals.daily_signal_summary ORDER BY 1, 2, 3"), conn)
    expected = rows.sort_values(["date", "symbol", "strategy_type"])[["date", "symbol", "strategy_type", "net_pnl"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)

    moved = execute_archive(root=str(workspace), archive_url=str(tmp_path / "arch"), database=str(database),
                            cutoffs={"bars": None, "traces": None, "summaries": dt.date(2025, 7, 2)}, postgres_url=url, run_id="test-run")
    kinds = sorted({(e.kind, e.partition_key) for e in moved})
    assert [k for k in kinds if k[0].startswith("postgres/")] == [("postgres/daily_signal_summary", d.isoformat()) for d in JUNE]
    assert ("tables/daily_signal_summary", "2025-07-01") in kinds and ("tables/daily_signal_summary", "2025-07-02") not in kinds
    with duckdb.connect(str(database), read_only=True) as conn:
        manifest = conn.execute("SELECT kind, partition_key, rows, run_id FROM archive_manifest WHERE kind LIKE 'postgres/%'").fetchall()
        assert sorted(manifest) == [("postgres/daily_signal_summary", d.isoformat(), 4, "test-run") for d in JUNE]
        assert conn.execute("SELECT count(*) FROM daily_signal_summary_all").fetchone()[0] == 24
        assert conn.execute("SELECT min(date) FROM daily_signal_summary").fetchone()[0] == dt.date(2025, 7, 2)
    assert _count(engine) == 12  # July stays in the serving table (not wholly past the cutoff)


def test_republishing_one_old_day_after_archiving_its_month_keeps_the_other_days(store, tmp_path):
    """Review defect 2: a backfill republishes one day of an archived month; the next archive run
    must replace only that day in the month file, and the manifest must keep every day's count."""
    import duckdb

    from admf_assets.defs.operations.archive import execute_archive

    url, engine = store
    june = [dt.date(2025, 6, d) for d in (2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 16, 17, 18, 20, 23, 24, 25, 26, 27, 30)]  # 20 sessions
    publish_daily_summary(url, _rows(june), june)
    workspace, archive_dir = tmp_path / "ws", tmp_path / "arch"
    database = workspace / "analytics.duckdb"
    cutoffs = {"bars": None, "traces": None, "summaries": dt.date(2025, 7, 10)}
    first = execute_archive(root=str(workspace), archive_url=str(archive_dir), database=str(database), cutoffs=cutoffs, postgres_url=url)
    assert len(first) == 20 and _count(engine) == 0

    # a backfill republishes 2025-06-13 (new values): the June partition is recreated with that day only
    day = dt.date(2025, 6, 13)
    publish_daily_summary(url, _rows([day], scale=3.0), [day])
    with engine.connect() as conn:
        assert signal_store_partitions(conn) == {"2025-06": ("daily_signal_summary_y2025m06", True)}
    second = execute_archive(root=str(workspace), archive_url=str(archive_dir), database=str(database), cutoffs=cutoffs, postgres_url=url)
    assert [e.partition_key for e in second] == ["2025-06-13"]

    archive = ArchiveLocation(archive_dir)
    path = archive.month_path("postgres/daily_signal_summary", "daily_signal_summary", "2025-06")
    month = archive.read_month(path)
    assert month.days() == june and month.table.num_rows == 20 * 4  # every earlier day still archived, once
    rows = month.table.to_pandas()
    assert sorted(rows["date"].unique()) == june
    republished = rows[rows["date"] == day].sort_values(["symbol", "strategy_type"])
    assert republished["net_pnl"].tolist() == pytest.approx(_rows([day], scale=3.0)["net_pnl"].tolist())
    untouched = rows[rows["date"] == dt.date(2025, 6, 2)].sort_values(["symbol", "strategy_type"])
    assert untouched["net_pnl"].tolist() == pytest.approx(_rows([dt.date(2025, 6, 2)])["net_pnl"].tolist())
    with duckdb.connect(str(database), read_only=True) as conn:
        manifest = conn.execute("SELECT partition_key, rows, checksum FROM archive_manifest WHERE kind = 'postgres/daily_signal_summary' "
                                "ORDER BY partition_key").fetchall()
    assert [(k, n) for k, n, _ in manifest] == [(d.isoformat(), 4) for d in june]
    for key, _, checksum in manifest:
        assert checksum == rows_checksum(month.partition(dt.date.fromisoformat(key))[0])


def test_a_month_file_of_the_first_archive_version_is_rekeyed_per_day(store, tmp_path):
    """Month files written before the per-day keys held the whole month under its first day; the
    next archive run of that month re-keys them, so no row is lost or stored twice."""
    url, engine = store
    archive = ArchiveLocation(tmp_path / "archive")
    target = archive.month_path("postgres/daily_signal_summary", "daily_signal_summary", "2025-06")
    legacy_rows = _rows(JUNE).assign(published_at=pd.Timestamp("2025-07-01 12:00:00.123456", tz="UTC").as_unit("us"))  # SELECT * of the month table
    old = pa.Table.from_pandas(legacy_rows, preserve_index=False)  # the first version: one partition, key 2025-06-01
    archive.merge_month(target, {dt.date(2025, 6, 1): (old, {b"admf.source": b"postgres:admf_signals.daily_signal_summary_y2025m06"})})
    day = JUNE[1]
    publish_daily_summary(url, _rows([day], scale=5.0), [day])
    recorded: list[ManifestEntry] = []
    moved = archive_signal_store(url, archive, dt.date(2025, 7, 10), record=recorded.extend)
    month = archive.read_month(target)
    assert month.days() == JUNE and month.table.num_rows == 12
    assert [e.partition_key for e in moved] == [d.isoformat() for d in JUNE] and [e.rows for e in moved] == [4, 4, 4]
    rows = month.table.to_pandas()
    assert rows[rows["date"] == day]["net_pnl"].tolist() == pytest.approx(_rows([day], scale=5.0)["net_pnl"].tolist())
    assert rows[rows["date"] == JUNE[0]]["net_pnl"].tolist() == pytest.approx(_rows([JUNE[0]])["net_pnl"].tolist())
