"""Dagster resources: the workspace (paths, landing folder, grid), execution costs, DuckDB, the
retention policy and the storage-health thresholds."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from admf_assets.core.grid import Grid, load_grid
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel
from admf_assets.core.warehouse import apply_schema, warehouse_lock


class AdmfWorkspace(dg.ConfigurableResource):
    """Where bars arrive and where the system of record is written.

    Attributes:
        root: hot storage root (Parquet files and ``analytics.duckdb``).
        landing_dir: folder of incoming bar files (CSV or Parquet, vendor column spellings).
        grid_path: strategy grid YAML (see :mod:`admf_assets.core.grid`).
        timeframe: bar size of the landing files (``5m``).
        calendar: exchange calendar name for sessions and trading days (``XNYS``).
        archive_url: archive folder or fsspec URL that readers fall back to for partitions past
            retention, used until the archive job records ``<root>/archive_location.txt``; that
            marker (where archived partitions really are) wins afterwards, so changing the URL
            never hides them (see :attr:`admf_assets.core.layout.WorkspaceLayout.archive_url`).
    """

    root: str
    landing_dir: str
    grid_path: str
    timeframe: str = "5m"
    calendar: str = "XNYS"
    archive_url: str = ""
    _grid: Grid | None = PrivateAttr(default=None)

    @property
    def layout(self) -> WorkspaceLayout:
        """The path scheme rooted at :attr:`root` (see :mod:`admf_assets.core.layout`)."""
        return WorkspaceLayout(Path(self.root), archive=self.archive_url or None)

    def grid(self) -> Grid:
        """The parsed grid (loaded once per resource instance).

        Raises:
            admf_assets.core.schemas.GridError: naming the file, entry and parameter at fault.
        """
        if self._grid is None:
            # the parsed YAML document is kept under <root>/cache/grid (see load_grid)
            self._grid = load_grid(self.grid_path, cache_dir=self.layout.root / "cache" / "grid")
        return self._grid


class ExecutionCosts(dg.ConfigurableResource):
    """Execution costs charged on every change of position, in basis points per side."""

    commission_bps: float = Field(default=0.5, ge=0, description="commission, bps per side")
    slippage_bps: float = Field(default=1.0, ge=0, description="slippage, bps per side")

    def model(self) -> CostModel:
        """The pure :class:`~admf_assets.core.metrics.CostModel` (bps per side)."""
        return CostModel(commission_bps=self.commission_bps, slippage_bps=self.slippage_bps)


class AnalyticsDuckDB(DuckDBResource):
    """``dagster-duckdb``'s resource with the warehouse schema applied (and migrated, see
    :func:`admf_assets.core.warehouse.apply_schema`) and a cross-process lock.

    ``get_connection()`` waits for ``<database>.lock`` (see :mod:`admf_assets.core.warehouse`)
    before DuckDB's own connect, so two runs writing at once queue instead of failing on DuckDB's
    single-writer file lock.
    """

    lock_timeout_seconds: float = Field(default=900.0, description="how long to wait for the database lock")

    @contextlib.contextmanager
    def get_connection(self) -> Iterator:
        """A DuckDB connection with the schema applied, held under the database's file lock.

        The lock is not re-entrant: do not open a second connection while holding one (it
        would wait ``lock_timeout_seconds`` and raise ``filelock.Timeout``).
        """
        with warehouse_lock(self.database, self.lock_timeout_seconds):
            with super().get_connection() as conn:
                apply_schema(conn)  # creates the schema, or migrates a warehouse of an older one
                yield conn


class RetentionPolicy(dg.ConfigurableResource):
    """How many trading days stay in hot storage, and where older partitions go.

    Counts are trading days (exchange sessions) back from the newest stored bar day: with
    ``traces_days=252`` the traces of the newest 252 sessions stay hot and older ones move to the
    archive (see :func:`admf_assets.core.archive.retention_cutoff`).

    Attributes:
        archive_url: archive folder or fsspec/UPath URL (``s3://bucket/admf``, ``memory://x``).
        bars_days, traces_days, summaries_days: trading days kept hot (>= 1) for ``market_bars``,
            ``signal_traces``/``classifier_states`` and ``daily_signal_summary`` rows.
        postgres_url: Postgres signal store (``""``: none); its month partitions wholly before the
            summaries cutoff are detached, exported and dropped by the archive job.
        lock_timeout_seconds: how long an archive run waits for another one to finish.
    """

    archive_url: str = Field(description="archive folder or fsspec URL")
    bars_days: int = Field(default=504, ge=1)
    traces_days: int = Field(default=252, ge=1)
    summaries_days: int = Field(default=504, ge=1)
    postgres_url: str = ""
    lock_timeout_seconds: float = Field(default=3600.0, gt=0)


class StorageThresholds(dg.ConfigurableResource):
    """Thresholds of the ``storage_health`` asset checks (bytes; growth in bytes per day).

    Crossing one makes the matching check fail with severity WARN (the run still succeeds).
    """

    hot_bytes: int = Field(default=50_000_000_000, ge=1, description="warn above this hot storage size (Parquet + DuckDB)")
    growth_bytes_per_day: int = Field(default=2_000_000_000, ge=1, description="warn above this hot growth per day")
    postgres_bytes: int = Field(default=20_000_000_000, ge=1, description="warn above this pg_database_size")
    postgres_url: str = ""
