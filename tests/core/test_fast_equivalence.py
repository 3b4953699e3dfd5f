"""The compiled evaluation core equals the NumPy / pandas reference it replaced.

References (kept in the tests): ``tests/core/reference_indicators.py`` (pandas rolling / ewm),
``tests/core/reference_strategies.py`` (array-at-a-time rules over dense blocks) and
``tests/core/reference_metrics.py`` (dense position blocks, NumPy reductions). Signals and sparse
rows must be identical; indicator rows bit for bit; metrics within 1e-9 relative (integers exact).
Bars: the bundled real SPY sample (60 sessions, regular hours) and seeded random walks with flat
stretches (ties) and price jumps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from admf_assets.core import kernels
from admf_assets.core import indicators as fast_ind
from admf_assets.core.config import StrategyConfig
from admf_assets.core.engine import strategy_rows
from admf_assets.core.metrics import METRIC_COLUMNS, CostModel, compute_metrics
from admf_assets.core.sparse import SparseRows, encode_sparse
from admf_assets.core.strategies import STRATEGY_TYPES, evaluate_strategies, signal_sparse_rows
from tests.core import reference_indicators as ref_ind
from tests.core import reference_metrics as ref_metrics
from tests.core import reference_strategies as ref_strat
from tests.core.reference import rth_bars

BARS_PER_DAY = 78


def random_bars(seed: int, n: int = 3 * BARS_PER_DAY * 4) -> pd.DataFrame:
    """A random walk in cents with flat stretches (equal closes -> ties) and a few jumps."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.25, n)
    steps[rng.random(n) < 0.25] = 0.0  # flat bars
    steps[rng.integers(0, n, 5)] *= 20.0  # jumps: RSI extremes, band breaks
    close = np.round(200.0 + np.cumsum(steps), 2)
    close = np.maximum(close, 1.0)
    return pd.DataFrame(
        {"open": close, "high": close + 0.05, "low": close - 0.05, "close": close, "volume": 1000.0}
    )


def sample_bars() -> pd.DataFrame:
    return rth_bars(60)[["open", "high", "low", "close", "volume"]].reset_index(drop=True)


