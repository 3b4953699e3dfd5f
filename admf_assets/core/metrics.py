"""Performance metrics of strategy position traces (compiled kernels for the performance table,
NumPy / pandas for the regime and daily breakdowns).

Conventions follow ``../shared/docs/strategy-semantics.md`` ("Metric conventions"), made exact here:

Positions
    A strategy's positions arrive as :class:`~admf_assets.core.sparse.SparseRows` change rows
    (``val`` in ``-1/0/+1``). The value of a row holds from its bar until the next row of the same
    series; bars before a series' first row hold no position (0).

Fills and bar returns
    A position is filled at the close of the bar whose close produced the signal, so the position
    held at bar ``t`` earns the close-to-close return of bar ``t+1``::

        gross_t = pos_{t-1} * (close_t / close_{t-1} - 1)        (gross_0 = 0)

Costs
    Charged at the bar of every change of position, per unit of position traded, commission and
    slippage each in basis points per side (:class:`CostModel`)::

        cost_t = |pos_t - pos_{t-1}| * (commission_bps + slippage_bps) / 1e4    (pos_{-1} = 0)
        net_t  = gross_t - cost_t

    A flip (+1 -> -1) trades two units and pays two sides. ``total_commission`` and
    ``total_slippage`` are the sums of the two parts over all bars, as fractions of capital.

Equity
    The bar-level equity curve compounds bar returns from a starting equity of 1.0:
    ``equity_t = prod_{u <= t} (1 + net_u)``; ``total_return = equity_{T-1} - 1``.

Daily returns
    Bar returns compounded within each trading day (bars sharing a ``day`` code):
    ``r_d = prod_{t in d} (1 + net_t) - 1``. Every trading day of the bar series counts, including
    days on which the strategy is flat (return 0) or has not yet emitted a value.

Trades
    A trade opens on a change to a nonzero value and closes at the next change of the same series
    (a flip closes and reopens on the same bar). ``gross = side * (exit_px - entry_px) / entry_px``;
    ``net = gross - 2 * (commission_bps + slippage_bps) / 1e4`` (entry side plus exit side, each one
    unit). A trade still open at the end of data is not a closed trade: it is excluded from every
    trade statistic but its bars are part of the equity curve. A win is ``net > 0``, a loss
    ``net < 0`` (a trade with ``net == 0`` is neither).

Ratios (risk-free rate 0, annualization factor :data:`TRADING_DAYS_PER_YEAR`)
    * Sharpe ratio (Sharpe 1966, "Mutual Fund Performance"; Sharpe 1994, "The Sharpe Ratio"):
      ``mean(r_d) / std(r_d, ddof=1) * sqrt(252)`` on daily returns.
    * Sortino ratio (Sortino & van der Meer 1991, "Downside risk"): ``mean(r_d) / DD * sqrt(252)``
      with the downside deviation at target 0 taken over *all* days,
      ``DD = sqrt(mean(min(r_d, 0)^2))``.
    * Calmar ratio (Young 1991, "Calmar Ratio: A Smoother Tool"): annualized return / max drawdown,
      with annualized return ``(1 + total_return) ** (252 / n_days) - 1`` and ``n_days`` the number
      of trading days of the bar series.
    Undefined ratios are NaN, never ``inf``: fewer than 2 days, zero variance (daily returns equal
    up to the rounding noise :data:`RETURN_NOISE`: standard deviation <= 1e-14), no downside
    (downside deviation <= 1e-14, Sortino) or zero max drawdown (Calmar).

Every array-valued input is validated; malformed inputs raise :class:`ValueError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from admf_assets.core import kernels
from admf_assets.core.sparse import NO_VALUE, SparseRows

TRADING_DAYS_PER_YEAR = 252
"""Trading days per year used to annualize daily statistics (returns, volatility, Sharpe...)."""

_SQRT_YEAR = math.sqrt(TRADING_DAYS_PER_YEAR)
_BPS = 1e4

RETURN_NOISE = kernels.RETURN_NOISE
"""Dispersion of daily returns (fractions, 1e-14) below which a Sharpe or Sortino ratio is
undefined (NaN) and the volatility 0 (see :data:`admf_assets.core.kernels.RETURN_NOISE`)."""

METRIC_COLUMNS: tuple[str, ...] = (
    "total_return",
    "gross_total_return",
    "annualized_return",
    "volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "max_drawdown_idx",
    "calmar_ratio",
    "win_rate",
    "profit_factor",
    "total_trades",
    "winning_trades",
    "losing_trades",
    "avg_trade_return",
    "avg_trade_duration",
    "largest_win",
    "largest_loss",
    "gross_sharpe",
    "net_sharpe",
    "total_commission",
    "total_slippage",
    "signal_changes",
    "exposure",
)
"""Columns of :func:`compute_metrics`, in order.

