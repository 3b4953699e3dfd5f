"""Per-partition materialization metadata, the read-back ``bars_valid`` check, ``sessions_complete``
only where it is evaluated, and the ``market_data_writes`` pool.

In a single-run range Dagster copies a ``MaterializeResult``'s metadata onto every partition's
materialization; the assets attach each partition's own figures with
``context.add_asset_metadata(..., partition_key=...)``. The run here covers 2 trading days x 2
symbols in ONE run: 2025-07-02 (a full session, 78 bars) and 2025-07-03 (a half-day: 42 AAPL bars,
40 SPY bars in the sample, which lacks SPY's 12:50 and 12:55 bars), so partitions differ.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

import admf_assets.defs.market_data.assets as market_data_assets
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.defs.market_data.assets import MARKET_DATA_WRITES_POOL
from admf_assets.lib.partitions import range_tags
from admf_assets.lib.pipeline import code_location, run_graph, with_overrides
from admf_assets.lib.settings import Settings

DAYS = [dt.date(2025, 7, 2), dt.date(2025, 7, 3)]
SYMBOLS = ["AAPL", "SPY"]
GRID = """
description: small partition-metadata test grid
timeframe: 5m
strategies:
  - type: sma_crossover
    params: {fast_period: [3, 5], slow_period: 10}
  - type: rsi_bands
    params: {period: 7, oversold: 30, overbought: [70, 80]}
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    base = tmp_path_factory.mktemp("partition-metadata")
    grid = base / "grid.yaml"
    grid.write_text(GRID)
    return with_overrides(Settings.from_env(), workspace=str(base / "workspace"), grid_path=str(grid))


@pytest.fixture(scope="module")
def graph(settings):
    with dg.instance_for_test() as instance:
        results = run_graph(instance, settings=settings, first_day=DAYS[0], last_day=DAYS[-1])
        yield results


def _events(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict]:
    return {
        e.partition: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    }


def _market_data_job(settings: Settings, instance, **kwargs) -> dg.ExecuteInProcessResult:
    job = code_location(settings).resolve_job_def("market_data_job")
    return job.execute_in_process(instance=instance, tags=range_tags(DAYS[0], DAYS[-1], SYMBOLS), raise_on_error=False, **kwargs)


def test_one_run_covers_two_days_by_two_symbols(graph):
    market = graph["market_data_job"]
    assert market.success
    for asset in ("market_bars", "signal_traces", "classifier_states"):
        assert set(_events(market, asset)) == {f"{d.isoformat()}|{s}" for d in DAYS for s in SYMBOLS}, asset


def test_market_bars_partitions_carry_their_own_bar_counts(graph, settings):
    layout = WorkspaceLayout(Path(settings.workspace))
    events = _events(graph["market_data_job"], "market_bars")
    counts = {}
    for day in DAYS:
        for symbol in SYMBOLS:
            md = events[f"{day.isoformat()}|{symbol}"]
            path = layout.bars_file(symbol, "5m", day)
            assert md["path"].value == str(path)
            assert md["rows"].value == pq.read_metadata(path).num_rows  # bars of THAT day and symbol
            counts[(day, symbol)] = md["rows"].value
            # run totals under run-wide names, the same on every partition
            assert md["run_partitions_written"].value == 4
            assert md["run_rows_written"].value == sum(pq.read_metadata(layout.bars_file(s, "5m", d)).num_rows for d in DAYS for s in SYMBOLS)
    assert counts == {(DAYS[0], "AAPL"): 78, (DAYS[0], "SPY"): 78, (DAYS[1], "AAPL"): 42, (DAYS[1], "SPY"): 40}
    # the run-wide tables once, on the run's last partition only
    last = f"{DAYS[-1].isoformat()}|{SYMBOLS[-1]}"
    assert "per_symbol" in events[last] and "preview" in events[last]
    assert not any("per_symbol" in md or "preview" in md for key, md in events.items() if key != last)


def test_trace_partitions_carry_their_own_file_rows(graph, settings):
    layout = WorkspaceLayout(Path(settings.workspace))
    for asset, rows_name, file_for in (
        ("signal_traces", "change_rows", layout.signals_file),
        ("classifier_states", "regime_change_rows", layout.classifiers_file),
    ):
        events = _events(graph["market_data_job"], asset)
        per_partition = {}
        for day in DAYS:
            for symbol in SYMBOLS:
                md = events[f"{day.isoformat()}|{symbol}"]
                path = file_for(symbol, "5m", day)
                assert md["path"].value == str(path)
                assert md[rows_name].value == pq.read_metadata(path).num_rows, (asset, day, symbol)
                per_partition[(day, symbol)] = md[rows_name].value
        assert len(set(per_partition.values())) > 1, per_partition  # not one run total copied everywhere
        totals = {md[f"run_{rows_name}"].value for md in events.values()}
        assert totals == {sum(per_partition.values())}
        assert [k for k, md in events.items() if "per_file" in md] == [f"{DAYS[-1].isoformat()}|{SYMBOLS[-1]}"]
    signals = _events(graph["market_data_job"], "signal_traces")
    md = signals[f"{DAYS[1].isoformat()}|AAPL"]
    assert md["bars"].value == 42
    assert md["compression_ratio"].value == pytest.approx(md["change_rows"].value / (42 * md["strategies"].value))


