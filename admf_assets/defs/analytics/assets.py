"""Whole-grid analytics in DuckDB: performance, regime performance, parameter sensitivity, and
the strategy index Parquet file. Each asset replaces its table(s) in one transaction."""


import datetime as dt

import dagster as dg
import pandas as pd

from admf_assets.core.analytics import (
    HEADLINE_METRICS,
    classifier_table,
    config_hash,
    overfitting_tables,
    parameter_rows,
    performance_table,
    regime_aware_scores,
    regime_table,
    series_daily_returns,
    strategy_index_table,
)
from admf_assets.core.archive import FILE_VIEWS, layout_archive, refresh_file_views
from admf_assets.core.store import BarHistory, load_series, read_trace_history, series_with_traces
from admf_assets.core.traces import write_parquet_atomic
from admf_assets.core.warehouse import replace_rows, to_arrow, transaction
from admf_assets.defs.traces.assets import classifier_states, signal_traces
from admf_assets.lib.metadata import markdown_table, path_value
from admf_assets.lib.plots import markdown_image, sensitivity_png, sharpe_histogram_png, write_png
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, ExecutionCosts

TOP_N_COLUMNS = [
    "strategy_id", "strategy_type", "parameters", "sharpe_ratio", "deflated_sharpe_ratio", "total_return", "max_drawdown",
    "win_rate", "total_trades",
]
PLOTS_DIR = "plots"
"""Folder (under the workspace root) of the PNG charts attached to materializations."""


