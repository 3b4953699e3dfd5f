"""Technical indicators on whole bar series, computed once and shared.

Every function takes float64 1-D NumPy arrays (one value per bar, oldest first) and returns a
float64 array of the same length holding ``NaN`` on the bars where the indicator has no value yet
(warm-up). Definitions follow ``../shared/docs/strategy-semantics.md`` (the authority); the edge
conventions that document leaves open follow the original research system, ADMF-PC
(``dawsh2/ADMF-PC``: ``src/strategy/components/features/indicators/{trend,volatility,momentum}.py``),
whose incremental features only report a value once ``is_ready``.

Warm-up (0-based index of the first bar with a value, for a series of T >= that many bars):

============================  =====================  ============================================
indicator                     first valued bar       why
============================  =====================  ============================================
``sma(x, n)``                 ``n - 1``              needs n values (ADMF-PC ``SMA``)
``rolling_pstd(x, n)``        ``n - 1``              same window as the SMA
``bollinger(close, n, k)``    ``n - 1``              ADMF-PC ``BollingerBands``: full window
``ema(x, n)``                 ``n - 1``              seeded with ``x[0]`` but, as ADMF-PC ``EMA``,
                                                     not ready until n values were seen
``true_range(h, l, c)``       ``0``                  first TR is ``high - low``
``atr(h, l, c, n)``           ``n - 1``              EMA(n) of TR (ADMF-PC ``ATR`` wraps ``EMA``)
``rsi(close, n)``             ``n``                  Wilder's seed needs n changes = n + 1 closes
``momentum(close, n)``        ``n``                  needs ``close[t - n]`` (ADMF-PC ``Momentum``
                                                     keeps n + 1 prices)
``momentum_pct(close, n)``    ``n``                  as ``momentum``
============================  =====================  ============================================

Numerics. Rolling means and population standard deviations are computed by the compiled kernels
of :mod:`admf_assets.core.kernels`, ports of pandas' windowed kernels (Kahan-compensated sums; a
window of identical values yields exactly that value and a deviation of exactly 0, so flat
stretches of price compare *equal* rather than flickering by one ulp): they equal
``Series.rolling(n).mean()`` / ``.std(ddof=0)`` bit for bit (tests keep the pandas versions as the
reference). Wilder's RSI is compiled the same way and equals the pandas
``ewm(alpha=1/n, adjust=False)`` formulation bit for bit. EMA and ATR use
``pandas.Series.ewm(alpha=..., adjust=False)``, which evaluates
``y_t = (1 - alpha) * y_{t-1} + alpha * x_t`` from the given seed; it agrees with the literal
recurrences quoted below to floating-point rounding (relative 1e-12 or better).
Inputs must be finite; :class:`IndicatorCache` checks this for bars.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Callable

import numpy as np
import pandas as pd

from admf_assets.core import kernels

__all__ = [
    "sma",
    "ema",
    "rolling_pstd",
    "bollinger",
    "rsi",
    "true_range",
    "atr",
    "momentum",
    "momentum_pct",
    "IndicatorCache",
    "BAR_COLUMNS",
]

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""Column names of a bars DataFrame (lower case)."""


# --------------------------------------------------------------------------- validation helpers


def _period(n: object, name: str = "n") -> int:
    """Return ``n`` as a Python int >= 1, or raise ValueError."""
    if isinstance(n, bool):
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    if isinstance(n, Integral):
        value = int(n)
    elif isinstance(n, Real) and float(n).is_integer():
        value = int(n)
    else:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return value


def _series(x: np.ndarray, name: str = "x") -> np.ndarray:
    """Return ``x`` as a contiguous float64 1-D array, or raise ValueError."""
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def _ewm(x: np.ndarray, alpha: float) -> np.ndarray:
    """``y_0 = x_0``, ``y_t = (1 - alpha) y_{t-1} + alpha x_t`` (pandas ``adjust=False``)."""
    if x.shape[0] == 0:
        return x.copy()
    return pd.Series(x, copy=False).ewm(alpha=alpha, adjust=False).mean().to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------- indicator functions


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last ``n`` values.

    ``sma[t] = mean(x[t-n+1 .. t])`` for ``t >= n - 1``, NaN before.

    Args:
        x: float64 array (T,), e.g. bar closes in price units.
        n: window length, integer >= 1.

    Returns:
        float64 array (T,) in the units of ``x``; NaN on bars ``0 .. n-2``.

    Raises:
        ValueError: ``n`` is not an integer >= 1, or ``x`` is not 1-D.
    """
    n = _period(n)
    x = _series(x)
    return kernels.rolling_mean_table(x, np.array([n], dtype=np.int64))[0]


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average, alpha = 2 / (n + 1), seeded with the first value.

    ``e[0] = x[0]``; ``e[t] = alpha * x[t] + (1 - alpha) * e[t-1]`` (strategy-semantics.md; the
    same recurrence as ADMF-PC ``EMA``). The value is reported from bar ``n - 1`` on, like
    ADMF-PC's ``EMA.is_ready`` (count >= period); earlier bars are NaN but still feed the recursion.

    Args:
        x: float64 array (T,).
        n: span, integer >= 1.

    Returns:
        float64 array (T,), units of ``x``; NaN on bars ``0 .. n-2``.

    Raises:
        ValueError: ``n`` is not an integer >= 1, or ``x`` is not 1-D.
    """
    n = _period(n)
    x = _series(x)
    out = _ewm(x, 2.0 / (n + 1.0))
    out[: n - 1] = np.nan
    return out


