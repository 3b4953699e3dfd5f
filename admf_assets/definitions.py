"""The admf_assets code location: everything under ``defs/`` (split by domain) is loaded, with
the in-process executor as the code location's default.

Why in-process: every step already spreads its work over the cores itself (compiled kernels
over the strategies, writer threads), and the DuckDB steps run one at a time anyway (pool
``duckdb_writer``). Dagster's default executor would start a process per step, and each one
imports Dagster, pandas, pyarrow and this package before it does any work. For the newest
trading day (5,000 strategies x 3 symbols, ``newest_trading_day_job`` launched as the schedule
launches it) that took 47 to 49 s with a process per step and 12.5 s in process on the same
2-core machine (docs/operations.md, "Executor"). A job that wants processes per step says so
itself (``JobDefinition.with_executor_def`` or ``executor_def=`` on the job).
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