* ``total_return``: net compounded return over the whole bar series (fraction).
* ``gross_total_return``: the same without costs.
* ``annualized_return``: ``(1 + total_return) ** (252 / n_days) - 1`` (NaN without days, or when the
  equity ends below 0). Over a few days the exponent magnifies any return enormously, so this and
  the Calmar ratio only rank strategies sensibly over samples of a month or more.
* ``volatility``: ``std(daily net returns, ddof=1) * sqrt(252)`` (NaN with fewer than 2 days).
* ``sharpe_ratio`` / ``net_sharpe`` (identical), ``gross_sharpe``: annualized Sharpe ratio of daily
  net / gross returns.
* ``sortino_ratio``: annualized Sortino ratio of daily net returns, target 0.
* ``max_drawdown``: largest peak-to-trough fall of the bar-level net equity, positive fraction
  (starting equity 1.0 counts as a peak; 0 when the equity never falls).
* ``max_drawdown_idx``: bar index of the trough of that drawdown (int64; -1 when the equity never
  falls below its running peak). When two troughs are equally deep in exact arithmetic (prices
  revisiting the same levels, common with tick-rounded prices), the last bits of the compounded
  equity decide which bar is reported, so it may differ from another implementation's; the depth
  agrees to about 1e-15.
* ``calmar_ratio``: ``annualized_return / max_drawdown`` (NaN when the drawdown is 0 or the
  annualized return is NaN).
* ``win_rate``: winning / closed trades (NaN without closed trades).
* ``profit_factor``: sum of winning net trade returns / |sum of losing net trade returns|
  (NaN without a losing trade; 0 with losses but no wins).
* ``total_trades``, ``winning_trades``, ``losing_trades``: counts of closed trades (int64).
* ``avg_trade_return``: mean net return of closed trades (fraction, NaN without trades).
* ``avg_trade_duration``: mean closed-trade duration in bars (``exit_idx - entry_idx``).
* ``largest_win``: largest net return among winning trades (NaN without wins).
* ``largest_loss``: most negative net return among losing trades, a *negative* fraction (NaN
  without losses).
