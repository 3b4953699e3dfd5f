"""Retention: the ``retention_sensor`` and ``archive_job`` that moves partitions past retention.

Dagster keeps no retention of asset data itself (dagster#15526): this module is it. The sensor
(running by default, hourly) plans what the policy moves now (:func:`plan_now`) and launches
``archive_job`` with a run key naming the cutoffs (``archive-bars<d>-summaries<d>-traces<d>-<digest>``);
a tick repeated after a crash plans the same key, and Dagster launches a run key once. The job
moves each old partition into the archive (monthly zstd Parquet, verified by row count and
checksum before the hot copy is deleted, see :mod:`admf_assets.core.archive`), records every move
in DuckDB's ``archive_manifest`` and reports it on the assets as observations.
"""


import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pandas as pd
from filelock import Timeout
from pydantic import Field

from admf_assets.core.archive import (
    FILE_KINDS,
    SUMMARY_KIND,
    SUMMARY_TABLE,
    ArchiveLocation,
    ManifestEntry,
    RetentionPlan,
    archive_file_partitions,
    archive_lock,
    archive_summary_rows,
    refresh_file_views,
    check_archive_url,
    plan_retention,
    record_manifest,
    restored_partitions,
    write_marker,
)
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.warehouse import connect, transaction
from admf_assets.defs.pipeline.jobs import MARKET_DATA_WRITES_TAG
from admf_assets.lib.metadata import markdown_table
from admf_assets.lib.partitions import exchange_sessions
from admf_assets.lib.resources import AdmfWorkspace, AnalyticsDuckDB, RetentionPolicy

ASSET_OF_KIND = {
    "bars": "market_bars",
    "signals": "signal_traces",
    "classifiers": "classifier_states",
    "tables/daily_signal_summary": "daily_signal_summary",
    "postgres/daily_signal_summary": "daily_signal_summary",
}


def summary_days_stored(database: str, timeout: float = 60.0) -> list[dt.date]:
    """Distinct dates of the hot ``daily_signal_summary`` rows (empty when the database does not
    exist yet).

    Raises:
        filelock.Timeout: the warehouse lock was not obtained within ``timeout`` seconds.
    """
    if not Path(database).is_file():
        return []
    with connect(database, timeout=timeout) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT date FROM daily_signal_summary ORDER BY date").fetchall()]


def pinned_partitions(database: str, timeout: float = 60.0) -> dict:
    """Restored partitions the retention plan leaves hot (:func:`~admf_assets.core.archive.restored_partitions`;
    empty when the database does not exist yet).

    Raises:
        filelock.Timeout: the warehouse lock was not obtained within ``timeout`` seconds.
    """
    if not Path(database).is_file():
        return {}
    with connect(database, timeout=timeout) as conn:
        return restored_partitions(conn)


def plan_now(root: str, calendar: str, database: str, *, bars_days: int, traces_days: int, summaries_days: int,
             lock_timeout: float = 60.0, include_restored: bool = False) -> RetentionPlan:
    """The :class:`~admf_assets.core.archive.RetentionPlan` of the workspace at ``root`` now.

    Partitions restored by ``admf archive restore`` are left out unless ``include_restored``.

    Raises:
        filelock.Timeout: the DuckDB warehouse lock was not obtained within ``lock_timeout`` seconds.
    """
    return plan_retention(
        WorkspaceLayout(Path(root)),
        exchange_sessions(calendar),
        bars_days=bars_days,
        traces_days=traces_days,
        summaries_days=summaries_days,
        summary_days_stored=summary_days_stored(database, lock_timeout),
        pinned=None if include_restored else pinned_partitions(database, lock_timeout),
    )