def day_codes_for(n: int) -> np.ndarray:
    return (np.arange(n) // BARS_PER_DAY).astype(np.int64)


def sample_day_codes() -> np.ndarray:
    day = rth_bars(60)["day"].to_numpy()
    _, codes = np.unique(day, return_inverse=True)
    return codes.astype(np.int64)


GRIDS: dict[str, list[dict]] = {
    "sma_crossover": [{"fast_period": f, "slow_period": s} for f in (1, 2, 5, 9) for s in (3, 10, 30)],
    "ma_crossover": [{"fast_period": f, "slow_period": s} for f in (1, 2, 5, 9) for s in (3, 10, 30)],
    "bollinger_bands": [{"period": p, "std_dev": k} for p in (1, 2, 5, 20) for k in (0.1, 0.5, 1.0, 2.0, 2.7)],
    "bollinger_breakout": [{"period": p, "std_dev": k} for p in (1, 2, 5, 20) for k in (0.1, 0.5, 1.0, 2.0, 2.7)],
    "rsi_bands": [
        {"period": p, "oversold": lo, "overbought": hi} for p in (1, 2, 7, 14) for lo, hi in ((30, 70), (45, 55), (20, 80))
    ],
    "rsi_threshold": [{"period": p, "threshold": x} for p in (1, 2, 7, 14) for x in (30, 50, 50.5, 70)],
    "rsi_extreme": [
        {"period": p, "oversold": lo, "overbought": hi, "exit_level": ex}
        for p in (2, 5, 14)
        for lo, hi in ((30, 70), (40, 60))
        for ex in (45, 50, 55)
    ],
    "momentum_breakout": [{"period": p, "threshold": x} for p in (1, 3, 12) for x in (0.0, 0.0005, 0.002)],
    "momentum": [{"period": p} for p in (1, 2, 3, 10, 50)],
}


def configs_of(strategy_type: str) -> list[StrategyConfig]:
    return [StrategyConfig(strategy_type, params) for params in GRIDS[strategy_type]]


def all_configs() -> list[StrategyConfig]:
    out = [c for t in STRATEGY_TYPES for c in configs_of(t)]
    # interleave the types so that configuration order differs from the kernels' sorted order
    return [out[i] for i in np.random.default_rng(5).permutation(len(out))]


BAR_SETS = {"spy_sample": sample_bars, "random_1": lambda: random_bars(1), "random_2": lambda: random_bars(2)}


@pytest.fixture(scope="module", params=list(BAR_SETS))
def bars(request) -> pd.DataFrame:
    return BAR_SETS[request.param]()


def assert_rows_equal(got: SparseRows, want: SparseRows) -> None:
    assert (got.n_series, got.n_bars) == (want.n_series, want.n_bars)
    for name in ("series", "idx", "val"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


# --------------------------------------------------------------------------- indicators


@pytest.mark.parametrize("name", ["sma", "rolling_pstd", "rsi", "momentum_pct"])
def test_indicators_equal_pandas_bit_for_bit(bars, name):
    close = bars["close"].to_numpy()
    for n in list(range(1, 41)) + [77, 78, 200]:
        got = getattr(fast_ind, name)(close, n)
        want = getattr(ref_ind, name)(close, n)
        assert np.array_equal(got, want, equal_nan=True), f"{name}({n})"


def test_rolling_kernels_skip_nan_like_pandas():
    x = ref_ind.atr(*(random_bars(3)[c].to_numpy() for c in ("high", "low", "close")), 14)
    x[40:43] = np.nan
    for n in (1, 2, 5, 50):
        want = pd.Series(x).rolling(n, min_periods=n).mean().to_numpy()
        assert np.array_equal(kernels.rolling_mean_table(x, np.array([n]))[0], want, equal_nan=True)
        want = ref_ind.rolling_pstd(np.nan_to_num(x, nan=0.0), n)  # finite input through the reference
        got = kernels.rolling_pstd_table(np.nan_to_num(x, nan=0.0), np.array([n]))[0]
        assert np.array_equal(got, want, equal_nan=True)


def test_indicator_table_caches_each_row_once(bars):
    cache = fast_ind.IndicatorCache(bars)
    keys = [("sma", 5), ("pstd", 5), ("rsi", 14), ("momentum_pct", 3), ("sma", 20)]
    table = cache.indicator_table(keys)
    close = bars["close"].to_numpy()
    np.testing.assert_array_equal(table[0], ref_ind.sma(close, 5))
    np.testing.assert_array_equal(table[2], ref_ind.rsi(close, 14))
    again = cache.indicator_table(list(reversed(keys)))
    np.testing.assert_array_equal(again[::-1], table)
    assert all(cache.computed[k] == 1 for k in keys)
    assert cache.sma(20) is cache._store[("sma", 20)]
    with pytest.raises(ValueError, match="macd"):
        cache.indicator_table([("macd", 3)])


def test_pairwise_sum_is_numpys_order():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 127, 128, 129, 255, 256, 1000, 4099):
        a = rng.normal(size=n) * 10.0 ** rng.integers(-6, 6, size=n)
        assert kernels.pairwise_sum(a, 0, n) == a.sum()


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("strategy_type", STRATEGY_TYPES)
def test_signals_and_sparse_rows_equal_reference(bars, strategy_type):
    configs = configs_of(strategy_type)
    want_dense = ref_strat.evaluate_strategies(bars, configs)
    np.testing.assert_array_equal(evaluate_strategies(bars, configs), want_dense)
    want = encode_sparse(want_dense)
    assert len(want) > len(configs)  # the grid really changes position
    assert_rows_equal(signal_sparse_rows(bars, configs), want)
    assert_rows_equal(signal_sparse_rows(bars, configs, chunk_size=3), want)


def test_mixed_grid_in_configuration_order(bars):
    configs = all_configs()
    want = encode_sparse(ref_strat.evaluate_strategies(bars, configs))
    assert_rows_equal(strategy_rows(bars, configs, chunk_size=16), want)


def test_scripted_rsi_extreme_matches_reference():
    # The stateful rule on a scripted RSI path hitting every branch (flip, inclusive exits).
    # (NaN only as a warm-up prefix, as real indicators have it)
    rsi = np.array([np.nan, np.nan] + [50, 25, 40, 49.9, 50, 60, 75, 60, 50.1, 50, 25, 80, 20, 55, 45] * 3)
    bars = pd.DataFrame({"close": np.linspace(100.0, 101.0, rsi.size)})
    fast_cache, ref_cache = fast_ind.IndicatorCache(bars), ref_ind.IndicatorCache(bars)
    fast_cache._store[("rsi", 14)] = rsi
    ref_cache._store[("rsi", 14)] = rsi
    config = [StrategyConfig("rsi_extreme", {"period": 14, "oversold": 30, "overbought": 70, "exit_level": 50})]
    got = evaluate_strategies(bars, config, fast_cache)
    np.testing.assert_array_equal(got, ref_strat.evaluate_strategies(bars, config, ref_cache))
    assert set(np.unique(got[0, 2:])) == {-1, 0, 1}


# --------------------------------------------------------------------------- metrics


def assert_metrics_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(METRIC_COLUMNS) == list(want.columns)
    assert got.index.equals(want.index)
    for name in METRIC_COLUMNS:
        a, b = got[name].to_numpy(), want[name].to_numpy()
        assert a.dtype == b.dtype, name
        if a.dtype.kind == "i":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0.0, err_msg=name)


