"""Strategy rules on real SPY 5m bars against plain per-bar reference implementations."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from tests.core.reference import ref_rsi, rth_bars
from admf_assets.core import strategies as strat
from admf_assets.core.config import StrategyConfig
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.sparse import NO_VALUE, decode_dense
from admf_assets.core.strategies import (
    STRATEGY_TYPES,
    evaluate_strategies,
    iter_signal_chunks,
    strategy_warmup,
)

NV = int(NO_VALUE)


def cfg(strategy_type: str, **params) -> StrategyConfig:
    return StrategyConfig(strategy_type, params)


# --------------------------------------------------------------------------- reference (per bar)


def ref_sma(c, t, n):
    return None if t < n - 1 else sum(c[t - n + 1 : t + 1]) / n


def ref_bands(c, t, n, k):
    if t < n - 1:
        return None
    window = c[t - n + 1 : t + 1]
    mu = sum(window) / n
    sigma = math.sqrt(sum((v - mu) ** 2 for v in window) / n)
    return mu + k * sigma, mu - k * sigma




def ref_rsi_extreme(rsi_values, oversold, overbought, exit_level):
    """The stateful rule as a plain state machine."""
    out, state = [], 0
    for r in rsi_values:
        if r is None:
            out.append(NV)
            continue
        if r < oversold:
            state = 1
        elif r > overbought:
            state = -1
        elif state == 1 and r >= exit_level:
            state = 0
        elif state == -1 and r <= exit_level:
            state = 0
        out.append(state)
    return out


def sign(a, b):
    return 1 if a > b else (-1 if a < b else 0)


def reference(config: StrategyConfig, close: list[float]) -> np.ndarray:
    p, t_len, out = config.params, len(close), []
    kind = config.strategy_type
    if kind in ("rsi_bands", "rsi_threshold", "rsi_extreme"):
        rsi = ref_rsi(close, p["period"])
    if kind == "rsi_extreme":
        return np.array(ref_rsi_extreme(rsi, p["oversold"], p["overbought"], p["exit_level"]), dtype=np.int8)
    for t in range(t_len):
        c = close[t]
        if kind in ("sma_crossover", "ma_crossover"):
            fast, slow = ref_sma(close, t, p["fast_period"]), ref_sma(close, t, p["slow_period"])
            if fast is None or slow is None:
                v = NV
            elif kind == "sma_crossover":
                v = sign(fast, slow)
            else:
                v = 1 if fast > slow else -1
        elif kind in ("bollinger_bands", "bollinger_breakout"):
            bands = ref_bands(close, t, p["period"], p["std_dev"])
            if bands is None:
                v = NV
            elif kind == "bollinger_bands":
                upper, lower = bands
                v = -1 if c >= upper else (1 if c <= lower else 0)
            else:
                upper, lower = bands
                v = 1 if c > upper else (-1 if c < lower else 0)
        elif kind == "rsi_bands":
            r = rsi[t]
            v = NV if r is None else (-1 if r > p["overbought"] else (1 if r < p["oversold"] else 0))
        elif kind == "rsi_threshold":
            v = NV if rsi[t] is None else sign(rsi[t], p["threshold"])
        elif kind == "momentum_breakout":
            n = p["period"]
            if t < n:
                v = NV
            else:
                pct = (c - close[t - n]) / c
                v = 1 if pct > p["threshold"] else (-1 if pct < -p["threshold"] else 0)
        elif kind == "momentum":
            s = ref_sma(close, t, p["period"])
            v = NV if s is None else sign(c, s)
        else:
            raise AssertionError(kind)
        out.append(v)
    return np.array(out, dtype=np.int8)


GRID = [
    cfg("sma_crossover", fast_period=5, slow_period=20),
    cfg("sma_crossover", fast_period=10, slow_period=30),
    cfg("ma_crossover", fast_period=5, slow_period=20),
    cfg("ma_crossover", fast_period=3, slow_period=50),
    cfg("bollinger_bands", period=20, std_dev=2.0),
    cfg("bollinger_bands", period=10, std_dev=1.5),
    cfg("bollinger_breakout", period=20, std_dev=2.0),
    cfg("bollinger_breakout", period=10, std_dev=1.5),
    cfg("rsi_bands", period=14, oversold=30, overbought=70),
    cfg("rsi_bands", period=7, oversold=25.0, overbought=75.0),
    cfg("rsi_threshold", period=14, threshold=50),
    cfg("rsi_threshold", period=5, threshold=55.5),
    cfg("rsi_extreme", period=14, oversold=30, overbought=70, exit_level=50),
    cfg("rsi_extreme", period=7, oversold=25, overbought=75, exit_level=45),
    cfg("rsi_extreme", period=3, oversold=20, overbought=80, exit_level=60),
    cfg("momentum_breakout", period=10, threshold=0.002),
    cfg("momentum_breakout", period=3, threshold=0.001),
    cfg("momentum", period=14),
    cfg("momentum", period=20),
]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return rth_bars()


@pytest.fixture(scope="module")
def grid_signals(bars) -> np.ndarray:
    return evaluate_strategies(bars, GRID)


def test_strategy_types_are_the_nine():
    assert set(STRATEGY_TYPES) == {
        "sma_crossover", "ma_crossover", "bollinger_bands", "bollinger_breakout", "rsi_bands",
        "rsi_threshold", "rsi_extreme", "momentum_breakout", "momentum",
    }
    assert {c.strategy_type for c in GRID} == set(STRATEGY_TYPES)


def test_shape_dtype_and_values(bars, grid_signals):
    assert grid_signals.shape == (len(GRID), len(bars))
    assert grid_signals.dtype == np.int8
    assert set(np.unique(grid_signals)) <= {NV, -1, 0, 1}


@pytest.mark.parametrize("i", range(len(GRID)), ids=[f"{c.strategy_type}-{i}" for i, c in enumerate(GRID)])
def test_every_rule_matches_per_bar_reference(bars, grid_signals, i):
    expected = reference(GRID[i], bars["close"].astype(float).tolist())
    got = grid_signals[i]
    mismatch = np.flatnonzero(got != expected)
    assert mismatch.size == 0, f"{GRID[i]}: first mismatches at bars {mismatch[:5]}: {got[mismatch[:5]]} vs {expected[mismatch[:5]]}"


@pytest.mark.parametrize("strategy_type", STRATEGY_TYPES)
def test_each_type_shows_its_signals_on_real_data(grid_signals, strategy_type):
    """The reference comparison is not vacuous: each type goes both long and short on these bars."""
    rows = [i for i, c in enumerate(GRID) if c.strategy_type == strategy_type]
    values = set(np.unique(grid_signals[rows]).tolist())
    assert {1, -1} <= values
    if strategy_type in ("bollinger_bands", "bollinger_breakout", "rsi_bands", "rsi_extreme", "momentum_breakout"):
        assert 0 in values  # these have a flat zone; the others are flat only on exact ties
    if strategy_type == "ma_crossover":
        assert 0 not in values  # never flat


# --------------------------------------------------------------------------- hand checks


def _first(row: np.ndarray, value: int) -> int:
    hits = np.flatnonzero(row == value)
    assert hits.size, f"no bar with value {value}"
    return int(hits[0])


def test_hand_check_sma_crossover_and_ma_crossover(bars):
    c = bars["close"].tolist()
    out = evaluate_strategies(bars, [cfg("sma_crossover", fast_period=5, slow_period=20),
                                     cfg("ma_crossover", fast_period=5, slow_period=20)])
    for row in out:
        assert (row[:19] == NV).all() and (row[19:] != NV).all()
        up, down = _first(row, 1), _first(row, -1)
        assert sum(c[up - 4 : up + 1]) / 5 > sum(c[up - 19 : up + 1]) / 20
        assert sum(c[down - 4 : down + 1]) / 5 < sum(c[down - 19 : down + 1]) / 20


def test_hand_check_bollinger_bands_and_breakout(bars):
    c = bars["close"].tolist()
    mr, bo = evaluate_strategies(bars, [cfg("bollinger_bands", period=20, std_dev=1.5),
                                        cfg("bollinger_breakout", period=20, std_dev=1.5)])

    def band(t):
        w = c[t - 19 : t + 1]
        mu = sum(w) / 20
        sd = (sum((v - mu) ** 2 for v in w) / 20) ** 0.5
        return mu + 1.5 * sd, mu - 1.5 * sd

    t = _first(mr, -1)
    assert c[t] >= band(t)[0] and bo[t] == 1  # above the upper band: fade it / ride it
    t = _first(mr, 1)
    assert c[t] <= band(t)[1] and bo[t] == -1
    t = _first(mr[19:], 0) + 19
    assert band(t)[1] < c[t] < band(t)[0] and bo[t] == 0


def test_hand_check_rsi_rules(bars):
    c = bars["close"].tolist()
    rsi = ref_rsi(c, 14)
    bands, thr = evaluate_strategies(bars, [cfg("rsi_bands", period=14, oversold=30, overbought=70),
                                            cfg("rsi_threshold", period=14, threshold=50)])
    assert (bands[:14] == NV).all() and bands[14] != NV
    assert rsi[_first(bands, 1)] < 30 and rsi[_first(bands, -1)] > 70
    assert rsi[_first(thr, 1)] > 50 and rsi[_first(thr, -1)] < 50


def test_hand_check_momentum_rules(bars):
    c = bars["close"].tolist()
    brk, mom = evaluate_strategies(bars, [cfg("momentum_breakout", period=10, threshold=0.002),
                                          cfg("momentum", period=20)])
    assert (brk[:10] == NV).all() and brk[10] != NV
    t = _first(brk, 1)
    assert (c[t] - c[t - 10]) / c[t] > 0.002
    t = _first(brk, -1)
    assert (c[t] - c[t - 10]) / c[t] < -0.002
    t = _first(mom, 1)
    assert c[t] > sum(c[t - 19 : t + 1]) / 20
    t = _first(mom, -1)
    assert c[t] < sum(c[t - 19 : t + 1]) / 20


def test_rsi_extreme_matches_state_machine_over_a_grid(bars):
    """Several hundred real bars, many threshold combinations, vs. the per-bar loop."""
    c = bars["close"].tolist()
    configs = [
        cfg("rsi_extreme", period=p, oversold=os_, overbought=ob, exit_level=ex)
        for p in (2, 5, 14)
        for os_, ob in ((20, 80), (30, 70), (35, 65))
        for ex in (40, 50, 60)
    ]
    out = evaluate_strategies(bars, configs)
    held = 0
    for row, config in zip(out, configs):
        p = config.params
        expected = ref_rsi_extreme(ref_rsi(c, p["period"]), p["oversold"], p["overbought"], p["exit_level"])
        np.testing.assert_array_equal(row, np.array(expected, dtype=np.int8), err_msg=str(config))
        # Held positions: bars where the state is nonzero although RSI is inside the bands.
        rsi = np.array([np.nan if v is None else v for v in ref_rsi(c, p["period"])])
        held += int(np.sum((row != 0) & (row != NV) & (rsi >= p["oversold"]) & (rsi <= p["overbought"])))
    assert held > 100  # the state really is carried across bars


def _with_rsi(rsi_values: list[float]) -> tuple[pd.DataFrame, IndicatorCache]:
    """Bars of the right length whose cache returns a scripted RSI series."""
    n = len(rsi_values)
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": np.linspace(100, 101, n), "volume": 1.0})
    cache = IndicatorCache(bars)
    scripted = np.array(rsi_values, dtype=np.float64)
    for period in (1, 14):  # the periods the tests below use: cached rows are used as they are
        cache._store[("rsi", period)] = scripted
    return bars, cache


def test_rsi_extreme_transitions_flip_and_inclusive_exit():
    nan = math.nan
    rsi = [nan, nan, 50, 25, 40, 49.9, 50, 60, 75, 60, 50.1, 50, 25, 80, 20, 55, 45]
    want = [NV, NV, 0, 1, 1, 1, 0, 0, -1, -1, -1, 0, 1, -1, 1, 0, 0]
    bars, cache = _with_rsi(rsi)
    got = evaluate_strategies(bars, [cfg("rsi_extreme", period=14, oversold=30, overbought=70, exit_level=50)], cache)
    assert got[0].tolist() == want
    assert want == ref_rsi_extreme([None if math.isnan(v) else v for v in rsi], 30, 70, 50)


def test_rsi_extreme_entry_bar_beats_exit_condition():
    # exit_level below oversold (outside the schema's range, but the rule stays defined): an entry
    # bar stays in, the next bar that is no longer an entry bar exits.
    bars, cache = _with_rsi([20.0, 25.0, 35.0, 15.0, 50.0])
    got = evaluate_strategies(bars, [cfg("rsi_extreme", period=1, oversold=30, overbought=70, exit_level=10)], cache)
    assert got[0].tolist() == [1, 1, 0, 1, 0]


def test_ties_on_flat_prices():
    """A flat stretch gives exactly equal SMAs and a zero-width band: the tie rules apply."""
    close = np.r_[np.linspace(100.0, 101.0, 10), np.full(40, 101.0)]  # never a down move
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0})
    configs = [
        cfg("sma_crossover", fast_period=5, slow_period=20),
        cfg("ma_crossover", fast_period=5, slow_period=20),
        cfg("momentum", period=20),
        cfg("bollinger_bands", period=20, std_dev=2.0),
        cfg("bollinger_breakout", period=20, std_dev=2.0),
        cfg("rsi_threshold", period=5, threshold=100),
        cfg("momentum_breakout", period=5, threshold=0.0),
    ]
    out = evaluate_strategies(bars, configs)
    flat = slice(35, 50)  # every window fully inside the flat part
    assert (out[0, flat] == 0).all()
    assert (out[1, flat] == -1).all()  # never flat: equal is short
    assert (out[2, flat] == 0).all()
    assert (out[3, flat] == -1).all()  # close == upper == lower: the upper test comes first
    assert (out[4, flat] == 0).all()
    assert (out[5, flat] == 0).all()  # RSI is 100 with no losses: equal to the threshold
    assert (out[6, flat] == 0).all()


# --------------------------------------------------------------------------- warm-up, grouping, chunks


@pytest.mark.parametrize("config", GRID, ids=[f"{c.strategy_type}-{i}" for i, c in enumerate(GRID)])
def test_warmup_length(bars, config):
    row = evaluate_strategies(bars, [config])[0]
    w = strategy_warmup(config)
    assert (row[:w] == NV).all() and (row[w:] != NV).all()


def test_warmup_formulas():
    assert strategy_warmup(cfg("sma_crossover", fast_period=5, slow_period=20)) == 19
    assert strategy_warmup(cfg("bollinger_bands", period=20, std_dev=2.0)) == 19
    assert strategy_warmup(cfg("rsi_extreme", period=14, oversold=30, overbought=70, exit_level=50)) == 14
    assert strategy_warmup(cfg("momentum_breakout", period=10, threshold=0.02)) == 10
    assert strategy_warmup(cfg("momentum", period=14)) == 13


def test_indicators_are_shared_across_configs(bars):
    cache = IndicatorCache(bars)
    configs = [
        cfg("sma_crossover", fast_period=5, slow_period=20),
        cfg("ma_crossover", fast_period=5, slow_period=20),
        cfg("momentum", period=20),
        cfg("bollinger_bands", period=20, std_dev=2.0),
        cfg("bollinger_breakout", period=20, std_dev=1.0),
        cfg("rsi_bands", period=14, oversold=30, overbought=70),
        cfg("rsi_extreme", period=14, oversold=30, overbought=70, exit_level=50),
        cfg("rsi_threshold", period=14, threshold=50),
    ]
    out = evaluate_strategies(bars, configs, cache)
    assert cache.computed[("sma", 20)] == 1 and cache.computed[("sma", 5)] == 1
    assert cache.computed[("rsi", 14)] == 1 and cache.computed[("pstd", 20)] == 1
    evaluate_strategies(bars, configs, cache)  # a second pass reuses everything
    assert set(cache.computed.values()) == {1}
    # Same SMA pair: the never-flat crossover equals the three-way one wherever that is nonzero.
    nonzero = out[0] != 0
    np.testing.assert_array_equal(out[0][nonzero], out[1][nonzero])
    # Bands from the strategy block agree with the cached bollinger() arrays.
    _, upper, lower = cache.bollinger(20, 2.0)
    close = bars["close"].to_numpy()
    valid = ~np.isnan(upper)
    expected = np.where(close >= upper, -1, np.where(close <= lower, 1, 0))
    np.testing.assert_array_equal(out[3][valid], expected[valid])


def test_duplicate_configs_give_identical_rows(bars):
    a = cfg("rsi_extreme", period=7, oversold=25, overbought=75, exit_level=50)
    out = evaluate_strategies(bars, [a, cfg("momentum", period=3), a])
    np.testing.assert_array_equal(out[0], out[2])


def _big_grid() -> list[StrategyConfig]:
    grid = []
    for f in (2, 3, 5, 8):
        for s in (10, 21, 34):
            grid += [cfg("sma_crossover", fast_period=f, slow_period=s), cfg("ma_crossover", fast_period=f, slow_period=s)]
    for p in (5, 10, 20):
        for k in (1.0, 2.0):
            grid += [cfg("bollinger_bands", period=p, std_dev=k), cfg("bollinger_breakout", period=p, std_dev=k)]
        grid += [
            cfg("rsi_bands", period=p, oversold=30, overbought=70),
            cfg("rsi_threshold", period=p, threshold=50),
            cfg("rsi_extreme", period=p, oversold=30, overbought=70, exit_level=50),
            cfg("momentum_breakout", period=p, threshold=0.001),
            cfg("momentum", period=p),
        ]
    random.Random(7).shuffle(grid)
    return grid


def test_iter_signal_chunks_equals_evaluate_strategies(bars):
    grid = _big_grid()
    full = evaluate_strategies(bars, grid)
    offsets, parts = [], []
    for offset, block in iter_signal_chunks(bars, grid, chunk_size=7):
        assert block.dtype == np.int8 and block.shape[0] <= 7 and block.shape[1] == len(bars)
        offsets.append(offset)
        parts.append(block)
    assert offsets == list(range(0, len(grid), 7))
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_row_order_follows_config_order(bars):
    grid = _big_grid()
    full = evaluate_strategies(bars, grid)
    order = list(range(len(grid)))
    random.Random(3).shuffle(order)
    np.testing.assert_array_equal(evaluate_strategies(bars, [grid[i] for i in order]), full[order])
    for i in (0, 5, len(grid) - 1):  # each row equals the config evaluated alone
        np.testing.assert_array_equal(evaluate_strategies(bars, [grid[i]])[0], full[i])


def test_chunk_size_does_not_change_the_rows(bars):
    grid = _big_grid()
    full = strat.signal_sparse_rows(bars, grid)
    for chunk_size in (1, 2, 7):  # compiled calls of a few strategies each, sorted order crosses chunks
        rows = strat.signal_sparse_rows(bars, grid, chunk_size=chunk_size)
        for name in ("series", "idx", "val"):
            np.testing.assert_array_equal(getattr(rows, name), getattr(full, name))
    np.testing.assert_array_equal(evaluate_strategies(bars, grid), decode_dense(full))


def test_empty_grid(bars):
    assert evaluate_strategies(bars, []).shape == (0, len(bars))
    assert list(iter_signal_chunks(bars, [])) == []


# --------------------------------------------------------------------------- parameters and errors


def test_momentum_accepts_sma_period_alias(bars):
    a = evaluate_strategies(bars, [cfg("momentum", period=14)])
    b = evaluate_strategies(bars, [cfg("momentum", sma_period=14)])
    np.testing.assert_array_equal(a, b)


def test_unknown_strategy_type_is_named():
    with pytest.raises(ValueError, match="macd_wizard"):
        iter_signal_chunks(rth_bars(1), [cfg("momentum", period=3), cfg("macd_wizard", period=3)])
    with pytest.raises(ValueError, match="macd_wizard"):
        evaluate_strategies(rth_bars(1), [cfg("macd_wizard", period=3)])


def test_parameter_and_argument_errors():
    bars = rth_bars(1)
    # a missing parameter takes its schema default on construction (sma_crossover slow_period 20)
    assert cfg("sma_crossover", fast_period=3).params == {"fast_period": 3, "slow_period": 20}
    with pytest.raises(ValueError, match="unknown"):
        cfg("sma_crossover", fast_period=3, slow=5)
    with pytest.raises(ValueError, match="threshold"):
        evaluate_strategies(bars, [cfg("rsi_threshold", period=3, threshold=float("nan"))])
    with pytest.raises(ValueError, match="period"):
        evaluate_strategies(bars, [cfg("momentum", period=0)])
    with pytest.raises(ValueError, match="period"):
        iter_signal_chunks(bars, [cfg("rsi_bands", period=14.5, oversold=30, overbought=70)])
    with pytest.raises(ValueError, match="chunk_size"):
        iter_signal_chunks(bars, [cfg("momentum", period=3)], chunk_size=0)
    with pytest.raises(ValueError, match="bars"):
        evaluate_strategies(bars, [cfg("momentum", period=3)], cache=IndicatorCache(rth_bars(2)))