def execute_archive(
    *,
    root: str,
    archive_url: str,
    database: str,
    cutoffs: dict[str, dt.date | None],
    postgres_url: str = "",
    run_id: str | None = None,
    lock_timeout: float = 3600.0,
    log=None,
    include_restored: bool = False,
) -> list[ManifestEntry]:
    """Move every hot partition before ``cutoffs`` into the archive (see module docstring).

    Holds ``<root>/archive.lock`` for the whole move, so a second archive or restore run waits;
    records ``<root>/archive_location.txt`` so readers find the archive. Kinds: bars (cutoff
    ``bars``), signal and classifier traces (``traces``), ``daily_signal_summary`` rows and, with
    ``postgres_url``, the Postgres signal store's month partitions (``summaries``); a kind whose
    cutoff is ``None`` (or missing) is not moved. Partitions restored by ``admf archive restore``
    stay hot unless ``include_restored``.

    Returns:
        The manifest entries of every partition moved.

    Raises:
        admf_assets.core.archive.ArchiveVerificationError: a month file did not verify; the
            partitions of that month stay hot (earlier months stay archived).
        admf_assets.core.archive.ArchiveError: ``archive_url`` differs from the archive the
            manifest's partitions are in (nothing moved), or a partition's columns differ from
            its month file's.
        filelock.Timeout: another archive run held the lock longer than ``lock_timeout``.
    """
    if not any(cutoffs.values()):
        return []  # nothing past retention: leave the workspace untouched
    layout = WorkspaceLayout(Path(root))
    archive = ArchiveLocation(archive_url)
    moved: list[ManifestEntry] = []

    def record(entries: list[ManifestEntry]) -> None:
        with connect(database) as conn, transaction(conn):
            record_manifest(conn, entries, run_id=run_id)

    with archive_lock(layout, lock_timeout):
        with connect(database) as conn:
            check_archive_url(conn, layout, archive)
            pinned = {} if include_restored else restored_partitions(conn)
        write_marker(layout, archive.url)
        for kind in FILE_KINDS:
            cutoff = cutoffs.get("bars" if kind == "bars" else "traces")
            if cutoff is None:
                continue
            for symbol, timeframe in layout.series_on_disk(kind):
                series = layout.series_key(symbol, timeframe)
                keep = pinned.get((kind, series), set())
                days = [d for d in layout.dated_files(layout.kind_dir(kind, symbol, timeframe)) if d < cutoff and d not in keep]
                if days:
                    entries = archive_file_partitions(layout, archive, kind, series, days, record=record)
                    moved += entries
                    if log:
                        log.info(f"archived {len(entries)} {kind} partition(s) of {series} before {cutoff}")
        with connect(database) as conn:
            refresh_file_views(conn, layout, archive)
        cutoff = cutoffs.get("summaries")
        if cutoff is not None:
            with connect(database) as conn:
                entries = archive_summary_rows(conn, archive, cutoff, run_id=run_id, skip=pinned.get((SUMMARY_KIND, SUMMARY_TABLE), set()))
            moved += entries
            if postgres_url:
                from admf_assets.lib.postgres_io import archive_signal_store

                moved += archive_signal_store(postgres_url, archive, cutoff, record=record)
    return moved


def manifest_frame(entries: list[ManifestEntry]) -> pd.DataFrame:
    """Entries as a DataFrame (columns of :class:`~admf_assets.core.archive.ManifestEntry`)."""
    return pd.DataFrame([e.__dict__ for e in entries], columns=["kind", "series", "partition_key", "source", "target", "rows", "checksum"])


def observations(entries: list[ManifestEntry], archive_url: str, cutoffs: dict) -> list[dg.AssetObservation]:
    """One observation per asset that lost partitions to the archive: partitions, rows, months and
    a table of the moves (shown on the asset's page in the UI)."""
    frame = manifest_frame(entries)
    out = []
    for asset, group in frame.groupby(frame["kind"].map(ASSET_OF_KIND)):
        out.append(
            dg.AssetObservation(
                asset_key=asset,
                metadata={
                    "archived_partitions": len(group),
                    "archived_rows": int(group["rows"].sum()),
                    "archive_files": int(group["target"].nunique()),
                    "archive": dg.MetadataValue.path(archive_url),
                    "cutoffs": json.dumps({k: (v.isoformat() if v else None) for k, v in cutoffs.items()}),
                    "moves": markdown_table(group.drop(columns=["source"]), limit=50),
                },
            )
        )
    return out


class ArchiveConfig(dg.Config):
    """Cutoffs of an archive run (``YYYY-MM-DD``; partitions strictly before move).

    * All three empty (a hand-launched run with no config): the retention policy's cutoffs now,
      for every kind, what ``admf archive run`` does and the ``retention_sensor`` would plan.
    * Any of them given: ONLY the kinds given are archived; an empty field means that kind is not
      archived in this run (``bars_before`` alone moves bars only). This is what a sensor run
      relies on: it names exactly the cutoffs of its plan (and run key), an empty one where the
      policy moves nothing of that kind.
    """

    bars_before: str = Field(
        default="",
        description=(
            "Archive market_bars partitions strictly before this trading day (YYYY-MM-DD). Empty: bars are not "
            "archived in this run, unless all three cutoffs are empty (then the retention policy's cutoffs apply)."
        ),
    )
    traces_before: str = Field(
        default="",
        description=(
            "Archive signal_traces and classifier_states partitions strictly before this trading day (YYYY-MM-DD). "
            "Empty: traces are not archived in this run, unless all three cutoffs are empty (then the retention "
            "policy's cutoffs apply)."
        ),
    )
    summaries_before: str = Field(
        default="",
        description=(
            "Archive daily_signal_summary rows strictly before this trading day (YYYY-MM-DD). Empty: summaries are "
            "not archived in this run, unless all three cutoffs are empty (then the retention policy's cutoffs apply)."
        ),
    )
    include_restored: bool = Field(
        default=False,
        description="Also move partitions brought back by 'admf archive restore' (otherwise they stay hot).",
    )


