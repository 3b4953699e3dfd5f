"""The persistent whole-history trace cache (admf_assets/core/history_cache.py).

Every test compares the cached read with a fresh read of the day files
(``read_trace_history(..., use_cache=False)``): same configurations, labels and rows, array by
array, after building the cache, adding a day, rewriting a day, archiving and restoring days, and
with a damaged cache file. Reads of day files are counted to show which days the cache spared.
"""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pandas as pd
import pytest

from admf_assets.core import history_cache
from admf_assets.core.archive import ArchiveLocation, archive_file_partitions, restore_file_partitions
from admf_assets.core.classifiers import REGIME_LABELS
from admf_assets.core.config import StrategyConfig
from admf_assets.core.engine import classifier_rows, strategy_rows
from admf_assets.core.grid import default_grid_path, load_grid
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.sparse import SparseRows
from admf_assets.core.store import (
    PartitionSource,
    StoreError,
    TraceHistory,
    history_metadata,
    read_bar_history,
    read_trace_history,
    write_bars_day,
    write_trace_file,
)
from admf_assets.core.traces import config_record
from tests.core.reference import rth_bars

STRATEGIES = [
    StrategyConfig("sma_crossover", {"fast_period": 3, "slow_period": 8}),
    StrategyConfig("sma_crossover", {"fast_period": 5, "slow_period": 13}),
    StrategyConfig("rsi_bands", {"period": 7, "oversold": 30, "overbought": 70}),
]


def _bars(n_days: int = 5) -> pd.DataFrame:
    bars = rth_bars(n_days)
    return bars.assign(ts=pd.to_datetime(bars["datetime"], utc=True))


def _store_days(layout: WorkspaceLayout, bars: pd.DataFrame, days, strategies=STRATEGIES) -> None:
    """Write bars of ``days`` and the signal and classifier traces of ``days`` as the trace assets
    do: one whole-history computation over the stored bars, sliced per day."""
    for day in days:
        write_bars_day(layout, "SPY", "5m", day, bars[bars["day"] == day].reset_index(drop=True))
    history = read_bar_history(layout, "SPY", "5m", through=max(days))
    fingerprints = history.fingerprints()
    classifiers = load_grid(default_grid_path()).classifiers
    common = dict(ts=history.bars["ts"].to_numpy(), close=history.bars["close"].to_numpy(), symbol="SPY", timeframe="5m")
    signals = strategy_rows(history.bars, strategies)
    regimes = classifier_rows(history.bars, classifiers)
    for day in days:
        start, stop = history.span(day)
        meta = history_metadata(history, fingerprints, day)
        write_trace_file(layout.signals_file("SPY", "5m", day), signals, kind="signals", start=start, stop=stop,
                         records=[config_record(c, "SPY", "5m") for c in strategies], extra_metadata=meta, **common)
        write_trace_file(layout.classifiers_file("SPY", "5m", day), regimes, kind="classifiers", start=start, stop=stop,
                         records=[config_record(c, "SPY", "5m") for c in classifiers],
                         labels=[REGIME_LABELS[c.classifier_type] for c in classifiers], extra_metadata=meta, **common)


def _assert_same(a: TraceHistory, b: TraceHistory) -> None:
    assert a.configs == b.configs
    assert a.labels == b.labels
    assert (a.rows.n_series, a.rows.n_bars) == (b.rows.n_series, b.rows.n_bars)
    for name, dtype in (("series", np.int32), ("idx", np.int32), ("val", np.int8)):
        x, y = getattr(a.rows, name), getattr(b.rows, name)
        assert x.dtype == y.dtype == dtype, name
        assert np.array_equal(x, y), name


