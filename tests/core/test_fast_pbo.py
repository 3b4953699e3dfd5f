"""The compiled CSCV loop of ``probability_of_backtest_overfitting`` equals the NumPy version it
replaced (``tests/core/reference_overfitting.py``): same splits, same PBO, same logits (the
in-sample sums are added in another order, so Sharpe ratios may differ in the last bits)."""

from __future__ import annotations

import numpy as np
import pytest

from admf_assets.core.overfitting import probability_of_backtest_overfitting
from tests.core import reference_overfitting as ref


def _returns(seed: int, n_strat: int, n_obs: int) -> np.ndarray:
    """Daily returns with a common factor, a few skilled strategies, exact duplicates (ties),
    never-trading rows (zero variance) and NaN gaps."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, 0.01, n_obs)
    r = 0.5 * common + rng.normal(0.0, 0.01, (n_strat, n_obs))
    r[: n_strat // 10] += 0.002
    r[n_strat // 2 : n_strat // 2 + 5] = r[0]  # duplicates of strategy 0
    r[-3:] = 0.0  # flat
    r[1, 10:20] = np.nan
    return r


@pytest.mark.parametrize(
    "seed,n_strat,n_obs,n_blocks",
    [(1, 40, 250, None), (2, 400, 252, None), (3, 7, 60, 6), (4, 2, 16, 2), (5, 300, 123, 10)],
)
def test_pbo_equals_numpy_reference(seed, n_strat, n_obs, n_blocks):
    r = _returns(seed, n_strat, n_obs)
    got = probability_of_backtest_overfitting(r, n_blocks=n_blocks)
    want = ref.probability_of_backtest_overfitting(r, n_blocks=n_blocks)
    assert (got.n_splits, got.n_blocks, got.n_strategies, got.n_obs) == (
        want.n_splits, want.n_blocks, want.n_strategies, want.n_obs,
    )
    assert got.pbo == want.pbo
    np.testing.assert_allclose(got.logits, want.logits, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.performance_degradation, want.performance_degradation, rtol=1e-9)
    assert 0.0 <= got.pbo <= 1.0


def test_pbo_of_pure_noise_and_of_one_dominant_strategy():
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 0.01, (200, 256))
    got = probability_of_backtest_overfitting(noise)
    assert got.pbo == ref.probability_of_backtest_overfitting(noise).pbo
    assert 0.2 < got.pbo < 0.8  # selection among noise: overfit about half the time
    strong = noise.copy()
    strong[17] += 0.01  # one strategy is best in and out of sample in every split
    got = probability_of_backtest_overfitting(strong)
    assert got.pbo == 0.0
    assert np.all(got.logits > 0)
