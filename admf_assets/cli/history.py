"""``admf history`` and ``admf db``: the run history on PostgreSQL.

Registered in :mod:`admf_assets.cli.main` with ``app.add_typer(history_app, name="history")`` and
``app.add_typer(db_app, name="db")``.

* ``admf history list [--strategy NAME|TYPE] [--symbol SYM] [--limit N] [--cursor TOKEN]``: newest
  runs first, one page; prints the cursor of the next page. ``--strategy`` is a full strategy
  name (e.g. ``SPY_5m_rsi_extreme_1a2b3c4d5e6f``) or a strategy type (e.g. ``rsi_extreme``).
* ``admf history show RUN_ID``: one run, its snapshot and metrics.
* ``admf history compare RUN_ID RUN_ID...``: metrics side by side.
* ``admf history find --param period=20 --param std_dev=2.0 [--type T] [--limit N]``: runs whose
  snapshot parameters contain these values (JSONB containment); unknown types and parameter
  names are rejected (exit 2); the title says ``showing N of M`` when ``--limit`` cuts.
* ``admf history top [--limit N]``: best runs by Sharpe ratio.
* ``admf history reproduce RUN_ID [--bars PATH] [--new-run-id UUID]``: re-run from the stored
  snapshot, store the new run and report whether the metrics match, within a relative tolerance
  of 1e-9 (absolute 1e-12) for float metrics, exactly for trade counts, drawdown date and dates.
* ``admf db upgrade [REV]`` / ``admf db downgrade [REV]`` / ``admf db current``: Alembic migrations.

Units (every command, as in ``admf analytics``): ``total_return``, ``max_drawdown`` and the other
returns, drawdowns, volatility and win rate are fractions (0.1 = 10%); Sharpe and Sortino ratios
are annualized with sqrt(252).

The database URL is ``--db-url`` (before the sub-command) or ``ADMF_POSTGRES_URL``
(``postgresql+psycopg2://user@host:5432/db``; a bare ``postgresql://`` is accepted).

Exit codes (errors print one line on stderr):

* 0: success.
* 2: bad input (malformed run id, cursor, ``--param``, limit, URL; unknown strategy type or
  parameter name in ``find``; fewer than two runs to compare).
* 3: store problem (history tables missing: run ``admf db upgrade``; bars file of a snapshot
  missing or unreadable; other database-side rejection).
* 4: database unavailable (server unreachable, or no URL configured).
* 5: duplicate run id.
* 6: unknown run id.
* 7: ``reproduce`` stored the new run but its metrics differ from the original beyond the
  tolerance (or its trade counts, drawdown date or bar dates differ).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from admf_assets.history import repository as repo
from admf_assets.history.models import PERFORMANCE_COLUMNS

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_STORE = 3
EXIT_DB_UNAVAILABLE = 4
EXIT_DUPLICATE_RUN = 5
EXIT_RUN_NOT_FOUND = 6
EXIT_NOT_REPRODUCED = 7

history_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run history stored in PostgreSQL.")
db_app = typer.Typer(add_completion=False, no_args_is_help=True, help="PostgreSQL schema migrations (Alembic).")

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

_URL_OPTION = typer.Option(
    None, "--db-url", envvar=repo.URL_ENV, show_envvar=True, help="Database URL (postgresql+psycopg2://...)."
)


def _fail(message: str, code: int) -> None:
    one_line = escape(" ".join(str(message).split()))
    err_console.print(f"[bold red]error:[/] {one_line}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Map history errors to one-line messages and the module's exit codes."""
    try:
        yield
    except repo.DatabaseUnavailableError as err:
        _fail(f"database unavailable: {err}", EXIT_DB_UNAVAILABLE)
    except repo.DuplicateRunError as err:
        _fail(f"duplicate run: {err}", EXIT_DUPLICATE_RUN)
    except repo.RunNotFoundError as err:
        _fail(f"unknown run: {err}", EXIT_RUN_NOT_FOUND)
    except repo.InvalidInputError as err:
        _fail(str(err), EXIT_BAD_INPUT)
    except (repo.SchemaMissingError, repo.ReproductionError) as err:
        _fail(str(err), EXIT_STORE)
    except repo.HistoryError as err:
        _fail(str(err), EXIT_STORE)


def _engine(ctx: typer.Context):
    url = (ctx.obj or {}).get("db_url") if isinstance(ctx.obj, dict) else None
    return repo.make_engine(url or repo.url_from_env())


def _store_url(ctx: typer.Context, db_url: Optional[str]) -> None:
    ctx.obj = {"db_url": db_url}


@history_app.callback()
def _history_main(ctx: typer.Context, db_url: Optional[str] = _URL_OPTION) -> None:
    """Browse, compare, search and reproduce stored runs."""
    _store_url(ctx, db_url)


@db_app.callback()
def _db_main(ctx: typer.Context, db_url: Optional[str] = _URL_OPTION) -> None:
    """Apply or revert the history schema migrations."""
    _store_url(ctx, db_url)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.6g}"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    return str(value)


