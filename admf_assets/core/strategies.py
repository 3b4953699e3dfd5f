"""Vectorised evaluation of strategy grids into dense int8 signal matrices.

A strategy's value on a bar is a *held target position* (``+1`` long, ``-1`` short, ``0`` flat),
not an entry event; bars before the strategy has all of its indicators hold
:data:`admf_assets.core.sparse.NO_VALUE`. The rules are those of
``../shared/docs/strategy-semantics.md`` (the authority); indicator definitions and warm-up
lengths are documented in :mod:`admf_assets.core.indicators`.

How a grid is evaluated. The distinct indicator rows the grid needs (``SMA(n)``, population
``sigma(n)``, ``RSI(n)``, percent momentum ``(n)``) are computed once each, in parallel, by the
compiled kernels of :mod:`admf_assets.core.kernels` through one
:class:`~admf_assets.core.indicators.IndicatorCache` (so they are shared with every other user of
the cache, e.g. the classifiers). Each strategy is then evaluated by one fused compiled loop over
the bars (:func:`admf_assets.core.kernels.signal_rows`, strategies spread over the cores) that
emits its sparse change rows directly; no ``(strategies x bars)`` float temporary is ever built.
:func:`signal_sparse_rows` returns those rows; :func:`iter_signal_chunks` and
:func:`evaluate_strategies` expand them to dense int8 blocks for callers that want them. The
NumPy array-at-a-time implementation these kernels replaced is kept in the tests
(``tests/core/reference_strategies.py``) and the results are checked to be identical.

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
rsi_extreme        period, oversold, overbought,         stateful, see below
                   exit_level
momentum_breakout  period, threshold                     pct = (c - c[t-n]) / c; +1 if pct > thr,
                                                         -1 if pct < -thr, else 0
momentum           period (``sma_period`` alias)         +1 if c > SMA(period), -1 if <, 0 if ==
================== ===================================== =============================================

``rsi_extreme``: enter on an extreme, hold until RSI crosses ``exit_level``. Per bar (the state
before the first RSI value is flat, 0)::

    if   RSI < oversold:                        state = +1   # entry (also re-entry / flip)
    elif RSI > overbought:                      state = -1
    elif state == +1 and RSI >= exit_level:     state = 0    # long exit
    elif state == -1 and RSI <= exit_level:     state = 0    # short exit
    else:                                       state unchanged

Entries are tested before exits on every bar, so a bar that jumps from below ``oversold`` to
above ``overbought`` goes straight from +1 to -1, and an entry bar is never also an exit bar.
"Crosses exit_level" is taken inclusively: a long is out once RSI *reaches* ``exit_level``
(``>=``), a short once RSI reaches it from above (``<=``). ADMF-PC's stored sources contain no
``rsi_extreme`` implementation to copy, so the inclusive reading was chosen: an RSI sitting
exactly at the exit level is no longer on the entry side, consistent with ``rsi_threshold``
treating RSI == threshold as neither side.

Note on ``bollinger_breakout``: ADMF-PC's code of that name actually trades mean reversion
(``price > upper -> -1``); strategy-semantics.md resolves the contradiction in favour of the
trend-following rule above, which is what is implemented.

Warm-up (first bar with a value, see :func:`strategy_warmup`): crossovers ``max(fast, slow) - 1``;
Bollinger and ``momentum`` ``period - 1``; RSI strategies ``period``; ``momentum_breakout``
``period``.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from admf_assets.core.config import StrategyConfig
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core import kernels
from admf_assets.core.sparse import SparseRows, decode_dense

__all__ = [
    "STRATEGY_TYPES",
    "STRATEGY_PARAMETERS",
    "evaluate_strategies",
    "iter_signal_chunks",
    "signal_sparse_rows",
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


# --------------------------------------------------------------------------- compiled plan


_LAYOUT: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    # type: (indicator a, its period parameter, indicator b, its period parameter, (p1, p2, p3))
    "sma_crossover": ("sma", "fast_period", "sma", "slow_period", ()),
    "ma_crossover": ("sma", "fast_period", "sma", "slow_period", ()),
    "bollinger_bands": ("sma", "period", "pstd", "period", ("std_dev",)),
    "bollinger_breakout": ("sma", "period", "pstd", "period", ("std_dev",)),
    "rsi_bands": ("rsi", "period", "rsi", "period", ("oversold", "overbought")),
    "rsi_threshold": ("rsi", "period", "rsi", "period", ("threshold",)),
    "rsi_extreme": ("rsi", "period", "rsi", "period", ("oversold", "overbought", "exit_level")),
    "momentum_breakout": ("momentum_pct", "period", "momentum_pct", "period", ("threshold",)),
    "momentum": ("sma", "period", "sma", "period", ()),
}
"""What :func:`admf_assets.core.kernels.signal_rows` reads for each type: table rows a and b
(indicator, period parameter) and the numeric parameters p1..p3."""


def _type_params(configs: Sequence[StrategyConfig], strategy_type: str) -> dict[str, np.ndarray]:
    """float64 arrays of every parameter of same-type configurations, validated as
    :func:`_param_value` does (whose per-value check runs, for its message, when a bulk check fails)."""
    out = {}
    for name in STRATEGY_PARAMETERS[strategy_type]:
        alias = _PARAM_ALIASES.get((strategy_type, name))
        try:
            raw = [c.params[name] if name in c.params else c.params[alias] for c in configs]
            ok = all(type(v) in (int, float) for v in raw)
        except KeyError:
            ok = False
        values = np.array(raw, dtype=np.float64) if ok else None
        if ok and not np.all(np.isfinite(values)):
            ok = False
        if ok and name.endswith("period") and not np.all((values >= 1) & (values == np.floor(values))):
            ok = False
        if not ok:
            values = np.array([float(_param_value(c, name)) for c in configs], dtype=np.float64)
        out[name] = values
    return out


class _Plan:
    """Per-strategy kernel inputs: kind codes, indicator-table rows and parameters (arrays (S,)).

    Built per strategy type with array operations (the parameters of a type gathered once); the
    distinct (indicator, period) pairs become the rows of the indicator table, ``keys``."""

    def __init__(self, configs: Sequence[StrategyConfig]) -> None:
        n = len(configs)
        by_type: dict[str, list[int]] = {}
        for i, config in enumerate(configs):
            by_type.setdefault(config.strategy_type, []).append(i)
        for strategy_type in by_type:
            _check_type(strategy_type)
        self.kind = np.empty(n, dtype=np.int64)
        self.params = np.zeros((3, n), dtype=np.float64)
        wanted: dict[str, list[tuple[np.ndarray, np.ndarray, int]]] = {}  # indicator -> (rows, periods, slot)
        for strategy_type, members in by_type.items():
            rows = np.asarray(members, dtype=np.int64)
            values = _type_params([configs[i] for i in members], strategy_type)
            ind_a, per_a, ind_b, per_b, extra = _LAYOUT[strategy_type]
            self.kind[rows] = kernels.KIND_CODES[strategy_type]
            for j, name in enumerate(extra):
                self.params[j, rows] = values[name]
            wanted.setdefault(ind_a, []).append((rows, values[per_a].astype(np.int64), 0))
            wanted.setdefault(ind_b, []).append((rows, values[per_b].astype(np.int64), 1))
        self.row_a = np.empty(n, dtype=np.int64)
        self.row_b = np.empty(n, dtype=np.int64)
        self.keys: list[tuple[str, int]] = []
        for indicator, parts in wanted.items():
            distinct = np.unique(np.concatenate([periods for _, periods, _ in parts]))
            base = len(self.keys)
            self.keys += [(indicator, int(p)) for p in distinct]
            for rows, periods, slot in parts:
                target = self.row_a if slot == 0 else self.row_b
                target[rows] = base + np.searchsorted(distinct, periods)


def _validate(configs: Sequence[StrategyConfig]) -> None:
    for config in configs:
        _check_type(config.strategy_type)
        for name in STRATEGY_PARAMETERS[config.strategy_type]:
            _param_value(config, name)


def _check_chunk_size(chunk_size: object) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    return int(chunk_size)


_ROW_RESERVE = 1 << 27
"""Rows reserved up front for a grid's output (134 M rows, 1.2 GB of address space, none of it
resident until written)."""


def _rows_in_order(cache: IndicatorCache, configs: Sequence[StrategyConfig], chunk_size: int) -> SparseRows:
    """Sparse rows of ``configs`` (series i = configs[i]).

    ``chunk_size`` strategies per compiled call, spread over the cores; each writes its rows into
    its own row of a reused ``chunk_size x T`` scratch block, and one parallel copy per chunk
    packs them into the flat output arrays, in configuration order."""
    n_series, n_bars = len(configs), cache.n_bars
    if n_series == 0:
        empty = np.empty(0, dtype=np.int32)
        return SparseRows(empty, empty.copy(), np.empty(0, dtype=np.int8), 0, n_bars)
    plan = _Plan(configs)
    table = cache.indicator_table(plan.keys)
    width = min(chunk_size, n_series)
    out_idx = np.empty((width, n_bars), dtype=np.int32)
    out_val = np.empty((width, n_bars), dtype=np.int8)
    close = np.array(cache.close)
    p = plan.params
    # Output arrays sized for the worst case but capped; np.empty only reserves address space and
    # pages are touched as rows are written, so the reserve costs no resident memory. Grown by
    # copying if a grid ever emits more rows than the cap.
    capacity = min(n_series * n_bars, _ROW_RESERVE)
    series, idx, val = (np.empty(capacity, dtype=np.int32), np.empty(capacity, dtype=np.int32), np.empty(capacity, dtype=np.int8))
    total = 0
    for start in range(0, n_series, chunk_size):
        stop = min(n_series, start + chunk_size)
        n = stop - start
        counts = np.empty(n, dtype=np.int64)
        with kernels.balanced():
            kernels.signal_rows(
                plan.kind[start:stop], close, table, plan.row_a[start:stop], plan.row_b[start:stop],
                p[0, start:stop], p[1, start:stop], p[2, start:stop], out_idx[:n], out_val[:n], counts,
            )
        offsets = np.empty(n, dtype=np.int64)
        offsets[0] = total
        np.cumsum(counts[:-1], out=offsets[1:])
        offsets[1:] += total
        needed = total + int(counts.sum())
        if needed > series.shape[0]:
            size = max(needed, 2 * series.shape[0])
            series, idx, val = (np.concatenate([a[:total], np.empty(size - total, dtype=a.dtype)]) for a in (series, idx, val))
        with kernels.balanced():
            kernels.compact_rows(out_idx[:n], out_val[:n], counts, offsets, start, series, idx, val)
        total = needed
    series, idx, val = series[:total], idx[:total], val[:total]
    return SparseRows(series, idx, val, n_series, n_bars)


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


def iter_signal_chunks(
    bars: pd.DataFrame,
    configs: Sequence[StrategyConfig],
    chunk_size: int = 128,
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
    chunk_size = _check_chunk_size(chunk_size)
    configs = list(configs)
    _validate(configs)
    cache = _resolve_cache(bars, cache)

    def generate() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(configs), chunk_size):
            yield start, decode_dense(_rows_in_order(cache, configs[start : start + chunk_size], chunk_size))

    return generate()


def signal_sparse_rows(
    bars: pd.DataFrame,
    configs: Sequence[StrategyConfig],
    chunk_size: int = 128,
    cache: IndicatorCache | None = None,
) -> SparseRows:
    """Sparse change rows of every configuration, straight from the compiled loops.

    Equal to ``encode_sparse(evaluate_strategies(bars, configs))`` without ever building the dense
    matrix: memory is the indicator table (distinct indicator rows x T float64), a
    ``chunk_size x T`` int32 + int8 scratch block, and the rows themselves.

    Args:
        bars: DataFrame with lower-case ``open, high, low, close, volume`` columns, T rows.
        configs: S strategy configurations; series ``i`` of the result is ``configs[i]``.
        chunk_size: strategies per compiled call (scratch ``5 * chunk_size * T`` bytes; results do
            not depend on it).
        cache: optional shared :class:`IndicatorCache` of the same bars.

    Returns:
        :class:`~admf_assets.core.sparse.SparseRows` (series int32, idx int32, val int8 in
        -1/0/+1) sorted by (series, idx), ``n_series = S``, ``n_bars = T``.

    Raises:
        ValueError: as :func:`iter_signal_chunks`.
    """
    chunk_size = _check_chunk_size(chunk_size)
    configs = list(configs)
    cache = _resolve_cache(bars, cache)
    return _rows_in_order(cache, configs, chunk_size)  # the plan validates every configuration


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
    return decode_dense(signal_sparse_rows(bars, configs, cache=cache))
