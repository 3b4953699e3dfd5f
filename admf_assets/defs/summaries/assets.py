"""``daily_signal_summary``: a materialized per-trading-day summary in DuckDB.

Automation (``admf_automation_sensor``, ``EAGER_EVERY_TRADING_DAY``): a trading day's summary
is requested once ``signal_traces`` of that day were (re-)materialized since the summary was last
requested or materialized and exist for every symbol, whichever day it is: the newest day from
the schedule, or older days from the landing sensor (a history load, a late or corrected vendor
file) or a UI backfill. Dagster's plain ``AutomationCondition.eager()`` would only ever request
the newest partition (it includes ``in_latest_time_window()``), so older days' summaries were
never requested.
"""


import dagster as dg
import pandas as pd

from admf_assets.core.analytics import daily_summary_table
from admf_assets.core.store import load_series, series_with_traces
from admf_assets.core.warehouse import replace_rows, transaction
from admf_assets.defs.traces.assets import signal_traces
from admf_assets.lib.metadata import add_partition_metadata, markdown_table
from admf_assets.lib.partitions import trading_days
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, ExecutionCosts

EAGER_EVERY_TRADING_DAY = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .with_label("eager_every_trading_day")
)
"""``AutomationCondition.eager()`` over every partition, not only the latest time window.

True for a trading day when, since the day was last requested or materialized, (a) any of its
upstream partitions (here: ``signal_traces`` of any symbol on that day) was updated, or will be
requested on the same tick, or (b) the day's partition became newly missing; and none of its
upstream partitions (the traces of every symbol on that day) is missing or in progress, and the
day itself is not in progress.

What it does NOT request: days that were already missing when the condition was first evaluated.
``newly_missing`` is ``missing().newly_true()``: it fires only on the tick a partition becomes
missing (Dagster compares with the missing partitions stored in the sensor cursor), and on the
first evaluation of an asset the "handled" reset (``initial_evaluation``) clears every trigger. So
turning this on over an existing workspace (or replacing plain ``eager()`` by it) does not request
every old day without a summary; a day without one is requested once its traces are
(re-)materialized. One exception on upgrade from plain ``eager()``: a day whose traces were
updated while plain ``eager()`` ignored it (not the latest day) is still pending in the cursor,
and the first tick after the change requests it (only if all its traces exist): the backlog that
``eager()`` dropped.

Grouping (``admf_automation_sensor`` keeps Dagster's default ``emit_backfills=True``): when one
tick requests more than one partition of an asset, the sensor submits one asset backfill for them
(and for the connected assets requested on the same tick, e.g. ``signal_store``) instead of one run
per partition; the backfill daemon then applies the ``BackfillPolicy.single_run()`` of
``daily_signal_summary``: one run per contiguous range of requested trading days. A tick
requesting a single day launches one ordinary run for it. (Needs the Dagster daemon: ``dagster
dev`` runs it.)
"""


@dg.asset(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[signal_traces],
    group_name="summaries",
    kinds={"duckdb"},
    pool="duckdb_writer",
    automation_condition=EAGER_EVERY_TRADING_DAY,
)
def daily_signal_summary(
    context: dg.AssetExecutionContext, workspace: AdmfWorkspace, costs: ExecutionCosts, duckdb: AnalyticsDuckDB
) -> dg.MaterializeResult:
    """Per trading day, symbol and strategy_type: signal changes, trades closed, wins, losses,
    net P&L and average trade return. A backfill over a date range runs as one run; the range's
    rows are replaced in one transaction (delete the range, insert), never duplicated.

    ``admf_automation_sensor`` requests a day's summary after that day's signal traces (every
    symbol) are materialized, for any trading day, not only the newest (see
    ``EAGER_EVERY_TRADING_DAY``); several days requested on one tick run as one backfill, one
    run per contiguous range of days.

    Metadata: each day's materialization carries its own ``rows`` (runs of at most
    ``PARTITION_METADATA_MAX`` = 64 days); ``run_*`` entries are totals
    of the run (the same on every day of it); ``preview`` is on the run's last day only."""
    window = context.partition_time_window
    days = [pd.Timestamp(k).date() for k in context.partition_keys]
    frames = []
    for symbol, timeframe in series_with_traces(workspace.layout, workspace.timeframe):
        history, signals = load_series(workspace.layout, symbol, timeframe)
        stored = set(history.days)
        wanted = [d for d in days if d in stored]
        if wanted:
            frames.append(daily_summary_table(history, signals, costs.model(), wanted))
    if not frames:
        raise dg.Failure(description=f"no signal traces for {days[0]}..{days[-1]}; materialize signal_traces first")
    table = pd.concat(frames, ignore_index=True)
    missing = sorted(set(days) - set(table["date"]))
    if missing:
        raise dg.Failure(description=f"no signal traces for trading day(s) {', '.join(d.isoformat() for d in missing[:5])}")
    with duckdb.get_connection() as conn, transaction(conn):
        replace_rows(conn, "daily_signal_summary", table, where="date BETWEEN ? AND ?", params=[days[0], days[-1]])
    # each day's own row count on that day's materialization; the preview once, on the last day
    per_day = table.groupby("date").size()
    add_partition_metadata(context, {key: {"rows": int(per_day.get(day, 0))} for key, day in zip(context.partition_keys, days)})
    context.add_asset_metadata({"preview": markdown_table(table, limit=15)}, partition_key=context.partition_keys[-1])
    return dg.MaterializeResult(
        metadata={
            "run_rows": len(table),
            "run_days": len(days),
            "run_window": f"{window.start.date()}..{window.end.date()}",
        }
    )