* ``total_commission``, ``total_slippage``: summed cost parts, fractions of capital.
* ``signal_changes``: number of change rows of the series (int64).
* ``exposure``: fraction of bars ``t`` whose held position ``pos_t`` is nonzero (NaN when T = 0).
"""

_INT_COLUMNS = ("total_trades", "winning_trades", "losing_trades", "signal_changes", "max_drawdown_idx")

TRADE_COLUMNS: tuple[str, ...] = (
    "series",
    "entry_idx",
    "exit_idx",
    "side",
    "entry_px",
    "exit_px",
    "gross_return",
    "net_return",
    "duration_bars",
)
"""Columns of :func:`extract_trades`."""

REGIME_COLUMNS: tuple[str, ...] = (
    "series",
    "regime",
    "sharpe_ratio",
    "total_return",
    "win_rate",
    "trade_count",
    "avg_duration",
)
"""Columns of :func:`regime_metrics`."""

DAILY_COLUMNS: tuple[str, ...] = (
    "series",
    "day",
    "signal_changes",
    "trades_closed",
    "wins",
    "losses",
    "net_pnl",
    "avg_trade_return",
)
"""Columns of :func:`daily_breakdown`."""


@dataclass(frozen=True)
class CostModel:
    """Execution costs, each in basis points (1 bp = 1e-4) of traded notional per side.

    Attributes:
        commission_bps: commission per side, bps, finite and >= 0.
        slippage_bps: slippage per side, bps, finite and >= 0.

    Raises:
        ValueError: naming the field, when a value is not a finite number >= 0.
    """

    commission_bps: float = 0.5
    slippage_bps: float = 1.0

    def __post_init__(self) -> None:
        for name in ("commission_bps", "slippage_bps"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"CostModel.{name} must be a number (bps per side), got {value!r}") from None
            if not math.isfinite(number) or number < 0:
                raise ValueError(f"CostModel.{name} must be a finite number >= 0 (bps per side), got {value!r}")

    @property
    def per_side(self) -> float:
        """Total cost of one side per unit traded, as a fraction: ``(commission + slippage) / 1e4``."""
        return (float(self.commission_bps) + float(self.slippage_bps)) / _BPS

    @property
    def round_trip(self) -> float:
        """Cost of a closed trade (entry plus exit side), as a fraction: ``2 * per_side``."""
        return 2.0 * self.per_side


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_rows(rows: SparseRows) -> np.ndarray:
    """Validate ``rows``; return int64 (S+1,) row offsets (series s owns rows ``[o[s], o[s+1])``)."""
    n = len(rows)
    for name in ("series", "idx", "val"):
        arr = np.asarray(getattr(rows, name))
        if arr.shape != (n,):
            raise ValueError(f"SparseRows.{name} must have shape ({n},), got {arr.shape}")
    if rows.n_series < 0 or rows.n_bars < 0:
        raise ValueError("SparseRows.n_series and n_bars must be >= 0")
    row_start = np.zeros(rows.n_series + 1, dtype=np.int64)
    if n == 0:
        return row_start
    code, row = kernels.check_rows(
        np.ascontiguousarray(rows.series), np.ascontiguousarray(rows.idx), np.ascontiguousarray(rows.val),
        int(rows.n_series), int(rows.n_bars), row_start,
    )
    if code == 1:
        raise ValueError(f"row series outside [0, {rows.n_series}) (row {row})")
    if code == 2:
        raise ValueError(f"row idx outside [0, {rows.n_bars}) (row {row})")
    if code == 3:
        raise ValueError(f"sparse rows must be sorted by (series, idx) without duplicates (row {row})")
    if code == 4:
        raise ValueError(f"strategy row values must be -1, 0 or +1 (row {row})")
    return row_start


def _check_close(close: np.ndarray, n_bars: int) -> np.ndarray:
    close = np.asarray(close, dtype=np.float64)
    if close.shape != (n_bars,):
        raise ValueError(f"close must have shape ({n_bars},) (one close per bar), got {close.shape}")
    if n_bars and not (np.all(np.isfinite(close)) and np.all(close > 0)):
        raise ValueError("close prices must be finite and > 0")
    return close


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


def _close_returns(close: np.ndarray) -> np.ndarray:
    """Close-to-close bar returns (T,), ``r_0 = 0``."""
    ret = np.zeros(close.shape[0], dtype=np.float64)
    if close.shape[0] > 1:
        np.divide(close[1:], close[:-1], out=ret[1:])
        ret[1:] -= 1.0
    return ret



class _RowWalk(NamedTuple):
    """Validated inputs of the compiled walks over change rows (:mod:`admf_assets.core.kernels`)."""

    row_start: np.ndarray  # int64 (S+1,) row offsets of each series
    idx: np.ndarray  # int32 (R,)
    val: np.ndarray  # int8 (R,)
    close: np.ndarray  # float64 (T,)
    ret: np.ndarray  # float64 (T,) close-to-close returns, ret[0] = 0
    up: np.ndarray  # 1 + ret (a long's bar factor)
    down: np.ndarray  # 1 - ret (a short's bar factor)
    days: np.ndarray  # int64 (D,) distinct day codes in bar order
    starts: np.ndarray  # int64 (D,) first bar of each day
    day_start: np.ndarray  # int64 (D+1,) starts, then T


def _row_walk(rows: SparseRows, close: np.ndarray, day: np.ndarray, chunk_size: int) -> _RowWalk:
    """Check ``rows``, ``close``, ``day`` and ``chunk_size`` (ValueError naming the problem) and
    prepare the kernels' inputs."""
    row_start = _check_rows(rows)
    close = _check_close(close, rows.n_bars)
    days, starts, _ = _day_layout(day, rows.n_bars)
    _check_chunk(chunk_size)
    ret = _close_returns(close)
    return _RowWalk(
        row_start,
        np.ascontiguousarray(rows.idx, dtype=np.int32),
        np.ascontiguousarray(rows.val, dtype=np.int8),
        close,
        ret,
        1.0 + ret,
        1.0 - ret,
        days,
        starts,
        np.append(starts, rows.n_bars).astype(np.int64),
    )

