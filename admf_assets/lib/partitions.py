"""Partition definitions: trading days (exchange-calendar aware) and trading day x symbol.

Trading days are weekday partitions with the exchange's holidays excluded (taken from
``exchange_calendars``), so 2025-07-04 or 2025-01-09 (national day of mourning) never appear as
partitions. Dimension names are chosen so that Dagster's alphabetical ordering of multi-partition
keys reads naturally: ``"2025-06-04|SPY"`` (``date`` < ``symbol``).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import dagster as dg
import exchange_calendars as xcals
import pandas as pd

from admf_assets.lib.settings import SETTINGS

PARTITION_TIMEZONE = "America/New_York"
DATE_DIMENSION = "date"
SYMBOL_DIMENSION = "symbol"


@lru_cache(maxsize=8)
def exchange_holidays(calendar: str, start: str) -> tuple[dt.datetime, ...]:
    """Weekdays from ``start`` to the calendar's last session that are not sessions (holidays)."""
    cal = xcals.get_calendar(calendar)
    first = max(pd.Timestamp(start), cal.first_session)
    weekdays = pd.bdate_range(first, cal.last_session)
    sessions = cal.sessions_in_range(first, cal.last_session)
    return tuple(d.to_pydatetime() for d in weekdays.difference(sessions))


def trading_day_partitions(start: str, calendar: str) -> dg.TimeWindowPartitionsDefinition:
    """Daily partitions (key ``YYYY-MM-DD``) on weekdays, exchange holidays excluded.

    ``end_offset=1`` makes the current day's partition exist from its midnight on, so the
    after-the-close schedule can request today's key (without it, a day's window is only
    complete, and its key only exists, at the next weekday's midnight).
    """
    return dg.TimeWindowPartitionsDefinition(
        start=start,
        cron_schedule="0 0 * * 1-5",
        fmt="%Y-%m-%d",
        timezone=PARTITION_TIMEZONE,
        exclusions=list(exchange_holidays(calendar, start)),
        end_offset=1,
    )


@lru_cache(maxsize=8)
def exchange_sessions(calendar: str) -> tuple[dt.date, ...]:
    """Every session (trading day) of the exchange calendar, ascending (the retention policy
    counts trading days on these)."""
    cal = xcals.get_calendar(calendar)
    return tuple(d.date() for d in cal.sessions_in_range(cal.first_session, cal.last_session))


def is_trading_day(day: dt.date, calendar: str = SETTINGS.calendar) -> bool:
    """True when ``day`` is a session of the exchange calendar."""
    return bool(xcals.get_calendar(calendar).is_session(pd.Timestamp(day)))


trading_days = trading_day_partitions(SETTINGS.start_date, SETTINGS.calendar)
symbols = dg.StaticPartitionsDefinition(list(SETTINGS.symbols))
day_symbol = dg.MultiPartitionsDefinition({DATE_DIMENSION: trading_days, SYMBOL_DIMENSION: symbols})


def group_by_symbol(keys) -> dict[str, list[dt.date]]:
    """``{symbol: sorted trading days}`` of a run's ``date|symbol`` partition keys.

    Accepts ``MultiPartitionKey`` objects or their string form (dimension values joined by ``|``
    in alphabetical dimension order: date, then symbol).
    """
    out: dict[str, set[dt.date]] = {}
    for key in keys:
        if isinstance(key, dg.MultiPartitionKey):
            date_s = key.keys_by_dimension[DATE_DIMENSION]
            symbol = key.keys_by_dimension[SYMBOL_DIMENSION]
        else:
            date_s, symbol = str(key).split("|")
        out.setdefault(symbol, set()).add(dt.date.fromisoformat(date_s))
    return {s: sorted(d) for s, d in sorted(out.items())}


def day_range_tags(first_day: dt.date, last_day: dt.date) -> dict[str, str]:
    """Run tags selecting the ``trading_days`` partitions from ``first_day`` to ``last_day`` (the
    daily-partitioned ``daily_signal_summary``): one single-run backfill range."""
    return {
        "dagster/asset_partition_range_start": first_day.isoformat(),
        "dagster/asset_partition_range_end": last_day.isoformat(),
    }


def range_tags(first_day: dt.date, last_day: dt.date, symbol_keys: list[str] | None = None) -> dict[str, str]:
    """Run tags selecting every ``date|symbol`` partition from ``first_day`` to ``last_day`` (all
    symbols): one single-run backfill range. Multi-partition keys sort date-major, so the range
    from (first day, first symbol) to (last day, last symbol) is the full rectangle."""
    keys = sorted(symbol_keys or symbols.get_partition_keys())
    return {
        "dagster/asset_partition_range_start": f"{first_day.isoformat()}|{keys[0]}",
        "dagster/asset_partition_range_end": f"{last_day.isoformat()}|{keys[-1]}",
    }


def contiguous_ranges(days: list[str], keys: list[str]) -> list[tuple[str, str]]:
    """``days`` (partition keys, any order) split into ``(first, last)`` ranges that are
    contiguous in the partition order ``keys``, oldest first: a single-run range covers every
    partition between its ends, so a day missing in between must split it.

    Raises:
        KeyError: a day that is not in ``keys``.
    """
    position = {k: i for i, k in enumerate(keys)}
    ranges: list[list[str]] = []
    for day in sorted(days, key=position.__getitem__):
        if ranges and position[day] == position[ranges[-1][1]] + 1:
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return [(a, b) for a, b in ranges]


def symbol_groups(chosen: list[str], all_symbols: list[str]) -> list[list[str]]:
    """``chosen`` split into runs of symbols adjacent in the symbol partition order: a
    ``date|symbol`` key range is the rectangle first..last date x first..last symbol (Dagster's
    ``MultiPartitionsDefinition`` ranges), so each group is one range, hence one run."""
    order = sorted(all_symbols)
    groups: list[list[str]] = []
    for s in sorted(chosen, key=order.index):
        if groups and order.index(s) == order.index(groups[-1][-1]) + 1:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups
