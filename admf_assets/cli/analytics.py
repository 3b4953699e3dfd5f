"""``admf analytics ...``: the researcher's analytics queries over the DuckDB warehouse.

Registered in :mod:`admf_assets.cli.main` as ``admf analytics``. Every command reads
``<workspace>/analytics.duckdb`` (``--workspace`` before the sub-command, else ``ADMF_WORKSPACE``,
else ``./workspace``) through :func:`admf_assets.core.warehouse.connect`, which takes the
cross-process lock, so a command waits while a Dagster run writes. SQL lives in
:mod:`admf_assets.core.queries` (parameterized; sort metrics whitelisted).

* ``scan [--min-sharpe X] [--max-drawdown X] [--min-trades N] [--strategy-types a,b] [--symbol S]
  [--min-dsr P] [--max-pbo P] [--top N] [--sort-by METRIC]``: strategies matching the filters;
  strategies that never trade come last, ties broken by Sharpe ratio; the sort metric is always
  an output column.
* ``analyze-parameters --strategy TYPE --parameter NAME [--parameter NAME2] [--plot FILE.png]``:
  Sharpe ratio per parameter value (curve) or per pair of values (heatmap).
* ``correlations [--top N] [--min-correlation X]``: highly correlated pairs among the top N
  strategies and their clusters (keep the first member of each).
* ``top-combinations [--limit N] [--symbol S] [--min-trades N]``: best strategy x classifier
  pairs by the regime-aware score.
* ``duplicates [--across runs|grids] [--symbol S] [--limit N] [--index GLOB]``: strategy hashes
  seen in more than one run (or grid), optionally counting ``admf traces`` index files too.
* ``show STRATEGY_ID [--plot FILE.png] [--trades N]``: parameters, metrics, trades, equity curve.

Tabular commands take ``--format table|csv|json`` (csv/json go to stdout, for pipes; ``show``
takes table|json). Table titles of the listings say "showing N of M" (M = rows matching before
the limit). ``--symbol`` is upper-cased and must be a symbol of the warehouse.

Exit codes (errors print one line on stderr):

* 0: success.
* 2: bad input (unknown ``--sort-by`` metric, strategy type, symbol or parameter; bad option value).
* 3: store problem (no warehouse at the workspace, a table not materialized yet, traces missing).
* 4: warehouse unavailable (lock not obtained in time, DuckDB cannot open the file).
* 6: unknown strategy id.
"""

from __future__ import annotations

import contextlib
import json
import os
from enum import Enum
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from admf_assets.core.queries import sort_metrics_help

EXIT_BAD_INPUT = 2
EXIT_STORE = 3
EXIT_UNAVAILABLE = 4
EXIT_UNKNOWN_STRATEGY = 6

LOCK_TIMEOUT_SECONDS = 120.0

analytics_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Analytics over the materialized warehouse: scan, parameter sensitivity, correlations, regime combinations.",
)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class Scope(str, Enum):
    runs = "runs"
    grids = "grids"


def _main():
    # imported late: main.py imports this module while it is being defined
    from admf_assets.cli import main

    return main


def _fail(message: str, code: int) -> None:
    _main()._fail(message, code)


@analytics_app.callback()
def _options(
    ctx: typer.Context,
    workspace: Optional[Path] = typer.Option(None, help="Workspace root holding analytics.duckdb (default: ADMF_WORKSPACE or ./workspace)."),
) -> None:
    """Analytics over the materialized warehouse."""
    ctx.obj = {"workspace": workspace}


def _workspace(ctx: typer.Context) -> Path:
    given = (ctx.obj or {}).get("workspace")
    return Path(given if given is not None else os.environ.get("ADMF_WORKSPACE", "workspace"))


