"""``daily_summary_table`` against the plain pandas computation it replaced (dates and type names
grouped as Python objects), over every stored day and over a subset of days."""

from __future__ import annotations

import numpy as np
import pandas as pd

from admf_assets.core.analytics import daily_summary_table
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel, daily_breakdown
from admf_assets.core.store import load_series
from tests.core.test_history_cache import STRATEGIES, _bars, _store_days  # the stored test workspace


def _plain(history, signals, costs, days) -> pd.DataFrame:
    daily = daily_breakdown(signals.rows, history.bars["close"].to_numpy(dtype=np.float64), history.day_code, costs)
    daily["date"] = [history.days[d] for d in daily["day"].to_numpy()]
    daily = daily[daily["date"].isin(set(days))].copy()
    daily["strategy_type"] = np.asarray([c["type"] for c in signals.configs], dtype=object)[daily["series"].to_numpy()]
    daily["trade_return_sum"] = daily["avg_trade_return"].fillna(0.0) * daily["trades_closed"]
    grouped = daily.groupby(["date", "strategy_type"], sort=True).agg(
        strategy_count=("series", "nunique"), signal_changes=("signal_changes", "sum"), trades_closed=("trades_closed", "sum"),
        wins=("wins", "sum"), losses=("losses", "sum"), net_pnl=("net_pnl", "sum"), trade_return_sum=("trade_return_sum", "sum"),
    )
    grouped["avg_trade_return"] = np.where(
        grouped["trades_closed"] > 0, grouped["trade_return_sum"] / grouped["trades_closed"].clip(lower=1), np.nan
    )
    out = grouped.drop(columns="trade_return_sum").reset_index()
    out.insert(1, "symbol", history.symbol)
    return out


def test_daily_summary_equals_the_plain_pandas_groupby(tmp_path):
    bars = _bars(6)
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, days, strategies=STRATEGIES)  # two types, sma_crossover twice
    history, signals = load_series(layout, "SPY", "5m")
    costs = CostModel(0.5, 1.0)
    for subset in (history.days, history.days[2:4], [history.days[-1]]):
        got = daily_summary_table(history, signals, costs, subset)
        want = _plain(history, signals, costs, subset)
        assert list(got.columns) == list(want.columns)
        assert len(got) == len(subset) * 2 and got["trades_closed"].sum() > 0
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True)
