"""A small materialized workspace shared by the analytics tests (built once per session).

The whole graph over the first 13 trading days of the bundled sample (AAPL, SPY; default grid of
1,140 strategies), then a second materialization of ``strategy_performance`` (a second run, so
``run_strategies`` holds every hash twice) and ``strategy_correlations`` (top 30).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from admf_assets.defs.analytics.assets import strategy_performance
from admf_assets.defs.analytics.correlations import strategy_correlations
from admf_assets.defs.resources import build_resources
from admf_assets.lib.pipeline import run_graph, with_overrides
from admf_assets.lib.settings import Settings

FIRST_DAY, LAST_DAY = dt.date(2025, 6, 4), dt.date(2025, 6, 20)
CORRELATION_TOP_N = 30


@pytest.fixture(scope="session")
def analytics_settings(tmp_path_factory) -> Settings:
    return with_overrides(Settings.from_env(), workspace=str(tmp_path_factory.mktemp("analytics") / "workspace"))


@pytest.fixture(scope="session")
def built(analytics_settings):
    """Materialize the workspace; returns the run ids and the materialization events."""
    with dg.instance_for_test() as instance:
        results = run_graph(instance, settings=analytics_settings, first_day=FIRST_DAY, last_day=LAST_DAY)
        assert all(r.success for r in results.values())
        resources = build_resources(analytics_settings)
        second = dg.materialize([strategy_performance], resources=resources, instance=instance)
        corr = dg.materialize(
            [strategy_correlations],
            resources=resources,
            instance=instance,
            run_config={"ops": {"strategy_correlations": {"config": {"top_n": CORRELATION_TOP_N}}}},
        )
        assert second.success and corr.success
        yield {
            "results": results,
            "second_run_id": second.run_id,
            "first_run_id": results["analytics_job"].run_id,
            "correlation_result": corr,
            "second_result": second,
        }


@pytest.fixture(scope="session")
def workspace(analytics_settings, built) -> Path:
    return Path(analytics_settings.workspace)


@pytest.fixture(scope="session")
def snapshot(workspace, tmp_path_factory) -> Path:
    """A copy of the built warehouse: tests read expected rows from it while the CLI under test
    opens the workspace's own file (DuckDB refuses a read-only and a read-write connection to
    one file in one process)."""
    path = tmp_path_factory.mktemp("snapshot") / "analytics.duckdb"
    shutil.copy(workspace / "analytics.duckdb", path)
    return path


@pytest.fixture()
def db(snapshot):
    """A read-only connection to the snapshot of the built warehouse (closed after the test)."""
    conn = duckdb.connect(str(snapshot), read_only=True)
    try:
        yield conn
    finally:
        conn.close()