@contextlib.contextmanager
def _warehouse(ctx: typer.Context, status: str) -> Iterator:
    """Open the workspace's warehouse under its lock, with a spinner on stderr."""
    import duckdb
    import filelock

    from admf_assets.core.warehouse import connect

    database = _workspace(ctx) / "analytics.duckdb"
    if not database.is_file():
        _fail(f"no warehouse at {database}; materialize the analytics first (`admf run`) or pass --workspace", EXIT_STORE)
    try:
        with _main().err_console.status(status), connect(database, timeout=LOCK_TIMEOUT_SECONDS) as conn:
            yield conn
    except filelock.Timeout:
        _fail(f"{database} is locked by another process for more than {LOCK_TIMEOUT_SECONDS:g} s; retry when the run has finished", EXIT_UNAVAILABLE)
    except duckdb.IOException as err:
        _fail(f"cannot open {database}: {err}", EXIT_UNAVAILABLE)


def _emit(df, fmt: OutputFormat, title: str, columns: list[str] | None = None) -> None:
    """Print ``df`` as a rich table, CSV or JSON records (CSV/JSON on stdout, plain)."""
    m = _main()
    cols = columns or list(df.columns)
    if fmt is OutputFormat.csv:
        typer.echo(df[cols].to_csv(index=False), nl=False)
    elif fmt is OutputFormat.json:
        typer.echo(json.dumps(_records(df[cols]), default=str))
    else:
        m.print_table(df, title, cols)


