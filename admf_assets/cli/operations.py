"""``admf archive ...`` and ``admf backfill``: retention, archive restore and partition backfills.

* ``admf archive status``: the retention policy, the cutoffs it implies now, hot and archived
  partition counts per kind, and the manifest's latest moves.
* ``admf archive run [--dry-run]``: what ``archive_job`` does, in this process (to retry a run
  that failed, or without a Dagster daemon).
* ``admf archive restore --from DATE --to DATE``: bring archived partitions of those trading days
  (bars, traces, daily summaries) back to hot storage, verified, and out of the archive.
* ``admf backfill --from DATE --to DATE [--symbol SYM ...] [--graphql-url URL]``: materialize a
  range of trading days. With ``--graphql-url`` (or ``ADMF_DAGSTER_URL``) it asks a running
  Dagster webserver to launch a real backfill (GraphQL ``launchPartitionBackfill``; the daemon runs
  it and the UI's Backfills page shows its progress; measured with ``dagster dev``: the daemon
  splits the ``date|symbol`` range per symbol, so 3 days x 2 symbols ran as 2 market-data runs, 1
  analytics run and 1 summary run). Without it, it executes the jobs in this process against
  ``DAGSTER_HOME``'s instance (runs appear in the UI's Runs page): one run per job for the whole
  range (single-run backfill policies). A ``date|symbol`` key range is a rectangle (dates x
  symbols between the ends in partition order), so a subset of symbols runs the market data once
  per group of adjacent symbols, and a trading day without landing bars for every chosen symbol
  is left out (said on the console) and splits the range in two. (With ``--graphql-url`` every
  trading-day partition of the range is sent: the server's runs read the server's landing folder.)

Exit codes: 2 bad options, 3 archive verification or store error, 1 failed run or backfill launch.
"""

import datetime as dt
import json
import os
from pathlib import Path
from typing import List, Optional

import typer

archive_app = typer.Typer(no_args_is_help=True, help="Archive of partitions past retention: status, run and restore.")

EXIT_BAD_INPUT = 2
EXIT_STORE = 3
EXIT_RUN_FAILED = 1


def _console():
    from admf_assets.cli.main import console

    return console


def _fail(message: str, code: int) -> None:
    from admf_assets.cli.main import _fail as fail

    fail(message, code)


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)", EXIT_BAD_INPUT)
        raise  # unreachable


def _settings():
    from admf_assets.lib.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as err:
        _fail(str(err), EXIT_BAD_INPUT)


