"""Running the whole graph in-process: what ``admf run`` (the main job) and the tests call.

The graph over a date range is three runs, each as few as the backfill policies allow:
``market_data_job`` (bars, signal traces, classifier states of every day x symbol in one
single-run range), ``analytics_job`` (performance, regime performance, parameter analysis,
strategy index), then ``daily_summary_job`` (the range's daily summaries in one run); and, when
publishing to the PostgreSQL run history is configured, ``publish_history_job``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import dagster as dg
import numpy as np

from admf_assets.core.bars import load_symbol_bars, trading_dates
from admf_assets.defs.resources import build_resources
from admf_assets.lib.partitions import day_range_tags, range_tags, trading_days
from admf_assets.lib.settings import SETTINGS, Settings

JOB_ORDER = ("market_data_job", "analytics_job", "daily_summary_job")
OPTIONAL_JOBS = ("publish_history_job",)
"""Jobs run after :data:`JOB_ORDER` when the code location has them (publishing to the PostgreSQL
run history exists only when configured, see :mod:`admf_assets.lib.history_io`)."""


def code_location(settings: Settings | None = None) -> dg.Definitions:
    """The code location's definitions, with resources built for ``settings`` when given
    (everything else, the default executor included, as loaded)."""
    from admf_assets.definitions import defs

    loaded = defs()
    if settings is None:
        return loaded
    return dg.Definitions(
        assets=loaded.assets,
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources={**(loaded.resources or {}), **build_resources(settings)},
        executor=loaded.executor,
    )


def landing_days(settings: Settings = SETTINGS) -> list[dt.date]:
    """Trading days for which every configured symbol has regular-session bars in the landing
    folder and which are partitions of ``trading_days``, sorted.

    Raises:
        admf_assets.core.bars.BarValidationError: when a landing file is invalid.
    """
    common: set[dt.date] | None = None
    for symbol in settings.symbols:
        bars, _ = load_symbol_bars(settings.landing_dir, symbol, calendar=settings.calendar)
        days = {d.astype(dt.date) for d in np.unique(np.asarray(trading_dates(bars["ts"], settings.calendar), dtype="datetime64[D]"))}
        common = days if common is None else common & days
    keys = set(trading_days.get_partition_keys())
    return sorted(d for d in (common or set()) if d.isoformat() in keys)


def run_graph(
    instance: dg.DagsterInstance,
    *,
    settings: Settings = SETTINGS,
    first_day: dt.date | None = None,
    last_day: dt.date | None = None,
) -> dict[str, dg.ExecuteInProcessResult]:
    """Materialize the whole graph over ``first_day..last_day`` (default: every landing day).

    Returns:
        ``{job name: result}`` in execution order.

    Raises:
        ValueError: when the landing folder has no usable trading day in the range.
        dagster.DagsterExecutionStepExecutionError: when a step fails (bad bars, missing files);
            the message names the file, row and rule.
    """
    days = landing_days(settings)
    if first_day:
        days = [d for d in days if d >= first_day]
    if last_day:
        days = [d for d in days if d <= last_day]
    if not days:
        raise ValueError(f"no trading day with bars for {', '.join(settings.symbols)} in {settings.landing_dir} within the range")
    location = code_location(settings)
    results = {}
    multi_tags = range_tags(days[0], days[-1])
    daily_tags = day_range_tags(days[0], days[-1])
    for name, tags in zip(JOB_ORDER, (multi_tags, {}, daily_tags)):
        results[name] = location.resolve_job_def(name).execute_in_process(instance=instance, tags=tags)
    present = {job.name for job in location.jobs or ()}
    for name in OPTIONAL_JOBS:
        if name in present:
            results[name] = location.resolve_job_def(name).execute_in_process(instance=instance)
    return results


def with_overrides(settings: Settings = SETTINGS, **changes) -> Settings:
    """``settings`` with some fields replaced (e.g. ``workspace=...`` for a scratch run)."""
    return replace(settings, **changes)
