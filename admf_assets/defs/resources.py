"""Resources of the code location, resolved from the environment (see ``lib/settings.py``)."""


import os
from pathlib import Path

import dagster as dg

from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, ExecutionCosts, RetentionPolicy, StorageThresholds
from admf_assets.lib.settings import SETTINGS, Settings


def postgres_url_value(settings: Settings) -> str | dg.EnvVar:
    """The PostgreSQL URL as a resource field value: ``dg.EnvVar("ADMF_POSTGRES_URL")`` when the
    URL is that variable's (the usual case), so the resolved URL, which may hold a password, is
    read when a run or sensor uses the resource and never stored in the code location's snapshot
    (the UI's Resources page, every run's job snapshot); the literal otherwise (settings built in
    code, e.g. tests), and ``""`` when none is set."""
    if settings.postgres_url and settings.postgres_url == os.environ.get("ADMF_POSTGRES_URL", "").strip():
        return dg.EnvVar("ADMF_POSTGRES_URL")
    return settings.postgres_url


def build_resources(settings: Settings = SETTINGS) -> dict[str, dg.ConfigurableResource]:
    """The resource set for ``settings``: workspace, execution costs, the DuckDB warehouse, the
    retention policy and the storage-health thresholds (PostgreSQL URL as
    :func:`postgres_url_value`)."""
    postgres_url = postgres_url_value(settings)
    return {
        "workspace": AdmfWorkspace(
            root=settings.workspace,
            landing_dir=settings.landing_dir,
            grid_path=settings.grid_path,
            timeframe=settings.timeframe,
            calendar=settings.calendar,
            archive_url=settings.archive_url,
        ),
        "costs": ExecutionCosts(),
        "duckdb": AnalyticsDuckDB(database=str(Path(settings.workspace) / "analytics.duckdb")),
        "retention": RetentionPolicy(
            archive_url=settings.archive_url,
            bars_days=settings.retain_bars_days,
            traces_days=settings.retain_traces_days,
            summaries_days=settings.retain_summaries_days,
            postgres_url=postgres_url if settings.signal_store else "",
        ),
        "storage_thresholds": StorageThresholds(
            hot_bytes=settings.storage_warn_bytes,
            growth_bytes_per_day=settings.storage_growth_warn_bytes_per_day,
            postgres_bytes=settings.postgres_warn_bytes,
            postgres_url=postgres_url,
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
