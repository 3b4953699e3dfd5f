"""Reading and writing the Parquet system of record laid out by :mod:`admf_assets.core.layout`.

Writes are atomic (temp file + rename, :func:`admf_assets.core.traces.write_parquet_atomic`), and a
partition is one file, so re-materializing a partition replaces it and never duplicates rows.
Reads rebuild a whole-history view of one series: the day files concatenated in date order, with
each day's bar span, so that day-relative trace ``idx`` values map back onto the history.

Partitions moved to the archive (:mod:`admf_assets.core.archive`) stay readable: every reader
here takes a day's rows and Parquet key-value metadata from its hot file when there is one, else
from the archive's month file (the layout's :attr:`~admf_assets.core.layout.WorkspaceLayout.archive_url`),
so results are the same before and after archiving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from admf_assets.core.archive import ArchiveLocation, layout_archive
from admf_assets.core.config import StrategyConfig
from admf_assets.core.engine import concat_rows, day_codes, day_spans
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.sparse import SparseRows
from admf_assets.core.traces import TraceFileWriter, table_to_label_rows, table_to_rows, write_parquet_atomic

BAR_FILE_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]


class StoreError(RuntimeError):
    """The stored partitions are inconsistent (missing days, unknown strategies); the message
    names the series, the days and the folder."""


@dataclass(frozen=True)
class PartitionSource:
    """Where one (day, series) partition is read from: a hot file, or an archive month file.

    An archive or restore run may move the partition between :func:`partition_sources` listing it
    and :meth:`read`: a hot file that is gone by then is read from the archive (the archive run
    writes and verifies the month file before it deletes the hot file), and an archived partition
    that left its month file is read from its restored hot file.
    """

    kind: str
    series: str
    day: dt.date
    path: Path | None = None
    archive: ArchiveLocation | None = None
    month_file: str | None = None
    layout: WorkspaceLayout | None = None

    @property
    def label(self) -> str:
        """The file named in error messages."""
        if self.path is not None:
            return str(self.path)
        assert self.archive is not None and self.month_file is not None
        return f"{self.archive.display(self.month_file)} (archived partition {self.day.isoformat()})"

    def _from_archive(self, missing: Exception, columns: Sequence[str] | None = None) -> tuple[pa.Table, dict[bytes, bytes]]:
        archive = self.archive or (layout_archive(self.layout) if self.layout is not None else None)
        if archive is None:
            raise missing
        try:
            return _select(archive.read_partition(self.kind, self.series, self.day, cached=False), columns)
        except (KeyError, FileNotFoundError):
            raise StoreError(f"{self.label}: partition {self.day.isoformat()} of {self.series} vanished from hot storage "
                             f"and is not in the archive {archive.url}") from missing

    def _from_hot(self, missing: Exception, columns: Sequence[str] | None = None) -> tuple[pa.Table, dict[bytes, bytes]]:
        if self.layout is None:
            raise missing
        symbol, _, timeframe = self.series.rpartition("_")
        path = self.layout.kind_file(self.kind, symbol, timeframe, self.day)
        try:
            table = pq.read_table(path, columns=None if columns is None else list(columns))
        except FileNotFoundError:
            raise StoreError(f"{self.label}: partition {self.day.isoformat()} of {self.series} left the archive "
                             f"and has no hot file {path}") from missing
        return table, dict(table.schema.metadata or {})

    def read(self, columns: Sequence[str] | None = None) -> tuple[pa.Table, dict[bytes, bytes]]:
        """The partition's rows (all columns, or only ``columns``) and its Parquet key-value metadata.

        Raises:
            StoreError: the partition moved away from where it was listed and is found neither hot
                nor archived.
        """
        if self.path is not None:
            try:
                table = pq.read_table(self.path, columns=None if columns is None else list(columns))
            except FileNotFoundError as err:  # archived since it was listed
                return self._from_archive(err, columns)
            return table, dict(table.schema.metadata or {})
        assert self.archive is not None
        try:
            return _select(self.archive.read_partition(self.kind, self.series, self.day), columns)
        except (KeyError, FileNotFoundError) as err:  # restored since it was listed
            return self._from_hot(err, columns)

    def metadata(self) -> dict[bytes, bytes]:
        """Only the key-value metadata (the footer, for a hot file).

        Raises:
            StoreError: as :meth:`read`.
        """
        if self.path is not None:
            try:
                return dict(pq.read_schema(self.path).metadata or {})
            except FileNotFoundError as err:
                return self._from_archive(err)[1]
        return self.read()[1]


def _select(read: tuple[pa.Table, dict[bytes, bytes]], columns: Sequence[str] | None) -> tuple[pa.Table, dict[bytes, bytes]]:
    table, meta = read
    return (table if columns is None else table.select(list(columns))), meta


def partition_sources(layout: WorkspaceLayout, kind: str, symbol: str, timeframe: str) -> dict[dt.date, PartitionSource]:
    """``{day: source}`` of every stored partition of a series, hot and archived, sorted by day.

    A day present in both (a restore or archive run interrupted half-way) is read from hot storage.
    Hot files are listed before and after the archive, so a day that an archive run (month file
    written before the hot file is deleted) or a restore (hot file written before the month file
    is rewritten) moves while we list is still found; see :class:`PartitionSource` for a move
    between listing and reading.

    Raises:
        ValueError: for an unknown kind or a symbol/timeframe outside ``[A-Za-z0-9.-]``.
    """
    series = layout.series_key(symbol, timeframe)
    folder = layout.kind_dir(kind, symbol, timeframe)
    hot = layout.dated_files(folder)
    out: dict[dt.date, PartitionSource] = {}
    archive = layout_archive(layout)
    if archive is not None:
        for day, month_file in archive.archived_days(kind, series).items():
            out[day] = PartitionSource(kind, series, day, archive=archive, month_file=month_file, layout=layout)
        hot = {**hot, **layout.dated_files(folder)}
    for day, path in hot.items():
        out[day] = PartitionSource(kind, series, day, path=path, layout=layout)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class BarHistory:
    """The stored bars of one series, day files concatenated in date order.

    Attributes:
        symbol, timeframe: the series.
        bars: DataFrame (T rows) with ``ts`` (``datetime64[us, UTC]``: the day files store UTC
            microseconds and the reads, cached or not, keep that unit) and float64 ``open, high,
            low, close, volume``, index 0..T-1.
        spans: ``[(day, start, stop)]``: bars ``start:stop`` belong to trading day ``day``.
    """

    symbol: str
    timeframe: str
    bars: pd.DataFrame
    spans: list[tuple[dt.date, int, int]]

    @property
    def days(self) -> list[dt.date]:
        """Trading days of the history, in order."""
        return [d for d, _, _ in self.spans]

    @property
    def day_code(self) -> np.ndarray:
        """int64 (T,) day ordinal of each bar (see :func:`admf_assets.core.engine.day_codes`)."""
        return day_codes(self.spans, len(self.bars))

    def fingerprints(self) -> dict[dt.date, str]:
        """``{day: fingerprint}``: a cumulative sha256 (first 16 hex characters) over the
        timestamps and OHLC of every bar from the start of the history through that day.

        A trace file stores the fingerprint of the bars it was computed from; comparing it with
        the stored bars detects a history that changed underneath (an earlier day re-materialized
        with other bars), since indicator state carries across days.
        """
        digest = hashlib.sha256()
        out = {}
        ts = pd.DatetimeIndex(self.bars["ts"]).as_unit("ns").asi8
        ohlc = np.ascontiguousarray(self.bars[["open", "high", "low", "close"]].to_numpy(dtype=np.float64))
        for day, start, stop in self.spans:
            digest.update(ts[start:stop].tobytes())
            digest.update(ohlc[start:stop].tobytes())
            out[day] = digest.hexdigest()[:16]
        return out

    def span(self, day: dt.date) -> tuple[int, int]:
        """``(start, stop)`` bar range of ``day``.

        Raises:
            StoreError: when the history holds no bars for ``day``.
        """
        for d, start, stop in self.spans:
            if d == day:
                return start, stop
        raise StoreError(f"{self.symbol}_{self.timeframe}: no stored bars for {day.isoformat()}")


WRITE_THREADS = 3
"""Threads writing the trace day files of one symbol (pyarrow releases the GIL while it encodes
and writes; on 2 cores a third thread keeps one busy while another waits on fsync): a year of
signal day files for 5,000 strategies in 1.2 s instead of 2.3 s. Bar day files gain nothing
(their pandas-to-Arrow conversion holds the GIL) and are written in order."""


def write_bars_day(layout: WorkspaceLayout, symbol: str, timeframe: str, day: dt.date, bars: pd.DataFrame) -> Path:
    """Write one validated (day, symbol) bar partition atomically; returns the file path.

    ``bars`` must hold ``BAR_FILE_COLUMNS``; ``ts`` is stored as UTC microseconds.

    Raises:
        KeyError: when a column of ``BAR_FILE_COLUMNS`` is missing.
        ValueError: for a symbol or timeframe outside ``[A-Za-z0-9.-]`` (see the layout).
    """
    table = pa.Table.from_pandas(bars[BAR_FILE_COLUMNS].reset_index(drop=True), preserve_index=False)
    table = table.cast(
        pa.schema(
            [
                ("ts", pa.timestamp("us", tz="UTC")),
                ("open", pa.float64()),
                ("high", pa.float64()),
                ("low", pa.float64()),
                ("close", pa.float64()),
                ("volume", pa.float64()),
            ]
        )
    )
    meta = {b"admf.kind": b"bars", b"admf.symbol": symbol.encode(), b"admf.timeframe": timeframe.encode()}
    return write_parquet_atomic(table, layout.bars_file(symbol, timeframe, day), kv_metadata=meta)


def read_bar_history(
    layout: WorkspaceLayout,
    symbol: str,
    timeframe: str,
    *,
    through: dt.date | None = None,
    days: Iterable[dt.date] | None = None,
    use_cache: bool = True,
) -> BarHistory:
    """Concatenate the stored day files of a series (all of them, or up to ``through``, or ``days``),
    hot or archived (see :func:`partition_sources`).

    With ``use_cache`` (and unless ``ADMF_HISTORY_CACHE=0``) unchanged days come from the bars
    cache of :mod:`admf_assets.core.history_cache` (``<root>/cache/history/bars/``) and only new or
    changed day files are read; the frame is the same as reading every day file.

    Raises:
        StoreError: when no bar file matches, naming the folder.
    """
    files = partition_sources(layout, "bars", symbol, timeframe)
    if through is not None:
        files = {d: p for d, p in files.items() if d <= through}
    if days is not None:
        wanted = set(days)
        files = {d: p for d, p in files.items() if d in wanted}
    if not files:
        raise StoreError(
            f"{symbol}_{timeframe}: no stored bar partitions in {layout.bars_dir(symbol, timeframe)}"
            + (f" up to {through.isoformat()}" if through else "")
            + "; materialize market_bars first"
        )
    tables = None
    if use_cache:
        from admf_assets.core import history_cache

        if history_cache.cache_enabled():
            tables = history_cache.cached_bar_tables(layout, layout.series_key(symbol, timeframe), files)
    if tables is not None:
        bars = pa.concat_tables(tables).to_pandas()
        spans = day_spans(list(files), [t.num_rows for t in tables])
        return BarHistory(symbol, timeframe, bars, spans)
    frames = [src.read()[0].to_pandas() for src in files.values()]
    bars = pd.concat(frames, ignore_index=True)
    spans = day_spans(list(files), [len(f) for f in frames])
    return BarHistory(symbol, timeframe, bars, spans)


HISTORY_START_KEY = b"admf.history_start"
"""Parquet metadata key: first trading day of the bar history a trace file was computed from."""
HISTORY_FINGERPRINT_KEY = b"admf.history_fingerprint"
"""Parquet metadata key: :meth:`BarHistory.fingerprints` of the bars a trace file was computed from."""


def history_metadata(history: BarHistory, fingerprints: dict[dt.date, str], day: dt.date) -> dict[bytes, bytes]:
    """The Parquet key-value metadata that ties a day's trace file to the bars it came from
    (``fingerprints`` = ``history.fingerprints()``, computed once per history)."""
    return {
        HISTORY_START_KEY: history.days[0].isoformat().encode(),
        HISTORY_FINGERPRINT_KEY: fingerprints[day].encode(),
    }


def check_trace_history(
    label: str, configs: bytes | None, history_start_meta: str | None, fingerprint_meta: str | None, history_start: dt.date, fingerprint: str
) -> None:
    """The history checks of one trace day file, from its key-value metadata.

    Args:
        label: the file named in errors.
        configs: its ``admf.configurations`` value (``None`` when absent).
        history_start_meta, fingerprint_meta: its ``admf.history_start`` / ``admf.history_fingerprint``
            values (``None`` when absent: files written before they existed are not checked).
        history_start: first day of the stored bar history; fingerprint: the stored bars' fingerprint
            of the file's day (:meth:`BarHistory.fingerprints`).

    Raises:
        StoreError: not an admf trace file, or computed from another bar history (names the file).
    """
    if configs is None:
        raise StoreError(f"{label}: not an admf trace file (no admf.configurations metadata)")
    if history_start_meta is not None and history_start_meta != history_start.isoformat():
        raise StoreError(
            f"{label}: computed from a bar history starting {history_start_meta}, but the stored bars now start "
            f"{history_start.isoformat()}; re-materialize the traces of every day so they share one history"
        )
    if fingerprint_meta is not None and fingerprint_meta != fingerprint:
        raise StoreError(
            f"{label}: computed from other bars than those stored now for this day or an earlier one "
            "(market_bars was re-materialized with different data); re-materialize the traces from that day on"
        )


def configs_differ_error(label: str, history_start: dt.date) -> StoreError:
    """The error for a trace day file whose configurations differ from the first day's."""
    return StoreError(
        f"{label}: its configurations differ from those of {history_start.isoformat()}; "
        "the grid changed between partitions: re-materialize the traces of every day"
    )


