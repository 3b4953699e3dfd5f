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
from admf_assets.core.metrics import CostModel, compute_metrics, daily_breakdown, regime_metrics_many
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
    changes = metrics["signal_changes"].to_numpy(dtype=np.int64)  # rows per series, counted by compute_metrics' row check
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
    """Long table ``strategy_parameters``: one row per (strategy, numeric parameter).

    ``parameters`` holds each strategy's JSON object (the same text for a strategy on every
    symbol); each distinct text is parsed once."""
    parsed: dict[str, dict] = {}
    records = []
    for sid, stype, params in zip(strategies["strategy_id"], strategies["strategy_type"], strategies["parameters"]):
        values = parsed.get(params)
        if values is None:
            values = parsed[params] = json.loads(params)
        for name, value in values.items():
            records.append((sid, stype, name, float(value)))
    return pd.DataFrame(records, columns=["strategy_id", "strategy_type", "parameter_name", "parameter_value"])


def strategy_index_table(strategies: pd.DataFrame) -> pd.DataFrame:
    """``strategy_index.parquet``: one row per strategy, each parameter as its own column.

    ``strategies["parameters"]`` holds each strategy's parameters as JSON text (the warehouse's
    ``strategies`` table) or as dicts (:func:`admf_assets.core.research.index_source`).

    Columns: strategy_id, strategy_hash, strategy_type, one column per parameter name (NULL where
    the type has no such parameter; integer parameters stay integers), constraints, symbol,
    timeframe, trace_path (relative glob of the series' day files; filter on ``strat =
    strategy_id``), signal_changes, compression_ratio, and :data:`HEADLINE_METRICS` (NaN until
    metrics have been computed).
    """
    params = [p if isinstance(p, dict) else json.loads(p) for p in strategies["parameters"]]
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
    # every classifier in one walk over the signal rows (the same figures as one call each)
    tables = regime_metrics_many(signals.rows, close, history.day_code, list(dense), classifiers.labels, costs)
    frames = []
    for cfg, rm in zip(classifiers.configs, tables):
        rm.insert(0, "classifier_id", cfg["id"])
        rm.insert(0, "strategy_id", np.asarray(signals.series_ids, dtype=object)[rm["series"].to_numpy()])
        frames.append(rm.drop(columns="series"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def daily_summary_table(history: BarHistory, signals: TraceHistory, costs: CostModel, days: Sequence) -> pd.DataFrame:
    """Rows of ``daily_signal_summary`` for ``days``: per date, symbol and strategy_type the signal
    changes, trades closed, wins, losses, net P&L (sum over strategies of the day's compounded net
    return, a fraction of one strategy's capital) and the average net return of trades closed.

    Returns:
        One row per (date, strategy_type) of ``days`` held by ``history``, sorted by date then
        type: date (``datetime.date``), symbol, strategy_type, strategy_count (strategies of the
        type: every strategy has a row on every day), signal_changes, trades_closed, wins, losses
        (int64), net_pnl, avg_trade_return (float64, NaN without closed trades).
    """
    close = history.bars["close"].to_numpy(dtype=np.float64)
    day_list = history.days
    wanted = set(days)
    codes = np.unique(np.asarray(history.day_code, dtype=np.int64))
    only = [int(c) for c in codes if day_list[c] in wanted]  # only the requested days' rows
    daily = daily_breakdown(signals.rows, close, history.day_code, costs, only_days=only)
    daily = daily[daily["day"].isin(only)]
    # grouped on integer codes (day code, type code in name order), named afterwards: the
    # (S x days) rows never carry Python date or string objects
    type_names, type_of_series = np.unique(np.asarray([c["type"] for c in signals.configs], dtype=object), return_inverse=True)
    daily = daily.assign(
        type_code=type_of_series[daily["series"].to_numpy()],
        trade_return_sum=daily["avg_trade_return"].fillna(0.0) * daily["trades_closed"],
    )
    grouped = daily.groupby(["day", "type_code"], sort=True).agg(
        strategy_count=("series", "size"),
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
    out.insert(0, "date", [day_list[d] for d in out["day"].to_numpy()])
    out.insert(1, "symbol", history.symbol)
    out.insert(2, "strategy_type", type_names[out["type_code"].to_numpy()])
    return out.drop(columns=["day", "type_code"])


# --------------------------------------------------------------------------------------------
# Researcher analytics (issue 5): overfitting-aware ranking, regime-aware score, correlations
# --------------------------------------------------------------------------------------------

REGIME_SHRINK_TRADES = 5.0
"""k of the regime-aware score's small-sample shrinkage ``n_r / (n_r + k)`` (closed trades)."""


def config_hash(strategy_hashes) -> str:
    """sha256[:12] of the sorted, de-duplicated strategy hashes: identifies a grid's content."""
    import hashlib

    return hashlib.sha256(",".join(sorted(set(strategy_hashes))).encode()).hexdigest()[:12]


def series_daily_returns(history: BarHistory, traces: TraceHistory, costs: CostModel) -> pd.DataFrame:
    """Daily compounded net returns of every strategy of one series
    (:func:`admf_assets.core.metrics.daily_net_returns`).

    Returns:
        float64 DataFrame (D, S): index the trading dates (``datetime.date``), one column per
        strategy_id, values fractions.
    """
    from admf_assets.core.metrics import daily_net_returns

    days, returns = daily_net_returns(traces.rows, history.bars["close"].to_numpy(dtype=np.float64), history.day_code, costs)
    dates = [history.days[d] for d in days]
    return pd.DataFrame(returns.T, index=pd.Index(dates, name="date"), columns=traces.series_ids)


def overfitting_tables(daily: pd.DataFrame, strategies: pd.DataFrame, symbol: str, timeframe: str) -> tuple[pd.DataFrame, dict]:
    """Deflated Sharpe Ratio of each strategy of one grid and the grid's PBO.

    Args:
        daily: (D, S) daily net returns of :func:`series_daily_returns`.
        strategies: the grid's rows of the ``strategies`` table (strategy_id, strategy_hash,
            sharpe_ratio), any order.
        symbol, timeframe: the grid's series.

    Returns:
        ``(per_strategy, grid)``: per_strategy has strategy_id, grid_id, deflated_sharpe_ratio,
        return_skewness, return_kurtosis (non-excess), return_days; ``grid`` is the
        ``grid_overfitting`` row (without run_id / created_at). DSR trials are the strategies
        with a defined daily Sharpe ratio; PBO (CSCV, Sharpe ratio as the performance measure)
        compares those same trials and is NULL with fewer than 2 trials or 4 days.
        Formulas: :mod:`admf_assets.core.overfitting`, docs/analytics.md.
    """
    from admf_assets.core.overfitting import grid_deflated_sharpe, probability_of_backtest_overfitting, return_moments

    ids = list(daily.columns)
    returns = daily.to_numpy(dtype=np.float64).T  # (S, D)
    gid = f"{symbol}_{timeframe}_{config_hash(strategies['strategy_hash'])}"
    moments = return_moments(returns)
    dsr = grid_deflated_sharpe(returns, moments=moments)
    per = pd.DataFrame(
        {
            "strategy_id": ids,
            "grid_id": gid,
            "deflated_sharpe_ratio": dsr["deflated_sharpe_ratio"],
            "return_skewness": moments["skew"],
            "return_kurtosis": moments["kurtosis"],
            "return_days": moments["n_obs"].astype(np.int64),
        }
    )
    trial = np.isfinite(moments["sharpe"])
    pbo = None
    if trial.sum() >= 2 and returns.shape[1] >= 4:
        pbo = probability_of_backtest_overfitting(returns[trial])
    merged = strategies[["strategy_id", "sharpe_ratio"]].merge(per[["strategy_id", "deflated_sharpe_ratio"]], on="strategy_id")
    ranked = merged.sort_values(["sharpe_ratio", "strategy_id"], ascending=[False, True], na_position="last")
    best = ranked.iloc[0] if len(ranked) and pd.notna(ranked["sharpe_ratio"].iloc[0]) else None
    grid = {
        "grid_id": gid,
        "symbol": symbol,
        "timeframe": timeframe,
        "config_hash": gid.rsplit("_", 1)[1],
        "n_strategies": len(ids),
        "n_trials": int(dsr["n_trials"]),
        "n_obs": int(returns.shape[1]),
        "n_blocks": pbo.n_blocks if pbo else None,
        "n_splits": pbo.n_splits if pbo else None,
        "pbo": pbo.pbo if pbo else None,
        "performance_degradation": pbo.performance_degradation if pbo else None,
        "expected_max_sharpe": dsr["expected_max_sharpe"],
        "sharpe_variance": dsr["sharpe_variance"],
        "best_strategy_id": best["strategy_id"] if best is not None else None,
        "best_sharpe": float(best["sharpe_ratio"]) if best is not None else None,
        "best_deflated_sharpe": float(best["deflated_sharpe_ratio"]) if best is not None else None,
    }
    return per, grid


def regime_aware_scores(regimes: pd.DataFrame, shrink_trades: float = REGIME_SHRINK_TRADES) -> pd.DataFrame:
    """Add ``regime_weight`` and ``regime_aware_score`` to ``regime_performance`` rows.

    For a (strategy, classifier) pair with closed trades ``n_r`` entered in regime ``r``
    (``N = sum n_r``) and regime Sharpe ratios ``SR_r`` (annualized):

    ``regime_weight_r = n_r / N`` and
    ``regime_aware_score = sum_r (n_r / N) * max(SR_r, 0) * n_r / (n_r + k)``, ``k = shrink_trades``.

    It is the trade-weighted Sharpe ratio of trading the strategy only in the regimes where it
    earns (regimes with SR_r <= 0 or an undefined SR_r contribute 0 but keep their trades in N,
    so a classifier that merely shrinks the sample is not rewarded), each regime's Sharpe shrunk
    towards 0 when it rests on few trades. NaN when the pair has no closed trade in any regime.

    Returns:
        A copy of ``regimes`` with the two float64 columns (the score repeated on each row of the pair).
    """
    out = regimes.copy()
    n = out["trade_count"].astype(np.float64)
    total = out.groupby(["strategy_id", "classifier_id"], sort=False)["trade_count"].transform("sum").astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["regime_weight"] = np.where(total > 0, n / total, np.nan)
        sr = out["sharpe_ratio"].astype(np.float64).clip(lower=0.0).fillna(0.0)
        part = np.where(total > 0, (n / total) * sr * n / (n + shrink_trades), 0.0)
    out["_part"] = part
    score = out.groupby(["strategy_id", "classifier_id"], sort=False)["_part"].transform("sum")
    out["regime_aware_score"] = np.where(total > 0, score, np.nan)
    return out.drop(columns="_part")


def correlation_table(daily: pd.DataFrame, ranks: dict[str, int], min_days: int = 3) -> pd.DataFrame:
    """Pearson correlations of the daily net returns of ranked strategies, each pair once.

    Args:
        daily: (D, S) daily returns, one column per strategy_id, index trading dates (NaN where
            a strategy's symbol has no bar that day); strategies of different symbols are
            aligned on their common dates.
        ranks: strategy_id -> rank (1 = best Sharpe ratio); columns of ``daily``.
        min_days: pairs with fewer common days get a NULL correlation.

    Returns:
        Rows of ``strategy_correlations`` (without run_id): strategy_id_a < strategy_id_b, rank_a,
        rank_b, correlation (pandas ``DataFrame.corr``, Pearson, pairwise-complete days; NaN for
        a constant series), n_days.
    """
    ids = sorted(daily.columns)
    frame = daily[ids]
    corr = frame.corr(method="pearson", min_periods=min_days).to_numpy()
    present = frame.notna().to_numpy().astype(np.int64)
    overlap = present.T @ present
    a, b = np.triu_indices(len(ids), k=1)
    names = np.asarray(ids, dtype=object)
    return pd.DataFrame(
        {
            "strategy_id_a": names[a],
            "strategy_id_b": names[b],
            "rank_a": [ranks[x] for x in names[a]],
            "rank_b": [ranks[x] for x in names[b]],
            "correlation": corr[a, b],
            "n_days": overlap[a, b].astype(np.int64),
        }
    )


def correlation_clusters(members: Sequence[str], pairs: pd.DataFrame, threshold: float) -> list[list[str]]:
    """Clusters of strategies linked by a correlation >= ``threshold``: the connected components
    of that graph, i.e. single-linkage hierarchical clustering cut at distance ``1 - threshold``.

    Args:
        members: strategy ids, best first (each cluster keeps this order, so its first member
            is the one to keep).
        pairs: rows with strategy_id_a, strategy_id_b, correlation.
        threshold: minimum Pearson correlation of a link, in [-1, 1].

    Returns:
        Clusters of two or more members, ordered by their best member; singletons are omitted.
    """
    parent = {m: m for m in members}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    strong = pairs[pairs["correlation"] >= threshold]
    for a, b in zip(strong["strategy_id_a"], strong["strategy_id_b"]):
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra
    groups: dict[str, list[str]] = {}
    for m in members:
        groups.setdefault(find(m), []).append(m)
    return [g for g in groups.values() if len(g) > 1]


def strategy_detail(history: BarHistory, traces: TraceHistory, strategy_id: str, costs: CostModel) -> tuple[pd.DataFrame, pd.Series]:
    """Closed trades and daily equity curve of one stored strategy.

    Returns:
        ``(trades, equity)``: trades of :func:`admf_assets.core.metrics.extract_trades` plus
        ``entry_ts`` / ``exit_ts`` (UTC timestamps of the fill bars); ``equity`` the compounded
        daily net equity (starts at 1 + first day's return; index trading dates, float64).

    Raises:
        KeyError: when ``strategy_id`` is not among the series' traces.
    """
    from admf_assets.core.metrics import daily_net_returns, extract_trades
    from admf_assets.core.sparse import SparseRows

    ids = traces.series_ids
    if strategy_id not in ids:
        raise KeyError(f"{strategy_id} has no stored trace in its series ({history.symbol}_{history.timeframe})")
    i = ids.index(strategy_id)
    rows = traces.rows
    mask = rows.series == i
    one = SparseRows(np.zeros(int(mask.sum()), dtype=rows.series.dtype), rows.idx[mask], rows.val[mask], 1, rows.n_bars)
    close = history.bars["close"].to_numpy(dtype=np.float64)
    trades = extract_trades(one, close, costs)
    ts = history.bars["ts"].to_numpy()
    trades["entry_ts"] = pd.to_datetime(ts[trades["entry_idx"].to_numpy()], utc=True)
    trades["exit_ts"] = pd.to_datetime(ts[trades["exit_idx"].to_numpy()], utc=True)
    days, daily = daily_net_returns(one, close, history.day_code, costs)
    equity = pd.Series(np.cumprod(1.0 + daily[0]), index=pd.Index([history.days[d] for d in days], name="date"), name="equity")
    return trades.drop(columns="series"), equity
