"""The configuration snapshot stored with every run (``backtest_runs.config_snapshot``, JSONB).

A snapshot holds everything needed to re-run an evaluation with :mod:`admf_assets.core.api`:
the strategy type and its normalised parameters, the symbol and timeframe, the bars file it
ran on, the execution costs (basis points per side), the starting capital and the exchange
calendar used to group bars into trading days. It is validated with pydantic before insert;
the database adds a CHECK that it is a JSON object with ``type`` and ``parameters`` keys.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SNAPSHOT_VERSION = 1
"""Current ``schema_version`` of :class:`ConfigSnapshot`."""


class CostSnapshot(BaseModel):
    """Execution costs in basis points (1 bp = 1e-4) of traded notional per side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commission_bps: float = Field(0.5, ge=0, allow_inf_nan=False)
    slippage_bps: float = Field(1.0, ge=0, allow_inf_nan=False)


class ConfigSnapshot(BaseModel):
    """Validated configuration snapshot of one run.

    Attributes:
        schema_version: snapshot layout version (currently 1).
        type: strategy type, one of :data:`admf_assets.core.schemas.STRATEGY_TYPES`.
        parameters: strategy parameters; normalised with
            :func:`admf_assets.core.schemas.make_strategy` (defaults filled, ints stay ints).
        symbol: instrument symbol (e.g. ``"SPY"``), non-empty.
        timeframe: bar spacing label (e.g. ``"5m"``), non-empty.
        bars_path: path of the bars file (CSV or Parquet) the run was evaluated on.
        costs: commission and slippage, bps per side.
        initial_capital: starting balance (currency units, > 0) used for ``final_balance``.
        calendar: exchange calendar used to group bars into trading days (default ``XNYS``).
        bars_through: for a workspace bar folder, the last trading day evaluated (later days
            stored since are not part of the run); ``None``: every stored day.

    Raises:
        pydantic.ValidationError: on a missing or malformed field, an unknown strategy type or
            invalid parameters (the message names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SNAPSHOT_VERSION
    type: str = Field(min_length=1)
    parameters: dict[str, Any]
    symbol: str = Field(min_length=1, max_length=50)
    timeframe: str = Field(min_length=1)
    bars_path: str = Field(min_length=1)
    costs: CostSnapshot = CostSnapshot()
    initial_capital: float = Field(100_000.0, gt=0, allow_inf_nan=False)
    calendar: str = "XNYS"
    bars_through: date | None = None

    @field_validator("parameters")
    @classmethod
    def _finite_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ValueError(f"parameter {key!r} must be a number, got {item!r}")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"parameter {key!r} must be finite, got {item!r}")
        return value

    @model_validator(mode="after")
    def _normalise(self) -> "ConfigSnapshot":
        from admf_assets.core.schemas import GridError, make_strategy

        try:
            config = make_strategy(self.type, self.parameters, where="config_snapshot")
        except GridError as err:
            raise ValueError(str(err)) from None
        object.__setattr__(self, "parameters", dict(config.params))
        return self

    def strategy_config(self):
        """The :class:`admf_assets.core.config.StrategyConfig` of this snapshot."""
        from admf_assets.core.schemas import make_strategy

        return make_strategy(self.type, self.parameters)

    def default_strategy_name(self) -> str:
        """``<type>_<hash>``, e.g. ``bollinger_bands_49cbed903ac4`` (the configuration identity)."""
        return f"{self.type}_{self.strategy_config().strategy_hash}"

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON-ready dict stored in ``config_snapshot``."""
        return self.model_dump(mode="json")
