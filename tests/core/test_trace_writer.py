"""``TraceFileWriter`` (the per-symbol day-file writer of ``signal_traces`` / ``classifier_states``)
writes exactly the files of ``core.store.write_trace_file``: same Arrow table (schema, rows,
values) and the same Parquet key-value metadata, for signal and classifier traces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.engine import classifier_rows, day_spans, strategy_rows
from admf_assets.core.grid import DEFAULT_CLASSIFIERS, default_grid_path, load_grid
from admf_assets.core.store import write_trace_file
from admf_assets.core.traces import TraceFileWriter, config_record
from tests.core.reference import rth_bars


@pytest.fixture(scope="module")
def history():
    bars = rth_bars(4).reset_index(drop=True)
    ts = pd.to_datetime(bars["datetime"], utc=True)
    spans = day_spans(sorted(set(bars["day"])), bars.groupby("day").size().tolist())
    return bars, ts.to_numpy(dtype=object), bars["close"].to_numpy(), spans


def _assert_same_file(a, b):
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema.equals(tb.schema, check_metadata=True)
    assert ta.equals(tb)
    assert pq.read_schema(a).metadata == pq.read_schema(b).metadata
    return ta


@pytest.mark.parametrize("kind", ["signals", "classifiers"])
def test_writer_files_equal_write_trace_file(tmp_path, history, kind):
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
        n_new = writer.write(tmp_path / f"new_{day}.parquet", start, stop, extra_metadata=extra)
        n_old = write_trace_file(
            tmp_path / f"old_{day}.parquet", rows, kind=kind, ts=ts, close=close, symbol="SPY", timeframe="5m",
            records=records, start=start, stop=stop, labels=labels, extra_metadata=extra,
        )
        assert n_new == n_old
        table = _assert_same_file(tmp_path / f"new_{day}.parquet", tmp_path / f"old_{day}.parquet")
        assert table.num_rows == n_new
        total += n_new
    assert total == len(rows)
    # the whole series in one file
    writer.write(tmp_path / "new_all.parquet")
    write_trace_file(tmp_path / "old_all.parquet", rows, kind=kind, ts=ts, close=close, symbol="SPY", timeframe="5m",
                     records=records, labels=labels)
    _assert_same_file(tmp_path / "new_all.parquet", tmp_path / "old_all.parquet")


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
