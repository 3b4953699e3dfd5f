"""The NumPy CSCV implementation of PBO that ``core/overfitting.py`` used before its compiled
kernel (kept verbatim as the reference of ``tests/core/test_fast_pbo.py``): per-block sums, the
in-sample sums of every split as a 0/1 matrix product, Sharpe ratios on (splits x strategies)
temporaries."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from admf_assets.core.overfitting import PBOResult, default_blocks


def _block_sharpe(sums: np.ndarray, sq: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """mean / sample std from sums, sums of squares and counts (0 where the variance is ~0);
    in place on temporaries: this is the hot loop of CSCV."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
        var = sums * mean
        np.subtract(sq, var, out=var)
        var /= counts - 1.0
        flat = ~(var > 1e-30)
        np.sqrt(var, out=var)
        mean /= var
    mean[flat] = 0.0
    return mean


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int | None = None, max_splits: int = 20000) -> PBOResult:
    """PBO of selecting the best in-sample Sharpe ratio among N strategies, by CSCV.

    Algorithm (Bailey, Borwein, López de Prado & Zhu 2015, section 2): cut the T × N matrix of
    returns into S contiguous, equal row blocks (S even; the oldest T mod S observations are left
    out); for each of the C(S, S/2) ways to pick S/2
    blocks as in-sample J (the rest J̄ out-of-sample) compute every strategy's Sharpe ratio on J
    and on J̄, take n* = argmax in-sample, its out-of-sample relative rank ω = rank / (N + 1)
    (rank 1 = worst, ties averaged) and λ = logit(ω). PBO = the fraction of splits with λ <= 0.
    Sharpe ratios are per observation (mean / sample std; 0 when the variance is 0), computed
    from per-block sums so the cost is O(C · N).

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
    total_sum, total_sq, total_n = block_sum.sum(0), block_sq.sum(0), block_n.sum()
    combos = np.array(list(combinations(range(s), s // 2)), dtype=np.int64)
    logits = np.empty(len(combos))
    is_best, oos_best = np.empty(len(combos)), np.empty(len(combos))
    chunk = max(1, 4_000_000 // max(n_strat, 1))
    for c0 in range(0, len(combos), chunk):
        pick = np.zeros((min(chunk, len(combos) - c0), s))
        np.put_along_axis(pick, combos[c0 : c0 + chunk], 1.0, axis=1)
        in_sum, in_sq, in_n = pick @ block_sum, pick @ block_sq, (pick @ block_n)[:, None]
        sr_in = _block_sharpe(in_sum, in_sq, in_n)
        sr_out = _block_sharpe(total_sum - in_sum, total_sq - in_sq, total_n - in_n)
        best = np.argmax(sr_in, axis=1)
        rows = np.arange(len(best))
        chosen = sr_out[rows, best][:, None]
        below = (sr_out < chosen).sum(axis=1)
        equal = (sr_out == chosen).sum(axis=1)
        rank = below + (equal + 1) / 2.0  # average rank of ties, 1 = worst
        omega = rank / (n_strat + 1.0)
        logits[c0 : c0 + len(best)] = np.log(omega / (1.0 - omega))
        is_best[c0 : c0 + len(best)] = sr_in[rows, best]
        oos_best[c0 : c0 + len(best)] = chosen[:, 0]
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
