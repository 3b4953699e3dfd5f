"""Reference (tests only): the NumPy array-at-a-time strategy evaluation the compiled fast path
of :mod:`admf_assets.core.strategies` must reproduce exactly. Indicators come from the pandas
reference :class:`tests.core.reference_indicators.IndicatorCache`.

Vectorised evaluation of strategy grids into dense int8 signal matrices.

A strategy's value on a bar is a *held target position* (``+1`` long, ``-1`` short, ``0`` flat),
not an entry event; bars before the strategy has all of its indicators hold
:data:`admf_assets.core.sparse.NO_VALUE`. The rules are those of
``../shared/docs/strategy-semantics.md`` (the authority); indicator definitions and warm-up
lengths are documented in :mod:`admf_assets.core.indicators`.

How a grid is evaluated. Configurations are processed in chunks of ``chunk_size`` (output block
``chunk_size x T`` int8). Inside a chunk, configurations of one type form a block sorted by
parameters; for each sub-block of rows (at most ~4 M float64 elements, ~32 MB per temporary) the
indicator rows are fetched by fancy indexing into a table stacked from the distinct periods of
that sub-block, and the rule is applied with array comparisons over all bars at once. Every
indicator comes from one :class:`~admf_assets.core.indicators.IndicatorCache`, so each distinct
period is computed once per bar series, whatever the number of strategies. There is no Python
loop over bars anywhere; the stateful ``rsi_extreme`` is vectorised as described in
:func:`_rsi_extreme_block`.

Rules (``c`` = close, all comparisons on float64; ties as listed):

================== ===================================== =============================================
type               parameters                            value
================== ===================================== =============================================
sma_crossover      fast_period, slow_period              +1 if SMA(fast) > SMA(slow), -1 if <, 0 if ==
ma_crossover       fast_period, slow_period              +1 if SMA(fast) > SMA(slow), else -1
bollinger_bands    period, std_dev                       -1 if c >= upper; else +1 if c <= lower;
                                                         else 0 (upper test first, as the doc lists)
bollinger_breakout period, std_dev                       +1 if c > upper, -1 if c < lower, else 0
rsi_bands          period, oversold, overbought          -1 if RSI > overbought; else +1 if
                                                         RSI < oversold; else 0
rsi_threshold      period, threshold                     +1 if RSI > thr, -1 if RSI < thr, 0 if ==
rsi_extreme        period, oversold, overbought,         stateful, see :func:`_rsi_extreme_block`
                   exit_level
momentum_breakout  period, threshold                     pct = (c - c[t-n]) / c; +1 if pct > thr,
                                                         -1 if pct < -thr, else 0
momentum           period (``sma_period`` alias)         +1 if c > SMA(period), -1 if <, 0 if ==
================== ===================================== =============================================

Note on ``bollinger_breakout``: ADMF-PC's code of that name actually trades mean reversion
(``price > upper -> -1``); strategy-semantics.md resolves the contradiction in favour of the
trend-following rule above, which is what is implemented.

Warm-up (first bar with a value, see :func:`strategy_warmup`): crossovers ``max(fast, slow) - 1``;
Bollinger and ``momentum`` ``period - 1``; RSI strategies ``period``; ``momentum_breakout``
``period``.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from admf_assets.core.config import StrategyConfig
from tests.core.reference_indicators import IndicatorCache
from admf_assets.core.sparse import NO_VALUE

__all__ = [
    "STRATEGY_TYPES",
    "STRATEGY_PARAMETERS",
    "evaluate_strategies",
    "iter_signal_chunks",
    "strategy_warmup",
]

STRATEGY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "sma_crossover": ("fast_period", "slow_period"),
    "ma_crossover": ("fast_period", "slow_period"),
    "bollinger_bands": ("period", "std_dev"),
    "bollinger_breakout": ("period", "std_dev"),
    "rsi_bands": ("period", "oversold", "overbought"),
    "rsi_threshold": ("period", "threshold"),
    "rsi_extreme": ("period", "oversold", "overbought", "exit_level"),
    "momentum_breakout": ("period", "threshold"),
    "momentum": ("period",),
}
"""Parameter names each strategy type reads from ``StrategyConfig.params``."""

STRATEGY_TYPES: tuple[str, ...] = tuple(STRATEGY_PARAMETERS)
"""The nine strategy types this module evaluates."""

_PARAM_ALIASES: dict[tuple[str, str], str] = {("momentum", "period"): "sma_period"}

_MAX_TEMP_ELEMENTS = 1 << 22
"""Row sub-blocks are sized so that one float64 temporary holds at most this many elements."""


# --------------------------------------------------------------------------- parameters


def _param_value(config: StrategyConfig, name: str) -> float:
    params: Mapping[str, object] = config.params
    if name in params:
        value = params[name]
    elif (config.strategy_type, name) in _PARAM_ALIASES and _PARAM_ALIASES[
        (config.strategy_type, name)
    ] in params:
        value = params[_PARAM_ALIASES[(config.strategy_type, name)]]
    else:
        raise ValueError(
            f"strategy {config.strategy_type!r} needs parameter {name!r}; got {sorted(params)}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"strategy {config.strategy_type!r} parameter {name!r} must be a number, got {value!r}"
        )
    if not np.isfinite(float(value)):
        raise ValueError(
            f"strategy {config.strategy_type!r} parameter {name!r} must be finite, got {value!r}"
        )
    if name.endswith("period") and (float(value) < 1 or not float(value).is_integer()):
        raise ValueError(
            f"strategy {config.strategy_type!r} parameter {name!r} must be an integer >= 1, "
            f"got {value!r}"
        )
    return value  # type: ignore[return-value]


def _check_type(strategy_type: str) -> None:
    if strategy_type not in STRATEGY_PARAMETERS:
        raise ValueError(
            f"unknown strategy_type {strategy_type!r}; known types: {', '.join(STRATEGY_TYPES)}"
        )


def _param_table(configs: Sequence[StrategyConfig]) -> dict[str, np.ndarray]:
    """Parameters of same-type configs as arrays (float64), keyed by parameter name."""
    names = STRATEGY_PARAMETERS[configs[0].strategy_type]
    return {
        name: np.array([float(_param_value(c, name)) for c in configs], dtype=np.float64)
        for name in names
    }


def strategy_warmup(config: StrategyConfig) -> int:
    """0-based index of the first bar on which ``config`` has a value (on a long enough series).

    Args:
        config: a strategy configuration of one of :data:`STRATEGY_TYPES`.

    Returns:
        ``max(fast_period, slow_period) - 1`` for the crossovers, ``period - 1`` for the Bollinger
        strategies and ``momentum``, ``period`` for the RSI strategies and ``momentum_breakout``.

    Raises:
        ValueError: unknown type or missing parameter.
    """
    _check_type(config.strategy_type)
    t = config.strategy_type
    if t in ("sma_crossover", "ma_crossover"):
        return int(max(_param_value(config, "fast_period"), _param_value(config, "slow_period"))) - 1
    period = int(_param_value(config, "period"))
    if t in ("bollinger_bands", "bollinger_breakout", "momentum"):
        return period - 1
    return period


# --------------------------------------------------------------------------- array helpers


def _gather(fetch: Callable[[int], np.ndarray], periods: np.ndarray) -> np.ndarray:
    """Rows ``fetch(p)`` for each p in ``periods``: a table of the distinct periods, fancy-indexed."""
    distinct, inverse = np.unique(periods.astype(np.int64), return_inverse=True)
    table = np.stack([fetch(int(p)) for p in distinct])
    return table[inverse]


def _sign_compare(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int8 ``+1`` where a > b, ``-1`` where a < b, 0 where equal, NO_VALUE where either is NaN."""
    out = (a > b).view(np.int8) - (a < b).view(np.int8)
    out[np.isnan(a) | np.isnan(b)] = NO_VALUE
    return out


