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
from admf_assets.core.traces import TraceFileWriter, config_record, write_parquet_atomic

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
    bars_path: Path, grid_path: Path, out: Path, *, rth: bool = False, symbol: str | None = None, chunk_size: int = 128
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
    ts = bars["ts"]  # a tz-aware Series (to_numpy() would box every timestamp)
    close = bars["close"].to_numpy(dtype=np.float64)
    cache = IndicatorCache(bars)  # indicators computed once, shared by every type and classifier
    extra = {SESSION_KEY: (b"regular" if rth else b"as_given"), BARS_KEY: str(bars_path).encode()}
    common = dict(ts=ts, close=close, symbol=sym, timeframe=timeframe)
    records, counts, files, changes = [], [], 0, 0
    by_type: dict[str, list] = {}
    for config in grid.strategies:
        by_type.setdefault(config.strategy_type, []).append(config)
    for stype, configs in by_type.items():
        rows = strategy_rows(bars, configs, chunk_size=chunk_size, cache=cache)
        recs = [config_record(c, sym, timeframe) for c in configs]
        writer = TraceFileWriter(kind="signals", rows=rows, records=recs, **common)
        changes += writer.write(series_dir / "signals" / f"{stype}.parquet", extra_metadata=extra)
        records += recs
        counts += rows.counts().tolist()
        files += 1
    for cfg in grid.classifiers:
        rec = config_record(cfg, sym, timeframe)
        writer = TraceFileWriter(
            kind="classifiers", rows=classifier_rows(bars, [cfg], cache=cache), records=[rec],
            labels=[REGIME_LABELS[cfg.classifier_type]], **common,
        )
        writer.write(series_dir / "classifiers" / f"{cfg.classifier_type}_{rec['hash']}.parquet", extra_metadata=extra)
        files += 1
    index_src = index_source(records, np.asarray(counts, dtype=np.int64), sym, timeframe, len(bars))
    index_path = write_parquet_atomic(pa.Table.from_pandas(strategy_index_table(index_src), preserve_index=False), out / "strategy_index.parquet")
    return {"symbol": sym, "timeframe": timeframe, "bars": len(bars), "strategies": len(records), "files": files, "change_rows": changes, "index": str(index_path)}


def index_source(records: list[dict], counts: np.ndarray, symbol: str, timeframe: str, n_bars: int) -> pd.DataFrame:
    """The identity columns of ``strategy_index.parquet`` for traces written in the research layout
    (``traces/<SYM>_<tf>/signals/<type>.parquet``), one row per configuration record.

    Args:
        records: :func:`admf_assets.core.traces.config_record` dicts, in trace order.
        counts: int64 (S,) signal change rows per strategy.
        n_bars: bars the traces cover (``compression_ratio = counts / n_bars``, a fraction).

    ``parameters`` holds each record's parameter dict (what
    :func:`admf_assets.core.analytics.strategy_index_table` spreads into columns).
    """
    return pd.DataFrame(
        {
            "strategy_id": [r["id"] for r in records],
            "strategy_hash": [r["hash"] for r in records],
            "strategy_type": [r["type"] for r in records],
            "parameters": [r["parameters"] for r in records],
            "constraints": [r.get("constraints") for r in records],
            "symbol": symbol,
            "timeframe": timeframe,
            "signal_file": [f"traces/{symbol}_{timeframe}/signals/{r['type']}.parquet" for r in records],
            "signal_changes": counts,
            "compression_ratio": counts / max(n_bars, 1),
        }
    )


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
