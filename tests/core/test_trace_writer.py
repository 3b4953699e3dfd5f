"""``TraceFileWriter`` (the trace-file writer of ``signal_traces`` / ``classifier_states``,
``admf traces`` and ``core.store.write_trace_file``) writes, for every day or the whole series,
exactly the table of ``build_signal_table`` / ``build_classifier_table`` on that range's rows and
the key-value metadata of ``trace_file_metadata``, for signal and classifier traces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.engine import classifier_rows, day_spans, slice_rows, strategy_rows
from admf_assets.core.grid import DEFAULT_CLASSIFIERS, default_grid_path, load_grid
from admf_assets.core.traces import (
    TraceFileWriter,
    build_classifier_table,
    build_signal_table,
    config_record,
    record_json,
    trace_file_metadata,
)
from tests.core.reference import rth_bars


@pytest.fixture(scope="module")
def history():
    bars = rth_bars(4).reset_index(drop=True)
    ts = pd.to_datetime(bars["datetime"], utc=True)
    spans = day_spans(sorted(set(bars["day"])), bars.groupby("day").size().tolist())
    return bars, ts.to_numpy(dtype=object), bars["close"].to_numpy(), spans


def _expected(kind, rows, ts, close, records, labels, start, stop, extra):
    """The table and key-value metadata a file of bars [start, stop) must hold, from the builders."""
    part = slice_rows(rows, start, stop)
    common = dict(
        ts=ts, close=close, symbol="SPY", series_ids=[r["id"] for r in records],
        series_hashes=[r["hash"] for r in records], series_json=[record_json(r) for r in records], bar_offset=start,
    )
    if kind == "signals":
        table = build_signal_table(part, **common)
    else:
        table = build_classifier_table(part, labels_per_series=labels, **common)
    kv = trace_file_metadata(
        kind=kind, symbol="SPY", timeframe="5m", configs=records, total_bars=stop - start, n_series=len(records),
        changes=len(part), first_ts=str(pd.Timestamp(ts[start])), last_ts=str(pd.Timestamp(ts[stop - 1])),
    )
    return table, {**kv, **extra}


def _assert_file(path, table, kv):
    got = pq.read_table(path)
    assert got.schema.remove_metadata().equals(table.schema, check_metadata=False)
    assert got.replace_schema_metadata(None).equals(table.replace_schema_metadata(None))
    assert pq.read_schema(path).metadata == kv


@pytest.mark.parametrize("kind", ["signals", "classifiers"])
def test_writer_files_equal_the_builders(tmp_path, history, kind):
    bars, ts, close, spans = history
    if kind == "signals":
        configs = load_grid(default_grid_path()).strategies[::7]
        rows = strategy_rows(bars, configs)
        labels = None
    else:
        configs = list(DEFAULT_CLASSIFIERS)
        rows = classifier_rows(bars, configs)
        labels = [REGIME_LABELS[c.classifier_type] for c in configs]
    records = [config_record(c, "SPY", "5m") for c in configs]
    writer = TraceFileWriter(kind=kind, rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records, labels=labels)
    total = 0
    for day, start, stop in spans:
        extra = {b"admf.history_start": str(spans[0][0]).encode(), b"admf.test_day": str(day).encode()}
        n = writer.write(tmp_path / f"{day}.parquet", start, stop, extra_metadata=extra)
        table, kv = _expected(kind, rows, ts, close, records, labels, start, stop, extra)
        assert n == table.num_rows
        _assert_file(tmp_path / f"{day}.parquet", table, kv)
        total += n
    assert total == len(rows)
    # the whole series in one file
    writer.write(tmp_path / "all.parquet")
    _assert_file(tmp_path / "all.parquet", *_expected(kind, rows, ts, close, records, labels, 0, len(bars), {}))


def test_writer_rejects_bad_input(history):
    bars, ts, close, _ = history
    configs = load_grid(default_grid_path()).strategies[:3]
    rows = strategy_rows(bars, configs)
    records = [config_record(c, "SPY", "5m") for c in configs]
    with pytest.raises(ValueError, match="kind"):
        TraceFileWriter(kind="prices", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records)
    with pytest.raises(ValueError, match="unique"):
        TraceFileWriter(kind="signals", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=[records[0]] * 3)
    with pytest.raises(ValueError, match="entries"):
        TraceFileWriter(kind="signals", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records[:2])
    with pytest.raises(ValueError, match="labels"):
        TraceFileWriter(kind="classifiers", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records)
    bad = np.asarray(close).copy()
    bad[int(rows.idx[0])] = np.nan
    writer = TraceFileWriter(kind="signals", rows=rows, ts=ts, close=bad, symbol="SPY", timeframe="5m", records=records)
    with pytest.raises(ValueError, match="px would be"):
        writer.write("/nonexistent/never.parquet")


def test_dictionary_written_file_reads_back_as_the_plain_table(tmp_path, history):
    # The writer hands Parquet dictionary-typed string columns and no stored Arrow schema; a
    # reader must get exactly build_signal_table's plain-string table, the kv metadata, and
    # min/max statistics only for idx and ts.
    from admf_assets.core.traces import SIGNAL_TRACE_SCHEMA, build_signal_table, read_parquet_metadata, record_json

    bars, ts, close, _ = history
    configs = load_grid(default_grid_path()).strategies[::5]
    rows = strategy_rows(bars, configs)
    records = [config_record(c, "SPY", "5m") for c in configs]
    path = tmp_path / "t.parquet"
    TraceFileWriter(kind="signals", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records).write(path)
    plain = build_signal_table(
        rows, ts=ts, close=close, symbol="SPY", series_ids=[r["id"] for r in records],
        series_hashes=[r["hash"] for r in records], series_json=[record_json(r) for r in records],
    )
    back = pq.read_table(path)
    assert back.schema.remove_metadata().equals(SIGNAL_TRACE_SCHEMA)
    assert back.replace_schema_metadata(None).equals(plain)
    meta = read_parquet_metadata(path)
    assert meta["signal_changes"] == len(rows) and len(meta["configurations"]) == len(records)
    group = pq.ParquetFile(path).metadata.row_group(0)
    with_stats = {group.column(i).path_in_schema for i in range(group.num_columns) if group.column(i).is_stats_set}
    assert with_stats == {"idx", "ts"}
    # idx is delta-encoded (TRACE_COLUMN_ENCODINGS); DuckDB, the analytics layer, decodes it too
    idx_column = next(group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == "idx")
    assert "DELTA_BINARY_PACKED" in idx_column.encodings
    import duckdb

    got = duckdb.sql("SELECT strat, idx, val FROM read_parquet(?) ORDER BY strat, idx", params=[str(path)]).fetchall()
    want = sorted(zip(plain.column("strat").to_pylist(), plain.column("idx").to_pylist(), plain.column("val").to_pylist()))
    assert got == want


def test_writer_days_in_any_order_equal_slices(tmp_path, history):
    # The writer finds a day's rows from cursors left by the previous write; days written out of
    # order, twice, or after the whole series must still hold exactly the day's slice.
    from admf_assets.core.engine import slice_rows
    from admf_assets.core.traces import table_to_rows

    bars, ts, close, spans = history
    configs = load_grid(default_grid_path()).strategies[::3]
    rows = strategy_rows(bars, configs)
    records = [config_record(c, "SPY", "5m") for c in configs]
    writer = TraceFileWriter(kind="signals", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records)
    order = [spans[2], spans[0], spans[1], spans[1], spans[3], spans[0]]
    for k, (day, start, stop) in enumerate(order):
        if k == 4:
            writer.write(tmp_path / "all.parquet")
        path = tmp_path / f"{k}.parquet"
        n = writer.write(path, start, stop)
        want = slice_rows(rows, start, stop)
        got = table_to_rows(pq.read_table(path), [r["id"] for r in records], len(bars), bar_offset=start)
        assert n == len(want) > 0
        np.testing.assert_array_equal(got.series, want.series)
        np.testing.assert_array_equal(got.idx, want.idx)
        np.testing.assert_array_equal(got.val, want.val)


def test_writer_pages_are_bounded_by_size_not_rows(tmp_path):
    # TRACE_WRITER_OPTIONS: a column whose values repeat (sym, strat, ...) is one data page per
    # row group instead of one per 20,000 rows (pyarrow's default), so the file is smaller and
    # still reads back as the builder's table.
    from admf_assets.core.sparse import SparseRows
    from admf_assets.core.traces import TRACE_COLUMN_ENCODINGS, TRACE_STATISTICS_COLUMNS, write_parquet_atomic

    n_bars, n_series = 40_000, 3
    ts = pd.date_range("2025-01-02 14:30", periods=n_bars, freq="5min", tz="UTC")
    close = 100.0 + np.arange(n_bars) % 50 * 0.01
    idx = np.tile(np.arange(n_bars, dtype=np.int32), n_series)
    series = np.repeat(np.arange(n_series, dtype=np.int32), n_bars)
    val = np.where(idx % 2 == 0, 1, -1).astype(np.int8)
    rows = SparseRows(series, idx, val, n_series, n_bars)
    records = [{"id": f"s{i}", "hash": f"{i:012x}", "type": "t", "parameters": {"p": i}} for i in range(n_series)]
    ours = tmp_path / "ours.parquet"
    TraceFileWriter(kind="signals", rows=rows, ts=ts, close=close, symbol="SPY", timeframe="5m", records=records).write(ours)
    plain = build_signal_table(
        rows, ts=ts, close=close, symbol="SPY", series_ids=[r["id"] for r in records],
        series_hashes=[r["hash"] for r in records], series_json=[record_json(r) for r in records],
    )
    default = write_parquet_atomic(plain, tmp_path / "default.parquet", statistics=TRACE_STATISTICS_COLUMNS, column_encoding=TRACE_COLUMN_ENCODINGS)
    assert pq.read_table(ours).replace_schema_metadata(None).equals(plain)

    def chunk_bytes(path, name):
        md = pq.ParquetFile(path).metadata
        return sum(
            md.row_group(g).column(c).total_compressed_size
            for g in range(md.num_row_groups) for c in range(md.num_columns)
            if md.row_group(g).column(c).path_in_schema == name
        )

    for name in ("sym", "strat", "strat_hash"):  # 120,000 equal-run values: 6 pages by rows, 1 by size
        assert chunk_bytes(ours, name) < chunk_bytes(default, name) / 2, name