def test_daily_summary_days_carry_their_own_rows(graph, settings):
    events = _events(graph["daily_summary_job"], "daily_signal_summary")
    assert set(events) == {d.isoformat() for d in DAYS}
    with duckdb.connect(str(WorkspaceLayout(Path(settings.workspace)).duckdb_file), read_only=True) as con:
        for day in DAYS:
            stored = con.execute("SELECT count(*) FROM daily_signal_summary WHERE date = ?", [day]).fetchone()[0]
            assert events[day.isoformat()]["rows"].value == stored > 0
            assert events[day.isoformat()]["run_rows"].value == 2 * stored and events[day.isoformat()]["run_days"].value == 2
    assert "preview" in events[DAYS[-1].isoformat()] and "preview" not in events[DAYS[0].isoformat()]


def test_checks_pass_on_a_good_store_and_name_incomplete_partitions(graph):
    checks = {c.check_name: c for c in graph["market_data_job"].get_asset_check_evaluations()}
    assert checks["bars_valid"].passed
    assert checks["bars_valid"].metadata["partitions_checked"].value == 4
    assert checks["bars_valid"].metadata["failed_partitions"].value == 0
    # SPY's 2025-07-03 half-day lacks two bars in the sample: a warning naming that partition
    sessions = checks["sessions_complete"]
    assert not sessions.passed and sessions.severity == dg.AssetCheckSeverity.WARN
    assert sessions.metadata["incomplete_sessions"].value == 1
    assert "2025-07-03|SPY" in sessions.metadata["details"].value


@pytest.mark.parametrize("damage", ["drop_row", "remove_file"])
def test_bars_valid_fails_when_a_stored_day_file_is_wrong(settings, monkeypatch, tmp_path, damage):
    scratch = with_overrides(settings, workspace=str(tmp_path / "workspace"))
    real_write = market_data_assets.write_bars_day

    def damaged_write(layout, symbol, timeframe, day, bars):
        if (symbol, day) != ("SPY", DAYS[0]):
            return real_write(layout, symbol, timeframe, day, bars)
        if damage == "drop_row":  # the stored file lacks a bar of what was written
            return real_write(layout, symbol, timeframe, day, bars.iloc[:-1])
        path = real_write(layout, symbol, timeframe, day, bars)
        path.unlink()
        return path

    monkeypatch.setattr(market_data_assets, "write_bars_day", damaged_write)
    with dg.instance_for_test() as instance:
        result = _market_data_job(scratch, instance)
    (valid,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "bars_valid"]
    assert not valid.passed and valid.severity == dg.AssetCheckSeverity.ERROR
    assert valid.metadata["failed_partitions"].value == 1 and valid.metadata["partitions_checked"].value == 4
    failures = valid.metadata["failures"].value
    assert "2025-07-02|SPY" in failures
    assert ("77 rows stored, 78 written" if damage == "drop_row" else "file missing") in failures
    # blocking: the run fails at market_bars, no trace is computed from the bad store
    assert not result.success
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert "signal_traces" not in steps and "classifier_states" not in steps


def test_sessions_complete_is_not_claimed_for_all_sessions(settings, tmp_path):
    scratch = with_overrides(settings, workspace=str(tmp_path / "workspace"))
    with dg.instance_for_test() as instance:
        result = _market_data_job(
            scratch,
            instance,
            asset_selection=[dg.AssetKey("market_bars")],
            run_config={"ops": {"market_bars": {"config": {"session": "all"}}}},
        )
        assert result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        # no sessions_complete evaluation at all (Dagster shows the planned check as skipped)
        assert set(checks) == {"bars_valid"} and checks["bars_valid"].passed
        # the planned sessions_complete stays PLANNED in a run that succeeded: the UI resolves it as
        # SKIPPED (dagster/_core/storage/asset_check_execution_record.py, resolve_status)
        (record,) = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("market_bars"), "sessions_complete"), limit=5
        )
        assert record.run_id == result.run_id and record.status == AssetCheckExecutionRecordStatus.PLANNED
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
    # the extended-hours bars are stored and were read back
    events = _events(result, "market_bars")
    assert events[f"{DAYS[0].isoformat()}|AAPL"]["rows"].value > 78


