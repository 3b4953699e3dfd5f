"""OHLCV bar files: reading, normalisation, session filtering and validation.

This module turns vendor bar files (CSV or Parquet, in the usual vendor spellings) into one
normalised frame layout and checks it before anything is computed on it. It imports no Dagster.

Normalised bars (the output of :func:`read_bar_file` and :func:`normalize_bars`) have exactly these
columns, in this order:

============== ======================= =====================================================
column         dtype                   meaning
============== ======================= =====================================================
``ts``         ``datetime64[ns, UTC]`` bar OPEN (start) time, UTC
``symbol``     ``object`` (``str``)    ticker, as spelled in the file / argument / file name
``open``       ``float64``             price, in the file's currency (USD for all samples)
``high``       ``float64``             price
``low``        ``float64``             price
``close``      ``float64``             price
``volume``     ``float64``             shares (or contracts) traded in the bar
``source_row`` ``int64``               1-based data row number in the file (header = row 0)
============== ======================= =====================================================

Rows keep FILE order; ordering and uniqueness are checked by :func:`validate_bars`, which also
applies the session filter (regular exchange hours by default) and rejects impossible bars. Every
problem raises :class:`BarValidationError` naming the file, the data row, the rule and the field.

Timestamp conventions (see ``sample_data/README.md`` for the data this was checked on):

* Intraday timestamps are bar-open times.
* ISO 8601 strings with an offset (``+00:00``, ``+02:00``, ``Z``) are converted to UTC.
* Naive strings / naive datetimes are taken as **UTC** (Polygon-style exports are naive UTC).
  Local exchange time must carry an offset.
* Date-only values (``YYYY-MM-DD`` strings or ``datetime.date`` objects, i.e. daily bars) are
  stamped at **09:30 America/New_York** of that date, converted to UTC: the open of the NYSE regular
  session, which is when a US daily bar starts. Daily bars therefore pass the ``"regular"`` session
  filter and :func:`trading_dates` returns the date written in the file.
* Integer (or whole-number) epochs: the unit is inferred from the magnitude of the largest value:
  below 1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds (so
  epoch milliseconds before 1973 would be misread as seconds). An epoch outside the
  ``datetime64[ns]`` range (1677-09-21 .. 2262-04-11 UTC) in that unit raises ``ts_parse`` naming
  its row and value.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "BAR_COLUMNS",
    "PRICE_COLUMNS",
    "RULES",
    "SESSIONS",
    "BarValidationError",
    "ValidationReport",
    "bundled_sample_dir",
    "discover_bar_files",
    "infer_timeframe",
    "load_symbol_bars",
    "normalize_bars",
    "read_bar_file",
    "session_mask",
    "trading_dates",
    "validate_bars",
]

BAR_COLUMNS: tuple[str, ...] = ("ts", "symbol", "open", "high", "low", "close", "volume", "source_row")
"""Columns of a normalised bar frame, in order."""

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
"""The price columns (float64)."""

RULES: tuple[str, ...] = (
    "ts_sorted",
    "ts_unique",
    "no_nan",
    "price_positive",
    "high_ge_open_close",
    "low_le_open_close",
    "volume_nonnegative",
)
"""Rule ids checked by :func:`validate_bars`, in checking order.

