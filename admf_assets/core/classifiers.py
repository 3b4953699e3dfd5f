"""Regime classifiers evaluated into dense int8 regime codes.

A classifier labels every bar with one regime name of its type; the dense form stores the index
of that name in :data:`REGIME_LABELS` ``[classifier_type]`` as int8, and
:data:`admf_assets.core.sparse.NO_VALUE` on bars before all of the classifier's indicators have a
value (the same rule as for strategies in ``../shared/docs/strategy-semantics.md``; ADMF-PC's
classifiers instead returned a default regime when a feature was missing, which would write
regime rows from warm-up noise, so the document's rule is applied). Rules (the authority is
strategy-semantics.md; label order follows ADMF-PC ``classifiers.py`` ``regime_types``):

=================  ======================================  =====================================
type               parameters                              regime
=================  ======================================  =====================================
trend              fast_period, slow_period, threshold     d = (SMA(fast) - SMA(slow)) / SMA(slow):
                                                           trending_up if d > thr, trending_down
                                                           if d < -thr, else ranging
volatility         atr_period, lookback, high, low         r = ATR(atr_period) / SMA(ATR, lookback):
                                                           high_volatility if r > high,
                                                           low_volatility if r < low, else
                                                           normal_volatility; r undefined
                                                           (SMA(ATR) == 0, a flat stretch) ->
                                                           normal_volatility, as ADMF-PC does
momentum_regime    rsi_period, momentum_period, threshold  strong_momentum if RSI < 30 or RSI > 70
                                                           (30 and 70 themselves are inside);
                                                           else weak_momentum if
                                                           abs(momentum_pct) > thr; else
                                                           no_momentum
=================  ======================================  =====================================

ATR is the EMA(alpha = 2/(n+1)) of true range and momentum_pct divides by the current close, see
:mod:`admf_assets.core.indicators`. Warm-up (first valued bar, :func:`classifier_warmup`):
trend ``max(fast, slow) - 1``; volatility ``(atr_period - 1) + (lookback - 1)``; momentum_regime
``max(rsi_period, momentum_period)``.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from admf_assets.core.config import ClassifierConfig
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.sparse import NO_VALUE

__all__ = [
    "CLASSIFIER_TYPES",
    "CLASSIFIER_PARAMETERS",
    "REGIME_LABELS",
    "evaluate_classifiers",
    "classifier_warmup",
    "regime_names",
]

REGIME_LABELS: dict[str, tuple[str, ...]] = {
    "trend": ("trending_up", "trending_down", "ranging"),
    "volatility": ("high_volatility", "low_volatility", "normal_volatility"),
    "momentum_regime": ("strong_momentum", "weak_momentum", "no_momentum"),
}
"""Regime names per classifier type; a dense code is an index into the type's tuple."""

CLASSIFIER_PARAMETERS: dict[str, tuple[str, ...]] = {
    "trend": ("fast_period", "slow_period", "threshold"),
    "volatility": ("atr_period", "lookback", "high", "low"),
    "momentum_regime": ("rsi_period", "momentum_period", "threshold"),
}
"""Parameter names each classifier type reads from ``ClassifierConfig.params``."""

CLASSIFIER_TYPES: tuple[str, ...] = tuple(REGIME_LABELS)
"""The three classifier types: trend, volatility, momentum_regime."""

RSI_STRONG_LOW = 30.0
"""momentum_regime: RSI strictly below this is strong momentum."""
RSI_STRONG_HIGH = 70.0
"""momentum_regime: RSI strictly above this is strong momentum."""


def _check_type(classifier_type: str) -> None:
    if classifier_type not in REGIME_LABELS:
        raise ValueError(
            f"unknown classifier_type {classifier_type!r}; known types: {', '.join(CLASSIFIER_TYPES)}"
        )


def _params(config: ClassifierConfig) -> dict[str, float]:
    _check_type(config.classifier_type)
    params: Mapping[str, object] = config.params
    out: dict[str, float] = {}
    for name in CLASSIFIER_PARAMETERS[config.classifier_type]:
        if name not in params:
            raise ValueError(
                f"classifier {config.classifier_type!r} needs parameter {name!r}; got {sorted(params)}"
            )
        value = params[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.integer, np.floating))
            or not np.isfinite(float(value))
        ):
            raise ValueError(
                f"classifier {config.classifier_type!r} parameter {name!r} must be a finite number, "
                f"got {value!r}"
            )
        out[name] = value  # type: ignore[assignment]
    return out


def classifier_warmup(config: ClassifierConfig) -> int:
    """0-based index of the first bar on which ``config`` has a regime (on a long enough series).

    Raises:
        ValueError: unknown type or missing parameter.
    """
    p = _params(config)
    t = config.classifier_type
    if t == "trend":
        return int(max(p["fast_period"], p["slow_period"])) - 1
    if t == "volatility":
        return int(p["atr_period"]) - 1 + int(p["lookback"]) - 1
    return int(max(p["rsi_period"], p["momentum_period"]))