def _closed_trades(rows: SparseRows, close: np.ndarray, round_trip: float) -> dict[str, np.ndarray]:
    """Closed trades of all series as arrays (see :func:`extract_trades`): one compiled pass over
    the rows (:func:`admf_assets.core.kernels.closed_trades_kernel`) finds the trades, the prices and
    returns are NumPy expressions (the operations of the reference in
    ``tests/core/reference_metrics.py``)."""
    series = np.ascontiguousarray(rows.series)
    idx = np.ascontiguousarray(rows.idx)
    val = np.ascontiguousarray(rows.val)
    none = np.empty(0, dtype=np.int64)
    n = kernels.closed_trades_kernel(series, idx, val, close, none, none, none, none, True)
    t_series, entry, exit_, side64 = (np.empty(n, dtype=np.int64) for _ in range(4))
    kernels.closed_trades_kernel(series, idx, val, close, t_series, entry, exit_, side64, False)
    side = side64.astype(np.int8)
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
        chunk_size: kept for compatibility (the compiled path needs no chunking), >= 1.

    Computed by :func:`admf_assets.core.kernels.daily_net_kernel` (one pass over the bars per
    series straight from the change rows, series spread over the cores; equal to the NumPy
    reference in ``tests/core/reference_metrics.py``).

    Returns:
        ``(days, returns)``: the unique day codes, int64 (D,), in bar order, and float64 (S, D)
        daily net returns as fractions.

    Raises:
        ValueError: on malformed rows, close or day arrays, or ``chunk_size < 1``.
    """
    w = _row_walk(rows, close, day, chunk_size)
    out = np.empty((rows.n_series, w.days.size), dtype=np.float64)
    with kernels.balanced():
        kernels.daily_net_kernel(w.row_start, w.idx, w.val, w.ret, w.up, w.down, w.day_start, costs.per_side, out)
    return w.days, out


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

    Computed by one compiled walk over each series' change rows and days
    (:func:`admf_assets.core.kernels.metric_kernel`, series spread over the cores; a stretch of
    bars holding one position costs O(1)) straight from the change rows: no dense position block
    and no ``(series x bars)`` temporary; memory is O(S + R + T log T). Sums over days use NumPy's
    pairwise order, so the figures equal those of the NumPy array-at-a-time reference kept in
    ``tests/core/reference_metrics.py`` (within 1e-9 relative: the kernel groups products by
    stretch, the reference multiplies bar by bar).

    Args:
        rows: change rows (``val`` in -1/0/+1), sorted by (series, idx), S series over T bars.
        close: float64 (T,) bar closes, finite and > 0.
        day: int64 (T,) nondecreasing trading-day codes (``n_days`` = number of distinct codes).
        costs: per-side commission and slippage in bps.
        chunk_size: kept for compatibility (the compiled path needs no chunking), >= 1.

    Returns:
        DataFrame indexed 0..S-1 (the series number) with :data:`METRIC_COLUMNS`; count columns
        (``total_trades``, ``winning_trades``, ``losing_trades``, ``signal_changes``) and the bar
        index ``max_drawdown_idx`` are int64,
        the rest float64 (returns, drawdown, costs and exposure as fractions; ratios annualized).

    Raises:
        ValueError: on malformed rows, close or day arrays, or ``chunk_size < 1``.
    """
    w = _row_walk(rows, close, day, chunk_size)
    n_series, n_days = rows.n_series, w.days.size
    commission = float(costs.commission_bps) / _BPS
    slippage = float(costs.slippage_bps) / _BPS
    f_out = np.empty((n_series, 16), dtype=np.float64)
    i_out = np.empty((n_series, 5), dtype=np.int64)
    with kernels.balanced():
        kernels.metric_kernel(
            w.row_start, w.idx, w.val, w.ret, w.close, w.day_start, costs.per_side, costs.round_trip, _SQRT_YEAR,
            f_out, i_out,
        )
    cols: dict[str, np.ndarray] = {
        "total_return": f_out[:, 0],
        "gross_total_return": f_out[:, 1],
        "volatility": f_out[:, 2],
        "sharpe_ratio": f_out[:, 3],
        "net_sharpe": f_out[:, 3].copy(),
        "sortino_ratio": f_out[:, 4],
        "max_drawdown": f_out[:, 5],
        "gross_sharpe": f_out[:, 6],
        "exposure": f_out[:, 7],
        "win_rate": f_out[:, 8],
        "profit_factor": f_out[:, 9],
        "avg_trade_return": f_out[:, 10],
        "avg_trade_duration": f_out[:, 11],
        "largest_win": f_out[:, 12],
        "largest_loss": f_out[:, 13],
        "max_drawdown_idx": i_out[:, 0],
        "total_trades": i_out[:, 1],
        "winning_trades": i_out[:, 2],
        "losing_trades": i_out[:, 3],
        "signal_changes": i_out[:, 4],
    }
    units_traded = f_out[:, 14]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = cols["total_return"]
        if n_days:
            # equity below 0 has no compound growth rate; an integer exponent would otherwise
            # turn it into a huge number of either sign (e.g. (1 - 3) ** 84)
            annual = np.where(
                total >= -1.0, np.power(1.0 + total, TRADING_DAYS_PER_YEAR / n_days) - 1.0, np.nan
            )
        else:
            annual = np.full(n_series, np.nan)
        cols["annualized_return"] = annual
        mdd = cols["max_drawdown"]
        cols["calmar_ratio"] = np.where(mdd > 0, annual / np.where(mdd > 0, mdd, 1.0), np.nan)
    cols["total_commission"] = units_traded * commission
    cols["total_slippage"] = units_traded * slippage

    # one int64 block and one float64 block, built once (a column-by-column astype cost 3 ms per
    # call, a sixth of a 500-strategy evaluation)
    cols = {name: np.asarray(cols[name], dtype=np.int64 if name in _INT_COLUMNS else np.float64) for name in METRIC_COLUMNS}
    return pd.DataFrame(cols, columns=list(METRIC_COLUMNS), index=pd.RangeIndex(n_series))


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
        chunk_size: kept for compatibility (the compiled path needs no chunking), >= 1.

    Computed by one compiled walk over each series' rows (:func:`admf_assets.core.kernels.regime_kernel`,
    series spread over the cores, no dense position block, O(regimes) per stretch of bars holding
    one position, trades on the same walk); it equals the NumPy reference in
    ``tests/core/reference_metrics.py`` within 1e-9 relative (counts exactly). Several
    classifiers over the same rows: :func:`regime_metrics_many` (one walk for all, the same
    figures bit for bit).

    Returns:
        DataFrame with :data:`REGIME_COLUMNS`, ordered by series then regime code; ``regime`` holds
        the label string.

    Raises:
        ValueError: on malformed rows, close, day or regimes (wrong shape, codes outside
            ``[0, len(labels))`` other than ``NO_VALUE``), or ``chunk_size < 1``.
    """
    return regime_metrics_many(rows, close, day, [regimes], [labels], costs, chunk_size)[0]


def regime_metrics_many(
    rows: SparseRows,
    close: np.ndarray,
    day: np.ndarray,
    regimes: Sequence[np.ndarray],
    labels: Sequence[Sequence[str]],
    costs: CostModel,
    chunk_size: int = 512,
) -> list[pd.DataFrame]:
    """:func:`regime_metrics` of the same rows under several classifiers, in one compiled walk
    over each series' rows (:func:`admf_assets.core.kernels.regime_kernel`): element ``k`` equals
    ``regime_metrics(rows, close, day, regimes[k], labels[k], costs)`` bit for bit, in a fifth
    less time than separate calls (three classifiers of 2 to 3 regimes, 5,000 strategies over a
    year: 0.28 to 0.31 s instead of 0.36 to 0.40 s): the walk over the rows, trades and days is
    shared, the per-regime work is not.

    Args:
        regimes: one int8 (T,) code array per classifier (as ``regimes`` of :func:`regime_metrics`).
        labels: one label sequence per classifier.
        (the others as :func:`regime_metrics`)

    Returns:
        One DataFrame per classifier, as :func:`regime_metrics` returns it.

    Raises:
        ValueError: as :func:`regime_metrics` (the message names the classifier's position when
            there are several), or when ``regimes`` and ``labels`` differ in length.
    """
    if len(regimes) != len(labels):
        raise ValueError(f"regimes and labels must pair up: {len(regimes)} code arrays, {len(labels)} label lists")
    w = _row_walk(rows, close, day, chunk_size)
    n_series = rows.n_series
    parts = [
        _regime_columns(codes, names, w.starts, rows.n_bars, f"classifier {k}: " if len(regimes) > 1 else "")
        for k, (codes, names) in enumerate(zip(regimes, labels))
    ]
    col_first = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p.present) for p in parts], out=col_first[1:])
    n_cols = int(col_first[-1])
    # global output columns: classifier k's regime columns follow those of classifiers 0..k-1
    bar_col = np.full((len(parts), rows.n_bars), -1, dtype=np.int64)
    entry_col = np.full((len(parts), rows.n_bars), -1, dtype=np.int64)
    for k, part in enumerate(parts):
        np.add(part.bar_col, col_first[k], out=bar_col[k], where=part.bar_col >= 0)
        np.add(part.entry_col, col_first[k], out=entry_col[k], where=part.entry_col >= 0)
    on_day = np.concatenate([p.on_day for p in parts]) if parts else np.zeros((0, w.starts.size), dtype=np.bool_)
    total = np.full((n_series, n_cols), np.nan)
    sharpe = np.full((n_series, n_cols), np.nan)
    count = np.zeros((n_series, n_cols), dtype=np.int64)
    wins = np.zeros((n_series, n_cols), dtype=np.int64)
    dur = np.zeros((n_series, n_cols), dtype=np.int64)
    if n_cols and n_series:
        with kernels.balanced():
            kernels.regime_kernel(
                w.row_start, w.idx, w.val, w.ret, w.close, w.up, w.down, w.day_start, bar_col, entry_col, col_first,
                on_day, costs.per_side, costs.round_trip, _SQRT_YEAR, total, sharpe, count, wins, dur,
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = np.where(count > 0, wins / np.maximum(count, 1), np.nan)
        avg_dur = np.where(count > 0, dur / np.maximum(count, 1), np.nan)
    out = []
    for k, part in enumerate(parts):
        cols = slice(col_first[k], col_first[k + 1])
        n_present = len(part.present)
        out.append(
            pd.DataFrame(
                {
                    "series": np.repeat(np.arange(n_series, dtype=np.int64), n_present),
                    "regime": np.tile(part.labels, n_series),
                    "sharpe_ratio": sharpe[:, cols].reshape(-1),
                    "total_return": total[:, cols].reshape(-1),
                    "win_rate": win_rate[:, cols].reshape(-1),
                    "trade_count": count[:, cols].reshape(-1),
                    "avg_duration": avg_dur[:, cols].reshape(-1),
                },
                columns=list(REGIME_COLUMNS),
            )
        )
    return out


@dataclass(frozen=True)
class _RegimeColumns:
    """One classifier's inputs of :func:`regime_kernel`, its own columns numbered from 0."""

    present: list[int]  # regime codes with at least one attributed bar, ascending
    labels: np.ndarray  # object (len(present),) their names
    bar_col: np.ndarray  # int64 (T,) column of each bar's attributed regime, -1 = none
    entry_col: np.ndarray  # int64 (T,) column of a trade entered at the bar, -1 = none
    on_day: np.ndarray  # bool (len(present), D) days holding a bar of each column


