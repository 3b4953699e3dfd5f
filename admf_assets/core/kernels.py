"""Compiled (numba) kernels of the evaluation core: indicators, fused strategy loops, metrics.

Everything here is pure array code, compiled with ``numba.njit(cache=True)`` so that the compile
cost is paid once per machine (the cache lives in ``__pycache__`` next to this file). The kernels
reproduce the floating-point operations of the NumPy / pandas reference implementation (kept in
``tests/core/reference_*.py``) in the same order, so signals and sparse rows are identical and
metrics agree to the last bits (sums of daily returns use NumPy's pairwise summation, see
:func:`pairwise_sum`).

Sources of the numerics:

* :func:`rolling_mean_table`, :func:`rolling_pstd_table`: ports of pandas 2.3
  ``pandas/_libs/window/aggregations.pyx`` ``roll_mean`` / ``roll_var`` (Kahan-compensated add /
  remove, the "window of identical values" rule of GH#42064, the negative-count clamp) for fixed
  windows, so a rolling mean equals ``Series.rolling(n).mean()`` bit for bit.
* :func:`wilder_rsi_table`: Wilder (1978) RSI with the smoothing of pandas
  ``ewm(alpha=1/n, adjust=False).mean()`` (``pandas/_libs/window/aggregations.pyx`` ``ewm``:
  ``alpha = 1 / (1 + com)`` with ``com = (1 - alpha) / alpha``, ``y = (old_wt * y + alpha * x) /
  (old_wt + alpha)``, skipped when ``y == x``), seeded with the pairwise-summed mean of the first
  n gains / losses as ``numpy.sum`` computes it.
* :func:`signal_rows`: the strategy rules of :mod:`admf_assets.core.strategies`, one pass over the
  bars per strategy (values computed 256 bars at a time in vectorized loops, changes found eight
  bars at a time), emitting sparse change rows directly (no dense block).
* :func:`metric_kernel`: the metric definitions of :mod:`admf_assets.core.metrics`, one walk over
  the change rows and days of each series; a stretch of bars with a constant position costs O(1)
  through day-local prefix products of the bar factors and sparse tables of their range extremes
  (:func:`stretch_tables`; Bender & Farach-Colton 2000).
* :func:`daily_net_kernel`, :func:`regime_kernel`, :func:`closed_trades_kernel`: the daily
  returns, per-regime figures and closed trades of ``metrics.daily_net_returns`` /
  ``regime_metrics`` / ``daily_breakdown`` / ``extract_trades`` from the change rows (the NumPy
  versions they replaced are ``tests/core/reference_metrics.py``).
* :func:`cscv_kernel`: the splits of the CSCV Probability of Backtest Overfitting (Bailey,
  Borwein, López de Prado & Zhu 2015), see ``overfitting.probability_of_backtest_overfitting``.
* :func:`sorted_rows_in_bar_range`: day slices of sorted change rows by binary search.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

__all__ = [
    "balanced",
    "PARALLEL_CHUNK",
    "KIND_CODES",
    "NO_VALUE_CODE",
    "pairwise_sum",
    "INDICATOR_CODES",
    "indicator_rows_into",
    "rolling_mean_table",
    "rolling_pstd_table",
    "wilder_rsi_table",
    "momentum_pct_table",
    "signal_rows",
    "compact_rows",
    "metric_kernel",
    "stretch_tables",
    "daily_net_kernel",
    "regime_kernel",
    "day_activity_kernel",
    "cscv_kernel",
    "sorted_rows_in_bar_range",
    "sorted_rows_in_bar_range_from",
    "closed_trades_kernel",
]

PARALLEL_CHUNK = 16
"""Loop iterations (strategies, indicator rows, splits) a thread takes at a time in the parallel
kernels called inside :func:`balanced`."""


def balanced(chunk: int = PARALLEL_CHUNK):
    """Context manager: parallel kernels called inside it hand out their ``prange`` iterations
    ``chunk`` at a time to whichever thread is free (dynamic scheduling,
    ``numba.parallel_chunksize``) instead of numba's default of one equal share per thread.

    With equal shares a call lasts as long as its slowest thread, and on a shared machine a
    thread that loses its core holds the whole call up: with one busy process on the other core,
    a 5,000-strategy evaluation took 1.36 s (median of 7) with equal shares and 0.44 s with
    chunks of 16 (0.19 s on the quiet machine either way)."""
    return numba.parallel_chunksize(chunk)


RETURN_NOISE = 1e-14
"""Dispersion of daily returns (fractions) at or below which a Sharpe or Sortino ratio is
undefined (NaN) and the volatility 0: compounding a day's bar factors leaves rounding residues of
about 1e-16 on days that are flat in exact arithmetic, and dividing by such a residue gave Sortino
ratios near 1e15 that topped every ranking. Real daily returns disperse by 1e-6 and more."""

NO_VALUE_CODE = -128
"""int value of :data:`admf_assets.core.sparse.NO_VALUE` (warm-up marker)."""

KIND_CODES: dict[str, int] = {
    "sma_crossover": 0,
    "ma_crossover": 1,
    "bollinger_bands": 2,
    "bollinger_breakout": 3,
    "rsi_bands": 4,
    "rsi_threshold": 5,
    "rsi_extreme": 6,
    "momentum_breakout": 7,
    "momentum": 8,
}
"""Strategy type -> kernel code used by :func:`signal_rows`."""

_PW_BLOCKSIZE = 128


# --------------------------------------------------------------------------- summation


@njit(cache=True, nogil=True)
def _block_sum(a, lo, n):  # pragma: no cover - compiled
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a, lo, n):  # pragma: no cover - compiled
    """Sum of ``a[lo:lo+n]`` in NumPy's pairwise order (``numpy/_core/src/umath/loops_utils.h``
    ``pairwise_sum``: sequential below 8 values, 8 accumulators up to 128, halves rounded to a
    multiple of 8 above), so ``pairwise_sum(a, 0, len(a))`` equals ``a.sum()`` bit for bit on a
    contiguous float64 array. Iterative (an explicit stack) because numba's on-disk cache does not
    support recursive functions."""
    if n <= _PW_BLOCKSIZE:
        return _block_sum(a, lo, n)
    t_lo = np.empty(128, dtype=np.int64)
    t_n = np.empty(128, dtype=np.int64)
    vals = np.empty(64, dtype=np.float64)
    sp = 0
    vp = 0
    t_lo[0] = lo
    t_n[0] = n
    sp = 1
    while sp > 0:
        sp -= 1
        cur_lo = t_lo[sp]
        cur_n = t_n[sp]
        if cur_n < 0:  # combine the two most recent partial sums
            right = vals[vp - 1]
            left = vals[vp - 2]
            vp -= 2
            vals[vp] = left + right
            vp += 1
        elif cur_n <= _PW_BLOCKSIZE:
            vals[vp] = _block_sum(a, cur_lo, cur_n)
            vp += 1
        else:
            n2 = cur_n // 2
            n2 -= n2 % 8
            t_lo[sp] = 0
            t_n[sp] = -1
            t_lo[sp + 1] = cur_lo + n2
            t_n[sp + 1] = cur_n - n2
            t_lo[sp + 2] = cur_lo
            t_n[sp + 2] = n2
            sp += 3
    return vals[0]


# --------------------------------------------------------------------------- indicators


@njit(cache=True, nogil=True)
def _roll_mean_into(x, n, out):  # pragma: no cover - compiled
    """pandas ``roll_mean`` for the fixed window ``[t-n+1, t]``, min_periods = n (NaN inputs are
    skipped as pandas skips them: they do not count as observations)."""
    t_len = x.shape[0]
    nobs = 0
    neg_ct = 0
    sum_x = 0.0
    comp_add = 0.0
    comp_rem = 0.0
    same = 0
    prev = x[0] if t_len else 0.0
    for i in range(t_len):
        s = i + 1 - n
        if i > 0 and s > 0:
            val = x[s - 1]
            if val == val:
                nobs -= 1
                y = -val - comp_rem
                t = sum_x + y
                comp_rem = t - sum_x - y
                sum_x = t
                if val < 0:
                    neg_ct -= 1
        val = x[i]
        if val == val:
            nobs += 1
            y = val - comp_add
            t = sum_x + y
            comp_add = t - sum_x - y
            sum_x = t
            if val < 0:
                neg_ct += 1
            if val == prev:
                same += 1
            else:
                same = 1
            prev = val
        if nobs >= n and nobs > 0:
            result = sum_x / nobs
            if same >= nobs:
                result = prev
            elif neg_ct == 0 and result < 0:
                result = 0.0
            elif neg_ct == nobs and result > 0:
                result = 0.0
        else:
            result = np.nan
        out[i] = result


@njit(cache=True, nogil=True)
def _roll_pstd_into(x, n, out):  # pragma: no cover - compiled
    """pandas ``roll_var`` (ddof = 0) for the fixed window, then ``sqrt`` clamped at 0 (NaN inputs
    skipped as pandas skips them)."""
    t_len = x.shape[0]
    nobs = 0
    mean_x = 0.0
    ssqdm = 0.0
    comp_add = 0.0
    comp_rem = 0.0
    same = 0
    prev = x[0] if t_len else 0.0
    for i in range(t_len):
        s = i + 1 - n
        if i > 0 and s > 0:
            val = x[s - 1]
            if val == val:
                nobs -= 1
                if nobs:
                    prev_mean = mean_x - comp_rem
                    y = val - comp_rem
                    t = y - mean_x
                    comp_rem = t + mean_x - y
                    mean_x -= t / nobs
                    ssqdm -= (val - prev_mean) * (val - mean_x)
                else:
                    mean_x = 0.0
                    ssqdm = 0.0
        val = x[i]
        if val == val:
            if val == prev:
                same += 1
            else:
                same = 1
            prev = val
            nobs += 1
            prev_mean = mean_x - comp_add
            y = val - comp_add
            t = y - mean_x
            comp_add = t + mean_x - y
            mean_x += t / nobs
            ssqdm += (val - prev_mean) * (val - mean_x)
        if nobs >= n and nobs > 0:
            if nobs == 1 or same >= nobs:
                var = 0.0
            else:
                var = ssqdm / nobs
            out[i] = math.sqrt(var) if var > 0.0 else 0.0
        else:
            out[i] = np.nan


INDICATOR_CODES: dict[str, int] = {"sma": 0, "pstd": 1, "rsi": 2, "momentum_pct": 3}
"""Indicator name -> code used by :func:`indicator_rows_into`."""


@njit(cache=True, parallel=True, nogil=True)
def indicator_rows_into(x, codes, periods, rows, out):  # pragma: no cover - compiled
    """Compute indicator rows of ``x`` (float64 (T,)) in parallel into ``out[rows[j]]``.

    ``codes[j]`` (:data:`INDICATOR_CODES`) and ``periods[j]`` (int64) name row j: 0 simple moving
    average, 1 rolling population standard deviation, 2 Wilder RSI, 3 percent momentum; ``out`` is
    float64 (P, T). Each row equals the pandas formulation bit for bit (module docstring)."""
    for j in prange(codes.shape[0]):
        c = codes[j]
        if c == 0:
            _roll_mean_into(x, periods[j], out[rows[j]])
        elif c == 1:
            _roll_pstd_into(x, periods[j], out[rows[j]])
        elif c == 2:
            _rsi_into(x, periods[j], out[rows[j]])
        else:
            _momentum_pct_into(x, periods[j], out[rows[j]])


def _table(code: int, x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float64)  # a writable contiguous copy: one compiled signature
    periods = np.array(periods, dtype=np.int64)
    out = np.empty((periods.shape[0], x.shape[0]), dtype=np.float64)
    n = periods.shape[0]
    indicator_rows_into(x, np.full(n, code, dtype=np.int64), periods, np.arange(n, dtype=np.int64), out)
    return out


def rolling_mean_table(x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Simple moving averages of ``x`` (float64 (T,)) for each window in ``periods`` (int64 (P,)).

    Returns float64 (P, T); row p equals ``pandas.Series(x).rolling(periods[p]).mean()`` (NaN on
    bars ``0 .. n-2``). Periods are computed in parallel."""
    return _table(0, x, periods)