@archive_app.command("status")
def status() -> None:
    """Retention policy, cutoffs now, hot and archived partitions per kind, latest manifest rows."""
    from admf_assets.cli.main import print_table
    from admf_assets.core.archive import FILE_KINDS, SUMMARY_KIND, SUMMARY_TABLE, ArchiveLocation, hot_partitions
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.warehouse import connect
    from admf_assets.defs.operations.archive import plan_now

    import pandas as pd

    settings = _settings()
    layout = WorkspaceLayout(Path(settings.workspace))
    database = str(layout.duckdb_file)
    plan = plan_now(settings.workspace, settings.calendar, database, bars_days=settings.retain_bars_days,
                    traces_days=settings.retain_traces_days, summaries_days=settings.retain_summaries_days)
    console = _console()
    console.print(
        f"workspace [bold]{settings.workspace}[/], archive [bold]{settings.archive_url}[/]; keep {settings.retain_bars_days} trading days "
        f"of bars, {settings.retain_traces_days} of traces, {settings.retain_summaries_days} of summaries hot"
    )
    console.print("cutoffs now (first day kept hot): " + ", ".join(f"{k} {v or '-'}" for k, v in sorted(plan.cutoffs.items()))
                  + f"; {plan.partitions} partition(s) past retention")
    archive = ArchiveLocation(layout.archive_url or settings.archive_url)
    if archive.url != settings.archive_url:
        console.print(f"[yellow]the workspace's partitions are archived in {archive.url}, not in ADMF_ARCHIVE_URL {settings.archive_url}; "
                      "archive runs refuse the new URL while the manifest lists partitions there[/]")
    rows = []
    for kind in FILE_KINDS:
        hot = hot_partitions(layout, kind)
        series = sorted(set(hot) | set(archive.series(kind)))
        for s in series:
            archived = archive.archived_days(kind, s)
            # a day re-materialized after it was archived is in both places (readers take the hot file)
            both = len(set(hot.get(s, {})) & set(archived))
            rows.append({"kind": kind, "series": s, "hot": len(hot.get(s, {})), "archived": len(archived), "hot_and_archived": both,
                         "archived_first": min(archived).isoformat() if archived else "-", "archived_last": max(archived).isoformat() if archived else "-"})
    summary_archived = archive.archived_days(SUMMARY_KIND, SUMMARY_TABLE)
    rows.append({"kind": SUMMARY_KIND, "series": SUMMARY_TABLE, "hot": 0, "archived": len(summary_archived), "hot_and_archived": "-",
                 "archived_first": min(summary_archived).isoformat() if summary_archived else "-",
                 "archived_last": max(summary_archived).isoformat() if summary_archived else "-"})
    manifest = pd.DataFrame()
    if layout.duckdb_file.is_file():
        with connect(database) as conn:
            rows[-1]["hot"] = conn.execute("SELECT count(DISTINCT date) FROM daily_signal_summary").fetchone()[0]
            manifest = conn.execute(
                "SELECT kind, series, count(*) FILTER (WHERE restored_at IS NULL) AS archived, count(*) FILTER (WHERE restored_at IS NOT NULL) AS restored, "
                "CAST(coalesce(sum(rows) FILTER (WHERE restored_at IS NULL), 0) AS BIGINT) AS rows, max(archived_at) AS last_archived_at FROM archive_manifest GROUP BY kind, series ORDER BY kind, series"
            ).df()
    print_table(pd.DataFrame(rows), "partitions (trading days) hot and archived")
    if len(manifest):
        print_table(manifest, "archive_manifest")


@archive_app.command("run")
def run_archive(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print what would move."),
    include_restored: bool = typer.Option(False, "--include-restored", help="Also move partitions brought back by `admf archive restore` (pinned hot otherwise)."),
) -> None:
    """Archive every partition past the retention policy now (what archive_job does)."""
    from filelock import Timeout

    from admf_assets.core.archive import ArchiveError
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.defs.operations.archive import execute_archive, plan_now

    settings = _settings()
    database = str(WorkspaceLayout(Path(settings.workspace)).duckdb_file)
    plan = plan_now(settings.workspace, settings.calendar, database, bars_days=settings.retain_bars_days,
                    traces_days=settings.retain_traces_days, summaries_days=settings.retain_summaries_days,
                    include_restored=include_restored)
    console = _console()
    console.print(f"cutoffs: {json.dumps({k: (v.isoformat() if v else None) for k, v in plan.cutoffs.items()}, sort_keys=True)}; "
                  f"{plan.partitions} partition(s) past retention")
    if dry_run:
        return
    try:
        entries = execute_archive(root=settings.workspace, archive_url=settings.archive_url, database=database, cutoffs=plan.cutoffs,
                                  postgres_url=settings.postgres_url if settings.signal_store else "", include_restored=include_restored)
    except ArchiveError as err:
        _fail(str(err), EXIT_STORE)
    except Timeout as err:
        _fail(f"another archive run holds the archive lock: {err}", EXIT_RUN_FAILED)
    console.print(f"archived {len(entries)} partition(s), {sum(e.rows for e in entries)} rows, into {settings.archive_url}")