@pytest.mark.parametrize(
    "costs", [CostModel(), CostModel(commission_bps=0.0, slippage_bps=0.0), CostModel(3.0, 7.5)], ids=["default", "free", "costly"]
)
def test_metrics_equal_reference(bars, costs):
    configs = all_configs()
    rows = strategy_rows(bars, configs)
    close = bars["close"].to_numpy()
    day = sample_day_codes() if len(bars) == len(sample_bars()) else day_codes_for(len(bars))
    got = compute_metrics(rows, close, day, costs)
    want = ref_metrics.compute_metrics(rows, close, day, ref_metrics.CostModel(costs.commission_bps, costs.slippage_bps))
    assert_metrics_equal(got, want)
    assert (got["total_trades"] > 0).sum() > len(configs) // 2
    assert (got["max_drawdown_idx"] >= 0).sum() > len(configs) // 2


def hand_made_rows(t: int) -> SparseRows:
    """Rows over ``t`` bars with a redundant row (same value twice), a flat series (1), a series
    opening on bar 0 and one closing on the last bar."""
    return SparseRows(
        series=np.array([0, 0, 0, 0, 2, 2, 2, 3, 3], dtype=np.int32),
        idx=np.array([0, 10, 11, t - 1, 5, 80, 90, 3, 4], dtype=np.int32),
        val=np.array([1, 1, -1, 0, -1, 0, 1, 0, 1], dtype=np.int8),
        n_series=5,
        n_bars=t,
    )


def jump_case(seed: int) -> tuple[np.ndarray, np.ndarray, SparseRows]:
    """(close, day codes, rows): a close that more than doubles in one bar (a short's factor
    1 - ret <= 0, so the kernels' prefix-product paths do not apply), shorts held across it."""
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 0.2, 4 * BARS_PER_DAY))
    close[150:] *= 2.5
    rows = SparseRows(
        series=np.array([0, 0, 0, 1, 1, 2], np.int32),
        idx=np.array([10, 140, 200, 5, 160, 30], np.int32),
        val=np.array([-1, 1, -1, 1, -1, -1], np.int8),
        n_series=3,
        n_bars=close.size,
    )
    return close, day_codes_for(close.size), rows


def test_metrics_equal_reference_on_hand_made_rows():
    close = random_bars(4, n=2 * BARS_PER_DAY)["close"].to_numpy()
    t = close.size
    rows = hand_made_rows(t)
    day = day_codes_for(t)
    got = compute_metrics(rows, close, day, CostModel())
    want = ref_metrics.compute_metrics(rows, close, day, ref_metrics.CostModel())
    assert_metrics_equal(got, want)
    assert got.loc[1, "total_return"] == 0.0 and np.isnan(got.loc[1, "sharpe_ratio"])


def test_metrics_on_zero_and_one_day():
    close = np.array([100.0, 101.0, 99.5])
    rows = SparseRows(np.array([0], np.int32), np.array([0], np.int32), np.array([1], np.int8), 1, 3)
    got = compute_metrics(rows, close, np.zeros(3, np.int64), CostModel())
    want = ref_metrics.compute_metrics(rows, close, np.zeros(3, np.int64), ref_metrics.CostModel())
    assert_metrics_equal(got, want)
    empty = SparseRows(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int8), 2, 0)
    got = compute_metrics(empty, np.empty(0), np.empty(0, np.int64), CostModel())
    want = ref_metrics.compute_metrics(empty, np.empty(0), np.empty(0, np.int64), ref_metrics.CostModel())
    assert_metrics_equal(got, want)


def test_metrics_when_a_short_factor_is_not_positive():
    # The kernel's O(1)-per-stretch path (prefix products, range extremes) does not apply when a
    # short's factor 1 - ret is <= 0: it multiplies bar by bar; the figures still equal the reference.
    close, day, rows = jump_case(11)
    ret = np.r_[0.0, close[1:] / close[:-1] - 1.0]
    day_start = np.r_[np.flatnonzero(np.diff(np.r_[-1, day])), close.size].astype(np.int64)
    assert not kernels.stretch_tables(1.0 + ret, 1.0 - ret, day_start)[3]  # the fallback is what runs
    got = compute_metrics(rows, close, day, CostModel())
    want = ref_metrics.compute_metrics(rows, close, day, ref_metrics.CostModel())
    assert_metrics_equal(got, want)


