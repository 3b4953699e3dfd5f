"""``market_bars``: validated bars, one Parquet file per (trading day, symbol) partition."""


import datetime as dt
from collections.abc import Iterator
from typing import Literal

import dagster as dg
import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from admf_assets.core.bars import BarValidationError, infer_timeframe, load_symbol_bars, session_mask, trading_dates
from admf_assets.core.store import write_bars_day
from admf_assets.lib.metadata import add_partition_metadata, markdown_table, path_value
from admf_assets.lib.partitions import day_symbol, group_by_symbol
from admf_assets.lib.resources import AdmfWorkspace

_TIMEFRAME_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60}

MARKET_DATA_WRITES_POOL = "market_data_writes"
"""Dagster pool of the steps writing bars, signal traces and classifier states (``market_bars``,
``signal_traces``, ``classifier_states``). The instance's ``concurrency.pools.default_limit: 1``
(``dagster_home/dagster.yaml``) lets one such step run at a time across all runs, whatever
launched them (jobs, UI materializations, asset backfills without the ``admf/writes`` run tag)."""


class MarketBarsConfig(dg.Config):
    """How landing bars are filtered before validation and storage."""

    session: Literal["regular", "all"] = Field(
        default="regular",
        description=(
            "Which landing bars are stored. 'regular': bars opening within the exchange calendar's regular "
            "session (drops pre/post-market rows, the 16:00 bar and after-close bars of half-days); the "
            "sessions_complete check then compares each day with its session length. 'all': every bar of "
            "the trading day, extended hours included; sessions_complete is not evaluated (reported as "
            "skipped)."
        ),
    )


