"""Overfitting-aware ranking of a grid search: Deflated Sharpe Ratio and Probability of Backtest
Overfitting (NumPy, the standard library and the compiled CSCV loop of ``core/kernels.py``;
no Dagster, no DuckDB).

With thousands of configurations tried, the best in-sample Sharpe ratio is inflated by selection.
Two corrections from the literature are implemented:

* **Deflated Sharpe Ratio** (DSR): Bailey, D. H. and López de Prado, M. (2014), "The Deflated
  Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting, and Non-Normality",
  *Journal of Portfolio Management* 40(5), 94-107. The probability that the true Sharpe ratio of
  a strategy exceeds the Sharpe ratio expected from the best of ``N`` unskilled trials.
* **Probability of Backtest Overfitting** (PBO) by combinatorially symmetric cross-validation
  (CSCV): Bailey, D. H., Borwein, J., López de Prado, M. and Zhu, Q. J. (2015), "The Probability
  of Backtest Overfitting", *Journal of Computational Finance* 20(4), 39-69.

Units: every Sharpe ratio passed to the functions of this module is **per observation** (not
annualized) unless the argument name says ``annualized``; returns are fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import numpy as np

from admf_assets.core import kernels

EULER_MASCHERONI = 0.5772156649015329
"""γ in the expected maximum of N standard normals (Bailey & López de Prado 2014, eq. 6)."""

_NORMAL = NormalDist()
_erf = np.frompyfunc(math.erf, 1, 1)


def norm_cdf(x) -> np.ndarray:
    """Standard normal CDF Φ(x) = (1 + erf(x / √2)) / 2, element-wise (float64, NaN stays NaN)."""
    arr = np.asarray(x, dtype=np.float64)
    out = np.full(arr.shape, np.nan)
    ok = np.isfinite(arr)
    out[ok] = 0.5 * (1.0 + _erf(arr[ok] / math.sqrt(2.0)).astype(np.float64))
    out[np.isposinf(arr)] = 1.0
    out[np.isneginf(arr)] = 0.0
    return out


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` independent unskilled trials (true SR 0).

    ``SR0 = sqrt(V[SR]) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))`` (Bailey & López de
    Prado 2014, eq. 6 / the "False Strategy Theorem"), γ the Euler-Mascheroni constant.

    Args:
        n_trials: N, number of configurations tried (>= 1; N = 1 gives 0, no selection).
        var_sharpe: V[SR], the variance across trials of their Sharpe ratios, in the same
            (per-observation) units as the result.

    Returns:
        SR0 in the units of ``sqrt(var_sharpe)``.

    Raises:
        ValueError: for ``n_trials < 1`` or a negative / non-finite ``var_sharpe``.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not np.isfinite(var_sharpe) or var_sharpe < 0:
        raise ValueError(f"var_sharpe must be a finite variance >= 0, got {var_sharpe}")
    if n_trials == 1:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(var_sharpe) * ((1.0 - EULER_MASCHERONI) * z1 + EULER_MASCHERONI * z2))


def probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skew, kurtosis) -> np.ndarray:
    """Probabilistic Sharpe Ratio PSR(SR*) = Φ((SR - SR*) √(T - 1) / √(1 - γ3 SR + (γ4 - 1)/4 SR²)).

    Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", *Journal of Risk*
    15(2); used with ``SR* = SR0`` by the DSR (2014, eq. 2). Arrays broadcast together.

    Args:
        sharpe: observed per-observation Sharpe ratio(s) (not annualized).
        benchmark: SR*, per-observation.
        n_obs: T, number of return observations (>= 2).
        skew: γ3, sample skewness of the returns.
        kurtosis: γ4, sample (non-excess) kurtosis of the returns (3 for a normal).

    Returns:
        float64 probabilities in [0, 1]; NaN where an input is NaN, T < 2, or the variance term
        ``1 - γ3 SR + (γ4 - 1)/4 SR²`` is not positive.
    """
    sr = np.asarray(sharpe, dtype=np.float64)
    sr0 = np.asarray(benchmark, dtype=np.float64)
    t = np.asarray(n_obs, dtype=np.float64)
    g3 = np.asarray(skew, dtype=np.float64)
    g4 = np.asarray(kurtosis, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_term = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2
        z = (sr - sr0) * np.sqrt(t - 1.0) / np.sqrt(var_term)
    z = np.where((t >= 2) & (var_term > 0), z, np.nan)
    return norm_cdf(z)


def deflated_sharpe_ratio(sharpe, n_trials: int, var_sharpe: float, n_obs, skew, kurtosis) -> np.ndarray:
    """Deflated Sharpe Ratio: ``DSR = PSR(SR0)`` with ``SR0`` = :func:`expected_max_sharpe`.

    Bailey & López de Prado (2014), eq. 2 and 6. All Sharpe inputs are per observation; to use
    annualized figures divide the Sharpe ratio by √(periods per year) and ``V[SR]`` by the periods
    per year (the paper's example uses 250 days a year).

    Args:
        sharpe: observed per-observation Sharpe ratio(s) of the strategy (array or scalar).
        n_trials: N, number of independent trials of the grid (>= 1).
        var_sharpe: V[SR], variance across the N trials of their per-observation Sharpe ratios.
        n_obs: T, number of return observations of each strategy.
        skew: γ3, skewness of each strategy's returns.
        kurtosis: γ4, non-excess kurtosis of each strategy's returns.

    Returns:
        float64 probabilities in [0, 1] (a DSR above 0.95 rejects "no skill" at 5 %).

    Raises:
        ValueError: as :func:`expected_max_sharpe`.
    """
    sr0 = expected_max_sharpe(n_trials, var_sharpe)
    return probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skew, kurtosis)


def return_moments(returns: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row statistics of a float64 (S, T) return matrix (fractions, NaN = no observation).

    Returns:
        ``{"n_obs", "sharpe", "skew", "kurtosis"}`` float64 arrays (S,): observation count,
        per-observation Sharpe ratio ``mean / std`` (sample std, ddof = 1), and the population
        skewness and non-excess kurtosis (moments about the mean divided by σ³ / σ⁴, as in the
        DSR paper). NaN where fewer than 2 observations or zero variance.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns must be a (strategies, observations) matrix, got shape {r.shape}")
    ok = np.isfinite(r)
    n = ok.sum(axis=1).astype(np.float64)
    x = np.where(ok, r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=1) / n
        d = np.where(ok, r - mean[:, None], 0.0)
        d2 = d * d  # products, not np.power (whose float pow was most of this function's time)
        m2 = d2.sum(axis=1) / n
        m3 = (d2 * d).sum(axis=1) / n
        m4 = (d2 * d2).sum(axis=1) / n
        std = np.sqrt(m2 * n / (n - 1.0))
        valid = (n >= 2) & (m2 > 1e-30)
        sharpe = np.where(valid, mean / std, np.nan)
        skew = np.where(valid, m3 / m2**1.5, np.nan)
        kurt = np.where(valid, m4 / m2**2, np.nan)
    return {"n_obs": n, "sharpe": sharpe, "skew": skew, "kurtosis": kurt}


def grid_deflated_sharpe(
    returns: np.ndarray, periods_per_year: float = 252.0, moments: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray | float | int]:
    """DSR of every strategy of one grid from its (S, T) matrix of daily net returns.

    ``moments``: :func:`return_moments` of ``returns`` when the caller already has them.

    The trials are the strategies of the grid with a defined Sharpe ratio (at least 2
    observations and nonzero variance; a strategy that never trades is not a trial). ``N`` is
    their number, ``V[SR]`` the sample variance (ddof = 1) of their per-observation Sharpe ratios,
    and each strategy's DSR uses its own T, skewness and kurtosis. Neighbouring grid points are
    strongly correlated, so ``N`` overstates the number of independent trials and the DSR errs on
    the strict side; Bailey & López de Prado (2014) suggest estimating an effective N (e.g. by
    clustering the strategies' returns), which this function does not do.

    Returns:
        ``{"deflated_sharpe_ratio": (S,) probabilities (NaN for non-trials),
        "expected_max_sharpe": SR0 annualized with √periods_per_year (float),
        "n_trials": N (int), "sharpe_variance": V[SR] annualized (float)}``.
    """
    m = return_moments(returns) if moments is None else moments
    trial = np.isfinite(m["sharpe"])
    n_trials = int(trial.sum())
    out = np.full(m["sharpe"].shape, np.nan)
    if n_trials == 0:
        return {"deflated_sharpe_ratio": out, "expected_max_sharpe": float("nan"), "n_trials": 0, "sharpe_variance": float("nan")}
    var = float(np.var(m["sharpe"][trial], ddof=1)) if n_trials > 1 else 0.0
    sr0 = expected_max_sharpe(n_trials, var)
    out[trial] = probabilistic_sharpe_ratio(m["sharpe"][trial], sr0, m["n_obs"][trial], m["skew"][trial], m["kurtosis"][trial])
    return {
        "deflated_sharpe_ratio": out,
        "expected_max_sharpe": sr0 * math.sqrt(periods_per_year),
        "n_trials": n_trials,
        "sharpe_variance": var * periods_per_year,
    }


@dataclass(frozen=True)
class PBOResult:
    """Outcome of :func:`probability_of_backtest_overfitting`.

    Attributes:
        pbo: fraction of the CSCV splits whose in-sample best strategy ranks at or below the
            out-of-sample median (logit λ <= 0), in [0, 1].
        logits: float64 (C,) λ_c = ln(ω_c / (1 - ω_c)) of each split, ω_c the relative
            out-of-sample rank of the in-sample best (rank / (N + 1), 1 = worst ... N = best).
        n_splits: C = binomial(S, S/2) combinations evaluated.
        n_blocks: S, the number of contiguous blocks the T observations were cut into.
        n_strategies: N, the strategies compared.
        n_obs: T, the observations used.
        performance_degradation: slope of the least-squares line of out-of-sample on in-sample
            Sharpe ratio of the selected strategies (negative = in-sample winners decay).
    """

    pbo: float
    logits: np.ndarray
    n_splits: int
    n_blocks: int
    n_strategies: int
    n_obs: int
    performance_degradation: float


def default_blocks(n_obs: int, max_blocks: int = 16) -> int:
    """S for CSCV: the largest even number <= ``max_blocks`` leaving >= 2 observations per block
    (16 in the paper's examples). Raises ValueError when ``n_obs < 4``."""
    if n_obs < 4:
        raise ValueError(f"CSCV needs at least 4 observations (2 blocks of 2), got {n_obs}")
    s = min(max_blocks, n_obs // 2)
    return s - (s % 2)


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int | None = None, max_splits: int = 20000) -> PBOResult:
    """PBO of selecting the best in-sample Sharpe ratio among N strategies, by CSCV.

    Algorithm (Bailey, Borwein, López de Prado & Zhu 2015, section 2): cut the T × N matrix of
    returns into S contiguous, equal row blocks (S even; the oldest T mod S observations are left
    out); for each of the C(S, S/2) ways to pick S/2
    blocks as in-sample J (the rest J̄ out-of-sample) compute every strategy's Sharpe ratio on J
    and on J̄, take n* = argmax in-sample, its out-of-sample relative rank ω = rank / (N + 1)
    (rank 1 = worst, ties averaged) and λ = logit(ω). PBO = the fraction of splits with λ <= 0.
    Sharpe ratios are per observation (mean / sample std; 0 when the variance is 0), computed
    from per-block sums so the cost is O(C · N): one compiled pass over the strategies per pair
    of complementary splits, which share their Sharpe ratios with in and out of sample swapped
    (:func:`admf_assets.core.kernels.cscv_kernel`, splits spread over the cores, no (C x N)
    temporaries). Both samples' sums add their blocks in block order where the previous NumPy
    version (kept in ``tests/core/reference_overfitting.py``) used a 0/1 matrix product, so
    Sharpe ratios may differ in the last bits; on returns whose Sharpe ratios tie in exact
    arithmetic (e.g. rounded to a few decimals) those bits can change a split's rank and so its
    logit, as they can in the reference. The tests check PBO and logits against it.

    Args:
        returns: float64 (N, T) per-period returns, one row per strategy (the orientation of
            :func:`admf_assets.core.metrics.daily_net_returns`); NaN is treated as 0 (no position).
        n_blocks: S (even, 2 <= S <= T / 2); default :func:`default_blocks`.
        max_splits: when C(S, S/2) exceeds it, S is reduced (by 2) until it does not.

    Returns:
        :class:`PBOResult`.

    Raises:
        ValueError: fewer than 2 strategies, fewer than 4 observations, or an odd / too large S.
    """
    r = np.nan_to_num(np.asarray(returns, dtype=np.float64), nan=0.0)
    if r.ndim != 2:
        raise ValueError(f"returns must be a (strategies, observations) matrix, got shape {r.shape}")
    n_strat, n_obs = r.shape
    if n_strat < 2:
        raise ValueError(f"PBO needs at least 2 strategies, got {n_strat}")
    s = default_blocks(n_obs) if n_blocks is None else int(n_blocks)
    if s < 2 or s % 2 or s > n_obs // 2:
        raise ValueError(f"n_blocks must be even, >= 2 and <= T/2 = {n_obs // 2}, got {s}")
    while s > 2 and math.comb(s, s // 2) > max_splits:
        s -= 2
    # Equal blocks, as the paper's CSCV (and R's pbo, "must evenly divide") require: the oldest
    # T mod S observations are left out.
    r = r[:, n_obs % s :]
    edges = np.arange(s + 1) * (r.shape[1] // s)
    block_sum = np.add.reduceat(r, edges[:-1], axis=1).T  # (S, N)
    block_sq = np.add.reduceat(r**2, edges[:-1], axis=1).T
    block_n = np.diff(edges).astype(np.float64)  # (S,)
    combos = np.array(list(combinations(range(s), s // 2)), dtype=np.int64)
    masks = (np.int64(1) << combos).sum(axis=1)  # in-sample blocks of each split as a bit mask
    position = dict(zip(masks.tolist(), range(len(combos))))
    partner = np.array([position[m] for m in ((1 << s) - 1 - masks).tolist()], dtype=np.int64)
    logits = np.empty(len(combos))
    is_best, oos_best = np.empty(len(combos)), np.empty(len(combos))
    with kernels.balanced():
        kernels.cscv_kernel(
            np.ascontiguousarray(block_sum), np.ascontiguousarray(block_sq), block_n, combos, partner, logits, is_best, oos_best,
        )
    slope = float(np.polyfit(is_best, oos_best, 1)[0]) if np.ptp(is_best) > 0 else float("nan")
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_splits=len(combos),
        n_blocks=s,
        n_strategies=n_strat,
        n_obs=int(r.shape[1]),
        performance_degradation=slope,
    )