def test_range_extremes_of_the_sparse_tables():
    # _range_arg through stretch_tables: first argmax / argmin of every range inside each day.
    rng = np.random.default_rng(5)
    up = 1.0 + np.round(rng.normal(0.0, 0.001, 40), 4)  # rounded: repeated factors give ties
    down = 2.0 - up
    day_start = np.array([0, 17, 40], np.int64)
    prefix, tabs, lg, ok = kernels.stretch_tables(up, down, day_start)
    assert ok
    for side in (0, 1):
        p = prefix[side]
        f = up if side == 0 else down
        for d in range(2):
            a, b = day_start[d], day_start[d + 1]
            np.testing.assert_array_equal(p[a:b], np.cumprod(f[a:b]))
            for lo in range(a, b):
                for hi in range(lo + 1, b + 1):
                    j = lg[hi - lo]
                    cands = (tabs[2 * side, j, lo], tabs[2 * side, j, hi - (1 << j)])
                    first_max = max(cands, key=lambda i: (p[i], -i))
                    assert first_max == lo + int(np.argmax(p[lo:hi]))
                    cands = (tabs[2 * side + 1, j, lo], tabs[2 * side + 1, j, hi - (1 << j)])
                    first_min = min(cands, key=lambda i: (p[i], i))
                    assert first_min == lo + int(np.argmin(p[lo:hi]))


def _scan_reference(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Change rows of a value sequence: a row where the value differs from the last row's,
    warm-up markers (NO_VALUE) skipped."""
    out_idx, out_val, prev = [], [], None
    for t, v in enumerate(values.tolist()):
        if v != kernels.NO_VALUE_CODE and v != prev:
            out_idx.append(t)
            out_val.append(v)
            prev = v
    return np.array(out_idx, np.int32), np.array(out_val, np.int8)


@pytest.mark.parametrize("n_bars", [7, 8, 255, 256, 257, 1000])
def test_signal_kernel_word_scan_with_gaps(n_bars):
    # rsi_threshold rows over an RSI row with NaN gaps placed at and around 8-bar word and
    # 256-bar block edges: the word-at-a-time change scan must give the bar-by-bar rows.
    rng = np.random.default_rng(n_bars)
    rsi = np.round(rng.uniform(40.0, 60.0, n_bars))  # many exact ties with the threshold 50
    for t in (0, 1, 7, 8, 9, 63, 64, 255, 256, 300, n_bars - 1):
        if t < n_bars:
            rsi[t] = np.nan
    table = rsi[None, :]
    kind = np.array([kernels.KIND_CODES["rsi_threshold"]], np.int64)
    zero = np.zeros(1, np.int64)
    p1, p2 = np.array([50.0]), np.zeros(1)
    out_idx = np.empty((1, n_bars), np.int32)
    out_val = np.empty((1, n_bars), np.int8)
    counts = np.empty(1, np.int64)
    kernels.signal_rows(kind, np.full(n_bars, 100.0), table, zero, zero, p1, p2, p2, out_idx, out_val, counts)
    values = np.where(np.isnan(rsi), kernels.NO_VALUE_CODE, np.sign(rsi - 50.0)).astype(np.int64)
    want_idx, want_val = _scan_reference(values)
    np.testing.assert_array_equal(out_idx[0, : counts[0]], want_idx)
    np.testing.assert_array_equal(out_val[0, : counts[0]], want_val)
    assert counts[0] > 0


def test_rounding_residue_of_flat_days_is_no_risk():
    # Days that are flat in exact arithmetic compound to residues of about 1e-16: the Sortino and
    # Sharpe ratios must come out undefined, not 1e15 (they would top every ranking).
    close = np.array([100, 99.5, 100, 100.5, 101, 101.5, 102, 102.5, 103], dtype=np.float64)
    day = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2], dtype=np.int64)
    rows = SparseRows(np.array([0], np.int32), np.array([0], np.int32), np.array([1], np.int8), 1, close.size)
    for scale in (1.0, 0.7):
        got = compute_metrics(rows, close * scale, day, CostModel(0.0, 0.0))
        want = ref_metrics.compute_metrics(rows, close * scale, day, ref_metrics.CostModel(0.0, 0.0))
        assert_metrics_equal(got, want)
        assert np.isnan(got.loc[0, "sortino_ratio"])
        assert got.loc[0, "total_return"] == pytest.approx(0.03)
