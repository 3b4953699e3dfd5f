"""A partitioned backfill of ``market_data_job`` on a Dagster instance stored in PostgreSQL, with
the multiprocess executor (each step in its own process, reporting events to Postgres). The code
location's default executor is in-process (``admf_assets/definitions.py``); this test asks for
processes per step, which a deployment can still choose, to show the instance storage takes
events from several processes.

2 trading days x 2 symbols (2025-06-04, 2025-06-05; AAPL, SPY) run as one single-run range. The
workspace reaches the step subprocesses through ``ADMF_WORKSPACE`` (they inherit the environment
and rebuild the code location through the module-level ``market_data_job`` below).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from admf_assets.lib.partitions import range_tags
from admf_assets.lib.pipeline import code_location, with_overrides
from admf_assets.lib.settings import Settings

DAYS = (dt.date(2025, 6, 4), dt.date(2025, 6, 5))
SYMBOLS = ("AAPL", "SPY")
ASSETS = ("market_bars", "signal_traces", "classifier_states")
PARQUET_DIRS = {"market_bars": "bars", "signal_traces": "traces/signals", "classifier_states": "traces/classifiers"}


def market_data_job() -> dg.JobDefinition:
    """The code location's ``market_data_job`` on the workspace named by ``ADMF_WORKSPACE``, with
    the multiprocess executor instead of the code location's in-process default (module level,
    so that ``dg.reconstructable`` can rebuild it in the step subprocesses)."""
    settings = with_overrides(Settings.from_env(), workspace=os.environ["ADMF_WORKSPACE"])
    return code_location(settings).resolve_job_def("market_data_job").with_executor_def(dg.multiprocess_executor)


def test_multiprocess_backfill_on_postgres_instance(make_database, workspace_env: Path):
    url = make_database()
    overrides = {"storage": {"postgres": {"postgres_url": url}}, "concurrency": {"pools": {"default_limit": 1}}}
    expected_keys = {f"{day.isoformat()}|{symbol}" for day in DAYS for symbol in SYMBOLS}

    with dg.instance_for_test(overrides=overrides) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        with dg.execute_job(
            dg.reconstructable(market_data_job),
            instance=instance,
            tags=range_tags(DAYS[0], DAYS[-1], list(SYMBOLS)),
            run_config={"execution": {"config": {"max_concurrent": 2}}},
        ) as result:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            run_id = result.run_id
            worker_pids = {e.step_key: e.pid for e in result.all_events if e.event_type_value == "STEP_WORKER_STARTED"}
        # Every step ran in its own subprocess (multiprocess executor), not in the test process.
        assert set(worker_pids) == set(ASSETS), worker_pids
        assert os.getpid() not in worker_pids.values() and len(set(worker_pids.values())) == len(ASSETS), worker_pids

        for name in ASSETS:
            records = instance.fetch_materializations(dg.AssetKey(name), limit=1000).records
            counts = Counter(r.partition_key for r in records)
            assert set(counts) == expected_keys, (name, counts)
            assert all(n == 1 for n in counts.values()), (name, counts)
            assert {r.run_id for r in records} == {run_id}

        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS

    # The run is stored in the scratch Postgres database itself, not in a local SQLite file.
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT run_id, status, pipeline_name FROM runs")).all()
    finally:
        engine.dispose()
    assert [(r.run_id, r.status, r.pipeline_name) for r in rows] == [(run_id, "SUCCESS", "market_data_job")]

    for name, folder in PARQUET_DIRS.items():
        for day in DAYS:
            for symbol in SYMBOLS:
                path = workspace_env / folder / f"{symbol}_5m" / f"{day.isoformat()}.parquet"
                assert path.is_file(), (name, path)
