"""The ``admf`` command line.

* ``admf run``: the main job: materialize the whole graph over the landing data (default: the
  bundled sample) in the embedded setup and print the top strategies by net Sharpe ratio (with
  their Deflated Sharpe Ratio and closed trades; strategies with fewer than ``--min-trades``
  closed trades, default 5, are left out of the printed list, not of the warehouse).
* ``admf traces``: a researcher's quick test outside Dagster: traces of every strategy of a grid
  on one bars file, written under an output folder with ``strategy_index.parquet``.
* ``admf metrics``: the performance table of the traces written by ``admf traces``.

* ``admf history ...`` / ``admf db ...``: PostgreSQL run history and its migrations
  (:mod:`admf_assets.cli.history`).

Errors print one line on stderr and exit non-zero: 2 for bad input (bars, grid, options), 3 for
a missing or inconsistent store, 1 for a failed Dagster run; the history commands add 4 (database
unavailable), 5 (duplicate run), 6 (unknown run id) and 7 (reproduced metrics differ).

Dagster's ``BetaWarning`` lines (beta parameters of the definitions, e.g. ``backfill_policy``)
are silenced for the commands (:func:`quiet_dagster_beta_warnings`); the library leaves
Python's warning filters alone.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="admf_assets: strategy grid search storage and analytics.")
# Piped output (CI logs, files) gets a fixed wide layout instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

EXIT_BAD_INPUT = 2
EXIT_STORE = 3
EXIT_RUN_FAILED = 1
DEFAULT_MIN_TRADES = 5


def quiet_dagster_beta_warnings() -> None:
    """Ignore Dagster's ``BetaWarning`` (what the definitions' beta parameters emit when a job is
    resolved) in this process: called for every ``admf`` command, not by the library. The class
    comes from ``dagster_shared`` (what ``dagster.BetaWarning`` is), which imports in about 30 ms
    instead of Dagster's seconds."""
    try:
        from dagster_shared.utils.warnings import BetaWarning
    except ImportError:  # pragma: no cover - older Dagster: the public alias
        from dagster import BetaWarning
    warnings.filterwarnings("ignore", category=BetaWarning)


@app.callback()
def _entry_point() -> None:
    quiet_dagster_beta_warnings()


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4g}"
    return str(value)


def compact_parameters(params_json: str) -> str:
    """``{"period": 20, "std_dev": 2.0}`` -> ``period=20 std_dev=2``."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in json.loads(params_json).items())


def print_table(df, title: str, columns: list[str] | None = None) -> None:
    """Print a DataFrame as a rich table."""
    table = Table(title=title, show_lines=False)
    cols = columns or list(df.columns)
    for c in cols:  # an id is not folded: the other columns wrap first
        table.add_column(c, overflow="fold", no_wrap=c == "strategy_id")
    for row in df[cols].itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def print_run_results(results) -> None:
    """One line per Dagster run: ``{label: ExecuteInProcessResult}`` -> id, outcome, materializations."""
    for name, result in results.items():
        console.print(f"  {name}: run {result.run_id[:8]} {'succeeded' if result.success else 'FAILED'}, "
                      f"{len(result.get_asset_materialization_events())} materializations")


TOP_QUERY = """
SELECT strategy_id, strategy_type, symbol, parameters, sharpe_ratio, deflated_sharpe_ratio, total_trades,
       total_return, max_drawdown, win_rate
FROM strategies
WHERE coalesce(total_trades, 0) >= ?
ORDER BY sharpe_ratio DESC NULLS LAST, strategy_id
LIMIT ?
"""
"""``admf run``'s printed list (``deflated_sharpe_ratio``: sql/duckdb/010_analytics.sql)."""
TOP_TABLE_COLUMNS = [
    "strategy_id", "parameters", "sharpe_ratio", "deflated_sharpe_ratio", "total_trades", "total_return", "max_drawdown",
    "win_rate",
]
"""Its printed columns (the strategy id names the symbol and type), as ``admf analytics scan``'s."""