def _file_configs(
    path: str, raw: dict[bytes, bytes], history_start: dt.date, fingerprint: str, parsed: dict[bytes, list[dict]] | None = None
) -> list[dict]:
    """The configuration records of a trace file after its history checks (``parsed`` caches the
    JSON by its bytes: every day file of a series normally carries the same configurations)."""
    configs = raw.get(b"admf.configurations")
    start, stored = raw.get(HISTORY_START_KEY), raw.get(HISTORY_FINGERPRINT_KEY)
    check_trace_history(
        path, configs, None if start is None else start.decode(), None if stored is None else stored.decode(), history_start, fingerprint
    )
    assert configs is not None
    if parsed is None:
        return json.loads(configs)
    if configs not in parsed:
        parsed[configs] = json.loads(configs)
    return parsed[configs]


TRACE_ROW_COLUMNS = ("idx", "strat", "val")
"""The trace columns :func:`read_trace_history` reads (the rest, ``ts, sym, px, strat_hash,
metadata``, documents the file but is not needed to rebuild the rows)."""


@dataclass(frozen=True)
class TraceHistory:
    """Whole-history sparse rows of one series' stored traces.

    Attributes:
        configs: configuration records (see :func:`admf_assets.core.traces.config_record`), series order of ``rows``.
        rows: :class:`SparseRows` over the bars of the matching :class:`BarHistory`.
        labels: for classifier traces, the regime labels of each series (else empty).
    """

    configs: list[dict]
    rows: SparseRows
    labels: list[tuple[str, ...]]

    @property
    def series_ids(self) -> list[str]:
        """Strategy (or classifier) ids in series order."""
        return [c["id"] for c in self.configs]

    def subset(self, ids) -> "TraceHistory":
        """The traces of the series whose id is in ``ids`` only, in their stored order, renumbered
        0..k-1 (ids not stored are ignored): e.g. the few strategies a correlation needs, so
        per-strategy computations over the rows (daily returns, metrics) skip the others. Each
        kept series' rows are unchanged, so its results are bit-identical to the whole set's.
        Relies on the rows being sorted by series (the :class:`SparseRows` contract): one slice
        per kept series."""
        wanted = set(ids)
        keep = np.array([i for i, c in enumerate(self.configs) if c["id"] in wanted], dtype=np.int64)
        series = self.rows.series
        starts = np.searchsorted(series, keep.astype(series.dtype), side="left")
        stops = np.searchsorted(series, keep.astype(series.dtype), side="right")
        counts = stops - starts
        rows = SparseRows(
            np.repeat(np.arange(len(keep), dtype=np.int32), counts),
            np.concatenate([self.rows.idx[a:b] for a, b in zip(starts, stops)] or [np.empty(0, dtype=self.rows.idx.dtype)]),
            np.concatenate([self.rows.val[a:b] for a, b in zip(starts, stops)] or [np.empty(0, dtype=self.rows.val.dtype)]),
            len(keep),
            self.rows.n_bars,
        )
        return TraceHistory(
            [self.configs[i] for i in keep], rows, [self.labels[i] for i in keep] if self.labels else []
        )