def expected_bars(days: list[dt.date], timeframe: str, calendar: str) -> dict[dt.date, int]:
    """Bars a complete regular session holds on each day (session length / bar size); empty for
    bar sizes of an hour or more, whose sessions are then not checked."""
    minutes = _TIMEFRAME_MINUTES.get(timeframe)
    if minutes is None:
        return {}
    cal = xcals.get_calendar(calendar)
    sched = cal.schedule.loc[pd.Timestamp(min(days)) : pd.Timestamp(max(days))]
    lengths = (sched["close"] - sched["open"]).dt.total_seconds() // 60
    return {d.date(): int(n // minutes) for d, n in lengths.items()}


def _read_back(path, day: dt.date, written: int, session: str, calendar: str) -> str | None:
    """Why the stored day file ``path`` does not hold the ``written`` bars of ``day`` (``None``
    when it does): exists, same row count, ts strictly increasing and on ``day`` (and inside the
    regular session when ``session="regular"``), prices positive, high >= max(open, close), low <=
    min(open, close), volume >= 0, no NaN."""
    if not path.is_file():
        return "file missing"
    try:
        table = pq.read_table(path, columns=["ts", "open", "high", "low", "close", "volume"])
    except Exception as err:  # an unreadable file is a failed check, not a crashed step
        return f"unreadable: {err!r}"
    if table.num_rows != written:
        return f"{table.num_rows} rows stored, {written} written"
    if not table.num_rows:
        return None
    if table.column("ts").null_count:
        return "ts not strictly increasing"
    # straight from Arrow (no DataFrame): the check runs on every day file of a backfill
    ts = pd.DatetimeIndex(table.column("ts").to_numpy()).tz_localize("UTC")
    if not (np.diff(ts.as_unit("ns").asi8) > 0).all():
        return "ts not strictly increasing"
    if not (np.asarray(trading_dates(ts, calendar), dtype="datetime64[D]") == np.datetime64(day, "D")).all():
        return f"ts outside trading day {day.isoformat()}"
    if session == "regular" and not session_mask(ts, "regular", calendar).all():
        return "ts outside the regular session"
    values = np.column_stack([table.column(c).to_numpy().astype(np.float64, copy=False) for c in ("open", "high", "low", "close", "volume")])
    if np.isnan(values).any():
        return "NaN values"
    o, h, lo, c, v = values.T
    if not ((o > 0) & (h > 0) & (lo > 0) & (c > 0)).all():
        return "non-positive price"
    if not ((h >= np.maximum(o, c)) & (lo <= np.minimum(o, c))).all():
        return "OHLC inconsistent (high < max(open, close) or low > min(open, close))"
    if not (v >= 0).all():
        return "negative volume"
    return None


MARKET_BARS_DESCRIPTION = (
    "Validated market bars, one Parquet file per (trading day, symbol) partition: every landing file of "
    "the symbol is read (CSV or Parquet, vendor column spellings) and validated (sorted, unique, parseable "
    "timestamps; positive prices; high >= max(open, close); low <= min(open, close); volume >= 0; no NaN), "
    "regular trading hours kept by default, each partition written atomically (re-materializing replaces "
    "the file). Runs in the Dagster pool market_data_writes with signal_traces and classifier_states: the "
    "instance runs one such step at a time, whether a job, a UI materialization or a backfill launched it."
)


@dg.multi_asset(
    specs=[dg.AssetSpec("market_bars", description=MARKET_BARS_DESCRIPTION, group_name="market_data", kinds={"parquet"})],
    partitions_def=day_symbol,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=MARKET_DATA_WRITES_POOL,
    # optional check outputs (multi_asset: @asset has no can_subset): sessions_complete can be left
    # unevaluated (session="all") instead of reported as passed
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(
            "bars_valid",
            asset="market_bars",
            blocking=True,
            description=(
                "Read-back of the day files just written: each exists and holds the rows written, ts strictly "
                "increasing and inside its trading day (and regular session), prices positive, OHLC consistent, "
                "volume >= 0, no NaN. Blocking: traces are not computed from a bad store."
            ),
        ),
        dg.AssetCheckSpec(
            "sessions_complete",
            asset="market_bars",
            description=(
                "Each stored regular session holds the bars its exchange-calendar length implies. Not evaluated "
                "(skipped) for session='all' or bar sizes above an hour."
            ),
        ),
    ],
)
def market_bars(context: dg.AssetExecutionContext, config: MarketBarsConfig, workspace: AdmfWorkspace) -> Iterator[dg.MaterializeResult]:
    """Validated market bars of the run's (trading day, symbol) partitions.

    Reads every landing file of each symbol (CSV or Parquet, vendor column spellings), validates
    it (sorted, unique, parseable timestamps; positive prices; high >= max(open, close); low <=
    min(open, close); volume >= 0; no NaN), keeps regular trading hours by default, and writes one
    Parquet file per partition atomically (re-materializing replaces the file).

    A ``multi_asset`` of the one asset ``market_bars`` (description: :data:`MARKET_BARS_DESCRIPTION`)
    only because ``@asset`` takes no ``can_subset``, which makes the check outputs optional.

    Metadata: each partition's materialization carries its own figures (``rows``: bars stored
    for that day and symbol, ``path``: its file) when the run covers at most
    :data:`~admf_assets.lib.metadata.PARTITION_METADATA_MAX` partitions (a wider backfill would
    spend seconds in Dagster's per-partition call); ``run_*`` entries are totals of the whole run
    (the same on every partition); the ``per_symbol`` and ``preview`` tables are attached to the
    run's last partition only. The ``bars_valid`` check reads every written file back;
    ``sessions_complete`` is evaluated for regular sessions of bar sizes up to an hour only.

    Raises:
        dagster.Failure: on invalid bars (naming file, row and rule) or when a requested trading
            day has no bars in the landing folder.
    """
    if dg.AssetKey("market_bars") not in context.selected_asset_keys:
        raise dg.Failure(description="market_bars' checks read back the files the materialization writes: materialize market_bars with them")
    selected_checks = {key.name for key in context.selected_asset_check_keys}
    layout = workspace.layout
    # Load and validate every symbol before writing anything: a bad file fails the run with no
    # partition of any symbol replaced.
    loaded = {}
    for symbol, days in group_by_symbol(context.partition_keys).items():
        try:
            bars, report = load_symbol_bars(workspace.landing_dir, symbol, session=config.session, calendar=workspace.calendar)
        except BarValidationError as err:
            raise dg.Failure(
                description=f"invalid bars for {symbol}: {err}",
                metadata={"source": str(err.source), "row": err.row if err.row is not None else -1, "rule": err.rule},
            ) from err
        except FileNotFoundError as err:
            raise dg.Failure(description=f"no landing file for {symbol} in {workspace.landing_dir}: {err}") from err
        found = infer_timeframe(bars["ts"])
        if found != workspace.timeframe:
            raise dg.Failure(description=f"{symbol}: landing bars are {found} bars but the workspace timeframe is {workspace.timeframe} (ADMF_TIMEFRAME)")
        dates = np.asarray(trading_dates(bars["ts"], workspace.calendar), dtype="datetime64[D]")
        missing = [d for d in days if not (dates == np.datetime64(d, "D")).any()]
        if missing:
            raise dg.Failure(
                description=(
                    f"no {config.session}-session bars for {symbol} on {len(missing)} requested trading day(s) "
                    f"({', '.join(d.isoformat() for d in missing[:5])}) in landing folder {workspace.landing_dir}"
                )
            )
        loaded[symbol] = (days, bars, dates, report)

    keys = {str(k): k for k in context.partition_keys}
    # sessions are checked only where their length is known: regular sessions, bars up to 1h
    sessions_checked = config.session == "regular" and workspace.timeframe in _TIMEFRAME_MINUTES
    written, stats, previews, incomplete = [], [], [], []
    per_partition: dict = {}
    for symbol, (days, bars, dates, report) in loaded.items():
        expected = expected_bars(days, workspace.timeframe, workspace.calendar) if sessions_checked else {}
        rows_written = 0
        for day in days:
            day_bars = bars.loc[dates == np.datetime64(day, "D")]
            path = write_bars_day(layout, symbol, workspace.timeframe, day, day_bars)
            key = keys[f"{day.isoformat()}|{symbol}"]
            written.append((key, symbol, day, path, len(day_bars)))
            rows_written += len(day_bars)
            partition_meta = {"rows": len(day_bars), "path": path_value(path)}
            if day in expected:
                partition_meta["expected_bars"] = expected[day]
                if len(day_bars) != expected[day]:
                    incomplete.append({"partition": str(key), "bars": len(day_bars), "expected": expected[day]})
            per_partition[key] = partition_meta
        stats.append(
            {
                "symbol": symbol,
                "days": len(days),
                "rows_written": rows_written,
                "rows_read": report.rows,
                "rows_in_session": report.rows_in_session,
                "dropped_outside_session": report.dropped_outside_session,
                "zero_volume_bars": report.zero_volume_bars,
            }
        )
        previews.append(bars.loc[dates == np.datetime64(days[-1], "D")].head(3))
    stats_df = pd.DataFrame(stats)
    preview = pd.concat(previews, ignore_index=True)[["ts", "symbol", "open", "high", "low", "close", "volume"]]
    add_partition_metadata(context, per_partition)
    # the run-wide tables once, on the run's last partition (not copied onto every partition)
    context.add_asset_metadata(
        {
            "per_symbol": markdown_table(stats_df, limit=100),
            "preview": markdown_table(preview.assign(ts=preview["ts"].astype(str)), limit=15),
        },
        partition_key=context.partition_keys[-1],
    )

    check_results = []
    if "bars_valid" in selected_checks:
        # read back what was just stored: the check fails when a stored partition is not what was written
        bad = []
        for key, _symbol, day, path, n in written:
            problem = _read_back(path, day, n, config.session, workspace.calendar)
            if problem:
                bad.append({"partition": str(key), "path": str(path), "problem": problem})
        check_results.append(
            dg.AssetCheckResult(
                check_name="bars_valid",
                passed=not bad,
                metadata={
                    "partitions_checked": len(written),
                    "failed_partitions": len(bad),
                    "failures": markdown_table(pd.DataFrame(bad or [{"partition": "-", "path": "-", "problem": "-"}]), limit=50),
                    "rows_read": int(stats_df["rows_read"].sum()),
                    "rows_checked_in_session": int(stats_df["rows_in_session"].sum()),
                    "dropped_outside_session": int(stats_df["dropped_outside_session"].sum()),
                    "zero_volume_bars_in_session": int(stats_df["zero_volume_bars"].sum()),
                },
            )
        )
    if "sessions_complete" in selected_checks and sessions_checked:
        check_results.append(
            dg.AssetCheckResult(
                check_name="sessions_complete",
                passed=not incomplete,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "partitions_checked": len(written),
                    "incomplete_sessions": len(incomplete),
                    "details": markdown_table(pd.DataFrame(incomplete or [{"partition": "-", "bars": 0, "expected": 0}]), limit=50),
                },
            )
        )
    elif "sessions_complete" in selected_checks:
        # not evaluated, so not reported (never "passed"): the check stays planned and Dagster shows it
        # as skipped once the run succeeds (optional check outputs: can_subset=True and a generator)
        context.log.info(f"sessions_complete not evaluated (session={config.session!r}, timeframe={workspace.timeframe})")
    yield dg.MaterializeResult(
        metadata={"run_partitions_written": len(written), "run_rows_written": int(stats_df["rows_written"].sum())},
        check_results=check_results,
    )
