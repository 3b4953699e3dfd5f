"""A researcher's quick test outside Dagster: ``admf traces`` and ``admf metrics`` on one file.

``write_research_traces`` evaluates a grid on one bars file *exactly as given* (no session
filter unless ``rth``) and writes, under an output folder::

    <out>/traces/<SYM>_<tf>/signals/<strategy_type>.parquet      one file per strategy type
    <out>/traces/<SYM>_<tf>/classifiers/<classifier_type>.parquet
    <out>/strategy_index.parquet                                  one row per strategy

``idx`` is the row of the bars file (after the optional session filter). ``research_metrics``
reads them back with the same bars and returns the performance table; it also fills the
headline metrics into ``strategy_index.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from admf_assets.core.analytics import HEADLINE_METRICS, strategy_index_table
from admf_assets.core.api import trace_metrics
from admf_assets.core.bars import infer_timeframe, read_bar_file, validate_bars
from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.engine import classifier_rows, strategy_rows
from admf_assets.core.grid import load_grid
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel
from admf_assets.core.traces import (
    build_classifier_table,
    build_signal_table,
    config_record,
    record_json,
    trace_file_metadata,
    write_parquet_atomic,
)

SESSION_KEY = b"admf.session"
BARS_KEY = b"admf.bars_file"


class ResearchStoreError(RuntimeError):
    """The traces folder is missing files or does not match the bars given."""


def load_research_bars(path: Path, *, rth: bool, symbol: str | None = None) -> pd.DataFrame:
    """Read and validate a bars file; ``rth`` keeps regular trading hours only.

    Raises:
        admf_assets.core.bars.BarValidationError: naming file, row and rule.
    """
    raw = read_bar_file(path, symbol=symbol)
    bars, _report = validate_bars(raw, source=str(path), session="regular" if rth else "all")
    return bars


def write_research_traces(
    bars_path: Path, grid_path: Path, out: Path, *, rth: bool = False, symbol: str | None = None, chunk_size: int = 512
) -> dict:
    """Compute and write the traces of every strategy and classifier of the grid (see module doc).

    Returns:
        A summary dict: symbol, timeframe, bars, strategies, files, change_rows, index (path).

    Raises:
        admf_assets.core.bars.BarValidationError: invalid bars.
        admf_assets.core.schemas.GridError: invalid grid, or a grid timeframe that differs from
            the bars' spacing.
    """
    from admf_assets.core.schemas import GridError

    grid = load_grid(grid_path)
    bars = load_research_bars(Path(bars_path), rth=rth, symbol=symbol or grid.symbol)
    sym = symbol or grid.symbol or str(bars["symbol"].iloc[0])
    timeframe = infer_timeframe(bars["ts"])
    if grid.timeframe and grid.timeframe != timeframe:
        raise GridError(f"{grid_path}: grid timeframe {grid.timeframe!r} but the bars in {bars_path} are {timeframe} bars")
    out = Path(out)
    series_dir = out / "traces" / WorkspaceLayout(out).series_key(sym, timeframe)
    ts = bars["ts"].to_numpy()
    close = bars["close"].to_numpy(dtype=np.float64)
    cache = IndicatorCache(bars)
    rows = strategy_rows(bars, grid.strategies, chunk_size=chunk_size, cache=cache)
    records = [config_record(c, sym, timeframe) for c in grid.strategies]
    extra = {SESSION_KEY: (b"regular" if rth else b"as_given"), BARS_KEY: str(bars_path).encode()}
    files, changes = 0, 0
    types = np.array([c.strategy_type for c in grid.strategies])
    for stype in dict.fromkeys(types.tolist()):
        members = np.flatnonzero(types == stype)
        sub = rows.select(np.isin(rows.series, members))
        # Renumber the type's series 0..k-1 (members are contiguous or not; keep grid order).
        remap = np.full(len(records), -1, dtype=np.int32)
        remap[members] = np.arange(len(members), dtype=np.int32)
        sub = type(sub)(remap[sub.series], sub.idx, sub.val, len(members), sub.n_bars)
        recs = [records[i] for i in members]
        table = build_signal_table(
            sub, ts=ts, close=close, symbol=sym,
            series_ids=[r["id"] for r in recs], series_hashes=[r["hash"] for r in recs],
            series_json=[record_json(r) for r in recs],
        )
        kv = trace_file_metadata(
            kind="signals", symbol=sym, timeframe=timeframe,
            configs=recs,
            total_bars=len(bars), n_series=len(recs), changes=len(sub),
            first_ts=str(bars["ts"].iloc[0]), last_ts=str(bars["ts"].iloc[-1]),
        )
        write_parquet_atomic(table, series_dir / "signals" / f"{stype}.parquet", kv_metadata={**kv, **extra})
        files += 1
        changes += len(sub)
    for cfg in grid.classifiers:
        crow = classifier_rows(bars, [cfg], cache=cache)
        rec = config_record(cfg, sym, timeframe)
        table = build_classifier_table(
            crow, ts=ts, close=close, symbol=sym, series_ids=[rec["id"]], series_hashes=[rec["hash"]],
            series_json=[record_json(rec)], labels_per_series=[REGIME_LABELS[cfg.classifier_type]],
        )
        kv = trace_file_metadata(
            kind="classifiers", symbol=sym, timeframe=timeframe,
            configs=[rec],
            total_bars=len(bars), n_series=1, changes=len(crow),
            first_ts=str(bars["ts"].iloc[0]), last_ts=str(bars["ts"].iloc[-1]),
        )
        write_parquet_atomic(table, series_dir / "classifiers" / f"{cfg.classifier_type}_{rec['hash']}.parquet", kv_metadata={**kv, **extra})
        files += 1
    counts = rows.counts()
    index_src = pd.DataFrame(
        {
            "strategy_id": [r["id"] for r in records],
            "strategy_hash": [r["hash"] for r in records],
            "strategy_type": [r["type"] for r in records],
            "parameters": [json.dumps(r["parameters"], sort_keys=True) for r in records],
            "constraints": [r.get("constraints") for r in records],
            "symbol": sym,
            "timeframe": timeframe,
            "signal_file": [f"traces/{series_dir.name}/signals/{r['type']}.parquet" for r in records],
            "signal_changes": counts,
            "compression_ratio": counts / max(len(bars), 1),
        }
    )
    index_path = write_parquet_atomic(pa.Table.from_pandas(strategy_index_table(index_src), preserve_index=False), out / "strategy_index.parquet")
    return {"symbol": sym, "timeframe": timeframe, "bars": len(bars), "strategies": len(records), "files": files, "change_rows": changes, "index": str(index_path)}


def research_metrics(bars_path: Path, traces_dir: Path, costs: CostModel | None = None) -> pd.DataFrame:
    """Performance table of the traces under ``traces_dir`` (written by
    :func:`write_research_traces`) on the bars file they were computed on.

    Returns:
        One row per strategy: strategy_id, strategy_hash, strategy_type, parameters (JSON) and the
        metric columns of :data:`admf_assets.core.metrics.METRIC_COLUMNS`.

    Raises:
        ResearchStoreError: when the folder holds no traces or they were computed on other bars.
        admf_assets.core.bars.BarValidationError: invalid bars.
    """
    traces_dir = Path(traces_dir)
    index_path = traces_dir / "strategy_index.parquet"
    files = sorted(traces_dir.glob("traces/*/signals/*.parquet"))
    if not files or not index_path.is_file():
        raise ResearchStoreError(f"{traces_dir}: no strategy_index.parquet and signal traces; run `admf traces` first")
    meta = pq.read_schema(files[0]).metadata or {}
    rth = meta.get(SESSION_KEY) == b"regular"
    bars = load_research_bars(Path(bars_path), rth=rth, symbol=meta.get(b"admf.symbol", b"").decode() or None)
    total = int(meta.get(b"admf.total_bars", b"-1"))
    if total != len(bars):
        raise ResearchStoreError(
            f"{traces_dir}: traces were computed on {total} bars ({meta.get(BARS_KEY, b'?').decode()}), "
            f"but {bars_path} gives {len(bars)} bars"
        )
    table = pa.concat_tables([pq.read_table(f) for f in files])
    metrics = trace_metrics(table, bars, costs or CostModel())
    index = pq.read_table(index_path).to_pandas()
    merged = index[["strategy_id"]].merge(metrics, on="strategy_id", how="left")
    missing = merged["strategy_type"].isna()
    if missing.any():  # strategies that never emitted a value (warm-up longer than the data)
        merged.loc[missing, "strategy_type"] = index.loc[missing.to_numpy(), "strategy_type"].to_numpy()
    for col in HEADLINE_METRICS:
        index[col] = merged[col].to_numpy()
    write_parquet_atomic(pa.Table.from_pandas(index, preserve_index=False), index_path)
    return merged