class _StatementRecorder:
    """A stand-in DuckDB connection that records the statements given to ``execute``."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str, *args, **kwargs) -> "_StatementRecorder":
        self.statements.append(sql)
        return self


VIEW_COMMENT_PREFIX = "admf.file_views:"
"""Prefix of the DuckDB comment that :func:`ensure_file_views` sets on each file view."""


def ensure_file_views(conn, layout, archive) -> tuple[list[str], bool]:
    """:func:`admf_assets.core.archive.refresh_file_views`, skipped when it would change nothing.

    The views read their globs at query time, so they only need re-creating when their
    definition changes (a kind gains or loses hot or archived files, another archive location);
    re-creating them costs seconds (DuckDB binds every file's schema). The statements
    ``refresh_file_views`` would run now are recorded (nothing executed), and their sha256 is
    compared with the comment each view got when this function last created it
    (``COMMENT ON VIEW``; any other ``CREATE OR REPLACE VIEW`` clears it). Only on a difference
    are the statements executed and the comments set.

    Returns:
        ``(views, refreshed)``: the names of the file views, and whether they were re-created.
    """
    import hashlib

    recorder = _StatementRecorder()
    try:
        made = refresh_file_views(recorder, layout, archive)
    except TypeError:  # refresh_file_views needs a real connection: no shortcut
        return refresh_file_views(conn, layout, archive), True
    digest = VIEW_COMMENT_PREFIX + hashlib.sha256("\n".join(recorder.statements).encode()).hexdigest()[:32]
    existing = dict(conn.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
    unchanged = all(existing.get(v) == digest for v in made) and not any(v in existing for v in FILE_VIEWS if v not in made)
    if unchanged:
        return made, False
    for sql in recorder.statements:
        conn.execute(sql)
    for view in made:
        conn.execute(f"COMMENT ON VIEW {view} IS '{digest}'")
    return made, True


def _series(workspace: AdmfWorkspace) -> list[tuple[str, str]]:
    found = series_with_traces(workspace.layout, workspace.timeframe)
    if not found:
        raise dg.Failure(description=f"no signal traces under {workspace.layout.root / 'traces' / 'signals'}; materialize signal_traces first")
    return found


def _record_run(conn, context: dg.AssetExecutionContext, workspace: AdmfWorkspace, costs: ExecutionCosts, frames: list[BarHistory], strategy_hashes) -> None:
    """Insert the ``runs`` row of this Dagster run inside the caller's transaction (so it commits
    with the asset's data); later assets of the same run keep the first row."""
    conn.execute(
        """
        INSERT INTO runs (run_id, created_at, workflow_type, symbols, start_date, end_date, total_bars,
                          config_hash, status, workspace_path, commission_bps, slippage_bps)
        VALUES (?, ?, 'grid_search', ?, ?, ?, ?, ?, 'completed', ?, ?, ?)
        ON CONFLICT (run_id) DO NOTHING
        """,
        [
            context.run.run_id,
            dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            sorted({h.symbol for h in frames}),
            min(h.days[0] for h in frames),
            max(h.days[-1] for h in frames),
            int(sum(len(h.bars) for h in frames)),
            config_hash(strategy_hashes),
            str(workspace.layout.root),
            costs.commission_bps,
            costs.slippage_bps,
        ],
    )


@dg.asset(
    deps=[signal_traces],
    group_name="analytics",
    kinds={"duckdb"},
    pool="duckdb_writer",
)
def strategy_performance(
    context: dg.AssetExecutionContext, workspace: AdmfWorkspace, costs: ExecutionCosts, duckdb: AnalyticsDuckDB
) -> dg.MaterializeResult:
    """DuckDB table ``strategies``: one row per strategy and symbol with every performance metric
    after execution costs (commission and slippage in bps per side, from the ``costs`` resource)
    and its Deflated Sharpe Ratio within its grid (the series' strategies), plus
    ``strategy_parameters`` (one row per parameter) for sensitivity analysis,
    ``grid_overfitting`` (per grid: PBO by CSCV, expected maximum Sharpe ratio of the trials) and
    this run's rows of ``run_strategies`` (kept across runs for cross-run queries). Formulas:
    docs/analytics.md. Metadata: top-10 table, PBO table, Sharpe histogram per grid (PNG)."""
    cost_model = costs.model()
    histories, frames, dsr_frames, grids = [], [], [], []
    for symbol, timeframe in _series(workspace):
        history, traces = load_series(workspace.layout, symbol, timeframe)
        histories.append(history)
        perf = performance_table(workspace.layout, history, traces, cost_model)
        frames.append(perf)
        per, grid = overfitting_tables(series_daily_returns(history, traces, cost_model), perf, symbol, timeframe)
        dsr_frames.append(per)
        grids.append(grid)
    table = pd.concat(frames, ignore_index=True).merge(pd.concat(dsr_frames, ignore_index=True), on="strategy_id", how="left")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    run_id = context.run.run_id
    table = table.assign(run_id=run_id, created_at=now, processed_at=now)
    params = parameter_rows(table)
    grid_df = pd.DataFrame(grids).assign(run_id=run_id, created_at=now)
    registry = table[
        ["run_id", "strategy_id", "strategy_hash", "strategy_type", "symbol", "timeframe", "grid_id", "parameters", "sharpe_ratio", "total_trades"]
    ].assign(config_hash=table["grid_id"].str.rsplit("_", n=1).str[1], recorded_at=now)
    with duckdb.get_connection() as conn, transaction(conn):
        _record_run(conn, context, workspace, costs, histories, table["strategy_hash"])
        replace_rows(conn, "strategies", table)
        replace_rows(conn, "strategy_parameters", params)
        replace_rows(conn, "grid_overfitting", grid_df)
        replace_rows(conn, "run_strategies", registry, where="run_id = ?", params=[run_id])
    top = table.sort_values(["sharpe_ratio", "strategy_id"], ascending=[False, True], na_position="last")[TOP_N_COLUMNS]
    metadata = {
        "rows": len(table),
        "series": len(histories),
        "strategies_with_trades": int((table["total_trades"] > 0).sum()),
        "best_sharpe_ratio": float(top["sharpe_ratio"].iloc[0]) if top["sharpe_ratio"].notna().any() else float("nan"),
        "commission_bps": costs.commission_bps,
        "slippage_bps": costs.slippage_bps,
        "database": path_value(duckdb.database),
        "top_10_by_sharpe": markdown_table(top, limit=10),
        "overfitting_by_grid": markdown_table(
            grid_df[["grid_id", "n_trials", "n_obs", "pbo", "expected_max_sharpe", "best_strategy_id", "best_sharpe", "best_deflated_sharpe"]],
            limit=50,
        ),
    }
    for grid in grids:
        sharpe = table.loc[table["grid_id"] == grid["grid_id"], "sharpe_ratio"].to_numpy()
        png = sharpe_histogram_png(sharpe, grid["expected_max_sharpe"], f"{grid['symbol']} {grid['timeframe']}: net Sharpe ratios, PBO {grid['pbo'] if grid['pbo'] is None else round(grid['pbo'], 3)}")
        write_png(png, workspace.layout.root / PLOTS_DIR / f"sharpe_{grid['symbol']}_{grid['timeframe']}.png")
        metadata[f"sharpe_distribution_{grid['symbol']}_{grid['timeframe']}"] = markdown_image(png, f"Sharpe ratios {grid['symbol']}")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[signal_traces, classifier_states, strategy_performance],
    group_name="analytics",
    kinds={"duckdb"},
    pool="duckdb_writer",
)
def regime_performance(
    context: dg.AssetExecutionContext, workspace: AdmfWorkspace, costs: ExecutionCosts, duckdb: AnalyticsDuckDB
) -> dg.MaterializeResult:
    """DuckDB tables ``regime_performance`` (per strategy x classifier x regime: sharpe_ratio,
    total_return, win_rate, trade_count, avg_duration, regime_weight and the pair's
    regime_aware_score, see ``admf_assets.core.analytics.regime_aware_scores``) and
    ``classifiers`` (regime statistics)."""
    cost_model = costs.model()
    histories, regimes, classifiers, hashes = [], [], [], []
    for symbol, timeframe in _series(workspace):
        history, signals = load_series(workspace.layout, symbol, timeframe)
        states = read_trace_history(workspace.layout, history, "classifiers")
        histories.append(history)
        hashes += [c["hash"] for c in signals.configs]
        regimes.append(regime_table(history, signals, states, cost_model))
        classifiers.append(classifier_table(workspace.layout, history, states))
    regime_df = regime_aware_scores(pd.concat(regimes, ignore_index=True))
    classifier_df = pd.concat(classifiers, ignore_index=True).assign(
        run_id=context.run.run_id, created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    )
    with duckdb.get_connection() as conn, transaction(conn):
        _record_run(conn, context, workspace, costs, histories, hashes)
        replace_rows(conn, "classifiers", classifier_df)
        replace_rows(conn, "regime_performance", regime_df)
    best = regime_df.sort_values("sharpe_ratio", ascending=False, na_position="last")
    pairs = (
        regime_df.groupby(["strategy_id", "classifier_id"], as_index=False)["regime_aware_score"].first()
        .sort_values(["regime_aware_score", "strategy_id", "classifier_id"], ascending=[False, True, True], na_position="last")
    )
    return dg.MaterializeResult(
        metadata={
            "rows": len(regime_df),
            "classifiers": len(classifier_df),
            "regimes": markdown_table(classifier_df[["classifier_id", "regime_changes", "regime_counts"]], limit=20),
            "best_regime_rows": markdown_table(best, limit=10),
            "top_10_by_regime_aware_score": markdown_table(pairs, limit=10),
        }
    )