@archive_app.command("restore")
def restore(
    from_: str = typer.Option(..., "--from", help="First trading day (YYYY-MM-DD)."),
    to: str = typer.Option(..., "--to", help="Last trading day (YYYY-MM-DD)."),
) -> None:
    """Bring archived bars, traces and daily summaries of FROM..TO back to hot storage."""
    from filelock import Timeout

    from admf_assets.core.archive import (
        FILE_KINDS,
        ArchiveError,
        ArchiveLocation,
        archive_lock,
        record_manifest,
        restore_file_partitions,
        refresh_file_views,
        restore_summary_rows,
    )
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.warehouse import connect, transaction

    first, last = _date(from_, "--from"), _date(to, "--to")
    if last < first:
        _fail(f"--to {last} is before --from {first}", EXIT_BAD_INPUT)
    settings = _settings()
    layout = WorkspaceLayout(Path(settings.workspace))
    archive = ArchiveLocation(layout.archive_url or settings.archive_url)
    database = str(layout.duckdb_file)

    def record(entries):
        with connect(database) as conn, transaction(conn):
            record_manifest(conn, entries, restored=True)

    restored = []
    try:
        with archive_lock(layout, 600.0):
            for kind in FILE_KINDS:
                for series in archive.series(kind):
                    days = [d for d in archive.archived_days(kind, series) if first <= d <= last]
                    if days:
                        restored += restore_file_partitions(layout, archive, kind, series, days, record=record)
            with connect(database) as conn:
                restored += restore_summary_rows(conn, archive, first, last)
                refresh_file_views(conn, layout, archive)
    except ArchiveError as err:
        _fail(str(err), EXIT_STORE)
    except Timeout as err:
        _fail(f"an archive run holds the archive lock: {err}", EXIT_RUN_FAILED)
    by_kind: dict[str, int] = {}
    for e in restored:
        by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())) or "nothing archived in that range"
    _console().print(f"restored {len(restored)} partition(s) of {first}..{last} to {settings.workspace}: {detail}")


GRAPHQL_MUTATION = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
  }
}
"""


def _selected_paths(selection) -> list[list[str]]:
    """Asset key paths of a job's ``AssetSelection.assets(...)`` selection (in its order)."""
    keys = getattr(selection, "selected_keys", None)
    if keys is None:
        raise TypeError(f"expected an AssetSelection.assets(...) selection, got {type(selection).__name__}")
    return [list(k.path) for k in keys]


def backfill_params(days: list[str], symbols: list[str], all_symbols: list[str]) -> dict:
    """``LaunchBackfillParams`` for the GraphQL ``launchPartitionBackfill`` mutation: the
    ``date|symbol`` assets of ``market_data_job`` over ``days`` x ``symbols`` (one key range per
    contiguous piece of ``days`` and group of adjacent symbols, see
    :func:`admf_assets.lib.partitions.symbol_groups`), the assets of ``daily_summary_job`` over
    the days and the unpartitioned assets of ``analytics_job``. The asset lists are the jobs'
    own selections (``admf_assets/defs/pipeline/jobs.py``), so a job gaining an asset gains it here."""
    from admf_assets.defs.pipeline.jobs import ANALYTICS, MARKET_DATA, MARKET_DATA_WRITES_TAG, daily_summary_job

    from admf_assets.lib.partitions import contiguous_ranges, symbol_groups, trading_days

    pieces = contiguous_ranges(days, trading_days.get_partition_keys())
    ranges = [{"start": f"{a}|{g[0]}", "end": f"{b}|{g[-1]}"} for a, b in pieces for g in symbol_groups(symbols, all_symbols)]
    by_asset = [{"assetKey": {"path": a}, "partitions": {"ranges": ranges}} for a in _selected_paths(MARKET_DATA)]
    by_asset += [{"assetKey": {"path": a}, "partitions": {"ranges": [{"start": a_, "end": b_} for a_, b_ in pieces]}}
                 for a in _selected_paths(daily_summary_job.selection)]
    by_asset += [{"assetKey": {"path": a}} for a in _selected_paths(ANALYTICS)]
    # the market-data runs' serialisation tag (MARKET_DATA_WRITES_TAG, dagster_home/dagster.yaml):
    # a backfill runs the assets, not market_data_job, so its runs only carry the tag if given it
    tags = [{"key": "admf/backfill", "value": f"{days[0]}..{days[-1]}"}]
    tags += [{"key": k, "value": v} for k, v in MARKET_DATA_WRITES_TAG.items()]
    return {"partitionsByAssets": by_asset, "title": f"admf backfill {days[0]}..{days[-1]}", "tags": tags}


