"""Analytics tables built from stored bars and traces (pure pandas/NumPy, no Dagster, no DuckDB).

Each function returns a DataFrame whose columns match a table of ``sql/duckdb/000_core.sql`` (or
the strategy index file), so the assets only have to read the store and write the result.
Units follow :mod:`admf_assets.core.metrics`: returns as fractions, Sharpe/Sortino annualized
with sqrt(252) from daily returns, durations in bars.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel, compute_metrics, daily_breakdown, regime_metrics
from admf_assets.core.sparse import NO_VALUE, decode_dense
from admf_assets.core.store import BarHistory, TraceHistory

HEADLINE_METRICS = (
    "total_return",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
    "win_rate",
    "profit_factor",
    "total_trades",
)
"""Metrics copied into ``strategy_index.parquet``."""


def performance_table(layout: WorkspaceLayout, history: BarHistory, traces: TraceHistory, costs: CostModel) -> pd.DataFrame:
    """Rows of the ``strategies`` table for one series: identity, trace location, metrics.

    Returns:
        One row per strategy of ``traces`` with the columns of ``strategies`` except ``run_id``,
        ``created_at`` and ``processed_at`` (set by the writer).
    """
    n_bars = len(history.bars)
    metrics = compute_metrics(traces.rows, history.bars["close"].to_numpy(dtype=np.float64), history.day_code, costs)
    changes = traces.rows.counts()
    head = pd.DataFrame(
        {
            "strategy_id": traces.series_ids,
            "strategy_hash": [c["hash"] for c in traces.configs],
            "strategy_type": [c["type"] for c in traces.configs],
            "symbol": history.symbol,
            "timeframe": history.timeframe,
            "parameters": [json.dumps(c["parameters"], sort_keys=True) for c in traces.configs],
            "constraints": [c.get("constraints") for c in traces.configs],
            "signal_file": layout.signals_glob(history.symbol, history.timeframe),
            "compression_ratio": changes / max(n_bars, 1),
            "total_bars": n_bars,
            "start_ts": history.bars["ts"].iloc[0],
            "end_ts": history.bars["ts"].iloc[-1],
            "commission_bps": costs.commission_bps,
            "slippage_bps": costs.slippage_bps,
        }
    )
    return pd.concat([head, metrics.reset_index(drop=True)], axis=1)


def parameter_rows(strategies: pd.DataFrame) -> pd.DataFrame:
    """Long table ``strategy_parameters``: one row per (strategy, numeric parameter)."""
    records = []
    for sid, stype, params in zip(strategies["strategy_id"], strategies["strategy_type"], strategies["parameters"]):
        for name, value in json.loads(params).items():
            records.append((sid, stype, name, float(value)))
    return pd.DataFrame(records, columns=["strategy_id", "strategy_type", "parameter_name", "parameter_value"])


def strategy_index_table(strategies: pd.DataFrame) -> pd.DataFrame:
    """``strategy_index.parquet``: one row per strategy, each parameter as its own column.

    Columns: strategy_id, strategy_hash, strategy_type, one column per parameter name (NULL where
    the type has no such parameter; integer parameters stay integers), constraints, symbol,
    timeframe, trace_path (relative glob of the series' day files; filter on ``strat =
    strategy_id``), signal_changes, compression_ratio, and :data:`HEADLINE_METRICS` (NaN until
    metrics have been computed).
    """
    params = [json.loads(p) for p in strategies["parameters"]]
    names = sorted({k for p in params for k in p})
    out = pd.DataFrame(
        {
            "strategy_id": strategies["strategy_id"].to_numpy(),
            "strategy_hash": strategies["strategy_hash"].to_numpy(),
            "strategy_type": strategies["strategy_type"].to_numpy(),
        }
    )
    for name in names:
        values = [p.get(name) for p in params]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            out[name] = pd.array(values, dtype="Int64")
        else:
            out[name] = pd.array([None if v is None else float(v) for v in values], dtype="Float64")
    out["constraints"] = strategies["constraints"].to_numpy()
    out["symbol"] = strategies["symbol"].to_numpy()
    out["timeframe"] = strategies["timeframe"].to_numpy()
    out["trace_path"] = strategies["signal_file"].to_numpy()
    out["signal_changes"] = strategies["signal_changes"].to_numpy()
    out["compression_ratio"] = strategies["compression_ratio"].to_numpy()
    for m in HEADLINE_METRICS:
        out[m] = strategies[m].to_numpy() if m in strategies.columns else np.nan
    return out


def classifier_table(layout: WorkspaceLayout, history: BarHistory, classifiers: TraceHistory) -> pd.DataFrame:
    """Rows of the ``classifiers`` table: regime counts (bars), average spell length (bars),
    stability (1 - changes / bars) and the transition matrix ``{from: {to: count}}``."""
    dense = decode_dense(classifiers.rows)
    n_bars = len(history.bars)
    changes = classifiers.rows.counts()
    records = []
    for i, cfg in enumerate(classifiers.configs):
        labels = classifiers.labels[i]
        codes = dense[i]
        valid = codes[codes != NO_VALUE]
        counts = {labels[c]: int(n) for c, n in zip(*np.unique(valid, return_counts=True))}
        series_rows = classifiers.rows.val[classifiers.rows.series == i]
        transitions: dict[str, dict[str, int]] = {}
        for (a, b), n in Counter(zip(series_rows[:-1].tolist(), series_rows[1:].tolist())).items():
            transitions.setdefault(labels[a], {})[labels[b]] = n
        records.append(
            {
                "classifier_id": cfg["id"],
                "classifier_hash": cfg["hash"],
                "classifier_type": cfg["type"],
                "symbol": history.symbol,
                "timeframe": history.timeframe,
                "parameters": json.dumps(cfg["parameters"], sort_keys=True),
                "state_file": f"traces/classifiers/{layout.series_key(history.symbol, history.timeframe)}/*.parquet",
                "regime_changes": int(changes[i]),
                "compression_ratio": float(changes[i] / max(n_bars, 1)),
                "regime_counts": json.dumps(counts, sort_keys=True),
                "avg_regime_duration": float(len(valid) / changes[i]) if changes[i] else np.nan,
                "regime_stability": float(1.0 - changes[i] / max(n_bars, 1)),
                "transition_matrix": json.dumps(transitions, sort_keys=True),
            }
        )
    return pd.DataFrame(records)


def regime_table(history: BarHistory, signals: TraceHistory, classifiers: TraceHistory, costs: CostModel) -> pd.DataFrame:
    """Rows of ``regime_performance``: per strategy x classifier x regime (see
    :func:`admf_assets.core.metrics.regime_metrics` for the attribution rule)."""
    close = history.bars["close"].to_numpy(dtype=np.float64)
    dense = decode_dense(classifiers.rows)
    frames = []
    for i, cfg in enumerate(classifiers.configs):
        rm = regime_metrics(signals.rows, close, history.day_code, dense[i], classifiers.labels[i], costs)
        rm.insert(0, "classifier_id", cfg["id"])
        rm.insert(0, "strategy_id", np.asarray(signals.series_ids, dtype=object)[rm["series"].to_numpy()])
        frames.append(rm.drop(columns="series"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def daily_summary_table(history: BarHistory, signals: TraceHistory, costs: CostModel, days: Sequence) -> pd.DataFrame:
    """Rows of ``daily_signal_summary`` for ``days``: per date, symbol and strategy_type the signal
    changes, trades closed, wins, losses, net P&L (sum over strategies of the day's compounded net
    return, a fraction of one strategy's capital) and the average net return of trades closed."""
    close = history.bars["close"].to_numpy(dtype=np.float64)
    daily = daily_breakdown(signals.rows, close, history.day_code, costs)
    day_list = history.days
    daily["date"] = [day_list[d] for d in daily["day"].to_numpy()]
    daily = daily[daily["date"].isin(set(days))]
    daily["strategy_type"] = np.asarray([c["type"] for c in signals.configs], dtype=object)[daily["series"].to_numpy()]
    daily["trade_return_sum"] = daily["avg_trade_return"].fillna(0.0) * daily["trades_closed"]
    grouped = daily.groupby(["date", "strategy_type"], sort=True).agg(
        strategy_count=("series", "nunique"),
        signal_changes=("signal_changes", "sum"),
        trades_closed=("trades_closed", "sum"),
        wins=("wins", "sum"),
        losses=("losses", "sum"),
        net_pnl=("net_pnl", "sum"),
        trade_return_sum=("trade_return_sum", "sum"),
    )
    grouped["avg_trade_return"] = np.where(
        grouped["trades_closed"] > 0, grouped["trade_return_sum"] / grouped["trades_closed"].clip(lower=1), np.nan
    )
    out = grouped.drop(columns="trade_return_sum").reset_index()
    out.insert(1, "symbol", history.symbol)
    return out
