"""Strategy and classifier configurations: the unit a grid expands into.

A configuration is a type name plus a mapping of *normalised* parameters (every parameter of the
type present, defaults filled in, each value cast to its JSON Schema type: ``int`` for
``"integer"``, ``float`` for ``"number"``). The records normalise their parameters on
construction through :func:`admf_assets.core.schemas.normalize_parameters` (schema types and
ranges; cross-field rules such as fast < slow are checked by grids and ``make_strategy``), raising
``GridError`` for an unknown type or parameter.

Identity (``strategy_hash``) follows ``../shared/docs/strategy-semantics.md``: the first 12 hex
characters of sha256 over the canonical JSON ``{"type": ..., "parameters": {...}}`` with keys
sorted and separators ``,`` and ``:``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

HASH_LENGTH = 12


def canonical_json(strategy_type: str, parameters: Mapping[str, Any]) -> str:
    """Canonical JSON of a configuration: ``{"parameters": {...}, "type": ...}``, keys sorted.

    Args:
        strategy_type: the strategy or classifier type name (e.g. ``"bollinger_bands"``).
        parameters: already-normalised parameters (ints stay ints, floats stay floats, so that a
            float written ``20.0`` in a grid and the integer period ``20`` normalise alike before
            they reach this function).

    Returns:
        A compact JSON string (separators ``,`` and ``:``, ``sort_keys=True``, ASCII only).
    """
    return json.dumps(
        {"type": strategy_type, "parameters": dict(parameters)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )


def config_hash(strategy_type: str, parameters: Mapping[str, Any]) -> str:
    """First 12 hex characters of sha256 over :func:`canonical_json` (strategy-semantics.md)."""
    digest = hashlib.sha256(canonical_json(strategy_type, parameters).encode("utf-8")).hexdigest()
    return digest[:HASH_LENGTH]


@dataclass(frozen=True)
class StrategyConfig:
    """One concrete strategy configuration.

    Attributes:
        strategy_type: one of the registered strategy types (``sma_crossover``, ``rsi_bands``, ...).
        params: parameters, normalised on construction (aliases resolved, defaults filled, values
            cast to their schema types) so equal configurations hash alike however they were
            written; treat as read-only.
        constraints: optional free-text label carried into the strategy index (e.g. ``"intraday"``);
            it is descriptive metadata and takes no part in evaluation or in the hash.
    """

    strategy_type: str
    params: Mapping[str, int | float] = field(hash=False)
    constraints: str | None = None

    def __post_init__(self) -> None:
        # Normalise on construction (aliases, defaults, schema types) so that every way of
        # building a configuration gives the same hash: {"fast_period": 10.0} == {"fast_period": 10}.
        from admf_assets.core.schemas import normalize_parameters

        object.__setattr__(
            self, "params", normalize_parameters(self.strategy_type, self.params, kind="strategy", check_rules=False)
        )

    @functools.cached_property
    def strategy_hash(self) -> str:
        """Deterministic 12-hex-character identity of ``(strategy_type, params)`` (computed once
        per instance; ``params`` are fixed on construction)."""
        return config_hash(self.strategy_type, self.params)

    def to_json(self) -> str:
        """Canonical JSON of the configuration (the text that is hashed)."""
        return canonical_json(self.strategy_type, self.params)

    def strategy_id(self, symbol: str, timeframe: str) -> str:
        """Workspace-unique id of this configuration on one bar series.

        Format ``{symbol}_{timeframe}_{strategy_type}_{strategy_hash}``, e.g.
        ``SPY_5m_bollinger_bands_a3f4b2c1d5e6``: deterministic, readable, and unique across
        symbols so that it can be the primary key of the strategy index and performance tables.
        """
        return f"{symbol}_{timeframe}_{self.strategy_type}_{self.strategy_hash}"


@dataclass(frozen=True)
class ClassifierConfig:
    """One concrete regime-classifier configuration (``trend``, ``volatility``, ``momentum_regime``).

    Attributes mirror :class:`StrategyConfig`; ``params`` are normalised the same way.
    """

    classifier_type: str
    params: Mapping[str, int | float] = field(hash=False)

    def __post_init__(self) -> None:
        from admf_assets.core.schemas import normalize_parameters

        object.__setattr__(
            self, "params", normalize_parameters(self.classifier_type, self.params, kind="classifier", check_rules=False)
        )

    @functools.cached_property
    def classifier_hash(self) -> str:
        """Deterministic 12-hex-character identity of ``(classifier_type, params)`` (computed once
        per instance)."""
        return config_hash(self.classifier_type, self.params)

    def to_json(self) -> str:
        """Canonical JSON of the configuration (the text that is hashed)."""
        return canonical_json(self.classifier_type, self.params)

    def classifier_id(self, symbol: str, timeframe: str) -> str:
        """``{symbol}_{timeframe}_{classifier_type}_{classifier_hash}``."""
        return f"{symbol}_{timeframe}_{self.classifier_type}_{self.classifier_hash}"