def _parse(value: str, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(description=f"archive_job config {field}={value!r} is not a YYYY-MM-DD date") from None


@dg.op(pool="duckdb_writer", description="Move partitions past retention into the archive, verified, then delete them from hot storage.")
def archive_partitions(
    context: dg.OpExecutionContext, config: ArchiveConfig, workspace: AdmfWorkspace, retention: RetentionPolicy, duckdb: AnalyticsDuckDB
) -> dg.Output:
    """Move the partitions before the configured cutoffs into the archive with
    :func:`execute_archive`, then log one observation per affected asset. With no cutoff
    configured, the policy's cutoffs now; with some, only those kinds (see :class:`ArchiveConfig`).

    Raises:
        dagster.Failure: for a malformed cutoff, or when another archive run holds the lock.
        admf_assets.core.archive.ArchiveVerificationError: a month did not verify (its hot
            partitions are kept).
        admf_assets.core.archive.ArchiveError: the archive URL changed while the manifest lists
            partitions in the old archive, or a partition's columns differ from its month file's.
    """
    given = {"bars": _parse(config.bars_before, "bars_before"), "traces": _parse(config.traces_before, "traces_before"),
             "summaries": _parse(config.summaries_before, "summaries_before")}
    if not any(given.values()):
        plan = plan_now(workspace.root, workspace.calendar, duckdb.database, bars_days=retention.bars_days,
                        traces_days=retention.traces_days, summaries_days=retention.summaries_days,
                        include_restored=config.include_restored)
        given = plan.cutoffs
        context.log.info("no cutoff configured: archiving with the retention policy's cutoffs now")
    else:
        skipped = sorted(k for k, v in given.items() if v is None)
        if skipped:
            context.log.info(f"cutoffs configured for {', '.join(sorted(k for k, v in given.items() if v))} only: "
                             f"{', '.join(skipped)} not archived in this run")
    try:
        entries = execute_archive(
            root=workspace.root, archive_url=retention.archive_url, database=duckdb.database, cutoffs=given,
            postgres_url=retention.postgres_url, run_id=context.run_id, lock_timeout=retention.lock_timeout_seconds, log=context.log,
            include_restored=config.include_restored,
        )
    except Timeout as err:
        raise dg.Failure(description=f"another archive run holds {Path(workspace.root) / 'archive.lock'}: {err}") from err
    for obs in observations(entries, retention.archive_url, given):
        context.log_event(obs)
    frame = manifest_frame(entries)
    return dg.Output(
        len(entries),
        metadata={
            "partitions_moved": len(entries),
            "cutoffs": json.dumps({k: (v.isoformat() if v else None) for k, v in given.items()}, sort_keys=True),
            "rows_moved": int(frame["rows"].sum()) if len(frame) else 0,
            "archive": dg.MetadataValue.path(retention.archive_url),
            "moves": markdown_table(frame, limit=50) if len(frame) else "nothing past retention",
        },
    )


@dg.job(
    description="Archive partitions past the retention policy (launched by retention_sensor; run by hand to retry).",
    # it deletes hot bar and trace files: never at the same time as a run writing them
    tags=MARKET_DATA_WRITES_TAG,
)
def archive_job():
    """One op, :func:`archive_partitions`. Its runs carry the run tag ``admf/writes:
    market_data`` of the jobs that write bars and traces, so the instance's limit of one such run
    (``dagster_home/dagster.yaml``) keeps an archive from deleting a hot file while a
    re-materialization replaces it."""
    archive_partitions()


@dg.sensor(
    job=archive_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=3600,
    description="Launches archive_job when hot partitions are older than the retention policy keeps (run key names the cutoffs).",
)
def retention_sensor(context: dg.SensorEvaluationContext, workspace: AdmfWorkspace, retention: RetentionPolicy, duckdb: AnalyticsDuckDB):
    """Cursor: JSON ``{"run_key", "cutoffs", "partitions"}`` of the last request. The run key is
    deterministic for a given state, so a repeated tick (even after a crash lost the cursor)
    requests the same key and Dagster does not launch it twice. Partitions restored by
    ``admf archive restore`` are not planned (a restore pins them hot)."""
    try:
        plan = plan_now(workspace.root, workspace.calendar, duckdb.database, bars_days=retention.bars_days,
                        traces_days=retention.traces_days, summaries_days=retention.summaries_days, lock_timeout=30.0)
    except Timeout:
        return dg.SkipReason("the DuckDB warehouse is busy (lock held); retrying next tick")
    cutoffs = {k: (v.isoformat() if v else None) for k, v in plan.cutoffs.items()}
    if plan.empty:
        return dg.SkipReason(f"nothing past retention (cutoffs {cutoffs})")
    key = plan.run_key()
    previous = json.loads(context.cursor) if context.cursor else {}
    if previous.get("run_key") == key:
        return dg.SkipReason(f"{key} already requested")
    cursor = json.dumps({"run_key": key, "cutoffs": cutoffs, "partitions": plan.partitions}, sort_keys=True)
    request = dg.RunRequest(
        run_key=key,
        run_config=dg.RunConfig(
            ops={"archive_partitions": ArchiveConfig(bars_before=cutoffs["bars"] or "", traces_before=cutoffs["traces"] or "",
                                                     summaries_before=cutoffs["summaries"] or "")}
        ),
        tags={"admf/archive_cutoffs": json.dumps(cutoffs, sort_keys=True)},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)


@dg.definitions
def retention_defs() -> dg.Definitions:
    return dg.Definitions(jobs=[archive_job], sensors=[retention_sensor])
