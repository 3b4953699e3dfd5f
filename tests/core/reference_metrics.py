"""Reference (tests only): the NumPy metrics the compiled :mod:`admf_assets.core.metrics` must
reproduce: the array-at-a-time implementation the package used before its numba kernels, kept
as it was. The conventions (positions, fills, costs, daily grouping, annualization) are those
documented in :mod:`admf_assets.core.metrics`; the constants, the column tuples, ``CostModel``
and the input checks are imported from there so that only the computations stand here.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from admf_assets.core.sparse import NO_VALUE, SparseRows, decode_dense

from admf_assets.core.metrics import (  # noqa: F401  (re-exported for the tests)
    DAILY_COLUMNS,
    METRIC_COLUMNS,
    REGIME_COLUMNS,
    TRADE_COLUMNS,
    RETURN_NOISE,
    TRADING_DAYS_PER_YEAR,
    _INT_COLUMNS,
    CostModel,
    _check_close,
    _check_rows,
)

_SQRT_YEAR = math.sqrt(TRADING_DAYS_PER_YEAR)
_BPS = 1e4


def _day_layout(day: np.ndarray, n_bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (day codes (D,), start bar of each day (D,), day index of each bar (T,))."""
    day = np.asarray(day)
    if day.shape != (n_bars,):
        raise ValueError(f"day must have shape ({n_bars},) (one trading-day code per bar), got {day.shape}")
    if not np.issubdtype(day.dtype, np.integer):
        raise ValueError(f"day must hold integer trading-day codes, got dtype {day.dtype}")
    day = day.astype(np.int64, copy=False)
    if n_bars == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.astype(np.intp), empty.astype(np.intp)
    step = np.diff(day)
    if np.any(step < 0):
        raise ValueError("day codes must be nondecreasing")
    new_day = np.empty(n_bars, dtype=bool)
    new_day[0] = True
    np.not_equal(step, 0, out=new_day[1:])
    starts = np.flatnonzero(new_day).astype(np.intp)
    bar_day = (np.cumsum(new_day) - 1).astype(np.intp)
    return day[starts], starts, bar_day


def _check_chunk(chunk_size: int) -> int:
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


# --------------------------------------------------------------------------------------------
# Array kernels
# --------------------------------------------------------------------------------------------