def test_bars_and_traces_writers_share_one_pool():
    defs = code_location()
    for name in ("market_bars", "signal_traces", "classifier_states"):
        assets_def = defs.resolve_assets_def(name)
        assert assets_def.op.pool == MARKET_DATA_WRITES_POOL, name
        assert "market_data_writes" in (assets_def.descriptions_by_key[dg.AssetKey(name)] or ""), name


def test_pool_slot_held_elsewhere_blocks_the_in_process_steps(settings, tmp_path):
    """With ``default_limit: 1`` (dagster_home/dagster.yaml) the in-process executor claims the
    pool's slot per step: while another run holds it, market_bars does not start."""
    scratch = with_overrides(settings, workspace=str(tmp_path / "workspace"))
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(MARKET_DATA_WRITES_POOL)
        assert storage.claim_concurrency_slot(MARKET_DATA_WRITES_POOL, "other-run", "market_bars").is_claimed
        out = {}
        worker = threading.Thread(
            target=lambda: out.update(result=_market_data_job(scratch, instance, asset_selection=[dg.AssetKey("market_bars")]))
        )
        worker.start()
        time.sleep(4)
        assert worker.is_alive()
        assert not list(WorkspaceLayout(Path(scratch.workspace)).dated_files(WorkspaceLayout(Path(scratch.workspace)).bars_dir("AAPL", "5m")))
        storage.free_concurrency_slot_for_step("other-run", "market_bars")
        worker.join(timeout=60)
        assert not worker.is_alive() and out["result"].success
        info = storage.get_concurrency_info(MARKET_DATA_WRITES_POOL)
        assert info.slot_count == 1 and info.active_slot_count == 0
    # a test instance without pool limits is never blocked (the other tests run there)
    with dg.instance_for_test() as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit is None


def test_steps_wider_than_the_limit_carry_run_totals_only():
    """Dagster's per-partition metadata call recomputes the step's range each time: a step wider
    than PARTITION_METADATA_MAX partitions attaches none (its run_* totals stay)."""
    from admf_assets.lib import metadata

    class Context:
        def __init__(self, n):
            self.partition_keys = [f"k{i}" for i in range(n)]
            self.calls = []

        def add_asset_metadata(self, md, partition_key=None):
            self.calls.append((partition_key, dict(md)))

    wide = Context(metadata.PARTITION_METADATA_MAX + 1)
    assert not metadata.add_partition_metadata(wide, {k: {"rows": 1} for k in wide.partition_keys})
    assert wide.calls == []
    narrow = Context(metadata.PARTITION_METADATA_MAX)
    assert metadata.add_partition_metadata(narrow, {"k0": {"rows": 7}, "k1": {"rows": 8}})
    assert narrow.calls == [("k0", {"rows": 7}), ("k1", {"rows": 8})]


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda df: df.assign(high=df["low"] - 0.01), "OHLC inconsistent"),
        (lambda df: df.iloc[::-1], "ts not strictly increasing"),
        (lambda df: df.assign(ts=df["ts"] - dt.timedelta(days=1)), "ts outside trading day 2025-06-05"),
        (lambda df: df.assign(ts=df["ts"] + dt.timedelta(hours=7)), "ts outside"),
        (lambda df: df.assign(volume=-1.0), "negative volume"),
        (lambda df: df.assign(close=0.0), "non-positive price"),
    ],
)
def test_bars_read_back_names_what_is_wrong_with_a_stored_day(tmp_path, damage, problem):
    from admf_assets.core.bars import load_symbol_bars, trading_dates
    from admf_assets.core.store import write_bars_day
    from admf_assets.lib.settings import bundled_sample_dir

    day = dt.date(2025, 6, 5)
    bars, _ = load_symbol_bars(bundled_sample_dir(), "SPY", calendar="XNYS")
    day_bars = bars.loc[trading_dates(bars["ts"]) == np.datetime64(day, "D")].reset_index(drop=True)
    layout = WorkspaceLayout(tmp_path)
    path = write_bars_day(layout, "SPY", "5m", day, day_bars)
    assert market_data_assets._read_back(path, day, len(day_bars), "regular", "XNYS") is None
    path = write_bars_day(layout, "SPY", "5m", day, damage(day_bars).reset_index(drop=True))
    found = market_data_assets._read_back(path, day, len(day_bars), "regular", "XNYS")
    assert found is not None and found.startswith(problem), found
