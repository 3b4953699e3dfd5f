"""Grid evaluation: bars + configurations -> sparse change rows, in bounded memory.

Strategies are evaluated by the compiled loops of :mod:`admf_assets.core.kernels` (through
:func:`admf_assets.core.strategies.signal_sparse_rows`), which emit change rows directly: no dense
``(strategies x bars)`` block is built. Indicators are shared through one
:class:`~admf_assets.core.indicators.IndicatorCache`; memory is the indicator table (distinct
indicator rows x T float64), a ``chunk_size x T`` scratch block and the rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
import pandas as pd

from admf_assets.core import kernels
from admf_assets.core.classifiers import evaluate_classifiers
from admf_assets.core.config import ClassifierConfig, StrategyConfig
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.sparse import SparseRows, encode_sparse
from admf_assets.core.strategies import signal_sparse_rows


def concat_rows(parts: Sequence[SparseRows], n_series: int, n_bars: int, offsets: Sequence[int]) -> SparseRows:
    """Concatenate row blocks whose series numbers start at ``offsets`` into one :class:`SparseRows`.

    Blocks must be given in increasing offset order so the result stays sorted by (series, idx).
    """
    if not parts:
        empty = np.empty(0, dtype=np.int32)
        return SparseRows(empty, empty.copy(), np.empty(0, dtype=np.int8), n_series, n_bars)
    return SparseRows(
        series=np.concatenate([p.series + np.int32(o) for p, o in zip(parts, offsets)]).astype(np.int32),
        idx=np.concatenate([p.idx for p in parts]).astype(np.int32),
        val=np.concatenate([p.val for p in parts]).astype(np.int8),
        n_series=n_series,
        n_bars=n_bars,
    )


def strategy_rows(
    bars: pd.DataFrame,
    configs: Sequence[StrategyConfig],
    *,
    chunk_size: int = 128,
    cache: IndicatorCache | None = None,
) -> SparseRows:
    """Evaluate every strategy on ``bars`` and return its sparse change rows.

    Args:
        bars: DataFrame with float64 columns ``open, high, low, close, volume`` (T rows, in time
            order); the whole history the signals should be computed on.
        configs: S strategy configurations; series ``i`` of the result is ``configs[i]``.
        chunk_size: configurations per compiled call (scratch ``5 * chunk_size * T`` bytes;
            results do not depend on it).
        cache: an indicator cache for ``bars`` to share with classifier evaluation.

    Returns:
        :class:`SparseRows` with ``n_series = S`` and ``n_bars = T``.
    """
    cache = cache if cache is not None else IndicatorCache(bars)
    return signal_sparse_rows(bars, configs, chunk_size=chunk_size, cache=cache)


def classifier_rows(
    bars: pd.DataFrame,
    configs: Sequence[ClassifierConfig],
    *,
    cache: IndicatorCache | None = None,
) -> SparseRows:
    """Evaluate regime classifiers on ``bars``: sparse rows of regime codes (see ``REGIME_LABELS``)."""
    cache = cache if cache is not None else IndicatorCache(bars)
    codes = evaluate_classifiers(bars, configs, cache=cache)
    return encode_sparse(codes)


def slice_rows(rows: SparseRows, start: int, stop: int) -> SparseRows:
    """Rows whose bar index lies in ``[start, stop)``; indices are NOT rebased (same T).

    Slicing a whole-history trace by trading day is how a day partition is written: the union of
    the day slices is exactly the whole-history trace, so a day's rows equal those of one run over
    the whole history, including state carried in from earlier days. ``rows`` must be sorted by
    (series, idx) (the :class:`SparseRows` contract): two binary searches per series
    (:func:`admf_assets.core.kernels.sorted_rows_in_bar_range`), not a pass over every row, so
    writing a year of day files does not rescan the year's rows once per day.
    """
    if len(rows) == 0:
        return rows
    series, idx, val = kernels.sorted_rows_in_bar_range(
        np.ascontiguousarray(rows.series), np.ascontiguousarray(rows.idx), np.ascontiguousarray(rows.val),
        int(rows.n_series), int(start), int(stop),
    )
    return SparseRows(series, idx, val, rows.n_series, rows.n_bars)


def day_spans(days: Sequence[dt.date], lengths: Sequence[int]) -> list[tuple[dt.date, int, int]]:
    """``[(day, start, stop)]`` bar ranges of consecutive day blocks of the given lengths."""
    spans, start = [], 0
    for day, n in zip(days, lengths):
        spans.append((day, start, start + int(n)))
        start += int(n)
    return spans


def day_codes(spans: Sequence[tuple[dt.date, int, int]], n_bars: int) -> np.ndarray:
    """int64 (T,) trading-day ordinal of every bar (0 for the first day), for daily compounding."""
    codes = np.empty(n_bars, dtype=np.int64)
    for i, (_, start, stop) in enumerate(spans):
        codes[start:stop] = i
    return codes