class _Reads:
    """Records PartitionSource.read calls of trace partitions as (kind, day) (bar reads are not counted)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dt.date]] = []
        original = PartitionSource.read

        def read(source, columns=None):
            if source.kind != "bars":
                self.calls.append((source.kind, source.day))
            return original(source, columns)

        monkeypatch.setattr(PartitionSource, "read", read)

    def take(self) -> list[tuple[str, dt.date]]:
        out, self.calls = self.calls, []
        return out


def _same_refusal(layout: WorkspaceLayout, match: str) -> str:
    """The signal history is refused alike through the cache and from the day files; returns the message."""
    history = read_bar_history(layout, "SPY", "5m")
    with pytest.raises(StoreError, match=match) as cached_err:
        read_trace_history(layout, history, "signals")
    with pytest.raises(StoreError, match=match) as fresh_err:
        read_trace_history(layout, history, "signals", use_cache=False)
    assert str(cached_err.value) == str(fresh_err.value)
    return str(cached_err.value)


def _stored_signal_cache(tmp_path, bars):
    """Every day of ``bars`` stored, the signal history read once (building its cache):
    ``(layout, the history read, cache file, the cache loaded back)``."""
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, sorted(set(bars["day"])))
    good = _check(layout, "signals")
    path = history_cache.cache_file(layout, "signals", "SPY_5m")
    cache = history_cache.load_cache(path, "signals", "SPY_5m")
    assert cache is not None
    return layout, good, path, cache


def _check(layout: WorkspaceLayout, kind: str) -> TraceHistory:
    """Cached read == fresh read of every day file; returns the cached one."""
    history = read_bar_history(layout, "SPY", "5m")
    cached = read_trace_history(layout, history, kind)
    fresh = read_trace_history(layout, history, kind, use_cache=False)
    _assert_same(cached, fresh)
    return cached


@pytest.fixture(scope="module")
def bars():
    return _bars(5)


@pytest.mark.parametrize("kind", ["signals", "classifiers"])
def test_cache_is_built_then_extended_by_a_new_day_only(tmp_path, monkeypatch, bars, kind):
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, days[:4])
    reads = _Reads(monkeypatch)
    first = _check(layout, kind)
    assert [d for k, d in reads.take() if k == kind] == days[:4] * 2  # cache build + the fresh read
    path = history_cache.cache_file(layout, kind, "SPY_5m")
    cache = history_cache.load_cache(path, kind, "SPY_5m")
    assert cache is not None and sorted(cache.days) == days[:4] and len(cache.rows) == len(first.rows) > 0

    # an unchanged series reads no day file at all
    history = read_bar_history(layout, "SPY", "5m")
    _assert_same(read_trace_history(layout, history, kind), first)
    assert reads.take() == []

    # a new trading day: the whole history is recomputed by the trace assets, only the new day's
    # file is written; the cache reads that one file and appends it
    _store_days(layout, bars, [days[4]])
    reads.take()
    history = read_bar_history(layout, "SPY", "5m")
    extended = read_trace_history(layout, history, kind)
    assert reads.take() == [(kind, days[4])]
    _assert_same(extended, read_trace_history(layout, history, kind, use_cache=False))
    assert len(extended.rows) > len(first.rows)
    assert sorted(history_cache.load_cache(path, kind, "SPY_5m").days) == days


def test_rewritten_day_is_read_again(tmp_path, monkeypatch, bars):
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, days)
    before = _check(layout, "signals")
    # re-materialize day 2 with other strategies' rows under the same configurations (as a fixed
    # strategy implementation would): same ids, other rows
    history = read_bar_history(layout, "SPY", "5m")
    other = strategy_rows(history.bars, [StrategyConfig("sma_crossover", {"fast_period": 2, "slow_period": 4})] * 3)
    other = SparseRows(other.series, other.idx, other.val, 3, other.n_bars)
    start, stop = history.span(days[2])
    write_trace_file(
        layout.signals_file("SPY", "5m", days[2]), other, kind="signals", ts=history.bars["ts"].to_numpy(),
        close=history.bars["close"].to_numpy(), symbol="SPY", timeframe="5m", start=start, stop=stop,
        records=[config_record(c, "SPY", "5m") for c in STRATEGIES],
        extra_metadata=history_metadata(history, history.fingerprints(), days[2]),
    )
    reads = _Reads(monkeypatch)
    after = read_trace_history(layout, history, "signals")
    assert reads.take() == [("signals", days[2])]
    _assert_same(after, read_trace_history(layout, history, "signals", use_cache=False))
    day2 = (after.rows.idx >= start) & (after.rows.idx < stop)
    before2 = (before.rows.idx >= start) & (before.rows.idx < stop)
    assert not np.array_equal(after.rows.val[day2], before.rows.val[before2]) or day2.sum() != before2.sum()
    assert np.array_equal(after.rows.idx[~day2], before.rows.idx[~before2])


@pytest.mark.parametrize("kind", ["signals", "classifiers"])
def test_archived_and_restored_days_give_the_same_history(tmp_path, monkeypatch, bars, kind):
    days = sorted(set(bars["day"]))
    archive_dir = tmp_path / "archive"
    layout = WorkspaceLayout(tmp_path / "ws", archive=str(archive_dir))
    _store_days(layout, bars, days)
    before = _check(layout, kind)
    archive = ArchiveLocation(str(archive_dir))
    archive_file_partitions(layout, archive, kind, "SPY_5m", days[:2], record=lambda entries: None)
    assert sorted(archive.archived_days(kind, "SPY_5m")) == days[:2]
    reads = _Reads(monkeypatch)
    after = _check(layout, kind)
    # the cache read the two archived days (their source changed) and none of the hot ones
    assert reads.take()[:2] == [(kind, days[0]), (kind, days[1])]
    _assert_same(after, before)
    # archiving another day into the same month file leaves the stamps of the days already there
    archive_file_partitions(layout, archive, kind, "SPY_5m", [days[2]], record=lambda entries: None)
    history = read_bar_history(layout, "SPY", "5m")
    reads.take()
    _assert_same(read_trace_history(layout, history, kind), before)
    assert reads.take() == [(kind, days[2])]
    restore_file_partitions(layout, archive, kind, "SPY_5m", days[:3], record=lambda entries: None)
    _assert_same(_check(layout, kind), before)


def test_damaged_or_foreign_cache_is_rebuilt(tmp_path, bars):
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, days)
    good = _check(layout, "signals")
    path = history_cache.cache_file(layout, "signals", "SPY_5m")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated (a crash without fsync)
    assert history_cache.load_cache(path, "signals", "SPY_5m") is None
    _assert_same(_check(layout, "signals"), good)
    assert history_cache.load_cache(path, "signals", "SPY_5m") is not None
    # a cache of another series copied over this one is not used
    other = history_cache.cache_file(layout, "signals", "QQQ_5m")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(path.read_bytes())
    assert history_cache.load_cache(other, "signals", "QQQ_5m") is None
    # no temp file is left behind
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damage", ["swap", "duplicate", "idx_range", "series_range"])
def test_cache_with_inconsistent_rows_is_not_used(tmp_path, bars, damage):
    # a well-formed file whose rows break the SparseRows contract is ignored (and rebuilt)
    layout, good, path, cache = _stored_signal_cache(tmp_path, bars)
    assert len(cache.rows) > 2
    series, idx, val = cache.rows.series.copy(), cache.rows.idx.copy(), cache.rows.val.copy()
    if damage == "swap":
        idx[[0, 1]] = idx[[1, 0]]
    elif damage == "duplicate":
        idx[1], series[1] = idx[0], series[0]
    elif damage == "idx_range":
        idx[-1] = cache.rows.n_bars
    else:
        series[-1] = cache.rows.n_series
    bad = SparseRows(series, idx, val, cache.rows.n_series, cache.rows.n_bars)
    assert history_cache.write_cache(path, "signals", "SPY_5m", bad, cache.days, cache.configs)
    assert history_cache.load_cache(path, "signals", "SPY_5m") is None
    _assert_same(_check(layout, "signals"), good)


def test_history_checks_apply_to_cached_days(tmp_path, bars):
    """Bars re-materialized with other data under the cached traces: the same refusal as a fresh read."""
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, days[:3])
    _check(layout, "signals")
    first = bars[bars["day"] == days[0]].reset_index(drop=True)
    first.loc[5, "close"] += 0.01
    write_bars_day(layout, "SPY", "5m", days[0], first)
    message = _same_refusal(layout, "other bars")
    assert str(layout.signals_file("SPY", "5m", days[0])) in message  # the first stale day


def test_changed_grid_on_one_day_is_refused_like_a_fresh_read(tmp_path, bars):
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    _store_days(layout, bars, days[:3])
    _check(layout, "signals")
    _store_days(layout, bars, [days[3]], strategies=STRATEGIES[:2])
    _same_refusal(layout, "configurations differ")


def test_concurrent_writers_leave_one_complete_cache(tmp_path, bars):
    layout, good, path, cache = _stored_signal_cache(tmp_path, bars)
    errors: list[BaseException] = []

    def write(n):
        try:
            for _ in range(n):
                assert history_cache.write_cache(path, "signals", "SPY_5m", cache.rows, cache.days, cache.configs)
                loaded = history_cache.load_cache(path, "signals", "SPY_5m")
                assert loaded is not None and len(loaded.rows) == len(good.rows)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(5,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _assert_same(_check(layout, "signals"), good)
    assert [p.name for p in path.parent.iterdir()] == ["SPY_5m.arrow"]


def test_cache_can_be_turned_off(tmp_path, monkeypatch, bars):
    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    monkeypatch.setenv(history_cache.CACHE_ENV, "0")
    _store_days(layout, bars, days[:2])
    history = read_bar_history(layout, "SPY", "5m")
    assert len(read_trace_history(layout, history, "signals").rows) > 0
    assert not (layout.root / "cache").exists()
    monkeypatch.setenv(history_cache.CACHE_ENV, "1")
    read_trace_history(layout, read_bar_history(layout, "SPY", "5m"), "signals")
    assert history_cache.cache_file(layout, "signals", "SPY_5m").is_file()
    assert history_cache.bars_cache_file(layout, "SPY_5m").is_file()


def _assert_same_bars(layout: WorkspaceLayout, **kw) -> None:
    cached = read_bar_history(layout, "SPY", "5m", **kw)
    fresh = read_bar_history(layout, "SPY", "5m", use_cache=False, **kw)
    pd.testing.assert_frame_equal(cached.bars, fresh.bars, check_exact=True)
    assert cached.spans == fresh.spans and cached.fingerprints() == fresh.fingerprints()


def test_bars_cache_new_rewritten_and_archived_days(tmp_path, monkeypatch, bars):
    days = sorted(set(bars["day"]))
    archive_dir = tmp_path / "archive"
    layout = WorkspaceLayout(tmp_path / "ws", archive=str(archive_dir))
    for day in days[:4]:
        write_bars_day(layout, "SPY", "5m", day, bars[bars["day"] == day].reset_index(drop=True))
    _assert_same_bars(layout)
    reads = []
    original = PartitionSource.read

    def read(source, columns=None):
        reads.append((source.kind, source.day))
        return original(source, columns)

    monkeypatch.setattr(PartitionSource, "read", read)
    assert len(read_bar_history(layout, "SPY", "5m").bars) == int((bars["day"].isin(days[:4])).sum())
    assert reads == []  # every day from the cache
    # a new day: only its file is read
    write_bars_day(layout, "SPY", "5m", days[4], bars[bars["day"] == days[4]].reset_index(drop=True))
    read_bar_history(layout, "SPY", "5m")
    assert reads == [("bars", days[4])]
    _assert_same_bars(layout)
    _assert_same_bars(layout, through=days[2])
    _assert_same_bars(layout, days=[days[1], days[3]])
    # a rewritten day (other prices) is read again
    changed = bars[bars["day"] == days[1]].reset_index(drop=True)
    changed.loc[3, "close"] += 0.05
    write_bars_day(layout, "SPY", "5m", days[1], changed)
    reads.clear()
    history = read_bar_history(layout, "SPY", "5m")
    assert reads == [("bars", days[1])]
    assert history.bars.loc[history.span(days[1])[0] + 3, "close"] == pytest.approx(changed.loc[3, "close"])
    _assert_same_bars(layout)
    # archived days
    archive_file_partitions(layout, ArchiveLocation(str(archive_dir)), "bars", "SPY_5m", days[:2], record=lambda entries: None)
    _assert_same_bars(layout)
    reads.clear()
    read_bar_history(layout, "SPY", "5m")
    assert reads == []


def test_archived_stamp_follows_rows_and_metadata_not_other_days(tmp_path):
    import pyarrow as pa

    archive = ArchiveLocation(str(tmp_path / "archive"))
    path = archive.month_path("signals", "SPY_5m", "2025-06")
    d1, d2 = dt.date(2025, 6, 4), dt.date(2025, 6, 5)
    rows = pa.table({"idx": pa.array([0, 3], pa.int32()), "val": pa.array([1, -1], pa.int8())})
    archive.merge_month(path, {d1: (rows, {b"admf.history_fingerprint": b"aaaa"})})

    def stamp(day):
        return history_cache.source_stamp(PartitionSource("signals", "SPY_5m", day, archive=archive, month_file=path))

    first = stamp(d1)
    assert first[0] == "archive" and first[3] == 2
    archive.merge_month(path, {d2: (rows, {b"admf.history_fingerprint": b"bbbb"})})  # another day joins the month
    assert stamp(d1) == first
    archive.merge_month(path, {d1: (rows, {b"admf.history_fingerprint": b"cccc"})})  # same rows, other metadata
    assert stamp(d1) != first
    changed = pa.table({"idx": pa.array([0, 4], pa.int32()), "val": pa.array([1, -1], pa.int8())})
    before = stamp(d1)
    archive.merge_month(path, {d1: (changed, {b"admf.history_fingerprint": b"cccc"})})  # other rows
    assert stamp(d1) != before


def test_trace_assets_seed_the_cache_with_the_rows_they_write(tmp_path, monkeypatch, bars):
    """The day-file writer of signal_traces / classifier_states seeds the cache: the next reader
    reads no trace file, and gets what a fresh read of the files gives (year, new day, backfill)."""
    from types import SimpleNamespace

    from admf_assets.defs.traces.assets import _write_day_files

    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    workspace = SimpleNamespace(layout=layout)
    classifiers = load_grid(default_grid_path()).classifiers
    labels = [REGIME_LABELS[c.classifier_type] for c in classifiers]

    def materialize(requested):
        for day in requested:
            write_bars_day(layout, "SPY", "5m", day, bars[bars["day"] == day].reset_index(drop=True))
        history = read_bar_history(layout, "SPY", "5m", through=max(requested))
        _write_day_files("signals", history, requested, strategy_rows(history.bars, STRATEGIES),
                         [config_record(c, "SPY", "5m") for c in STRATEGIES], workspace)
        _write_day_files("classifiers", history, requested, classifier_rows(history.bars, classifiers),
                         [config_record(c, "SPY", "5m") for c in classifiers], workspace, labels=labels)

    reads = _Reads(monkeypatch)
    # the year, a new day, a backfill of an older day, two days apart
    for requested in (days[:4], [days[4]], [days[1]], [days[0], days[2]]):
        materialize(requested)
        reads.take()
        history = read_bar_history(layout, "SPY", "5m")
        for kind in ("signals", "classifiers"):
            cached = read_trace_history(layout, history, kind)
            assert reads.take() == [], (requested, kind)
            _assert_same(cached, read_trace_history(layout, history, kind, use_cache=False))
            reads.take()
            assert sorted(history_cache.load_cache(history_cache.cache_file(layout, kind, "SPY_5m"), kind, "SPY_5m").days) == history.days
    assert [p.name for p in layout.signals_dir("SPY", "5m").iterdir() if p.name.endswith(".tmp")] == []


def test_seeding_keeps_the_stored_rows_of_days_it_did_not_write(tmp_path, monkeypatch, bars):
    """A new day computed by other code than the stored days (same configurations, other rows):
    the seeded cache holds the stored rows of the earlier days and the new rows of the new day,
    exactly what a fresh read of the files gives."""
    from types import SimpleNamespace

    from admf_assets.defs.traces.assets import _write_day_files

    days = sorted(set(bars["day"]))
    layout = WorkspaceLayout(tmp_path / "ws")
    records = [config_record(c, "SPY", "5m") for c in STRATEGIES]
    _store_days(layout, bars, days[:4])
    before = _check(layout, "signals")  # cache of the 4 stored days
    write_bars_day(layout, "SPY", "5m", days[4], bars[bars["day"] == days[4]].reset_index(drop=True))
    history = read_bar_history(layout, "SPY", "5m")
    other = strategy_rows(history.bars, [StrategyConfig("sma_crossover", {"fast_period": 2, "slow_period": 4})] * 3)
    other = SparseRows(other.series, other.idx, other.val, 3, other.n_bars)
    _write_day_files("signals", history, [days[4]], other, records, SimpleNamespace(layout=layout))
    reads = _Reads(monkeypatch)
    cached = read_trace_history(layout, history, "signals")
    assert reads.take() == []
    _assert_same(cached, read_trace_history(layout, history, "signals", use_cache=False))
    start = history.span(days[4])[0]
    old = cached.rows.idx < start
    assert np.array_equal(cached.rows.idx[old], before.rows.idx) and np.array_equal(cached.rows.val[old], before.rows.val)
    assert not _rows_equal(cached.rows, other)


def _rows_equal(a: SparseRows, b: SparseRows) -> bool:
    return len(a) == len(b) and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("series", "idx", "val"))


def test_rows_of_cached_days_slice_equals_mask(tmp_path, bars):
    # the rows of some cached days: one slice for consecutive days, a mask otherwise; both equal
    # the rows whose bar lies in a kept day's span
    _, _, _, cache = _stored_signal_cache(tmp_path, bars)
    assert len(cache.days) >= 3
    ordered = sorted(cache.days, key=lambda d: cache.days[d].start)
    for keep in (set(ordered), set(ordered[:-1]), set(ordered[1:2]), {ordered[0], ordered[-1]}):
        got = history_cache._rows_of_cached_days(cache, keep)
        in_kept = np.zeros(cache.rows.n_bars, dtype=bool)
        for d in keep:
            in_kept[cache.days[d].start : cache.days[d].stop] = True
        want = cache.rows.select(in_kept[cache.rows.idx])
        for field in ("series", "idx", "val"):
            assert np.array_equal(getattr(got, field), getattr(want, field)), (keep, field)


def test_same_rows_in_bar_range_compares_in_place_what_a_gather_would(bars):
    """kernels.same_rows_in_bar_range (the seeding's in-place check) agrees with comparing the
    gathered rows of the range, and looks at nothing outside it."""
    from admf_assets.core import kernels
    from admf_assets.core.engine import slice_rows

    rows = strategy_rows(bars, STRATEGIES)
    n, t = rows.n_series, rows.n_bars
    start, stop = t // 3, 2 * t // 3

    def same(a, b, lo=start, hi=stop):
        got = bool(kernels.same_rows_in_bar_range(a.series, a.idx, a.val, b.series, b.idx, b.val, n, lo, hi))
        assert got == _rows_equal(slice_rows(a, lo, hi), slice_rows(b, lo, hi))
        return got

    copy = SparseRows(rows.series.copy(), rows.idx.copy(), rows.val.copy(), n, t)
    assert same(rows, copy) and same(rows, copy, 0, t) and same(rows, copy, start, start)
    inside = np.flatnonzero((rows.idx >= start) & (rows.idx < stop))
    outside = np.flatnonzero(rows.idx >= stop)
    assert len(inside) and len(outside)
    flipped = copy.val.copy()
    flipped[inside[len(inside) // 2]] *= -1
    assert not same(rows, SparseRows(copy.series, copy.idx, flipped, n, t))  # another value in the range
    keep = np.ones(len(copy), dtype=bool)
    keep[outside[0]] = False
    assert same(rows, copy.select(keep))  # a row outside the range missing: the range is the same
    keep = np.ones(len(copy), dtype=bool)
    keep[inside[0]] = False
    assert not same(rows, copy.select(keep))  # a row of the range missing


def _same_contents(a, b) -> None:
    for name in ("series", "idx", "val"):
        got, want = getattr(a.rows, name), getattr(b.rows, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert (a.rows.n_series, a.rows.n_bars) == (b.rows.n_series, b.rows.n_bars)
    assert a.days == b.days and a.configs == b.configs


def test_written_cache_is_returned_from_memory_until_the_file_changes(tmp_path, bars, monkeypatch):
    # write_cache keeps what it wrote; load_cache returns it without reading the file while the
    # file's inode, mtime and size are unchanged, and it equals what the file reads back as
    layout, good, path, cache = _stored_signal_cache(tmp_path, bars)
    reads = []
    real_read = history_cache._read_cache
    monkeypatch.setattr(history_cache, "_read_cache", lambda *a: reads.append(a) or real_read(*a))
    assert history_cache.write_cache(path, "signals", "SPY_5m", cache.rows, cache.days, cache.configs)
    remembered = history_cache.load_cache(path, "signals", "SPY_5m")
    assert reads == []
    _same_contents(remembered, real_read(path, "signals", "SPY_5m"))
    _assert_same(_check(layout, "signals"), good)
    assert reads == []  # the analytics' read of the series took the cache from memory too
    # another process replaces the file (a new inode): the next load reads the new file
    fewer = SparseRows(cache.rows.series[:-1], cache.rows.idx[:-1], cache.rows.val[:-1], cache.rows.n_series, cache.rows.n_bars)
    other = tmp_path / "other.arrow"
    assert history_cache.write_cache(other, "signals", "SPY_5m", fewer, cache.days, cache.configs)
    other.replace(path)
    assert len(history_cache.load_cache(path, "signals", "SPY_5m").rows) == len(cache.rows) - 1
    assert len(reads) == 1
    # rows that fail load_cache's check are written (as before) but never served from memory
    history_cache._memo.clear()
    series = cache.rows.series.copy()
    series[-1] = cache.rows.n_series
    bad = SparseRows(series, cache.rows.idx, cache.rows.val, cache.rows.n_series, cache.rows.n_bars)
    assert history_cache.write_cache(path, "signals", "SPY_5m", bad, cache.days, cache.configs)
    assert history_cache.load_cache(path, "signals", "SPY_5m") is None


def test_memory_is_bounded(tmp_path, bars, monkeypatch):
    layout, good, path, cache = _stored_signal_cache(tmp_path, bars)
    history_cache._memo.clear()
    monkeypatch.setattr(history_cache, "MEMO_BYTES", 9 * len(cache.rows) + 1)  # room for one file's rows
    for name in ("a", "b", "c"):
        assert history_cache.write_cache(tmp_path / f"{name}.arrow", "signals", "SPY_5m", cache.rows, cache.days, cache.configs)
    assert [key[0] for key in history_cache._memo] == [str(tmp_path / "c.arrow")]