def _exact(value: Any) -> str:
    """A float with every significant digit (for differences in the last bits)."""
    if isinstance(value, float) and value == value:
        return repr(value)
    return _fmt(value)


UNITS_CAPTION = "total_return and max_drawdown are fractions (0.1 = 10%); sharpe_ratio annualized with sqrt(252)"

_SUMMARY_METRICS = ("total_return", "sharpe_ratio", "max_drawdown", "total_trades")


def _summary_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title, caption=UNITS_CAPTION)
    table.add_column("run_id", no_wrap=True)
    for name in ("created_at", "strategy", "symbol", "status", *_SUMMARY_METRICS):
        table.add_column(name, overflow="fold", justify="right" if name in _SUMMARY_METRICS else "left")
    for r in rows:
        table.add_row(
            str(r["run_id"]),
            r["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
            r["strategy_name"],
            r["instrument_symbol"],
            r["execution_status"],
            *(_fmt(r[name]) for name in _SUMMARY_METRICS),
        )
    return table


def _parse_param(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise repo.InvalidInputError(f"--param must be KEY=VALUE, got {raw!r}")
    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        if isinstance(number, float) and number != number:
            break
        return key, number
    raise repo.InvalidInputError(f"--param {key}: value must be a number, got {value!r}")


@history_app.command("list")
def list_command(
    ctx: typer.Context,
    strategy: Optional[str] = typer.Option(
        None,
        metavar="NAME|TYPE",
        help="Only runs with this full strategy name (the 'strategy' column, e.g. SPY_5m_rsi_extreme_1a2b3c4d5e6f), "
        "or, given a strategy type (e.g. rsi_extreme), every run of that type.",
    ),
    symbol: Optional[str] = typer.Option(None, help="Only runs on this symbol."),
    limit: int = typer.Option(20, help=f"Page size (1..{repo.MAX_PAGE_SIZE})."),
    cursor: Optional[str] = typer.Option(None, help="Cursor printed by the previous page."),
) -> None:
    """List stored runs, newest first, one page at a time.

    total_return and max_drawdown are fractions (0.1 = 10%), as in `history show` and
    `admf analytics`.
    """
    with _errors():
        rows, next_cursor = repo.list_runs(_engine(ctx), strategy=strategy, symbol=symbol, limit=limit, cursor=cursor)
    console.print(_summary_table(rows, f"{len(rows)} run(s)"))
    if not rows and strategy is not None and cursor is None:
        from admf_assets.core.schemas import STRATEGY_TYPES

        console.print(
            f"no run named {strategy!r}: --strategy takes a full strategy name (the 'strategy' column of "
            f"`admf history list`) or a strategy type ({', '.join(STRATEGY_TYPES)})",
            highlight=False,
            soft_wrap=True,
        )
    if next_cursor:
        console.print(f"next cursor: {next_cursor}", highlight=False, soft_wrap=True)
    else:
        console.print("(last page)")


@history_app.command("show")
def show_command(ctx: typer.Context, run_id: str = typer.Argument(..., help="Run id (UUID).")) -> None:
    """Show one run: its fields, configuration snapshot and metrics.

    Returns, drawdowns, volatility, win rate and expectancy are fractions (0.1 = 10%).
    The run's duration is shown as evaluation_seconds (wall time of a single evaluation) or, for
    a run published from a Dagster grid, grid_seconds_per_strategy (the grid step's wall time
    divided by its number of strategies, not this run's own time).
    """
    with _errors():
        run = repo.get_run(_engine(ctx), run_id)
    table = Table(title=f"run {run['run_id']}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name in repo.RUN_FIELDS:
        if name == "config_snapshot":
            continue
        if name == "execution_duration_seconds":
            label, meaning = repo.duration_label(run)
            seconds = run[name]
            table.add_row(label, "-" if seconds is None else f"{seconds:.3g} ({meaning})")
            continue
        table.add_row(name, _fmt(run[name]))
    console.print(table)
    console.print("config_snapshot:", json.dumps(run["config_snapshot"], sort_keys=True), highlight=False, soft_wrap=True)
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name in PERFORMANCE_COLUMNS:
        metrics.add_row(name, _fmt(run["metrics"][name]))
    console.print(metrics)


@history_app.command("compare")
def compare_command(
    ctx: typer.Context, run_ids: List[str] = typer.Argument(..., help="Two or more run ids.")
) -> None:
    """Compare the metrics of two or more runs side by side."""
    if len(run_ids) < 2:
        _fail("compare needs at least two run ids", EXIT_BAD_INPUT)
    with _errors():
        runs = repo.compare_runs(_engine(ctx), run_ids)
    table = Table(title=f"{len(runs)} runs")
    table.add_column("field")
    for run in runs:
        table.add_column(str(run["run_id"]), justify="right", overflow="fold")
    for name in ("strategy_name", "instrument_symbol", "start_date", "end_date"):
        table.add_row(name, *(_fmt(r[name]) for r in runs))
    table.add_row("parameters", *(" ".join(f"{k}={v}" for k, v in r["config_snapshot"]["parameters"].items()) for r in runs))
    for name in PERFORMANCE_COLUMNS:
        table.add_row(name, *(_fmt(r["metrics"][name]) for r in runs))
    console.print(table)


@history_app.command("find")
def find_command(
    ctx: typer.Context,
    param: List[str] = typer.Option(
        ..., "--param", help="KEY=VALUE parameter to match (repeatable); KEY must be a parameter of a strategy type."
    ),
    strategy_type: Optional[str] = typer.Option(None, "--type", help="Only this strategy type (e.g. bollinger_bands)."),
    limit: int = typer.Option(100, help=f"Most rows (1..{repo.MAX_PAGE_SIZE})."),
) -> None:
    """Find runs whose parameters contain every --param value.

    Unknown strategy types and parameter names are an error (exit 2) listing the valid names.
    The title gives the total: "showing N of M run(s)" when --limit cuts the list.
    """
    with _errors():
        params = repo.check_search_params(dict(_parse_param(p) for p in param), strategy_type)
        engine = _engine(ctx)
        rows = repo.find_runs_by_params(engine, params, strategy_type=strategy_type, limit=limit)
        total = len(rows) if len(rows) < limit else repo.count_runs_by_params(engine, params, strategy_type=strategy_type)
    what = " ".join(f"{k}={v}" for k, v in params.items()) + (f" type={strategy_type}" if strategy_type else "")
    shown = f"showing {len(rows)} of {total} run(s)" if total > len(rows) else f"{len(rows)} run(s)"
    console.print(_summary_table(rows, f"{shown} with {what}"))


@history_app.command("top")
def top_command(ctx: typer.Context, limit: int = typer.Option(20, help="How many runs.")) -> None:
    """The best runs by Sharpe ratio."""
    with _errors():
        rows = repo.top_by_sharpe(_engine(ctx), limit)
    console.print(_summary_table(rows, f"top {len(rows)} by Sharpe ratio"))


@history_app.command("reproduce")
def reproduce_command(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help=f"Run id (UUID) to re-run. Float metrics are compared with relative tolerance {repo.REPRODUCE_RTOL:g}, absolute {repo.REPRODUCE_ATOL:g}."),
    bars: Optional[Path] = typer.Option(None, dir_okay=False, help="Bars file (default: the one in the snapshot)."),
    new_run_id: Optional[str] = typer.Option(None, help="Id of the new run (default: a random UUID)."),
) -> None:
    """Re-run a stored evaluation from its snapshot, store it and compare the metrics.

    Float metrics match when |a - b| <= max(1e-9 * max(|a|, |b|), 1e-12) (relative tolerance
    1e-9, absolute 1e-12): a recomputed float may differ from the stored one in its last bits
    (e.g. a mean summed in a different order). NULL (NaN) matches only NULL; trade counts, the
    drawdown date and the bar date range must be equal. Prints "metrics identical" when every
    value is bit-identical, "metrics match within tolerance" with the largest relative
    difference otherwise, and exits 7 with the differing values when something is outside.
    """
    with _errors():
        new_id = repo.parse_run_id(new_run_id) if new_run_id else None
        result = repo.reproduce_run(_engine(ctx), run_id, bars, new_run_id=new_id)
    head = f"reproduced {result.original_run_id} as {result.new_run_id}"
    tolerance = f"rtol {result.rtol:g}, atol {result.atol:g}"
    if result.identical:
        if result.exact:
            console.print(f"{head}: metrics identical", highlight=False)
        else:
            console.print(
                f"{head}: metrics match within tolerance ({tolerance}); "
                f"max relative difference {result.max_relative_difference:.3g}",
                highlight=False,
                soft_wrap=True,
            )
        return
    table = Table(title=f"{head}: metrics DIFFER ({tolerance}; max relative difference {result.max_relative_difference:.3g})")
    for col in ("field", "original", "reproduced", "relative difference"):
        table.add_column(col)
    for name, (old, new) in result.differences.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
        rel = f"{repo.relative_difference(float(old), float(new)):.3g}" if numeric else "-"
        table.add_row(name, _exact(old), _exact(new), rel)
    console.print(table)
    raise typer.Exit(EXIT_NOT_REPRODUCED)


@db_app.command("upgrade")
def upgrade_command(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default head)."""
    from admf_assets.history import migrate

    with _errors():
        engine = _engine(ctx)
        migrate.upgrade(engine, revision)
        current = migrate.current_revision(engine)
    console.print(f"database at revision {current}", highlight=False)


@db_app.command("downgrade")
def downgrade_command(
    ctx: typer.Context, revision: str = typer.Argument("-1", help="Target revision (default one step back; 'base' drops all).")
) -> None:
    """Revert migrations down to REVISION."""
    from admf_assets.history import migrate

    with _errors():
        engine = _engine(ctx)
        migrate.downgrade(engine, revision)
        current = migrate.current_revision(engine)
    console.print(f"database at revision {current or 'base'}", highlight=False)


@db_app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Print the revision the database is at."""
    from admf_assets.history import migrate

    with _errors():
        current = migrate.current_revision(_engine(ctx))
    console.print(f"{current or 'base'} (head {migrate.head_revision()})", highlight=False)
