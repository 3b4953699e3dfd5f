"""``storage_health``: sizes, row counts and growth of every store, with warning asset checks.

Measured on each materialization (seed 002, "Monitoring"):

* bytes and files of the DuckDB file, of each hot Parquet tree (bars, signal traces, classifier
  traces, strategy index) and of the archive;
* row counts of every warehouse table (``admf_assets.core.warehouse.TABLES``);
* with ``ADMF_POSTGRES_URL``: ``pg_database_size``, per-table total size and live rows
  (``pg_stat_user_tables``), index usage (``pg_stat_user_indexes``: scans, tuples read, size).

Every figure is appended to DuckDB ``storage_health_history``; growth per day is the change since
the newest earlier snapshot taken at least an hour before, divided by the elapsed days. Asset
checks (severity WARN) fail when hot storage, its growth per day or the Postgres database cross
the thresholds of the ``storage_thresholds`` resource (``ADMF_STORAGE_WARN_BYTES``,
``ADMF_STORAGE_GROWTH_WARN_BYTES_PER_DAY``, ``ADMF_POSTGRES_WARN_BYTES``).
"""


import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from admf_assets.core.archive import ArchiveLocation
from admf_assets.core.warehouse import TABLES, transaction
from admf_assets.lib.metadata import markdown_table
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, RetentionPolicy, StorageThresholds

HOT_TREES = {"bars": "bars", "signal_traces": "traces/signals", "classifier_states": "traces/classifiers"}
MIN_GROWTH_INTERVAL = dt.timedelta(hours=1)


def tree_size(path: Path) -> tuple[int, int]:
    """``(bytes, files)`` of the regular files under ``path`` (0, 0 when absent)."""
    if path.is_file():
        return path.stat().st_size, 1
    total = files = 0
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                total += p.stat().st_size
                files += 1
    return total, files


def archive_size(url: str) -> tuple[int, int]:
    """``(bytes, files)`` of the archive (any fsspec URL; 0, 0 when it does not exist)."""
    archive = ArchiveLocation(url)
    if not archive.fs.exists(archive.root):
        return 0, 0
    sizes = archive.fs.du(archive.root, total=False)
    return int(sum(sizes.values())), len(sizes)


