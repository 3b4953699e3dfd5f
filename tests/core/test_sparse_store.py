"""Sparse encoding on real signals, chunked grid evaluation, and the Parquet store's guards."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from admf_assets.core.config import StrategyConfig
from admf_assets.core.engine import day_spans, slice_rows, strategy_rows
from admf_assets.core.grid import default_grid_path, load_grid
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.sparse import NO_VALUE, SparseRows, decode_dense, encode_sparse
from admf_assets.core.store import HISTORY_START_KEY, StoreError, load_series, read_bar_history, write_bars_day, write_trace_file
from admf_assets.core.strategies import evaluate_strategies
from admf_assets.core.traces import config_record
from tests.core.reference import rth_bars, stored_series


def test_encode_hand_example():
    v = np.array([[-128, -128, 1, 1, 0, 0, -1], [1, 1, 1, 1, 1, 1, 1], [-128] * 7], dtype=np.int8)
    rows = encode_sparse(v)
    assert rows.series.tolist() == [0, 0, 0, 1]
    assert rows.idx.tolist() == [2, 4, 6, 0]
    assert rows.val.tolist() == [1, 0, -1, 1]
    assert rows.counts().tolist() == [3, 1, 0]
    assert (decode_dense(rows) == v).all()


@pytest.fixture(scope="module")
def real():
    bars = rth_bars(5)
    configs = load_grid(default_grid_path()).strategies
    return bars, configs, evaluate_strategies(bars, configs)


def test_round_trip_equals_dense_signal_on_real_bars(real):
    _, _, dense = real
    rows = encode_sparse(dense)
    assert (decode_dense(rows) == dense).all()
    # sparse: one row on the first value and on each change only
    changes = (dense[:, 1:] != dense[:, :-1]) & (dense[:, :-1] != NO_VALUE)
    first = (dense != NO_VALUE).any(axis=1)
    assert len(rows) == int(changes.sum() + first.sum())
    assert len(rows) < dense.size / 5


def test_chunked_engine_equals_one_dense_block(real):
    bars, configs, dense = real
    for chunk in (1, 97, 5000):
        rows = strategy_rows(bars, configs, chunk_size=chunk)
        assert (decode_dense(rows) == dense).all(), chunk


def test_day_slices_partition_the_whole_trace(real):
    bars, configs, dense = real
    rows = encode_sparse(dense)
    spans = day_spans(sorted(set(bars["day"])), bars.groupby("day").size().tolist())
    parts = [slice_rows(rows, start, stop) for _, start, stop in spans]
    assert sum(len(p) for p in parts) == len(rows)
    assert all(((p.idx >= s) & (p.idx < e)).all() for p, (_, s, e) in zip(parts, spans))


def test_decode_rejects_unsorted_rows():
    rows = SparseRows(np.array([0, 0], np.int32), np.array([3, 1], np.int32), np.array([1, -1], np.int8), 1, 5)
    with pytest.raises(ValueError, match="sorted"):
        decode_dense(rows)


def _write_day(layout, bars, configs, day, history_start):
    sub = bars[bars["day"] == day].reset_index(drop=True)
    bars_frame = sub.assign(ts=pd.to_datetime(sub["datetime"], utc=True))
    write_bars_day(layout, "SPY", "5m", day, bars_frame)
    write_trace_file(
        layout.signals_file("SPY", "5m", day), strategy_rows(sub, configs), kind="signals",
        ts=bars_frame["ts"].to_numpy(), close=sub["close"].to_numpy(), symbol="SPY", timeframe="5m",
        records=[config_record(c, "SPY", "5m") for c in configs],
        extra_metadata={HISTORY_START_KEY: history_start.isoformat().encode()},
    )


def test_store_refuses_missing_days_and_mixed_histories(tmp_path):
    bars = rth_bars(3)
    days = sorted(set(bars["day"]))
    configs = [StrategyConfig("sma_crossover", {"fast_period": 3, "slow_period": 8})]
    layout = WorkspaceLayout(tmp_path)
    _write_day(layout, bars, configs, days[0], days[0])
    _write_day(layout, bars, configs, days[2], days[0])
    sub = bars[bars["day"] == days[1]].reset_index(drop=True)
    write_bars_day(layout, "SPY", "5m", days[1], sub.assign(ts=pd.to_datetime(sub["datetime"], utc=True)))
    with pytest.raises(StoreError, match=f"missing for 1 day.*{days[1].isoformat()}"):
        load_series(layout, "SPY", "5m")
    # a day computed from a later history start than the stored bars is refused
    _write_day(layout, bars, configs, days[1], days[1])
    with pytest.raises(StoreError, match="re-materialize"):
        load_series(layout, "SPY", "5m")
    history = read_bar_history(layout, "SPY", "5m")
    assert history.days == days and [s[2] - s[1] for s in history.spans] == bars.groupby("day").size().tolist()
    with pytest.raises(StoreError, match="no stored bar partitions"):
        read_bar_history(layout, "QQQ", "5m")


def test_store_detects_earlier_bars_that_changed_after_the_traces(tmp_path):
    """Indicator state crosses days: traces computed from other bars of an earlier day are refused."""
    layout, history, rows, bars = stored_series(tmp_path)
    days = history.days
    assert len(load_series(layout, "SPY", "5m")[1].rows) == len(rows)
    # re-materialize the FIRST day's bars with one close changed: day 2's trace is now stale
    first = bars[bars["day"] == days[0]].reset_index(drop=True)
    first.loc[10, "close"] += 0.01
    write_bars_day(layout, "SPY", "5m", days[0], first.assign(ts=pd.to_datetime(first["datetime"], utc=True)))
    with pytest.raises(StoreError, match="other bars"):
        load_series(layout, "SPY", "5m")


def test_load_series_reuses_an_unchanged_series_and_rereads_a_changed_one(tmp_path):
    """The per-process cache of load_series: a hit while every file is unchanged, a fresh read
    after a trace file is rewritten, and callers get their own bars frame."""
    import os

    from admf_assets.core import store

    layout, history, _, _ = stored_series(tmp_path)
    first_history, first_traces = store.load_series(layout, history.symbol, history.timeframe)
    again_history, again_traces = store.load_series(layout, history.symbol, history.timeframe)
    assert again_traces is first_traces  # served from the cache
    assert again_history.bars is not first_history.bars
    pd.testing.assert_frame_equal(again_history.bars, first_history.bars)
    again_history.bars["close"] = 0.0  # a caller's change does not reach the cache
    third_history, _ = store.load_series(layout, history.symbol, history.timeframe)
    assert (third_history.bars["close"] > 0).all()

    path = sorted(layout.signals_dir(history.symbol, history.timeframe).glob("*.parquet"))[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    _, reread = store.load_series(layout, history.symbol, history.timeframe)
    assert reread is not first_traces
    assert (reread.rows.idx == first_traces.rows.idx).all() and (reread.rows.val == first_traces.rows.val).all()


def test_subset_keeps_the_chosen_series_rows_and_their_daily_returns_bit_for_bit(real):
    """``TraceHistory.subset`` (what ``strategy_correlations`` computes daily returns on): the kept
    series in stored order, renumbered, with exactly their rows; their daily net returns equal
    the whole set's columns bit for bit."""
    from admf_assets.core.metrics import CostModel, daily_net_returns
    from admf_assets.core.store import TraceHistory
    from admf_assets.core.traces import config_record

    bars, configs, _ = real
    rows = strategy_rows(bars, configs)
    traces = TraceHistory([config_record(c, "SPY", "5m") for c in configs], rows, [])
    ids = traces.series_ids
    chosen = [ids[17], ids[3], ids[-1], "not-a-stored-id"]  # any order; unknown ids are ignored
    sub = traces.subset(chosen)
    assert sub.series_ids == [ids[3], ids[17], ids[-1]]
    assert sub.rows.n_series == 3 and sub.rows.n_bars == rows.n_bars
    for new, old in enumerate((3, 17, len(ids) - 1)):
        mine = rows.series == old
        theirs = sub.rows.series == new
        np.testing.assert_array_equal(sub.rows.idx[theirs], rows.idx[mine])
        np.testing.assert_array_equal(sub.rows.val[theirs], rows.val[mine])
    assert len(sub.rows) == int(sum((rows.series == o).sum() for o in (3, 17, len(ids) - 1)))
    close = bars["close"].to_numpy(dtype=np.float64)
    _, day = np.unique(bars["day"].to_numpy(), return_inverse=True)
    costs = CostModel(commission_bps=0.5, slippage_bps=1.0)
    days_all, all_returns = daily_net_returns(rows, close, day.astype(np.int64), costs)
    days_sub, sub_returns = daily_net_returns(sub.rows, close, day.astype(np.int64), costs)
    np.testing.assert_array_equal(days_sub, days_all)
    np.testing.assert_array_equal(sub_returns, all_returns[[3, 17, len(ids) - 1]])
    assert traces.subset([]).rows.n_series == 0 and len(traces.subset([]).rows) == 0