def rolling_pstd_table(x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Rolling population standard deviations (ddof = 0) of ``x`` for each window in ``periods``.

    Returns float64 (P, T), equal to ``Series(x).rolling(n).std(ddof=0)`` clamped at 0, NaN on
    bars ``0 .. n-2``."""
    return _table(1, x, periods)


def wilder_rsi_table(close: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Wilder RSI (0..100) of ``close`` for each period: float64 (P, T), NaN on bars ``0 .. n-1``."""
    return _table(2, close, periods)


def momentum_pct_table(close: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """``(close[t] - close[t-n]) / close[t]`` for each period: float64 (P, T), NaN on ``0 .. n-1``."""
    return _table(3, close, periods)


@njit(cache=True, nogil=True)
def _ewm_step_alpha(alpha):  # pragma: no cover - compiled
    com = (1.0 - alpha) / alpha
    return 1.0 / (1.0 + com)


@njit(cache=True, nogil=True)
def _rsi_into(close, n, out):  # pragma: no cover - compiled
    t_len = close.shape[0]
    for i in range(t_len):
        out[i] = np.nan
    if t_len <= n:
        return
    m = t_len - n
    gains = np.empty(n)
    losses = np.empty(n)
    for j in range(n):
        ch = close[j + 1] - close[j]
        gains[j] = ch if ch > 0.0 else 0.0
        losses[j] = -ch if -ch > 0.0 else 0.0
    g = pairwise_sum(gains, 0, n) / n
    lo = pairwise_sum(losses, 0, n) / n
    alpha = _ewm_step_alpha(1.0 / n)
    old_wt = 1.0 - alpha
    for k in range(m):
        if k > 0:
            ch = close[n + k] - close[n + k - 1]
            cg = ch if ch > 0.0 else 0.0
            cl = -ch if -ch > 0.0 else 0.0
            if g != cg:
                g = (old_wt * g + alpha * cg) / (old_wt + alpha)
            if lo != cl:
                lo = (old_wt * lo + alpha * cl) / (old_wt + alpha)
        if lo != 0.0:
            out[n + k] = 100.0 - 100.0 / (1.0 + g / lo)
        else:
            out[n + k] = 100.0


@njit(cache=True, nogil=True)
def _momentum_pct_into(close, n, out):  # pragma: no cover - compiled
    for t in range(close.shape[0]):
        if t < n:
            out[t] = np.nan
        else:
            out[t] = (close[t] - close[t - n]) / close[t]


# --------------------------------------------------------------------------- signals


@njit(cache=True, parallel=True, nogil=True)
def signal_rows(kind, close, table, row_a, row_b, p1, p2, p3, out_idx, out_val, counts):  # pragma: no cover
    """Evaluate C strategies over T bars and write their sparse change rows.

    Args:
        kind: int64 (C,) :data:`KIND_CODES` of each strategy.
        close: float64 (T,) closes.
        table: float64 (P, T) indicator rows (SMA, population sigma, RSI, percent momentum).
        row_a, row_b: int64 (C,) rows of ``table`` each strategy reads (meaning per kind below).
        p1, p2, p3: float64 (C,) numeric parameters (meaning per kind below).
        out_idx: int32 (C, T) scratch: the bars of strategy i's rows go to ``out_idx[i, :counts[i]]``.
        out_val: int8 (C, T) scratch for the values.
        counts: int64 (C,) output, rows per strategy.

    Kinds (a = table[row_a], b = table[row_b], c = close): sma_crossover sign(a - b);
    ma_crossover +1 if a > b else -1; bollinger_bands / _breakout with middle a, sigma b, k = p1;
    rsi_bands (a = RSI, p1 oversold, p2 overbought); rsi_threshold sign(a - p1); rsi_extreme
    (p1 oversold, p2 overbought, p3 exit level); momentum_breakout (a = pct, p1 threshold);
    momentum sign(c - a). A NaN input gives the warm-up marker (no row).
    """
    n_str = kind.shape[0]
    for i in prange(n_str):
        counts[i] = _one_signal(kind[i], close, table[row_a[i]], table[row_b[i]], p1[i], p2[i], p3[i], out_idx[i], out_val[i])


@njit(cache=True, nogil=True)
def _first_valid(a, b):  # pragma: no cover - compiled
    """First bar where neither ``a`` nor ``b`` is NaN (T when there is none)."""
    t_len = a.shape[0]
    for t in range(t_len):
        if not (np.isnan(a[t]) or np.isnan(b[t])):
            return t
    return t_len


_BLOCK = 256
"""Bars per block in :func:`_one_signal`: values are computed for a block in one branch-free
(vectorizable) loop, then scanned for changes eight bars (one 64-bit word of int8 values) at a
time."""

_BYTE_ONES = np.uint64(0x0101010101010101)
_HIGH_BITS = np.uint64(0x8080808080808080)


@njit(cache=True, nogil=True, error_model="numpy")
def _block_values(k, close, a, b, x1, x2, b0, n, buf):  # pragma: no cover - compiled
    """Values of bars ``b0 .. b0+n-1`` of a stateless rule into ``buf[:n]`` (NO_VALUE on NaN).

    The inputs are sliced to the block first so every loop indexes from 0 with a range variable:
    numba's negative-index wraparound check on ``a[b0 + j]`` kept LLVM from vectorizing these
    loops (1.5 ns per value instead of about 0.25)."""
    nv = NO_VALUE_CODE
    aa = a[b0:b0 + n]
    bb = b[b0:b0 + n]
    cc = close[b0:b0 + n]
    if k == 0:
        for j in range(n):
            fa = aa[j]
            fb = bb[j]
            v = np.int8(fa > fb) - np.int8(fa < fb)
            buf[j] = nv if (fa != fa) | (fb != fb) else v
    elif k == 1:
        for j in range(n):
            fa = aa[j]
            fb = bb[j]
            v = np.int8(1) if fa > fb else np.int8(-1)
            buf[j] = nv if (fa != fa) | (fb != fb) else v
    elif k == 2:
        for j in range(n):
            width = bb[j] * x1
            upper = aa[j] + width
            lower = aa[j] - width
            c = cc[j]
            v = np.int8(-1) if c >= upper else (np.int8(1) if c <= lower else np.int8(0))
            buf[j] = nv if upper != upper else v
    elif k == 3:
        for j in range(n):
            width = bb[j] * x1
            upper = aa[j] + width
            lower = aa[j] - width
            c = cc[j]
            v = np.int8(-1) if c < lower else (np.int8(1) if c > upper else np.int8(0))
            buf[j] = nv if upper != upper else v
    elif k == 4:
        for j in range(n):
            r = aa[j]
            v = np.int8(-1) if r > x2 else (np.int8(1) if r < x1 else np.int8(0))
            buf[j] = nv if r != r else v
    elif k == 5:
        for j in range(n):
            r = aa[j]
            v = np.int8(r > x1) - np.int8(r < x1)
            buf[j] = nv if r != r else v
    elif k == 7:
        neg = -x1
        for j in range(n):
            r = aa[j]
            v = np.int8(-1) if r < neg else (np.int8(1) if r > x1 else np.int8(0))
            buf[j] = nv if r != r else v
    else:
        for j in range(n):
            fa = aa[j]
            c = cc[j]
            v = np.int8(c > fa) - np.int8(c < fa)
            buf[j] = nv if fa != fa else v


@njit(cache=True, nogil=True, error_model="numpy")
def _one_signal(k, close, a, b, x1, x2, x3, oi, ov):  # pragma: no cover - compiled
    """Rows of one strategy (see :func:`signal_rows`); returns the row count.

    Indicator rows are NaN only on their warm-up prefix (finite closes), so the loops start at
    the first bar where every input has a value; a NaN later still gives no value (no row)."""
    t_len = close.shape[0]
    start = _first_valid(a, b)
    cnt = 0
    prev = NO_VALUE_CODE
    if k == 6:
        state = 0
        for t in range(start, t_len):
            r = a[t]
            if r != r:
                continue
            if r < x1:
                state = 1
            elif r > x2:
                state = -1
            elif state == 1 and r >= x3:
                state = 0
            elif state == -1 and r <= x3:
                state = 0
            if state != prev:
                oi[cnt] = t
                ov[cnt] = state
                cnt += 1
                prev = state
        return cnt
    buf = np.empty(_BLOCK, dtype=np.int8)
    words = buf.view(np.uint64)
    for b0 in range(start, t_len, _BLOCK):
        n = min(_BLOCK, t_len - b0)
        _block_values(k, close, a, b, x1, x2, b0, n, buf)
        n_words = n >> 3
        for w in range(n_words):
            x = words[w]
            y = x ^ _HIGH_BITS  # a NO_VALUE byte (0x80) becomes a zero byte
            if ((y - _BYTE_ONES) & ~y & _HIGH_BITS) != 0:  # some bar of the word has no value
                cnt, prev = _scan_bytes(buf, 8 * w, 8 * w + 8, b0, prev, oi, ov, cnt)
                continue
            # byte j of `diff` is nonzero where bar j differs from the bar before it (byte 0
            # from the last emitted value); emit those bars in order
            diff = x ^ ((x << np.uint64(8)) | np.uint64(np.uint8(prev)))
            while diff != 0:
                j = np.int64(trailing_zeros(diff) >> np.uint64(3))
                oi[cnt] = b0 + 8 * w + j
                ov[cnt] = buf[8 * w + j]
                cnt += 1
                diff &= ~(np.uint64(0xFF) << np.uint64(8 * j))
            prev = buf[8 * w + 7]
        cnt, prev = _scan_bytes(buf, 8 * n_words, n, b0, prev, oi, ov, cnt)
    return cnt


@njit(cache=True, nogil=True, inline="always")
def _scan_bytes(buf, lo, hi, b0, prev, oi, ov, cnt):  # pragma: no cover - compiled
    """Bar-by-bar change scan of ``buf[lo:hi]`` (bars ``b0 + j``): a row for each value that
    differs from the last one emitted, NO_VALUE skipped. Returns ``(cnt, prev)``."""
    for j in range(lo, hi):
        v = buf[j]
        if v != prev and v != NO_VALUE_CODE:
            oi[cnt] = b0 + j
            ov[cnt] = v
            cnt += 1
            prev = v
    return cnt, prev


@njit(cache=True, parallel=True, nogil=True)
def compact_rows(out_idx, out_val, counts, offsets, series_base, series, idx, val):  # pragma: no cover
    """Copy scratch row i (``out_idx[i, :counts[i]]``, ``out_val[i, :counts[i]]``) to
    ``[offsets[i], offsets[i] + counts[i])`` of the flat (series, idx, val) arrays, with series
    number ``series_base + i``."""
    for i in prange(counts.shape[0]):
        o = offsets[i]
        s = series_base + i
        for j in range(counts[i]):
            series[o + j] = s
            idx[o + j] = out_idx[i, j]
            val[o + j] = out_val[i, j]


# --------------------------------------------------------------------------- metrics


@njit(cache=True, nogil=True)
def _sharpe_sortino_vol(daily, n_days, sqrt_year):  # pragma: no cover - compiled
    """(sharpe, sortino, volatility) of daily returns as the reference computes them; a standard
    or downside deviation at or below :data:`RETURN_NOISE` (rounding residue of flat days) leaves
    the ratio undefined (NaN) and the volatility 0."""
    nan = np.nan
    if n_days < 2:
        return nan, nan, nan
    mean = pairwise_sum(daily, 0, n_days) / n_days
    lo = daily[0]
    hi = daily[0]
    for d in range(n_days):
        if daily[d] < lo:
            lo = daily[d]
        if daily[d] > hi:
            hi = daily[d]
    sq = np.empty(n_days)
    for d in range(n_days):
        dev = daily[d] - mean
        sq[d] = dev * dev
    std = math.sqrt(pairwise_sum(sq, 0, n_days) / (n_days - 1))
    ptp = hi - lo
    if ptp > 0 and std > RETURN_NOISE and math.isfinite(std):
        sharpe = mean / std * sqrt_year
    else:
        sharpe = nan
    vol = 0.0 if (ptp == 0 or std <= RETURN_NOISE) else std * sqrt_year
    for d in range(n_days):
        m = daily[d] if daily[d] < 0.0 else 0.0
        sq[d] = m * m
    dd = math.sqrt(pairwise_sum(sq, 0, n_days) / n_days)
    if dd > RETURN_NOISE and math.isfinite(dd):
        sortino = mean / dd * sqrt_year
    else:
        sortino = nan
    return sharpe, sortino, vol


@njit(cache=True, nogil=True, error_model="numpy")
def _day_prefix_into(f, day_start, out):  # pragma: no cover - compiled
    """``out[t] = f[b] * f[b+1] * ... * f[t]`` (sequential product), ``b`` the first bar of t's day."""
    n_days = day_start.shape[0] - 1
    for d in range(n_days):
        p = 1.0
        for t in range(day_start[d], day_start[d + 1]):
            p *= f[t]
            out[t] = p


@njit(cache=True, nogil=True)
def _arg_table_into(v, want_max, tab):  # pragma: no cover - compiled
    """Sparse table of range arg-extremes: ``tab[j, t]`` = first index of the max (``want_max``)
    or min of ``v[t : t + 2**j]``, for every ``t`` with ``t + 2**j <= len(v)`` (the
    "sparse table" of Bender & Farach-Colton 2000). ``tab`` is int32 (levels, T)."""
    t_len = v.shape[0]
    for t in range(t_len):
        tab[0, t] = t
    for j in range(1, tab.shape[0]):
        h = 1 << (j - 1)
        for t in range(t_len - (1 << j) + 1):
            a = tab[j - 1, t]
            b = tab[j - 1, t + h]
            if want_max:
                tab[j, t] = b if v[b] > v[a] else a
            else:
                tab[j, t] = b if v[b] < v[a] else a


@njit(cache=True, nogil=True, inline="always")
def _range_arg(v, tab, lg, lo, hi, want_max):  # pragma: no cover - compiled
    """First index of the max (``want_max``) or min of ``v[lo:hi]`` (``hi > lo``) in O(1): the
    better of two overlapping power-of-two windows (ties keep the left window's index, which is
    the first occurrence)."""
    j = lg[hi - lo]
    a = tab[j, lo]
    b = tab[j, hi - (1 << j)]
    if want_max:
        return b if v[b] > v[a] else a
    return b if v[b] < v[a] else a


@njit(cache=True, nogil=True, error_model="numpy")
def stretch_tables(up, down, day_start):  # pragma: no cover - compiled
    """Shared inputs of :func:`metric_kernel`'s O(1)-per-stretch path, built once per call.

    Returns ``(prefix, tabs, lg, ok)``: ``prefix`` float64 (2, T) day-local sequential products
    of ``up`` (row 0, a long's bar factors) and ``down`` (row 1, a short's); ``tabs`` int32
    (4, L, T) sparse tables of range argmax / argmin of row 0 then of row 1, ``L`` covering the
    longest day; ``lg`` int64 floor(log2(n)) for n up to the longest day; ``ok`` False when a
    factor is <= 0 or a product leaves the normal float range (then the kernel multiplies bar
    by bar)."""
    t_len = up.shape[0]
    n_days = day_start.shape[0] - 1
    longest = 1
    for d in range(n_days):
        if day_start[d + 1] - day_start[d] > longest:
            longest = day_start[d + 1] - day_start[d]
    levels = 1
    while (1 << levels) <= longest:
        levels += 1
    lg = np.zeros(longest + 1, dtype=np.int64)
    for n in range(2, longest + 1):
        lg[n] = lg[n // 2] + 1
    prefix = np.empty((2, t_len))
    _day_prefix_into(up, day_start, prefix[0])
    _day_prefix_into(down, day_start, prefix[1])
    ok = True
    for r in range(2):
        for t in range(t_len):
            v = prefix[r, t]
            if not (v > 1e-250 and v < 1e250):
                ok = False
    tabs = np.empty((4, levels, t_len), dtype=np.int32)
    if ok:
        _arg_table_into(prefix[0], True, tabs[0])
        _arg_table_into(prefix[0], False, tabs[1])
        _arg_table_into(prefix[1], True, tabs[2])
        _arg_table_into(prefix[1], False, tabs[3])
    return prefix, tabs, lg, ok


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def metric_kernel(row_start, idx, val, ret, close, day_start, per_side, round_trip, sqrt_year, f_out, i_out):  # pragma: no cover
    """Every per-series metric of :func:`admf_assets.core.metrics.compute_metrics` from change rows.

    One walk over the rows and days per series (:func:`_series_bars`), series spread over the
    cores. Per bar the figures are those of the NumPy reference: ``gross = pos[t-1] * ret[t]``,
    ``net = gross - |pos[t] - pos[t-1]| * per_side``, factors ``+ 1.0``, compounded equity,
    drawdown ``equity / max(running peak, 1)``; daily statistics with NumPy's pairwise sums
    (:func:`pairwise_sum`). Closed-trade statistics come from the rows. Between two rows the
    position is constant, so a stretch of bars is handled in O(1) from day-local prefix products
    of the bar factors and sparse tables of their range extremes (:func:`stretch_tables`);
    products are therefore grouped differently from the reference's bar-by-bar products
    (relative differences of order 1e-15 per stretch).

    Args:
        row_start: int64 (S+1,) row offsets: series s owns rows ``row_start[s]:row_start[s+1]``.
        idx, val: int32 / int8 (R,) change rows (sorted by bar within each series; values -1/0/+1).
        ret: float64 (T,) close-to-close returns, ``ret[0] = 0``.
        close: float64 (T,) closes (trade fills).
        day_start: int64 (D+1,) first bar of each trading day, then T.
        per_side, round_trip: cost fractions per unit traded / per closed trade.
        sqrt_year: annualization factor sqrt(252).
        f_out: float64 (S, 16) output: total_return, gross_total_return, volatility, sharpe,
            sortino, max_drawdown, gross_sharpe, exposure, win_rate, profit_factor,
            avg_trade_return, avg_trade_duration, largest_win, largest_loss, units_traded,
            (unused).
        i_out: int64 (S, 5) output: max_drawdown_idx, total_trades, winning_trades,
            losing_trades, signal_changes.
    """
    n_series = row_start.shape[0] - 1
    up = 1.0 + ret
    down = 1.0 - ret
    prefix, tabs, lg, ok = stretch_tables(up, down, day_start)
    for s in prange(n_series):
        _series_bars(s, row_start[s], row_start[s + 1], idx, val, ret, close, up, down, prefix, tabs, lg, ok,
                     day_start, per_side, round_trip, sqrt_year, f_out, i_out)


@njit(cache=True, nogil=True, inline="always")
def _track_drawdown(e, u, peak, low, low_t, best, trough):  # pragma: no cover - compiled
    """Drawdown bookkeeping of :func:`_series_bars` for equity ``e`` at bar ``u``; returns the new
    ``(peak, low, low_t, best, trough)``. A new high closes the constant-peak stretch (its first
    minimum ``low`` at ``low_t`` is divided by the peak once) and opens the next one."""
    if e > peak:
        if low < peak:
            ratio = low / peak
            if ratio < best:
                best = ratio
                trough = low_t
        return e, e, u, best, trough
    if e < low:
        return peak, e, u, best, trough
    return peak, low, low_t, best, trough


@njit(cache=True, nogil=True, error_model="numpy")
def _series_bars(s, lo, hi, idx, val, ret, close, up, down, prefix, tabs, lg, ok, day_start, per_side, round_trip,
                 sqrt_year, f_out, i_out):  # pragma: no cover
    """Every metric of one series: bar-level figures (returns, daily ratios, drawdown, exposure,
    turnover) and, on the same walk over its rows, the closed trades (:func:`_trade_stats`).

    Walks the bars stretch by stretch: a stretch ends at the next row or the end of the day. On a
    change bar the net and gross factors differ by the cost. Inside a stretch the held position
    is constant and the cost is 0, so both factors are ``1 + pos * ret[t]`` and equity at bar u
    is ``eq * (P[u] / P[t-1])`` with ``P`` the day-local prefix product of those factors
    (``ok``: every factor > 0, so the ratio is > 0 and preserves order while equity is > 0). The stretch's equity extremes
    are then two range queries on the sparse tables: when its maximum stays at or below the
    running peak, only its first minimum can move the drawdown bookkeeping; otherwise (a new
    high inside the stretch) its bars are walked one by one. Flat stretches (factor 1.0) are
    skipped; without ``ok`` (or with equity <= 0) bars are multiplied one by one.

    Drawdown without a division per bar: ``peak = max(1, running max of equity)`` changes only
    on a new high; while it is constant, ``equity / peak`` is smallest where equity is (division
    is monotonic), so the first minimum of equity per constant-peak stretch is tracked and divided
    once when the stretch ends. The trough bar is the first bar of the smallest ratio, as NumPy's
    ``argmin`` gives it, unless two different equities of one stretch round to the same ratio
    (a 1-ulp near-tie; the depth is the same either way).
    """
    t_len = ret.shape[0]
    n_days = day_start.shape[0] - 1
    daily_n = np.empty(max(n_days, 1))
    daily_g = np.empty(max(n_days, 1))
    pos = 0
    k = lo
    eq = 1.0
    eqg = 1.0
    dn = 1.0
    dg = 1.0
    peak = 1.0
    low = np.inf
    low_t = 0
    best = np.inf
    trough = -1
    exposure = 0
    units = 0
    n_tr = 0  # closed trades, winning, losing; sums of net returns, wins, losses, durations
    n_w = 0
    n_l = 0
    sum_net = 0.0
    sum_win = 0.0
    sum_loss = 0.0
    dur = 0
    big_win = -np.inf
    big_loss = np.inf
    entry_t = 0
    d = 0
    day_begin = 0
    next_day = day_start[1] if n_days > 0 else t_len + 1
    t = 0
    while t < t_len:
        if k < hi and idx[k] == t:
            newpos = np.int64(val[k])
            k += 1
            turn = abs(newpos - pos)
            g = pos * ret[t]
            gn = (g - turn * per_side) + 1.0
            gg = g + 1.0
            eq *= gn
            eqg *= gg
            dn *= gn
            dg *= gg
            peak, low, low_t, best, trough = _track_drawdown(eq, t, peak, low, low_t, best, trough)
            units += turn
            if turn != 0:  # a new position: close the open trade at this close, open the next
                if pos != 0:
                    entry_px = close[entry_t]
                    netr = pos * (close[t] - entry_px) / entry_px - round_trip
                    n_tr += 1
                    sum_net += netr
                    dur += t - entry_t
                    win = netr > 0  # branch-free: wins and losses come in random order
                    loss = netr < 0
                    n_w += win
                    n_l += loss
                    sum_win += netr if win else 0.0
                    sum_loss += netr if loss else 0.0
                    big_win = max(big_win, netr)
                    big_loss = min(big_loss, netr)
                entry_t = t
            pos = newpos
            if pos != 0:
                exposure += 1
            t += 1
        else:
            stop = idx[k] if k < hi else t_len
            if next_day < stop:
                stop = next_day
            if pos != 0:
                exposure += stop - t
                if ok and eq > 0.0 and n_days > 0:
                    side = 0 if pos > 0 else 1
                    pp = prefix[side]
                    pprev = pp[t - 1] if t > day_begin else 1.0
                    # equity at bar u is eq * (P[u] / P[t-1]): a stretch of unchanged closes
                    # (ratio exactly 1.0) keeps equity bit for bit, as bar-by-bar products do
                    jmax = _range_arg(pp, tabs[2 * side], lg, t, stop, True)
                    if eq * (pp[jmax] / pprev) > peak:
                        for u in range(t, stop):
                            peak, low, low_t, best, trough = _track_drawdown(
                                eq * (pp[u] / pprev), u, peak, low, low_t, best, trough
                            )
                    else:
                        jmin = _range_arg(pp, tabs[2 * side + 1], lg, t, stop, False)
                        e = eq * (pp[jmin] / pprev)
                        lower = e < low
                        low_t = jmin if lower else low_t
                        low = e if lower else low
                    r = pp[stop - 1] / pprev
                    eq *= r
                    eqg *= r
                    dn *= r
                    dg *= r
                else:
                    factor = up if pos > 0 else down
                    for u in range(t, stop):
                        gr = factor[u]
                        eq *= gr
                        eqg *= gr
                        dn *= gr
                        dg *= gr
                        peak, low, low_t, best, trough = _track_drawdown(eq, u, peak, low, low_t, best, trough)
            elif eq < low:  # flat stretch: its first bar is where this equity is first seen
                low = eq
                low_t = t
            t = stop
        if t == next_day:
            daily_n[d] = dn - 1.0
            daily_g[d] = dg - 1.0
            dn = 1.0
            dg = 1.0
            d += 1
            day_begin = t
            next_day = day_start[d + 1] if d < n_days else t_len + 1
    if low < peak:
        ratio = low / peak
        if ratio < best:
            best = ratio
            trough = low_t
    sharpe, sortino, vol = _sharpe_sortino_vol(daily_n, n_days, sqrt_year)
    gsharpe, _, _ = _sharpe_sortino_vol(daily_g, n_days, sqrt_year)
    depth = 1.0 - best
    f_out[s, 0] = eq - 1.0
    f_out[s, 1] = eqg - 1.0
    f_out[s, 2] = vol
    f_out[s, 3] = sharpe
    f_out[s, 4] = sortino
    f_out[s, 5] = depth if (t_len and depth > 0.0) else 0.0
    f_out[s, 6] = gsharpe
    f_out[s, 7] = exposure / t_len if t_len else np.nan
    f_out[s, 14] = units
    f_out[s, 15] = 0.0
    i_out[s, 0] = trough if (t_len and depth > 0.0) else -1
    i_out[s, 4] = hi - lo
    # closed trades: a row with a nonzero value opens a trade, the next row with another value
    # closes it at that bar's close (a trade still open at the end is not counted)
    nan = np.nan
    f_out[s, 8] = n_w / n_tr if n_tr else nan
    f_out[s, 9] = sum_win / -sum_loss if n_l else nan
    f_out[s, 10] = sum_net / n_tr if n_tr else nan
    f_out[s, 11] = dur / n_tr if n_tr else nan
    f_out[s, 12] = big_win if n_w else nan
    f_out[s, 13] = big_loss if n_l else nan
    i_out[s, 1] = n_tr
    i_out[s, 2] = n_w
    i_out[s, 3] = n_l


@njit(cache=True, nogil=True)
def _rows_look_valid(series, idx, val, n_series, n_bars, check_values):  # pragma: no cover - compiled
    """True when every rule of :func:`check_rows` holds: two branch-free (vectorizable) passes
    that only say whether some row breaks a rule, not which one."""
    n = series.shape[0]
    bad = False
    for r in range(n):
        s = series[r]
        i = idx[r]
        bad |= (s < 0) | (s >= n_series) | (i < 0) | (i >= n_bars)
    if check_values:
        for r in range(n):
            v = val[r]
            bad |= (v < -1) | (v > 1)
    for r in range(1, n):
        bad |= (series[r] < series[r - 1]) | ((series[r] == series[r - 1]) & (idx[r] <= idx[r - 1]))
    return not bad


@njit(cache=True, nogil=True)
def check_rows(series, idx, val, n_series, n_bars, row_start, check_values=True):  # pragma: no cover - compiled
    """Validate change rows; returns ``(code, row)`` of the first problem.

    When the rows are valid, ``row_start`` (int64 (n_series + 1,)) receives the row offsets of
    each series: series s owns rows ``row_start[s]:row_start[s + 1]``.

    Codes, checked in this order over all rows: 0 fine; 1 a ``series`` outside ``[0, n_series)``;
    2 an ``idx`` outside ``[0, n_bars)``; 3 rows not sorted by (series, idx) or a duplicate;
    4 a value outside -1/0/+1 (only with ``check_values``: regime codes are checked by their
    caller). ``row`` is the index of the first offending row (-1 if fine).
    Valid rows (the usual case) are confirmed by :func:`_rows_look_valid` and the offsets found by
    binary search; the rule-by-rule passes run only to name the first offending row."""
    n = series.shape[0]
    if _rows_look_valid(series, idx, val, n_series, n_bars, check_values):
        for s in range(n_series + 1):
            row_start[s] = np.searchsorted(series, s)
        return 0, -1
    for r in range(n):
        if series[r] < 0 or series[r] >= n_series:
            return 1, r
    for r in range(n):
        if idx[r] < 0 or idx[r] >= n_bars:
            return 2, r
    for r in range(1, n):
        if series[r] < series[r - 1] or (series[r] == series[r - 1] and idx[r] <= idx[r - 1]):
            return 3, r
    for r in range(n):
        v = val[r]
        if check_values and v != -1 and v != 0 and v != 1:
            return 4, r
    for s in range(n_series + 1):  # not reached: _rows_look_valid tests the same rules
        row_start[s] = np.searchsorted(series, s)
    return 0, -1


@njit(cache=True, nogil=True)
def rows_in_bar_range(series, idx, val, start, stop):  # pragma: no cover - compiled
    """The rows whose bar index lies in ``[start, stop)``, in their order: ``(series, idx, val)``
    copies (same dtypes), two passes over ``idx`` (count, then copy)."""
    n = 0
    for r in range(idx.shape[0]):
        if idx[r] >= start and idx[r] < stop:
            n += 1
    out_s = np.empty(n, dtype=series.dtype)
    out_i = np.empty(n, dtype=idx.dtype)
    out_v = np.empty(n, dtype=val.dtype)
    j = 0
    for r in range(idx.shape[0]):
        if idx[r] >= start and idx[r] < stop:
            out_s[j] = series[r]
            out_i[j] = idx[r]
            out_v[j] = val[r]
            j += 1
    return out_s, out_i, out_v


# --------------------------------------------------------------------------- daily and regime returns


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def daily_net_kernel(row_start, idx, val, ret, up, down, day_start, per_side, out):  # pragma: no cover
    """Daily compounded net returns of every series from its change rows (no dense block).

    ``out[s, d] = prod_{t in day d} (1 + net[s, t]) - 1`` with the bar net returns of
    :func:`metric_kernel` (same floating-point operations, sequential products as NumPy's
    ``multiply.reduceat``); flat bars (factor exactly 1.0) are skipped, which changes nothing.

    Args:
        row_start: int64 (S+1,) row offsets; idx int32 / val int8 (R,) change rows.
        ret: float64 (T,) close-to-close returns (``ret[0] = 0``); ``up = 1 + ret``,
            ``down = 1 - ret``.
        day_start: int64 (D+1,) first bar of each trading day, then T.
        per_side: cost fraction per unit traded.
        out: float64 (S, D) output.
    """
    n_series = row_start.shape[0] - 1
    n_days = day_start.shape[0] - 1
    for s in prange(n_series):
        lo = row_start[s]
        hi = row_start[s + 1]
        k = lo
        pos = 0
        for d in range(n_days):
            prod = 1.0
            t = day_start[d]
            end = day_start[d + 1]
            while t < end:
                if k < hi and idx[k] == t:
                    newpos = np.int64(val[k])
                    k += 1
                    turn = abs(newpos - pos)
                    g = pos * ret[t]
                    prod *= (g - turn * per_side) + 1.0
                    pos = newpos
                    t += 1
                else:
                    stop = idx[k] if k < hi else end
                    if stop > end:
                        stop = end
                    if pos > 0:
                        for u in range(t, stop):
                            prod *= up[u]
                    elif pos < 0:
                        for u in range(t, stop):
                            prod *= down[u]
                    t = stop
            out[s, d] = prod - 1.0


@njit(cache=True, nogil=True, error_model="numpy")
def _column_prefix(up, down, day_start, bar_col, col_first):  # pragma: no cover - compiled
    """Day-local products of the bar factors per output column, for :func:`regime_kernel`.

    Returns ``(prefix, ok)``: ``prefix[side, c, t]`` (float64 (2, P, T)) is the sequential product
    of the long (side 0, ``up``) or short (side 1, ``down``) factors of the bars of column ``c``
    (those with ``bar_col[k, t] == c``, ``k`` the classifier owning ``c``) from the first bar of
    t's day through t (bars of other columns count 1.0); ``ok`` (bool (K,)) is False for a
    classifier when a factor is <= 0 or a product of one of its columns leaves the normal float
    range."""
    t_len = up.shape[0]
    n_days = day_start.shape[0] - 1
    n_clf = col_first.shape[0] - 1
    prefix = np.empty((2, col_first[n_clf], t_len))
    ok = np.ones(n_clf, dtype=np.bool_)
    for k in range(n_clf):
        cols = bar_col[k]
        for side in range(2):
            f = up if side == 0 else down
            for c in range(col_first[k], col_first[k + 1]):
                row = prefix[side, c]
                for d in range(n_days):
                    p = 1.0
                    for t in range(day_start[d], day_start[d + 1]):
                        if cols[t] == c:
                            p *= f[t]
                        row[t] = p
                        if not (p > 1e-250 and p < 1e250):
                            ok[k] = False
    return prefix, ok


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def regime_kernel(row_start, idx, val, ret, close, up, down, day_start, bar_col, entry_col, col_first, on_day, per_side,
                  round_trip, sqrt_year, total_out, sharpe_out, count_out, wins_out, dur_out):  # pragma: no cover
    """Per-regime figures of every series under K classifiers (``metrics.regime_metrics_many``),
    one walk over its rows for all of them.

    Classifier k owns the output columns ``col_first[k]:col_first[k + 1]`` (its regimes). The net
    factor of bar t (as in :func:`daily_net_kernel`) goes to column ``bar_col[k, t]`` of every
    classifier (the regime attributed to the bar, -1 = none). Per (series, column): ``total_out =
    prod - 1`` over the column's bars, and the annualized Sharpe ratio of its daily compounded
    returns over the days ``d`` with ``on_day[col, d]`` (days holding at least one bar of the
    column; the other bars contribute factor 1), computed as :func:`_sharpe_sortino_vol` (NumPy
    pairwise sums). Between two rows the position is constant, so a stretch adds to each column
    the ratio of its day-local prefix products (:func:`_column_prefix`): O(columns) per stretch
    instead of a pass over its bars; products are grouped by stretch where the reference
    multiplies bar by bar (relative differences of order 1e-15). A classifier whose products
    leave the float range (``ok[k]`` False) has its columns multiplied bar by bar. Closed trades
    (as :func:`closed_trades_kernel`) go to the column ``entry_col[k, t]`` of their entry bar:
    counts, winners (net return > 0, after ``round_trip``) and the sum of durations in bars.

    Each column's figures are computed with the same operations in the same order whatever the
    other classifiers of the call, so one call over K classifiers equals K calls bit for bit; the
    walk over the rows, the trades and the days is shared (three classifiers: about a fifth less
    time than three calls).

    Args:
        row_start: int64 (S+1,) row offsets; idx int32 / val int8 (R,) change rows.
        ret: float64 (T,) close-to-close returns (``ret[0] = 0``); close float64 (T,) closes;
            ``up = 1 + ret``, ``down = 1 - ret``.
        day_start: int64 (D+1,) first bar of each trading day, then T.
        bar_col: int64 (K, T) output column of each bar's return per classifier, or -1.
        entry_col: int64 (K, T) output column of a trade entered at the bar per classifier, or -1.
        col_first: int64 (K+1,) first output column of each classifier, then P.
        on_day: bool (P, D) days counted for each column.
        per_side, round_trip: cost fractions per unit traded / per closed trade.
        total_out, sharpe_out: float64 (S, P) outputs; count_out, wins_out, dur_out int64 (S, P).
    """
    n_series = row_start.shape[0] - 1
    n_days = day_start.shape[0] - 1
    n_clf = col_first.shape[0] - 1
    n_cols = on_day.shape[0]
    t_len = ret.shape[0]
    prefix, ok = _column_prefix(up, down, day_start, bar_col, col_first)
    for s in prange(n_series):
        lo = row_start[s]
        hi = row_start[s + 1]
        k = lo
        pos = 0
        entry_t = 0
        tot = np.ones(n_cols)
        dprod = np.ones(n_cols)
        daily = np.empty((n_cols, max(n_days, 1)))
        nd = np.zeros(n_cols, dtype=np.int64)
        cnt = np.zeros(n_cols, dtype=np.int64)
        wins = np.zeros(n_cols, dtype=np.int64)
        dur = np.zeros(n_cols, dtype=np.int64)
        d = 0
        day_begin = 0
        next_day = day_start[1] if n_days > 0 else t_len + 1
        t = 0
        while t < t_len:
            if k < hi and idx[k] == t:
                newpos = np.int64(val[k])
                k += 1
                turn = abs(newpos - pos)
                g = (pos * ret[t] - turn * per_side) + 1.0
                for j in range(n_clf):
                    c = bar_col[j, t]
                    if c >= 0:
                        tot[c] *= g
                        dprod[c] *= g
                if turn != 0:
                    if pos != 0:
                        entry_px = close[entry_t]
                        netr = pos * (close[t] - entry_px) / entry_px - round_trip
                        for j in range(n_clf):
                            ec = entry_col[j, entry_t]
                            if ec >= 0:
                                cnt[ec] += 1
                                wins[ec] += netr > 0
                                dur[ec] += t - entry_t
                    entry_t = t
                pos = newpos
                t += 1
            else:
                stop = idx[k] if k < hi else t_len
                if next_day < stop:
                    stop = next_day
                if pos != 0:
                    side = 0 if pos > 0 else 1
                    factor = up if pos > 0 else down
                    for j in range(n_clf):
                        if ok[j] and n_days > 0:
                            for c in range(col_first[j], col_first[j + 1]):
                                pc = prefix[side, c]
                                r = pc[stop - 1] / (pc[t - 1] if t > day_begin else 1.0)
                                tot[c] *= r
                                dprod[c] *= r
                        else:
                            for u in range(t, stop):
                                c = bar_col[j, u]
                                if c >= 0:
                                    tot[c] *= factor[u]
                                    dprod[c] *= factor[u]
                t = stop
            if t == next_day:
                for c in range(n_cols):
                    if on_day[c, d]:
                        daily[c, nd[c]] = dprod[c] - 1.0
                        nd[c] += 1
                    dprod[c] = 1.0
                d += 1
                day_begin = t
                next_day = day_start[d + 1] if d < n_days else t_len + 1
        for c in range(n_cols):
            total_out[s, c] = tot[c] - 1.0
            sh, _, _ = _sharpe_sortino_vol(daily[c], nd[c], sqrt_year)
            sharpe_out[s, c] = sh
            count_out[s, c] = cnt[c]
            wins_out[s, c] = wins[c]
            dur_out[s, c] = dur[c]


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def day_activity_kernel(row_start, idx, val, ret, up, down, close, day_start, wanted, per_side, round_trip,
                        i_out, f_out):  # pragma: no cover
    """Per series and requested day, the figures of ``metrics.daily_breakdown`` for those days
    only: the rows of the day are found by binary search, the position and open trade carried
    into the day from the rows before it, and only the day's bars are walked.

    The operations are those of :func:`daily_net_kernel` (the day's net product, sequential)
    and :func:`closed_trades_kernel` (a row repeating the previous row's value is no trade
    event; a trade closes at the next other value's bar, net return
    ``side * (exit - entry) / entry - round_trip``), in the same order, so the figures are equal
    to the whole-history computation's bit for bit.

    Args:
        row_start: int64 (S+1,) row offsets; idx int32 / val int8 (R,) change rows.
        ret, up, down, close: float64 (T,) returns, ``1 + ret``, ``1 - ret``, closes.
        day_start: int64 (D+1,) first bar of each trading day, then T.
        wanted: int64 (W,) day positions (indices into ``day_start``) to compute.
        i_out: int64 (S, W, 4) output: signal changes, trades closed, wins, losses.
        f_out: float64 (S, W, 2) output: net P&L of the day (fraction), sum of the net returns of
            the trades closed that day.
    """
    n_series = row_start.shape[0] - 1
    for s in prange(n_series):
        lo = row_start[s]
        hi = row_start[s + 1]
        for j in range(wanted.shape[0]):
            d = wanted[j]
            a = day_start[d]
            b = day_start[d + 1]
            k0 = _first_at_least(idx, lo, hi, a)
            k1 = _first_at_least(idx, k0, hi, b)
            pos = 0
            have = False
            pv = 0
            entry = 0
            if k0 > lo:
                r = k0 - 1
                while r > lo and val[r - 1] == val[r]:
                    r -= 1
                pos = np.int64(val[k0 - 1])
                have = True
                pv = pos
                entry = np.int64(idx[r])
            prod = 1.0
            closed = 0
            wins = 0
            losses = 0
            sum_net = 0.0
            k = k0
            for t in range(a, b):
                if k < k1 and idx[k] == t:
                    newpos = np.int64(val[k])
                    k += 1
                    turn = abs(newpos - pos)
                    g = pos * ret[t]
                    prod *= (g - turn * per_side) + 1.0
                    if not (have and newpos == pv):
                        if have and pv != 0:
                            entry_px = close[entry]
                            netr = pv * (close[t] - entry_px) / entry_px - round_trip
                            closed += 1
                            wins += netr > 0
                            losses += netr < 0
                            sum_net += netr
                        have = True
                        pv = newpos
                        entry = t
                    pos = newpos
                elif pos > 0:
                    prod *= up[t]
                elif pos < 0:
                    prod *= down[t]
            i_out[s, j, 0] = k1 - k0
            i_out[s, j, 1] = closed
            i_out[s, j, 2] = wins
            i_out[s, j, 3] = losses
            f_out[s, j, 0] = prod - 1.0
            f_out[s, j, 1] = sum_net


# --------------------------------------------------------------------------- CSCV (PBO)


@njit(cache=True, nogil=True, error_model="numpy")
def _block_sharpe1(total, sq, count):  # pragma: no cover - compiled
    """mean / sample std from a sum, a sum of squares and a count, 0 when the variance is <= 1e-30
    (the operations of ``overfitting._block_sharpe`` in the same order)."""
    mean = total / count
    var = (sq - total * mean) / (count - 1.0)
    ratio = mean / math.sqrt(var)  # NaN for a negative variance; discarded below
    return ratio if var > 1e-30 else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def _selected_rank(sr_sel, sr_rank, n_strat):  # pragma: no cover - compiled
    """``(logit, selected in-sample Sharpe, its out-of-sample Sharpe)`` of one split: the first
    maximum of ``sr_sel`` (as ``numpy.argmax``) and the relative rank of its ``sr_rank`` value,
    ``omega = (below + (equal + 1) / 2) / (N + 1)``, ``logit = ln(omega / (1 - omega))``."""
    best = 0
    best_val = -np.inf
    for n in range(n_strat):
        if sr_sel[n] > best_val:
            best_val = sr_sel[n]
            best = n
    chosen = sr_rank[best]
    below = 0
    equal = 0
    for n in range(n_strat):
        below += sr_rank[n] < chosen
        equal += sr_rank[n] == chosen
    omega = (below + (equal + 1) / 2.0) / (n_strat + 1.0)
    return math.log(omega / (1.0 - omega)), best_val, chosen


@njit(cache=True, nogil=True, error_model="numpy")
def _split_sharpe(block_sum, block_sq, block_n, blocks):  # pragma: no cover - compiled
    """Per-observation Sharpe ratio (:func:`_block_sharpe1`) of every strategy over ``blocks``
    (their sums added in block order, each block to every strategy: contiguous, vectorized)."""
    n_strat = block_sum.shape[1]
    s = np.zeros(n_strat)
    q = np.zeros(n_strat)
    n_obs = 0.0
    for j in range(blocks.shape[0]):
        b = blocks[j]
        n_obs += block_n[b]
        bs = block_sum[b]
        bq = block_sq[b]
        for n in range(n_strat):
            s[n] += bs[n]
            q[n] += bq[n]
    out = np.empty(n_strat)
    for n in range(n_strat):  # branch-free, so the loop vectorizes
        out[n] = _block_sharpe1(s[n], q[n], n_obs)
    return out


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def cscv_kernel(block_sum, block_sq, block_n, combos, partner, logits, is_best, oos_best):  # pragma: no cover
    """Every CSCV split of the PBO (Bailey, Borwein, López de Prado & Zhu 2015) without
    (splits x strategies) temporaries; splits spread over the cores.

    For split c (in-sample blocks ``combos[c]``): in-sample sums of each strategy (the picked
    blocks' sums added in block order), the per-observation Sharpe ratios in and out of sample
    (:func:`_block_sharpe1`; out of sample over the complementary split's blocks, also added in
    block order), the in-sample best (the first maximum, as ``numpy.argmax``), its out-of-sample
    relative rank and its logit (:func:`_selected_rank`). The complementary split ``partner[c]``
    (in and out of sample swapped) is served by the same two arrays of Sharpe ratios with their
    roles swapped, so each pair of splits costs one pass over the strategies and every split's
    figures are those of a direct computation of that split. Ranks compare Sharpe ratios exactly:
    on exact ties in exact arithmetic (e.g. returns rounded to a few decimals) the last bits of
    the sums decide, as they do in the NumPy reference.

    Args:
        block_sum, block_sq: float64 (S, N) sums / sums of squares of each block (row) and
            strategy (column).
        block_n: float64 (S,) observations per block.
        combos: int64 (C, S/2) in-sample block numbers of each split.
        partner: int64 (C,) the split whose in-sample blocks are c's out-of-sample blocks.
        logits, is_best, oos_best: float64 (C,) outputs (logit, in-sample and out-of-sample
            Sharpe ratio of the selected strategy).
    """
    n_strat = block_sum.shape[1]
    # the first split of each complementary pair, listed before the parallel loop: with the
    # pairs' second splits skipped by `continue` inside the prange body, the loop ran on one core
    # (CPU time = wall time, 0.37 s for 5,000 strategies x 12,870 splits; 0.19 s now on two)
    n_pairs = 0
    for c in range(combos.shape[0]):
        n_pairs += partner[c] > c
    first = np.empty(n_pairs, dtype=np.int64)
    n_pairs = 0
    for c in range(combos.shape[0]):
        if partner[c] > c:
            first[n_pairs] = c
            n_pairs += 1
    for i in prange(n_pairs):
        c = first[i]
        p = partner[c]
        sr_in = _split_sharpe(block_sum, block_sq, block_n, combos[c])
        sr_out = _split_sharpe(block_sum, block_sq, block_n, combos[p])  # c's out-of-sample blocks
        logits[c], is_best[c], oos_best[c] = _selected_rank(sr_in, sr_out, n_strat)
        logits[p], is_best[p], oos_best[p] = _selected_rank(sr_out, sr_in, n_strat)


@njit(cache=True, nogil=True)
def _first_at_least(a, lo, hi, x):  # pragma: no cover - compiled
    """First position p in ``[lo, hi)`` with ``a[p] >= x`` (``hi`` if none); ``a[lo:hi]`` sorted."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _gather_ranges(series, idx, val, lo_of, hi_of, total):  # pragma: no cover - compiled
    """Rows ``lo_of[s]:hi_of[s]`` of every series s, in series order, as new arrays of ``total`` rows."""
    out_s = np.empty(total, dtype=series.dtype)
    out_i = np.empty(total, dtype=idx.dtype)
    out_v = np.empty(total, dtype=val.dtype)
    j = 0
    for s in range(lo_of.shape[0]):
        for r in range(lo_of[s], hi_of[s]):
            out_s[j] = series[r]
            out_i[j] = idx[r]
            out_v[j] = val[r]
            j += 1
    return out_s, out_i, out_v


@njit(cache=True, nogil=True)
def sorted_rows_in_bar_range(series, idx, val, n_series, start, stop):  # pragma: no cover - compiled
    """:func:`rows_in_bar_range` for rows sorted by (series, idx), the :class:`SparseRows`
    contract: per series two binary searches instead of a pass over every row, O(S log R + r)
    for r rows returned. Same result as :func:`rows_in_bar_range` on sorted rows."""
    n = series.shape[0]
    lo_of = np.empty(n_series, dtype=np.int64)
    hi_of = np.empty(n_series, dtype=np.int64)
    total = 0
    a = 0
    for s in range(n_series):
        b = _first_at_least(series, a, n, s + 1)
        lo_of[s] = _first_at_least(idx, a, b, start)
        hi_of[s] = _first_at_least(idx, lo_of[s], b, stop)
        total += hi_of[s] - lo_of[s]
        a = b
    return _gather_ranges(series, idx, val, lo_of, hi_of, total)


@njit(cache=True, nogil=True)
def same_rows_in_bar_range(series_a, idx_a, val_a, series_b, idx_b, val_b, n_series, start, stop):  # pragma: no cover - compiled
    """Whether two row sets sorted by (series, idx) (the :class:`SparseRows` contract) hold the
    same rows ``(series, idx, val)`` on the bars ``[start, stop)`` of series ``0..n_series-1``:
    per series two binary searches in each set and an element-wise comparison, without gathering
    (copying) the rows as :func:`sorted_rows_in_bar_range` does. Rows outside the range, or of
    series ``>= n_series``, are not compared."""
    na = series_a.shape[0]
    nb = series_b.shape[0]
    a0 = 0
    b0 = 0
    for s in range(n_series):
        a1 = _first_at_least(series_a, a0, na, s + 1)  # series s: rows [a0, a1) and [b0, b1)
        b1 = _first_at_least(series_b, b0, nb, s + 1)
        alo = _first_at_least(idx_a, a0, a1, start)
        ahi = _first_at_least(idx_a, alo, a1, stop)
        blo = _first_at_least(idx_b, b0, b1, start)
        bhi = _first_at_least(idx_b, blo, b1, stop)
        if ahi - alo != bhi - blo:
            return False
        for k in range(ahi - alo):
            if idx_a[alo + k] != idx_b[blo + k] or val_a[alo + k] != val_b[blo + k]:
                return False
        a0 = a1
        b0 = b1
    return True


@njit(cache=True, nogil=True)
def sorted_rows_in_bar_range_from(row_start, series, idx, val, cursor, start, stop):  # pragma: no cover - compiled
    """:func:`sorted_rows_in_bar_range` for successive bar ranges of the same rows.

    ``row_start`` (int64 (S+1,)) are the rows' series offsets; ``cursor`` (int64 (S,)) holds, per
    series, the first row at or after the previous range's stop (initialise it to
    ``row_start[:-1]``) and is advanced to this range's stop. When ``start`` equals the previous
    stop (day files written in order) each series' rows are found by a scan from its cursor,
    O(S + r) per range instead of three binary searches per series; otherwise by binary search.
    Same result as :func:`sorted_rows_in_bar_range`."""
    n_series = row_start.shape[0] - 1
    lo_of = np.empty(n_series, dtype=np.int64)
    hi_of = np.empty(n_series, dtype=np.int64)
    total = 0
    for s in range(n_series):
        a = row_start[s]
        b = row_start[s + 1]
        c = cursor[s]
        if a <= c <= b and (c == a or idx[c - 1] < start) and (c == b or idx[c] >= start):
            lo = c  # the cursor is this range's lower bound
        else:
            lo = _first_at_least(idx, a, b, start)
        hi = lo
        while hi < b and idx[hi] < stop:
            hi += 1
        lo_of[s] = lo
        hi_of[s] = hi
        cursor[s] = hi
        total += hi - lo
    return _gather_ranges(series, idx, val, lo_of, hi_of, total)


@njit(cache=True, nogil=True, error_model="numpy")
def closed_trades_kernel(series, idx, val, close, out_series, out_entry, out_exit, out_side, count_only):  # pragma: no cover
    """Closed trades of change rows sorted by (series, idx) (``metrics._closed_trades``).

    Rows repeating the previous row's value of their series are skipped; among the remaining
    rows, a row with a nonzero value opens a trade closed by the next row of the same series.
    With ``count_only`` returns the number of trades and writes nothing; otherwise fills the
    int64 outputs (series, entry bar, exit bar, side +1/-1) in row order and returns the count.
    """
    n = series.shape[0]
    m = 0
    have = False
    ps = 0
    pi = 0
    pv = 0
    for r in range(n):
        s = series[r]
        v = val[r]
        if r > 0 and s == series[r - 1] and v == val[r - 1]:
            continue  # not a change
        if have and ps == s and pv != 0:
            if not count_only:
                out_series[m] = s
                out_entry[m] = pi
                out_exit[m] = idx[r]
                out_side[m] = pv
            m += 1
        have = True
        ps = s
        pi = idx[r]
        pv = v
    return m