@dg.asset(deps=[strategy_performance], group_name="analytics", kinds={"duckdb"}, pool="duckdb_writer")
def parameter_analysis(context: dg.AssetExecutionContext, workspace: AdmfWorkspace, duckdb: AnalyticsDuckDB) -> dg.MaterializeResult:
    """DuckDB table ``parameter_analysis``: per strategy_type x parameter x value the average,
    sample standard deviation and best Sharpe ratio over the strategies using that value, and
    their count (all symbols pooled). Metadata: one sensitivity chart (PNG, mean Sharpe +/- std
    against each parameter's value) per strategy type, also written to ``<workspace>/plots/``."""
    with duckdb.get_connection() as conn:
        with transaction(conn):
            conn.execute("DELETE FROM parameter_analysis")
            conn.execute(
                """
                INSERT INTO parameter_analysis (run_id, strategy_type, parameter_name, parameter_value,
                                                avg_sharpe, std_sharpe, count_strategies, best_sharpe)
                SELECT any_value(s.run_id), p.strategy_type, p.parameter_name, p.parameter_value,
                       avg(s.sharpe_ratio), stddev_samp(s.sharpe_ratio), count(*), max(s.sharpe_ratio)
                FROM strategy_parameters p JOIN strategies s USING (strategy_id)
                GROUP BY p.strategy_type, p.parameter_name, p.parameter_value
                """
            )
        table = conn.execute(
            "SELECT * FROM parameter_analysis ORDER BY strategy_type, parameter_name, parameter_value"
        ).df()
    metadata = {
        "rows": len(table),
        "strategy_types": int(table["strategy_type"].nunique()) if len(table) else 0,
        "preview": markdown_table(table.drop(columns="run_id"), limit=20),
    }
    # one sensitivity chart per strategy type (mean Sharpe +/- std against each parameter's value)
    for stype, rows in table.groupby("strategy_type", sort=True):
        frames = {name: grp.sort_values("parameter_value") for name, grp in rows.groupby("parameter_name", sort=True)}
        png = sensitivity_png(frames, f"{stype}: Sharpe ratio sensitivity (all symbols)")
        write_png(png, workspace.layout.root / PLOTS_DIR / f"sensitivity_{stype}.png")
        metadata[f"sensitivity_{stype}"] = markdown_image(png, f"{stype} sensitivity")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(deps=[strategy_performance], group_name="analytics", kinds={"parquet"}, pool="duckdb_writer")
def strategy_index(context: dg.AssetExecutionContext, workspace: AdmfWorkspace, duckdb: AnalyticsDuckDB) -> dg.MaterializeResult:
    """``strategy_index.parquet``: one row per strategy with its parameters as columns, trace
    location and headline metrics, queryable by DuckDB directly on the file."""
    with duckdb.get_connection() as conn:
        strategies = conn.execute("SELECT * FROM strategies ORDER BY strategy_id").df()
        # SQL over the files: market_bars_all / signal_traces_all / classifier_states_all follow
        # the hot and archived day files (created here on a new workspace, refreshed each run)
        views, _ = ensure_file_views(conn, workspace.layout, layout_archive(workspace.layout))
    index = strategy_index_table(strategies)
    path = write_parquet_atomic(to_arrow(index), workspace.layout.strategy_index_file)
    return dg.MaterializeResult(
        metadata={
            "rows": len(index),
            "path": path_value(path),
            "columns": ", ".join(index.columns),
            "preview": markdown_table(index.drop(columns=["trace_path"]), limit=10),
            "headline_metrics": ", ".join(HEADLINE_METRICS),
            "file_views": ", ".join(views),
        }
    )