def read_trace_history(layout: WorkspaceLayout, history: BarHistory, kind: str = "signals", *, use_cache: bool = True) -> TraceHistory:
    """Read the ``signals`` or ``classifiers`` day files matching ``history``'s days (hot or
    archived, see :func:`partition_sources`; the archive keeps each file's key-value metadata, so
    the history checks below apply alike).

    Every bar day must have its trace file and every file must list the same configurations, so
    the rows rebuilt here equal a whole-history computation.

    With ``use_cache`` (and unless ``ADMF_HISTORY_CACHE=0``) the rows go through the persistent
    whole-history cache of :mod:`admf_assets.core.history_cache` (``<root>/cache/history/``): only
    day files that are new or changed since the cache was written are read. The result and the
    errors are the same as reading every day file.

    Raises:
        StoreError: naming missing days or configurations that differ between days, or naming a
            day file whose rows do not fit its configurations or its day (unknown strategy id,
            value outside -1/0/1, unknown regime label, ``idx`` outside the day's bars).
    """
    folder = (layout.signals_dir if kind == "signals" else layout.classifiers_dir)(history.symbol, history.timeframe)
    files = partition_sources(layout, kind, history.symbol, history.timeframe)
    missing = [d.isoformat() for d in history.days if d not in files]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise StoreError(
            f"{history.symbol}_{history.timeframe}: {kind} traces missing for {len(missing)} day(s) with stored bars "
            f"({shown}) in {folder}; materialize {'signal_traces' if kind == 'signals' else 'classifier_states'} for them"
        )
    if use_cache:
        from admf_assets.core import history_cache

        if history_cache.cache_enabled():
            return history_cache.cached_trace_history(layout, history, kind, files)
    return read_trace_files(history, kind, files)


def day_table_rows(kind: str, table, ids: list[str], labels: list, n_bars: int, start: int, label) -> SparseRows:
    """The change rows of one day file's ``table`` as whole-history rows (``idx`` + ``start``).

    Args:
        kind: ``"signals"`` (values -1/0/+1) or ``"classifiers"`` (regime labels ``labels``).
        ids: the series ids in history order; n_bars: bars of the whole history.
        label: the day file (path or archive label) named in errors.

    Raises:
        StoreError: rows that do not match the file's configurations or day (unknown strategy id,
            a value outside -1/0/+1, an unknown label, ``idx`` outside the day), naming ``label``.
    """
    try:
        if kind == "signals":
            return table_to_rows(table, ids, n_bars, bar_offset=start)
        return table_to_label_rows(table, ids, labels, n_bars, bar_offset=start)
    except ValueError as e:
        raise StoreError(f"{label}: {e}") from e


def read_trace_files(history: BarHistory, kind: str, files: dict[dt.date, PartitionSource]) -> TraceHistory:
    """:func:`read_trace_history` from the day files ``files`` (``{day: source}``, every day of
    ``history`` present), without the cache.

    Raises:
        StoreError: as :func:`read_trace_history`.
    """
    configs: list[dict] | None = None
    labels: list[tuple[str, ...]] = []
    parts, n_bars = [], len(history.bars)
    fingerprints = history.fingerprints()
    parsed: dict[bytes, list[dict]] = {}
    for day, start, _stop in history.spans:
        source = files[day]
        table, raw = source.read(TRACE_ROW_COLUMNS)
        path = source.label
        file_configs = _file_configs(path, raw, history.days[0], fingerprints[day], parsed)
        if configs is None:
            configs = file_configs
            ids = [c["id"] for c in configs]
            if kind == "classifiers":
                from admf_assets.core.classifiers import REGIME_LABELS

                labels = [REGIME_LABELS[c["type"]] for c in configs]
        elif [c["id"] for c in file_configs] != ids:
            raise configs_differ_error(path, history.days[0])
        parts.append(day_table_rows(kind, table, ids, labels, n_bars, start, path))
    assert configs is not None
    merged = _merge_sorted(parts, len(configs), n_bars)
    return TraceHistory(configs, merged, labels if kind == "classifiers" else [])


