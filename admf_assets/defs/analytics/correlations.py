"""``strategy_correlations``: Pearson correlations of the daily net returns of the top N
strategies by net Sharpe ratio (DuckDB table, replaced in one transaction)."""


import dagster as dg
import pandas as pd
from pydantic import Field

from admf_assets.core.analytics import correlation_clusters, correlation_table, series_daily_returns
from admf_assets.core.store import load_series
from admf_assets.core.warehouse import replace_rows, transaction
from admf_assets.defs.analytics.assets import strategy_performance
from admf_assets.lib.metadata import markdown_table
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, ExecutionCosts

TOP_SQL = """
SELECT strategy_id, symbol, timeframe
FROM strategies
WHERE sharpe_ratio IS NOT NULL AND total_trades > 0
ORDER BY sharpe_ratio DESC, strategy_id
LIMIT ?
"""


class CorrelationConfig(dg.Config):
    """How many of the best strategies (by net Sharpe ratio, with at least one closed trade) are correlated."""

    top_n: int = Field(default=100, ge=2, le=2000, description="strategies correlated pairwise (N*(N-1)/2 rows)")
    cluster_threshold: float = Field(default=0.7, ge=-1.0, le=1.0, description="correlation linking two strategies in the metadata's cluster summary")


@dg.asset(deps=[strategy_performance], group_name="analytics", kinds={"duckdb"}, pool="duckdb_writer")
def strategy_correlations(
    context: dg.AssetExecutionContext, config: CorrelationConfig, workspace: AdmfWorkspace, costs: ExecutionCosts, duckdb: AnalyticsDuckDB
) -> dg.MaterializeResult:
    """DuckDB table ``strategy_correlations``: for the top N strategies by net Sharpe ratio, the
    Pearson correlation of every pair's daily net returns (after commission and slippage, the
    returns of ``admf_assets.core.metrics.daily_net_returns`` on the stored bars and traces),
    over their common trading days; each pair once with both ranks, so ``admf analytics
    correlations --top K`` can use any K <= N."""
    with duckdb.get_connection() as conn:
        top = conn.execute(TOP_SQL, [config.top_n]).df()
    if top.empty:
        raise dg.Failure(description="no strategy with a Sharpe ratio and a closed trade in `strategies`; materialize strategy_performance first")
    ranks = {sid: i + 1 for i, sid in enumerate(top["strategy_id"])}
    cost_model = costs.model()
    series = []
    for (symbol, timeframe), ids in top.groupby(["symbol", "timeframe"], sort=True)["strategy_id"]:
        history, traces = load_series(workspace.layout, symbol, timeframe)
        daily = series_daily_returns(history, traces.subset(ids), cost_model)  # the top N's rows only
        missing = sorted(set(ids) - set(daily.columns))
        if missing:
            raise dg.Failure(description=f"{symbol}_{timeframe}: strategies {', '.join(missing[:5])} are in `strategies` but not in the stored traces; re-materialize strategy_performance")
        series.append(daily[list(ids)])
    daily_all = pd.concat(series, axis=1).sort_index()
    pairs = correlation_table(daily_all, ranks).assign(run_id=context.run.run_id)
    with duckdb.get_connection() as conn, transaction(conn):
        replace_rows(conn, "strategy_correlations", pairs)
    clusters = correlation_clusters(list(top["strategy_id"]), pairs, config.cluster_threshold)
    highest = pairs.sort_values("correlation", ascending=False, na_position="last")
    return dg.MaterializeResult(
        metadata={
            "strategies": len(top),
            "pairs": len(pairs),
            "days": len(daily_all),
            "mean_correlation": float(pairs["correlation"].mean()) if len(pairs) else float("nan"),
            f"clusters_at_{config.cluster_threshold:g}": len(clusters),
            "most_correlated_pairs": markdown_table(highest.drop(columns="run_id"), limit=15),
        }
    )