def _records(df) -> list[dict]:
    """Rows as JSON-ready dicts at full float precision (NaN/NaT -> null)."""
    import pandas as pd

    return [{k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
            for row in df.to_dict(orient="records")]


def _finite_or_none(value) -> float | None:
    """A float for JSON, or ``None`` for a missing / non-finite value (JSON has no NaN)."""
    import math

    return float(value) if value is not None and math.isfinite(float(value)) else None


def _compact(df, column: str = "parameters"):
    return df.assign(**{column: df[column].map(lambda p: _main().compact_parameters(p) if isinstance(p, str) else "-")})


def _symbol(symbol: Optional[str]) -> Optional[str]:
    """``--symbol`` as stored in the warehouse (symbols are upper case)."""
    return symbol.strip().upper() if symbol is not None else None


def _check_symbol(conn, symbol: Optional[str]) -> None:
    """Exit 2 for a ``--symbol`` that no strategy of the warehouse has (the message lists the known ones)."""
    from admf_assets.core.queries import known_symbols

    if symbol is None:
        return
    known = known_symbols(conn)
    if symbol not in known:
        _fail(f"unknown --symbol {symbol}; known symbols: {', '.join(known) or 'none (materialize strategy_performance first)'}", EXIT_BAD_INPUT)


def _showing(df, what: str) -> str:
    """``showing N of M <what>`` (M from the query's ``attrs["total"]``)."""
    return f"showing {len(df):,} of {df.attrs.get('total', len(df)):,} {what}"


def _integral(values):
    """Parameter values with integral floats as ints (``7.0`` -> ``7``; ``1.5`` unchanged)."""
    import math

    import pandas as pd

    # an object column: Series.map would infer float64 again for a mix of ints and floats
    return pd.Series([int(v) if isinstance(v, float) and math.isfinite(v) and v.is_integer() else v for v in values],
                     index=values.index, dtype=object)


def _require_rows(conn, table: str, asset: str) -> None:
    if conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0:  # table from a fixed literal
        _fail(f"table {table} is empty in the warehouse; materialize the `{asset}` asset first", EXIT_STORE)


@analytics_app.command()
def scan(
    ctx: typer.Context,
    min_sharpe: Optional[float] = typer.Option(None, help="Keep net Sharpe ratio >= X (annualized)."),
    max_drawdown: Optional[float] = typer.Option(None, min=0, help="Keep max drawdown <= X (fraction, 0.15 = 15%)."),
    min_trades: Optional[int] = typer.Option(None, min=0, help="Keep strategies with >= N closed trades (--min-trades 1 drops those that never trade)."),
    strategy_types: Optional[str] = typer.Option(None, help="Comma-separated strategy types, e.g. momentum,ma_crossover."),
    symbol: Optional[str] = typer.Option(None, help="Keep one symbol (case-insensitive; must be in the warehouse)."),
    min_dsr: Optional[float] = typer.Option(None, min=0, max=1, help="Keep Deflated Sharpe Ratio >= P (probability; deflated for the trials of the strategy's own grid only)."),
    max_pbo: Optional[float] = typer.Option(None, min=0, max=1, help="Keep strategies whose grid's PBO <= P."),
    top: int = typer.Option(50, min=1, help="At most N rows."),
    sort_by: str = typer.Option(
        "sharpe_ratio",
        help=f"Metric to rank by, always shown as a column: {sort_metrics_help()}. Strategies that never trade "
             "come after the others whatever the metric; ties by sharpe_ratio, then strategy_id.",
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, csv or json."),
) -> None:
    """Strategies matching the filters, best first: one parameterized query over `strategies`
    joined with each grid's PBO. Strategies without a closed trade sort after the others for every
    metric (drop them with --min-trades 1); ties by net Sharpe ratio, then strategy id."""
    from admf_assets.core.queries import QueryError, ScanFilter, check_sort_metric
    from admf_assets.core.queries import scan as run_scan

    try:
        check_sort_metric(sort_by)
    except QueryError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    types = [t.strip() for t in strategy_types.split(",") if t.strip()] if strategy_types else None
    from admf_assets.core.strategies import STRATEGY_TYPES

    unknown = sorted(set(types or ()) - set(STRATEGY_TYPES))
    if unknown:
        _fail(f"unknown --strategy-types {', '.join(unknown)}; known types: {', '.join(STRATEGY_TYPES)}", EXIT_BAD_INPUT)
    symbol = _symbol(symbol)
    f = ScanFilter(min_sharpe, max_drawdown, min_trades, types, symbol, min_dsr, max_pbo, top, sort_by)
    with _warehouse(ctx, "scanning strategies...") as conn:
        _check_symbol(conn, symbol)
        try:
            df = run_scan(conn, f)
        except QueryError as err:
            _fail(str(err), EXIT_BAD_INPUT)
    title = _showing(df, f"strategies by {sort_by} (net of costs; DSR and grid PBO: docs/analytics.md)")
    if fmt is OutputFormat.table:
        df = _compact(df)
    columns = _SCAN_TABLE_COLUMNS + ([sort_by] if sort_by not in _SCAN_TABLE_COLUMNS else [])
    _emit(df, fmt, title, columns if fmt is OutputFormat.table else None)


_SCAN_TABLE_COLUMNS = [
    "strategy_id", "parameters", "sharpe_ratio", "deflated_sharpe_ratio", "total_return", "max_drawdown", "win_rate",
    "profit_factor", "total_trades", "pbo",
]


@analytics_app.command("analyze-parameters")
def analyze_parameters(
    ctx: typer.Context,
    strategy: str = typer.Option(..., help="Strategy type, e.g. bollinger_bands."),
    parameter: List[str] = typer.Option(..., help="Parameter name; give it twice for a two-parameter heatmap."),
    plot: Optional[Path] = typer.Option(None, dir_okay=False, help="Write the sensitivity curve (or heatmap) to this PNG."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, csv or json."),
) -> None:
    """Net Sharpe ratio statistics per parameter value (pre-computed parameter_analysis rows, or
    computed from strategy_parameters when missing)."""
    from admf_assets.core.queries import QueryError, parameter_grid, parameter_sensitivity

    if len(parameter) > 2:
        _fail(f"at most two --parameter options (got {len(parameter)}: {', '.join(parameter)})", EXIT_BAD_INPUT)
    if plot is not None and plot.suffix.lower() != ".png":
        _fail(f"--plot must name a .png file, got {plot}", EXIT_BAD_INPUT)
    with _warehouse(ctx, "analyzing parameters...") as conn:
        try:
            if len(parameter) == 1:
                df, source = parameter_sensitivity(conn, strategy, parameter[0])
            else:
                df, source = parameter_grid(conn, strategy, parameter[0], parameter[1]), "computed"
        except QueryError as err:
            _fail(str(err), EXIT_BAD_INPUT)
    if df.empty:
        _fail(f"no strategies of type {strategy} with parameter(s) {', '.join(parameter)} in the warehouse", EXIT_STORE)
    # output: the pair's columns named after the parameters, integral values printed as integers
    value_columns = ["parameter_value"] if len(parameter) == 1 else ["value_a", "value_b"]
    shown = df.assign(**{c: _integral(df[c]) for c in value_columns})
    if len(parameter) == 2:
        shown = shown.rename(columns={"value_a": parameter[0], "value_b": parameter[1]})
    _emit(shown, fmt, f"{strategy}: net Sharpe ratio by {' x '.join(parameter)} ({source}, all symbols)")
    if plot is not None:
        from admf_assets.lib.plots import heatmap_png, sensitivity_png, write_png

        if len(parameter) == 1:
            png = sensitivity_png({parameter[0]: df}, f"{strategy}: Sharpe ratio sensitivity")
        else:
            png = heatmap_png(df, parameter[0], parameter[1], f"{strategy}: mean Sharpe ratio")
        write_png(png, plot)
        _main().err_console.print(f"wrote {plot}", highlight=False)


@analytics_app.command()
def correlations(
    ctx: typer.Context,
    top: int = typer.Option(20, min=2, help="Use the N best strategies by Sharpe ratio (of those stored by the asset)."),
    min_correlation: float = typer.Option(0.7, min=-1, max=1, help="List pairs with Pearson correlation >= X; clusters link at X."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, csv or json (json holds pairs and clusters)."),
) -> None:
    """Highly correlated pairs among the top N strategies (daily net returns, from the
    strategy_correlations asset) and their clusters: keep the first (best) member of each."""
    from admf_assets.core.analytics import correlation_clusters
    from admf_assets.core.queries import correlation_pairs

    with _warehouse(ctx, "reading correlations...") as conn:
        _require_rows(conn, "strategy_correlations", "strategy_correlations")
        pairs, members = correlation_pairs(conn, top)
    if len(members) < top:
        _main().err_console.print(f"note: only {len(members)} strategies are stored by strategy_correlations (its top_n config)", highlight=False)
    ids = list(members["strategy_id"])
    clusters = correlation_clusters(ids, pairs, min_correlation)
    cluster_of = {sid: i + 1 for i, group in enumerate(clusters) for sid in group}
    strong = pairs[pairs["correlation"] >= min_correlation].copy()
    strong["cluster"] = [cluster_of.get(a) for a in strong["strategy_id_a"]]
    info = members.set_index("strategy_id")
    cluster_rows = [
        {
            "cluster": i + 1,
            "size": len(group),
            "keep": group[0],
            "keep_sharpe": _finite_or_none(info.loc[group[0], "sharpe_ratio"] if group[0] in info.index else None),
            "members": " ".join(group[1:]),
        }
        for i, group in enumerate(clusters)
    ]
    import pandas as pd

    cdf = pd.DataFrame(cluster_rows, columns=["cluster", "size", "keep", "keep_sharpe", "members"])
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"pairs": _records(strong), "clusters": cluster_rows}, default=str))
        return
    _emit(strong, fmt, f"{len(strong)} pairs with correlation >= {min_correlation:g} among the top {len(members)} strategies")
    if fmt is OutputFormat.table:
        distinct = len(ids) - sum(len(g) - 1 for g in clusters)
        _main().print_table(cdf, f"{len(clusters)} clusters: {distinct} distinct strategies of {len(ids)} (keep the first of each cluster)")


@analytics_app.command("top-combinations")
def top_combinations(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, help="Rows to show."),
    symbol: Optional[str] = typer.Option(None, help="Keep one symbol (case-insensitive; must be in the warehouse)."),
    min_trades: Optional[int] = typer.Option(None, min=0, help="Keep pairs with >= N trades attributed to regimes."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, csv or json."),
) -> None:
    """Best strategy x classifier pairs by regime-aware score (trade-weighted, shrunk Sharpe of
    trading only the regimes where the strategy earns; docs/analytics.md). Filters that match no
    pair give an empty result (exit 0)."""
    from admf_assets.core.queries import has_regime_scores
    from admf_assets.core.queries import top_combinations as query

    symbol = _symbol(symbol)
    with _warehouse(ctx, "ranking strategy x classifier pairs...") as conn:
        _require_rows(conn, "regime_performance", "regime_performance")
        _check_symbol(conn, symbol)
        df = query(conn, limit, symbol, min_trades)
        if df.empty and not has_regime_scores(conn):
            _fail("regime_performance has no regime_aware_score yet; re-materialize the `regime_performance` asset", EXIT_STORE)
    if df.empty:
        given = " ".join(f"{k} {v}" for k, v in (("--symbol", symbol), ("--min-trades", min_trades)) if v is not None)
        _main().err_console.print(f"note: no pair matches {given or 'the filters'}", highlight=False)
    cols = ["strategy_id", "classifier_id", "regime_aware_score", "sharpe_ratio", "regime_edge", "best_regime", "best_regime_sharpe", "trades", "strategy_parameters"]
    if fmt is OutputFormat.table:
        title = _showing(df, "strategy x classifier pairs by regime-aware score")
        df = _compact(df, "strategy_parameters")
        _emit(df, fmt, title, cols)
    else:
        _emit(df, fmt, "")


@analytics_app.command()
def duplicates(
    ctx: typer.Context,
    across: Scope = typer.Option(Scope.runs, help="runs: hash in several strategy_performance runs; grids: in several grid contents (config hashes)."),
    symbol: Optional[str] = typer.Option(None, help="Keep one symbol."),
    limit: int = typer.Option(100, min=1, help="Rows to show."),
    index: List[str] = typer.Option([], help="Also count strategy_index.parquet files of `admf traces` runs (a glob; repeatable)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, csv or json."),
) -> None:
    """Strategies whose hash appears in more than one run or grid (seed 001's cross-run query on
    the run_strategies registry, plus any --index files), with the spread of their Sharpe ratios."""
    import glob

    import duckdb

    from admf_assets.core.queries import duplicates as query

    files: list[str] = []
    for pattern in index:
        found = sorted(glob.glob(pattern, recursive=True))
        if not found:
            _fail(f"--index {pattern}: no file matches", EXIT_BAD_INPUT)
        files += found
    with _warehouse(ctx, "looking for repeated strategy hashes...") as conn:
        if not files:
            _require_rows(conn, "run_strategies", "strategy_performance")
        try:
            df = query(conn, across.value, symbol, limit, files)
        except duckdb.Error as err:
            if not files:
                _fail(f"warehouse query failed: {str(err).splitlines()[0]}", EXIT_STORE)
            _fail(f"--index files are not strategy indexes ({', '.join(files[:3])}): {str(err).splitlines()[0]}", EXIT_BAD_INPUT)
    title = _showing(df, f"strategy hashes in more than one {across.value[:-1]}")
    df = df.assign(symbols=df["symbols"].map(lambda s: ",".join(s)))
    if fmt is OutputFormat.table:
        df = _compact(df)
    _emit(df, fmt, title)


_SHOW_METRICS = (
    "sharpe_ratio", "deflated_sharpe_ratio", "sortino_ratio", "calmar_ratio", "total_return", "annualized_return",
    "volatility", "max_drawdown", "win_rate", "profit_factor", "exposure", "total_trades", "avg_trade_return",
    "avg_trade_duration", "gross_sharpe", "total_commission", "total_slippage", "return_skewness", "return_kurtosis",
    "return_days", "pbo", "expected_max_sharpe", "n_trials", "commission_bps", "slippage_bps",
)


@analytics_app.command()
def show(
    ctx: typer.Context,
    strategy_id: str = typer.Argument(..., help="e.g. SPY_5m_bollinger_bands_a3f4b2c1d5e6"),
    plot: Optional[Path] = typer.Option(None, dir_okay=False, help="Write the equity curve (daily, net) to this PNG."),
    trades: int = typer.Option(10, min=0, help="Show the last N closed trades."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", metavar="<table|json>", help="table or json (csv is refused: the output is several tables)."),
) -> None:
    """One strategy: parameters, metrics after costs, closed-trade summary (from the stored bars
    and traces) and its equity curve."""
    import pandas as pd

    from admf_assets.core.analytics import strategy_detail
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.metrics import CostModel
    from admf_assets.core.queries import strategy_row
    from admf_assets.core.store import StoreError, load_series

    if fmt is OutputFormat.csv:
        _fail("show supports --format table or json", EXIT_BAD_INPUT)
    if plot is not None and plot.suffix.lower() != ".png":
        _fail(f"--plot must name a .png file, got {plot}", EXIT_BAD_INPUT)
    with _warehouse(ctx, "reading the strategy...") as conn:
        row = strategy_row(conn, strategy_id)
    if row is None:
        _fail(f"unknown strategy id {strategy_id!r} (not in the warehouse's strategies table; see `admf analytics scan`)", EXIT_UNKNOWN_STRATEGY)
    m = _main()
    try:
        with m.err_console.status("replaying trades from the stored traces..."):
            history, traces = load_series(WorkspaceLayout(_workspace(ctx)), row["symbol"], row["timeframe"])
            costs = CostModel(commission_bps=float(row["commission_bps"]), slippage_bps=float(row["slippage_bps"]))
            trade_df, equity = strategy_detail(history, traces, strategy_id, costs)
    except (StoreError, KeyError) as err:
        _fail(f"{strategy_id}: {err.args[0] if err.args else err}", EXIT_STORE)
    summary = {
        "closed_trades": len(trade_df),
        "long_trades": int((trade_df["side"] > 0).sum()),
        "short_trades": int((trade_df["side"] < 0).sum()),
        "winning_trades": int((trade_df["net_return"] > 0).sum()),
        "losing_trades": int((trade_df["net_return"] <= 0).sum()),
        "mean_net_return": float(trade_df["net_return"].mean()) if len(trade_df) else None,
        "best_trade": float(trade_df["net_return"].max()) if len(trade_df) else None,
        "worst_trade": float(trade_df["net_return"].min()) if len(trade_df) else None,
        "mean_duration_bars": float(trade_df["duration_bars"].mean()) if len(trade_df) else None,
        "equity_end": float(equity.iloc[-1]) if len(equity) else None,
        "days": len(equity),
    }
    metrics = {k: (None if pd.isna(row.get(k)) else row.get(k)) for k in _SHOW_METRICS if k in row}
    metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
    if plot is not None and len(equity) == 0:
        _fail(f"{strategy_id}: no daily returns to plot", EXIT_STORE)
    if plot is not None:
        from admf_assets.lib.plots import equity_png, write_png

        write_png(equity_png(equity, f"{strategy_id} (net of {row['commission_bps']:g}+{row['slippage_bps']:g} bps per side)"), plot)
        m.err_console.print(f"wrote {plot}", highlight=False)
    if fmt is OutputFormat.json:
        recent = trade_df.tail(trades).assign(entry_ts=lambda d: d["entry_ts"].astype(str), exit_ts=lambda d: d["exit_ts"].astype(str))
        typer.echo(json.dumps({
            "strategy_id": strategy_id, "strategy_type": row["strategy_type"], "symbol": row["symbol"],
            "parameters": row["parameters"], "metrics": metrics, "trades": summary,
            "recent_trades": _records(recent),
        }, default=str))
        return
    m.console.print(f"[bold]{strategy_id}[/]  {row['strategy_type']} on {row['symbol']} {row['timeframe']}, run {row['run_id']}", highlight=False)
    m.print_table(pd.DataFrame({"parameter": list(row["parameters"]), "value": list(row["parameters"].values())}), "parameters")
    m.print_table(pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}), "metrics (net of costs; fractions, Sharpe annualized)")
    m.print_table(pd.DataFrame({"trades": list(summary), "value": list(summary.values())}), "closed trades (replayed from the stored traces)")
    if trades and len(trade_df):
        m.print_table(trade_df.tail(trades), f"last {min(trades, len(trade_df))} closed trades",
                      ["entry_ts", "exit_ts", "side", "entry_px", "exit_px", "net_return", "duration_bars"])
