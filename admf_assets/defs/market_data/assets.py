"""``market_bars``: validated bars, one Parquet file per (trading day, symbol) partition."""


import datetime as dt
from typing import Literal

import dagster as dg
import exchange_calendars as xcals
import numpy as np
import pandas as pd

from admf_assets.core.bars import BarValidationError, infer_timeframe, load_symbol_bars, trading_dates
from admf_assets.core.store import write_bars_day
from admf_assets.lib.metadata import markdown_table, path_value
from admf_assets.lib.partitions import day_symbol, group_by_symbol
from admf_assets.lib.resources import AdmfWorkspace

_TIMEFRAME_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60}


class MarketBarsConfig(dg.Config):
    """How landing bars are filtered before validation and storage."""

    session: Literal["regular", "all"] = "regular"
    """``regular``: bars opening within the exchange's regular session (drops the 16:00 bar,
    pre/post-market rows and after-close bars of half-days); ``all``: keep every bar."""


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


@dg.asset(
    partitions_def=day_symbol,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market_data",
    kinds={"parquet"},
    check_specs=[
        dg.AssetCheckSpec("bars_valid", asset="market_bars", description="Timestamps sorted and unique, prices positive, OHLC consistent, volume >= 0, no NaN."),
        dg.AssetCheckSpec("sessions_complete", asset="market_bars", description="Each stored session holds the bars its exchange-calendar length implies."),
    ],
)
def market_bars(context: dg.AssetExecutionContext, config: MarketBarsConfig, workspace: AdmfWorkspace) -> dg.MaterializeResult:
    """Validated market bars of the run's (trading day, symbol) partitions.

    Reads every landing file of each symbol (CSV or Parquet, vendor column spellings), validates
    it (sorted, unique, parseable timestamps; positive prices; high >= max(open, close); low <=
    min(open, close); volume >= 0; no NaN), keeps regular trading hours by default, and writes one
    Parquet file per partition atomically (re-materializing replaces the file).

    Raises:
        dagster.Failure: on invalid bars (naming file, row and rule) or when a requested trading
            day has no bars in the landing folder.
    """
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

    written, stats, previews, incomplete = [], [], [], []
    for symbol, (days, bars, dates, report) in loaded.items():
        expected = expected_bars(days, workspace.timeframe, workspace.calendar) if config.session == "regular" else {}
        rows_written = 0
        for day in days:
            day_bars = bars.loc[dates == np.datetime64(day, "D")]
            written.append(write_bars_day(layout, symbol, workspace.timeframe, day, day_bars))
            rows_written += len(day_bars)
            if day in expected and len(day_bars) != expected[day]:
                incomplete.append({"symbol": symbol, "date": day.isoformat(), "bars": len(day_bars), "expected": expected[day]})
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
    return dg.MaterializeResult(
        metadata={
            "partitions_written": len(written),
            "rows_written": int(stats_df["rows_written"].sum()),
            "path": path_value(layout.root / "bars"),
            "per_symbol": markdown_table(stats_df, limit=100),
            "preview": markdown_table(preview.assign(ts=preview["ts"].astype(str)), limit=15),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="bars_valid",
                passed=True,
                metadata={
                    "rows_read": int(stats_df["rows_read"].sum()),
                    "rows_checked_in_session": int(stats_df["rows_in_session"].sum()),
                    "dropped_outside_session": int(stats_df["dropped_outside_session"].sum()),
                    "zero_volume_bars_in_session": int(stats_df["zero_volume_bars"].sum()),
                },
            ),
            dg.AssetCheckResult(
                check_name="sessions_complete",
                passed=not incomplete,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "incomplete_sessions": len(incomplete),
                    "details": markdown_table(pd.DataFrame(incomplete or [{"symbol": "-", "date": "-", "bars": 0, "expected": 0}]), limit=50),
                },
            ),
        ],
    )