def rolling_pstd(x: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation (ddof = 0, divide by n) of the last ``n`` values.

    Args:
        x: float64 array (T,).
        n: window length, integer >= 1 (n = 1 gives 0).

    Returns:
        float64 array (T,), units of ``x``; NaN on bars ``0 .. n-2``.

    Raises:
        ValueError: ``n`` is not an integer >= 1, or ``x`` is not 1-D.
    """
    n = _period(n)
    x = _series(x)
    # The windowed variance can come out a hair below 0 in floating point: the kernel clamps the
    # deviation at 0 like ADMF-PC.
    return kernels.rolling_pstd_table(x, np.array([n], dtype=np.int64))[0]


def bollinger(close: np.ndarray, n: int, k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands (Bollinger 2001; population sigma as strategy-semantics.md requires).

    ``middle = sma(close, n)``, ``upper = middle + k * sigma``, ``lower = middle - k * sigma`` with
    ``sigma = rolling_pstd(close, n)``.

    Args:
        close: float64 array (T,) of bar closes.
        n: window length, integer >= 1.
        k: band width in standard deviations, finite and >= 0.

    Returns:
        ``(middle, upper, lower)``, three float64 arrays (T,) in price units, NaN on bars ``0 .. n-2``.

    Raises:
        ValueError: bad ``n``, ``k`` negative or not finite, or ``close`` not 1-D.
    """
    k = _std_multiplier(k)
    middle = sma(close, n)
    sigma = rolling_pstd(close, n)
    width = k * sigma
    return middle, middle + width, middle - width


def _std_multiplier(k: object) -> float:
    if isinstance(k, bool) or not isinstance(k, Real) or not math.isfinite(float(k)) or float(k) < 0:
        raise ValueError(f"std multiplier k must be a finite number >= 0, got {k!r}")
    return float(k)


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's Relative Strength Index (J. Welles Wilder, *New Concepts in Technical Trading
    Systems*, 1978), on a 0..100 scale.

    With changes ``d[t] = close[t] - close[t-1]``, gains ``max(d, 0)`` and losses ``max(-d, 0)``:
    the first averages (at bar n) are the simple means of the first n gains / losses (bars 1..n);
    afterwards ``avg[t] = (avg[t-1] * (n - 1) + x[t]) / n`` (Wilder smoothing, alpha = 1/n).
    ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``, and ``RSI = 100`` whenever ``avg_loss == 0``
    (also when both averages are 0, as strategy-semantics.md states).

    Args:
        close: float64 array (T,) of bar closes.
        n: period, integer >= 1.

    Returns:
        float64 array (T,) in RSI points (0..100); NaN on bars ``0 .. n-1`` (first value at bar n).

    Raises:
        ValueError: ``n`` is not an integer >= 1, or ``close`` is not 1-D.
    """
    n = _period(n)
    close = _series(close, "close")
    return kernels.wilder_rsi_table(close, np.array([n], dtype=np.int64))[0]


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """True range (Wilder 1978): ``max(high - low, |high - prev_close|, |low - prev_close|)``.

    The first bar has no previous close: its true range is ``high - low`` (strategy-semantics.md,
    ADMF-PC ``ATR``).

    Args:
        high, low, close: float64 arrays (T,) in price units.

    Returns:
        float64 array (T,) in price units, valued from bar 0.

    Raises:
        ValueError: arrays not 1-D or of different lengths.
    """
    high, low, close = _series(high, "high"), _series(low, "low"), _series(close, "close")
    _same_length(high=high, low=low, close=close)
    tr = high - low
    if tr.shape[0] > 1:
        prev = close[:-1]
        np.maximum(tr[1:], np.abs(high[1:] - prev), out=tr[1:])
        np.maximum(tr[1:], np.abs(low[1:] - prev), out=tr[1:])
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """Average true range as strategy-semantics.md defines it: ``ema(true_range, n)``.

    Note this is the EMA with alpha = 2/(n+1) seeded with the first true range (ADMF-PC ``ATR``),
    not Wilder's 1/n smoothing.

    Args:
        high, low, close: float64 arrays (T,) in price units.
        n: period, integer >= 1.

    Returns:
        float64 array (T,) in price units; NaN on bars ``0 .. n-2`` (first value at bar n-1).

    Raises:
        ValueError: bad ``n``, arrays not 1-D or of different lengths.
    """
    return ema(true_range(high, low, close), n)


def momentum(close: np.ndarray, n: int) -> np.ndarray:
    """Price momentum ``close[t] - close[t-n]`` (price units), NaN on bars ``0 .. n-1``.

    Raises:
        ValueError: ``n`` is not an integer >= 1, or ``close`` is not 1-D.
    """
    n = _period(n)
    close = _series(close, "close")
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > n:
        out[n:] = close[n:] - close[:-n]
    return out


def momentum_pct(close: np.ndarray, n: int) -> np.ndarray:
    """Percent momentum as a fraction: ``(close[t] - close[t-n]) / close[t]``.

    Divided by the *current* close, as strategy-semantics.md and ADMF-PC ``momentum_breakout``
    (``momentum_value / current_price``) do; 0.02 means 2 %.

    Returns:
        float64 array (T,), dimensionless; NaN on bars ``0 .. n-1``.

    Raises:
        ValueError: ``n`` is not an integer >= 1, or ``close`` is not 1-D.
    """
    n = _period(n)
    close = _series(close, "close")
    return kernels.momentum_pct_table(close, np.array([n], dtype=np.int64))[0]


# --------------------------------------------------------------------------- shared cache


class IndicatorCache:
    """Indicators of one bar series, each computed once per distinct parameter value.

    Build one per bar series and hand it to :func:`admf_assets.core.strategies.evaluate_strategies`
    / :func:`admf_assets.core.classifiers.evaluate_classifiers` so that, e.g., ``sma(20)`` is
    computed once however many strategies and classifiers use a 20-bar SMA. Returned arrays are
    the cached objects themselves, marked read-only (``writeable=False``); copy before modifying.

    Args:
        bars: DataFrame with columns ``open, high, low, close, volume`` (lower case; only
            ``close`` is required up front, ``high``/``low`` when a range-based indicator is
            asked for), one row per bar, oldest first. The index is ignored.

    Raises:
        ValueError: ``bars`` is not a DataFrame, lacks ``close``, or a price column used holds a
            non-finite value (NaN/inf).

    Attributes:
        n_bars: T, the number of bars.
        close: read-only float64 array (T,) of closes.
        computed: dict mapping an indicator key such as ``("sma", 20)`` to how many times it was
            computed (always 1 for cached keys; exposed so tests can check the sharing).
    """

    def __init__(self, bars: pd.DataFrame) -> None:
        if not isinstance(bars, pd.DataFrame):
            raise ValueError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
        if "close" not in bars.columns:
            raise ValueError(f"bars need a 'close' column; columns are {list(bars.columns)}")
        self._bars = bars
        self.n_bars = int(len(bars))
        self.close = self._column("close")
        self._store: dict[tuple, object] = {}
        self.computed: dict[tuple, int] = {}

    def _column(self, name: str) -> np.ndarray:
        if name not in self._bars.columns:
            raise ValueError(f"bars need a {name!r} column; columns are {list(self._bars.columns)}")
        arr = np.array(self._bars[name].to_numpy(dtype=np.float64), dtype=np.float64, copy=True)
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"bars column {name!r} holds a non-finite value at row {bad}")
        arr.setflags(write=False)
        return arr

    def _get(self, key: tuple, compute: Callable[[], object]) -> object:
        try:
            return self._store[key]
        except KeyError:
            pass
        value = compute()
        for arr in value if isinstance(value, tuple) else (value,):
            arr.setflags(write=False)
        self._store[key] = value
        self.computed[key] = self.computed.get(key, 0) + 1
        return value

    @property
    def high(self) -> np.ndarray:
        """Read-only float64 array (T,) of highs."""
        return self._get(("high",), lambda: self._column("high"))  # type: ignore[return-value]

    @property
    def low(self) -> np.ndarray:
        """Read-only float64 array (T,) of lows."""
        return self._get(("low",), lambda: self._column("low"))  # type: ignore[return-value]

    def sma(self, n: int) -> np.ndarray:
        """:func:`sma` of closes, cached per ``n``."""
        n = _period(n)
        return self._get(("sma", n), lambda: sma(self.close, n))  # type: ignore[return-value]

    def ema(self, n: int) -> np.ndarray:
        """:func:`ema` of closes, cached per ``n``."""
        n = _period(n)
        return self._get(("ema", n), lambda: ema(self.close, n))  # type: ignore[return-value]

    def rolling_pstd(self, n: int) -> np.ndarray:
        """:func:`rolling_pstd` of closes, cached per ``n``."""
        n = _period(n)
        return self._get(("pstd", n), lambda: rolling_pstd(self.close, n))  # type: ignore[return-value]

    def bollinger(self, n: int, k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(middle, upper, lower)`` as :func:`bollinger`, cached per ``(n, k)``.

        The middle band and sigma are the cached ``sma(n)`` / ``rolling_pstd(n)`` arrays, shared
        with every other user of that period; ``upper = middle + k * sigma`` elementwise, the
        same arithmetic the vectorised strategy evaluation uses.
        """
        n, k = _period(n), _std_multiplier(k)

        def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            middle, sigma = self.sma(n), self.rolling_pstd(n)
            width = k * sigma
            return middle, middle + width, middle - width

        return self._get(("bollinger", n, k), compute)  # type: ignore[return-value]

    def rsi(self, n: int) -> np.ndarray:
        """Wilder :func:`rsi` of closes, cached per ``n``."""
        n = _period(n)
        return self._get(("rsi", n), lambda: rsi(self.close, n))  # type: ignore[return-value]

    def true_range(self) -> np.ndarray:
        """:func:`true_range` of the bars (needs ``high`` and ``low``), cached."""
        return self._get(  # type: ignore[return-value]
            ("true_range",), lambda: true_range(self.high, self.low, self.close)
        )

    def atr(self, n: int) -> np.ndarray:
        """:func:`atr` (EMA of the cached true range), cached per ``n``."""
        n = _period(n)
        return self._get(("atr", n), lambda: ema(self.true_range(), n))  # type: ignore[return-value]

    def atr_sma(self, atr_period: int, lookback: int) -> np.ndarray:
        """``sma(atr(atr_period), lookback)``: the ATR's own moving average, cached per pair.

        First value at bar ``(atr_period - 1) + (lookback - 1)``.
        """
        atr_period, lookback = _period(atr_period, "atr_period"), _period(lookback, "lookback")
        return self._get(  # type: ignore[return-value]
            ("atr_sma", atr_period, lookback), lambda: sma(self.atr(atr_period), lookback)
        )

    def momentum(self, n: int) -> np.ndarray:
        """:func:`momentum` of closes, cached per ``n``."""
        n = _period(n)
        return self._get(("momentum", n), lambda: momentum(self.close, n))  # type: ignore[return-value]

    def momentum_pct(self, n: int) -> np.ndarray:
        """:func:`momentum_pct` of closes, cached per ``n``."""
        n = _period(n)
        return self._get(  # type: ignore[return-value]
            ("momentum_pct", n), lambda: momentum_pct(self.close, n)
        )

    def indicator_table(self, keys: "list[tuple[str, int]]") -> np.ndarray:
        """Stack the indicator rows named by ``keys`` into one float64 ``(len(keys), T)`` array.

        Keys are ``("sma", n)``, ``("pstd", n)``, ``("rsi", n)`` or ``("momentum_pct", n)``, the
        same keys the single-indicator methods cache under. Rows already cached are copied; the
        missing ones are computed straight into the table by one parallel compiled kernel
        (:func:`admf_assets.core.kernels.indicator_rows_into`) and cached as read-only views of
        their table row, so each distinct period is still computed once per bar series.

        Raises:
            ValueError: an unknown indicator name or a period that is not an integer >= 1.
        """
        out = np.empty((len(keys), self.n_bars), dtype=np.float64)
        codes, periods, rows = [], [], []
        for j, (name, n) in enumerate(keys):
            if name not in kernels.INDICATOR_CODES:
                raise ValueError(f"unknown indicator {name!r}; known: {sorted(kernels.INDICATOR_CODES)}")
            n = _period(n)
            key = (name, n)
            if key in self._store:
                out[j] = self._store[key]  # type: ignore[assignment]
            else:
                codes.append(kernels.INDICATOR_CODES[name])
                periods.append(n)
                rows.append(j)
        if rows:
            with kernels.balanced():
                kernels.indicator_rows_into(
                    np.array(self.close),  # writable copy: one compiled signature for every caller
                    np.array(codes, dtype=np.int64),
                    np.array(periods, dtype=np.int64),
                    np.array(rows, dtype=np.int64),
                    out,
                )
            for j in rows:
                key = (keys[j][0], _period(keys[j][1]))
                if key in self._store:  # the same key listed twice
                    continue
                view = out[j]
                view.setflags(write=False)
                self._store[key] = view
                self.computed[key] = self.computed.get(key, 0) + 1
        return out
