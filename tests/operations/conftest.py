"""Operations test setup: one small real workspace (bundled sample bars, 2 symbols x 6 trading
days, a 6-strategy grid) materialized once through Dagster, copied per test so each test may
archive, crash and restore on its own copy."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from admf_assets.lib.pipeline import run_graph, with_overrides
from admf_assets.lib.settings import Settings

DAYS = [dt.date(2025, 6, d) for d in (4, 5, 6, 9, 10, 11)]
SYMBOLS = ["AAPL", "SPY"]
GRID = """
description: small operations test grid
timeframe: 5m
strategies:
  - type: sma_crossover
    params: {fast_period: [3, 5], slow_period: 10}
  - type: rsi_bands
    params: {period: 7, oversold: 30, overbought: [70, 80]}
  - type: bollinger_bands
    params: {period: 10, std_dev: [1.5, 2.0]}
"""


@pytest.fixture(scope="session")
def ops_grid(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ops-grid") / "grid.yaml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="session")
def pristine(tmp_path_factory, ops_grid) -> Path:
    """A materialized workspace (market data, analytics, daily summaries over DAYS)."""
    base = tmp_path_factory.mktemp("ops-pristine")
    settings = with_overrides(Settings.from_env(), workspace=str(base / "workspace"), grid_path=str(ops_grid), archive_url=str(base / "archive"))
    with dg.instance_for_test() as instance:
        results = run_graph(instance, settings=settings, first_day=DAYS[0], last_day=DAYS[-1])
    assert all(r.success for r in results.values())
    return base / "workspace"


@pytest.fixture
def ops_settings(tmp_path, pristine, ops_grid) -> Settings:
    """Settings of a fresh copy of the pristine workspace; archive under tmp_path/archive."""
    shutil.copytree(pristine, tmp_path / "workspace", ignore=shutil.ignore_patterns("*.lock"))
    return with_overrides(
        Settings.from_env(),
        workspace=str(tmp_path / "workspace"),
        grid_path=str(ops_grid),
        archive_url=str(tmp_path / "archive"),
        retain_bars_days=2,
        retain_traces_days=3,
        retain_summaries_days=2,
    )
