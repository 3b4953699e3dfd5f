"""Deployment settings read from the environment when the code location loads.

Every setting has a default that runs the bundled real sample with no server:

| variable              | default                                   | meaning                                     |
|-----------------------|-------------------------------------------|---------------------------------------------|
| ``ADMF_WORKSPACE``    | ``./workspace``                           | hot storage root (Parquet + DuckDB)         |
| ``ADMF_LANDING_DIR``  | bundled ``sample_data/yahoo_5m_2025``     | folder of incoming bar files (CSV/Parquet)  |
| ``ADMF_GRID``         | bundled ``grids/default.yaml``            | strategy grid YAML                          |
| ``ADMF_SYMBOLS``      | ``AAPL,GLD,MSFT,QQQ,SPY``                 | the symbol partition dimension              |
| ``ADMF_START_DATE``   | ``2025-06-04``                            | first trading-day partition                 |
| ``ADMF_TIMEFRAME``    | ``5m``                                    | bar size of the landing files               |
| ``ADMF_CALENDAR``     | ``XNYS``                                  | exchange calendar (exchange_calendars name) |

Partition definitions are fixed when the code location loads, so ``ADMF_SYMBOLS`` and
``ADMF_START_DATE`` are environment settings rather than run configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from admf_assets.core.bars import bundled_sample_dir
from admf_assets.core.grid import default_grid_path

DEFAULT_SYMBOLS = ("AAPL", "GLD", "MSFT", "QQQ", "SPY")


@dataclass(frozen=True)
class Settings:
    """Resolved settings (see module docstring)."""

    workspace: str
    landing_dir: str
    grid_path: str
    symbols: tuple[str, ...]
    start_date: str
    timeframe: str
    calendar: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Resolve the settings from ``environ`` (default ``os.environ``); paths become absolute."""
        env = os.environ if environ is None else environ
        symbols = tuple(s.strip().upper() for s in env.get("ADMF_SYMBOLS", ",".join(DEFAULT_SYMBOLS)).split(",") if s.strip())
        return cls(
            workspace=str(Path(env.get("ADMF_WORKSPACE", "workspace")).resolve()),
            landing_dir=str(Path(env.get("ADMF_LANDING_DIR") or bundled_sample_dir()).resolve()),
            grid_path=str(Path(env.get("ADMF_GRID") or default_grid_path()).resolve()),
            symbols=tuple(sorted(set(symbols))),
            start_date=env.get("ADMF_START_DATE", "2025-06-04"),
            timeframe=env.get("ADMF_TIMEFRAME", "5m"),
            calendar=env.get("ADMF_CALENDAR", "XNYS"),
        )


SETTINGS = Settings.from_env()
