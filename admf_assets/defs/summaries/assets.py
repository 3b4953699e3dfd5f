"""``daily_signal_summary``: a materialized per-trading-day summary in DuckDB."""


import dagster as dg
import pandas as pd

from admf_assets.core.analytics import daily_summary_table
from admf_assets.core.store import load_series, series_with_traces
from admf_assets.core.warehouse import replace_rows, transaction
from admf_assets.defs.traces.assets import signal_traces
from admf_assets.lib.metadata import markdown_table
from admf_assets.lib.partitions import trading_days
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, ExecutionCosts


@dg.asset(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[signal_traces],
    group_name="summaries",
    kinds={"duckdb"},
    pool="duckdb_writer",
    automation_condition=dg.AutomationCondition.eager(),
)
def daily_signal_summary(
    context: dg.AssetExecutionContext, workspace: AdmfWorkspace, costs: ExecutionCosts, duckdb: AnalyticsDuckDB
) -> dg.MaterializeResult:
    """Per trading day, symbol and strategy_type: signal changes, trades closed, wins, losses,
    net P&L and average trade return. A backfill over a date range runs as one run; the range's
    rows are replaced in one transaction (delete the range, insert), never duplicated."""
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
    return dg.MaterializeResult(
        metadata={
            "rows": len(table),
            "days": len(days),
            "window": f"{window.start.date()}..{window.end.date()}",
            "preview": markdown_table(table, limit=15),
        }
    )