Reading errors use further ids: ``missing_column``, ``ambiguous_column``, ``ts_parse``, ``numeric``,
``symbol_missing``, ``unreadable``.
"""

SESSIONS: tuple[str, ...] = ("regular", "all")
"""Accepted values of the ``session`` argument."""

_NY_TZ = "America/New_York"
_DAILY_OPEN = pd.Timedelta(hours=9, minutes=30)

# Vendor spellings, matched case-insensitively after stripping whitespace. Earlier aliases win
# when a file has several (e.g. ``Datetime`` beats ``Date``).
_TS_ALIASES: tuple[str, ...] = ("timestamp", "datetime", "date_time", "ts", "date", "time", "t")
_FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
}
_SYMBOL_ALIASES: tuple[str, ...] = ("symbol", "ticker", "sym")
_NA_TOKENS = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "none"})

_FAST_PARSE = True
"""Try the vectorised parsers for clean text columns first (see :func:`_fast_floats`,
:func:`_fast_ts_text`, :func:`_parse_symbols`). ``False`` forces the precise path everywhere;
tests use it to compare both paths. The result never depends on it; only the speed does."""

_AWARE_RE = r"\d:\d{2}(?::\d{2}(?:[.,]\d*)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
_DATE_ONLY_RE = r"^\d{4}-\d{2}-\d{2}$"
_INT_RE = r"^[+-]?\d+$"


# --------------------------------------------------------------------------------------------
# Errors and reports
# --------------------------------------------------------------------------------------------


class BarValidationError(ValueError):
    """A bar file or frame broke a reading or validation rule.

    Attributes:
        source: the file path (as given) or a label such as ``"<DataFrame>"``.
        row: 1-based data row number in the file (the header is row 0), or ``None`` when the
            problem is not tied to one row (e.g. a missing column).
        rule: short rule id, one of :data:`RULES` or a reading rule (``missing_column``,
            ``ambiguous_column``, ``ts_parse``, ``numeric``, ``symbol_missing``, ``unreadable``).
        field: the column concerned (normalised name such as ``"high"`` or ``"ts"``), or ``None``.
        detail: human-readable description of the offending values.

    ``str(err)`` reads like
    ``SPY_5m.csv: row 1234 (field high): rule high_ge_open_close violated: high 100.0 < max(open,
    close) 101.2``.
    """

    def __init__(
        self,
        source: str,
        row: int | None,
        rule: str,
        field: str | None,
        detail: str = "",
    ) -> None:
        self.source = str(source)
        self.row = None if row is None else int(row)
        self.rule = rule
        self.field = field
        self.detail = detail
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.source
        if self.row is not None:
            where += f": row {self.row}"
        else:
            where += ":"
        if self.field is not None:
            where += f" (field {self.field})"
        where = where if where.endswith(":") else where + ":"
        text = f"{where} rule {self.rule} violated"
        return f"{text}: {self.detail}" if self.detail else text

    def __reduce__(self):  # keep the error picklable (multiprocess executors ship exceptions)
        return (type(self), (self.source, self.row, self.rule, self.field, self.detail))


@dataclass
class ValidationReport:
    """Summary of one :func:`validate_bars` (or :func:`load_symbol_bars`) run.

    Attributes:
        source: the file path or label that was validated (several files joined by ``", "``).
        rows: number of input rows (all sessions, all symbols in the frame).
        rows_in_session: rows kept by the session filter (= rows of the returned frame).
        dropped_outside_session: ``rows - rows_in_session``.
        zero_volume_bars: kept rows whose volume is exactly 0 (allowed, but worth knowing: Yahoo
            reports 0 for thin bars, e.g. a half-day's post-close slots).
        first_ts: ``ts`` of the first kept row (``pd.Timestamp`` in UTC), ``None`` if none kept.
        last_ts: ``ts`` of the last kept row, ``None`` if none kept.
        sessions: number of distinct trading dates (:func:`trading_dates`) among the kept rows.
        rule_counts: for every id in :data:`RULES`, the number of violating rows among ALL input
            rows. A violation in a kept row raises, so in a returned report a non-zero count can
            only come from rows the session filter dropped (tolerated, reported for information).
    """

    source: str
    rows: int
    rows_in_session: int
    dropped_outside_session: int
    zero_volume_bars: int
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    sessions: int
    rule_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (timestamps as ISO 8601 strings), e.g. for run metadata."""
        out = asdict(self)
        for key in ("first_ts", "last_ts"):
            out[key] = None if out[key] is None else pd.Timestamp(out[key]).isoformat()
        out["rule_counts"] = {k: int(v) for k, v in self.rule_counts.items()}
        return out


# --------------------------------------------------------------------------------------------
# Reading and normalisation
# --------------------------------------------------------------------------------------------


def _symbol_from_filename(path: str | Path) -> str:
    """Filename prefix before the first ``_`` (``SPY_5m.csv`` -> ``SPY``); whole stem if none."""
    stem = Path(path).name.split(".", 1)[0]
    return stem.split("_", 1)[0]


def _match_column(columns: Sequence[Any], aliases: Iterable[str], source: str, field_name: str):
    """The column whose stripped, lower-cased name is the first matching alias, or None."""
    lowered: dict[str, list[Any]] = {}
    for col in columns:
        lowered.setdefault(str(col).strip().lower(), []).append(col)
    for alias in aliases:
        hits = lowered.get(alias)
        if not hits:
            continue
        if len(hits) > 1:
            raise BarValidationError(
                source, None, "ambiguous_column", field_name,
                f"several columns spell {alias!r}: {[str(h) for h in hits]}",
            )
        return hits[0]
    return None


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _as_str_series(values: pd.Series) -> pd.Series:
    return values.map(lambda v: v if isinstance(v, str) else ("" if v is None else str(v))).str.strip()


def _missing_mask(values: pd.Series) -> np.ndarray:
    """True where a raw value is missing (NaN/None or an NA token string)."""
    miss = values.isna().to_numpy()
    if values.dtype == object:
        miss |= values.map(lambda v: isinstance(v, str) and v.strip() in _NA_TOKENS).to_numpy(bool)
    return miss


def _parse_float(values: pd.Series, rows: np.ndarray, source: str, field_name: str) -> np.ndarray:
    """Convert one raw column to float64; NA tokens become NaN, anything else non-numeric raises."""
    if pd.api.types.is_bool_dtype(values.dtype):
        raise BarValidationError(source, int(rows[0]) if len(rows) else None, "numeric", field_name,
                                 "boolean column, expected numbers")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    raw = values.astype(object)
    fast = _fast_floats(raw) if _FAST_PARSE else None
    if fast is not None:
        return fast
    missing = _missing_mask(raw)
    text = _as_str_series(raw).where(~missing, "nan")
    try:
        return text.to_numpy(dtype=object).astype(np.float64)
    except (ValueError, TypeError):
        coerced = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(coerced) & ~missing
        # pd.to_numeric rejects a few spellings Python float() accepts; test them one by one
        for i in np.flatnonzero(bad):
            try:
                float(text.iloc[i])
            except (ValueError, TypeError):
                raise BarValidationError(
                    source, int(rows[i]), "numeric", field_name,
                    f"{raw.iloc[i]!r} is not a number",
                ) from None
        raise  # pragma: no cover - unreachable in practice


class _EpochOutOfRange(Exception):
    """An epoch whose nanosecond value does not fit int64 (internal: callers turn it into a
    ``ts_parse`` :class:`BarValidationError` naming the row, or take the precise path)."""

    def __init__(self, index: int, unit: str) -> None:
        super().__init__(index, unit)
        self.index = index
        self.unit = unit


_EPOCH_UNITS = {1_000_000_000: "seconds", 1_000_000: "milliseconds", 1_000: "microseconds", 1: "nanoseconds"}
_INT64_MAX = int(np.iinfo(np.int64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)


def _epoch_range_message(value: Any, unit: str | None) -> str:
    """Detail of a ``ts_parse`` error for an epoch outside the datetime64[ns] range."""
    value = value.item() if isinstance(value, np.generic) else value
    if unit is None:
        return f"epoch {value!r} out of range: not a 64-bit integer"
    return (f"epoch {value!r} out of range: read as {unit} since 1970, it is outside the "
            "datetime64[ns] range (1677-09-21 .. 2262-04-11 UTC)")


def _epoch_to_ns(ints: np.ndarray) -> np.ndarray:
    """Epoch numbers of one unit (inferred from magnitude) -> int64 ns since 1970 UTC.

    Raises:
        _EpochOutOfRange: a value whose scaled result does not fit int64 (the first such index).
    """
    # max |value| from the extremes (no temporary array; np.abs would wrap int64's minimum)
    lo_value, hi_value = (int(ints.min()), int(ints.max())) if len(ints) else (0, 0)
    biggest = float(max(abs(lo_value), abs(hi_value)))
    if biggest < 1e11:
        scale = 1_000_000_000
    elif biggest < 1e14:
        scale = 1_000_000
    elif biggest < 1e17:
        scale = 1_000
    else:
        scale = 1
    # ints * scale fits int64 exactly when ints lies in [ceil(MIN / scale), floor(MAX / scale)]
    hi, lo = _INT64_MAX // scale, -(-_INT64_MIN // scale)
    if hi_value > hi or lo_value < lo:
        raise _EpochOutOfRange(_first_true((ints > hi) | (ints < lo)), _EPOCH_UNITS[scale])
    return (ints * scale).astype(np.int64)


def _parse_ts(values: pd.Series, rows: np.ndarray, source: str) -> np.ndarray:
    """Raw timestamp column -> int64 ns UTC (numpy ``datetime64[ns]`` view). Raises ts_parse."""
    n = len(values)
    dtype = values.dtype

    def fail(i: int, what: str) -> BarValidationError:
        return BarValidationError(source, int(rows[i]), "ts_parse", "ts", what)

    if isinstance(dtype, pd.DatetimeTZDtype):
        out = values.dt.tz_convert("UTC").dt.tz_localize(None)
        arr = out.to_numpy(dtype="datetime64[ns]")
    elif pd.api.types.is_datetime64_dtype(dtype):
        arr = values.to_numpy(dtype="datetime64[ns]")
    elif pd.api.types.is_bool_dtype(dtype):
        if n == 0:
            return np.empty(0, dtype="datetime64[ns]")
        raise fail(0, "boolean column, expected timestamps")
    elif pd.api.types.is_numeric_dtype(dtype):
        num = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(num)
        if bad.any():
            i = _first_true(bad)
            raise fail(i, f"{values.iloc[i]!r} is not a timestamp")
        if pd.api.types.is_integer_dtype(dtype):
            if pd.api.types.is_unsigned_integer_dtype(dtype):
                big = values.to_numpy(dtype=np.uint64) > np.uint64(_INT64_MAX)
                if big.any():
                    i = _first_true(big)
                    raise fail(i, _epoch_range_message(values.iloc[i], None))
            try:
                ns = _epoch_to_ns(values.to_numpy(dtype=np.int64))
            except _EpochOutOfRange as exc:
                raise fail(exc.index, _epoch_range_message(values.iloc[exc.index], exc.unit)) from None
        else:
            biggest = float(np.max(np.abs(num))) if n else 0.0
            scale = 1e9 if biggest < 1e11 else 1e6 if biggest < 1e14 else 1e3 if biggest < 1e17 else 1.0
            scaled = np.round(num * scale)
            bad = (scaled >= 2.0**63) | (scaled < -(2.0**63))
            if bad.any():
                i = _first_true(bad)
                unit = _EPOCH_UNITS[int(scale)]
                raise fail(i, _epoch_range_message(values.iloc[i], unit))
            ns = scaled.astype(np.int64)
        arr = ns.view("datetime64[ns]")
    else:
        arr = _parse_ts_objects(values.astype(object), rows, source)
    nat = np.isnat(arr)
    if nat.any():
        i = _first_true(nat)
        raise fail(i, f"{values.iloc[i]!r} is not a timestamp")
    return arr


def _parse_ts_objects(raw: pd.Series, rows: np.ndarray, source: str) -> np.ndarray:
    """Object/str timestamp column -> datetime64[ns] (naive, UTC wall time)."""
    import datetime as _dt

    n = len(raw)
    out = np.full(n, np.datetime64("NaT", "ns"))
    if n == 0:
        return out
    fast = _fast_ts_text(raw) if _FAST_PARSE else None
    if fast is not None:
        return fast
    missing = _missing_mask(raw)
    if missing.any():
        i = _first_true(missing)
        raise BarValidationError(source, int(rows[i]), "ts_parse", "ts", "missing timestamp")
    # datetime.date objects (Parquet date32) and datetime objects
    is_date = raw.map(lambda v: isinstance(v, _dt.date) and not isinstance(v, _dt.datetime)).to_numpy(bool)
    if is_date.all():
        dates = pd.to_datetime(raw.map(lambda d: d.isoformat()), format="%Y-%m-%d")
        return _daily_stamp(dates)
    is_dt = raw.map(lambda v: isinstance(v, (_dt.datetime, pd.Timestamp))).to_numpy(bool)
    if is_dt.all():
        return _parse_ts(pd.Series(pd.to_datetime(list(raw), utc=True), index=raw.index), rows, source)
    text = _as_str_series(raw)
    if text.str.fullmatch(_INT_RE).all():
        try:
            ints = text.astype(np.int64).to_numpy()
        except (OverflowError, ValueError):
            i = _first_int64_misfit(text)
            raise BarValidationError(
                source, int(rows[i]), "ts_parse", "ts", _epoch_range_message(raw.iloc[i], None)
            ) from None
        try:
            return _epoch_to_ns(ints).view("datetime64[ns]")
        except _EpochOutOfRange as exc:
            i = exc.index
            raise BarValidationError(
                source, int(rows[i]), "ts_parse", "ts", _epoch_range_message(raw.iloc[i], exc.unit)
            ) from None
    date_only = text.str.fullmatch(_DATE_ONLY_RE).to_numpy(bool)
    if date_only.all():
        dates = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        if dates.isna().any():
            i = _first_true(dates.isna().to_numpy())
            raise BarValidationError(source, int(rows[i]), "ts_parse", "ts", f"{raw.iloc[i]!r} is not a date")
        return _daily_stamp(dates)
    # pandas mis-converts naive strings that follow offset strings in one column (they inherit
    # the earlier offset), so offset-aware and naive strings are parsed separately.
    aware = text.str.contains(_AWARE_RE, regex=True).to_numpy(bool)
    for mask in (aware, ~aware):
        if mask.any():
            parsed = pd.to_datetime(text[mask], utc=True, format="ISO8601", errors="coerce")
            out[mask] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return out


def _first_int64_misfit(text: pd.Series) -> int:
    """Position of the first integer string outside int64 (error path only; 0 if none is found)."""
    for i, value in enumerate(text):
        try:
            if not _INT64_MIN <= int(value) <= _INT64_MAX:
                return i
        except ValueError:
            return i
    return 0


def _parse_symbols(raw_sym: pd.Series, rows: np.ndarray, source: str) -> np.ndarray:
    """Symbol column (object dtype) -> object array of stripped ``str``. Raises symbol_missing.

    Only empty / whitespace-only / NaN / None cells are missing: ``"NA"``, ``"NULL"``... can be
    real tickers. Fast path (all cells ``str``): strip each distinct value once (``pd.factorize``).
    """
    arr = raw_sym.to_numpy(dtype=object)
    if _FAST_PARSE and _all_str(arr):
        codes, uniques = pd.factorize(arr)
        stripped = [u.strip() for u in uniques]
        if all(stripped):
            return np.asarray(stripped, dtype=object)[codes]
    missing = raw_sym.isna().to_numpy() | raw_sym.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)
    if missing.any():
        i = _first_true(missing)
        raise BarValidationError(source, int(rows[i]), "symbol_missing", "symbol", "empty symbol cell")
    return _as_str_series(raw_sym).to_numpy(dtype=object)


# --- fast path for clean text columns -------------------------------------------------------
# Each helper returns the exact result of the precise parser for its column, or None when the
# column holds anything unusual; the caller then runs the precise parser, which also owns every
# error message. The helpers never raise BarValidationError.

_TEMPLATE_CHUNK = 1 << 16  # rows per block in _uniform_template (bounds the UCS-4 scratch array)


def _all_str(arr: np.ndarray) -> bool:
    """True when the object array is non-empty and every element is a ``str``."""
    return len(arr) > 0 and pd.api.types.infer_dtype(arr, skipna=False) == "string"


def _fast_floats(raw: pd.Series) -> np.ndarray | None:
    """float64 values of an all-``str`` column when Python ``float()`` accepts every cell, else None.

    The precise path (:func:`_parse_float`) strips each cell, turns NA tokens into ``"nan"`` and
    calls ``float()`` per cell. ``float()`` ignores surrounding whitespace itself, and the only NA
    tokens it accepts are spellings of ``nan``, so whenever it accepts every raw cell the result
    is the same array, bit for bit. A missing, NA-token or non-numeric cell returns None.
    """
    arr = raw.to_numpy(dtype=object)
    if not _all_str(arr):
        return None
    try:
        return arr.astype(np.float64)
    except (ValueError, TypeError):
        return None


def _uniform_template(arr: np.ndarray) -> str | None:
    """``arr[0]`` when every string of ``arr`` has its shape, else None.

    Same shape: same length, an ASCII digit exactly where ``arr[0]`` has one, and the very same
    character everywhere else (vectorised on a UCS-4 code-point matrix, in row blocks). The
    regular expressions, NA tokens and ``str.strip`` used by :func:`_parse_ts_objects` treat all
    ASCII digits alike, so on such a column they give every row the answer they give ``arr[0]``.

    Args:
        arr: non-empty object array of ``str``.
    """
    n = len(arr)
    lengths = np.fromiter(map(len, arr), dtype=np.int64, count=n)
    width = int(lengths[0])
    if width == 0 or (lengths != width).any():
        return None
    first = np.array([arr[0]], dtype=f"<U{width}").view(np.uint32)
    digit0 = (first >= 48) & (first <= 57)
    other = ~digit0
    for start in range(0, n, _TEMPLATE_CHUNK):
        # NULs are stored as code 0 (trailing ones as padding), so equal lengths keep this exact
        codes = arr[start:start + _TEMPLATE_CHUNK].astype(f"<U{width}").view(np.uint32).reshape(-1, width)
        digit = (codes >= 48) & (codes <= 57)
        if not (digit == digit0).all() or not (codes[:, other] == first[other]).all():
            return None
    return arr[0]


def _fast_ts_text(raw: pd.Series) -> np.ndarray | None:
    """datetime64[ns] (naive UTC) of an all-``str`` timestamp column of one shape, else None.

    When :func:`_uniform_template` holds, the branch :func:`_parse_ts_objects` takes (epoch
    integers, date-only, or ISO 8601 with all rows offset-aware or all naive, i.e. one parsing
    group) is decided on the first row, and the same pandas call as there parses the whole column.
    Returns None (so the precise path runs and reports) on any other shape, a padded or NA-token
    template, or a value that call cannot parse.
    """
    arr = raw.to_numpy(dtype=object)
    if not _all_str(arr):
        return None
    first = _uniform_template(arr)
    if first is None or first != first.strip() or first in _NA_TOKENS:
        return None
    text = pd.Series(arr, index=raw.index, dtype=object)
    if re.fullmatch(_INT_RE, first):
        try:
            ints = text.astype(np.int64).to_numpy()
        except (OverflowError, ValueError):
            return None
        try:
            return _epoch_to_ns(ints).view("datetime64[ns]")
        except _EpochOutOfRange:
            return None  # the precise path raises, naming the row
    if re.fullmatch(_DATE_ONLY_RE, first):
        dates = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        return None if dates.isna().any() else _daily_stamp(dates)
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    if parsed.isna().any():
        return None
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _daily_stamp(dates: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Naive midnight dates -> 09:30 America/New_York of that date, as naive-UTC datetime64[ns]."""
    local = pd.DatetimeIndex(dates) + _DAILY_OPEN
    utc = local.tz_localize(_NY_TZ).tz_convert("UTC").tz_localize(None)
    return utc.to_numpy(dtype="datetime64[ns]")


def normalize_bars(df: pd.DataFrame, *, source: str = "<DataFrame>", symbol: str | None = None) -> pd.DataFrame:
    """Normalise an in-memory bar table to the layout described in the module docstring.

    Column names are matched case-insensitively after stripping whitespace:
    timestamp / datetime / date_time / ts / date / time / t (earlier spellings win; separate
    ``date`` and ``time`` columns are joined), open/o, high/h, low/l, close/c, volume/vol/v and an
    optional symbol/ticker/sym. A ``DatetimeIndex`` (or an index named like a timestamp) is used
    when no timestamp column exists. Other columns (vwap, transactions, adjusted close, unnamed
    index columns, ...) are ignored. An existing ``source_row`` column is kept (so normalising
    twice is harmless); otherwise rows are numbered 1..n in frame order. Rows are NOT sorted.

    Text columns that are clean (every cell a ``str``; timestamps all of one shape; no missing or
    non-numeric cell) are parsed by vectorised fast paths. A column with anything unusual is parsed
    by the precise per-cell path, which raises every error; the result is identical either way.

    Args:
        df: the raw table (any dtypes; strings, numbers, datetimes).
        source: label used in errors (a file path when called by :func:`read_bar_file`).
        symbol: symbol for every row when the table has no symbol column.

    Returns:
        A new frame with exactly :data:`BAR_COLUMNS` and a RangeIndex. Empty cells in price and
        volume columns become NaN here; :func:`validate_bars` rejects them in kept rows.

    Raises:
        BarValidationError: ``missing_column`` / ``ambiguous_column`` (row None), ``ts_parse``
            (unparseable or missing timestamp), ``numeric`` (non-numeric price or volume),
            ``symbol_missing`` (no symbol column, no ``symbol`` argument, or empty symbol cells).
    """
    source = str(source)
    frame = df
    ts_col = _match_column(frame.columns, _TS_ALIASES, source, "ts")
    if ts_col is None and (
        isinstance(frame.index, pd.DatetimeIndex)
        or str(frame.index.name or "").strip().lower() in _TS_ALIASES
    ):
        name = "__index_ts__"
        frame = frame.reset_index(names=name)
        ts_col = name
    if ts_col is None:
        raise BarValidationError(
            source, None, "missing_column", "ts",
            f"no timestamp column (looked for {', '.join(_TS_ALIASES)}); columns are "
            f"{[str(c) for c in frame.columns]}",
        )
    cols: dict[str, Any] = {}
    for name, aliases in _FIELD_ALIASES.items():
        col = _match_column(frame.columns, aliases, source, name)
        if col is None:
            raise BarValidationError(
                source, None, "missing_column", name,
                f"no {name} column (looked for {', '.join(aliases)}); columns are "
                f"{[str(c) for c in frame.columns]}",
            )
        cols[name] = col
    sym_col = _match_column(frame.columns, _SYMBOL_ALIASES, source, "symbol")
    row_col = _match_column(frame.columns, ("source_row",), source, "source_row")

    n = len(frame)
    if row_col is not None:
        rows = pd.to_numeric(frame[row_col], errors="raise").to_numpy(dtype=np.int64)
    else:
        rows = np.arange(1, n + 1, dtype=np.int64)

    ts_values = frame[ts_col]
    ts_key = str(ts_col).strip().lower()
    if ts_key == "date":
        time_col = _match_column(frame.columns, ("time",), source, "ts")
        if time_col is not None:
            ts_values = _as_str_series(frame[ts_col].astype(object)) + " " + _as_str_series(
                frame[time_col].astype(object)
            )
    ts = _parse_ts(ts_values.reset_index(drop=True), rows, source)

    data: dict[str, Any] = {"ts": pd.DatetimeIndex(ts).tz_localize("UTC")}
    if sym_col is not None:
        data["symbol"] = _parse_symbols(frame[sym_col].astype(object).reset_index(drop=True), rows, source)
    else:
        if symbol is None or not str(symbol).strip():
            raise BarValidationError(
                source, None, "symbol_missing", "symbol",
                "no symbol column and no symbol given",
            )
        data["symbol"] = np.full(n, str(symbol).strip(), dtype=object)
    for name in ("open", "high", "low", "close", "volume"):
        data[name] = _parse_float(frame[cols[name]].reset_index(drop=True), rows, source, name)
    data["source_row"] = rows
    out = pd.DataFrame(data, columns=list(BAR_COLUMNS))
    out["ts"] = out["ts"].astype("datetime64[ns, UTC]")
    return out


def read_bar_file(path: str | Path, *, symbol: str | None = None) -> pd.DataFrame:
    """Read one CSV or Parquet bar file into normalised bars (file order, not sorted).

    Accepted layouts are those of :func:`normalize_bars` (vendor spellings, any case). CSV cells
    are read as text and converted strictly, so a stray string in a price column is reported with
    its row rather than silently becoming NaN; tickers such as ``NA`` stay strings.

    Args:
        path: a ``.csv`` (any delimiter pandas sniffs as comma) or ``.parquet`` / ``.pq`` file.
        symbol: used when the file has no symbol column; default: the file-name prefix before the
            first ``_`` (``SPY_5m.csv`` -> ``SPY``; the whole stem when there is no ``_``).

    Returns:
        Normalised bars (:data:`BAR_COLUMNS`); ``source_row`` is the 1-based data row number in
        the file (the header is row 0; blank lines are not counted).

    Raises:
        BarValidationError: reading rules (see :func:`normalize_bars`), with ``source`` = the path
            as given; ``unreadable`` if the file cannot be parsed as CSV/Parquet at all.
        FileNotFoundError: the file does not exist.
    """
    p = Path(path)
    source = str(path)
    if not p.exists():
        raise FileNotFoundError(source)
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            raw = pd.read_parquet(p)
        else:
            raw = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False)
    except Exception as exc:  # pandas/pyarrow raise many types; report them uniformly
        raise BarValidationError(source, None, "unreadable", None, f"{type(exc).__name__}: {exc}") from exc
    fallback = symbol if symbol is not None else _symbol_from_filename(p)
    return normalize_bars(raw, source=source, symbol=fallback)


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _calendar(name: str, first_year: int, last_year: int):
    """exchange_calendars calendar covering [first_year-01-01, last_year-12-31] (clipped to bounds)."""
    import exchange_calendars as xc

    cls = type(xc.get_calendar(name))
    start = pd.Timestamp(f"{first_year}-01-01")
    end = pd.Timestamp(f"{last_year}-12-31")
    lo, hi = cls.bound_min(), cls.bound_max()
    if lo is not None and start < lo:
        start = pd.Timestamp(lo).normalize() + pd.Timedelta(days=1)
    if hi is not None and end > hi:
        end = pd.Timestamp(hi).normalize() - pd.Timedelta(days=1)
    if start > end:  # data entirely outside the calendar's range: any valid small window
        start = end = None
    return xc.get_calendar(name, start=start, end=end)


@lru_cache(maxsize=32)
def calendar_tz(name: str):
    """Time zone of the exchange calendar ``name`` (cached: ``exchange_calendars.get_calendar``
    takes about 5 ms a call, which :func:`trading_dates` would otherwise pay on every call)."""
    import exchange_calendars as xc

    return xc.get_calendar(name).tz


def _ts_ns(ts: Any) -> np.ndarray:
    """Any timestamp array-like -> int64 ns UTC (naive values taken as UTC); NaT -> int64 min."""
    idx = pd.DatetimeIndex(ts)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return idx.tz_convert("UTC").as_unit("ns").asi8


def session_mask(ts: Any, session: str = "regular", calendar: str = "XNYS") -> np.ndarray:
    """Which bars belong to the requested trading session.

    ``"regular"`` keeps a bar when its OPEN time ``t`` satisfies ``open <= t < close`` of an
    exchange session of ``calendar`` (exchange_calendars), outside any lunch break. For XNYS that
    drops pre- and post-market rows and the 16:00 ET bar, ends half-days at 13:00 ET, and never
    keeps weekends or holidays. ``"all"`` keeps every bar. Vectorised: one ``searchsorted`` of the
    bar times into the session opens.

    Args:
        ts: bar-open times: ``Series``/``DatetimeIndex``/array of ``datetime64`` (naive = UTC).
        session: ``"regular"`` or ``"all"``.
        calendar: exchange_calendars name, e.g. ``"XNYS"``.

    Returns:
        ``np.ndarray`` of bool, one per input timestamp (NaT -> False).

    Raises:
        ValueError: unknown ``session``.
    """
    if session not in SESSIONS:
        raise ValueError(f"unknown session {session!r}; expected one of {SESSIONS}")
    t = _ts_ns(ts)
    if session == "all":
        return np.ones(len(t), dtype=bool)
    valid = t != np.iinfo(np.int64).min
    if not valid.any():
        return np.zeros(len(t), dtype=bool)
    lo, hi = t[valid].min(), t[valid].max()
    first_year = pd.Timestamp(lo, tz="UTC").year
    last_year = pd.Timestamp(hi, tz="UTC").year
    cal = _calendar(calendar, first_year, last_year)
    sched = cal.schedule
    opens = sched["open"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    closes = sched["close"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    i = np.searchsorted(opens, t, side="right") - 1
    inside = valid & (i >= 0)
    j = np.clip(i, 0, len(opens) - 1)
    inside &= t < closes[j]
    if "break_start" in sched and sched["break_start"].notna().any():
        bs = sched["break_start"].to_numpy(dtype="datetime64[ns]")
        be = sched["break_end"].to_numpy(dtype="datetime64[ns]")
        has_break = ~np.isnat(bs[j])
        in_break = has_break & (t >= bs.view(np.int64)[j]) & (t < be.view(np.int64)[j])
        inside &= ~in_break
    return inside


def trading_dates(ts: Any, calendar: str = "XNYS") -> np.ndarray:
    """Session date of each bar: its local date in the calendar's time zone.

    Args:
        ts: bar-open times (as for :func:`session_mask`; naive = UTC).
        calendar: exchange_calendars name; only its time zone is used (America/New_York for
            XNYS), which is exact for exchanges whose sessions do not cross local midnight.

    Returns:
        ``np.ndarray`` of ``datetime64[D]`` (NaT stays NaT).
    """
    tz = calendar_tz(calendar)
    idx = pd.DatetimeIndex(ts)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    local = idx.tz_convert(tz).tz_localize(None)
    return local.normalize().to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _is_normalized(df: pd.DataFrame) -> bool:
    if tuple(df.columns) != BAR_COLUMNS:
        return False
    dt = df.dtypes
    return (
        isinstance(dt["ts"], pd.DatetimeTZDtype)
        and str(dt["ts"].tz) == "UTC"
        and all(dt[c] == np.float64 for c in ("open", "high", "low", "close", "volume"))
        and dt["source_row"] == np.int64
    )


def _fmt(v: float) -> str:
    return repr(float(v))


def validate_bars(
    df: pd.DataFrame,
    *,
    source: str,
    session: str = "regular",
    calendar: str = "XNYS",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Check bars, keep the requested session, and return them sorted with a report.

    Checks on ALL rows, per symbol, in frame order: timestamps strictly increasing (``ts_sorted``)
    and unique (``ts_unique``). Then the session filter (:func:`session_mask`) is applied and the
    kept rows are checked, in this order per row: ``no_nan`` (every OHLCV value finite),
    ``price_positive`` (OHLC > 0), ``high_ge_open_close`` (high >= max(open, close)),
    ``low_le_open_close`` (low <= min(open, close)), ``volume_nonnegative``. Comparisons are
    exact (no tolerance). Rows outside the session are not value-checked (extended-hours vendor
    data carries spurious prints); their violations are only counted in ``rule_counts``.

    Args:
        df: normalised bars (:func:`normalize_bars` is applied first if the layout differs).
        source: file path or label used in errors and in the report.
        session: ``"regular"`` or ``"all"``.
        calendar: exchange_calendars name.

    Returns:
        ``(bars, report)``: the kept rows sorted by (symbol, ts) with a fresh RangeIndex and the
        :data:`BAR_COLUMNS` layout, and a :class:`ValidationReport`.

    Raises:
        BarValidationError: the first violation: for the order rules the first offending row in
            frame order; for the value rules the first kept row (in frame order) that breaks any
            rule, reported with the first rule it breaks. ``row`` is the row's ``source_row``.
        ValueError: unknown ``session``.
    """
    source = str(source)
    bars = df if _is_normalized(df) else normalize_bars(df, source=source)
    n = len(bars)
    rows = bars["source_row"].to_numpy()
    t = bars["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    codes, uniques = pd.factorize(bars["symbol"], sort=False)
    counts = {rule: 0 for rule in RULES}

    # --- order rules, on all rows -----------------------------------------------------------
    if n > 1:
        order = np.argsort(codes, kind="stable")
        tc, cc = t[order], codes[order]
        same = cc[1:] == cc[:-1]
        step = tc[1:] - tc[:-1]
        unsorted = same & (step < 0)
        dup = same & (step == 0)
        counts["ts_sorted"] = int(unsorted.sum())
        counts["ts_unique"] = int(dup.sum())
        bad = unsorted | dup
        if bad.any():
            k_all = np.flatnonzero(bad)
            pos = order[k_all + 1]  # frame positions of the offending rows
            k = k_all[int(np.argmin(pos))]
            cur, prev = order[k + 1], order[k]
            sym = bars["symbol"].iat[cur]
            ts_cur, ts_prev = bars["ts"].iat[cur], bars["ts"].iat[prev]
            multi = len(uniques) > 1
            who = f" for symbol {sym}" if multi else ""
            if unsorted[k]:
                raise BarValidationError(
                    source, rows[cur], "ts_sorted", "ts",
                    f"ts {ts_cur} is earlier than the previous bar{who} at row {rows[prev]} ({ts_prev})",
                )
            raise BarValidationError(
                source, rows[cur], "ts_unique", "ts",
                f"ts {ts_cur} duplicates row {rows[prev]}{who}",
            )

    # --- session filter ---------------------------------------------------------------------
    keep = session_mask(bars["ts"], session=session, calendar=calendar)

    # --- value rules, evaluated on all rows (counted), enforced on kept rows ------------------
    ohlcv = bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    o, h, l, c, v = (ohlcv[:, k] for k in range(5))
    finite = np.isfinite(ohlcv)
    with np.errstate(invalid="ignore"):
        viol = np.column_stack(
            [
                ~finite.all(axis=1),
                (ohlcv[:, :4] <= 0).any(axis=1),
                h < np.maximum(o, c),
                l > np.minimum(o, c),
                v < 0,
            ]
        )
    # a row that fails no_nan is reported as no_nan only (comparisons with NaN are meaningless)
    viol[:, 1:] &= ~viol[:, :1]
    for k, rule in enumerate(RULES[2:]):
        counts[rule] = int(viol[:, k].sum())
    bad_kept = viol.any(axis=1) & keep
    if bad_kept.any():
        i = _first_true(bad_kept)
        k = int(np.argmax(viol[i]))
        rule = RULES[2 + k]
        r = rows[i]
        if rule == "no_nan":
            j = int(np.argmax(~finite[i]))
            name = ("open", "high", "low", "close", "volume")[j]
            raise BarValidationError(source, r, rule, name, f"{name} is {_fmt(ohlcv[i, j])}")
        if rule == "price_positive":
            j = int(np.argmax(ohlcv[i, :4] <= 0))
            name = PRICE_COLUMNS[j]
            raise BarValidationError(source, r, rule, name, f"{name} {_fmt(ohlcv[i, j])} <= 0")
        if rule == "high_ge_open_close":
            raise BarValidationError(
                source, r, rule, "high",
                f"high {_fmt(h[i])} < max(open, close) {_fmt(max(o[i], c[i]))}",
            )
        if rule == "low_le_open_close":
            raise BarValidationError(
                source, r, rule, "low",
                f"low {_fmt(l[i])} > min(open, close) {_fmt(min(o[i], c[i]))}",
            )
        raise BarValidationError(source, r, rule, "volume", f"volume {_fmt(v[i])} < 0")

    kept = bars.loc[keep]
    if kept["symbol"].nunique() > 1:
        kept = kept.sort_values(["symbol", "ts"], kind="stable")
    kept = kept.reset_index(drop=True)
    report = _report(source, n, kept, counts, calendar)
    return kept, report


def _report(source: str, n: int, kept: pd.DataFrame, counts: dict[str, int], calendar: str) -> ValidationReport:
    m = len(kept)
    if m:
        ts = kept["ts"]
        first, last = ts.min(), ts.max()
        sessions = int(len(np.unique(trading_dates(ts, calendar))))
    else:
        first = last = None
        sessions = 0
    return ValidationReport(
        source=source,
        rows=int(n),
        rows_in_session=int(m),
        dropped_outside_session=int(n - m),
        zero_volume_bars=int((kept["volume"] == 0).sum()),
        first_ts=first,
        last_ts=last,
        sessions=sessions,
        rule_counts=dict(counts),
    )


# --------------------------------------------------------------------------------------------
# Landing directories
# --------------------------------------------------------------------------------------------

_BAR_SUFFIXES = (".csv", ".parquet", ".pq")


def _bar_files(root: Path) -> list[Path]:
    """Candidate bar files directly in ``root`` (visible, bar suffix, any case), sorted by name."""
    return sorted(
        p for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _BAR_SUFFIXES
    )


def _file_symbols(path: Path) -> list[str] | None:
    """Distinct values of the symbol column (first-appearance order), or None if there is none."""
    if path.suffix.lower() == ".csv":
        header = pd.read_csv(path, nrows=0, dtype=str).columns
        col = _match_column(header, _SYMBOL_ALIASES, str(path), "symbol")
        if col is None:
            return None
        values = pd.read_csv(path, usecols=[col], dtype=str, keep_default_na=False, na_filter=False)[col]
    else:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        col = _match_column(names, _SYMBOL_ALIASES, str(path), "symbol")
        if col is None:
            return None
        values = pd.read_parquet(path, columns=[col])[col].astype(object)
    values = values.astype(object)
    text = _as_str_series(values[values.notna()])  # "NA" etc. are tickers, not missing values
    return [s for s in pd.unique(text) if s]


def discover_bar_files(landing_dir: str | Path) -> dict[str, list[Path]]:
    """Map each symbol to the bar files that hold it.

    Looks at the files directly in ``landing_dir`` (not sub-directories) ending in ``.csv``,
    ``.parquet`` or ``.pq`` (any case; hidden files skipped). A file with a symbol/ticker column
    is listed under every symbol in that column (only that column is read); otherwise under its
    file-name prefix before the first ``_`` (``SPY_5m.csv`` -> ``SPY``).

    Returns:
        ``{symbol: [paths sorted by name]}`` with symbols in sorted order; empty if no files.

    Raises:
        FileNotFoundError: ``landing_dir`` does not exist or is not a directory.
        BarValidationError: a file's header cannot be read (``unreadable``).
    """
    root = Path(landing_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"landing directory not found: {root}")
    found: dict[str, list[Path]] = {}
    for path in _bar_files(root):
        try:
            syms = _file_symbols(path)
        except BarValidationError:
            raise
        except Exception as exc:
            raise BarValidationError(str(path), None, "unreadable", None, f"{type(exc).__name__}: {exc}") from exc
        if syms is None:
            syms = [_symbol_from_filename(path)]
        for s in syms:
            found.setdefault(s, []).append(path)
    return {s: found[s] for s in sorted(found)}


def load_symbol_bars(
    landing_dir: str | Path,
    symbol: str,
    *,
    session: str = "regular",
    calendar: str = "XNYS",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read, validate and concatenate every file of one symbol in a landing directory.

    Each file is read (:func:`read_bar_file`), reduced to ``symbol``'s rows and validated on its
    own (:func:`validate_bars`, errors name that file). Timestamps of the symbol (all rows,
    before the session filter) must not repeat across files. The kept rows are concatenated and
    sorted by ``ts``; ``source_row`` still refers to the row in the file it came from.

    Results are memoised in-process (the last :data:`_LOAD_MEMO_SIZE` distinct calls, LRU), so
    reading the same landing folder twice in one process (``landing_days`` then ``market_bars``)
    parses it once. The key is the call's arguments (``str(Path(landing_dir))``, ``symbol``,
    ``session``, ``calendar``) plus, for EVERY candidate bar file in ``landing_dir`` (a new file
    may hold the symbol), its resolved path, ``st_ino``, ``st_mtime_ns`` and ``st_size``. Adding,
    removing, renaming, atomically replacing (new inode) or appending to (new size/mtime) any
    bar file therefore misses and re-reads. Not detected: an in-place rewrite that keeps inode
    and size and lands in the same file-system timestamp tick (nanosecond-granular on current
    Linux; coarse on some file systems). Each call returns fresh deep copies of the frame and
    report, so callers may modify them freely. Errors are not memoised (a failing call re-reads
    every time).

    Args:
        landing_dir: directory scanned by :func:`discover_bar_files`.
        symbol: the symbol, spelled as in the files / file names (case-sensitive).
        session, calendar: as in :func:`validate_bars`.

    Returns:
        ``(bars, report)``: :data:`BAR_COLUMNS` frame sorted by ``ts`` with a RangeIndex, and a
        report whose counts are summed over the files and whose ``source`` lists the files.

    Raises:
        FileNotFoundError: no file holds ``symbol`` (the message lists the symbols found).
        BarValidationError: any reading/validation error; ``ts_unique`` naming both files when a
            timestamp appears in two files.
    """
    root = Path(landing_dir)
    key = _load_memo_key(root, symbol, session, calendar)
    if key is not None:
        with _LOAD_MEMO_LOCK:
            hit = _LOAD_MEMO.get(key)
            if hit is not None:
                _LOAD_MEMO.move_to_end(key)
        if hit is not None:
            return _copy_loaded(*hit)
    bars, report = _load_symbol_bars_uncached(landing_dir, symbol, session=session, calendar=calendar)
    if key is not None:
        with _LOAD_MEMO_LOCK:
            _LOAD_MEMO[key] = (bars, report)
            _LOAD_MEMO.move_to_end(key)
            while len(_LOAD_MEMO) > _LOAD_MEMO_SIZE:
                _LOAD_MEMO.popitem(last=False)
    return _copy_loaded(bars, report)


_LOAD_MEMO_SIZE = 8
"""Number of :func:`load_symbol_bars` results kept in memory (least recently used dropped)."""

_LOAD_MEMO: OrderedDict[tuple, tuple[pd.DataFrame, ValidationReport]] = OrderedDict()
_LOAD_MEMO_LOCK = threading.Lock()


def _clear_load_memo() -> None:
    """Forget every memoised :func:`load_symbol_bars` result."""
    with _LOAD_MEMO_LOCK:
        _LOAD_MEMO.clear()


def _load_memo_key(root: Path, symbol: str, session: str, calendar: str) -> tuple | None:
    """Memo key of a :func:`load_symbol_bars` call, or None (do not memoise) if the folder cannot
    be listed or a file vanishes while it is being stat-ed."""
    try:
        stats = []
        for path in _bar_files(root):
            st = path.stat()
            stats.append((str(path.resolve()), st.st_ino, st.st_mtime_ns, st.st_size))
    except OSError:
        return None
    return (str(root), symbol, session, calendar, tuple(stats))


def _copy_loaded(bars: pd.DataFrame, report: ValidationReport) -> tuple[pd.DataFrame, ValidationReport]:
    """Deep copies of a memoised result (the report's only mutable field is ``rule_counts``)."""
    return bars.copy(deep=True), replace(report, rule_counts=dict(report.rule_counts))


def _load_symbol_bars_uncached(
    landing_dir: str | Path,
    symbol: str,
    *,
    session: str,
    calendar: str,
) -> tuple[pd.DataFrame, ValidationReport]:
    """:func:`load_symbol_bars` without the memo (same arguments, result and errors)."""
    files = discover_bar_files(landing_dir)
    paths = files.get(symbol)
    if not paths:
        raise FileNotFoundError(
            f"no bar file for symbol {symbol!r} in {landing_dir}; symbols found: {sorted(files)}"
        )
    kept_parts: list[pd.DataFrame] = []
    reports: list[ValidationReport] = []
    all_ts: list[np.ndarray] = []
    all_rows: list[np.ndarray] = []
    for path in paths:
        raw = read_bar_file(path, symbol=symbol)
        raw = raw.loc[raw["symbol"] == symbol].reset_index(drop=True)
        kept, rep = validate_bars(raw, source=str(path), session=session, calendar=calendar)
        kept_parts.append(kept)
        reports.append(rep)
        all_ts.append(raw["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64))
        all_rows.append(raw["source_row"].to_numpy())
    if len(paths) > 1:
        t = np.concatenate(all_ts)
        file_idx = np.concatenate([np.full(len(a), k) for k, a in enumerate(all_ts)])
        row = np.concatenate(all_rows)
        order = np.argsort(t, kind="stable")
        ts_sorted = t[order]
        dup = np.flatnonzero(ts_sorted[1:] == ts_sorted[:-1])
        if len(dup):
            a, b = order[dup[0]], order[dup[0] + 1]
            fa, fb = int(file_idx[a]), int(file_idx[b])
            stamp = pd.Timestamp(int(t[b]), tz="UTC")
            raise BarValidationError(
                str(paths[fb]), int(row[b]), "ts_unique", "ts",
                f"ts {stamp} for {symbol} also at {paths[fa]} row {int(row[a])}",
            )
    bars = pd.concat(kept_parts, ignore_index=True) if len(kept_parts) > 1 else kept_parts[0]
    if len(kept_parts) > 1:
        bars = bars.sort_values("ts", kind="stable").reset_index(drop=True)
    counts = {rule: sum(r.rule_counts.get(rule, 0) for r in reports) for rule in RULES}
    report = _report(", ".join(str(p) for p in paths), sum(r.rows for r in reports), bars, counts, calendar)
    return bars, report


# --------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------

_TIMEFRAMES: tuple[tuple[str, int], ...] = (
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("1d", 86400),
)


def infer_timeframe(ts: Any) -> str:
    """Bar size from the median spacing of the distinct, sorted timestamps.

    The median spacing must be within 10% of 1 minute, 5, 15 or 30 minutes, 1 hour or 1 day
    (daily bars stamped across a DST change are 23 or 25 h apart, weekends 72 h; the median is
    still 24 h).

    Args:
        ts: timestamps (anything ``pd.DatetimeIndex`` accepts; NaT ignored).

    Returns:
        One of ``"1m"``, ``"5m"``, ``"15m"``, ``"30m"``, ``"1h"``, ``"1d"``.

    Raises:
        ValueError: fewer than two distinct timestamps, or a median spacing matching none of
            the sizes above.
    """
    t = np.unique(_ts_ns(ts))
    t = t[t != np.iinfo(np.int64).min]
    if len(t) < 2:
        raise ValueError("need at least two distinct timestamps to infer a timeframe")
    median_s = float(np.median(np.diff(t))) / 1e9
    for label, seconds in _TIMEFRAMES:
        if abs(median_s - seconds) <= 0.1 * seconds:
            return label
    raise ValueError(f"median bar spacing {median_s:g} s matches none of {[x for x, _ in _TIMEFRAMES]}")


def bundled_sample_dir() -> Path:
    """Directory of the bundled Yahoo 5-minute sample (``admf_assets/sample_data/yahoo_5m_2025``).

    Holds ``SPY_5m.csv``, ``QQQ_5m.csv``, ``AAPL_5m.csv``, ``MSFT_5m.csv``, ``GLD_5m.csv``
    (2025-06-04 to 2025-08-28, with extended hours); provenance and quirks in
    ``admf_assets/sample_data/README.md``.
    """
    return Path(__file__).resolve().parent.parent / "sample_data" / "yahoo_5m_2025"