def _row_slices(n_rows: int, n_bars: int) -> Iterator[slice]:
    step = max(1, _MAX_TEMP_ELEMENTS // max(n_bars, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


# --------------------------------------------------------------------------- per-type blocks
# Each takes the cache and a parameter table for one row sub-block (arrays of length s) and
# returns an int8 (s, T) block.


def _sma_crossover_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    fast = _gather(cache.sma, p["fast_period"])
    slow = _gather(cache.sma, p["slow_period"])
    return _sign_compare(fast, slow)


def _ma_crossover_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    fast = _gather(cache.sma, p["fast_period"])
    slow = _gather(cache.sma, p["slow_period"])
    out = np.where(fast > slow, np.int8(1), np.int8(-1)).astype(np.int8, copy=False)
    out[np.isnan(fast) | np.isnan(slow)] = NO_VALUE
    return out


def _bands(cache: IndicatorCache, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    middle = _gather(cache.sma, p["period"])
    width = _gather(cache.rolling_pstd, p["period"])
    width *= p["std_dev"][:, None]  # k * sigma, the same arithmetic as IndicatorCache.bollinger
    return middle + width, middle - width


def _bollinger_bands_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    upper, lower = _bands(cache, p)
    close = cache.close[None, :]
    out = np.zeros(upper.shape, dtype=np.int8)
    out[close <= lower] = 1
    out[close >= upper] = -1  # assigned last: the upper test takes precedence on a zero-width band
    out[np.isnan(upper)] = NO_VALUE
    return out


def _bollinger_breakout_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    upper, lower = _bands(cache, p)
    close = cache.close[None, :]
    out = np.zeros(upper.shape, dtype=np.int8)
    out[close > upper] = 1
    out[close < lower] = -1
    out[np.isnan(upper)] = NO_VALUE
    return out


def _rsi_bands_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    r = _gather(cache.rsi, p["period"])
    out = np.zeros(r.shape, dtype=np.int8)
    out[r < p["oversold"][:, None]] = 1
    out[r > p["overbought"][:, None]] = -1  # overbought listed first in the rule: it wins ties
    out[np.isnan(r)] = NO_VALUE
    return out


def _rsi_threshold_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    r = _gather(cache.rsi, p["period"])
    return _sign_compare(r, p["threshold"][:, None])


def _rsi_extreme_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    """``rsi_extreme``: enter on an extreme, hold until RSI crosses ``exit_level``.

    Per-bar definition (the state before the first RSI value is flat, 0)::

        if   RSI < oversold:                        state = +1   # entry (also re-entry / flip)
        elif RSI > overbought:                      state = -1
        elif state == +1 and RSI >= exit_level:     state = 0    # long exit
        elif state == -1 and RSI <= exit_level:     state = 0    # short exit
        else:                                       state unchanged

    Entries are tested before exits on every bar, so a bar that jumps from below ``oversold`` to
    above ``overbought`` goes straight from +1 to -1, and an entry bar is never also an exit bar.
    "Crosses exit_level" is taken inclusively: a long is out once RSI *reaches* ``exit_level``
    (``>=``), a short once RSI reaches it from above (``<=``). ADMF-PC's stored sources contain
    no ``rsi_extreme`` implementation to copy (its ``rsi_strategy`` / ``rsi_composite`` are
    stateless), so the inclusive reading was chosen: an RSI sitting exactly at the exit level
    is no longer on the entry side, consistent with ``rsi_threshold`` treating RSI == threshold
    as neither side.

    Vectorised form: entry events ``e_t`` in {+1, -1, 0}; ``L_t`` = index of the last event at or
    before t (running maximum of event indices). With no event yet the state is 0; otherwise it is
    ``e_{L_t}`` unless an exit-condition bar for that side occurred in ``(L_t, t]``, which is read
    off cumulative counts of exit-condition bars: ``count_t - count_{L_t} > 0``.
    """
    r = _gather(cache.rsi, p["period"])
    n_rows, n_bars = r.shape
    oversold = p["oversold"][:, None]
    overbought = p["overbought"][:, None]
    exit_level = p["exit_level"][:, None]

    long_entry = r < oversold  # NaN compares False: no events during warm-up
    short_entry = (r > overbought) & ~long_entry
    event = long_entry.view(np.int8) - short_entry.view(np.int8)
    has_event = long_entry | short_entry
    del short_entry

    bar = np.arange(n_bars, dtype=np.int32)
    last = np.where(has_event, bar[None, :], np.int32(-1))
    np.maximum.accumulate(last, axis=1, out=last)
    started = last >= 0
    np.maximum(last, 0, out=last)
    side = np.take_along_axis(event, last, axis=1)
    side[~started] = 0
    del event, has_event, long_entry

    out = side  # int8 (s, T), edited in place below
    long_exits = np.cumsum(r >= exit_level, axis=1, dtype=np.int32)
    long_exits -= np.take_along_axis(long_exits, last, axis=1)
    out[(side == 1) & (long_exits > 0)] = 0
    del long_exits
    short_exits = np.cumsum(r <= exit_level, axis=1, dtype=np.int32)
    short_exits -= np.take_along_axis(short_exits, last, axis=1)
    out[(side == -1) & (short_exits > 0)] = 0
    del short_exits
    out[np.isnan(r)] = NO_VALUE
    return out


def _momentum_breakout_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    pct = _gather(cache.momentum_pct, p["period"])
    threshold = p["threshold"][:, None]
    out = np.zeros(pct.shape, dtype=np.int8)
    out[pct > threshold] = 1
    out[pct < -threshold] = -1
    out[np.isnan(pct)] = NO_VALUE
    return out


def _momentum_block(cache: IndicatorCache, p: dict[str, np.ndarray]) -> np.ndarray:
    average = _gather(cache.sma, p["period"])
    return _sign_compare(np.broadcast_to(cache.close, average.shape), average)


_BLOCKS: dict[str, Callable[[IndicatorCache, dict[str, np.ndarray]], np.ndarray]] = {
    "sma_crossover": _sma_crossover_block,
    "ma_crossover": _ma_crossover_block,
    "bollinger_bands": _bollinger_bands_block,
    "bollinger_breakout": _bollinger_breakout_block,
    "rsi_bands": _rsi_bands_block,
    "rsi_threshold": _rsi_threshold_block,
    "rsi_extreme": _rsi_extreme_block,
    "momentum_breakout": _momentum_breakout_block,
    "momentum": _momentum_block,
}


# --------------------------------------------------------------------------- public API


def _resolve_cache(bars: pd.DataFrame, cache: IndicatorCache | None) -> IndicatorCache:
    if cache is None:
        return IndicatorCache(bars)
    if cache.n_bars != len(bars):
        raise ValueError(
            f"IndicatorCache holds {cache.n_bars} bars but bars has {len(bars)} rows; "
            "build the cache from the same bar series"
        )
    return cache


def _evaluate_chunk(cache: IndicatorCache, chunk: Sequence[StrategyConfig]) -> np.ndarray:
    n_bars = cache.n_bars
    block = np.full((len(chunk), n_bars), NO_VALUE, dtype=np.int8)
    by_type: dict[str, list[int]] = {}
    for i, config in enumerate(chunk):
        by_type.setdefault(config.strategy_type, []).append(i)
    for strategy_type, rows in by_type.items():
        params = _param_table([chunk[i] for i in rows])
        # Sort the type's rows by parameters so that sub-blocks share periods.
        order = np.lexsort(tuple(params[name] for name in reversed(STRATEGY_PARAMETERS[strategy_type])))
        rows_sorted = np.asarray(rows, dtype=np.int64)[order]
        params = {name: values[order] for name, values in params.items()}
        evaluate = _BLOCKS[strategy_type]
        for sl in _row_slices(len(rows_sorted), n_bars):
            block[rows_sorted[sl]] = evaluate(cache, {k: v[sl] for k, v in params.items()})
    return block


def iter_signal_chunks(
    bars: pd.DataFrame,
    configs: Sequence[StrategyConfig],
    chunk_size: int = 512,
    cache: IndicatorCache | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Evaluate ``configs`` on ``bars`` chunk by chunk, in ``configs`` order.

    Memory stays bounded by one ``chunk_size x T`` int8 block plus row-bounded float temporaries,
    so grids of many thousands of strategies can be streamed to storage.

    Args:
        bars: DataFrame with lower-case ``open, high, low, close, volume`` columns, T rows,
            oldest first, finite prices.
        configs: strategy configurations (types in :data:`STRATEGY_TYPES`).
        chunk_size: number of configurations per yielded block, >= 1.
        cache: an :class:`IndicatorCache` of the same ``bars`` to share indicators with other
            callers (e.g. the classifiers); built internally when None.

    Returns:
        An iterator of ``(offset, block)``: ``offset`` is the index in ``configs`` of the block's
        first row; ``block`` is an int8 array ``(s, T)`` (``s <= chunk_size``) of -1/0/+1 and
        :data:`~admf_assets.core.sparse.NO_VALUE` on warm-up bars.

    Raises:
        ValueError: raised at call time (before iteration) for an unknown ``strategy_type`` (the
            message names it), a missing or non-finite parameter, a period that is not an integer
            >= 1, ``chunk_size < 1``, a bars frame without a finite ``close`` column, or a cache
            built from a different number of bars.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    configs = list(configs)
    for config in configs:
        _check_type(config.strategy_type)
        for name in STRATEGY_PARAMETERS[config.strategy_type]:
            _param_value(config, name)
    cache = _resolve_cache(bars, cache)

    def generate() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(configs), int(chunk_size)):
            yield start, _evaluate_chunk(cache, configs[start : start + int(chunk_size)])

    return generate()


def evaluate_strategies(
    bars: pd.DataFrame,
    configs: Sequence[StrategyConfig],
    cache: IndicatorCache | None = None,
) -> np.ndarray:
    """Dense signals of every configuration on every bar.

    Args:
        bars: DataFrame with lower-case ``open, high, low, close, volume`` columns, T rows.
        configs: S strategy configurations.
        cache: optional shared :class:`IndicatorCache` of the same bars.

    Returns:
        int8 array ``(S, T)``; row i is ``configs[i]``: -1/0/+1, and
        :data:`~admf_assets.core.sparse.NO_VALUE` before the strategy has all its indicators.

    Raises:
        ValueError: as :func:`iter_signal_chunks`.
    """
    configs = list(configs)
    chunks = iter_signal_chunks(bars, configs, cache=cache)
    out = np.empty((len(configs), len(bars)), dtype=np.int8)
    for start, block in chunks:
        out[start : start + block.shape[0]] = block
    return out
