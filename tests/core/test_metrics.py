"""Tests of admf_assets.core.metrics against hand computations and a plain-Python reference."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from admf_assets.core.metrics import (
    METRIC_COLUMNS,
    TRADING_DAYS_PER_YEAR,
    CostModel,
    compute_metrics,
    daily_breakdown,
    daily_net_returns,
    extract_trades,
    regime_metrics,
)
from admf_assets.core.sparse import NO_VALUE, SparseRows, encode_sparse

SQRT252 = math.sqrt(252)

# Three trading days of six bars each.
CLOSES = [
    100.0, 101.0, 102.0, 100.0, 99.0, 98.0,  # day A: bars 0-5
    97.0, 99.0, 100.0, 96.0, 97.0, 98.0,  # day B: bars 6-11
    99.0, 101.0, 100.0, 102.0, 103.0, 101.0,  # day C: bars 12-17
]
DAYS = [20240102] * 6 + [20240103] * 6 + [20240104] * 6
COSTS = CostModel(commission_bps=1.0, slippage_bps=2.0)
C = 3e-4  # per side: (1 + 2) bps

# series 0: long at bar 1, flip short at bar 4, flat at bar 9
# series 1: no rows (never trades)
# series 2: flat row at bar 0, short at bar 3, flip long at bar 13 (still open at end of data)
ROWS = [(0, 1, 1), (0, 4, -1), (0, 9, 0), (2, 0, 0), (2, 3, -1), (2, 13, 1)]


def make_rows(rows, n_series, n_bars):
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return SparseRows(
        series=arr[:, 0].astype(np.int32),
        idx=arr[:, 1].astype(np.int32),
        val=arr[:, 2].astype(np.int8),
        n_series=n_series,
        n_bars=n_bars,
    )


def fixture():
    return make_rows(ROWS, 3, 18), np.array(CLOSES), np.array(DAYS, dtype=np.int64)


# ---- Series 0 by hand ----------------------------------------------------------------------
# gross_t = pos_{t-1} * (close_t / close_{t-1} - 1); pos: bars 1-3 +1, bars 4-8 -1, else 0.
g2 = 102 / 101 - 1
g3 = 100 / 102 - 1
g4 = 99 / 100 - 1
g5 = -(98 / 99 - 1)
g6 = -(97 / 98 - 1)
g7 = -(99 / 97 - 1)
g8 = -(100 / 99 - 1)
g9 = -(96 / 100 - 1)
# costs: 1 unit at bar 1, 2 units at bar 4 (flip), 1 unit at bar 9.
NET0 = [0.0, -C, g2, g3, g4 - 2 * C, g5, g6, g7, g8, g9 - C] + [0.0] * 8
GROSS0 = [0.0, 0.0, g2, g3, g4, g5, g6, g7, g8, g9] + [0.0] * 8
DAY_A = (1 - C) * (1 + g2) * (1 + g3) * (1 + g4 - 2 * C) * (1 + g5) - 1
DAY_B = (1 + g6) * (1 + g7) * (1 + g8) * (1 + g9 - C) - 1
DAY_C = 0.0
TOTAL0 = (1 + DAY_A) * (1 + DAY_B) - 1
LONG_GROSS = (99 - 101) / 101  # bar 1 -> bar 4
SHORT_GROSS = -(96 - 99) / 99  # bar 4 -> bar 9
LONG_NET = LONG_GROSS - 2 * C
SHORT_NET = SHORT_GROSS - 2 * C


def hand_max_drawdown(bar_returns):
    equity, peak, worst = 1.0, 1.0, 0.0
    for r in bar_returns:
        equity *= 1 + r
        peak = max(peak, equity)
        worst = max(worst, 1 - equity / peak)
    return worst


def test_hand_trace_series0_metrics():
    rows, close, day = fixture()
    m = compute_metrics(rows, close, day, COSTS).loc[0]

    daily = [DAY_A, DAY_B, DAY_C]
    mean = (DAY_A + DAY_B + DAY_C) / 3
    sd = math.sqrt(((DAY_A - mean) ** 2 + (DAY_B - mean) ** 2 + (DAY_C - mean) ** 2) / 2)
    downside = math.sqrt((min(DAY_A, 0) ** 2 + min(DAY_B, 0) ** 2 + min(DAY_C, 0) ** 2) / 3)
    assert sd == pytest.approx(statistics.stdev(daily))
    mdd = hand_max_drawdown(NET0)
    annual = (1 + TOTAL0) ** (252 / 3) - 1

    assert m.total_return == pytest.approx(TOTAL0, rel=1e-12)
    assert m.gross_total_return == pytest.approx(
        (1 + g2) * (1 + g3) * (1 + g4) * (1 + g5) * (1 + g6) * (1 + g7) * (1 + g8) * (1 + g9) - 1, rel=1e-12
    )
    assert m.sharpe_ratio == pytest.approx(mean / sd * SQRT252, rel=1e-9)
    assert m.net_sharpe == m.sharpe_ratio
    assert m.sortino_ratio == pytest.approx(mean / downside * SQRT252, rel=1e-9)
    assert m.volatility == pytest.approx(sd * SQRT252, rel=1e-9)
    assert m.max_drawdown == pytest.approx(mdd, rel=1e-12)
    assert mdd > 0
    assert m.annualized_return == pytest.approx(annual, rel=1e-9)
    assert m.calmar_ratio == pytest.approx(annual / mdd, rel=1e-9)

    assert m.total_trades == 2
    assert m.winning_trades == 1
    assert m.losing_trades == 1
    assert m.win_rate == pytest.approx(0.5)
    assert m.profit_factor == pytest.approx(SHORT_NET / abs(LONG_NET), rel=1e-12)
    assert m.avg_trade_return == pytest.approx((LONG_NET + SHORT_NET) / 2, rel=1e-12)
    assert m.avg_trade_duration == pytest.approx((3 + 5) / 2)
    assert m.largest_win == pytest.approx(SHORT_NET)
    assert m.largest_loss == pytest.approx(LONG_NET)

    # 4 units traded (1 + 2 + 1): commission 1 bp, slippage 2 bps per unit.
    assert m.total_commission == pytest.approx(4 * 1e-4)
    assert m.total_slippage == pytest.approx(4 * 2e-4)
    assert m.signal_changes == 3
    assert m.exposure == pytest.approx(8 / 18)

    gross_daily = [
        (1 + g2) * (1 + g3) * (1 + g4) * (1 + g5) - 1,
        (1 + g6) * (1 + g7) * (1 + g8) * (1 + g9) - 1,
        0.0,
    ]
    assert m.gross_sharpe == pytest.approx(
        statistics.mean(gross_daily) / statistics.stdev(gross_daily) * SQRT252, rel=1e-9
    )


def test_hand_trace_other_series():
    rows, close, day = fixture()
    frame = compute_metrics(rows, close, day, COSTS)
    assert list(frame.columns) == list(METRIC_COLUMNS)
    assert list(frame.index) == [0, 1, 2]

    flat = frame.loc[1]
    assert flat.total_return == 0.0
    assert flat.gross_total_return == 0.0
    assert math.isnan(flat.sharpe_ratio) and math.isnan(flat.sortino_ratio)
    assert math.isnan(flat.gross_sharpe) and math.isnan(flat.calmar_ratio)
    assert flat.max_drawdown == 0.0 and flat.max_drawdown_idx == -1
    assert flat.total_trades == 0 and flat.signal_changes == 0
    assert math.isnan(flat.win_rate) and math.isnan(flat.profit_factor)
    assert math.isnan(flat.avg_trade_return) and math.isnan(flat.largest_win)
    assert flat.exposure == 0.0
    assert flat.total_commission == 0.0

    s2 = frame.loc[2]
    # One closed trade: short 100 (bar 3) -> 101 (bar 13); the long opened at bar 13 is open.
    short_net = -(101 - 100) / 100 - 2 * C
    assert s2.total_trades == 1
    assert s2.losing_trades == 1 and s2.winning_trades == 0
    assert s2.win_rate == 0.0
    assert s2.profit_factor == 0.0
    assert s2.avg_trade_return == pytest.approx(short_net)
    assert s2.largest_loss == pytest.approx(short_net)
    assert math.isnan(s2.largest_win)
    assert s2.avg_trade_duration == 10
    assert s2.signal_changes == 3
    assert s2.exposure == pytest.approx(15 / 18)
    assert s2.total_commission == pytest.approx(3 * 1e-4)  # units: 1 at bar 3, 2 at bar 13
    assert s2.total_slippage == pytest.approx(3 * 2e-4)
    # Equity includes the open long: bars 14-17 earn the long return.
    # net_3 = -C (entry), net_13 = short return of bar 13 - 2C (flip), short bars 4-12.
    growth = 1 - C
    for t in range(4, 13):
        growth *= 1 - (CLOSES[t] / CLOSES[t - 1] - 1)
    growth *= 1 - (101 / 99 - 1) - 2 * C
    for t in range(14, 18):
        growth *= CLOSES[t] / CLOSES[t - 1]
    assert s2.total_return == pytest.approx(growth - 1, rel=1e-12)


def test_extract_trades_hand_trace():
    rows, close, _ = fixture()
    trades = extract_trades(rows, close, COSTS)
    assert list(trades.columns) == [
        "series", "entry_idx", "exit_idx", "side", "entry_px", "exit_px",
        "gross_return", "net_return", "duration_bars",
    ]
    assert trades.series.tolist() == [0, 0, 2]
    assert trades.entry_idx.tolist() == [1, 4, 3]
    assert trades.exit_idx.tolist() == [4, 9, 13]
    assert trades.side.tolist() == [1, -1, -1]
    assert trades.entry_px.tolist() == [101.0, 99.0, 100.0]
    assert trades.exit_px.tolist() == [99.0, 96.0, 101.0]
    assert trades.gross_return.tolist() == pytest.approx([LONG_GROSS, SHORT_GROSS, -0.01])
    assert trades.net_return.tolist() == pytest.approx([LONG_NET, SHORT_NET, -0.01 - 2 * C])
    assert trades.duration_bars.tolist() == [3, 5, 10]


def test_daily_net_returns_hand_trace():
    rows, close, day = fixture()
    days, daily = daily_net_returns(rows, close, day, COSTS)
    assert days.tolist() == [20240102, 20240103, 20240104]
    assert daily.shape == (3, 3) and daily.dtype == np.float64
    assert daily[0].tolist() == pytest.approx([DAY_A, DAY_B, DAY_C], rel=1e-12)
    assert daily[1].tolist() == [0.0, 0.0, 0.0]


def test_zero_costs_gross_equals_net():
    rows, close, day = fixture()
    m = compute_metrics(rows, close, day, CostModel(0.0, 0.0))
    np.testing.assert_allclose(m.total_return, m.gross_total_return, rtol=1e-14)
    np.testing.assert_allclose(m.sharpe_ratio, m.gross_sharpe, rtol=1e-14)
    assert (m.total_commission == 0).all() and (m.total_slippage == 0).all()
    trades = extract_trades(rows, close, CostModel(0.0, 0.0))
    assert (trades.net_return == trades.gross_return).all()
    # Costs lower net below gross for a trading series.
    with_costs = compute_metrics(rows, close, day, COSTS)
    assert with_costs.total_return[0] < with_costs.gross_total_return[0]


def test_undefined_ratios_are_nan_not_inf():
    # Rising closes, long from bar 0, no costs: no downside day and no drawdown.
    close = np.array([100.0, 101, 102, 103, 104, 105])
    day = np.array([1, 1, 2, 2, 3, 3], dtype=np.int64)
    rows = make_rows([(0, 0, 1)], 1, 6)
    m = compute_metrics(rows, close, day, CostModel(0, 0)).loc[0]
    assert m.total_return == pytest.approx(0.05)
    assert m.max_drawdown == 0.0
    assert math.isnan(m.sortino_ratio) and math.isnan(m.calmar_ratio)
    assert math.isfinite(m.sharpe_ratio)
    # A single trading day: Sharpe, Sortino and volatility are undefined.
    one_day = compute_metrics(rows, close, np.zeros(6, dtype=np.int64), COSTS).loc[0]
    assert math.isnan(one_day.sharpe_ratio) and math.isnan(one_day.sortino_ratio)
    assert math.isnan(one_day.volatility)
    # Equal daily returns (zero variance): NaN Sharpe, zero volatility.
    flat_days = compute_metrics(make_rows([], 1, 6), close, day, COSTS).loc[0]
    assert math.isnan(flat_days.sharpe_ratio)
    assert flat_days.volatility == 0.0
    # Trades all winners: no losing trade -> profit factor NaN.
    winners = compute_metrics(make_rows([(0, 0, 1), (0, 3, 0)], 1, 6), close, day, CostModel(0, 0)).loc[0]
    assert winners.total_trades == 1 and winners.win_rate == 1.0
    assert math.isnan(winners.profit_factor)


# ---- Plain-Python reference for random traces -------------------------------------------


def reference_metrics(rows, n_series, closes, days, costs):
    T = len(closes)
    per_side = (costs.commission_bps + costs.slippage_bps) / 1e4
    by_series = {s: [] for s in range(n_series)}
    for s, i, v in rows:
        by_series[s].append((i, v))
    day_list = sorted(set(days))
    out = []
    for s in range(n_series):
        pos = [0] * T
        for i, v in by_series[s]:
            for t in range(i, T):
                pos[t] = v
        net, gross, units = [], [], 0
        for t in range(T):
            prev = pos[t - 1] if t > 0 else 0
            g = prev * (closes[t] / closes[t - 1] - 1) if t > 0 else 0.0
            units += abs(pos[t] - prev)
            gross.append(g)
            net.append(g - abs(pos[t] - prev) * per_side)
        daily = []
        for d in day_list:
            f = 1.0
            for t in range(T):
                if days[t] == d:
                    f *= 1 + net[t]
            daily.append(f - 1)
        total = 1.0
        for r in net:
            total *= 1 + r
        total -= 1
        if len(set(daily)) > 1:
            sharpe = statistics.mean(daily) / statistics.stdev(daily) * SQRT252
        else:
            sharpe = math.nan
        dd = math.sqrt(sum(min(r, 0) ** 2 for r in daily) / len(daily))
        sortino = statistics.mean(daily) / dd * SQRT252 if dd > 0 else math.nan
        mdd = hand_max_drawdown(net)
        annual = (1 + total) ** (TRADING_DAYS_PER_YEAR / len(day_list)) - 1
        trades = []
        ch = by_series[s]
        for (i, v), (j, _) in zip(ch[:-1], ch[1:]):
            if v != 0:
                trades.append((v * (closes[j] - closes[i]) / closes[i] - 2 * per_side, j - i))
        wins = [r for r, _ in trades if r > 0]
        losses = [r for r, _ in trades if r < 0]
        out.append({
            "total_return": total,
            "sharpe_ratio": sharpe,
            "sortino_ratio": sortino,
            "max_drawdown": mdd,
            "calmar_ratio": annual / mdd if mdd > 0 else math.nan,
            "total_trades": len(trades),
            "win_rate": len(wins) / len(trades) if trades else math.nan,
            "profit_factor": sum(wins) / abs(sum(losses)) if losses else math.nan,
            "avg_trade_duration": statistics.mean(d for _, d in trades) if trades else math.nan,
            "total_commission": units * costs.commission_bps / 1e4,
            "signal_changes": len(ch),
            "exposure": sum(1 for p in pos if p != 0) / T,
            "daily": daily,
        })
    return out


def random_case(seed, n_series=6, n_bars=40):
    rng = np.random.default_rng(seed)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n_bars))
    day = np.repeat(np.arange(8), n_bars // 8).astype(np.int64)
    dense = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(n_series, n_bars), p=[0.1, 0.8, 0.1])
    # Hold values for a few bars and give some series a warm-up.
    dense = np.repeat(dense[:, ::4], 4, axis=1)[:, :n_bars]
    dense[1, :] = NO_VALUE
    dense[2, :7] = NO_VALUE
    return encode_sparse(dense), close, day


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_against_plain_python_reference(seed):
    rows, close, day = random_case(seed)
    costs = CostModel(0.7, 1.3)
    got = compute_metrics(rows, close, day, costs)
    ref = reference_metrics(
        list(zip(rows.series.tolist(), rows.idx.tolist(), rows.val.tolist())),
        rows.n_series, close.tolist(), day.tolist(), costs,
    )
    _, daily = daily_net_returns(rows, close, day, costs)
    for s, expected in enumerate(ref):
        assert daily[s].tolist() == pytest.approx(expected.pop("daily"), rel=1e-10, abs=1e-15)
        for name, value in expected.items():
            assert got.loc[s, name] == pytest.approx(value, rel=1e-9, abs=1e-15, nan_ok=True), (s, name)


def test_chunking_does_not_change_results():
    rows, close, day = random_case(7, n_series=9, n_bars=48)
    full = compute_metrics(rows, close, day, COSTS, chunk_size=512)
    for size in (1, 4):
        pd.testing.assert_frame_equal(compute_metrics(rows, close, day, COSTS, chunk_size=size), full)
    labels = ["a", "b"]
    regimes = (np.arange(48) // 5 % 2).astype(np.int8)
    pd.testing.assert_frame_equal(
        regime_metrics(rows, close, day, regimes, labels, COSTS, chunk_size=1),
        regime_metrics(rows, close, day, regimes, labels, COSTS),
    )
    np.testing.assert_array_equal(
        daily_net_returns(rows, close, day, COSTS, chunk_size=2)[1],
        daily_net_returns(rows, close, day, COSTS)[1],
    )


def test_daily_breakdown_hand_trace_and_consistency():
    rows, close, day = fixture()
    table = daily_breakdown(rows, close, day, COSTS)
    assert list(table.columns) == [
        "series", "day", "signal_changes", "trades_closed", "wins", "losses", "net_pnl", "avg_trade_return",
    ]
    assert len(table) == 9
    s0 = table[table.series == 0].reset_index(drop=True)
    assert s0.day.tolist() == [20240102, 20240103, 20240104]
    assert s0.signal_changes.tolist() == [2, 1, 0]
    assert s0.trades_closed.tolist() == [1, 1, 0]
    assert s0.wins.tolist() == [0, 1, 0]
    assert s0.losses.tolist() == [1, 0, 0]
    assert s0.net_pnl.tolist() == pytest.approx([DAY_A, DAY_B, DAY_C], rel=1e-12)
    assert s0.avg_trade_return[0] == pytest.approx(LONG_NET)
    assert s0.avg_trade_return[1] == pytest.approx(SHORT_NET)
    assert math.isnan(s0.avg_trade_return[2])

    metrics = compute_metrics(rows, close, day, COSTS)
    for s in range(3):
        part = table[table.series == s]
        compounded = np.prod(1 + part.net_pnl.to_numpy()) - 1
        assert compounded == pytest.approx(metrics.total_return[s], rel=1e-12, abs=1e-15)
        assert part.signal_changes.sum() == metrics.signal_changes[s]
        assert part.trades_closed.sum() == metrics.total_trades[s]
        assert part.wins.sum() == metrics.winning_trades[s]
        assert part.losses.sum() == metrics.losing_trades[s]


def test_daily_breakdown_consistency_random():
    rows, close, day = random_case(11)
    table = daily_breakdown(rows, close, day, COSTS)
    metrics = compute_metrics(rows, close, day, COSTS)
    per_series = table.groupby("series").net_pnl.apply(lambda r: np.prod(1 + r.to_numpy()) - 1)
    np.testing.assert_allclose(per_series.to_numpy(), metrics.total_return.to_numpy(), rtol=1e-12, atol=1e-15)
    assert (table.groupby("series").signal_changes.sum().to_numpy() == metrics.signal_changes.to_numpy()).all()


# Regimes: bull (0) bars 0-2, bear (1) bars 3-7, bull bars 8-10, unknown bar 11, bull bars 12-16,
# "crash" (3) only at the last bar (never attributed), "sideways" (2) never occurs.
LABELS = ["bull", "bear", "sideways", "crash"]
REGIMES = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, int(NO_VALUE), 0, 0, 0, 0, 0, 3]


def test_regime_metrics_hand_trace():
    rows, close, day = fixture()
    table = regime_metrics(rows, close, day, np.array(REGIMES, dtype=np.int8), LABELS, COSTS)
    assert list(table.columns) == [
        "series", "regime", "sharpe_ratio", "total_return", "win_rate", "trade_count", "avg_duration",
    ]
    # Omitted regimes: "sideways" never occurs; "crash" is only at the last bar, which attributes
    # no bar return. Both regimes present for every series.
    assert table.series.tolist() == [0, 0, 1, 1, 2, 2]
    assert table.regime.tolist() == ["bull", "bear"] * 3

    # Bar t belongs to the regime at bar t-1 (bar 0 to its own regime):
    # bull bars 0-3, 9-11, 13-17; bear bars 4-8; bar 12 unknown.
    bull_a = (1 - C) * (1 + g2) * (1 + g3) - 1  # bars 0-3
    bull_b = 1 + g9 - C - 1  # bars 9-11
    bull_c = 0.0  # bars 13-17 (flat)
    bear_a = (1 + g4 - 2 * C) * (1 + g5) - 1  # bars 4-5
    bear_b = (1 + g6) * (1 + g7) * (1 + g8) - 1  # bars 6-8
    s0 = table[table.series == 0].set_index("regime")
    bull, bear = s0.loc["bull"], s0.loc["bear"]
    assert bull.total_return == pytest.approx((1 + bull_a) * (1 + bull_b) * (1 + bull_c) - 1, rel=1e-12)
    assert bear.total_return == pytest.approx((1 + bear_a) * (1 + bear_b) - 1, rel=1e-12)
    bull_days = [bull_a, bull_b, bull_c]
    bear_days = [bear_a, bear_b]
    assert bull.sharpe_ratio == pytest.approx(statistics.mean(bull_days) / statistics.stdev(bull_days) * SQRT252)
    assert bear.sharpe_ratio == pytest.approx(statistics.mean(bear_days) / statistics.stdev(bear_days) * SQRT252)
    # Trades by entry bar: the long (entry bar 1) is bull, the short (entry bar 4) is bear.
    assert bull.trade_count == 1 and bear.trade_count == 1
    assert bull.win_rate == 0.0 and bear.win_rate == 1.0
    assert bull.avg_duration == 3 and bear.avg_duration == 5

    # Bar 12 (the unknown one) is flat for series 0, so the regimes compound to the total.
    metrics = compute_metrics(rows, close, day, COSTS)
    assert (1 + bull.total_return) * (1 + bear.total_return) - 1 == pytest.approx(metrics.total_return[0])

    flat = table[table.series == 1]
    assert (flat.total_return == 0).all() and flat.sharpe_ratio.isna().all()
    assert (flat.trade_count == 0).all() and flat.win_rate.isna().all()

    # Series 2's short entered at bar 3 (bear); its open long (bar 13) is not a trade.
    s2 = table[table.series == 2].set_index("regime")
    assert s2.loc["bear", "trade_count"] == 1 and s2.loc["bull", "trade_count"] == 0


def test_regime_metrics_partition_totals_random():
    rows, close, day = random_case(5)
    rng = np.random.default_rng(5)
    regimes = rng.integers(0, 3, size=rows.n_bars).astype(np.int8)
    table = regime_metrics(rows, close, day, regimes, ["x", "y", "z"], COSTS)
    metrics = compute_metrics(rows, close, day, COSTS)
    by_series = table.groupby("series")
    compounded = by_series.total_return.apply(lambda r: np.prod(1 + r.to_numpy()) - 1)
    np.testing.assert_allclose(compounded.to_numpy(), metrics.total_return.to_numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(by_series.trade_count.sum().to_numpy(), metrics.total_trades.to_numpy())


def test_cost_model_validation():
    assert CostModel().per_side == pytest.approx(1.5e-4)
    assert COSTS.per_side == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="commission_bps"):
        CostModel(commission_bps=-1.0)
    with pytest.raises(ValueError, match="slippage_bps"):
        CostModel(slippage_bps=float("nan"))


def test_input_validation():
    rows, close, day = fixture()
    with pytest.raises(ValueError, match="sorted"):
        compute_metrics(make_rows([(0, 4, 1), (0, 1, -1)], 1, 18), close, day, COSTS)
    with pytest.raises(ValueError, match="-1, 0 or \\+1"):
        compute_metrics(make_rows([(0, 1, 2)], 1, 18), close, day, COSTS)
    with pytest.raises(ValueError, match="nondecreasing"):
        compute_metrics(rows, close, day[::-1].copy(), COSTS)
    with pytest.raises(ValueError, match="close"):
        compute_metrics(rows, close[:-1], day, COSTS)
    with pytest.raises(ValueError, match="chunk_size"):
        compute_metrics(rows, close, day, COSTS, chunk_size=0)
    with pytest.raises(ValueError, match="regime codes"):
        regime_metrics(rows, close, day, np.full(18, 5, dtype=np.int8), ["a"], COSTS)


@pytest.mark.parametrize("n_days", [3, 4])
def test_equity_below_zero_has_no_annualized_return(n_days):
    # Short from bar 0 while the close quadruples: the equity ends at 1 - 3 = -2. With 3 days the
    # exponent 252 / 3 = 84 is an integer, so a plain power would report about +1.9e25.
    close = np.array([100.0, 400.0] + [400.0] * (2 * n_days - 2))
    day = np.repeat(np.arange(n_days, dtype=np.int64), 2)
    m = compute_metrics(make_rows([(0, 0, -1)], 1, len(close)), close, day, CostModel(0, 0)).loc[0]
    assert m.total_return == pytest.approx(-3.0)
    assert math.isnan(m.annualized_return)
    assert math.isnan(m.calmar_ratio)
    # an equity of exactly 0 is a total loss: -100% a year
    doubled = np.array([100.0, 200.0] + [200.0] * (2 * n_days - 2))
    wiped = compute_metrics(make_rows([(0, 0, -1)], 1, len(doubled)), doubled, day, CostModel(0, 0)).loc[0]
    assert wiped.total_return == pytest.approx(-1.0)
    assert wiped.annualized_return == pytest.approx(-1.0)


def test_drawdown_counts_starting_equity_as_peak():
    # Long from bar 0 (entry cost at bar 0) on falling closes: the peak is the starting 1.0.
    close = np.array([100.0, 98.0, 99.0, 97.0])
    day = np.array([1, 1, 2, 2], dtype=np.int64)
    m = compute_metrics(make_rows([(0, 0, 1)], 1, 4), close, day, COSTS).loc[0]
    trough = (1 - C) * (98 / 100) * (99 / 98) * (97 / 99)
    assert m.max_drawdown == pytest.approx(1 - trough, rel=1e-12)
    assert m.max_drawdown_idx == 3  # the last bar (97) is the trough
    assert m.total_return == pytest.approx(trough - 1, rel=1e-12)
    assert m.total_trades == 0  # still open at end of data
    annual = (1 + m.total_return) ** (252 / 2) - 1
    assert m.calmar_ratio == pytest.approx(annual / (1 - trough))
