"""Runs writing bars and traces run one at a time: the jobs' run tag and the instance's
tag concurrency limit (dagster_home/dagster.yaml, dagster_home/postgres/dagster.yaml)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from admf_assets.defs.pipeline.jobs import MARKET_DATA_WRITES_TAG
from admf_assets.lib.pipeline import code_location

DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster_home" / "dagster.yaml"


def test_default_instance_config_loads_and_limits_market_data_runs_to_one(tmp_path):
    # a copy: loading an instance creates its SQLite storage next to dagster.yaml
    shutil.copy(DAGSTER_YAML, tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        # tag limits are enforced by the queued run coordinator (the default from DAGSTER_HOME)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        concurrency = instance.get_concurrency_config()
        (key, value), = MARKET_DATA_WRITES_TAG.items()
        assert concurrency.run_queue_config.tag_concurrency_limits == [{"key": key, "value": value, "limit": 1}]
        assert concurrency.pool_config.default_pool_limit == 1  # the duckdb_writer pool, unchanged
    finally:
        instance.dispose()


def test_jobs_writing_bars_and_traces_carry_the_run_tag():
    defs = code_location()
    (key, value), = MARKET_DATA_WRITES_TAG.items()
    for name in ("market_data_job", "newest_trading_day_job"):
        assert defs.resolve_job_def(name).run_tags.get(key) == value, name
    # the archive deletes hot bar and trace files: serialised with the runs writing them
    assert defs.resolve_job_def("archive_job").tags.get(key) == value
    for name in ("analytics_job", "daily_summary_job"):
        assert key not in defs.resolve_job_def(name).run_tags, name
    # the schedule's and the landing sensor's runs are runs of newest_trading_day_job
    assert defs.resolve_schedule_def("newest_trading_day_schedule").job_name == "newest_trading_day_job"
    assert defs.resolve_sensor_def("landing_sensor").job_name == "newest_trading_day_job"


def test_postgres_instance_config_and_graphql_backfills_carry_the_same_limit():
    import yaml

    from admf_assets.cli.operations import backfill_params

    (key, value), = MARKET_DATA_WRITES_TAG.items()
    config = yaml.safe_load((DAGSTER_YAML.parent / "postgres" / "dagster.yaml").read_text())
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [{"key": key, "value": value, "limit": 1}]
    # a backfill launched through the webserver runs the assets, not the jobs: it is given the tag
    params = backfill_params(["2025-06-04", "2025-06-05"], ["AAPL", "SPY"], ["AAPL", "SPY"])
    assert {"key": key, "value": value} in params["tags"]
