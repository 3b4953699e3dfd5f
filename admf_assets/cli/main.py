"""The ``admf`` command line.

* ``admf run``: the main job: materialize the whole graph over the landing data (default: the
  bundled sample) in the embedded setup and print the top strategies by net Sharpe ratio.
* ``admf traces``: a researcher's quick test outside Dagster: traces of every strategy of a grid
  on one bars file, written under an output folder with ``strategy_index.parquet``.
* ``admf metrics``: the performance table of the traces written by ``admf traces``.

* ``admf history ...`` / ``admf db ...``: PostgreSQL run history and its migrations
  (:mod:`admf_assets.cli.history`).

Errors print one line on stderr and exit non-zero: 2 for bad input (bars, grid, options), 3 for
a missing or inconsistent store, 1 for a failed Dagster run; the history commands add 4 (database
unavailable), 5 (duplicate run), 6 (unknown run id) and 7 (reproduced metrics differ).
"""

from __future__ import annotations

import json
import os
import sys
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
    for c in cols:
        table.add_column(c, overflow="fold")
    for row in df[cols].itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def print_run_results(results) -> None:
    """One line per Dagster run: ``{label: ExecuteInProcessResult}`` -> id, outcome, materializations."""
    for name, result in results.items():
        console.print(f"  {name}: run {result.run_id[:8]} {'succeeded' if result.success else 'FAILED'}, "
                      f"{len(result.get_asset_materialization_events())} materializations")


TOP_QUERY = """
SELECT strategy_id, strategy_type, symbol, parameters, sharpe_ratio, total_return, max_drawdown,
       win_rate, total_trades
FROM strategies
ORDER BY sharpe_ratio DESC NULLS LAST, strategy_id
LIMIT ?
"""


@app.command()
def run(
    landing: Optional[Path] = typer.Option(None, help="Folder of bar files (default: ADMF_LANDING_DIR or the bundled sample)."),
    workspace: Optional[Path] = typer.Option(None, help="Hot storage root (default: ADMF_WORKSPACE or ./workspace)."),
    grid: Optional[Path] = typer.Option(None, help="Strategy grid YAML (default: ADMF_GRID or the bundled default grid)."),
    top: int = typer.Option(10, min=1, help="How many strategies to print."),
) -> None:
    """Materialize the whole asset graph over every landing trading day, then print the top
    strategies by net Sharpe ratio with their parameters."""
    for env, value in (("ADMF_LANDING_DIR", landing), ("ADMF_WORKSPACE", workspace), ("ADMF_GRID", grid)):
        if value is not None:
            os.environ[env] = str(value.resolve())
    home = Path("dagster_home")
    if "DAGSTER_HOME" not in os.environ and (home / "dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(home.resolve())

    import dagster as dg

    from admf_assets.core.bars import BarValidationError
    from admf_assets.core.warehouse import connect
    from admf_assets.lib.pipeline import RunFailedError, run_graph
    from admf_assets.lib.settings import Settings

    settings = Settings.from_env()
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
    except ValueError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    except RunFailedError as err:
        print_run_results(err.results)
        _fail(f"run failed: {err}", EXIT_RUN_FAILED)
    except dg.DagsterError as err:
        _fail(f"run failed: {err}", EXIT_RUN_FAILED)
    print_run_results(results)
    with connect(Path(settings.workspace) / "analytics.duckdb") as conn:
        best = conn.execute(TOP_QUERY, [top]).df()
    best = best.assign(parameters=best["parameters"].map(compact_parameters))
    print_table(best, f"Top {top} strategies by net Sharpe ratio (after costs)")


@app.command()
def traces(
    bars: Path = typer.Option(..., exists=True, dir_okay=False, help="Bars file (CSV or Parquet)."),
    grid: Path = typer.Option(..., exists=True, dir_okay=False, help="Grid YAML."),
    out: Path = typer.Option(..., file_okay=False, help="Output folder."),
    rth: bool = typer.Option(False, "--rth", help="Keep regular trading hours only (default: bars exactly as given)."),
    symbol: Optional[str] = typer.Option(None, help="Symbol (default: the grid's, the file's symbol column or its name)."),
    chunk_size: int = typer.Option(128, min=1, help="Strategies per evaluation block."),
    commission_bps: float = typer.Option(0.5, min=0, help="Commission, basis points per side (the index's headline metrics)."),
    slippage_bps: float = typer.Option(1.0, min=0, help="Slippage, basis points per side (the index's headline metrics)."),
) -> None:
    """Compute the traces of every strategy in GRID on BARS and write them under OUT, with
    strategy_index.parquet and its headline metrics after costs."""
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
    """Print the performance table (after costs) of the traces under --traces on BARS."""
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
