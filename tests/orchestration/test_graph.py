"""The whole asset graph materialized through Dagster for 3 trading days x 2 symbols.

One module-scoped run (market data, analytics, daily summaries) on the bundled real sample;
each test checks files and rows a researcher relies on.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from admf_assets.core.api import compute_signal_traces, trace_metrics
from admf_assets.core.bars import load_symbol_bars
from admf_assets.core.grid import load_grid
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel
from admf_assets.lib.pipeline import code_location, run_graph, with_overrides
from admf_assets.lib.settings import Settings

DAYS = [dt.date(2025, 6, 4), dt.date(2025, 6, 5), dt.date(2025, 6, 6)]
SYMBOLS = ["AAPL", "SPY"]
TRACE_COLUMNS = ["idx", "ts", "sym", "val", "strat", "px", "strat_hash", "metadata"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return with_overrides(Settings.from_env(), workspace=str(tmp_path_factory.mktemp("graph") / "workspace"))


@pytest.fixture(scope="module")
def materialized(settings):
    with dg.instance_for_test() as instance:
        results = run_graph(instance, settings=settings, first_day=DAYS[0], last_day=DAYS[-1])
        yield {"results": results, "instance": instance}


@pytest.fixture(scope="module")
def layout(settings) -> WorkspaceLayout:
    return WorkspaceLayout(__import__("pathlib").Path(settings.workspace))


@pytest.fixture(scope="module")
def grid(settings):
    return load_grid(settings.grid_path)


def _db(layout):
    return duckdb.connect(str(layout.duckdb_file), read_only=True)


def test_three_runs_all_succeed(materialized):
    results = materialized["results"]
    assert list(results) == ["market_data_job", "analytics_job", "daily_summary_job"]
    assert all(r.success for r in results.values())
    # one single-run range: 3 days x 2 symbols x 3 assets materialized in ONE run
    market = results["market_data_job"]
    keys = {(e.asset_key.to_user_string(), e.partition) for e in market.get_asset_materialization_events()}
    assert len(keys) == 3 * 2 * 3
    assert ("signal_traces", "2025-06-05|SPY") in keys


def test_bar_partitions_hold_regular_session_only(materialized, layout):
    for symbol in SYMBOLS:
        files = layout.dated_files(layout.bars_dir(symbol, "5m"))
        assert list(files) == DAYS
        for day, path in files.items():
            bars = pq.read_table(path).to_pandas()
            assert len(bars) == 78
            ny = bars["ts"].dt.tz_convert("America/New_York")
            assert ny.iloc[0].strftime("%H:%M") == "09:30" and ny.iloc[-1].strftime("%H:%M") == "15:55"
            assert (bars["volume"] >= 0).all() and bars["volume"].iloc[0] > 0
            assert bars["ts"].is_monotonic_increasing and bars["ts"].is_unique


def test_signal_trace_files_follow_the_contract(materialized, layout, grid):
    path = layout.signals_file("SPY", "5m", DAYS[1])
    table = pq.read_table(path)
    assert table.column_names == TRACE_COLUMNS
    assert str(table.schema.field("val").type) == "int8"
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    df = table.to_pandas()
    assert df["idx"].between(0, 77).all()
    assert (df["px"] > 0).all()
    assert (df["sym"] == "SPY").all()
    # metadata JSON on each strategy's first row in the file only
    first = ~df["strat"].duplicated()
    assert df.loc[first, "metadata"].notna().all()
    assert df.loc[~first, "metadata"].isna().all()
    cfg = json.loads(df.loc[first, "metadata"].iloc[0])
    assert cfg["id"] == df.loc[first, "strat"].iloc[0] and cfg["hash"] == df.loc[first, "strat_hash"].iloc[0]
    # consecutive rows of a strategy always change value (sparse)
    same_strat = df["strat"].eq(df["strat"].shift())
    assert (df.loc[same_strat, "val"].to_numpy() != df["val"].shift()[same_strat].to_numpy()).all()
    meta = pq.read_schema(path).metadata
    assert json.loads(meta[b"admf.total_bars"]) == 78
    assert len(json.loads(meta[b"admf.configurations"])) == len(grid.strategies)
    assert float(meta[b"admf.compression_ratio"]) == pytest.approx(len(df) / (78 * len(grid.strategies)))
    # few files: one per (day, symbol), never one per strategy
    assert len(list((layout.root / "traces" / "signals").rglob("*.parquet"))) == len(DAYS) * len(SYMBOLS)


def test_day_partitions_equal_the_whole_history_computation(materialized, layout, grid, settings):
    bars, _ = load_symbol_bars(settings.landing_dir, "SPY")
    dates = bars["ts"].dt.tz_convert("America/New_York").dt.date
    bars = bars[dates.isin(DAYS)].reset_index(drop=True)
    whole = compute_signal_traces(bars, grid.strategies, symbol="SPY", timeframe="5m").to_pandas()
    parts = []
    for i, day in enumerate(DAYS):
        part = pq.read_table(layout.signals_file("SPY", "5m", day)).to_pandas()
        parts.append(part.assign(idx=part["idx"] + 78 * i))
    stitched = pd.concat(parts).sort_values(["strat", "idx"]).reset_index(drop=True)
    whole = whole.sort_values(["strat", "idx"]).reset_index(drop=True)
    cols = ["idx", "ts", "val", "strat", "px", "strat_hash"]
    pd.testing.assert_frame_equal(stitched[cols], whole[cols])
    # day 2 and 3 start with state carried in: strategies active since day 1 have no row at idx 0
    assert len(stitched) == len(whole) > 0


def test_strategy_performance_matches_the_python_api(materialized, layout, grid, settings):
    with _db(layout) as con:
        table = con.execute("SELECT * FROM strategies WHERE symbol = 'AAPL' ORDER BY strategy_id").df()
        n_all = con.execute("SELECT count(*) FROM strategies").fetchone()[0]
    assert n_all == len(SYMBOLS) * len(grid.strategies)
    bars, _ = load_symbol_bars(settings.landing_dir, "AAPL")
    bars = bars[bars["ts"].dt.tz_convert("America/New_York").dt.date.isin(DAYS)].reset_index(drop=True)
    api = trace_metrics(compute_signal_traces(bars, grid.strategies, symbol="AAPL", timeframe="5m"), bars, CostModel())
    merged = table.merge(api, on="strategy_id", suffixes=("", "_api"))
    # every strategy with at least one signal row appears in both, under the same id
    assert len(merged) == len(api) == int((table["signal_changes"] > 0).sum())
    from admf_assets.core.metrics import METRIC_COLUMNS

    for col in METRIC_COLUMNS:
        np.testing.assert_allclose(merged[col].astype(float), merged[f"{col}_api"].astype(float), rtol=1e-9, atol=1e-12, equal_nan=True)
    assert table["commission_bps"].eq(0.5).all() and table["slippage_bps"].eq(1.0).all()
    assert (table["gross_total_return"] >= table["total_return"] - 1e-12).all()


def test_strategy_index_answers_seed_001_queries(materialized, layout, grid):
    with duckdb.connect() as con:
        con.execute("SET file_search_path = ?", [str(layout.root)])
        index = con.execute("SELECT * FROM 'strategy_index.parquet'").df()
        assert len(index) == len(SYMBOLS) * len(grid.strategies)
        assert index["strategy_id"].is_unique
        boll = con.execute(
            "SELECT symbol, period, std_dev FROM 'strategy_index.parquet' "
            "WHERE strategy_type = 'bollinger_bands' AND period = 20 AND std_dev = 2.0 ORDER BY symbol"
        ).fetchall()
        assert boll == [("AAPL", 20, 2.0), ("SPY", 20, 2.0)]
        threshold = float(index["sharpe_ratio"].quantile(0.9))
        traces = con.execute(
            """
            SELECT t.strat, count(*) AS n
            FROM read_parquet('traces/signals/*/*.parquet') t
            JOIN 'strategy_index.parquet' i ON t.strat = i.strategy_id
            WHERE i.sharpe_ratio > ?
            GROUP BY t.strat
            """,
            [threshold],
        ).df()
    assert 0 < len(traces) <= int((index["sharpe_ratio"] > threshold).sum())
    # the warehouse view over the trace files (hot and, once archived, archived days) gives the
    # same rows as the file glob, with the series and trading day of each row
    with _db(layout) as con:
        by_view = con.execute(
            "SELECT series, partition_date, count(*) FROM signal_traces_all GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    con = duckdb.connect()
    con.execute("SET file_search_path = ?", [str(layout.root)])
    total = con.execute("SELECT count(*) FROM read_parquet('traces/signals/*/*.parquet')").fetchone()[0]
    assert sum(n for _, _, n in by_view) == total
    assert {(s, d) for s, d, _ in by_view} == {(f"{sym}_5m", day) for sym in SYMBOLS for day in DAYS}


def test_regime_parameter_and_daily_tables(materialized, layout, grid):
    with _db(layout) as con:
        regimes = con.execute("SELECT DISTINCT regime FROM regime_performance").df()["regime"].tolist()
        assert set(regimes) <= {"trending_up", "trending_down", "ranging", "high_volatility", "low_volatility",
                                "normal_volatility", "strong_momentum", "weak_momentum", "no_momentum"}
        assert con.execute("SELECT count(DISTINCT classifier_id) FROM regime_performance").fetchone()[0] == 3 * len(SYMBOLS)
        pa_rows = con.execute(
            "SELECT strategy_type, parameter_name, sum(count_strategies) FROM parameter_analysis GROUP BY ALL"
        ).fetchall()
        per_type = pd.Series([c.strategy_type for c in grid.strategies]).value_counts()
        for stype, _param, total in pa_rows:
            assert total == per_type[stype] * len(SYMBOLS)
        summary = con.execute("SELECT * FROM daily_signal_summary ORDER BY date, symbol, strategy_type").df()
    assert len(summary) == len(DAYS) * len(SYMBOLS) * 9
    # signal changes of a (date, symbol) equal the rows of that day's trace file
    for day in DAYS:
        rows = pq.read_metadata(layout.signals_file("SPY", "5m", day)).num_rows
        got = summary[(summary["date"] == pd.Timestamp(day)) & (summary["symbol"] == "SPY")]["signal_changes"].sum()
        assert got == rows
    assert (summary["wins"] + summary["losses"] <= summary["trades_closed"]).all()


def test_rematerializing_replaces_and_never_duplicates(materialized, layout, settings):
    location = code_location(settings)
    path = layout.signals_file("SPY", "5m", DAYS[1])
    before = pq.read_table(path)
    instance = materialized["instance"]
    for name, tags in [
        ("market_data_job", {"dagster/partition": "2025-06-05|SPY"}),
        ("analytics_job", {}),
        ("daily_summary_job", {"dagster/partition": "2025-06-05"}),
    ]:
        job = location.resolve_job_def(name)
        partition = tags.get("dagster/partition")
        result = job.execute_in_process(instance=instance, partition_key=partition) if partition else job.execute_in_process(instance=instance)
        assert result.success
    assert pq.read_table(path).equals(before)
    assert len(list(layout.signals_dir("SPY", "5m").glob("*"))) == len(DAYS)
    with _db(layout) as con:
        assert con.execute("SELECT count(*) FROM daily_signal_summary").fetchone()[0] == len(DAYS) * len(SYMBOLS) * 9
        assert con.execute("SELECT count(*) - count(DISTINCT strategy_id) FROM strategies").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


def test_materialization_metadata_is_informative(materialized):
    analytics = materialized["results"]["analytics_job"]
    perf = [e for e in analytics.get_asset_materialization_events() if e.asset_key.to_user_string() == "strategy_performance"]
    md = perf[0].materialization.metadata
    assert "top_10_by_sharpe" in md and "| strategy_id" in md["top_10_by_sharpe"].value
    assert md["rows"].value > 0
    checks = {c.check_name: c for c in materialized["results"]["market_data_job"].get_asset_check_evaluations()}
    assert set(checks) == {"bars_valid", "sessions_complete"}
    valid = checks["bars_valid"].metadata
    # validation covers the whole landing files (AAPL 4,644 + SPY 4,642 regular-session bars)
    assert valid["rows_checked_in_session"].value == 4644 + 4642
    market = [e for e in materialized["results"]["market_data_job"].get_asset_materialization_events() if e.asset_key.to_user_string() == "market_bars"]
    # each partition carries its own day's bars; the run's totals are under run_* names
    assert all(e.materialization.metadata["rows"].value == 78 for e in market)
    assert market[0].materialization.metadata["run_rows_written"].value == 3 * 2 * 78
    assert checks["bars_valid"].passed and valid["partitions_checked"].value == 3 * 2 and valid["failed_partitions"].value == 0
    assert valid["dropped_outside_session"].value > 0  # the sample's extended-hours rows
    assert checks["sessions_complete"].passed and checks["sessions_complete"].metadata["incomplete_sessions"].value == 0
