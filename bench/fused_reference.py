"""Fused reference for the MA-crossover grid: one pass over the bars per strategy, nine metrics.

A benchmark reference, not product code: nothing in ``admf_assets`` imports it. It is the
"fused one-pass-per-strategy numba loop for MA crossovers with nine metrics" that the performance
issue quotes for scale (about 15,600 strategies/s on one core and 17,700 on two on the issue's
machine class, the SPY 5-minute year), written the straightforward way rather than an optimized
one, so that its figure on the machine under the benchmark calibrates that machine against the
issue's. ``bench/grid_throughput.py`` times it next to this package, plain NumPy and vectorbt,
and checks its metrics against :func:`admf_assets.core.metrics.compute_metrics`
(``tests/bench/test_fused_reference.py`` does the same on the bundled sample).

Design: the cumulative sum of the closes is computed once per call; then, for each strategy (a
``prange`` over strategies, so the number of threads is whatever ``numba.set_num_threads`` says in
the caller), one loop over the bars derives the position from SMA(fast) vs SMA(slow), applies the
costs, compounds the equity and accumulates the nine metrics in scalars. No ``(strategies x bars)``
array and no per-strategy array is built.

Conventions: those of the package (``admf_assets/core/metrics.py``, ``kernels.metric_kernel``,
``core/strategies.py``, ``../shared/docs/strategy-semantics.md``):

* position of ``ma_crossover(fast, slow)`` at bar ``t``: +1 if SMA(fast)_t > SMA(slow)_t, otherwise
  -1 (an exact tie is -1; never flat once both averages exist); 0 (no position) on the warm-up
  bars ``t < max(fast, slow) - 1``. SMA(n)_t = (C[t+1] - C[t+1-n]) / n with ``C`` the cumulative
  sum of the closes (``C[0] = 0``), exactly as ``numpy_ma_crossover`` computes it. The package's
  rolling means are Kahan-summed pandas-exact means instead; both agree to the last bits, so the
  sides differ only on exact ties SMA(fast) == SMA(slow) (flat stretches of price), where the
  last bit decides;
* the position of bar ``t`` is filled at close ``t`` and earns the close-to-close return of bar
  ``t+1``: ``gross_t = pos_{t-1} * (close_t / close_{t-1} - 1)`` (``gross_0 = 0``);
* costs: ``|pos_t - pos_{t-1}| * per_side`` charged on the equity at bar ``t``, with ``per_side =
  (commission_bps + slippage_bps) / 1e4`` a fraction per unit of position traded (a flip +1 -> -1
  trades two units; the first position after warm-up trades one);
  ``net_t = gross_t - cost_t``; equity ``prod_{u <= t} (1 + net_u)`` from 1.0 (a short is
  rebalanced to -1 x equity every bar);
* daily returns: the bar factors compounded within each trading day (bars sharing a ``day``
  code), ``r_d = prod_{t in d} (1 + net_t) - 1``, over *every* trading day of the bars, including
  the warm-up days (return 0);
* closed trades: a trade opens at a change to a nonzero position and closes at the next change
  (a flip closes and reopens on the same bar); ``net = side * (exit_px - entry_px) / entry_px -
  2 * per_side``; a trade still open at the end of the data is not a closed trade. A win is
  ``net > 0``, a loss ``net < 0``.

The nine metrics (names and definitions of :data:`admf_assets.core.metrics.METRIC_COLUMNS`):

=================  ==========================================================================
total_return       ``equity_{T-1} - 1`` after costs (fraction)
sharpe_ratio       ``mean(r_d) / std(r_d, ddof=1) * sqrt(252)``; NaN with fewer than 2 days or
                   when the daily returns do not disperse (max == min, or std <= 1e-14)
sortino_ratio      ``mean(r_d) / sqrt(mean(min(r_d, 0)^2)) * sqrt(252)`` (target 0, downside over
                   all days); NaN with fewer than 2 days or downside deviation <= 1e-14
volatility         ``std(r_d, ddof=1) * sqrt(252)``; NaN with fewer than 2 days, 0 when the daily
                   returns do not disperse (as above)
max_drawdown       ``1 - min_t(equity_t / max(1, max_{u <= t} equity_u))`` (positive fraction of
                   the bar-level equity; the starting 1.0 counts as a peak; 0 if never below)
total_trades       closed trades (int64)
win_rate           wins / closed trades (NaN without closed trades)
profit_factor      sum of winning net trade returns / |sum of losing ones| (NaN without a loss,
                   0 with losses but no wins)
avg_trade_return   mean net return of the closed trades (fraction; NaN without closed trades)
=================  ==========================================================================

The daily mean is a running sum divided by the number of days and the variance comes from
Welford's one-pass update, where the package uses NumPy's two-pass pairwise sums over a stored
array of daily returns, and the equity is compounded bar by bar where the package multiplies
day-local prefix products per stretch of bars; the figures agree to about 1e-13 relative on real
bars (the checks use 1e-9). Only a Sharpe or Sortino ratio of a mean daily return near 0 (a total
return of order 1e-6) can differ by more in relative terms, since each ``r_d = prod - 1`` carries
an absolute rounding of about 1e-16 in either implementation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["METRICS", "RETURN_NOISE", "fused_ma_crossover", "fused_kernel", "side_differences"]

METRICS: tuple[str, ...] = (
    "total_return",
    "sharpe_ratio",
    "sortino_ratio",
    "volatility",
    "max_drawdown",
    "total_trades",
    "win_rate",
    "profit_factor",
    "avg_trade_return",
)
"""The nine metrics, in the order of :func:`fused_ma_crossover`'s result (names of
``admf_assets.core.metrics.METRIC_COLUMNS``)."""

RETURN_NOISE = 1e-14
"""Dispersion of daily returns (fractions) at or below which the Sharpe / Sortino ratio is NaN
and the volatility 0, as ``admf_assets.core.kernels.RETURN_NOISE``."""

_F_COLS = ("total_return", "sharpe_ratio", "sortino_ratio", "volatility", "max_drawdown", "win_rate",
           "profit_factor", "avg_trade_return")


@njit(inline="always")
def _close_cumsum(close):  # pragma: no cover - compiled
    """C[0] = 0, C[t + 1] = close[0] + ... + close[t] (float64 (T + 1,))."""
    csum = np.empty(close.shape[0] + 1)
    csum[0] = 0.0
    for t in range(close.shape[0]):
        csum[t + 1] = csum[t] + close[t]
    return csum


@njit(inline="always")
def _position(csum, t, nf, ns):  # pragma: no cover - compiled
    """Position of ``ma_crossover(nf, ns)`` at bar ``t``: +1 if SMA(nf) > SMA(ns), else -1 (a tie
    is -1); 0 during the warm-up ``t < max(nf, ns) - 1``."""
    if t < max(nf, ns) - 1:
        return 0
    f = (csum[t + 1] - csum[t + 1 - nf]) / nf
    sl = (csum[t + 1] - csum[t + 1 - ns]) / ns
    return 1 if f > sl else -1


@njit(parallel=True, error_model="numpy")
def fused_kernel(close, day, fast, slow, per_side, sqrt_year, f_out, n_trades):  # pragma: no cover - compiled
    """Nine metrics of S MA-crossover strategies over T bars, one pass over the bars each.

    Args:
        close: float64 (T,) closes, finite and > 0.
        day: int64 (T,) nondecreasing trading-day codes.
        fast, slow: int64 (S,) SMA periods (bars, >= 1).
        per_side: cost per side per unit of position traded, a fraction (bps / 1e4).
        sqrt_year: annualization factor of the daily ratios, sqrt(252).
        f_out: float64 (S, 8) output, columns total_return, sharpe_ratio, sortino_ratio,
            volatility, max_drawdown, win_rate, profit_factor, avg_trade_return.
        n_trades: int64 (S,) output, closed trades.
    """
    t_len = close.shape[0]
    csum = _close_cumsum(close)
    round_trip = 2.0 * per_side
    nan = np.nan
    for s in prange(fast.shape[0]):
        nf = fast[s]
        ns = slow[s]
        pos = 0
        eq = 1.0
        peak = 1.0
        worst = 1.0  # min of equity / peak
        dn = 1.0  # today's compounded factor
        n_days = 0
        sum_d = 0.0  # sum of daily returns
        w_mean = 0.0  # Welford running mean and sum of squared deviations
        w_m2 = 0.0
        d_lo = np.inf
        d_hi = -np.inf
        down_sq = 0.0  # sum of min(r_d, 0)^2
        trades = 0
        wins = 0
        losses = 0
        sum_net = 0.0
        sum_win = 0.0
        sum_loss = 0.0
        entry_px = 0.0
        for t in range(t_len):
            newpos = _position(csum, t, nf, ns)
            # bar return of the position held since the previous close, minus the costs of the change
            g = pos * (close[t] / close[t - 1] - 1.0) if t > 0 else 0.0
            turn = abs(newpos - pos)
            factor = (g - turn * per_side) + 1.0
            eq *= factor
            dn *= factor
            if eq > peak:
                peak = eq
            else:
                ratio = eq / peak
                if ratio < worst:
                    worst = ratio
            if turn != 0:  # close the open trade at this close, open the next one
                if pos != 0:
                    net = pos * (close[t] - entry_px) / entry_px - round_trip
                    trades += 1
                    sum_net += net
                    if net > 0:
                        wins += 1
                        sum_win += net
                    elif net < 0:
                        losses += 1
                        sum_loss += net
                entry_px = close[t]
            pos = newpos
            if t == t_len - 1 or day[t + 1] != day[t]:  # the day's return
                r = dn - 1.0
                dn = 1.0
                n_days += 1
                sum_d += r
                delta = r - w_mean
                w_mean += delta / n_days
                w_m2 += delta * (r - w_mean)
                d_lo = min(d_lo, r)
                d_hi = max(d_hi, r)
                if r < 0.0:
                    down_sq += r * r
        sharpe = nan
        sortino = nan
        vol = nan
        if n_days >= 2:
            mean = sum_d / n_days
            std = math.sqrt(w_m2 / (n_days - 1))
            flat = d_hi == d_lo or std <= RETURN_NOISE
            if not flat and math.isfinite(std):
                sharpe = mean / std * sqrt_year
            vol = 0.0 if flat else std * sqrt_year
            dd = math.sqrt(down_sq / n_days)
            if dd > RETURN_NOISE and math.isfinite(dd):
                sortino = mean / dd * sqrt_year
        f_out[s, 0] = eq - 1.0
        f_out[s, 1] = sharpe
        f_out[s, 2] = sortino
        f_out[s, 3] = vol
        f_out[s, 4] = 1.0 - worst if worst < 1.0 else 0.0
        f_out[s, 5] = wins / trades if trades else nan
        f_out[s, 6] = sum_win / -sum_loss if losses else nan
        f_out[s, 7] = sum_net / trades if trades else nan
        n_trades[s] = trades


def fused_ma_crossover(close: np.ndarray, day: np.ndarray, fast: np.ndarray, slow: np.ndarray, per_side: float) -> dict[str, np.ndarray]:
    """The nine :data:`METRICS` of the MA-crossover strategies ``(fast[i], slow[i])``.

    Runs :func:`fused_kernel` on as many threads as ``numba.set_num_threads`` allows in the caller.

    Args:
        close: float64 (T,) bar closes, finite and > 0.
        day: integer (T,) nondecreasing trading-day codes (e.g. ``np.unique(dates,
            return_inverse=True)[1]``); every distinct code is one trading day.
        fast, slow: integer (S,) SMA periods in bars, >= 1 (the package's grids have fast < slow).
        per_side: cost per side per unit of position traded as a *fraction* (``CostModel.per_side``
            = ``(commission_bps + slippage_bps) / 1e4``), not bps.

    Returns:
        ``{name: (S,) array}`` in :data:`METRICS` order: ``total_trades`` int64, the rest float64
        (returns and drawdown as fractions, ratios annualized with sqrt(252), NaN where undefined).
    """
    close = np.ascontiguousarray(close, dtype=np.float64)
    day = np.ascontiguousarray(day, dtype=np.int64)
    fast = np.ascontiguousarray(fast, dtype=np.int64)
    slow = np.ascontiguousarray(slow, dtype=np.int64)
    if close.ndim != 1 or day.shape != close.shape:
        raise ValueError(f"close and day must be 1-d arrays of one length, got {close.shape} and {day.shape}")
    if fast.shape != slow.shape or fast.ndim != 1:
        raise ValueError(f"fast and slow must be 1-d arrays of one length, got {fast.shape} and {slow.shape}")
    if fast.size and (fast.min() < 1 or slow.min() < 1):
        raise ValueError("SMA periods must be >= 1")
    f_out = np.empty((fast.size, len(_F_COLS)))
    n_trades = np.empty(fast.size, dtype=np.int64)
    fused_kernel(close, day, fast, slow, float(per_side), math.sqrt(252.0), f_out, n_trades)
    cols = {name: f_out[:, j] for j, name in enumerate(_F_COLS)}
    cols["total_trades"] = n_trades
    return {name: cols[name] for name in METRICS}


@njit(parallel=True)
def _side_differences(close, fast, slow, positions, out):  # pragma: no cover - compiled
    csum = _close_cumsum(close)
    for s in prange(fast.shape[0]):
        n = 0
        for t in range(close.shape[0]):
            if _position(csum, t, fast[s], slow[s]) != positions[s, t]:
                n += 1
        out[s] = n


def side_differences(close: np.ndarray, fast: np.ndarray, slow: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per strategy, the number of bars where this reference's position differs from ``positions``
    (int8 (S, T), e.g. ``admf_assets.core.sparse.decode_dense(rows, missing=0)`` of the package's
    change rows: +1 / -1, 0 before the first value). Nonzero only where the cumulative-sum moving
    averages flip an exact tie SMA(fast) == SMA(slow) of the package's Kahan-summed rolling means
    (or where the conventions differ, which the agreement checks are there to catch). Returns
    int64 (S,). Not part of the timed reference."""
    close = np.ascontiguousarray(close, dtype=np.float64)
    fast = np.ascontiguousarray(fast, dtype=np.int64)
    slow = np.ascontiguousarray(slow, dtype=np.int64)
    positions = np.ascontiguousarray(positions, dtype=np.int8)
    if positions.shape != (fast.size, close.size):
        raise ValueError(f"positions must have shape ({fast.size}, {close.size}), got {positions.shape}")
    out = np.empty(fast.size, dtype=np.int64)
    _side_differences(close, fast, slow, positions, out)
    return out
