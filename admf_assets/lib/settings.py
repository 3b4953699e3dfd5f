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
| ``ADMF_ARCHIVE_URL``  | ``<workspace>/../archive``                | archive folder or fsspec URL (``s3://...``)  |
| ``ADMF_RETAIN_BARS_DAYS`` | ``504``                               | trading days of bars kept hot               |
| ``ADMF_RETAIN_TRACES_DAYS`` | ``252``                             | trading days of signal/classifier traces hot |
| ``ADMF_RETAIN_SUMMARIES_DAYS`` | ``504``                          | trading days of daily_signal_summary rows   |
| ``ADMF_STORAGE_WARN_BYTES`` | ``50_000_000_000``                  | storage_health warns above this hot size    |
| ``ADMF_STORAGE_GROWTH_WARN_BYTES_PER_DAY`` | ``2_000_000_000``    | ... or above this hot growth per day        |
| ``ADMF_POSTGRES_WARN_BYTES`` | ``20_000_000_000``                 | ... or above this pg_database_size          |
| ``ADMF_POSTGRES_URL`` | unset                                     | Postgres database (storage_health measures it) |
| ``ADMF_SIGNAL_STORE`` | unset                                     | ``1``: publish daily summaries to Postgres  |

Retention counts trading days back from the newest stored bar day (see
:func:`admf_assets.core.archive.retention_cutoff`); the Postgres URL enables the Postgres signal
store (``postgresql+psycopg2://...``). Integer variables accept ``_`` separators and must be >= 1.

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
    archive_url: str = ""
    retain_bars_days: int = 504
    retain_traces_days: int = 252
    retain_summaries_days: int = 504
    storage_warn_bytes: int = 50_000_000_000
    storage_growth_warn_bytes_per_day: int = 2_000_000_000
    postgres_warn_bytes: int = 20_000_000_000
    postgres_url: str = ""
    signal_store: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Resolve the settings from ``environ`` (default ``os.environ``); paths become absolute."""
        env = os.environ if environ is None else environ
        def _int(name: str, default: int) -> int:
            raw = env.get(name, "").strip().replace("_", "")
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"{name}={env.get(name)!r} is not an integer") from None
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1")
            return value

        workspace = Path(env.get("ADMF_WORKSPACE", "workspace")).resolve()
        archive = env.get("ADMF_ARCHIVE_URL", "").strip()
        if not archive:
            archive = str(workspace.parent / "archive")
        elif "://" not in archive:
            archive = str(Path(archive).resolve())
        if env.get("ADMF_SIGNAL_STORE", "").strip().lower() in ("1", "true", "yes") and not env.get("ADMF_POSTGRES_URL", "").strip():
            raise ValueError("ADMF_SIGNAL_STORE is set but ADMF_POSTGRES_URL is not; set the PostgreSQL URL")
        symbols = tuple(s.strip().upper() for s in env.get("ADMF_SYMBOLS", ",".join(DEFAULT_SYMBOLS)).split(",") if s.strip())
        return cls(
            workspace=str(workspace),
            landing_dir=str(Path(env.get("ADMF_LANDING_DIR") or bundled_sample_dir()).resolve()),
            grid_path=str(Path(env.get("ADMF_GRID") or default_grid_path()).resolve()),
            symbols=tuple(sorted(set(symbols))),
            start_date=env.get("ADMF_START_DATE", "2025-06-04"),
            timeframe=env.get("ADMF_TIMEFRAME", "5m"),
            calendar=env.get("ADMF_CALENDAR", "XNYS"),
            archive_url=archive,
            retain_bars_days=_int("ADMF_RETAIN_BARS_DAYS", 504),
            retain_traces_days=_int("ADMF_RETAIN_TRACES_DAYS", 252),
            retain_summaries_days=_int("ADMF_RETAIN_SUMMARIES_DAYS", 504),
            storage_warn_bytes=_int("ADMF_STORAGE_WARN_BYTES", 50_000_000_000),
            storage_growth_warn_bytes_per_day=_int("ADMF_STORAGE_GROWTH_WARN_BYTES_PER_DAY", 2_000_000_000),
            postgres_warn_bytes=_int("ADMF_POSTGRES_WARN_BYTES", 20_000_000_000),
            postgres_url=env.get("ADMF_POSTGRES_URL", "").strip(),
            signal_store=env.get("ADMF_SIGNAL_STORE", "").strip().lower() in ("1", "true", "yes"),
        )


SETTINGS = Settings.from_env()
