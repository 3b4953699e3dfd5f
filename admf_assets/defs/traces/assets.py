"""``signal_traces`` and ``classifier_states``: sparse traces, one file per (day, symbol) partition.

A day's trace is the slice of one whole-history computation: the grid is evaluated over every
stored bar of the symbol up to the last requested day (warm-up and state carried in from earlier
days), and each requested day's change rows are written with ``idx`` relative to that day's first
bar. Concatenating the day files therefore reproduces the whole-history trace row for row.

So each day's trace depends on ALL earlier bars of the symbol, not only on the same day's
``market_bars`` partition (the only dependency Dagster sees: the partition mapping is day to
day). Consequences: runs writing bars and traces are serialised, oldest range first
(``admf/writes: market_data`` run tag, limit 1 in ``dagster_home/dagster.yaml``; see
``admf_assets.defs.pipeline.jobs``), so a later range is not computed before an earlier range's
bars are stored. And re-materializing an old day's bars (a corrected vendor file) re-computes
that day's traces only: the later days' traces stay computed from the previous bars, and Dagster
does not mark them stale, until they are re-materialized too. The landing sensor requests only
the days a new or changed file covers; after correcting an old day, materialize the range from
that day to the newest day (e.g. ``admf backfill --from DAY --to NEWEST``).
"""


import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from admf_assets.core import history_cache
from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.engine import classifier_rows, strategy_rows
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.store import WRITE_THREADS, BarHistory, history_metadata, read_bar_history
from admf_assets.core.traces import TraceFileWriter, config_record, fsync_dir
from admf_assets.defs.market_data.assets import MARKET_DATA_WRITES_POOL, market_bars
from admf_assets.lib.metadata import add_partition_metadata, markdown_table, path_value
from admf_assets.lib.partitions import day_symbol, group_by_symbol
from admf_assets.lib.resources import AdmfWorkspace


class SignalTracesConfig(dg.Config):
    """Run configuration of ``signal_traces``."""

    chunk_size: int = Field(
        default=128,
        ge=1,
        description=(
            "Strategies evaluated per compiled call. Larger is faster up to a point but needs more scratch "
            "memory (about 5 x chunk_size x bars bytes); lower it if the step runs out of memory. Does not "
            "change the traces written."
        ),
    )


def _write_day_files(kind: str, history: BarHistory, days, rows, records, workspace: AdmfWorkspace, labels=None) -> list[dict]:
    """Write one trace file per requested day of ``history``; returns per-file statistics.

    Each file is written (atomically, by the writer) under a hidden temp name in its folder, stamped
    (inode, mtime, size), then renamed into place, and the whole-history cache of
    :mod:`admf_assets.core.history_cache` is seeded with the rows just written under those stamps,
    so the analytics steps do not read these files back. Seeding is best effort: the day files
    are the system of record, and a cache that cannot be written is rebuilt by the next reader.
    """
    layout = workspace.layout
    file_for = layout.signals_file if kind == "signals" else layout.classifiers_file
    fingerprints = history.fingerprints()
    # the per-series strings, the configurations JSON and the timestamps prepared once for all days
    writer = TraceFileWriter(
        kind=kind, rows=rows, ts=history.bars["ts"], close=history.bars["close"].to_numpy(dtype=np.float64),
        symbol=history.symbol, timeframe=history.timeframe, records=records, labels=labels,
    )

    def write_day(day, start, stop, part) -> tuple[dict, tuple]:
        path = file_for(history.symbol, history.timeframe, day)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"  # not a day file name: readers ignore it
        try:
            n = writer.write(tmp, start, stop, extra_metadata=history_metadata(history, fingerprints, day), rows=part)
            stamp = history_cache.file_stamp(tmp, path.name)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return {"symbol": history.symbol, "date": day.isoformat(), "bars": stop - start, "rows": n, "path": str(path)}, stamp

    # the rows of each day are taken in order (the writer's cursors); signal files are encoded and
    # written on WRITE_THREADS threads (pyarrow releases the GIL; one thread's fsync overlaps the
    # others' encoding); the few rows of a classifier file are not worth a thread
    with ThreadPoolExecutor(max_workers=WRITE_THREADS if kind == "signals" else 1) as pool:
        futures = []
        for day in days:
            start, stop = history.span(day)
            futures.append(pool.submit(write_day, day, start, stop, writer.rows_between(start, stop)))
        results = [f.result() for f in futures]
    # the renames onto the day files' names durable before Dagster records the materialization
    # (each day file was itself written and fsynced under its temp name)
    for directory in sorted({file_for(history.symbol, history.timeframe, day).parent for day in days}):
        fsync_dir(directory)
    out = [stats for stats, _ in results]
    stamps = {day: stamp for day, (_, stamp) in zip(days, results)}
    configurations = writer.configurations_json.encode("utf-8") if results else None
    if history_cache.cache_enabled() and configurations is not None:
        try:
            history_cache.seed_trace_cache(layout, history, kind, rows, stamps, configurations)
        except Exception as err:  # derived data: the day files are written; a reader rebuilds the cache
            dg.get_dagster_logger().warning(
                f"{history.symbol}_{history.timeframe}: {kind} history cache not updated ({err!r}); "
                "the next reader rebuilds it from the day files"
            )
    return out