def backfill(
    from_: str = typer.Option(..., "--from", help="First trading day (YYYY-MM-DD)."),
    to: str = typer.Option(..., "--to", help="Last trading day (YYYY-MM-DD)."),
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", help="Only these symbols (repeatable; default: all)."),
    graphql_url: Optional[str] = typer.Option(None, "--graphql-url", envvar="ADMF_DAGSTER_URL",
                                              help="Running Dagster webserver (http://127.0.0.1:3000): launch a real backfill there."),
) -> None:
    """Materialize bars, traces, analytics and summaries of the trading days FROM..TO."""
    first, last = _date(from_, "--from"), _date(to, "--to")
    if last < first:
        _fail(f"--to {last} is before --from {first}", EXIT_BAD_INPUT)
    from admf_assets.lib.partitions import symbols as symbol_partitions
    from admf_assets.lib.partitions import trading_days

    all_symbols = symbol_partitions.get_partition_keys()
    chosen = sorted({s.upper() for s in symbol}) if symbol else list(all_symbols)
    unknown = [s for s in chosen if s not in all_symbols]
    if unknown:
        _fail(f"unknown symbol(s) {', '.join(unknown)}; the symbol partitions are {', '.join(all_symbols)} (ADMF_SYMBOLS)", EXIT_BAD_INPUT)
    days = [k for k in trading_days.get_partition_keys() if first.isoformat() <= k <= last.isoformat()]
    if not days:
        keys = trading_days.get_partition_keys()
        span = f"the partitions run from {keys[0]} (ADMF_START_DATE) to {keys[-1]}" if keys else "there are no partitions"
        _fail(f"no trading-day partition between {first} and {last}: {span}", EXIT_BAD_INPUT)
    console = _console()
    if graphql_url:  # the server's runs read the server's landing folder: every partition is sent
        import urllib.request

        payload = json.dumps({"query": GRAPHQL_MUTATION, "variables": {"backfillParams": backfill_params(days, chosen, all_symbols)}}).encode()
        req = urllib.request.Request(graphql_url.rstrip("/") + "/graphql", data=payload, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as reply:
                body = json.loads(reply.read())
        except Exception as err:
            _fail(f"cannot launch the backfill through {graphql_url}: {err} (is the Dagster webserver running there?)", EXIT_RUN_FAILED)
        result = (body.get("data") or {}).get("launchPartitionBackfill") or {}
        if result.get("__typename") != "LaunchBackfillSuccess":
            _fail(f"backfill not launched: {result.get('message') or body.get('errors') or result}", EXIT_RUN_FAILED)
        console.print(f"launched backfill {result['backfillId']} over {len(days)} trading day(s) x {len(chosen)} symbol(s); "
                      f"progress: {graphql_url.rstrip('/')}/runs/b/{result['backfillId']}")
        return

    from admf_assets.lib.pipeline import landing_days
    from admf_assets.lib.settings import Settings

    settings = Settings.from_env()
    try:  # only days every chosen symbol has landing bars for (a gap day would fail its run)
        landed = {d.isoformat() for d in landing_days(settings, chosen)}
    except ValueError as err:  # BarValidationError: an invalid or missing landing file
        _fail(str(err), EXIT_BAD_INPUT)
    skipped = [d for d in days if d not in landed]
    days = [d for d in days if d in landed]
    if not days:
        _fail(f"no trading day with bars for {', '.join(chosen)} in {settings.landing_dir} between {first} and {last}", EXIT_BAD_INPUT)
    if skipped:
        console.print(f"{len(skipped)} trading day(s) without landing bars for every chosen symbol left out: "
                      f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")
    home = Path("dagster_home")
    if "DAGSTER_HOME" not in os.environ and (home / "dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(home.resolve())
    import dagster as dg

    from admf_assets.cli.main import print_run_results
    from admf_assets.lib.pipeline import RunFailedError, run_graph

    instance = dg.DagsterInstance.get() if "DAGSTER_HOME" in os.environ else dg.DagsterInstance.ephemeral()
    try:
        results = run_graph(instance, settings=settings, first_day=first, last_day=last, symbols=chosen)
    except ValueError as err:  # no landing day in the range (BarValidationError is a ValueError)
        _fail(str(err), EXIT_BAD_INPUT)
    except RunFailedError as err:
        print_run_results(err.results)
        _fail(f"run failed: {err}", EXIT_RUN_FAILED)
    except dg.DagsterError as err:
        _fail(f"run failed: {err}", EXIT_RUN_FAILED)
    print_run_results(results)
    console.print(f"backfill {days[0]}..{days[-1]} x {', '.join(chosen)}: {len(results)} run(s)")
