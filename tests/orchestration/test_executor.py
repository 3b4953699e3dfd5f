"""The code location runs its steps in the run's own process (in-process executor by default).

A run launched as the schedule and the daemon launch it (``dg.execute_job`` on a reconstructable
job: what a run worker executes, without the worker process's own start; not
``execute_in_process``) must use the code location's default executor:
with Dagster's own default every step would start a process of its own (47 to 49 s instead of
12.5 s for the newest trading day of 5,000 strategies x 3 symbols, docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb

from admf_assets.core.layout import WorkspaceLayout
from admf_assets.lib.partitions import range_tags
from admf_assets.lib.pipeline import code_location, with_overrides
from admf_assets.lib.settings import Settings

DAYS = (dt.date(2025, 6, 4), dt.date(2025, 6, 6))  # three sessions: enough closed trades for the correlations
SYMBOLS = ("AAPL", "SPY")


def newest_trading_day_job() -> dg.JobDefinition:
    """The code location's ``newest_trading_day_job`` as loaded, resources on the workspace named
    by ``ADMF_WORKSPACE`` (module level, so that ``dg.reconstructable`` can rebuild it)."""
    settings = with_overrides(Settings.from_env(), workspace=os.environ["ADMF_WORKSPACE"])
    return code_location(settings).resolve_job_def("newest_trading_day_job")


def test_every_job_and_the_asset_job_default_to_the_in_process_executor():
    defs = code_location()
    jobs = [job.name for job in defs.jobs or []]
    assert {"market_data_job", "analytics_job", "daily_summary_job", "newest_trading_day_job", "archive_job"} <= set(jobs)
    for name in jobs:
        assert defs.resolve_job_def(name).executor_def is dg.in_process_executor, name
    assert defs.resolve_implicit_global_asset_job_def().executor_def is dg.in_process_executor
    # with resources rebuilt for other settings (what `admf run` and the tests use) it stays so
    scratch = code_location(with_overrides(Settings.from_env(), workspace="/nonexistent/admf-scratch"))
    assert scratch.resolve_job_def("newest_trading_day_job").executor_def is dg.in_process_executor


def test_a_launched_newest_days_run_executes_every_step_in_the_run_process(workspace_env: Path):
    with dg.instance_for_test() as instance:
        with dg.execute_job(
            dg.reconstructable(newest_trading_day_job), instance=instance, tags=range_tags(DAYS[0], DAYS[1], list(SYMBOLS))
        ) as result:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            events = result.all_events
            steps = {e.step_key for e in events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {
        "market_bars", "signal_traces", "classifier_states", "strategy_performance", "regime_performance",
        "parameter_analysis", "strategy_index", "strategy_correlations",
    }
    # no step subprocess: every event of the run comes from this process
    assert not [e for e in events if e.event_type_value == "STEP_WORKER_STARTED"]
    assert {e.pid for e in events if e.step_key} == {os.getpid()}
    # and the run did its work: the days' trace files and the strategies table of both symbols
    layout = WorkspaceLayout(workspace_env)
    for symbol in SYMBOLS:
        for day in (DAYS[0], dt.date(2025, 6, 5), DAYS[1]):
            assert layout.signals_file(symbol, "5m", day).is_file()
    with duckdb.connect(str(layout.duckdb_file), read_only=True) as conn:
        per_symbol = dict(conn.execute("SELECT symbol, count(*) FROM strategies GROUP BY symbol").fetchall())
    assert set(per_symbol) == set(SYMBOLS) and min(per_symbol.values()) > 0