def _file_metadata(context: dg.AssetExecutionContext, stats: list[dict], rows_name: str, strategies: int | None = None) -> pd.DataFrame:
    """Attach each day file's own figures to its partition's materialization (``rows_name``: the
    change rows of that file, ``bars``: bars of that day, ``path``: the file; with ``strategies``
    also that file's ``compression_ratio``; only for runs of at most
    :data:`~admf_assets.lib.metadata.PARTITION_METADATA_MAX` partitions, see
    :func:`~admf_assets.lib.metadata.add_partition_metadata`), and the run's ``per_file`` table to
    the run's last partition only. Returns the statistics as a frame."""
    keys = {str(k): k for k in context.partition_keys}
    by_partition = {}
    for row in stats:
        meta = {rows_name: int(row["rows"]), "bars": int(row["bars"]), "path": path_value(row["path"])}
        if strategies is not None:
            meta["compression_ratio"] = float(row["rows"] / max(row["bars"] * strategies, 1))
        by_partition[keys[f"{row['date']}|{row['symbol']}"]] = meta
    add_partition_metadata(context, by_partition)
    stats_df = pd.DataFrame(stats)
    context.add_asset_metadata(
        {"per_file": markdown_table(stats_df.drop(columns="path"), limit=20)}, partition_key=context.partition_keys[-1]
    )
    return stats_df


@dg.asset(
    partitions_def=day_symbol,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[market_bars],
    group_name="traces",
    kinds={"parquet"},
    pool=MARKET_DATA_WRITES_POOL,
)
def signal_traces(context: dg.AssetExecutionContext, config: SignalTracesConfig, workspace: AdmfWorkspace) -> dg.MaterializeResult:
    """Sparse signal traces of every strategy of the grid (one file per day and symbol).

    Columns ``idx, ts, sym, val, strat, px, strat_hash, metadata`` (the sparse trace contract);
    Parquet key-value metadata holds the configurations, total bars, changes and compression
    ratio, and the first day of the bar history the day was computed from.

    A day's trace is computed from every stored bar of the symbol up to that day (warm-up and
    state carried in), so it depends on all earlier bars: re-materializing an old day's bars
    leaves later days' traces computed from the previous bars until they are re-materialized.
    Runs writing traces run one at a time, oldest range first (run tag admf/writes=market_data),
    and the step runs in the Dagster pool ``market_data_writes`` (with market_bars and
    classifier_states), so UI materializations and backfills never write at the same time either.

    Metadata: each partition carries its own file's ``change_rows``, ``bars``,
    ``compression_ratio`` and ``path``; ``run_*`` entries are run totals; ``per_file`` is on the
    run's last partition only.
    """
    grid = workspace.grid()
    stats = []
    for symbol, days in group_by_symbol(context.partition_keys).items():
        history = read_bar_history(workspace.layout, symbol, workspace.timeframe, through=days[-1])
        rows = strategy_rows(history.bars, grid.strategies, chunk_size=config.chunk_size)
        records = [config_record(c, symbol, workspace.timeframe) for c in grid.strategies]
        stats += _write_day_files("signals", history, days, rows, records, workspace)
        context.log.info(f"{symbol}: {len(grid.strategies)} strategies over {len(history.bars)} bars, {len(days)} day file(s)")
    stats_df = _file_metadata(context, stats, "change_rows", strategies=len(grid.strategies))
    total_bars = int(stats_df["bars"].sum())
    return dg.MaterializeResult(
        metadata={
            "strategies": len(grid.strategies),
            "run_files_written": len(stats_df),
            "run_change_rows": int(stats_df["rows"].sum()),
            "run_compression_ratio": float(stats_df["rows"].sum() / max(total_bars * len(grid.strategies), 1)),
        }
    )


@dg.asset(
    partitions_def=day_symbol,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[market_bars],
    group_name="traces",
    kinds={"parquet"},
    pool=MARKET_DATA_WRITES_POOL,
)
def classifier_states(context: dg.AssetExecutionContext, workspace: AdmfWorkspace) -> dg.MaterializeResult:
    """Sparse regime traces of the grid's classifiers (trend, volatility, momentum_regime); ``val``
    holds the regime name and a row is written only when the regime changes.

    Like ``signal_traces``, a day's states are computed from every stored bar of the symbol up to
    that day, so they depend on all earlier bars: re-materializing an old day's bars leaves later
    days' states computed from the previous bars until they are re-materialized. Runs writing
    them run one at a time, oldest range first (run tag admf/writes=market_data), and the step
    runs in the Dagster pool ``market_data_writes`` (with market_bars and signal_traces).

    Metadata: each partition carries its own file's ``regime_change_rows``, ``bars`` and
    ``path``; ``run_*`` entries are run totals; ``per_file`` is on the run's last partition only."""
    grid = workspace.grid()
    stats = []
    labels = [REGIME_LABELS[c.classifier_type] for c in grid.classifiers]
    for symbol, days in group_by_symbol(context.partition_keys).items():
        history = read_bar_history(workspace.layout, symbol, workspace.timeframe, through=days[-1])
        rows = classifier_rows(history.bars, grid.classifiers, cache=IndicatorCache(history.bars))
        records = [config_record(c, symbol, workspace.timeframe) for c in grid.classifiers]
        stats += _write_day_files("classifiers", history, days, rows, records, workspace, labels=labels)
    stats_df = _file_metadata(context, stats, "regime_change_rows")
    return dg.MaterializeResult(
        metadata={
            "classifiers": len(grid.classifiers),
            "run_files_written": len(stats_df),
            "run_regime_change_rows": int(stats_df["rows"].sum()),
        }
    )