def postgres_stats(url: str) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """``(metrics, tables, indexes)`` of the Postgres database at ``url``.

    metrics: ``bytes.postgres`` (pg_database_size), ``pg_bytes.<schema>.<table>`` and
    ``pg_rows.<schema>.<table>``; tables: ``table`` (``schema.relname``), ``total_bytes``,
    ``live_rows``; indexes: ``table``, ``index``, ``scans``, ``tuples_read``, ``bytes``
    (pg_stat_user_indexes). Tables are named with their schema, so two schemas' tables of the
    same name stay apart.

    Raises:
        sqlalchemy.exc.OperationalError: the server cannot be reached (5 s connect timeout).
        ValueError: ``url`` is not a ``postgresql(+psycopg2)://`` URL.
    """
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from admf_assets.lib.postgres_io import psycopg2_url

    engine = sa.create_engine(psycopg2_url(url), poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            tables = pd.DataFrame(
                conn.execute(
                    sa.text(
                        "SELECT schemaname || '.' || relname AS table, pg_total_relation_size(relid) AS total_bytes, n_live_tup AS live_rows "
                        "FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC, schemaname, relname"
                    )
                ).fetchall(),
                columns=["table", "total_bytes", "live_rows"],
            )
            indexes = pd.DataFrame(
                conn.execute(
                    sa.text(
                        "SELECT schemaname || '.' || relname AS table, indexrelname AS index, idx_scan AS scans, idx_tup_read AS tuples_read, "
                        "pg_relation_size(indexrelid) AS bytes FROM pg_stat_user_indexes ORDER BY schemaname, relname, indexrelname"
                    )
                ).fetchall(),
                columns=["table", "index", "scans", "tuples_read", "bytes"],
            )
    finally:
        engine.dispose()
    metrics = {"bytes.postgres": float(size)}
    for row in tables.itertuples(index=False):
        metrics[f"pg_bytes.{row.table}"] = float(row.total_bytes)
        metrics[f"pg_rows.{row.table}"] = float(row.live_rows)
    return metrics, tables, indexes


def growth_per_day(history: pd.DataFrame, now: dt.datetime, current: dict[str, float]) -> dict[str, float]:
    """``{metric: change per day}`` against the newest snapshot at least an hour older than ``now``.

    Args:
        history: ``taken_at, metric, value`` rows of earlier snapshots.
    """
    old = history[history["taken_at"] <= pd.Timestamp(now - MIN_GROWTH_INTERVAL)]
    if old.empty:
        return {}
    taken = old["taken_at"].max()
    base = old[old["taken_at"] == taken].set_index("metric")["value"]
    days = (pd.Timestamp(now) - taken).total_seconds() / 86400.0
    return {m: (v - float(base[m])) / days for m, v in current.items() if m in base.index}


@dg.asset(
    group_name="operations",
    kinds={"duckdb"},
    pool="duckdb_writer",
    check_specs=[
        dg.AssetCheckSpec("hot_storage_size", asset="storage_health", description="Hot storage (Parquet + DuckDB) below storage_thresholds.hot_bytes."),
        dg.AssetCheckSpec("hot_storage_growth", asset="storage_health", description="Hot storage growth per day below storage_thresholds.growth_bytes_per_day."),
        dg.AssetCheckSpec("postgres_size", asset="storage_health", description="pg_database_size below storage_thresholds.postgres_bytes (passes when no Postgres is configured)."),
    ],
)
def storage_health(
    context: dg.AssetExecutionContext,
    workspace: AdmfWorkspace,
    duckdb: AnalyticsDuckDB,
    retention: RetentionPolicy,
    storage_thresholds: StorageThresholds,
) -> dg.MaterializeResult:
    """Sizes (bytes), file and row counts of hot storage, the archive and Postgres, and their
    growth per day; see the module docstring. Checks warn (AssetCheckSeverity.WARN) past the
    configured thresholds."""
    root = Path(workspace.root)
    metrics: dict[str, float] = {}
    hot_parquet = 0
    for name, sub in HOT_TREES.items():
        size, files = tree_size(root / sub)
        metrics[f"bytes.{name}"], metrics[f"files.{name}"] = float(size), float(files)
        hot_parquet += size
    index_size, _ = tree_size(root / "strategy_index.parquet")
    hot_parquet += index_size
    duck_size = sum(tree_size(Path(duckdb.database + suffix))[0] for suffix in ("", ".wal"))
    metrics["bytes.hot_parquet"] = float(hot_parquet)
    metrics["bytes.duckdb"] = float(duck_size)
    metrics["bytes.hot_total"] = float(hot_parquet + duck_size)
    arch_bytes, arch_files = archive_size(workspace.layout.archive_url or retention.archive_url)  # where partitions really went
    metrics["bytes.archive"], metrics["files.archive"] = float(arch_bytes), float(arch_files)

    pg_tables = pg_indexes = None
    pg_error = None
    if storage_thresholds.postgres_url:
        try:
            pg_metrics, pg_tables, pg_indexes = postgres_stats(storage_thresholds.postgres_url)
            metrics.update(pg_metrics)
        except Exception as err:  # unreachable server: reported, the postgres_size check warns
            pg_error = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            context.log.warning(f"Postgres statistics unavailable: {pg_error}")

    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with duckdb.get_connection() as conn:
        for table in TABLES:
            metrics[f"rows.{table}"] = float(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        history = conn.execute("SELECT taken_at, metric, value FROM storage_health_history").df()
        growth = growth_per_day(history, now, metrics)
        snapshot = pd.DataFrame({"taken_at": now, "metric": list(metrics), "value": list(metrics.values())})
        with transaction(conn):
            conn.register("_snapshot", snapshot)
            conn.execute("INSERT INTO storage_health_history SELECT taken_at, metric, value FROM _snapshot")
            conn.unregister("_snapshot")

    table = pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())})
    table["growth_per_day"] = table["metric"].map(growth)
    hot_total = metrics["bytes.hot_total"]
    hot_growth = growth.get("bytes.hot_total")
    pg_size = metrics.get("bytes.postgres")
    checks = [
        dg.AssetCheckResult(
            check_name="hot_storage_size",
            passed=hot_total <= storage_thresholds.hot_bytes,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"hot_bytes": int(hot_total), "threshold_bytes": storage_thresholds.hot_bytes},
        ),
        dg.AssetCheckResult(
            check_name="hot_storage_growth",
            passed=hot_growth is None or hot_growth <= storage_thresholds.growth_bytes_per_day,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "growth_bytes_per_day": float(hot_growth) if hot_growth is not None else "no snapshot an hour or more older yet",
                "threshold_bytes_per_day": storage_thresholds.growth_bytes_per_day,
            },
        ),
        dg.AssetCheckResult(
            check_name="postgres_size",
            passed=(not storage_thresholds.postgres_url) or (pg_size is not None and pg_size <= storage_thresholds.postgres_bytes),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "pg_database_size": int(pg_size) if pg_size is not None else (pg_error or "Postgres not configured"),
                "threshold_bytes": storage_thresholds.postgres_bytes,
            },
        ),
    ]
    metadata = {
        "hot_bytes": int(hot_total),
        "duckdb_bytes": int(duck_size),
        "hot_parquet_bytes": int(hot_parquet),
        "archive_bytes": int(arch_bytes),
        "archive_files": int(arch_files),
        "metrics": markdown_table(table, limit=500),
    }
    if hot_growth is not None:
        metadata["hot_growth_bytes_per_day"] = float(hot_growth)
    if pg_size is not None:
        metadata["pg_database_size"] = int(pg_size)
        metadata["pg_tables"] = markdown_table(pg_tables, limit=100)
        metadata["pg_index_usage"] = markdown_table(pg_indexes, limit=100)
    if pg_error:
        metadata["postgres_error"] = pg_error
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


storage_health_job = dg.define_asset_job("storage_health_job", selection=dg.AssetSelection.assets(storage_health), description="Measure storage sizes, row counts and growth.")

storage_health_schedule = dg.ScheduleDefinition(
    name="storage_health_schedule",
    job=storage_health_job,
    cron_schedule="0 18 * * *",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily storage_health snapshot (growth per day is measured between snapshots).",
)


@dg.definitions
def storage_defs() -> dg.Definitions:
    return dg.Definitions(assets=[storage_health], jobs=[storage_health_job], schedules=[storage_health_schedule])
