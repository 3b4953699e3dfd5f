"""Sparse trace tables and Parquet files (admf_assets.core.traces)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from admf_assets.core.schemas import make_classifier, make_strategy
from admf_assets.core.sparse import NO_VALUE, SparseRows, decode_dense, encode_sparse
from admf_assets.core.traces import (
    CLASSIFIER_TRACE_SCHEMA,
    SIGNAL_TRACE_SCHEMA,
    build_classifier_table,
    build_signal_table,
    config_record,
    read_parquet_metadata,
    record_json,
    series_columns,
    table_to_label_rows,
    table_to_rows,
    trace_file_metadata,
    write_parquet_atomic,
)

M = NO_VALUE
DENSE = np.array(
    [
        [M, M, 1, 1, 0, 0, -1, -1],
        [1, 1, 1, -1, -1, -1, -1, 1],
        [M, M, M, M, M, M, M, M],  # never warm: no rows
    ],
    dtype=np.int8,
)
TS = pd.date_range("2025-06-04 13:30", periods=8, freq="5min", tz="UTC")
CLOSE = np.array([100.0, 101.0, 102.5, 101.5, 100.25, 99.0, 98.5, 99.75])
IDS = ["SPY_5m_a", "SPY_5m_b", "SPY_5m_c"]
HASHES = ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]
JSONS = ['{"id":"a"}', '{"id":"b"}', '{"id":"c"}']


def _signal_table(**kw):
    rows = encode_sparse(DENSE)
    args = dict(ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS, series_hashes=HASHES, series_json=JSONS)
    args.update(kw)
    return rows, build_signal_table(rows, **args)


def test_schemas_exact():
    names = ["idx", "ts", "sym", "val", "strat", "px", "strat_hash", "metadata"]
    assert SIGNAL_TRACE_SCHEMA.names == names
    assert CLASSIFIER_TRACE_SCHEMA.names == names
    types = [pa.int32(), pa.timestamp("us", tz="UTC"), pa.string(), pa.int8(), pa.string(),
             pa.float64(), pa.string(), pa.string()]
    assert SIGNAL_TRACE_SCHEMA.types == types
    assert CLASSIFIER_TRACE_SCHEMA.field("val").type == pa.string()
    assert SIGNAL_TRACE_SCHEMA.field("metadata").nullable


def test_signal_table_columns():
    _, table = _signal_table()
    assert table.schema.equals(SIGNAL_TRACE_SCHEMA)
    d = table.to_pydict()
    assert d["idx"] == [2, 4, 6, 0, 3, 7]
    assert d["val"] == [1, 0, -1, 1, -1, 1]
    assert d["strat"] == ["SPY_5m_a"] * 3 + ["SPY_5m_b"] * 3
    assert d["sym"] == ["SPY"] * 6
    assert d["px"] == [102.5, 100.25, 98.5, 100.0, 101.5, 99.75]
    assert d["strat_hash"] == ["aaaaaaaaaaaa"] * 3 + ["bbbbbbbbbbbb"] * 3
    assert d["metadata"] == ['{"id":"a"}', None, None, '{"id":"b"}', None, None]
    expected_ts = [TS[i].to_pydatetime() for i in (2, 4, 6, 0, 3, 7)]
    assert d["ts"] == expected_ts
    assert table.column("ts").type == pa.timestamp("us", tz="UTC")


def test_naive_and_other_tz_timestamps_become_utc():
    naive = TS.tz_localize(None).values  # numpy datetime64[ns], taken as UTC
    _, t1 = _signal_table(ts=naive)
    _, t2 = _signal_table(ts=TS.tz_convert("America/New_York"))
    _, t0 = _signal_table()
    assert t1.column("ts").equals(t0.column("ts"))
    assert t2.column("ts").equals(t0.column("ts"))


def test_bar_offset_day_slice():
    rows = encode_sparse(DENSE)
    day = rows.select(rows.idx >= 3)  # a slice starting at bar 3
    table = build_signal_table(day, ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS,
                               series_hashes=HASHES, series_json=JSONS, bar_offset=3)
    d = table.to_pydict()
    assert d["idx"] == [1, 3, 0, 4]  # rows at bars 4, 6 (a) and 3, 7 (b), relative to bar 3
    assert d["px"] == [100.25, 98.5, 101.5, 99.75]  # still the full series' closes
    assert d["ts"][0] == TS[4].to_pydatetime()
    assert d["metadata"] == ['{"id":"a"}', None, '{"id":"b"}', None]  # first row of each in this table
    back = table_to_rows(table, IDS, n_bars=8, bar_offset=3)
    assert np.array_equal(back.idx, day.idx) and np.array_equal(back.series, day.series)
    with pytest.raises(ValueError, match="bar_offset"):
        build_signal_table(rows, ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS,
                           series_hashes=HASHES, series_json=JSONS, bar_offset=1)


def test_px_zero_or_nan_rejected():
    bad = CLOSE.copy()
    bad[2] = 0.0
    with pytest.raises(ValueError, match="px"):
        _signal_table(close=bad)
    bad[2] = np.nan
    with pytest.raises(ValueError, match="px"):
        _signal_table(close=bad)
    ok = CLOSE.copy()
    ok[1] = 0.0  # bar 1 has no row: not an error
    _signal_table(close=ok)


def test_input_checks():
    with pytest.raises(ValueError, match="series_ids"):
        _signal_table(series_ids=IDS[:2])
    with pytest.raises(ValueError, match="n_bars"):
        _signal_table(ts=TS[:7], close=CLOSE[:7])
    rows = SparseRows(np.array([0], np.int32), np.array([1], np.int32), np.array([5], np.int8), 3, 8)
    with pytest.raises(ValueError, match="-1, 0 or"):
        build_signal_table(rows, ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS,
                           series_hashes=HASHES, series_json=JSONS)


def test_table_to_rows_round_trip():
    rows, table = _signal_table()
    back = table_to_rows(table, IDS, n_bars=8)
    assert np.array_equal(back.series, rows.series)
    assert np.array_equal(back.idx, rows.idx)
    assert np.array_equal(back.val, rows.val)
    assert back.val.dtype == np.int8 and back.idx.dtype == np.int32
    assert np.array_equal(decode_dense(back), DENSE)
    # a different series order maps strat ids by name and re-sorts
    reordered = table_to_rows(table, ["SPY_5m_b", "SPY_5m_c", "SPY_5m_a"], n_bars=8)
    assert reordered.series.tolist() == [0, 0, 0, 2, 2, 2]
    assert reordered.idx.tolist() == [0, 3, 7, 2, 4, 6]
    with pytest.raises(ValueError, match="SPY_5m_a"):
        table_to_rows(table, ["SPY_5m_b", "SPY_5m_c"], n_bars=8)


def test_empty_rows():
    empty = SparseRows(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8), 3, 8)
    table = build_signal_table(empty, ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS,
                               series_hashes=HASHES, series_json=JSONS)
    assert table.num_rows == 0 and table.schema.equals(SIGNAL_TRACE_SCHEMA)
    assert len(table_to_rows(table, IDS, 8)) == 0


def test_classifier_table_and_round_trip():
    codes = np.array([[M, 0, 0, 1, 2, 2, 1, 1], [2, 2, 2, 2, 0, 0, 0, 0]], dtype=np.int8)
    rows = encode_sparse(codes)
    labels = [["trending_up", "ranging", "trending_down"],
              ["high_volatility", "normal_volatility", "low_volatility"]]
    table = build_classifier_table(rows, ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS[:2],
                                   series_hashes=HASHES[:2], series_json=JSONS[:2],
                                   labels_per_series=labels)
    assert table.schema.equals(CLASSIFIER_TRACE_SCHEMA)
    d = table.to_pydict()
    assert d["val"] == ["trending_up", "ranging", "trending_down", "ranging", "low_volatility", "high_volatility"]
    assert d["idx"] == [1, 3, 4, 6, 0, 4]
    assert d["metadata"] == ['{"id":"a"}', None, None, None, '{"id":"b"}', None]
    back = table_to_label_rows(table, IDS[:2], labels, n_bars=8)
    assert np.array_equal(decode_dense(back), codes)
    with pytest.raises(ValueError, match="ranging"):
        table_to_label_rows(table, IDS[:2], [["trending_up", "trending_down"], labels[1]], n_bars=8)
    bad = SparseRows(np.array([0], np.int32), np.array([0], np.int32), np.array([3], np.int8), 2, 8)
    with pytest.raises(ValueError, match="regime code 3"):
        build_classifier_table(bad, ts=TS, close=CLOSE, symbol="SPY", series_ids=IDS[:2],
                               series_hashes=HASHES[:2], series_json=JSONS[:2], labels_per_series=labels)


def test_config_records_from_real_configs():
    configs = [make_strategy("bollinger_bands", {"period": 20}, constraints="intraday"),
               make_strategy("momentum", {"sma_period": 10})]
    ids, hashes, jsons = series_columns(configs, "SPY", "5m")
    assert ids == [c.strategy_id("SPY", "5m") for c in configs]
    assert hashes == [c.strategy_hash for c in configs]
    rec = json.loads(jsons[0])
    assert rec == {"id": ids[0], "hash": hashes[0], "type": "bollinger_bands",
                   "parameters": {"period": 20, "std_dev": 2.0}, "constraints": "intraday"}
    assert "constraints" not in json.loads(jsons[1])
    crec = config_record(make_classifier("trend"), "SPY", "5m")
    assert crec["id"].startswith("SPY_5m_trend_") and crec["type"] == "trend"
    assert record_json(crec) == json.dumps(crec, sort_keys=True, separators=(",", ":"))


def test_kv_metadata_round_trip(tmp_path):
    rows, table = _signal_table()
    configs = [{"id": i, "hash": h, "type": "momentum", "parameters": {"period": 14}} for i, h in zip(IDS, HASHES)]
    kv = trace_file_metadata(kind="signals", symbol="SPY", timeframe="5m", configs=configs,
                             total_bars=8, n_series=3, changes=len(rows), first_ts=TS[0], last_ts=TS[-1])
    assert all(k.startswith(b"admf.") for k in kv)
    path = write_parquet_atomic(table, tmp_path / "sub" / "SPY_5m.parquet", kv)
    meta = read_parquet_metadata(path)
    assert meta["kind"] == "signals"
    assert meta["symbol"] == "SPY" and meta["timeframe"] == "5m"
    assert meta["configurations"] == configs
    assert meta["total_bars"] == 8 and meta["n_series"] == 3
    assert meta["signal_changes"] == 6
    assert meta["compression_ratio"] == pytest.approx(6 / 24)
    assert meta["format_version"] == 1
    assert meta["first_ts"] == TS[0] and meta["last_ts"] == TS[-1]
    read = pq.read_table(path)
    assert read.schema.equals(SIGNAL_TRACE_SCHEMA)
    assert read.to_pydict() == table.to_pydict()
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    with pytest.raises(ValueError, match="kind"):
        trace_file_metadata(kind="trades", symbol="SPY", timeframe="5m", configs=[], total_bars=1,
                            n_series=0, changes=0, first_ts=None, last_ts=None)


def test_atomic_write_replaces(tmp_path):
    _, table = _signal_table()
    target = tmp_path / "t.parquet"
    write_parquet_atomic(table, target, {"admf.kind": "signals"})
    write_parquet_atomic(table.slice(0, 2), target, {b"admf.kind": b"signals"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
    assert pq.read_table(target).num_rows == 2  # replaced, not appended


def test_atomic_write_failure_leaves_no_temp(tmp_path):
    _, table = _signal_table()
    target = tmp_path / "t.parquet"
    write_parquet_atomic(table, target)
    with pytest.raises(Exception):
        write_parquet_atomic(table, target, compression="no-such-codec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
    assert pq.read_table(target).num_rows == 6  # old content intact


def test_atomic_write_before_replace_gates_the_rename(tmp_path):
    # before_replace runs once the temp file is complete; if it raises, the old file stays
    _, table = _signal_table()
    target = tmp_path / "t.parquet"
    write_parquet_atomic(table, target)
    seen = []

    def refuse():
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise RuntimeError("a file it depends on failed")

    with pytest.raises(RuntimeError, match="depends on"):
        write_parquet_atomic(table.slice(0, 2), target, before_replace=refuse)
    assert len(seen) == 1 and len(seen[0]) == 2  # the complete temp file next to the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
    assert pq.read_table(target).num_rows == 6
    write_parquet_atomic(table.slice(0, 2), target, before_replace=lambda: seen.append("ok"))
    assert seen[-1] == "ok" and pq.read_table(target).num_rows == 2


def test_row_numbers_beyond_int32_are_refused_not_wrapped():
    # int64 rows are cast to int32 for the file; a bar number of 2**32 + 3 must not become 3.
    from admf_assets.core.sparse import SparseRows
    from admf_assets.core.traces import build_signal_table

    rows = SparseRows(np.array([0], np.int64), np.array([2**32 + 3], np.int64), np.array([1], np.int8), 1, 10)
    with pytest.raises(ValueError, match="idx"):
        build_signal_table(
            rows, ts=pd.date_range("2025-01-02 14:30", periods=10, freq="5min", tz="UTC"), close=np.full(10, 100.0),
            symbol="SPY", series_ids=["a"], series_hashes=["h"], series_json=["{}"],
        )
