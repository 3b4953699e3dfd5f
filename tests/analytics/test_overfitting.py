"""Deflated Sharpe Ratio and Probability of Backtest Overfitting against the papers' worked
example and constructed cases (pure NumPy, no workspace)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from admf_assets.core.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    grid_deflated_sharpe,
    norm_cdf,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
)


def test_dsr_reproduces_the_numerical_example_of_bailey_lopez_de_prado_2014():
    # Section "A numerical example": 100 trials, V[SR] = 0.5 (annualized), best SR = 2.5
    # annualized, 1250 daily observations (5 years of 250 days), skewness -3, kurtosis 10.
    periods = 250
    sr0 = expected_max_sharpe(100, 0.5 / periods)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)  # paper: SR0 = 0.1132 (non-annualized)
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(periods), 100, 0.5 / periods, 1250, -3.0, 10.0)
    assert float(dsr) == pytest.approx(0.9004, abs=5e-5)  # paper: DSR = 0.9004


def test_expected_max_sharpe_grows_with_trials_and_is_zero_without_selection():
    assert expected_max_sharpe(1, 0.3) == 0.0
    values = [expected_max_sharpe(n, 1.0) for n in (2, 10, 100, 1000, 10000)]
    assert values == sorted(values) and values[-1] < 4.5
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match="var_sharpe"):
        expected_max_sharpe(10, -1.0)


def test_expected_max_sharpe_matches_simulated_maxima_of_unskilled_trials():
    rng = np.random.default_rng(7)
    n, var = 200, 0.04
    simulated = rng.normal(0.0, math.sqrt(var), size=(4000, n)).max(axis=1).mean()
    assert expected_max_sharpe(n, var) == pytest.approx(simulated, rel=0.03)


def test_psr_is_the_normal_cdf_of_the_standardized_excess_sharpe():
    # normal returns (skew 0, kurtosis 3): z = (SR - SR*) sqrt(T-1) / sqrt(1 + SR^2/2)
    sr, t = 0.1, 500
    z = sr * math.sqrt(t - 1) / math.sqrt(1 + sr**2 / 2)
    assert float(probabilistic_sharpe_ratio(sr, 0.0, t, 0.0, 3.0)) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), abs=1e-12)
    assert np.isnan(probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0))
    assert norm_cdf([0.0, np.inf, -np.inf]).tolist() == [0.5, 1.0, 0.0]


def test_return_moments_match_their_definitions():
    rng = np.random.default_rng(3)
    r = rng.standard_t(5, size=(3, 400)) * 0.01
    r[2] = 0.0  # constant: no Sharpe ratio, not a trial
    m = return_moments(r)
    x = r[0]
    d = x - x.mean()
    assert m["sharpe"][0] == pytest.approx(x.mean() / x.std(ddof=1))
    assert m["skew"][0] == pytest.approx((d**3).mean() / (d**2).mean() ** 1.5)
    assert m["kurtosis"][0] == pytest.approx((d**4).mean() / (d**2).mean() ** 2)
    assert np.isnan(m["sharpe"][2]) and m["n_obs"][2] == 400


def test_grid_dsr_uses_the_trials_of_the_grid():
    rng = np.random.default_rng(11)
    r = rng.normal(0.0, 0.01, size=(50, 250))
    r[0] += 0.004  # one skilled strategy: daily SR ~ 0.4
    r[49] = 0.0  # never trades
    out = grid_deflated_sharpe(r)
    assert out["n_trials"] == 49
    m = return_moments(r)
    sr = m["sharpe"][:49]
    sr0 = expected_max_sharpe(49, float(np.var(sr, ddof=1)))
    assert out["expected_max_sharpe"] == pytest.approx(sr0 * math.sqrt(252))
    expect = deflated_sharpe_ratio(sr[0], 49, float(np.var(sr, ddof=1)), 250, m["skew"][0], m["kurtosis"][0])
    assert out["deflated_sharpe_ratio"][0] == pytest.approx(float(expect))
    assert out["deflated_sharpe_ratio"][0] > 0.99  # skill survives deflation
    assert np.nanmax(out["deflated_sharpe_ratio"][1:49]) < 0.6  # noise does not
    assert np.isnan(out["deflated_sharpe_ratio"][49])


def test_pbo_of_pure_noise_is_near_one_half():
    rng = np.random.default_rng(2015)
    pbos = [probability_of_backtest_overfitting(rng.normal(0, 0.01, size=(100, 1000))).pbo for _ in range(4)]
    assert 0.35 <= float(np.mean(pbos)) <= 0.65
    res = probability_of_backtest_overfitting(rng.normal(0, 0.01, size=(100, 1000)))
    assert (res.n_blocks, res.n_splits, res.n_strategies, res.n_obs) == (16, 12870, 100, 992)  # 1000 mod 16 oldest observations left out
    assert res.logits.shape == (12870,)


def test_pbo_with_one_dominant_strategy_is_near_zero():
    rng = np.random.default_rng(1)
    r = rng.normal(0, 0.01, size=(100, 1000))
    r[17] += 0.004
    res = probability_of_backtest_overfitting(r)
    assert res.pbo <= 0.02
    # the in-sample winner is strategy 17 in (almost) every split, so it ranks near the top OOS
    assert np.median(res.logits) > math.log(90 / 11)


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    # two strategies, two blocks: A wins block 1 and loses block 2, B the opposite; each split's
    # in-sample best is the out-of-sample worst: rank 1 of 2, omega = 1/3, logit < 0.
    a = np.array([0.02, 0.01, -0.01, -0.02])
    b = np.array([-0.02, -0.01, 0.01, 0.02])
    res = probability_of_backtest_overfitting(np.vstack([a, b]), n_blocks=2)
    assert res.n_splits == 2 and res.pbo == 1.0
    assert res.logits == pytest.approx([math.log(0.5), math.log(0.5)])


def _cscv_reference(returns: np.ndarray, n_blocks: int) -> np.ndarray:
    """CSCV written out as the paper describes it (section 2.2): explicit in-sample / out-of-sample
    row sets, Sharpe ratio = mean / sample std, the OOS rank of the IS winner averaged over ties."""
    from itertools import combinations

    n, t = returns.shape
    r = returns[:, t % n_blocks :]
    blocks = np.split(np.arange(r.shape[1]), n_blocks)

    def sharpe(x):
        sd = x.std(axis=1, ddof=1)
        return np.where(sd > 0, x.mean(axis=1) / np.where(sd > 0, sd, 1.0), 0.0)

    logits = []
    for chosen in combinations(range(n_blocks), n_blocks // 2):
        in_rows = np.concatenate([blocks[k] for k in chosen])
        out_rows = np.concatenate([blocks[k] for k in range(n_blocks) if k not in chosen])
        best = int(np.argmax(sharpe(r[:, in_rows])))
        oos = sharpe(r[:, out_rows])
        rank = (oos < oos[best]).sum() + ((oos == oos[best]).sum() + 1) / 2.0
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    return np.array(logits)


@pytest.mark.parametrize("shape, n_blocks", [((20, 123), 8), ((7, 64), 6), ((50, 250), 10)])
def test_pbo_equals_a_direct_cscv_implementation(shape, n_blocks):
    rng = np.random.default_rng(shape[0] * 1000 + n_blocks)
    r = rng.normal(0.0002, 0.01, size=shape)
    r[: shape[0] // 4] += rng.normal(0, 0.002, size=(shape[0] // 4, 1))  # some persistent skill
    res = probability_of_backtest_overfitting(r, n_blocks=n_blocks)
    expected = _cscv_reference(r, n_blocks)
    assert res.logits == pytest.approx(expected, abs=1e-9)
    assert res.pbo == pytest.approx(float(np.mean(expected <= 0)))
    assert res.n_obs == shape[1] - shape[1] % n_blocks


def test_pbo_rejects_bad_shapes():
    with pytest.raises(ValueError, match="at least 2 strategies"):
        probability_of_backtest_overfitting(np.zeros((1, 100)))
    with pytest.raises(ValueError, match="at least 4 observations"):
        probability_of_backtest_overfitting(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((3, 100)), n_blocks=5)


def test_grid_tables_degrade_to_nulls_with_too_little_history():
    import datetime as dt

    import pandas as pd

    from admf_assets.core.analytics import overfitting_tables

    daily = pd.DataFrame({"A": [0.01, -0.02, 0.0], "B": [0.0, 0.0, 0.0]}, index=[dt.date(2025, 6, d) for d in (4, 5, 6)])
    strategies = pd.DataFrame({"strategy_id": ["A", "B"], "strategy_hash": ["h1", "h2"], "sharpe_ratio": [0.5, np.nan]})
    per, grid = overfitting_tables(daily, strategies, "SPY", "5m")
    assert grid["n_trials"] == 1 and grid["pbo"] is None and grid["n_blocks"] is None  # T = 3 < 4, one trial
    assert grid["expected_max_sharpe"] == 0.0 and grid["best_strategy_id"] == "A"
    assert per.set_index("strategy_id")["return_days"].to_dict() == {"A": 3, "B": 3}
    assert np.isnan(per.set_index("strategy_id").loc["B", "deflated_sharpe_ratio"])
    assert grid["grid_id"].startswith("SPY_5m_") and len(grid["config_hash"]) == 12
