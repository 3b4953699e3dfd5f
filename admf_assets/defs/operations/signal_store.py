"""``signal_store``: daily summaries published to the Postgres signal store (month-partitioned).

Present only when ``ADMF_SIGNAL_STORE=1`` and ``ADMF_POSTGRES_URL`` are set (the embedded default
has no Postgres); the database must be migrated (``admf db upgrade``: revision
``0002_signal_store`` creates ``admf_signals.daily_signal_summary PARTITION BY RANGE (date)``). A run copies
DuckDB's ``daily_signal_summary`` rows of its trading days into the month partitions (created on
demand), replacing those days' rows in one transaction. The archive job detaches and exports the
months past retention (``admf_assets.lib.postgres_io.archive_signal_store``).

Automation: the same condition as ``daily_signal_summary``
(:data:`admf_assets.defs.summaries.assets.EAGER_EVERY_TRADING_DAY`), evaluated by
``admf_automation_sensor`` when the store is on: a trading day is republished after its DuckDB
summary is (re-)materialized (or requested on the same tick), for any day, not only the newest;
days already unpublished when the store is turned on are not requested until their summary
is re-materialized (e.g. by ``admf backfill``) or ``signal_store_job`` is launched for them.
"""


import dagster as dg
import pandas as pd

from admf_assets.defs.summaries.assets import EAGER_EVERY_TRADING_DAY, daily_signal_summary
from admf_assets.lib.partitions import trading_days
from admf_assets.lib.postgres_io import SIGNAL_STORE_COLUMNS, publish_daily_summary
from admf_assets.lib.resources import AnalyticsDuckDB, RetentionPolicy
from admf_assets.lib.settings import SETTINGS


@dg.asset(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[daily_signal_summary],
    group_name="operations",
    kinds={"postgres"},
    pool="duckdb_writer",
    automation_condition=EAGER_EVERY_TRADING_DAY,
)
def signal_store(context: dg.AssetExecutionContext, duckdb: AnalyticsDuckDB, retention: RetentionPolicy) -> dg.MaterializeResult:
    """Postgres ``daily_signal_summary`` rows of the run's trading days (one transaction)."""
    if not retention.postgres_url:
        raise dg.Failure(description="signal_store needs ADMF_POSTGRES_URL (and ADMF_SIGNAL_STORE=1)")
    days = [pd.Timestamp(k).date() for k in context.partition_keys]
    with duckdb.get_connection() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(SIGNAL_STORE_COLUMNS)} FROM daily_signal_summary WHERE date BETWEEN ? AND ? ORDER BY date, symbol, strategy_type",
            [days[0], days[-1]],
        ).df()
    missing = sorted(set(days) - set(pd.to_datetime(rows["date"]).dt.date))
    if missing:
        raise dg.Failure(description=f"no daily_signal_summary rows in DuckDB for {', '.join(d.isoformat() for d in missing[:5])}; materialize daily_signal_summary first")
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    n = publish_daily_summary(retention.postgres_url, rows, days)
    return dg.MaterializeResult(metadata={"rows": n, "days": len(days), "table": "daily_signal_summary (partitioned by month)"})


signal_store_job = dg.define_asset_job("signal_store_job", selection=dg.AssetSelection.assets(signal_store), description="Publish daily summaries to the Postgres signal store.")


@dg.definitions
def signal_store_defs() -> dg.Definitions:
    if not SETTINGS.signal_store:
        return dg.Definitions()
    return dg.Definitions(assets=[signal_store], jobs=[signal_store_job])