def _merge_sorted(parts: Sequence[SparseRows], n_series: int, n_bars: int) -> SparseRows:
    """Merge day blocks (each sorted by series, idx) into one block sorted by (series, idx)."""
    rows = concat_rows(parts, n_series, n_bars, [0] * len(parts))
    order = np.lexsort((rows.idx, rows.series))
    return SparseRows(rows.series[order], rows.idx[order], rows.val[order], n_series, n_bars)


def strategies_from_records(records: Sequence[dict]) -> list[StrategyConfig]:
    """Rebuild :class:`StrategyConfig` objects from embedded configuration records."""
    return [StrategyConfig(r["type"], dict(r["parameters"]), r.get("constraints")) for r in records]


def series_with_traces(layout: WorkspaceLayout, timeframe: str | None = None) -> list[tuple[str, str]]:
    """``[(symbol, timeframe)]`` of every series with stored signal traces, hot or archived
    (optionally one timeframe), sorted."""
    found = set(layout.series_on_disk("signals"))
    archive = layout_archive(layout)
    if archive is not None:
        for name in archive.series("signals"):
            symbol, _, tf = name.rpartition("_")
            if symbol and tf:
                found.add((symbol, tf))
    return sorted((s, tf) for s, tf in found if timeframe is None or tf == timeframe)


