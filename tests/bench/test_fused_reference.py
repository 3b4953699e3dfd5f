"""The fused MA-crossover reference of ``bench/fused_reference.py`` equals the package.

``bench/grid_throughput.py`` times the fused reference as the machine calibration of the
performance issue (its 15,600 / 17,700 strategies/s); the figure only means something if the
reference computes what the package computes. Here its nine metrics must equal
``compute_metrics``' columns (1e-9 relative, counts exactly) for every strategy of a spread of the
benchmark's ``ma_crossover`` grid on the bundled real SPY sample, with nonzero costs. Strategies
whose cumulative-sum moving averages flip an exact tie SMA(fast) == SMA(slow) of the package's
Kahan-summed rolling means take another side on that bar and are excluded; there must be few.
The bench modules are imported by path, so the test does not depend on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pytest

from admf_assets.core.bars import bundled_sample_dir, read_bar_file, trading_dates, validate_bars
from admf_assets.core.engine import strategy_rows
from admf_assets.core.grid import parse_grid
from admf_assets.core.metrics import METRIC_COLUMNS, CostModel, compute_metrics, extract_trades
from admf_assets.core.sparse import decode_dense

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    module_name = f"admf_bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fused():
    return _load("fused_reference")


@pytest.fixture(scope="module")
def sample():
    """Bundled SPY 5-minute sample, regular hours: bars, closes, trading-day codes."""
    path = bundled_sample_dir() / "SPY_5m.csv"
    bars, _ = validate_bars(read_bar_file(path), source=str(path), session="regular")
    dates = np.asarray(trading_dates(bars["ts"]), dtype="datetime64[D]")
    _, day = np.unique(dates, return_inverse=True)
    return bars, bars["close"].to_numpy(dtype=np.float64), day.astype(np.int64)


@pytest.fixture(scope="module")
def grid():
    configs = _load("grid_throughput").ma_configs(40)
    fast = np.array([c.params["fast_period"] for c in configs], dtype=np.int64)
    slow = np.array([c.params["slow_period"] for c in configs], dtype=np.int64)
    return configs, fast, slow


def test_nine_metrics_are_package_columns(fused):
    assert len(fused.METRICS) == 9
    assert set(fused.METRICS) <= set(METRIC_COLUMNS)


@pytest.mark.parametrize("costs", [CostModel(0.5, 1.0), CostModel(3.0, 7.0)], ids=["default-costs", "high-costs"])
def test_fused_reference_equals_compute_metrics(fused, sample, grid, costs):
    bars, close, day = sample
    configs, fast, slow = grid
    assert len(configs) == 40 and np.all(fast < slow)
    rows = strategy_rows(bars, configs)
    ours = compute_metrics(rows, close, day, costs)
    result = fused.fused_ma_crossover(close, day, fast, slow, costs.per_side)

    flips = fused.side_differences(close, fast, slow, decode_dense(rows, missing=np.int8(0))) > 0
    assert flips.sum() <= 2, f"{int(flips.sum())} strategies flip a tie of the moving averages"
    keep = ~flips
    assert ours["total_trades"].to_numpy()[keep].min() > 0  # the trade statistics are exercised
    assert np.isfinite(ours["profit_factor"].to_numpy()[keep]).all()
    for name in fused.METRICS:
        mine, theirs = result[name][keep], ours[name].to_numpy()[keep]
        if name == "total_trades":
            assert mine.dtype == np.int64
            np.testing.assert_array_equal(mine, theirs, err_msg=name)
        else:
            assert mine.dtype == np.float64
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)


def test_thread_count_does_not_change_results(fused, sample, grid):
    _, close, day = sample
    _, fast, slow = grid
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fused.fused_ma_crossover(close, day, fast, slow, CostModel().per_side)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = fused.fused_ma_crossover(close, day, fast, slow, CostModel().per_side)
    finally:
        numba.set_num_threads(before)
    for name in fused.METRICS:
        np.testing.assert_array_equal(one[name], many[name], err_msg=name)


def test_short_history_and_warm_up(fused, sample):
    """Bars shorter than the slow warm-up: no position, no trade, flat equity, NaN ratios."""
    _, close, day = sample
    result = fused.fused_ma_crossover(close[:50], day[:50], np.array([5]), np.array([60]), CostModel().per_side)
    assert result["total_return"][0] == 0.0 and result["max_drawdown"][0] == 0.0
    assert result["total_trades"][0] == 0
    for name in ("sharpe_ratio", "sortino_ratio", "win_rate", "profit_factor", "avg_trade_return"):
        assert np.isnan(result[name][0]), name


def test_zero_cost_trades_and_ties_on_a_cent_grid(fused):
    """Without costs on a random walk in cents, trades that exit at their entry price have a net
    return of exactly 0: neither a win nor a loss (win rate, profit factor). Exact ties of the
    moving averages are common on such prices, so many strategies are excluded here; the rest must
    agree. Sharpe and Sortino ratios get an absolute tolerance of 1e-9 as well: with a mean daily
    return near 0 (a total return of -2e-6 in one case) the last-bit differences of ``prod - 1``
    between the two implementations dominate the relative error of the mean."""
    rng = np.random.default_rng(1)
    n = 78 * 20
    steps = np.round(rng.normal(0.0, 0.05, n), 2)
    steps[rng.random(n) < 0.25] = 0.0
    close = np.round(100.0 + np.cumsum(steps), 2)
    bars = pd.DataFrame({"open": close, "high": close + 0.01, "low": close - 0.01, "close": close, "volume": 1000.0})
    day = (np.arange(n) // 78).astype(np.int64)
    spec = {"strategies": [{"type": "ma_crossover", "params": {"fast_period": {"start": 2, "stop": 12, "step": 2},
                                                               "slow_period": {"start": 15, "stop": 60, "step": 9}}}]}
    configs = parse_grid(spec, source="test").strategies
    fast = np.array([c.params["fast_period"] for c in configs], dtype=np.int64)
    slow = np.array([c.params["slow_period"] for c in configs], dtype=np.int64)
    costs = CostModel(0.0, 0.0)
    rows = strategy_rows(bars, configs)
    ours = compute_metrics(rows, close, day, costs)
    result = fused.fused_ma_crossover(close, day, fast, slow, costs.per_side)
    keep = fused.side_differences(close, fast, slow, decode_dense(rows, missing=np.int8(0))) == 0
    assert keep.sum() >= 15
    trades = extract_trades(rows, close, costs)
    at_zero = trades["series"].to_numpy()[trades["net_return"].to_numpy() == 0]
    assert np.isin(np.flatnonzero(keep), at_zero).sum() >= 10  # the win / loss boundary is exercised
    for name in fused.METRICS:
        mine, theirs = result[name][keep], ours[name].to_numpy()[keep]
        if name == "total_trades":
            np.testing.assert_array_equal(mine, theirs, err_msg=name)
        else:
            atol = 1e-9 if name in ("sharpe_ratio", "sortino_ratio") else 1e-12
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=atol, equal_nan=True, err_msg=name)