def _iter_positions(rows: SparseRows, chunk_size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(s0, s1, pos)`` with ``pos`` the int8 (s1-s0, T) held positions of series s0..s1-1."""
    n_series = rows.n_series
    for s0 in range(0, n_series, chunk_size):
        s1 = min(n_series, s0 + chunk_size)
        lo, hi = np.searchsorted(rows.series, [s0, s1], side="left")
        sub = SparseRows(
            series=(rows.series[lo:hi] - s0).astype(np.int32),
            idx=rows.idx[lo:hi],
            val=rows.val[lo:hi],
            n_series=s1 - s0,
            n_bars=rows.n_bars,
        )
        yield s0, s1, decode_dense(sub, missing=np.int8(0))


def _close_returns(close: np.ndarray) -> np.ndarray:
    """Close-to-close bar returns (T,), ``r_0 = 0``."""
    ret = np.zeros(close.shape[0], dtype=np.float64)
    if close.shape[0] > 1:
        np.divide(close[1:], close[:-1], out=ret[1:])
        ret[1:] -= 1.0
    return ret


def _gross_and_turnover(pos: np.ndarray, ret: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gross bar returns (C, T) float64 and units traded per bar (C, T) int8."""
    n, t = pos.shape
    gross = np.zeros((n, t), dtype=np.float64)
    turnover = np.empty((n, t), dtype=np.int8)
    if t:
        np.multiply(pos[:, :-1], ret[1:], out=gross[:, 1:])
        np.abs(pos[:, 0], out=turnover[:, 0])
        np.subtract(pos[:, 1:], pos[:, :-1], out=turnover[:, 1:])
        np.abs(turnover[:, 1:], out=turnover[:, 1:])
    return gross, turnover


def _net_returns(pos: np.ndarray, ret: np.ndarray, per_side: float) -> np.ndarray:
    gross, turnover = _gross_and_turnover(pos, ret)
    if per_side:
        gross -= turnover * per_side
    return gross


def _compound_daily(growth: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Daily returns (C, D) from per-bar growth factors ``1 + r`` (C, T)."""
    if starts.size == 0:
        return np.empty((growth.shape[0], 0), dtype=np.float64)
    daily = np.multiply.reduceat(growth, starts, axis=1)
    daily -= 1.0
    return daily


def _sharpe(daily: np.ndarray) -> np.ndarray:
    """Annualized Sharpe of each row of (C, D) daily returns; NaN if D < 2 or zero variance."""
    n, d = daily.shape
    out = np.full(n, np.nan)
    if d < 2:
        return out
    mean = daily.mean(axis=1)
    std = daily.std(axis=1, ddof=1)
    ok = (np.ptp(daily, axis=1) > 0) & (std > RETURN_NOISE) & np.isfinite(std)
    out[ok] = mean[ok] / std[ok] * _SQRT_YEAR
    return out


def _sortino(daily: np.ndarray) -> np.ndarray:
    """Annualized Sortino (target 0) of each row; NaN if D < 2 or no downside day."""
    n, d = daily.shape
    out = np.full(n, np.nan)
    if d < 2:
        return out
    mean = daily.mean(axis=1)
    downside = np.minimum(daily, 0.0)
    dd = np.sqrt(np.mean(downside * downside, axis=1))
    ok = (dd > RETURN_NOISE) & np.isfinite(dd)
    out[ok] = mean[ok] / dd[ok] * _SQRT_YEAR
    return out


def _volatility(daily: np.ndarray) -> np.ndarray:
    n, d = daily.shape
    if d < 2:
        return np.full(n, np.nan)
    vol = daily.std(axis=1, ddof=1) * _SQRT_YEAR
    vol[(np.ptp(daily, axis=1) == 0) | (daily.std(axis=1, ddof=1) <= RETURN_NOISE)] = 0.0
    return vol


def _closed_trades(rows: SparseRows, close: np.ndarray, round_trip: float) -> dict[str, np.ndarray]:
    """Closed trades of all series as arrays (see :func:`extract_trades`)."""
    series = np.asarray(rows.series).astype(np.int64)
    idx = np.asarray(rows.idx).astype(np.int64)
    val = np.asarray(rows.val).astype(np.int8)
    if series.size:
        # A row repeating the previous row's value of the same series is not a change.
        redundant = np.zeros(series.size, dtype=bool)
        redundant[1:] = (series[1:] == series[:-1]) & (val[1:] == val[:-1])
        if redundant.any():
            keep = ~redundant
            series, idx, val = series[keep], idx[keep], val[keep]
    if series.size > 1:
        opens = (val[:-1] != 0) & (series[1:] == series[:-1])
    else:
        opens = np.zeros(0, dtype=bool)
    t_series = series[:-1][opens]
    entry = idx[:-1][opens]
    exit_ = idx[1:][opens]
    side = val[:-1][opens]
    entry_px = close[entry]
    exit_px = close[exit_]
    gross = side * (exit_px - entry_px) / entry_px
    return {
        "series": t_series,
        "entry_idx": entry,
        "exit_idx": exit_,
        "side": side,
        "entry_px": entry_px,
        "exit_px": exit_px,
        "gross_return": gross,
        "net_return": gross - round_trip,
        "duration_bars": exit_ - entry,
    }


def _trade_stats(trades: dict[str, np.ndarray], n_series: int) -> dict[str, np.ndarray]:
    """Per-series trade statistics (S,) from closed-trade arrays."""
    ts = trades["series"]
    net = trades["net_return"]
    win = net > 0
    loss = net < 0
    n = np.bincount(ts, minlength=n_series).astype(np.int64)
    nw = np.bincount(ts[win], minlength=n_series).astype(np.int64)
    nl = np.bincount(ts[loss], minlength=n_series).astype(np.int64)
    sum_net = np.bincount(ts, weights=net, minlength=n_series)
    sum_win = np.bincount(ts[win], weights=net[win], minlength=n_series)
    sum_loss = np.bincount(ts[loss], weights=net[loss], minlength=n_series)
    dur = np.bincount(ts, weights=trades["duration_bars"].astype(np.float64), minlength=n_series)
    largest_win = np.full(n_series, -np.inf)
    np.maximum.at(largest_win, ts[win], net[win])
    largest_loss = np.full(n_series, np.inf)
    np.minimum.at(largest_loss, ts[loss], net[loss])
    has = n > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = np.where(has, nw / np.maximum(n, 1), np.nan)
        avg_ret = np.where(has, sum_net / np.maximum(n, 1), np.nan)
        avg_dur = np.where(has, dur / np.maximum(n, 1), np.nan)
        pf = np.where(nl > 0, sum_win / np.where(nl > 0, -sum_loss, 1.0), np.nan)
    return {
        "win_rate": win_rate,
        "profit_factor": pf,
        "total_trades": n,
        "winning_trades": nw,
        "losing_trades": nl,
        "avg_trade_return": avg_ret,
        "avg_trade_duration": avg_dur,
        "largest_win": np.where(nw > 0, largest_win, np.nan),
        "largest_loss": np.where(nl > 0, largest_loss, np.nan),
    }


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def extract_trades(rows: SparseRows, close: np.ndarray, costs: CostModel) -> pd.DataFrame:
    """Closed trades of every series, vectorized over change rows.

    A trade opens at a row with a nonzero value and closes at the next row of the same series (a
    flip row closes one trade and opens the next on the same bar). The last open trade of a series
    (no following row) is still open at end of data and is *not* returned. A row repeating the
    previous row's value of its series is not a change and is skipped.

    Args:
        rows: change rows (``val`` in -1/0/+1), sorted by (series, idx).
        close: float64 (T,) bar closes, finite and > 0; fills happen at these closes.
        costs: per-side costs; each trade pays two sides (entry and exit), one unit each.

    Returns:
        DataFrame with :data:`TRADE_COLUMNS`, one row per closed trade ordered by series then
        entry bar: ``series`` (int64), ``entry_idx``/``exit_idx`` (int64 bar indices), ``side``
        (int8, +1 long / -1 short), ``entry_px``/``exit_px`` (float64 closes),
        ``gross_return = side * (exit_px - entry_px) / entry_px`` (fraction),
        ``net_return = gross_return - 2 * costs.per_side`` (fraction) and
        ``duration_bars = exit_idx - entry_idx`` (int64).

    Raises:
        ValueError: on malformed rows (unsorted, out of range, values outside -1/0/+1) or a
            ``close`` whose shape is not (T,) or holding non-finite / non-positive prices.
    """
    _check_rows(rows)
    close = _check_close(close, rows.n_bars)
    trades = _closed_trades(rows, close, costs.round_trip)
    return pd.DataFrame({name: trades[name] for name in TRADE_COLUMNS}, columns=list(TRADE_COLUMNS))


def daily_net_returns(
    rows: SparseRows,
    close: np.ndarray,
    day: np.ndarray,
    costs: CostModel,
    chunk_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Daily compounded net returns of every series.

    ``r[s, d] = prod_{t in day d} (1 + net[s, t]) - 1`` with ``net`` the bar net returns of the module
    conventions (fill at the signal bar's close, costs at the bar of each change).

    Args:
        rows: change rows (``val`` in -1/0/+1), sorted by (series, idx).
        close: float64 (T,) bar closes, finite and > 0.
        day: int64 (T,) nondecreasing trading-day codes; bars of one trading day share a code.
        costs: per-side costs in bps.
        chunk_size: series processed together (temporaries are about ``chunk_size * T`` floats).

    Returns:
        ``(days, returns)``: the unique day codes, int64 (D,), in bar order, and float64 (S, D)
        daily net returns as fractions.

    Raises:
        ValueError: on malformed rows, close or day arrays, or ``chunk_size < 1``.
    """
    _check_rows(rows)
    close = _check_close(close, rows.n_bars)
    days, starts, _ = _day_layout(day, rows.n_bars)
    chunk_size = _check_chunk(chunk_size)
    ret = _close_returns(close)
    per_side = costs.per_side
    out = np.empty((rows.n_series, days.size), dtype=np.float64)
    for s0, s1, pos in _iter_positions(rows, chunk_size):
        net = _net_returns(pos, ret, per_side)
        net += 1.0
        out[s0:s1] = _compound_daily(net, starts)
    return days, out


def compute_metrics(
    rows: SparseRows,
    close: np.ndarray,
    day: np.ndarray,
    costs: CostModel,
    chunk_size: int = 512,
) -> pd.DataFrame:
    """Performance metrics of every series, one row per series.

    Implements the module conventions (see the module docstring and :data:`METRIC_COLUMNS`): bar
    returns ``gross_t = pos_{t-1} * (close_t / close_{t-1} - 1)``, costs
    ``|pos_t - pos_{t-1}| * (commission_bps + slippage_bps) / 1e4`` at the bar of the change,
    compounded equity from 1.0, daily compounding for Sharpe (Sharpe 1966/1994) and Sortino
    (Sortino & van der Meer 1991, target 0, downside over all days) annualized with sqrt(252),
    Calmar (Young 1991) with ``(1 + total_return) ** (252 / n_days) - 1``, trade statistics over
    closed trades only. Undefined ratios are NaN, never inf. A series with no rows is flat:
    total return 0, no trades, NaN Sharpe/Sortino/Calmar.

    The series are processed ``chunk_size`` at a time, vectorized over series and bars, so that
    temporaries stay about ``chunk_size * T`` float64 values; results do not depend on it.

    Args:
        rows: change rows (``val`` in -1/0/+1), sorted by (series, idx), S series over T bars.
        close: float64 (T,) bar closes, finite and > 0.
        day: int64 (T,) nondecreasing trading-day codes (``n_days`` = number of distinct codes).
        costs: per-side commission and slippage in bps.
        chunk_size: number of series per chunk, >= 1.

    Returns:
        DataFrame indexed 0..S-1 (the series number) with :data:`METRIC_COLUMNS`; count columns
        (``total_trades``, ``winning_trades``, ``losing_trades``, ``signal_changes``) and the bar
        index ``max_drawdown_idx`` are int64,
        the rest float64 (returns, drawdown, costs and exposure as fractions; ratios annualized).

    Raises:
        ValueError: on malformed rows, close or day arrays, or ``chunk_size < 1``.
    """
    _check_rows(rows)
    close = _check_close(close, rows.n_bars)
    days, starts, _ = _day_layout(day, rows.n_bars)
    chunk_size = _check_chunk(chunk_size)
    n_series, n_bars, n_days = rows.n_series, rows.n_bars, days.size
    ret = _close_returns(close)
    per_side = costs.per_side
    commission = float(costs.commission_bps) / _BPS
    slippage = float(costs.slippage_bps) / _BPS

    cols: dict[str, np.ndarray] = {name: np.full(n_series, np.nan) for name in METRIC_COLUMNS}
    units_traded = np.zeros(n_series, dtype=np.int64)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s0, s1, pos in _iter_positions(rows, chunk_size):
            gross, turnover = _gross_and_turnover(pos, ret)
            units_traded[s0:s1] = turnover.sum(axis=1, dtype=np.int64)
            cols["exposure"][s0:s1] = (
                np.count_nonzero(pos, axis=1) / n_bars if n_bars else np.nan
            )
            del pos
            net = gross - turnover * per_side if per_side else gross.copy()
            del turnover

            # Gross figures (costs ignored).
            gross += 1.0
            cols["gross_total_return"][s0:s1] = np.prod(gross, axis=1) - 1.0
            cols["gross_sharpe"][s0:s1] = _sharpe(_compound_daily(gross, starts))
            del gross

            # Net figures.
            net += 1.0
            cols["total_return"][s0:s1] = np.prod(net, axis=1) - 1.0
            daily = _compound_daily(net, starts)
            sharpe = _sharpe(daily)
            cols["sharpe_ratio"][s0:s1] = sharpe
            cols["net_sharpe"][s0:s1] = sharpe
            cols["sortino_ratio"][s0:s1] = _sortino(daily)
            cols["volatility"][s0:s1] = _volatility(daily)
            del daily

            # Max drawdown of the bar-level equity; starting equity 1.0 counts as a peak.
            if n_bars:
                equity = np.cumprod(net, axis=1, out=net)
                peak = np.maximum.accumulate(equity, axis=1)
                np.maximum(peak, 1.0, out=peak)
                np.divide(equity, peak, out=peak)
                trough = peak.argmin(axis=1)
                depth = 1.0 - peak[np.arange(peak.shape[0]), trough]
                cols["max_drawdown"][s0:s1] = np.maximum(depth, 0.0)
                cols["max_drawdown_idx"][s0:s1] = np.where(depth > 0.0, trough, -1)
                del peak, equity
            else:
                cols["max_drawdown"][s0:s1] = 0.0
                cols["max_drawdown_idx"][s0:s1] = -1
            del net

        total = cols["total_return"]
        if n_days:
            annual = np.power(1.0 + total, TRADING_DAYS_PER_YEAR / n_days) - 1.0
            annual[1.0 + total < 0] = np.nan  # no growth rate for equity below 0
        else:
            annual = np.full(n_series, np.nan)
        cols["annualized_return"] = annual
        mdd = cols["max_drawdown"]
        cols["calmar_ratio"] = np.where(mdd > 0, annual / np.where(mdd > 0, mdd, 1.0), np.nan)

    cols["total_commission"] = units_traded * commission
    cols["total_slippage"] = units_traded * slippage
    cols["signal_changes"] = rows.counts()

    trades = _closed_trades(rows, close, costs.round_trip)
    cols.update(_trade_stats(trades, n_series))

    frame = pd.DataFrame(cols, columns=list(METRIC_COLUMNS), index=pd.RangeIndex(n_series))
    for name in _INT_COLUMNS:
        frame[name] = frame[name].astype(np.int64)
    for name in METRIC_COLUMNS:
        if name not in _INT_COLUMNS:
            frame[name] = frame[name].astype(np.float64)
    return frame


def regime_metrics(
    rows: SparseRows,
    close: np.ndarray,
    day: np.ndarray,
    regimes: np.ndarray,
    labels: Sequence[str],
    costs: CostModel,
    chunk_size: int = 512,
) -> pd.DataFrame:
    """Per-regime performance of every series (long format).

    Attribution rule:

    * **Bar returns**: the net return of bar ``t`` (``pos_{t-1}`` times the bar's close return,
      minus the cost of the change at ``t``) belongs to the regime in force at bar ``t-1``, when the
      position earning it was taken. Bar 0 (which can only carry the cost of an initial position)
      has no previous bar and belongs to the regime at bar 0. Bars whose attributed regime is
      unknown (:data:`~admf_assets.core.sparse.NO_VALUE`) belong to no regime. When no bar's
      attributed regime is unknown, ``prod_k (1 + total_return_k) == 1 + total_return`` of :func:`compute_metrics`.
    * **Trades**: a closed trade belongs to the regime at its entry bar (trades entered in an
      unknown regime belong to none), so the regimes' ``trade_count`` sum to at most
      ``total_trades``.

    Per (series, regime):

    * ``total_return``: ``prod(1 + net_t) - 1`` over the bars attributed to the regime (fraction).
    * ``sharpe_ratio``: annualized Sharpe (sqrt(252), Sharpe 1966/1994) of the daily-compounded,
      regime-masked net returns (bars of other regimes contribute 0) over the days on which at
      least one bar is attributed to the regime; NaN with fewer than 2 such days or zero variance.
    * ``win_rate``: winning (net > 0) / closed trades entered in the regime (NaN without trades).
    * ``trade_count``: closed trades entered in the regime (int64).
    * ``avg_duration``: mean duration in bars of those trades (NaN without trades).

    Pairs are omitted when no bar is attributed to the regime (since regimes are shared by all
    series, such a regime is omitted for every series).

    Args:
        rows: change rows (``val`` in -1/0/+1), sorted by (series, idx).
        close: float64 (T,) bar closes, finite and > 0.
        day: int64 (T,) nondecreasing trading-day codes.
        regimes: int8 (T,) regime code per bar, indices into ``labels``, or ``NO_VALUE`` (unknown).
        labels: regime names; code ``k`` is ``labels[k]``.
        costs: per-side costs in bps.
        chunk_size: series per chunk, >= 1.

    Returns:
        DataFrame with :data:`REGIME_COLUMNS`, ordered by series then regime code; ``regime`` holds
        the label string.

    Raises:
        ValueError: on malformed rows, close, day or regimes (wrong shape, codes outside
            ``[0, len(labels))`` other than ``NO_VALUE``), or ``chunk_size < 1``.
    """
    _check_rows(rows)
    close = _check_close(close, rows.n_bars)
    _, starts, _ = _day_layout(day, rows.n_bars)
    chunk_size = _check_chunk(chunk_size)
    n_series, n_bars = rows.n_series, rows.n_bars
    labels = [str(label) for label in labels]
    n_labels = len(labels)
    codes = np.asarray(regimes)
    if codes.shape != (n_bars,):
        raise ValueError(f"regimes must have shape ({n_bars},) (one code per bar), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"regimes must hold integer codes, got dtype {codes.dtype}")
    codes = codes.astype(np.int64)
    known = codes != int(NO_VALUE)
    if np.any(known & ((codes < 0) | (codes >= n_labels))):
        raise ValueError(f"regime codes must be in [0, {n_labels}) or NO_VALUE")

    attributed = np.empty(n_bars, dtype=np.int64)
    if n_bars:
        attributed[0] = codes[0]
        attributed[1:] = codes[:-1]
    present = [k for k in range(n_labels) if np.any(attributed == k)]
    n_present = len(present)

    ret = _close_returns(close)
    per_side = costs.per_side
    total = np.full((n_series, n_present), np.nan)
    sharpe = np.full((n_series, n_present), np.nan)
    masks = [attributed == k for k in present]
    day_masks = [np.add.reduceat(m.astype(np.int64), starts) > 0 for m in masks]  # present => T > 0
    for s0, s1, pos in _iter_positions(rows, chunk_size):
        growth = _net_returns(pos, ret, per_side)
        growth += 1.0
        for j, (mask, on_day) in enumerate(zip(masks, day_masks)):
            masked = np.where(mask, growth, 1.0)
            total[s0:s1, j] = np.prod(masked, axis=1) - 1.0
            daily = _compound_daily(masked, starts)[:, on_day]
            sharpe[s0:s1, j] = _sharpe(daily)

    trades = _closed_trades(rows, close, costs.round_trip)
    entry_code = codes[trades["entry_idx"]] if n_bars else np.zeros(0, np.int64)
    col_of_code = np.full(n_labels, -1, dtype=np.int64)
    col_of_code[present] = np.arange(n_present)
    t_col = np.full(entry_code.size, -1, dtype=np.int64)
    valid = (entry_code >= 0) & (entry_code < n_labels)
    t_col[valid] = col_of_code[entry_code[valid]]
    keep = t_col >= 0
    key = trades["series"][keep] * n_present + t_col[keep]
    size = n_series * n_present
    net = trades["net_return"][keep]
    count = np.bincount(key, minlength=size).astype(np.int64).reshape(n_series, n_present)
    wins = np.bincount(key[net > 0], minlength=size).reshape(n_series, n_present)
    dur = np.bincount(key, weights=trades["duration_bars"][keep].astype(np.float64), minlength=size)
    dur = dur.reshape(n_series, n_present)
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = np.where(count > 0, wins / np.maximum(count, 1), np.nan)
        avg_dur = np.where(count > 0, dur / np.maximum(count, 1), np.nan)

    label_arr = np.array([labels[k] for k in present], dtype=object)
    return pd.DataFrame(
        {
            "series": np.repeat(np.arange(n_series, dtype=np.int64), n_present),
            "regime": np.tile(label_arr, n_series),
            "sharpe_ratio": sharpe.reshape(-1),
            "total_return": total.reshape(-1),
            "win_rate": win_rate.reshape(-1),
            "trade_count": count.reshape(-1),
            "avg_duration": avg_dur.reshape(-1),
        },
        columns=list(REGIME_COLUMNS),
    )


def daily_breakdown(
    rows: SparseRows,
    close: np.ndarray,
    day: np.ndarray,
    costs: CostModel,
    chunk_size: int = 512,
) -> pd.DataFrame:
    """Per-day activity and P&L of every series, one row per series x trading day.

    Columns (:data:`DAILY_COLUMNS`):

    * ``series`` (int64), ``day`` (int64 day code).
    * ``signal_changes``: change rows whose bar falls on that day (int64; sums to
      ``compute_metrics(...).signal_changes``).
    * ``trades_closed``: closed trades whose exit bar falls on that day (int64); ``wins`` /
      ``losses``: those with net return > 0 / < 0 (int64).
    * ``net_pnl``: that day's compounded net return ``prod(1 + net_t) - 1`` (fraction), so that
      ``prod_d (1 + net_pnl) - 1 == total_return``.
    * ``avg_trade_return``: mean net return of the trades closed that day (NaN when none).

    Args:
        rows: change rows (``val`` in -1/0/+1), sorted by (series, idx).
        close: float64 (T,) bar closes, finite and > 0.
        day: int64 (T,) nondecreasing trading-day codes.
        costs: per-side costs in bps.
        chunk_size: series per chunk for the daily returns, >= 1.

    Returns:
        DataFrame ordered by series then day.

    Raises:
        ValueError: on malformed rows, close or day arrays, or ``chunk_size < 1``.
    """
    days, daily = daily_net_returns(rows, close, day, costs, chunk_size=chunk_size)
    _, _, bar_day = _day_layout(day, rows.n_bars)
    close = _check_close(close, rows.n_bars)
    n_series, n_days = rows.n_series, days.size
    size = n_series * n_days

    row_key = rows.series.astype(np.int64) * n_days + bar_day[rows.idx]
    changes = np.bincount(row_key, minlength=size).astype(np.int64)

    trades = _closed_trades(rows, close, costs.round_trip)
    net = trades["net_return"]
    key = trades["series"] * n_days + bar_day[trades["exit_idx"]]
    closed = np.bincount(key, minlength=size).astype(np.int64)
    wins = np.bincount(key[net > 0], minlength=size).astype(np.int64)
    losses = np.bincount(key[net < 0], minlength=size).astype(np.int64)
    sum_net = np.bincount(key, weights=net, minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.where(closed > 0, sum_net / np.maximum(closed, 1), np.nan)

    return pd.DataFrame(
        {
            "series": np.repeat(np.arange(n_series, dtype=np.int64), n_days),
            "day": np.tile(days, n_series),
            "signal_changes": changes,
            "trades_closed": closed,
            "wins": wins,
            "losses": losses,
            "net_pnl": daily.reshape(-1),
            "avg_trade_return": avg,
        },
        columns=list(DAILY_COLUMNS),
    )
