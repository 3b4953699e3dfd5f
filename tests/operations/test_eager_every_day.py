"""admf_automation_sensor's condition on daily_signal_summary / signal_store: eager on EVERY
trading day (not only the newest, as Dagster's plain ``eager()``), without requesting days that
were already missing before the condition was first evaluated."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from admf_assets.defs.market_data.assets import market_bars
from admf_assets.defs.summaries.assets import EAGER_EVERY_TRADING_DAY, daily_signal_summary
from admf_assets.defs.traces.assets import signal_traces
from admf_assets.lib.partitions import PARTITION_TIMEZONE, symbols
from admf_assets.lib.pipeline import code_location

SUMMARY = dg.AssetKey("daily_signal_summary")
# evaluated after the close of 2025-06-12: the latest trading-day partition is 2025-06-12
NOW = dt.datetime(2025, 6, 12, 18, 0, tzinfo=ZoneInfo(PARTITION_TIMEZONE))
OLD_DAY = "2025-06-05"  # traces materialized before the sensor's first tick, no update after
UPDATED_DAY = "2025-06-04"  # traces materialized between ticks (a history load, a late file)


@pytest.fixture(scope="module")
def resources():
    return code_location().resources


def _defs(resources, condition: dg.AutomationCondition | None = None) -> dg.Definitions:
    summary = daily_signal_summary
    if condition is not None:
        summary = daily_signal_summary.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition))
    return dg.Definitions(assets=[market_bars, signal_traces, summary], resources=resources)


def _traces_materialized(instance: dg.DagsterInstance, day: str) -> None:
    for symbol in symbols.get_partition_keys():
        instance.report_runless_asset_event(dg.AssetMaterialization("signal_traces", partition=f"{day}|{symbol}"))


def _requested(result) -> set[str]:
    return set(result.get_requested_partitions(SUMMARY)) if result.total_requested else set()


def _ticks(defs: dg.Definitions, instance: dg.DagsterInstance, minutes: int = 0, cursor=None):
    return dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW + dt.timedelta(minutes=minutes), cursor=cursor)


def test_daily_signal_summary_and_signal_store_use_eager_on_every_day():
    from admf_assets.defs.operations.signal_store import signal_store

    assert daily_signal_summary.automation_conditions_by_key[SUMMARY] == EAGER_EVERY_TRADING_DAY
    assert signal_store.automation_conditions_by_key[dg.AssetKey("signal_store")] == EAGER_EVERY_TRADING_DAY
    # eager() minus its in_latest_time_window() operand, nothing else
    assert EAGER_EVERY_TRADING_DAY.operands == [
        op for op in dg.AutomationCondition.eager().operands if op != dg.AutomationCondition.in_latest_time_window()
    ]
    assert len(EAGER_EVERY_TRADING_DAY.operands) == len(dg.AutomationCondition.eager().operands) - 1


def test_summary_of_an_old_day_is_requested_after_its_traces_are_materialized(resources):
    defs = _defs(resources)  # the asset as defined (EAGER_EVERY_TRADING_DAY)
    instance = dg.DagsterInstance.ephemeral()
    _traces_materialized(instance, OLD_DAY)

    # first tick over an existing workspace: every day without a summary is missing (OLD_DAY with
    # its traces, the newest day without), but nothing was newly updated or newly missing
    first = _ticks(defs, instance)
    assert _requested(first) == set()
    second = _ticks(defs, instance, 1, first.cursor)
    assert _requested(second) == set()

    # the traces of an old (not the latest) day are materialized: that day's summary is requested,
    # the never-summarized OLD_DAY (no upstream update) is not
    _traces_materialized(instance, UPDATED_DAY)
    third = _ticks(defs, instance, 2, second.cursor)
    assert _requested(third) == {UPDATED_DAY}

    # requested once: the next tick does not request it again
    fourth = _ticks(defs, instance, 3, third.cursor)
    assert _requested(fourth) == set()


def test_summary_of_an_old_day_waits_for_every_symbols_traces(resources):
    defs = _defs(resources)
    instance = dg.DagsterInstance.ephemeral()
    first = _ticks(defs, instance)
    first_symbol, *others = symbols.get_partition_keys()
    instance.report_runless_asset_event(dg.AssetMaterialization("signal_traces", partition=f"{UPDATED_DAY}|{first_symbol}"))
    partial = _ticks(defs, instance, 1, first.cursor)
    assert _requested(partial) == set()  # another symbol's traces of the day are missing
    for symbol in others:
        instance.report_runless_asset_event(dg.AssetMaterialization("signal_traces", partition=f"{UPDATED_DAY}|{symbol}"))
    complete = _ticks(defs, instance, 2, partial.cursor)
    assert _requested(complete) == {UPDATED_DAY}


def test_plain_eager_ignores_old_days_and_switching_requests_the_dropped_day_only(resources):
    """Why the condition is not plain eager(): it never requests an old day. Replacing eager() over
    an existing cursor requests the old day eager() dropped, not every day without a summary."""
    eager = _defs(resources, dg.AutomationCondition.eager())
    instance = dg.DagsterInstance.ephemeral()
    _traces_materialized(instance, OLD_DAY)
    first = _ticks(eager, instance)
    _traces_materialized(instance, UPDATED_DAY)
    dropped = _ticks(eager, instance, 1, first.cursor)
    assert _requested(dropped) == set()  # in_latest_time_window(): only 2025-06-12 is considered

    switched = _ticks(_defs(resources), instance, 2, dropped.cursor)
    assert _requested(switched) == {UPDATED_DAY}
    again = _ticks(_defs(resources), instance, 3, switched.cursor)
    assert _requested(again) == set()
