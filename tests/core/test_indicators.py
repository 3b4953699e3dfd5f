"""Indicators against hand computations and plain per-bar reference loops on real SPY 5m bars."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from tests.core import reference
from tests.core.reference import rth_bars
from admf_assets.core import indicators as ind
from admf_assets.core.indicators import IndicatorCache



# --------------------------------------------------------------------------- reference loops


def ref_ema(x, n):
    out, prev = [], None
    alpha = 2.0 / (n + 1)
    for t, v in enumerate(x):
        prev = v if prev is None else alpha * v + (1 - alpha) * prev
        out.append(prev if t >= n - 1 else math.nan)
    return np.array(out)


def ref_rsi(close, n):
    """Wilder 1978 per-bar loop (tests/core/reference.py) as a float array, NaN while warming up."""
    return np.array([math.nan if v is None else v for v in reference.ref_rsi(close, n)])


def ref_true_range(high, low, close):
    out = []
    for t in range(len(close)):
        if t == 0:
            out.append(high[0] - low[0])
        else:
            out.append(max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1])))
    return np.array(out)


def leading_nans(a: np.ndarray) -> int:
    valid = np.flatnonzero(~np.isnan(a))
    return int(valid[0]) if valid.size else len(a)


# --------------------------------------------------------------------------- tests


def test_sample_slice_is_real_rth_data():
    bars = rth_bars()
    assert 375 <= len(bars) <= 390
    assert (bars["volume"] > 0).all()
    assert bars["close"].between(500, 700).all()


@pytest.mark.parametrize("n", [1, 3, 20])
def test_sma_matches_hand_mean_and_warmup(n):
    close = rth_bars()["close"].to_numpy()
    s = ind.sma(close, n)
    assert s.dtype == np.float64 and s.shape == close.shape
    assert leading_nans(s) == n - 1
    for t in (n - 1, 57, 200, len(close) - 1):
        window = [float(v) for v in close[t - n + 1 : t + 1]]
        assert s[t] == pytest.approx(sum(window) / n, rel=1e-12)


def test_sma_of_constant_window_is_exact():
    x = np.array([1.1, 2.3] + [597.26] * 30)
    assert np.all(ind.sma(x, 10)[11:] == 597.26)
    assert np.all(ind.sma(x, 10)[11:] == ind.sma(x, 20)[21:].max())
    assert np.all(ind.rolling_pstd(x, 10)[11:] == 0.0)


@pytest.mark.parametrize("n", [1, 5, 26])
def test_ema_matches_reference_recurrence(n):
    close = rth_bars()["close"].to_numpy()
    e = ind.ema(close, n)
    ref = ref_ema(close.tolist(), n)
    assert leading_nans(e) == n - 1
    np.testing.assert_allclose(e, ref, rtol=1e-12, equal_nan=True)


def test_ema_hand_values():
    x = np.array([10.0, 11.0, 12.0, 10.0])
    # alpha = 2/(3+1) = 0.5, seed 10: 10, 10.5, 11.25, 10.625; valued from bar 2.
    e = ind.ema(x, 3)
    assert np.isnan(e[:2]).all()
    assert e[2] == pytest.approx(11.25) and e[3] == pytest.approx(10.625)


@pytest.mark.parametrize("n", [2, 20])
def test_rolling_pstd_is_population_std(n):
    close = rth_bars()["close"].to_numpy()
    sd = ind.rolling_pstd(close, n)
    assert leading_nans(sd) == n - 1
    for t in (n - 1, 100, 333):
        window = [float(v) for v in close[t - n + 1 : t + 1]]
        assert sd[t] == pytest.approx(statistics.pstdev(window), rel=1e-9, abs=1e-12)
        assert sd[t] != pytest.approx(statistics.stdev(window), rel=1e-6)  # not the sample std


def test_bollinger_by_hand():
    close = rth_bars()["close"].to_numpy()
    middle, upper, lower = ind.bollinger(close, 20, 2.0)
    t = 150
    window = [float(v) for v in close[t - 19 : t + 1]]
    mu = sum(window) / 20
    sigma = math.sqrt(sum((v - mu) ** 2 for v in window) / 20)
    assert middle[t] == pytest.approx(mu, rel=1e-12)
    assert upper[t] == pytest.approx(mu + 2.0 * sigma, rel=1e-12)
    assert lower[t] == pytest.approx(mu - 2.0 * sigma, rel=1e-12)
    assert leading_nans(upper) == leading_nans(lower) == leading_nans(middle) == 19


@pytest.mark.parametrize("n", [1, 2, 5, 14, 30])
def test_rsi_matches_wilder_reference_loop(n):
    close = rth_bars()["close"].to_numpy()
    r = ind.rsi(close, n)
    ref = ref_rsi(close.tolist(), n)
    assert leading_nans(r) == n  # first value needs n changes = n + 1 closes
    np.testing.assert_allclose(r, ref, rtol=1e-10, atol=1e-9, equal_nan=True)
    valid = r[~np.isnan(r)]
    assert valid.min() >= 0 and valid.max() <= 100


def test_rsi_hand_values():
    close = np.array([10.0, 11.0, 10.5, 11.5, 11.0])
    # n = 2: changes +1, -0.5, +1, -0.5. Seed at bar 2: gain 0.5, loss 0.25 -> RS 2 -> 66.67.
    # Bar 3: gain (0.5 + 1)/2 = 0.75, loss (0.25 + 0)/2 = 0.125 -> RS 6 -> 85.714...
    # Bar 4: gain 0.375, loss (0.125 + 0.5)/2 = 0.3125 -> RS 1.2 -> 54.545...
    r = ind.rsi(close, 2)
    assert np.isnan(r[:2]).all()
    assert r[2] == pytest.approx(100 - 100 / 3)
    assert r[3] == pytest.approx(100 - 100 / 7)
    assert r[4] == pytest.approx(100 - 100 / 2.2)


def test_rsi_is_100_when_average_loss_is_zero():
    assert np.all(ind.rsi(np.arange(1.0, 30.0), 14)[14:] == 100.0)
    assert np.all(ind.rsi(np.full(30, 5.0), 14)[14:] == 100.0)  # no gains and no losses either


def test_true_range_and_atr_against_reference():
    bars = rth_bars()
    h, l, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
    tr = ind.true_range(h, l, c)
    assert tr[0] == h[0] - l[0]
    np.testing.assert_allclose(tr, ref_true_range(h, l, c), rtol=0, atol=0)
    # A gap bar: TR uses the previous close when it lies outside the bar's range.
    t = int(np.argmax(np.abs(c[:-1] - (h[1:] + l[1:]) / 2))) + 1
    assert tr[t] == max(h[t] - l[t], abs(h[t] - c[t - 1]), abs(l[t] - c[t - 1]))
    for n in (1, 14):
        a = ind.atr(h, l, c, n)
        assert leading_nans(a) == n - 1
        np.testing.assert_allclose(a, ref_ema(ref_true_range(h, l, c).tolist(), n), rtol=1e-12, equal_nan=True)


def test_momentum_and_percent_momentum_use_current_close():
    close = rth_bars()["close"].to_numpy()
    m = ind.momentum(close, 10)
    pct = ind.momentum_pct(close, 10)
    assert leading_nans(m) == leading_nans(pct) == 10
    t = 123
    assert m[t] == close[t] - close[t - 10]
    assert pct[t] == pytest.approx((close[t] - close[t - 10]) / close[t], rel=1e-15)
    assert pct[t] != pytest.approx((close[t] - close[t - 10]) / close[t - 10], rel=1e-9)


def test_series_shorter_than_window_is_all_nan():
    x = np.array([1.0, 2.0, 3.0])
    for arr in (ind.sma(x, 5), ind.ema(x, 5), ind.rsi(x, 3), ind.momentum(x, 3), ind.momentum_pct(x, 4)):
        assert arr.shape == (3,) and np.isnan(arr).all()
    assert ind.sma(np.array([]), 3).shape == (0,)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_period_raises(bad):
    with pytest.raises(ValueError):
        ind.sma(np.ones(5), bad)
    with pytest.raises(ValueError):
        ind.rsi(np.ones(5), bad)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        ind.sma(np.ones((2, 3)), 2)
    with pytest.raises(ValueError):
        ind.bollinger(np.ones(5), 2, -1.0)
    with pytest.raises(ValueError):
        ind.true_range(np.ones(3), np.ones(4), np.ones(3))


def test_cache_computes_each_indicator_once_and_shares_arrays():
    bars = rth_bars()
    cache = IndicatorCache(bars)
    a, b = cache.sma(20), cache.sma(20.0)
    assert a is b
    assert cache.computed[("sma", 20)] == 1
    middle, upper, lower = cache.bollinger(20, 2)
    assert middle is a  # the band's middle is the shared SMA array
    assert cache.bollinger(20, 2.0)[1] is upper
    assert cache.computed[("sma", 20)] == 1 and cache.computed[("bollinger", 20, 2.0)] == 1
    np.testing.assert_array_equal(upper, ind.bollinger(bars["close"].to_numpy(), 20, 2.0)[1])
    assert cache.atr(14) is cache.atr(14)
    np.testing.assert_array_equal(
        cache.atr(14), ind.atr(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), 14)
    )
    np.testing.assert_array_equal(cache.rsi(14), ind.rsi(bars["close"].to_numpy(), 14))
    np.testing.assert_array_equal(cache.momentum_pct(7), ind.momentum_pct(bars["close"].to_numpy(), 7))
    with pytest.raises(ValueError):
        a[30] = 0.0  # shared arrays are read-only


def test_cache_validates_bars():
    bars = rth_bars()
    with pytest.raises(ValueError, match="close"):
        IndicatorCache(bars.drop(columns=["close"]))
    broken = bars.copy()
    broken.loc[7, "close"] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        IndicatorCache(broken)
    no_range = IndicatorCache(bars.drop(columns=["high"]))
    assert no_range.sma(3).shape == (len(bars),)  # close-only indicators still work
    with pytest.raises(ValueError, match="high"):
        no_range.atr(14)
