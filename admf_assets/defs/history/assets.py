"""Publishing grid evaluations to the PostgreSQL run history (optional; see
:mod:`admf_assets.lib.history_io`): the ``backtest_history`` asset and ``publish_history_job``.

Only present in the code location when ``ADMF_PUBLISH_HISTORY=1`` and ``ADMF_POSTGRES_URL`` are
set, so the embedded default needs no server.
"""


import dagster as dg
import numpy as np
import pandas as pd

from admf_assets.core.metrics import CostModel, extract_trades
from admf_assets.core.store import load_series
from admf_assets.defs.analytics.assets import strategy_performance
from admf_assets.history.publish import publication_frame
from admf_assets.lib.history_io import RunHistoryIOManager, publish_enabled
from admf_assets.lib.metadata import markdown_table
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB


def _trade_means(workspace: AdmfWorkspace, rows: pd.DataFrame, symbol: str, timeframe: str):
    """``(bar timestamps, last trading day, frame of avg_win / avg_loss by strategy_id)`` of one
    series, from the stored bars and traces the ``strategies`` rows were computed on.

    Raises:
        dagster.Failure: the stored series no longer spans the rows' bars (days were added or
            re-materialized since strategy_performance ran).
    """
    history, traces = load_series(workspace.layout, symbol, timeframe)
    ts = pd.to_datetime(history.bars["ts"], utc=True)
    first, last = pd.Timestamp(rows["start_ts"].min()).tz_convert("UTC"), pd.Timestamp(rows["end_ts"].max()).tz_convert("UTC")
    if ts.iloc[0] != first or ts.iloc[-1] != last or len(history.bars) != int(rows["total_bars"].iloc[0]):
        raise dg.Failure(
            description=f"{symbol}_{timeframe}: the stored bars ({ts.iloc[0]} .. {ts.iloc[-1]}, {len(history.bars)} bars) are not "
            f"those strategy_performance evaluated ({first} .. {last}); re-materialize strategy_performance, then publish"
        )
    costs = CostModel(float(rows["commission_bps"].iloc[0]), float(rows["slippage_bps"].iloc[0]))
    trades = extract_trades(traces.rows, history.bars["close"].to_numpy(dtype=np.float64), costs)
    net = trades["net_return"]
    ids = np.asarray(traces.series_ids, dtype=object)[trades["series"].to_numpy()]
    means = pd.DataFrame(
        {
            "avg_win": net.where(net > 0).groupby(ids).mean(),
            "avg_loss": net.where(net < 0).groupby(ids).mean(),
        }
    )
    return ts, history.days[-1], means


def _evaluation_seconds(context: dg.AssetExecutionContext, run_id: str) -> float | None:
    """Wall time of the ``strategy_performance`` step of ``run_id`` (seconds), when recorded."""
    stats = context.instance.get_run_step_stats(run_id, step_keys=["strategy_performance"])
    if stats and stats[0].start_time is not None and stats[0].end_time is not None:
        return float(stats[0].end_time - stats[0].start_time)
    return None


@dg.asset(
    deps=[strategy_performance],
    group_name="history",
    kinds={"postgres"},
    io_manager_key="run_history_io_manager",
)
def backtest_history(context: dg.AssetExecutionContext, workspace: AdmfWorkspace, duckdb: AnalyticsDuckDB) -> pd.DataFrame:
    """The grid evaluation in the PostgreSQL run history: one ``backtest_runs`` row per strategy
    and symbol of the DuckDB ``strategies`` table, with its ``performance_metrics`` row, its
    configuration snapshot (type, parameters, symbol, timeframe, the workspace bar folder and last
    trading day it ran on, costs in bps per side, calendar) and the Dagster run id that computed
    the metrics. Refuses (``dagster.Failure``) when the stored bars no longer span what
    ``strategy_performance`` evaluated.

    Run ids are uuid5 of (that Dagster run id, strategy_id): publishing the same evaluation again
    replaces its rows; a new evaluation adds a new generation. ``execution_duration_seconds`` is
    the wall time of the ``strategy_performance`` step divided by its number of strategies.
    """
    with duckdb.get_connection() as conn:
        table = conn.execute("SELECT * FROM strategies ORDER BY symbol, strategy_id").df()
    if table.empty:
        raise dg.Failure(description="the DuckDB strategies table is empty; materialize strategy_performance first")
    run_ids = table["run_id"].unique()
    if len(run_ids) != 1:
        raise dg.Failure(description=f"strategies holds rows of {len(run_ids)} Dagster runs; re-materialize strategy_performance")
    evaluation_run = str(run_ids[0])
    bars_paths, timestamps, through, means = {}, {}, {}, []
    for (symbol, timeframe), rows in table.groupby(["symbol", "timeframe"], sort=True):
        bars_paths[symbol] = str(workspace.layout.bars_dir(symbol, timeframe).resolve())
        timestamps[symbol], through[symbol], symbol_means = _trade_means(workspace, rows, symbol, timeframe)
        means.append(symbol_means)
    seconds = _evaluation_seconds(context, evaluation_run)
    frame = publication_frame(
        table,
        dagster_run_id=evaluation_run,
        bars_paths=bars_paths,
        bar_timestamps=timestamps,
        bars_through=through,
        trade_means=pd.concat(means) if means else None,
        calendar=workspace.calendar,
        duration_seconds=None if seconds is None else seconds / len(table),
    )
    context.add_output_metadata(
        {
            "evaluation_run_id": evaluation_run,
            "rows": len(frame),
            "top_10_by_sharpe": markdown_table(
                frame.sort_values("sharpe_ratio", ascending=False, na_position="last")[
                    ["strategy_name", "sharpe_ratio", "total_return", "max_drawdown", "total_trades"]
                ],
                limit=10,
            ),
        }
    )
    return frame


publish_history_job = dg.define_asset_job(
    "publish_history_job",
    selection=dg.AssetSelection.assets(backtest_history),
    description="Publish the current grid evaluation to the PostgreSQL run history (backtest_runs, performance_metrics).",
)


@dg.definitions
def history() -> dg.Definitions:
    """The publishing asset, job and IO manager, when publishing is configured."""
    if not publish_enabled():
        return dg.Definitions()
    return dg.Definitions(
        assets=[backtest_history],
        jobs=[publish_history_job],
        resources={"run_history_io_manager": RunHistoryIOManager(url=dg.EnvVar("ADMF_POSTGRES_URL"))},
    )
