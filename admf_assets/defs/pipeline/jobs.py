"""Jobs, the newest-trading-day schedule and the automation sensor.

Single-run backfill policies keep runs few: a UI backfill over a date range materializes the
``date|symbol`` assets of the whole range in one run, and ``daily_signal_summary`` (its own job,
since single-run and unpartitioned assets do not mix in a backfill) in one more.

Runs that write bars and traces are serialised: ``market_data_job`` and ``newest_trading_day_job``
carry the run tag :data:`MARKET_DATA_WRITES_TAG` (``admf/writes: market_data``; Dagster copies job
tags onto every run of the job), and ``dagster_home/dagster.yaml`` limits runs with that tag to one
at a time (``concurrency: runs: tag_concurrency_limits``, enforced by the queued run coordinator,
the default of an instance loaded from ``DAGSTER_HOME``). A day's traces are computed from every
stored bar of the symbol up to that day, so a run for a later range must not start before an
earlier range's bars are stored; queued runs start in submission order, and the landing sensor
submits its ranges oldest first. (Runs executed in process, ``admf run``/``admf backfill``
without ``--graphql-url``, are not queued; they run one after the other anyway. Asset backfills
launched from the UI or by ``admf backfill --graphql-url`` run the assets, not these jobs, so their
runs do not carry the tag unless the backfill is given it.)
"""


import dagster as dg

from admf_assets.defs.analytics.assets import parameter_analysis, regime_performance, strategy_index, strategy_performance
from admf_assets.defs.analytics.correlations import strategy_correlations
from admf_assets.defs.market_data.assets import market_bars
from admf_assets.defs.summaries.assets import daily_signal_summary
from admf_assets.defs.traces.assets import classifier_states, signal_traces
from admf_assets.lib.partitions import PARTITION_TIMEZONE, is_trading_day, range_tags
from admf_assets.lib.settings import SETTINGS

MARKET_DATA = dg.AssetSelection.assets(market_bars, signal_traces, classifier_states)
ANALYTICS = dg.AssetSelection.assets(
    strategy_performance, regime_performance, parameter_analysis, strategy_index, strategy_correlations
)

MARKET_DATA_WRITES_TAG = {"admf/writes": "market_data"}
"""Run tag of the jobs that write bars, signal traces and classifier states, and of ``archive_job``
(which deletes them from hot storage); the instance allows one such run at a time
(``dagster_home/dagster.yaml``)."""

market_data_job = dg.define_asset_job(
    "market_data_job",
    selection=MARKET_DATA,
    description="Bars, signal traces and classifier states of a date x symbol range (one such run at a time: tag admf/writes=market_data).",
    tags=MARKET_DATA_WRITES_TAG,
)
analytics_job = dg.define_asset_job(
    "analytics_job", selection=ANALYTICS, description="Performance, regime performance, parameter analysis, the strategy index and strategy correlations."
)
daily_summary_job = dg.define_asset_job(
    "daily_summary_job", selection=dg.AssetSelection.assets(daily_signal_summary), description="Daily signal summaries of a date range (one run)."
)
newest_trading_day_job = dg.define_asset_job(
    "newest_trading_day_job",
    selection=MARKET_DATA | ANALYTICS,
    description="The newest trading day for every symbol, then the whole-grid analytics (one such run at a time: tag admf/writes=market_data).",
    tags=MARKET_DATA_WRITES_TAG,
)


@dg.schedule(
    job=newest_trading_day_job,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=PARTITION_TIMEZONE,
    description="After the close on exchange sessions: the day's bars, traces and analytics (skips holidays).",
)
def newest_trading_day_schedule(context: dg.ScheduleEvaluationContext):
    """Request the day's partitions for all symbols, once per trading day (run key = date)."""
    day = context.scheduled_execution_time.date()
    if not is_trading_day(day):
        return dg.SkipReason(f"{day.isoformat()} is not a trading session of the exchange calendar")
    return dg.RunRequest(run_key=f"newest-trading-day-{day.isoformat()}", tags=range_tags(day, day))


def automation_target(signal_store_enabled: bool = SETTINGS.signal_store) -> dg.AssetSelection:
    """Assets whose automation conditions ``admf_automation_sensor`` evaluates:
    ``daily_signal_summary`` and, when the Postgres signal store is on (``ADMF_SIGNAL_STORE=1``;
    the asset exists only then), ``signal_store`` (republished after its summaries change). Both
    use :data:`admf_assets.defs.summaries.assets.EAGER_EVERY_TRADING_DAY`: eager on every
    trading day, not only the newest."""
    target = dg.AssetSelection.assets(daily_signal_summary)
    if signal_store_enabled:
        target = target | dg.AssetSelection.assets("signal_store")
    return target


automation_sensor = dg.AutomationConditionSensorDefinition(
    "admf_automation_sensor",
    target=automation_target(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests daily_signal_summary for every trading day (newest or older) whose signal traces were "
        "materialized since its last summary, once every symbol's traces of that day exist (and, with "
        "ADMF_SIGNAL_STORE=1, signal_store after its summary). Days missing before the sensor first ran are "
        "not requested until their traces change. Several days requested on one tick become one backfill: "
        "one run per contiguous range of days (single-run backfill policy)."
    ),
)
"""Keeps Dagster's default ``emit_backfills=True``: several partitions of an asset requested on one
tick are submitted as one asset backfill, which the backfill daemon splits per the assets'
``BackfillPolicy.single_run()`` into one run per contiguous range of trading days; a single
requested day is one ordinary run (see ``EAGER_EVERY_TRADING_DAY``)."""


@dg.definitions
def pipeline() -> dg.Definitions:
    return dg.Definitions(
        jobs=[market_data_job, analytics_job, daily_summary_job, newest_trading_day_job],
        schedules=[newest_trading_day_schedule],
        sensors=[automation_sensor],
    )
