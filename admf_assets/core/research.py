"""A researcher's quick test outside Dagster: ``admf traces`` and ``admf metrics`` on one file.

``write_research_traces`` evaluates a grid on one bars file *exactly as given* (no session
filter unless ``rth``) and writes, under an output folder::

    <out>/traces/<SYM>_<tf>/signals/<strategy_type>.parquet      one file per strategy type
    <out>/traces/<SYM>_<tf>/classifiers/<classifier_type>_<hash>.parquet
    <out>/strategy_index.parquet                                  one row per strategy

``idx`` is the row of the bars file (after the optional session filter). The index carries the
headline metrics after the costs given to ``write_research_traces`` (``admf traces
--commission-bps/--slippage-bps``). A write into a folder that already holds a set replaces it:
trace files of the earlier set that the new one did not write are removed. ``research_metrics``
reads back the trace files the index names (never others) with the same bars and returns the
whole performance table after its own costs, and writes those costs' headline metrics into
``strategy_index.parquet``.

Every trace file names the bars it was computed on: ``admf.symbol``, ``admf.first_ts`` /
``admf.last_ts`` and ``admf.total_bars`` (see :func:`admf_assets.core.traces.trace_file_metadata`),
``admf.bars_fingerprint`` (:func:`bars_fingerprint` of the bars' timestamps and closes) and, for a
set written by ``write_research_traces``, ``admf.bars_symbol`` (the symbol the bars file itself
names). ``research_metrics`` refuses a bars file that differs in any of them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from admf_assets.core.analytics import HEADLINE_METRICS, strategy_index_table
from admf_assets.core.api import trace_metrics
from admf_assets.core.bars import (
    BarValidationError,
    _file_symbols,
    _symbol_from_filename,
    infer_timeframe,
    read_bar_file,
    validate_bars,
)
from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.config import ClassifierConfig, StrategyConfig
from admf_assets.core.engine import classifier_rows, strategy_rows
from admf_assets.core.grid import load_grid
from admf_assets.core.indicators import IndicatorCache
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel
from admf_assets.core.schemas import GridError
from admf_assets.core.sparse import SparseRows
from admf_assets.core.store import WRITE_THREADS
from admf_assets.core.traces import TraceFileWriter, config_record, write_parquet_atomic

SESSION_KEY = b"admf.session"
BARS_KEY = b"admf.bars_file"
BARS_SYMBOL_KEY = b"admf.bars_symbol"
"""The symbol the bars file itself names (its symbol column, else its name's prefix)."""
BARS_FINGERPRINT_KEY = b"admf.bars_fingerprint"
""":func:`bars_fingerprint` of the bars the traces were computed on."""
# metadata every trace file named by one index must agree on (field name, key)
_AGREEING_METADATA = (
    ("session", SESSION_KEY), ("total_bars", b"admf.total_bars"), ("symbol", b"admf.symbol"), ("timeframe", b"admf.timeframe"),
)


class ResearchStoreError(RuntimeError):
    """The traces folder is missing files or does not match the bars given."""


class SymbolMismatchError(GridError):
    """The symbol asked for (the grid's or the ``symbol`` argument) is not the one the bars file
    names, or the bars file holds several symbols."""


def bars_fingerprint(ts, close) -> str:
    """``sha256:<hex>`` of the bars' timestamps (int64 microseconds since the epoch, UTC) and
    closes (float64), little-endian: equal for the same bars read from any copy of a file."""
    us = pd.DatetimeIndex(ts).as_unit("us").asi8.astype("<i8", copy=False)
    px = np.ascontiguousarray(np.asarray(close, dtype="<f8"))
    digest = hashlib.sha256(np.ascontiguousarray(us).tobytes())
    digest.update(px.tobytes())
    return "sha256:" + digest.hexdigest()


def bars_file_symbols(path: Path) -> tuple[list[str], bool]:
    """The symbols the bars file names and where from: ``(values of its symbol column, True)``,
    or ``([its name's prefix before the first "_"], False)`` when it has no symbol column (the
    landing convention, :func:`admf_assets.core.bars.discover_bar_files`).

    Raises:
        admf_assets.core.bars.BarValidationError: the file cannot be read (``unreadable``).
    """
    path = Path(path)
    try:
        named = _file_symbols(path)
    except BarValidationError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types; report them as read_bar_file does
        raise BarValidationError(str(path), None, "unreadable", None, f"{type(exc).__name__}: {exc}") from exc
    if named is None:
        return [_symbol_from_filename(path)], False
    return named, True


def resolve_symbol(bars_path: Path, grid_path: Path, grid_symbol: str | None, symbol: str | None) -> tuple[str, str]:
    """The symbol of the traces of ``bars_path`` and the symbol the bars file itself names.

    ``symbol`` (``admf traces --symbol``), else the grid's, else the file's. A bars file names
    its symbol in its symbol column or, without one, in its name (``SPY_5m.csv``, as in the
    landing folder). A symbol column is the data's own and is never overridden; an explicit
    ``symbol`` names the bars of a file without a symbol column (what
    :func:`~admf_assets.core.bars.read_bar_file`'s ``symbol`` is for), and also wins over the
    grid's; the grid's symbol overrides nothing.

    Raises:
        SymbolMismatchError: the file holds several symbols; ``symbol`` differs from the file's
            symbol column; or, with no ``symbol``, the grid's differs from the file's symbol
            (column or name). The message names both.
    """
    named, from_column = bars_file_symbols(bars_path)
    if len(named) != 1:
        raise SymbolMismatchError(
            f"{bars_path} holds bars of {len(named)} symbols ({', '.join(named) or 'none'}); "
            "`admf traces` takes the bars of one symbol"
        )
    own = named[0]
    where = "its symbol column" if from_column else "its file name; it has no symbol column"
    if symbol is not None:
        if from_column and symbol != own:
            raise SymbolMismatchError(
                f"--symbol {symbol} but {bars_path} holds {own} bars ({where}); "
                f"a symbol column is not overridden: use the {symbol} bars file or --symbol {own}"
            )
        return symbol, own
    if grid_symbol is not None and grid_symbol != own:
        hint = f"use a grid for {own} or the {grid_symbol} bars file"
        if not from_column:
            hint += f", or pass --symbol {grid_symbol} if these are {grid_symbol} bars"
        raise SymbolMismatchError(f"{grid_path} names symbol {grid_symbol} but {bars_path} holds {own} bars ({where}); {hint}")
    return own, own


def load_research_bars(path: Path, *, rth: bool, symbol: str | None = None) -> pd.DataFrame:
    """Read and validate a bars file; ``rth`` keeps regular trading hours only.

    Raises:
        admf_assets.core.bars.BarValidationError: naming file, row and rule.
    """
    raw = read_bar_file(path, symbol=symbol)
    bars, _report = validate_bars(raw, source=str(path), session="regular" if rth else "all")
    return bars


def write_research_traces(
    bars_path: Path,
    grid_path: Path,
    out: Path,
    *,
    rth: bool = False,
    symbol: str | None = None,
    chunk_size: int = 128,
    costs: CostModel | None = None,
) -> dict:
    """Compute and write the traces of every strategy and classifier of the grid (see module doc),
    and ``strategy_index.parquet`` with the headline metrics after ``costs`` (default
    ``CostModel()``: 0.5 + 1.0 bps per side).

    Returns:
        A summary dict: symbol, timeframe, bars, strategies, files, change_rows, index (path).

    The symbol is ``symbol``, else the grid's, else the one the bars file names (see
    :func:`resolve_symbol`: a symbol column is never overridden, ``symbol`` may name the bars of
    a file without one, the grid's symbol must be the file's).

    Raises:
        admf_assets.core.bars.BarValidationError: invalid bars.
        admf_assets.core.schemas.GridError: invalid grid, or a grid timeframe that differs from
            the bars' spacing; :class:`SymbolMismatchError` (a GridError) when the grid's symbol
            or ``symbol`` is not the one the bars file names.
    """
    grid = load_grid(grid_path)
    bars = load_research_bars(Path(bars_path), rth=rth, symbol=symbol)
    sym, own = resolve_symbol(Path(bars_path), Path(grid_path), grid.symbol, symbol)
    timeframe = infer_timeframe(bars["ts"])
    if grid.timeframe and grid.timeframe != timeframe:
        raise GridError(f"{grid_path}: grid timeframe {grid.timeframe!r} but the bars in {bars_path} are {timeframe} bars")
    extra = {
        SESSION_KEY: (b"regular" if rth else b"as_given"), BARS_KEY: str(bars_path).encode(), BARS_SYMBOL_KEY: own.encode(),
    }
    return write_trace_set(
        bars, grid.strategies, grid.classifiers, Path(out), symbol=sym, timeframe=timeframe,
        chunk_size=chunk_size, costs=costs or CostModel(), extra_metadata=extra,
    )


def write_trace_set(
    bars: pd.DataFrame,
    strategies: Sequence[StrategyConfig],
    classifiers: Sequence[ClassifierConfig],
    out: Path,
    *,
    symbol: str,
    timeframe: str,
    chunk_size: int = 128,
    costs: CostModel | None = None,
    extra_metadata: Mapping[bytes, bytes] | None = None,
    threads: int = WRITE_THREADS,
) -> dict:
    """The research layout (module doc) from validated bars and expanded configurations: what
    ``admf traces`` writes, and what ``bench/grid_throughput.py`` times end to end.

    One evaluation of every strategy, ordered by type (:func:`~admf_assets.core.engine.strategy_rows`,
    indicators computed once and shared with the classifiers), then one trace file per type and
    per classifier written by :class:`~admf_assets.core.traces.TraceFileWriter` on ``threads``
    threads (pyarrow releases the GIL while it encodes; the configuration records are built while
    the compiled kernels run). Meanwhile this thread computes the metrics (``costs`` given: every
    metric of :func:`~admf_assets.core.metrics.compute_metrics`, daily figures over the XNYS
    trading days of ``bars``; ``None``: the headline metrics stay NULL) and writes
    ``strategy_index.parquet`` (one row per strategy, types in first-seen order, grid order
    within a type). Each file is written atomically; a file's rows are those of evaluating its
    strategies alone.

    The new set replaces whatever set ``out`` held: once every new trace file is written and the
    new index is renamed into place, the trace files an earlier write left that this one did not
    write are removed (see :func:`remove_stale_traces`: only
    ``traces/<series>/signals/*.parquet`` and ``traces/<series>/classifiers/*.parquet``, of any
    series; nothing else under ``out`` is touched). A later write of fewer types, other
    classifiers or another series therefore leaves no file of the earlier set behind.

    Args:
        bars: validated bars (``ts`` tz-aware UTC, ``close`` > 0), in time order; ``idx`` is the row.
        strategies, classifiers: expanded configurations (e.g. a :class:`~admf_assets.core.grid.Grid`'s).
        extra_metadata: Parquet key-value metadata added to every trace file (which also gets
            ``admf.bars_fingerprint``, :func:`bars_fingerprint` of ``bars``).

    Returns:
        A summary dict: symbol, timeframe, bars, strategies, files, change_rows, index (path).

    Raises:
        OSError: a file cannot be written; the files written before it stay (each whole), the
            previous ``strategy_index.parquet`` is kept and no stale file is removed. Or a stale
            file cannot be removed after the new index is in place (the new set is complete; the
            leftover file is not named by the index, so ``research_metrics`` ignores it).
        ValueError: from :class:`~admf_assets.core.traces.TraceFileWriter` (bars it cannot encode,
            e.g. NaN timestamps or closes where a row is written).
    """
    from concurrent.futures import ThreadPoolExecutor

    from admf_assets.core.bars import trading_dates
    from admf_assets.core.metrics import compute_metrics

    out = Path(out)
    series_dir = out / "traces" / WorkspaceLayout(out).series_key(symbol, timeframe)
    types = list(dict.fromkeys(c.strategy_type for c in strategies))
    ordered = sorted(strategies, key=lambda c: types.index(c.strategy_type))  # stable: grid order within a type
    # one DatetimeIndex for every writer (each converts it to microseconds, cheaply from an index)
    common = dict(ts=pd.DatetimeIndex(bars["ts"]), close=bars["close"].to_numpy(dtype=np.float64), symbol=symbol, timeframe=timeframe)

    # every file names the bars it was computed on (research_metrics checks it)
    file_metadata = {**(extra_metadata or {}), BARS_FINGERPRINT_KEY: bars_fingerprint(common["ts"], common["close"]).encode()}

    def write(kind, rows, records, path, labels=None):
        writer = TraceFileWriter(kind=kind, rows=rows, records=records, labels=labels, **common)
        return writer.write(path, extra_metadata=file_metadata)

    cache = IndicatorCache(bars)  # indicators computed once, shared by every type and classifier
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = pool.submit(lambda: [config_record(c, symbol, timeframe) for c in ordered])
        rows = strategy_rows(bars, ordered, chunk_size=chunk_size, cache=cache)
        records = pending.result()
        per_type = Counter(c.strategy_type for c in ordered)
        first_series = np.cumsum([0] + [per_type[t] for t in types])
        first_row = np.searchsorted(rows.series, first_series.astype(rows.series.dtype))  # same dtype: no copy of the 6 M-row column
        signal_files = []
        new_files: set[Path] = set()  # every trace file this write produces (the rest are stale)
        # largest files first, so the pool's threads finish together (longest-processing-time order)
        for j in sorted(range(len(types)), key=lambda j: first_row[j] - first_row[j + 1]):
            stype = types[j]
            s0, s1, r0, r1 = first_series[j], first_series[j + 1], first_row[j], first_row[j + 1]
            part = SparseRows(rows.series[r0:r1] - np.int32(s0), rows.idx[r0:r1], rows.val[r0:r1], int(s1 - s0), rows.n_bars)
            new_files.add(series_dir / "signals" / f"{stype}.parquet")
            signal_files.append(pool.submit(write, "signals", part, records[s0:s1], series_dir / "signals" / f"{stype}.parquet"))
        classifier_files = []
        for cfg in classifiers:
            rec = config_record(cfg, symbol, timeframe)
            path = series_dir / "classifiers" / f"{cfg.classifier_type}_{rec['hash']}.parquet"
            new_files.add(path)
            classifier_files.append(pool.submit(
                write, "classifiers", classifier_rows(bars, [cfg], cache=cache), [rec], path, [REGIME_LABELS[cfg.classifier_type]],
            ))
        # the metrics and the index are computed here while the pool's threads encode the files
        metrics = None
        if costs is not None:
            _, day = np.unique(np.asarray(trading_dates(bars["ts"]), dtype="datetime64[D]"), return_inverse=True)
            metrics = compute_metrics(rows, common["close"], day.astype(np.int64), costs).reset_index(drop=True)
        counts = rows.counts() if metrics is None else metrics["signal_changes"].to_numpy(dtype=np.int64)
        index_src = index_source(records, counts, symbol, timeframe, len(bars))
        if metrics is not None:
            index_src = pd.concat([index_src, metrics[list(HEADLINE_METRICS)]], axis=1)
        written: list[int] = []

        def traces_written() -> None:  # the index appears only once every file it points to has
            written.append(sum(f.result() for f in signal_files))
            for f in classifier_files:
                f.result()

        index_path = write_parquet_atomic(
            pa.Table.from_pandas(strategy_index_table(index_src), preserve_index=False), out / "strategy_index.parquet",
            before_replace=traces_written,
        )
        # the new index is in place: the earlier set's files go (not before, so a failed index
        # write leaves the old index with the files it names)
        remove_stale_traces(out, keep=new_files)
        changes = written[0]
    return {
        "symbol": symbol, "timeframe": timeframe, "bars": len(bars), "strategies": len(records),
        "files": len(signal_files) + len(classifier_files), "change_rows": changes, "index": str(index_path),
    }


def remove_stale_traces(out: Path, keep: set[Path] | frozenset[Path]) -> list[Path]:
    """Remove the trace files of an earlier set under ``out`` that are not in ``keep``; return them.

    Only the files :func:`write_trace_set` writes are candidates: regular ``*.parquet`` files
    directly in ``out/traces/<series>/signals/`` or ``out/traces/<series>/classifiers/`` (any
    series folder), except hidden ones (e.g. a writer's ``.<name>.<random>.tmp``) and symlinks.
    Nothing else under ``out`` is touched, and no folder is removed.

    Raises:
        OSError: a stale file cannot be removed (those removed before it stay removed).
    """
    out = Path(out)
    keep_resolved = {Path(k).resolve() for k in keep}
    removed: list[Path] = []
    for kind in ("signals", "classifiers"):
        for path in sorted(out.glob(f"traces/*/{kind}/*.parquet")):
            if path.name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if path.resolve() in keep_resolved:
                continue
            path.unlink()
            removed.append(path)
    return removed


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

    Reads exactly the signal trace files ``strategy_index.parquet`` names (its ``trace_path``
    column, relative to ``traces_dir``), never other files in the folder. Every one of them must
    agree with the first on its session setting (``admf.session``), total bars, symbol and
    timeframe metadata; the bars are loaded with that session setting and must be the bars the
    traces were computed on (:func:`check_same_bars`: symbol, bar count, first and last
    timestamps, bars fingerprint).

    Returns:
        One row per strategy: strategy_id, strategy_hash, strategy_type, parameters (JSON) and the
        metric columns of :data:`admf_assets.core.metrics.METRIC_COLUMNS`.

    Raises:
        ResearchStoreError: when the folder holds no ``strategy_index.parquet`` or it names no
            trace file; when a trace file the index names does not exist (naming it); when a
            trace file's session, total_bars, symbol or timeframe metadata differs from the first
            file's (naming the file and the field); or when the traces were computed on other
            bars (another symbol, bar count, first or last timestamp or bars fingerprint; naming
            the bars file and what differs).
        admf_assets.core.bars.BarValidationError: invalid bars.
    """
    traces_dir = Path(traces_dir)
    index_path = traces_dir / "strategy_index.parquet"
    if not index_path.is_file():
        raise ResearchStoreError(f"{traces_dir}: no strategy_index.parquet and signal traces; run `admf traces` first")
    index = pq.read_table(index_path).to_pandas()
    if "trace_path" not in index.columns:
        raise ResearchStoreError(f"{index_path}: no trace_path column; run `admf traces` again")
    names = list(dict.fromkeys(str(p) for p in index["trace_path"].dropna()))
    if not names:
        raise ResearchStoreError(f"{index_path}: names no signal traces; run `admf traces` first")
    files = [traces_dir / name for name in names]
    for f in files:
        if not f.is_file():
            raise ResearchStoreError(f"{index_path} names {f}, which does not exist; run `admf traces` again")
    metas = [pq.read_schema(f).metadata or {} for f in files]
    meta = metas[0]
    for f, m in zip(files[1:], metas[1:]):
        for field, key in _AGREEING_METADATA:
            if m.get(key) != meta.get(key):
                raise ResearchStoreError(
                    f"{f}: {field} {_meta_text(m.get(key))} differs from {_meta_text(meta.get(key))} in {files[0]} "
                    f"(both named by {index_path}); run `admf traces` again"
                )
    rth = meta.get(SESSION_KEY) == b"regular"
    bars = load_research_bars(Path(bars_path), rth=rth)  # the symbol the file names (column or name)
    check_same_bars(bars, Path(bars_path), traces_dir, meta)
    table = pa.concat_tables([pq.read_table(f) for f in files])
    metrics = trace_metrics(table, bars, costs or CostModel())
    merged = index[["strategy_id"]].merge(metrics, on="strategy_id", how="left")
    missing = merged["strategy_type"].isna()
    if missing.any():  # strategies that never emitted a value (warm-up longer than the data)
        merged.loc[missing, "strategy_type"] = index.loc[missing.to_numpy(), "strategy_type"].to_numpy()
    for col in HEADLINE_METRICS:
        index[col] = merged[col].to_numpy()
    write_parquet_atomic(pa.Table.from_pandas(index, preserve_index=False), index_path)
    return merged


def check_same_bars(bars: pd.DataFrame, bars_path: Path, traces_dir: Path, meta: Mapping[bytes, bytes]) -> None:
    """Refuse ``bars`` (read from ``bars_path``, the traces' session setting applied) unless they
    are the bars the trace files with metadata ``meta`` were computed on: the same symbol (the
    symbol the bars file names must be the traces' ``admf.symbol`` or their bars file's own
    ``admf.bars_symbol``), bar count, first and last timestamps and, when the files carry one,
    :func:`bars_fingerprint` (timestamps and closes).

    Raises:
        ResearchStoreError: naming ``bars_path``, the traces' bars file and what differs.
    """
    def text(key: bytes) -> str:
        return meta.get(key, b"").decode("utf-8", "replace")

    source = text(BARS_KEY) or "?"

    def refuse(what: str) -> None:
        raise ResearchStoreError(
            f"{bars_path} are not the bars the traces in {traces_dir} were computed on ({source}): {what}; "
            "give --bars the file the traces were computed on, or run `admf traces` again"
        )

    traces_symbol, bars_symbol = text(b"admf.symbol"), text(BARS_SYMBOL_KEY)
    accepted = [s for s in dict.fromkeys((traces_symbol, bars_symbol)) if s]
    given = [str(s) for s in pd.unique(bars["symbol"])]
    if accepted and (len(given) != 1 or given[0] not in accepted):
        refuse(f"symbol {', '.join(given) or '(none)'} in the bars file, {' / '.join(accepted)} in the traces")
    total = int(meta.get(b"admf.total_bars", b"-1"))
    if total != len(bars):
        refuse(f"{len(bars)} bars in the bars file, {total} bars in the traces")
    for key, i, name in ((b"admf.first_ts", 0, "first"), (b"admf.last_ts", -1, "last")):
        if meta.get(key) and len(bars) and pd.Timestamp(text(key)) != pd.Timestamp(bars["ts"].iloc[i]):
            refuse(f"{name} bar at {pd.Timestamp(bars['ts'].iloc[i]).isoformat()} in the bars file, at {text(key)} in the traces")
    expected = meta.get(BARS_FINGERPRINT_KEY)
    if expected is not None and bars_fingerprint(bars["ts"], bars["close"]).encode() != expected:
        refuse("the same bar count, first and last timestamps but other timestamps or closes in between (bars fingerprint differs)")


def _meta_text(value: bytes | None) -> str:
    return "(missing)" if value is None else repr(value.decode("utf-8", "replace"))
