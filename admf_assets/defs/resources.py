"""Resources of the code location, resolved from the environment (see ``lib/settings.py``)."""


from pathlib import Path

import dagster as dg

from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, ExecutionCosts
from admf_assets.lib.settings import SETTINGS, Settings


def build_resources(settings: Settings = SETTINGS) -> dict[str, dg.ConfigurableResource]:
    """The resource set for ``settings``: workspace, execution costs and the DuckDB warehouse."""
    return {
        "workspace": AdmfWorkspace(
            root=settings.workspace,
            landing_dir=settings.landing_dir,
            grid_path=settings.grid_path,
            timeframe=settings.timeframe,
            calendar=settings.calendar,
        ),
        "costs": ExecutionCosts(),
        "duckdb": AnalyticsDuckDB(database=str(Path(settings.workspace) / "analytics.duckdb")),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