SERIES_CACHE_SIZE = 4
"""How many series :func:`load_series` keeps in memory per process (most recently used)."""

_series_cache: "OrderedDict[tuple, tuple[tuple, BarHistory, TraceHistory]]" = OrderedDict()


def _hot_stamp(sources: Iterable[PartitionSource]) -> tuple | None:
    """``(path, inode, mtime_ns, size)`` of every source (an atomic rewrite changes the inode),
    or ``None`` when one is archived or gone."""
    stamp = []
    for source in sources:
        if source.path is None:
            return None
        try:
            st = os.stat(source.path)
        except FileNotFoundError:
            return None
        stamp.append((str(source.path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def load_series(layout: WorkspaceLayout, symbol: str, timeframe: str) -> tuple[BarHistory, TraceHistory]:
    """Bars and signal traces of one series over the days that have traces.

    The bar history runs from the first stored bar day to the last day with a signal trace file;
    every day in between must have its trace file (see :func:`read_trace_history`).

    The analytics assets of one run each load every series, so the result is cached per process
    (:data:`SERIES_CACHE_SIZE` series) while every bar and trace file of the series is hot and
    unchanged (same paths, inodes, modification times and sizes); any change, or an archived day, reads
    the series again, through the on-disk whole-history cache (:mod:`admf_assets.core.history_cache`,
    shared by every process: only new or changed day files are read). The returned ``bars`` frame
    is a copy; the :class:`TraceHistory` is shared between callers and must not be modified in place.

    Raises:
        StoreError: when the series has no trace files or days are missing.
    """
    trace_days = partition_sources(layout, "signals", symbol, timeframe)
    if not trace_days:
        raise StoreError(f"{symbol}_{timeframe}: no signal traces in {layout.signals_dir(symbol, timeframe)}")
    last = max(trace_days)
    bar_days = {d: s for d, s in partition_sources(layout, "bars", symbol, timeframe).items() if d <= last}
    stamp = _hot_stamp([*bar_days.values(), *trace_days.values()])
    key = (str(Path(layout.root).resolve()), symbol, timeframe)
    cached = _series_cache.get(key)
    if stamp is not None and cached is not None and cached[0] == stamp:
        _series_cache.move_to_end(key)
        history, traces = cached[1], cached[2]
        return BarHistory(history.symbol, history.timeframe, history.bars.copy(), list(history.spans)), traces
    history = read_bar_history(layout, symbol, timeframe, through=last)
    traces = read_trace_history(layout, history, "signals")
    if stamp is not None:
        _series_cache[key] = (stamp, history, traces)
        _series_cache.move_to_end(key)
        while len(_series_cache) > SERIES_CACHE_SIZE:
            _series_cache.popitem(last=False)
    else:
        _series_cache.pop(key, None)
    return BarHistory(history.symbol, history.timeframe, history.bars.copy(), list(history.spans)), traces


def write_trace_file(
    path: Path,
    rows: SparseRows,
    *,
    kind: str,
    ts: np.ndarray,
    close: np.ndarray,
    symbol: str,
    timeframe: str,
    records: Sequence[dict],
    start: int = 0,
    stop: int | None = None,
    labels: Sequence[Sequence[str]] | None = None,
    extra_metadata: dict[bytes, bytes] | None = None,
) -> int:
    """Write the rows of bars ``start:stop`` of a trace as one self-documenting Parquet file
    (one :class:`~admf_assets.core.traces.TraceFileWriter` file; to write several files of the
    same trace, keep one writer, which prepares the per-series strings once).

    Args:
        path: target file (replaced atomically).
        rows: change rows over the whole bar series ``ts``/``close`` (T bars).
        kind: ``"signals"`` (int8 values) or ``"classifiers"`` (regime labels, ``labels`` required).
        records: configuration records of the series (:func:`admf_assets.core.traces.config_record`).
        start, stop: the bar range written; ``idx`` in the file is relative to ``start``.
        extra_metadata: more Parquet key-value metadata (e.g. :data:`HISTORY_START_KEY`).

    Returns:
        The number of change rows written.
    """
    writer = TraceFileWriter(
        kind=kind, rows=rows, ts=ts, close=close, symbol=symbol, timeframe=timeframe, records=records, labels=labels
    )
    return writer.write(path, start, stop, extra_metadata=extra_metadata)