def print_top_strategies(database: Path, top: int, min_trades: int) -> None:
    """Print the ``top`` strategies of the warehouse by net Sharpe ratio among those with at least
    ``min_trades`` closed trades, with their Deflated Sharpe Ratio and closed trades, and a line
    saying how many strategies the trade filter kept."""
    from admf_assets.core.warehouse import connect

    with connect(database) as conn:
        best = conn.execute(TOP_QUERY, [min_trades, top]).df()
        total, kept = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE coalesce(total_trades, 0) >= ?) FROM strategies", [min_trades]
        ).fetchone()
    best = best.assign(parameters=best["parameters"].map(compact_parameters))
    print_table(
        best, f"Top {top} strategies by net Sharpe ratio (after costs) with at least {min_trades} closed trades",
        TOP_TABLE_COLUMNS,
    )
    console.print(
        f"{kept} of {total} strategies have at least {min_trades} closed trades (--min-trades); "
        "deflated_sharpe_ratio: probability that the true Sharpe ratio beats the best that luck gives the grid (docs/analytics.md)",
        highlight=False,
    )


@app.command()
def run(
    landing: Optional[Path] = typer.Option(None, help="Folder of bar files (default: ADMF_LANDING_DIR or the bundled sample)."),
    workspace: Optional[Path] = typer.Option(None, help="Hot storage root (default: ADMF_WORKSPACE or ./workspace)."),
    grid: Optional[Path] = typer.Option(None, help="Strategy grid YAML (default: ADMF_GRID or the bundled default grid)."),
    top: int = typer.Option(10, min=1, help="How many strategies to print."),
    min_trades: int = typer.Option(
        DEFAULT_MIN_TRADES, "--min-trades", min=0,
        help="Leave strategies with fewer closed trades out of the printed list (the warehouse keeps them).",
    ),
) -> None:
    """Materialize the whole asset graph over every landing trading day, then print the top
    strategies by net Sharpe ratio with their parameters, Deflated Sharpe Ratio and closed
    trades, among those with at least --min-trades closed trades (default 5: with a few weeks of
    bars, a strategy with one lucky trade would otherwise top the list). The landing folder and
    the grid are checked before any run: a missing folder, a missing grid file or an invalid grid
    exits 2 with one line and writes nothing."""
    for env, value in (("ADMF_LANDING_DIR", landing), ("ADMF_WORKSPACE", workspace), ("ADMF_GRID", grid)):
        if value is not None:
            os.environ[env] = str(value.resolve())
    home = Path("dagster_home")
    if "DAGSTER_HOME" not in os.environ and (home / "dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(home.resolve())

    from admf_assets.core.grid import load_grid
    from admf_assets.core.schemas import GridError

    # bad input is reported before any run (and before Dagster is imported): one line, exit 2
    try:
        from admf_assets.lib.settings import Settings  # resolves the environment on import too

        settings = Settings.from_env()
    except ValueError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    if not Path(settings.landing_dir).is_dir():
        what = "is not a directory" if Path(settings.landing_dir).exists() else "not found"
        _fail(f"landing directory {what}: {settings.landing_dir}", EXIT_BAD_INPUT)
    try:
        load_grid(settings.grid_path)
    except FileNotFoundError:
        _fail(f"grid file not found: {settings.grid_path}", EXIT_BAD_INPUT)
    except IsADirectoryError:
        _fail(f"grid file is a directory: {settings.grid_path}", EXIT_BAD_INPUT)
    except GridError as err:
        _fail(str(err), EXIT_BAD_INPUT)

    import dagster as dg

    from admf_assets.core.bars import BarValidationError
    from admf_assets.lib.pipeline import RunFailedError, run_graph

    instance = dg.DagsterInstance.get() if "DAGSTER_HOME" in os.environ else dg.DagsterInstance.ephemeral()
    console.print(
        f"admf: landing [bold]{settings.landing_dir}[/], workspace [bold]{settings.workspace}[/], "
        f"Dagster instance {os.environ.get('DAGSTER_HOME', '(ephemeral)')}"
    )
    try:
        with console.status("materializing bars, traces, analytics and summaries..."):
            results = run_graph(instance, settings=settings)
    except BarValidationError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    except FileNotFoundError as err:  # the landing folder or a file in it vanished after the check
        _fail(str(err), EXIT_BAD_INPUT)
    except ValueError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    except RunFailedError as err:
        print_run_results(err.results)
        _fail(f"run failed: {err}", EXIT_RUN_FAILED)
    except dg.DagsterError as err:
        _fail(f"run failed: {err}", EXIT_RUN_FAILED)
    print_run_results(results)
    print_top_strategies(Path(settings.workspace) / "analytics.duckdb", top, min_trades)


@app.command()
def traces(
    bars: Path = typer.Option(..., exists=True, dir_okay=False, help="Bars file (CSV or Parquet)."),
    grid: Path = typer.Option(..., exists=True, dir_okay=False, help="Grid YAML."),
    out: Path = typer.Option(..., file_okay=False, help="Output folder."),
    rth: bool = typer.Option(False, "--rth", help="Keep regular trading hours only (default: bars exactly as given)."),
    symbol: Optional[str] = typer.Option(
        None,
        help="Symbol of the bars (default: the grid's, else the file's symbol column or its name). It names the bars "
             "of a file without a symbol column; it cannot override a symbol column (exit 2 when they differ).",
    ),
    chunk_size: int = typer.Option(128, min=1, help="Strategies per evaluation block."),
    commission_bps: float = typer.Option(0.5, min=0, help="Commission, basis points per side (the index's headline metrics)."),
    slippage_bps: float = typer.Option(1.0, min=0, help="Slippage, basis points per side (the index's headline metrics)."),
) -> None:
    """Compute the traces of every strategy in GRID on BARS and write them under OUT, with
    strategy_index.parquet and its headline metrics after costs. The bars file names its symbol
    in its symbol column or, without one, in its name (SPY_5m.csv): a grid symbol that differs
    from it, or a --symbol that differs from its symbol column, exits 2 naming both."""
    from admf_assets.core.bars import BarValidationError
    from admf_assets.core.metrics import CostModel
    from admf_assets.core.research import write_research_traces
    from admf_assets.core.schemas import GridError

    try:
        summary = write_research_traces(
            bars, grid, out, rth=rth, symbol=symbol, chunk_size=chunk_size, costs=CostModel(commission_bps, slippage_bps)
        )
    except (BarValidationError, GridError) as err:
        _fail(str(err), EXIT_BAD_INPUT)
    console.print(
        f"wrote {summary['files']} trace file(s) with {summary['change_rows']} change rows for "
        f"{summary['strategies']} strategies on {summary['bars']} bars ({summary['symbol']} {summary['timeframe']}) "
        f"and {summary['index']}"
    )


@app.command()
def metrics(
    bars: Path = typer.Option(..., exists=True, dir_okay=False, help="The bars file the traces were computed on."),
    traces_dir: Path = typer.Option(..., "--traces", exists=True, file_okay=False, help="Folder written by `admf traces`."),
    commission_bps: float = typer.Option(0.5, min=0, help="Commission, basis points per side."),
    slippage_bps: float = typer.Option(1.0, min=0, help="Slippage, basis points per side."),
    top: int = typer.Option(20, min=1, help="Rows to print."),
    output: Optional[Path] = typer.Option(None, help="Also write the full table to this CSV or Parquet file."),
) -> None:
    """Print the performance table (after costs) of the traces under --traces on BARS, which must
    be the bars the traces were computed on (same symbol, bar count, first and last timestamps
    and bars fingerprint; otherwise exit 3 naming what differs)."""
    from admf_assets.core.bars import BarValidationError
    from admf_assets.core.metrics import CostModel
    from admf_assets.core.research import ResearchStoreError, research_metrics

    try:
        table = research_metrics(bars, traces_dir, CostModel(commission_bps, slippage_bps))
    except BarValidationError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    except ResearchStoreError as err:
        _fail(str(err), EXIT_STORE)
    if output is not None:
        if output.suffix == ".parquet":
            table.to_parquet(output, index=False)
        else:
            table.to_csv(output, index=False)
    ranked = table.sort_values("sharpe_ratio", ascending=False, na_position="last")
    ranked = ranked.assign(parameters=ranked["parameters"].map(compact_parameters))
    print_table(
        ranked.head(top),
        f"{len(table)} strategies, commission {commission_bps} bps + slippage {slippage_bps} bps per side",
        ["strategy_id", "parameters", "sharpe_ratio", "sortino_ratio", "total_return", "max_drawdown", "win_rate", "profit_factor", "total_trades"],
    )


from admf_assets.cli.analytics import analytics_app  # noqa: E402
from admf_assets.cli.history import db_app, history_app  # noqa: E402
from admf_assets.cli.operations import archive_app  # noqa: E402

app.add_typer(history_app, name="history")
app.add_typer(db_app, name="db")
app.add_typer(analytics_app, name="analytics")
app.add_typer(archive_app, name="archive")
from admf_assets.cli.operations import backfill  # noqa: E402

app.command("backfill")(backfill)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
