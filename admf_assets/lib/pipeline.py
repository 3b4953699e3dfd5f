"""Running the whole graph in-process: what ``admf run`` (the main job) and the tests call.

The graph over a date range is three runs, each as few as the backfill policies allow:
``market_data_job`` (bars, signal traces, classifier states of every day x symbol in one
single-run range), ``analytics_job`` (performance, regime performance, parameter analysis,
strategy index, strategy correlations), then ``daily_summary_job`` (the range's daily summaries in
one run); and, when publishing to the PostgreSQL run history is configured,
``publish_history_job``. Landing days with a gap (a day some symbol has no bars for) split the
range: one ``market_data_job`` and one ``daily_summary_job`` per contiguous piece.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import dagster as dg
import numpy as np

from admf_assets.core.bars import load_symbol_bars, trading_dates
from admf_assets.defs.resources import build_resources
from admf_assets.lib.partitions import contiguous_ranges, day_range_tags, range_tags, symbol_groups, trading_days
from admf_assets.lib.settings import SETTINGS, Settings

OPTIONAL_JOBS = ("publish_history_job",)
"""Jobs run after the graph's three jobs when the code location has them (publishing to the PostgreSQL
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


def landing_days(settings: Settings = SETTINGS, symbols: list[str] | None = None) -> list[dt.date]:
    """Trading days for which every one of ``symbols`` (default: every configured symbol) has
    regular-session bars in the landing folder and which are partitions of ``trading_days``,
    sorted.

    Raises:
        admf_assets.core.bars.BarValidationError: when a landing file is invalid or missing.
    """
    common: set[dt.date] | None = None
    for symbol in symbols or settings.symbols:
        bars, _ = load_symbol_bars(settings.landing_dir, symbol, calendar=settings.calendar)
        days = {d.astype(dt.date) for d in np.unique(np.asarray(trading_dates(bars["ts"], settings.calendar), dtype="datetime64[D]"))}
        common = days if common is None else common & days
    keys = set(trading_days.get_partition_keys())
    return sorted(d for d in (common or set()) if d.isoformat() in keys)


class RunFailedError(RuntimeError):
    """A run started by :func:`run_graph` failed; the runs after it were not started.

    Attributes:
        label: the run's label in the results (job name, plus its range when the graph needed
            several runs of that job).
        step: key of the first failed step (``None`` when the run failed outside a step).
        reason: that step's error message, e.g. the bar file, row and rule of invalid bars.
        results: ``{label: result}`` of the runs so far, the failed one last.
    """

    def __init__(self, label: str, step: str | None, reason: str, results: dict[str, dg.ExecuteInProcessResult]):
        self.label, self.step, self.reason, self.results = label, step, reason, results
        where = f"step {step}" if step else "run"
        super().__init__(f"{label}: {where} failed: {reason}")


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str | None, str]:
    """(failed step key, one-line reason) of a failed in-process run. A ``dg.Failure`` gives its
    description; another exception its class and message (Dagster wraps it in a step error whose
    cause is the user's exception)."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is None:
            return event.step_key, "unknown error"
        if error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None:
            error = error.cause
        message = error.message.strip()
        if error.cls_name == "Failure":
            message = message.split(": ", 1)[-1] if message.startswith("dagster.") else message
        else:
            prefix, _, rest = message.partition(": ")
            message = f"{error.cls_name}: {rest}" if prefix.endswith(error.cls_name) and rest else message
        return event.step_key, message
    run_failure = result.get_run_failure_event()
    return None, (run_failure.message if run_failure is not None else "the run did not succeed")


def run_graph(
    instance: dg.DagsterInstance,
    *,
    settings: Settings = SETTINGS,
    first_day: dt.date | None = None,
    last_day: dt.date | None = None,
    symbols: list[str] | None = None,
) -> dict[str, dg.ExecuteInProcessResult]:
    """Materialize the whole graph over the landing days in ``first_day..last_day`` (default:
    every landing day) for ``symbols`` (default: every configured symbol).

    A single-run range covers every partition between its ends, so the landing days are split
    into ranges contiguous in the ``trading_days`` partitions (a day some symbol has no bars for
    is left out, not requested) and the symbols into groups adjacent in the symbol partitions:
    ``market_data_job`` runs once per range and group, oldest range first (each day's traces
    carry state from the days before), then ``analytics_job`` once, ``daily_summary_job`` once
    per range and the optional jobs (:data:`OPTIONAL_JOBS`) when the code location has them.

    Returns:
        ``{label: result}`` in execution order; the label is the job name, followed by the
        run's range (``market_data_job 2025-06-04..2025-06-10 x AAPL..SPY``) when the graph
        needs more than one run of that job.

    Raises:
        ValueError: when the landing folder has no usable trading day in the range.
        admf_assets.core.bars.BarValidationError: when a landing file is invalid or missing.
        RunFailedError: when a run fails (its message names the job, the step and the step's
            error, e.g. the bar file, row and rule); no later run is started.
    """
    everyone = list(settings.symbols)
    chosen = sorted(set(symbols)) if symbols else everyone
    days = landing_days(settings, chosen)
    if first_day:
        days = [d for d in days if d >= first_day]
    if last_day:
        days = [d for d in days if d <= last_day]
    if not days:
        raise ValueError(f"no trading day with bars for {', '.join(chosen)} in {settings.landing_dir} within the range")
    ranges = [
        (dt.date.fromisoformat(a), dt.date.fromisoformat(b))
        for a, b in contiguous_ranges([d.isoformat() for d in days], trading_days.get_partition_keys())
    ]
    groups = symbol_groups(chosen, everyone)
    planned: list[tuple[str, str, dict[str, str]]] = []
    for first, last in ranges:
        for group in groups:
            label = "market_data_job"
            if len(ranges) > 1 or group != sorted(everyone):
                label += f" {first}..{last}" + ("" if group == sorted(everyone) else f" x {group[0]}..{group[-1]}")
            planned.append((label, "market_data_job", range_tags(first, last, symbol_keys=group)))
    planned.append(("analytics_job", "analytics_job", {}))
    for first, last in ranges:
        label = "daily_summary_job" + (f" {first}..{last}" if len(ranges) > 1 else "")
        planned.append((label, "daily_summary_job", day_range_tags(first, last)))
    location = code_location(settings)
    present = {job.name for job in location.jobs or ()}
    planned += [(name, name, {}) for name in OPTIONAL_JOBS if name in present]
    results: dict[str, dg.ExecuteInProcessResult] = {}
    for label, name, tags in planned:
        result = location.resolve_job_def(name).execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        results[label] = result
        if not result.success:
            step, reason = _failure(result)
            raise RunFailedError(label, step, reason, results)
    return results


def with_overrides(settings: Settings = SETTINGS, **changes) -> Settings:
    """``settings`` with some fields replaced (e.g. ``workspace=...`` for a scratch run)."""
    return replace(settings, **changes)
