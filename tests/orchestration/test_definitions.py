"""The code location loads; schedule, partitions, bad input and DuckDB concurrency behave."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from admf_assets.core.bars import bundled_sample_dir
from admf_assets.core.warehouse import connect
from admf_assets.defs.market_data.assets import market_bars
from admf_assets.defs.resources import build_resources
from admf_assets.lib.partitions import day_symbol, trading_days
from admf_assets.lib.pipeline import code_location, with_overrides
from admf_assets.lib.settings import Settings

ASSETS = {
    "market_bars", "signal_traces", "classifier_states", "strategy_performance", "regime_performance",
    "parameter_analysis", "strategy_index", "daily_signal_summary", "strategy_correlations", "storage_health",
}


def test_code_location_loads_every_asset_job_and_schedule():
    defs = code_location()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == ASSETS
    for job in ["market_data_job", "analytics_job", "daily_summary_job", "newest_trading_day_job"]:
        assert defs.resolve_job_def(job)
    assert defs.resolve_schedule_def("newest_trading_day_schedule")
    assert defs.resolve_sensor_def("admf_automation_sensor")


def test_trading_day_partitions_skip_weekends_and_exchange_holidays():
    keys = trading_days.get_partition_keys(current_time=dt.datetime(2025, 9, 1))
    assert "2025-06-19" not in keys  # Juneteenth
    assert "2025-07-04" not in keys  # Independence Day
    assert "2025-07-05" not in keys  # Saturday
    assert "2025-07-03" in keys  # half-day is a session
    assert day_symbol.get_partition_keys(current_time=dt.datetime(2025, 6, 6))[:2] == ["2025-06-04|AAPL", "2025-06-04|SPY"]


@pytest.mark.parametrize(
    "when, expect_run",
    [(dt.datetime(2025, 6, 5, 17, 30), True), (dt.datetime(2025, 7, 4, 17, 30), False), (dt.datetime(2025, 11, 27, 17, 30), False)],
)
def test_newest_trading_day_schedule_is_calendar_aware(when, expect_run):
    defs = code_location()
    schedule = defs.resolve_schedule_def("newest_trading_day_schedule")
    tz = pd.Timestamp(when, tz="America/New_York").to_pydatetime()
    with dg.build_schedule_context(scheduled_execution_time=tz) as context:
        result = schedule.evaluate_tick(context)
    if expect_run:
        # the requested day's partition exists when the schedule fires (end_offset=1)
        assert when.date().isoformat() in trading_days.get_partition_keys(current_time=tz)
        (request,) = result.run_requests
        assert request.run_key == "newest-trading-day-2025-06-05"
        assert request.tags["dagster/asset_partition_range_start"] == "2025-06-05|AAPL"
        assert request.tags["dagster/asset_partition_range_end"] == "2025-06-05|SPY"
    else:
        assert not result.run_requests
        assert "not a trading session" in result.skip_message


def _bad_landing(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ["AAPL_5m.csv", "SPY_5m.csv"]:
        shutil.copy(bundled_sample_dir() / name, landing / name)
    lines = (landing / "SPY_5m.csv").read_text().splitlines()
    # 2025-06-04 14:00 UTC is an RTH bar: make its high lower than its close.
    row = next(i for i, line in enumerate(lines) if line.startswith("2025-06-04 14:00:00"))
    ts, o, h, l, c, v, sym = lines[row].split(",")
    lines[row] = ",".join([ts, o, str(float(c) - 1.0), l, c, v, sym])
    (landing / "SPY_5m.csv").write_text("\n".join(lines) + "\n")
    return landing, row


def test_bad_bars_fail_the_run_naming_file_row_and_rule(tmp_path):
    landing, line_index = _bad_landing(tmp_path)
    settings = with_overrides(Settings.from_env(), workspace=str(tmp_path / "ws"), landing_dir=str(landing))
    # both symbols in one run: AAPL is valid, SPY is not -> nothing of either may be written
    result = dg.materialize(
        [market_bars],
        resources=build_resources(settings),
        tags={"dagster/asset_partition_range_start": "2025-06-04|AAPL", "dagster/asset_partition_range_end": "2025-06-05|SPY"},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "SPY_5m.csv" in message
    assert f"row {line_index}" in message  # data row number = line number - 1 (header)
    assert "high_ge_open_close" in message
    assert not (tmp_path / "ws" / "bars").exists() or not any((tmp_path / "ws" / "bars").rglob("*.parquet"))


def test_missing_landing_day_fails_clearly(tmp_path):
    settings = with_overrides(Settings.from_env(), workspace=str(tmp_path / "ws"))
    result = dg.materialize([market_bars], resources=build_resources(settings), partition_key="2025-09-02|SPY", raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "2025-09-02" in failure.step_failure_data.error.message


def _hold_and_write(database: str, writer: int, hold: float) -> None:
    import time

    with connect(database) as con:
        con.execute(
            "INSERT INTO daily_signal_summary (date, symbol, strategy_type, strategy_count) VALUES (?, ?, ?, ?)",
            [dt.date(2025, 6, 4), f"W{writer}", "sma_crossover", writer],
        )
        time.sleep(hold)


def test_concurrent_writer_processes_queue_instead_of_failing_on_the_duckdb_lock(tmp_path):
    database = str(tmp_path / "analytics.duckdb")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hold_and_write, args=(database, i, 0.5)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with connect(database) as con:
        assert sorted(r[0] for r in con.execute("SELECT symbol FROM daily_signal_summary").fetchall()) == ["W0", "W1", "W2", "W3"]


def test_pure_core_has_no_dagster_import():
    core = Path(__file__).resolve().parents[2] / "admf_assets" / "core"
    offenders = [p.name for p in core.glob("*.py") if "import dagster" in p.read_text() or "from dagster" in p.read_text()]
    assert offenders == []


def test_asset_writes_roll_back_together(tmp_path):
    """A failing second table write inside one asset transaction leaves the first table untouched."""
    from admf_assets.core.warehouse import replace_rows, transaction
    from admf_assets.lib.resources import AnalyticsDuckDB

    db = AnalyticsDuckDB(database=str(tmp_path / "analytics.duckdb"))
    row = pd.DataFrame({"date": [dt.date(2025, 6, 4)], "symbol": ["SPY"], "strategy_type": ["momentum"], "strategy_count": [1]})
    with db.get_connection() as con, transaction(con):
        replace_rows(con, "daily_signal_summary", row)
    bad = pd.DataFrame({"strategy_id": ["a", "a"], "strategy_type": ["x", "x"], "parameter_name": ["p", "p"], "parameter_value": [1.0, 2.0]})
    with pytest.raises(ValueError, match="duplicate key"):
        with db.get_connection() as con, transaction(con):
            replace_rows(con, "daily_signal_summary", row.assign(strategy_count=99))
            # (strategy_id, parameter_name) repeated: replace_rows' key check (no PRIMARY KEY in
            # DuckDB) raises ValueError "... duplicate key ..." before touching the table
            replace_rows(con, "strategy_parameters", bad)
    with db.get_connection() as con:
        assert con.execute("SELECT strategy_count FROM daily_signal_summary").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM strategy_parameters").fetchone()[0] == 0