def _regime_columns(regimes: np.ndarray, labels: Sequence[str], starts: np.ndarray, n_bars: int, where: str) -> _RegimeColumns:
    """Validate one classifier's codes and build its kernel inputs (attribution rule of
    :func:`regime_metrics`); ``starts`` int64 (D,) first bar of each day.

    Raises:
        ValueError: wrong shape or dtype, or codes outside ``[0, len(labels))`` other than NO_VALUE
            (the message starts with ``where``)."""
    labels = [str(label) for label in labels]
    n_labels = len(labels)
    codes = np.asarray(regimes)
    if codes.shape != (n_bars,):
        raise ValueError(f"{where}regimes must have shape ({n_bars},) (one code per bar), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{where}regimes must hold integer codes, got dtype {codes.dtype}")
    codes = codes.astype(np.int64)
    known = codes != int(NO_VALUE)
    if np.any(known & ((codes < 0) | (codes >= n_labels))):
        raise ValueError(f"{where}regime codes must be in [0, {n_labels}) or NO_VALUE")

    attributed = np.empty(n_bars, dtype=np.int64)
    if n_bars:
        attributed[0] = codes[0]
        attributed[1:] = codes[:-1]
    present = [k for k in range(n_labels) if np.any(attributed == k)]
    n_present = len(present)
    # column of each bar's attributed regime (-1: unknown), days holding a bar of each column
    col_of_code = np.full(n_labels, -1, dtype=np.int64)
    col_of_code[present] = np.arange(n_present)
    bar_col = np.full(n_bars, -1, dtype=np.int64)
    in_range = (attributed >= 0) & (attributed < n_labels)
    bar_col[in_range] = col_of_code[attributed[in_range]]
    on_day = np.zeros((n_present, starts.size), dtype=np.bool_)
    for j, k in enumerate(present):
        on_day[j] = np.add.reduceat((attributed == k).astype(np.int64), starts) > 0  # present => T > 0
    entry_col = np.full(n_bars, -1, dtype=np.int64)
    known_code = (codes >= 0) & (codes < n_labels)
    entry_col[known_code] = col_of_code[codes[known_code]]
    return _RegimeColumns(present, np.array([labels[k] for k in present], dtype=object), bar_col, entry_col, on_day)


