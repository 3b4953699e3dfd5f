"""Sensors (retention, landing files), the calendar-aware schedule, storage_health and `admf backfill`."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from admf_assets.core.bars import bundled_sample_dir
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.defs.operations.archive import execute_archive, retention_sensor
from admf_assets.defs.operations.landing import landing_sensor
from admf_assets.defs.operations.storage import storage_health
from admf_assets.defs.resources import build_resources
from admf_assets.lib.pipeline import code_location, with_overrides

from .conftest import DAYS, SYMBOLS


def _tick(sensor, settings, cursor=None, **overrides):
    resources = build_resources(settings)
    with dg.build_sensor_context(cursor=cursor, resources=resources, **overrides) as context:
        result = sensor(context)
        return result, context.cursor


def test_retention_sensor_run_key_names_cutoffs_and_is_not_repeated(ops_settings):
    result, _ = _tick(retention_sensor, ops_settings)
    (request,) = result.run_requests
    assert request.run_key.startswith("archive-bars2025-06-10-summaries2025-06-10-traces2025-06-09-")
    ops = request.run_config["ops"]["archive_partitions"]["config"]
    assert ops == {"bars_before": "2025-06-10", "traces_before": "2025-06-09", "summaries_before": "2025-06-10", "include_restored": False}
    cursor = json.loads(result.cursor)
    assert cursor["run_key"] == request.run_key and cursor["partitions"] == 2 * 4 + 2 * 3 * 2 + 4

    # a repeated tick with the cursor requests nothing
    again, _ = _tick(retention_sensor, ops_settings, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason) and "already requested" in again.skip_message
    # a tick that lost its cursor (crash) plans the same run key, which Dagster launches once
    lost, _ = _tick(retention_sensor, ops_settings)
    assert lost.run_requests[0].run_key == request.run_key

    # a stricter policy is a new cutoff, hence a new run key
    stricter, _ = _tick(retention_sensor, with_overrides(ops_settings, retain_traces_days=2), cursor=result.cursor)
    assert stricter.run_requests[0].run_key.startswith("archive-bars2025-06-10-summaries2025-06-10-traces2025-06-10-")

    # once archived, nothing is past retention
    execute_archive(root=ops_settings.workspace, archive_url=ops_settings.archive_url,
                    database=str(WorkspaceLayout(Path(ops_settings.workspace)).duckdb_file),
                    cutoffs={"bars": DAYS[-2], "traces": DAYS[-3], "summaries": DAYS[-2]})
    done, _ = _tick(retention_sensor, ops_settings, cursor=result.cursor)
    assert isinstance(done, dg.SkipReason) and "nothing past retention" in done.skip_message


def test_retention_sensor_is_running_by_default():
    defs = code_location()
    assert defs.resolve_sensor_def("retention_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_job_def("archive_job")


@pytest.mark.parametrize(
    "when, expect_run",
    [(dt.datetime(2025, 7, 3, 17, 30), True), (dt.datetime(2025, 7, 4, 17, 30), False), (dt.datetime(2025, 6, 19, 17, 30), False)],
)
def test_newest_trading_day_schedule_skips_exchange_holidays(when, expect_run):
    schedule = code_location().resolve_schedule_def("newest_trading_day_schedule")
    at = pd.Timestamp(when, tz="America/New_York").to_pydatetime()
    with dg.build_schedule_context(scheduled_execution_time=at) as context:
        result = schedule.evaluate_tick(context)
    if expect_run:
        (request,) = result.run_requests
        assert request.run_key == f"newest-trading-day-{when.date()}"
        assert request.tags["dagster/asset_partition_range_start"] == f"{when.date()}|AAPL"
        assert request.tags["dagster/asset_partition_range_end"] == f"{when.date()}|SPY"
    else:
        assert not result.run_requests
        assert "not a trading session" in result.skip_message


@pytest.fixture
def landing(tmp_path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    for symbol in SYMBOLS:
        shutil.copy(bundled_sample_dir() / f"{symbol}_5m.csv", folder / f"{symbol}_5m.csv")
    return folder


def test_landing_sensor_requests_the_days_of_new_or_changed_files(ops_settings, landing):
    settings = with_overrides(ops_settings, landing_dir=str(landing))
    first, cursor = _tick(landing_sensor, settings)
    # first tick: every landing day not stored yet (the workspace holds DAYS), as one contiguous range
    (request,) = first.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2025-06-12|AAPL"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-08-28|SPY"
    assert request.job_name in (None, "newest_trading_day_job")
    assert set(json.loads(first.cursor)) == {"AAPL_5m.csv", "SPY_5m.csv"}

    # nothing changed: nothing requested
    again, _ = _tick(landing_sensor, settings, cursor=first.cursor)
    assert isinstance(again, dg.SkipReason)

    # a changed file (new mtime): every day it covers, stored or not, under a new run key
    st = (landing / "SPY_5m.csv").stat()
    os.utime(landing / "SPY_5m.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed, _ = _tick(landing_sensor, settings, cursor=first.cursor)
    (request2,) = changed.run_requests
    assert request2.tags["dagster/asset_partition_range_start"] == "2025-06-04|AAPL"
    assert request2.tags["dagster/asset_partition_range_end"] == "2025-08-28|SPY"
    assert request2.run_key != request.run_key and request2.tags["admf/landing_files"] == "SPY_5m.csv"

    # a broken new file: skipped with the reason, the cursor stays, so it is retried once fixed
    (landing / "QQQ_5m.csv").write_text("timestamp,open,high,low,close,volume\nnot-a-date,1,1,1,1,1\n")
    with open(landing / "SPY_5m.csv", "a") as fh:
        fh.write("garbage,row\n")
    broken, kept = _tick(landing_sensor, settings, cursor=changed.cursor)
    assert isinstance(broken, dg.SkipReason) and "SPY_5m.csv" in broken.skip_message
    assert kept == changed.cursor  # the cursor did not move past the broken file
    # ... and once the file is fixed, the next tick requests its days
    shutil.copy(bundled_sample_dir() / "SPY_5m.csv", landing / "SPY_5m.csv")
    st = (landing / "SPY_5m.csv").stat()
    os.utime(landing / "SPY_5m.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 3 * 10**9))
    fixed, _ = _tick(landing_sensor, settings, cursor=kept)
    (request3,) = fixed.run_requests
    assert request3.tags["admf/landing_files"].split(",") == ["QQQ_5m.csv", "SPY_5m.csv"]
    assert request3.tags["dagster/asset_partition_range_start"] == "2025-06-04|AAPL"
    assert request3.tags["dagster/asset_partition_range_end"] == "2025-08-28|SPY"
    assert json.loads(fixed.cursor)["SPY_5m.csv"] != json.loads(changed.cursor)["SPY_5m.csv"]


def test_landing_sensor_requests_ranges_oldest_first(ops_settings, landing):
    """A day without bars for every symbol splits the landing days into ranges; the run requests
    come oldest range first (runs tagged admf/writes=market_data start in submission order)."""
    aapl = landing / "AAPL_5m.csv"
    lines = aapl.read_text().splitlines(keepends=True)
    aapl.write_text("".join(line for line in lines if not line.startswith("2025-07-15")))
    result, _ = _tick(landing_sensor, with_overrides(ops_settings, landing_dir=str(landing)))
    ranges = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in result.run_requests]
    assert ranges == [("2025-06-12|AAPL", "2025-07-14|SPY"), ("2025-07-16|AAPL", "2025-08-28|SPY")]


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for sub in ("bars", "traces") for p in (root / sub).rglob("*") if p.is_file())


def test_storage_health_measures_sizes_rows_growth_and_warns(ops_settings):
    tiny = with_overrides(ops_settings, storage_warn_bytes=1000, storage_growth_warn_bytes_per_day=1, postgres_url="")
    resources = build_resources(tiny)
    root = Path(ops_settings.workspace)
    with dg.instance_for_test() as instance:
        result = dg.materialize([storage_health], resources=resources, instance=instance)
        assert result.success  # WARN checks never fail the run
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        duck = root / "analytics.duckdb"
        expected_parquet = _tree_bytes(root) + (root / "strategy_index.parquet").stat().st_size
        assert meta["hot_parquet_bytes"].value == expected_parquet
        assert meta["duckdb_bytes"].value > 0
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not checks["hot_storage_size"].passed and checks["hot_storage_size"].severity == dg.AssetCheckSeverity.WARN
        assert checks["hot_storage_growth"].passed  # no snapshot an hour older yet
        assert checks["postgres_size"].passed  # no Postgres configured

        with duckdb.connect(str(duck)) as conn:
            snap = conn.execute("SELECT metric, value FROM storage_health_history").df().set_index("metric")["value"]
            assert snap["rows.daily_signal_summary"] == conn.execute("SELECT count(*) FROM daily_signal_summary").fetchone()[0]
            assert snap["files.signal_traces"] == len(DAYS) * len(SYMBOLS)
            # an older snapshot (two days ago, 2 MB smaller): growth is about 1 MB per day
            two_days_ago = pd.Timestamp.now(tz="UTC").tz_localize(None) - pd.Timedelta(days=2)
            conn.execute("INSERT INTO storage_health_history VALUES (?, 'bytes.hot_total', ?)", [two_days_ago, snap["bytes.hot_total"] - 2_000_000])
        second = dg.materialize([storage_health], resources=resources, instance=instance)
        meta2 = second.get_asset_materialization_events()[0].materialization.metadata
        growth = meta2["hot_growth_bytes_per_day"].value
        expected = (meta2["hot_bytes"].value - (snap["bytes.hot_total"] - 2_000_000)) / 2.0  # bytes since that snapshot / 2 days
        assert growth == pytest.approx(expected, rel=1e-3) and growth > 0.9e6
        checks2 = {e.check_name: e for e in second.get_asset_check_evaluations()}
        assert not checks2["hot_storage_growth"].passed and checks2["hot_storage_growth"].severity == dg.AssetCheckSeverity.WARN

    roomy = with_overrides(ops_settings, postgres_url="")
    with dg.instance_for_test() as instance:
        ok = dg.materialize([storage_health], resources=build_resources(roomy), instance=instance)
        assert all(e.passed for e in ok.get_asset_check_evaluations())


def test_backfill_command_runs_as_few_runs_as_the_policies_allow(tmp_path, ops_grid, monkeypatch):
    for name, value in {"ADMF_WORKSPACE": str(tmp_path / "ws"), "ADMF_GRID": str(ops_grid), "ADMF_ARCHIVE_URL": str(tmp_path / "arch")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    from admf_assets.cli.main import app

    runner = CliRunner()
    bad = runner.invoke(app, ["backfill", "--from", "2025-06-05", "--to", "2025-06-04"])
    assert bad.exit_code == 2 and "before --from" in bad.output
    bad = runner.invoke(app, ["backfill", "--from", "2025-06-04", "--to", "2025-06-05", "--symbol", "XYZ"])
    assert bad.exit_code == 2 and "unknown symbol" in bad.output

    out = runner.invoke(app, ["backfill", "--from", "2025-06-04", "--to", "2025-06-05"])
    assert out.exit_code == 0, out.output
    assert "3 run(s)" in out.output and "FAILED" not in out.output
    layout = WorkspaceLayout(tmp_path / "ws")
    for symbol in SYMBOLS:
        assert list(layout.dated_files(layout.signals_dir(symbol, "5m"))) == [dt.date(2025, 6, 4), dt.date(2025, 6, 5)]

    # one symbol: one date x symbol rectangle, still one market-data run
    out = runner.invoke(app, ["backfill", "--from", "2025-06-06", "--to", "2025-06-09", "--symbol", "spy"])
    assert out.exit_code == 0, out.output
    assert "market_data_job 2025-06-06..2025-06-09 x SPY..SPY" in out.output and "3 run(s)" in out.output
    assert list(layout.dated_files(layout.signals_dir("SPY", "5m")))[-2:] == [dt.date(2025, 6, 6), dt.date(2025, 6, 9)]
    assert dt.date(2025, 6, 6) not in layout.dated_files(layout.signals_dir("AAPL", "5m"))


def test_backfill_graphql_params_select_ranges():
    from admf_assets.cli.operations import backfill_params

    full = backfill_params(["2025-06-04", "2025-06-05"], ["AAPL", "SPY"], ["AAPL", "SPY"])
    bars = next(p for p in full["partitionsByAssets"] if p["assetKey"]["path"] == ["market_bars"])
    assert bars["partitions"]["ranges"] == [{"start": "2025-06-04|AAPL", "end": "2025-06-05|SPY"}]
    summary = next(p for p in full["partitionsByAssets"] if p["assetKey"]["path"] == ["daily_signal_summary"])
    assert summary["partitions"]["ranges"] == [{"start": "2025-06-04", "end": "2025-06-05"}]
    # every asset of the jobs, strategy_correlations (analytics_job) included; nothing twice
    paths = [p["assetKey"]["path"][0] for p in full["partitionsByAssets"]]
    assert sorted(paths) == sorted(["market_bars", "signal_traces", "classifier_states", "daily_signal_summary", "strategy_performance",
                                    "regime_performance", "parameter_analysis", "strategy_index", "strategy_correlations"])
    unpartitioned = {p["assetKey"]["path"][0] for p in full["partitionsByAssets"] if "partitions" not in p}
    assert "strategy_correlations" in unpartitioned and "market_bars" not in unpartitioned
    subset = backfill_params(["2025-06-04", "2025-06-05"], ["SPY"], ["AAPL", "SPY"])
    bars = next(p for p in subset["partitionsByAssets"] if p["assetKey"]["path"] == ["market_bars"])
    assert bars["partitions"]["ranges"] == [{"start": "2025-06-04|SPY", "end": "2025-06-05|SPY"}]
    # a trading day left out (no landing bars) splits the ranges: it is never requested
    gap = backfill_params(["2025-06-04", "2025-06-06"], ["AAPL", "SPY"], ["AAPL", "SPY"])
    bars = next(p for p in gap["partitionsByAssets"] if p["assetKey"]["path"] == ["market_bars"])
    assert bars["partitions"]["ranges"] == [{"start": "2025-06-04|AAPL", "end": "2025-06-04|SPY"},
                                            {"start": "2025-06-06|AAPL", "end": "2025-06-06|SPY"}]
    summary = next(p for p in gap["partitionsByAssets"] if p["assetKey"]["path"] == ["daily_signal_summary"])
    assert summary["partitions"]["ranges"] == [{"start": "2025-06-04", "end": "2025-06-04"}, {"start": "2025-06-06", "end": "2025-06-06"}]


def test_symbol_groups_are_adjacent_runs_in_partition_order():
    from admf_assets.lib.partitions import day_symbol, symbol_groups

    everyone = ["AAPL", "GLD", "MSFT", "QQQ", "SPY"]
    assert symbol_groups(["SPY", "GLD", "AAPL", "QQQ"], everyone) == [["AAPL", "GLD"], ["QQQ", "SPY"]]
    assert symbol_groups(everyone, everyone) == [everyone]
    # the range of a group is the date x symbol rectangle (what one run materializes)
    keys = day_symbol.get_partition_keys_in_range(dg.PartitionKeyRange("2025-06-04|SPY", "2025-06-05|SPY"))
    assert keys == ["2025-06-04|SPY", "2025-06-05|SPY"]


def test_automation_sensor_targets_signal_store_when_the_store_is_on():
    """signal_store's automation condition is only evaluated if the automation sensor targets it."""
    from admf_assets.defs.operations.signal_store import signal_store
    from admf_assets.defs.pipeline.jobs import automation_sensor, automation_target

    loaded = code_location()
    graph = dg.Definitions(assets=[*loaded.assets, signal_store], resources=loaded.resources).resolve_asset_graph()
    on = automation_target(True).resolve(graph)
    assert on == {dg.AssetKey("daily_signal_summary"), dg.AssetKey("signal_store")}
    assert automation_target(False).resolve(graph) == {dg.AssetKey("daily_signal_summary")}
    assert isinstance(signal_store.automation_conditions_by_key[dg.AssetKey("signal_store")], dg.AutomationCondition)
    # the loaded code location (ADMF_SIGNAL_STORE unset here) targets daily_signal_summary only and loads
    assert automation_sensor.asset_selection.resolve(loaded.resolve_asset_graph()) == {dg.AssetKey("daily_signal_summary")}
