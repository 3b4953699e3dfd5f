"""The Python API for researchers: sparse traces and their metrics, with no Dagster involved.

Typical use::

    import pandas as pd
    from admf_assets.core.api import compute_signal_traces, trace_metrics
    from admf_assets.core.grid import load_grid

    bars = pd.read_csv("SPY_5m.csv")                 # vendor spellings are accepted
    grid = load_grid("my_grid.yaml")
    trace = compute_signal_traces(bars, grid.strategies, symbol="SPY")   # pyarrow.Table
    metrics = trace_metrics(trace, bars)                                # one row per strategy

``idx`` in the returned traces is relative to the bars given (row 0 of ``bars`` is idx 0), and
the bars are used exactly as given (no session filter; apply
:func:`admf_assets.core.bars.session_mask` first for regular trading hours only).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from admf_assets.core.bars import infer_timeframe, normalize_bars, trading_dates
from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.config import ClassifierConfig, StrategyConfig
from admf_assets.core.engine import classifier_rows, strategy_rows
from admf_assets.core.metrics import CostModel, compute_metrics
from admf_assets.core.traces import build_classifier_table, build_signal_table, series_columns, table_to_rows


def prepare_bars(bars: pd.DataFrame, *, symbol: str | None = None, source: str = "<DataFrame>") -> pd.DataFrame:
    """Normalise a bars DataFrame (vendor column spellings, UTC ``ts``) keeping its row order.

    A frame that already has the normalised column names and a tz-aware ``ts`` is passed through
    (index reset; ``ts`` converted to UTC when it is in another zone, its unit kept; a ``symbol``
    column added when missing); anything else goes through
    :func:`admf_assets.core.bars.normalize_bars`.

    Raises:
        admf_assets.core.bars.BarValidationError: on missing columns or unparseable values,
            naming ``source``, the row and the field.
    """
    if "ts" in bars.columns and {"open", "high", "low", "close", "volume"} <= set(bars.columns) and isinstance(
        bars["ts"].dtype, pd.DatetimeTZDtype
    ):
        out = bars.reset_index(drop=True)
        if str(out["ts"].dtype.tz) != "UTC":
            out = out.assign(ts=out["ts"].dt.tz_convert("UTC"))
        if "symbol" not in out.columns:
            out = out.assign(symbol=symbol or "UNKNOWN")
        return out
    return normalize_bars(bars, source=source, symbol=symbol)


def _symbol_and_timeframe(bars: pd.DataFrame, symbol: str | None, timeframe: str | None) -> tuple[str, str]:
    sym = symbol or (str(bars["symbol"].iloc[0]) if "symbol" in bars.columns and len(bars) else "UNKNOWN")
    tf = timeframe or infer_timeframe(bars["ts"])
    return sym, tf


def compute_signal_traces(
    bars: pd.DataFrame,
    configs: Sequence[StrategyConfig],
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    chunk_size: int = 128,
) -> pa.Table:
    """Sparse signal traces of ``configs`` on ``bars`` (the sparse trace contract of
    ``strategy-semantics.md``).

    Args:
        bars: T bars in time order with a timestamp column and OHLCV (any usual vendor spelling).
        configs: strategy configurations (e.g. ``load_grid(path).strategies``).
        symbol, timeframe: default to the bars' symbol column and their median spacing.
        chunk_size: strategies evaluated per dense block (memory ~ chunk_size * T bytes).

    Returns:
        A ``pyarrow.Table`` with columns ``idx`` (int32, row of ``bars``), ``ts``, ``sym``, ``val``
        (int8 -1/0/+1), ``strat`` (strategy id), ``px`` (bar close), ``strat_hash``, ``metadata``
        (configuration JSON on each strategy's first row, null after); rows grouped by strategy in
        the order of ``configs``, each strategy's rows in bar order.
    """
    norm = prepare_bars(bars, symbol=symbol)
    sym, tf = _symbol_and_timeframe(norm, symbol, timeframe)
    rows = strategy_rows(norm, configs, chunk_size=chunk_size)
    ids, hashes, jsons = series_columns(configs, sym, tf)
    return build_signal_table(
        rows,
        ts=norm["ts"].to_numpy(),
        close=norm["close"].to_numpy(dtype=np.float64),
        symbol=sym,
        series_ids=ids,
        series_hashes=hashes,
        series_json=jsons,
    )


def compute_classifier_traces(
    bars: pd.DataFrame,
    configs: Sequence[ClassifierConfig],
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> pa.Table:
    """Sparse regime traces of ``configs`` on ``bars``; ``val`` holds the regime name (string)."""
    norm = prepare_bars(bars, symbol=symbol)
    sym, tf = _symbol_and_timeframe(norm, symbol, timeframe)
    rows = classifier_rows(norm, configs)
    ids, hashes, jsons = series_columns(configs, sym, tf)
    return build_classifier_table(
        rows,
        ts=norm["ts"].to_numpy(),
        close=norm["close"].to_numpy(dtype=np.float64),
        symbol=sym,
        series_ids=ids,
        series_hashes=hashes,
        series_json=jsons,
        labels_per_series=[REGIME_LABELS[c.classifier_type] for c in configs],
    )


def trace_records(trace: pa.Table) -> list[dict]:
    """Configuration records of a signal trace table, in order of first appearance of ``strat``.

    Raises:
        ValueError: when a strategy's first row carries no ``metadata`` JSON.
    """
    strat = trace.column("strat").to_pylist()
    meta = trace.column("metadata").to_pylist()
    seen: dict[str, dict] = {}
    for s, m in zip(strat, meta):
        if s not in seen:
            if m is None:
                raise ValueError(f"trace rows of strategy {s!r} start without the metadata JSON")
            seen[s] = json.loads(m)
    return list(seen.values())


def trace_metrics(
    trace: pa.Table,
    bars: pd.DataFrame,
    costs: CostModel | None = None,
    *,
    calendar: str = "XNYS",
) -> pd.DataFrame:
    """Performance metrics of every strategy in ``trace`` on the bars it was computed on.

    Args:
        trace: a signal trace table from :func:`compute_signal_traces` (idx relative to ``bars``).
        bars: the same bars, in the same order.
        costs: commission and slippage in basis points per side (default ``CostModel()``).
        calendar: exchange calendar used to group bars into trading days (daily Sharpe/Sortino).

    Returns:
        DataFrame, one row per strategy: ``strategy_id, strategy_hash, strategy_type, parameters``
        (JSON) and :data:`admf_assets.core.metrics.METRIC_COLUMNS` (returns as fractions, Sharpe and
        Sortino annualized with sqrt(252)).

    Raises:
        ValueError: when a trace ``idx`` is outside the bars given.
    """
    norm = prepare_bars(bars)
    records = trace_records(trace)
    ids = [r["id"] for r in records]
    rows = table_to_rows(trace, ids, len(norm))
    dates = trading_dates(norm["ts"], calendar)
    _, day = np.unique(dates, return_inverse=True)
    metrics = compute_metrics(rows, norm["close"].to_numpy(dtype=np.float64), day.astype(np.int64), costs or CostModel())
    head = pd.DataFrame(
        {
            "strategy_id": ids,
            "strategy_hash": [r["hash"] for r in records],
            "strategy_type": [r["type"] for r in records],
            "parameters": [json.dumps(r["parameters"], sort_keys=True) for r in records],
        }
    )
    return pd.concat([head, metrics.reset_index(drop=True)], axis=1)