def daily_breakdown(
    rows: SparseRows,
    close: np.ndarray,
    day: np.ndarray,
    costs: CostModel,
    chunk_size: int = 512,
    *,
    only_days: Sequence[int] | None = None,
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
        chunk_size: kept for compatibility (the compiled path needs no chunking), >= 1.
        only_days: when given, only the rows of these day codes are returned (the same rows as
            filtering the full result, computed from those days' rows and bars only: a one-day
            summary neither builds S x D rows nor walks the whole history).

    Returns:
        DataFrame ordered by series then day.

    Raises:
        ValueError: on malformed rows, close or day arrays, or ``chunk_size < 1``.
    """
    if only_days is not None:
        return _daily_breakdown_of(rows, close, day, costs, chunk_size, only_days)
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
    return _daily_frame(n_series, days, changes, closed, wins, losses, daily.reshape(-1), sum_net)


def _daily_frame(n_series: int, days: np.ndarray, changes, closed, wins, losses, net_pnl, sum_net) -> pd.DataFrame:
    """The :data:`DAILY_COLUMNS` frame of ``n_series`` x ``days`` (series-major flat arrays of
    S * D values); ``avg_trade_return`` = ``sum_net / closed`` (NaN without closed trades)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.where(closed > 0, sum_net / np.maximum(closed, 1), np.nan)
    cols = {
        "series": np.repeat(np.arange(n_series, dtype=np.int64), days.size),
        "day": np.tile(days, n_series),
        "signal_changes": changes,
        "trades_closed": closed,
        "wins": wins,
        "losses": losses,
        "net_pnl": net_pnl,
        "avg_trade_return": avg,
    }
    return pd.DataFrame(cols, columns=list(DAILY_COLUMNS))


def _daily_breakdown_of(
    rows: SparseRows, close: np.ndarray, day: np.ndarray, costs: CostModel, chunk_size: int, only_days: Sequence[int]
) -> pd.DataFrame:
    """:func:`daily_breakdown` restricted to the day codes ``only_days``: one compiled pass per
    series over those days' rows and bars only (:func:`admf_assets.core.kernels.day_activity_kernel`,
    which carries the position and the open trade in from the rows before each day); the rows
    equal those of the whole computation filtered to the days."""
    w = _row_walk(rows, close, day, chunk_size)
    days = w.days
    wanted = np.flatnonzero(np.isin(days, np.asarray(list(only_days), dtype=np.int64))).astype(np.int64)
    n_series, n_wanted = rows.n_series, wanted.size
    i_out = np.zeros((n_series, n_wanted, 4), dtype=np.int64)
    f_out = np.zeros((n_series, n_wanted, 2), dtype=np.float64)
    if n_series and n_wanted:
        with kernels.balanced():
            kernels.day_activity_kernel(
                w.row_start, w.idx, w.val, w.ret, w.up, w.down, w.close, w.day_start, wanted, costs.per_side,
                costs.round_trip, i_out, f_out,
            )
    ints = i_out.reshape(-1, 4)
    floats = f_out.reshape(-1, 2)
    return _daily_frame(n_series, days[wanted], ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3], floats[:, 0], floats[:, 1])