def _codes(first: np.ndarray, second: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Code 0 where ``first``, else 1 where ``second``, else 2; NO_VALUE where not ``valid``."""
    out = np.full(first.shape, 2, dtype=np.int8)
    out[second] = 1
    out[first] = 0
    out[~valid] = NO_VALUE
    return out


def _trend(cache: IndicatorCache, p: dict[str, float]) -> np.ndarray:
    fast, slow = cache.sma(p["fast_period"]), cache.sma(p["slow_period"])
    valid = ~(np.isnan(fast) | np.isnan(slow))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (fast - slow) / slow
    threshold = float(p["threshold"])
    return _codes(d > threshold, d < -threshold, valid)


def _volatility(cache: IndicatorCache, p: dict[str, float]) -> np.ndarray:
    atr = cache.atr(p["atr_period"])
    average = cache.atr_sma(p["atr_period"], p["lookback"])
    valid = ~(np.isnan(atr) | np.isnan(average))
    defined = valid & (average != 0.0)
    ratio = np.divide(atr, average, out=np.full(atr.shape, np.nan), where=defined)
    # NaN ratio (undefined) compares False on both sides: normal_volatility.
    return _codes(ratio > float(p["high"]), ratio < float(p["low"]), valid)


def _momentum_regime(cache: IndicatorCache, p: dict[str, float]) -> np.ndarray:
    r = cache.rsi(p["rsi_period"])
    pct = cache.momentum_pct(p["momentum_period"])
    valid = ~(np.isnan(r) | np.isnan(pct))
    strong = (r < RSI_STRONG_LOW) | (r > RSI_STRONG_HIGH)
    weak = np.abs(pct) > float(p["threshold"])
    return _codes(strong, weak, valid)


_RULES: dict[str, Callable[[IndicatorCache, dict[str, float]], np.ndarray]] = {
    "trend": _trend,
    "volatility": _volatility,
    "momentum_regime": _momentum_regime,
}


def evaluate_classifiers(
    bars: pd.DataFrame,
    configs: Sequence[ClassifierConfig],
    cache: IndicatorCache | None = None,
) -> np.ndarray:
    """Dense regime codes of every classifier configuration on every bar.

    Indicators come from one :class:`IndicatorCache` (shared with the strategies when the
    caller passes the same cache), and identical configurations are evaluated once.

    Args:
        bars: DataFrame with lower-case ``open, high, low, close, volume`` columns, T rows, oldest
            first (``high``/``low`` are needed by ``volatility``).
        configs: C classifier configurations.
        cache: optional :class:`IndicatorCache` built from the same bars.

    Returns:
        int8 array ``(C, T)``; row i is ``configs[i]``; values index
        ``REGIME_LABELS[configs[i].classifier_type]``, NO_VALUE while warming up.

    Raises:
        ValueError: unknown ``classifier_type`` (the message names it), missing or non-finite
            parameter, a period that is not an integer >= 1, missing/non-finite price columns, or a
            cache built from a different number of bars.
    """
    configs = list(configs)
    params = [_params(c) for c in configs]  # validates every config before any work
    if cache is None:
        cache = IndicatorCache(bars)
    elif cache.n_bars != len(bars):
        raise ValueError(
            f"IndicatorCache holds {cache.n_bars} bars but bars has {len(bars)} rows; "
            "build the cache from the same bar series"
        )
    out = np.empty((len(configs), cache.n_bars), dtype=np.int8)
    done: dict[tuple, int] = {}
    for i, (config, p) in enumerate(zip(configs, params)):
        key = (config.classifier_type, tuple(float(p[k]) for k in CLASSIFIER_PARAMETERS[config.classifier_type]))
        if key in done:
            out[i] = out[done[key]]
            continue
        out[i] = _RULES[config.classifier_type](cache, p)
        done[key] = i
    return out


def regime_names(classifier_type: str, codes: np.ndarray) -> np.ndarray:
    """Map int8 regime codes of one classifier type to an object array of regime names.

    Args:
        classifier_type: one of :data:`CLASSIFIER_TYPES`.
        codes: int8 array of any shape, values in ``0..K-1`` or NO_VALUE.

    Returns:
        object array of the same shape: regime name strings, ``None`` where NO_VALUE.

    Raises:
        ValueError: unknown type, or a code outside the type's labels.
    """
    _check_type(classifier_type)
    labels = np.array(REGIME_LABELS[classifier_type] + (None,), dtype=object)
    codes = np.asarray(codes)
    idx = np.where(codes == NO_VALUE, len(labels) - 1, codes.astype(np.int64))
    if np.any((idx < 0) | (idx >= len(labels))) or np.any((codes != NO_VALUE) & (idx == len(labels) - 1)):
        raise ValueError(f"regime codes outside 0..{len(labels) - 2} for {classifier_type!r}")
    return labels[idx]
