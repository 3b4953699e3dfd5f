"""Regime classifiers on real SPY 5m bars against plain per-bar reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.core.reference import ref_rsi, rth_bars
from admf_assets.core.classifiers import (
    CLASSIFIER_TYPES,
    REGIME_LABELS,
    classifier_warmup,
    evaluate_classifiers,
    regime_names,
)
from admf_assets.core.config import ClassifierConfig, StrategyConfig
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.sparse import NO_VALUE
from admf_assets.core.strategies import evaluate_strategies

NV = int(NO_VALUE)


def ccfg(classifier_type: str, **params) -> ClassifierConfig:
    return ClassifierConfig(classifier_type, params)


# --------------------------------------------------------------------------- reference (per bar)


def ref_sma_series(x, n):
    return [None if t < n - 1 or any(v is None for v in x[t - n + 1 : t + 1]) else sum(x[t - n + 1 : t + 1]) / n
            for t in range(len(x))]


def ref_atr(high, low, close, n):
    out, prev, alpha = [], None, 2.0 / (n + 1)
    for t in range(len(close)):
        tr = high[0] - low[0] if t == 0 else max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        prev = tr if prev is None else alpha * tr + (1 - alpha) * prev
        out.append(prev if t >= n - 1 else None)
    return out




def reference(config: ClassifierConfig, bars: pd.DataFrame) -> list[str | None]:
    p = config.params
    c = bars["close"].astype(float).tolist()
    out: list[str | None] = []
    if config.classifier_type == "trend":
        fast, slow = ref_sma_series(c, p["fast_period"]), ref_sma_series(c, p["slow_period"])
        for f, s in zip(fast, slow):
            if f is None or s is None:
                out.append(None)
                continue
            d = (f - s) / s
            out.append("trending_up" if d > p["threshold"] else "trending_down" if d < -p["threshold"] else "ranging")
    elif config.classifier_type == "volatility":
        atr = ref_atr(bars["high"].tolist(), bars["low"].tolist(), c, p["atr_period"])
        avg = ref_sma_series(atr, p["lookback"])
        for a, m in zip(atr, avg):
            if a is None or m is None:
                out.append(None)
            elif m == 0:
                out.append("normal_volatility")
            else:
                r = a / m
                out.append("high_volatility" if r > p["high"] else "low_volatility" if r < p["low"] else "normal_volatility")
    else:
        rsi = ref_rsi(c, p["rsi_period"])
        n = p["momentum_period"]
        for t, r in enumerate(rsi):
            if r is None or t < n:
                out.append(None)
                continue
            pct = (c[t] - c[t - n]) / c[t]
            out.append("strong_momentum" if (r < 30 or r > 70) else "weak_momentum" if abs(pct) > p["threshold"] else "no_momentum")
    return out


GRID = [
    ccfg("trend", fast_period=10, slow_period=50, threshold=0.002),
    ccfg("trend", fast_period=5, slow_period=20, threshold=0.001),
    ccfg("volatility", atr_period=14, lookback=50, high=1.5, low=0.5),
    ccfg("volatility", atr_period=5, lookback=20, high=1.2, low=0.8),
    ccfg("momentum_regime", rsi_period=14, momentum_period=10, threshold=0.002),
    ccfg("momentum_regime", rsi_period=5, momentum_period=3, threshold=0.001),
]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return rth_bars()


@pytest.fixture(scope="module")
def codes(bars) -> np.ndarray:
    return evaluate_classifiers(bars, GRID)


def test_types_and_labels():
    assert CLASSIFIER_TYPES == ("trend", "volatility", "momentum_regime")
    assert REGIME_LABELS["trend"] == ("trending_up", "trending_down", "ranging")
    assert REGIME_LABELS["volatility"] == ("high_volatility", "low_volatility", "normal_volatility")
    assert REGIME_LABELS["momentum_regime"] == ("strong_momentum", "weak_momentum", "no_momentum")


@pytest.mark.parametrize("i", range(len(GRID)), ids=[f"{c.classifier_type}-{i}" for i, c in enumerate(GRID)])
def test_matches_per_bar_reference(bars, codes, i):
    assert codes.dtype == np.int8 and codes.shape == (len(GRID), len(bars))
    expected = reference(GRID[i], bars)
    got = regime_names(GRID[i].classifier_type, codes[i]).tolist()
    bad = [t for t, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not bad, f"{GRID[i]}: first mismatches at {bad[:5]}: {[got[t] for t in bad[:5]]} vs {[expected[t] for t in bad[:5]]}"


@pytest.mark.parametrize("kind", CLASSIFIER_TYPES)
def test_every_regime_occurs_on_real_data(codes, kind):
    rows = [i for i, c in enumerate(GRID) if c.classifier_type == kind]
    assert set(np.unique(codes[rows]).tolist()) == {NV, 0, 1, 2}


def test_hand_check_trend(bars, codes):
    c = bars["close"].tolist()
    row = codes[0]  # trend(10, 50, 0.002)
    for code, label in enumerate(REGIME_LABELS["trend"]):
        t = int(np.flatnonzero(row == code)[0])
        d = (sum(c[t - 9 : t + 1]) / 10 - sum(c[t - 49 : t + 1]) / 50) / (sum(c[t - 49 : t + 1]) / 50)
        if label == "trending_up":
            assert d > 0.002
        elif label == "trending_down":
            assert d < -0.002
        else:
            assert -0.002 <= d <= 0.002


def test_hand_check_momentum_regime(bars, codes):
    c = bars["close"].tolist()
    rsi = ref_rsi(c, 14)
    row = codes[4]  # momentum_regime(14, 10, 0.002)
    t = int(np.flatnonzero(row == 0)[0])
    assert rsi[t] < 30 or rsi[t] > 70
    t = int(np.flatnonzero(row == 1)[0])
    assert 30 <= rsi[t] <= 70 and abs((c[t] - c[t - 10]) / c[t]) > 0.002
    t = int(np.flatnonzero(row == 2)[0])
    assert 30 <= rsi[t] <= 70 and abs((c[t] - c[t - 10]) / c[t]) <= 0.002


@pytest.mark.parametrize("config", GRID, ids=[f"{c.classifier_type}-{i}" for i, c in enumerate(GRID)])
def test_warmup(bars, config):
    row = evaluate_classifiers(bars, [config])[0]
    w = classifier_warmup(config)
    assert (row[:w] == NV).all() and (row[w:] != NV).all()


def test_warmup_formulas():
    assert classifier_warmup(GRID[0]) == 49
    assert classifier_warmup(GRID[2]) == 13 + 49
    assert classifier_warmup(GRID[4]) == 14
    assert classifier_warmup(ccfg("momentum_regime", rsi_period=5, momentum_period=12, threshold=0.01)) == 12


def test_momentum_regime_boundaries_are_strict():
    n = 6
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": np.linspace(100, 101, n), "volume": 1.0})
    cache = IndicatorCache(bars)
    rsi = np.array([math.nan, 70.0, 30.0, 70.0001, 29.9999, 50.0])
    pct = np.array([math.nan, 0.0, 0.01, 0.0, 0.0, 0.01])
    cache.rsi = lambda period: rsi
    cache.momentum_pct = lambda period: pct
    row = evaluate_classifiers(bars, [ccfg("momentum_regime", rsi_period=3, momentum_period=3, threshold=0.01)], cache)[0]
    # 70 and 30 are inside the band; |pct| must exceed the threshold strictly.
    assert row.tolist() == [NV, 2, 2, 0, 0, 2]


def test_volatility_on_flat_bars_is_normal():
    close = np.r_[np.full(30, 100.0), 100.0 + np.arange(1.0, 11.0)]
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0})
    row = evaluate_classifiers(bars, [ccfg("volatility", atr_period=3, lookback=5, high=1.5, low=0.5)])[0]
    assert (row[:6] == NV).all()
    assert (row[6:30] == 2).all()  # ATR and its average are exactly 0: ratio undefined -> normal
    assert row[30] == 0  # first move after a dead-flat stretch: high volatility


def test_cache_shared_with_strategies_and_duplicates(bars):
    cache = IndicatorCache(bars)
    evaluate_strategies(bars, [StrategyConfig("rsi_bands", {"period": 14, "oversold": 30, "overbought": 70}),
                               StrategyConfig("sma_crossover", {"fast_period": 10, "slow_period": 50})], cache)
    out = evaluate_classifiers(bars, [GRID[0], GRID[4], GRID[0]], cache)
    assert cache.computed[("rsi", 14)] == 1 and cache.computed[("sma", 50)] == 1
    assert set(cache.computed.values()) == {1}
    np.testing.assert_array_equal(out[0], out[2])


def test_regime_names():
    names = regime_names("trend", np.array([NV, 0, 1, 2], dtype=np.int8))
    assert names.tolist() == [None, "trending_up", "trending_down", "ranging"]
    with pytest.raises(ValueError):
        regime_names("trend", np.array([3], dtype=np.int8))


def test_errors(bars):
    with pytest.raises(ValueError, match="hmm_regime"):
        evaluate_classifiers(bars, [ccfg("hmm_regime", states=3)])
    assert ccfg("volatility", atr_period=14, high=1.5, low=0.5).params["lookback"] == 50  # default filled
    with pytest.raises(ValueError):
        evaluate_classifiers(bars, [ccfg("trend", fast_period=0, slow_period=5, threshold=0.01)])
    assert evaluate_classifiers(bars, []).shape == (0, len(bars))
