"""Pure archive building blocks: checksums, idempotent month merges, retention cutoffs."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from admf_assets.core.archive import ArchiveError, ArchiveLocation, month_bounds, retention_cutoff, rows_checksum


def _table(vals, day=None):
    return pa.table({"idx": pa.array(range(len(vals)), pa.int32()), "val": pa.array(vals, pa.float64()), "sym": ["SPY"] * len(vals)})


def test_rows_checksum_ignores_order_but_not_values_or_duplicates():
    t = _table([1.0, 2.0, 3.0])
    assert rows_checksum(t) == rows_checksum(t.take([2, 0, 1]))
    assert rows_checksum(t) != rows_checksum(_table([1.0, 2.0, 3.0000001]))
    assert rows_checksum(t) != rows_checksum(pa.concat_tables([t, t.slice(0, 1)]))
    assert rows_checksum(t) != rows_checksum(t.rename_columns(["idx", "value", "sym"]))
    assert rows_checksum(t.replace_schema_metadata({b"k": b"v"})) == rows_checksum(t)


def test_month_merge_replaces_a_partition_and_keeps_its_metadata(tmp_path):
    archive = ArchiveLocation(tmp_path / "archive")
    path = archive.month_path("bars", "SPY_5m", "2025-06")
    d1, d2 = dt.date(2025, 6, 4), dt.date(2025, 6, 5)
    archive.merge_month(path, {d1: (_table([1.0, 2.0]), {b"admf.kind": b"bars"})})
    archive.merge_month(path, {d2: (_table([3.0]), {b"admf.kind": b"bars"})})
    archive.merge_month(path, {d1: (_table([1.0, 2.0]), {b"admf.kind": b"bars", b"x": b"y"})})  # again: replaced, not appended
    month = archive.read_month(path)
    assert month.days() == [d1, d2] and month.table.num_rows == 3
    table, meta = month.partition(d1)
    assert table.column("val").to_pylist() == [1.0, 2.0] and meta == {b"admf.kind": b"bars", b"x": b"y"}
    archive.remove_partitions(path, [d1, d2])
    assert not archive.fs.exists(path)  # an emptied month file is removed
    archive.merge_month(path, {d1: (_table([1.0]), {})})
    with pytest.raises(ArchiveError, match="2025-06.parquet: partition 2025-06-05 has other columns"):
        archive.merge_month(path, {d2: (pa.table({"idx": ["a"]}), {})})
    assert archive.read_month(path).days() == [d1]  # the failed merge left the file as it was


def test_retention_cutoff_counts_sessions():
    sessions = [dt.date(2025, 7, d) for d in (1, 2, 3, 7, 8)]  # 4th: holiday, 5th/6th: weekend
    assert retention_cutoff(sessions, dt.date(2025, 7, 8), 2) == dt.date(2025, 7, 7)
    assert retention_cutoff(sessions, dt.date(2025, 7, 8), 3) == dt.date(2025, 7, 3)
    assert retention_cutoff(sessions, dt.date(2025, 7, 8), 6) is None
    assert retention_cutoff(sessions, None, 2) is None
    with pytest.raises(ValueError, match="at least 1"):
        retention_cutoff(sessions, dt.date(2025, 7, 8), 0)
    assert month_bounds("2024-02") == (dt.date(2024, 2, 1), dt.date(2024, 3, 1))


def test_a_hot_file_rewritten_during_its_archiving_is_not_deleted(tmp_path):
    import pyarrow.parquet as pq

    from admf_assets.core.archive import archive_file_partitions
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.traces import write_parquet_atomic

    layout = WorkspaceLayout(tmp_path / "ws")
    d1, d2 = dt.date(2025, 6, 4), dt.date(2025, 6, 5)
    for day in (d1, d2):
        write_parquet_atomic(_table([1.0, 2.0]), layout.bars_file("SPY", "5m", day))
    archive = ArchiveLocation(tmp_path / "archive")

    def rewrite_d2(entries):  # a re-materialization lands between the verify and the delete
        write_parquet_atomic(_table([5.0, 6.0, 7.0]), layout.bars_file("SPY", "5m", d2))

    moved = archive_file_partitions(layout, archive, "bars", "SPY_5m", [d1, d2], record=rewrite_d2)
    assert [e.partition_key for e in moved] == ["2025-06-04", "2025-06-05"]
    assert not layout.bars_file("SPY", "5m", d1).exists()
    assert pq.read_table(layout.bars_file("SPY", "5m", d2)).num_rows == 3  # the newer file stays hot


def test_file_views_read_a_day_from_its_hot_file_when_it_is_also_archived(tmp_path):
    """refresh_file_views: archived days appear with their series and date; a day both hot and
    archived (a run under way, or re-materialized after archiving) is read from the hot file only."""
    import duckdb
    import pyarrow.parquet as pq

    from admf_assets.core.archive import refresh_file_views
    from admf_assets.core.layout import WorkspaceLayout

    layout = WorkspaceLayout(tmp_path / "ws")
    archive = ArchiveLocation(str(tmp_path / "archive"))
    d3, d4 = dt.date(2025, 6, 3), dt.date(2025, 6, 4)

    def rows(values):
        return pa.table({"idx": pa.array(range(len(values)), pa.int32()), "val": pa.array(values, pa.int8())})

    hot = layout.kind_file("signals", "SPY", "5m", d4)
    hot.parent.mkdir(parents=True)
    pq.write_table(rows([1, -1]), hot)  # the hot (newer) version of 06-04
    archive.merge_month(archive.month_path("signals", "SPY_5m", "2025-06"), {d3: (rows([0, 1, 0]), {}), d4: (rows([9]), {})})
    with duckdb.connect() as conn:
        assert refresh_file_views(conn, layout, archive) == ["signal_traces_all"]  # no bars, no classifiers yet
        got = conn.execute("SELECT series, partition_date, idx, val FROM signal_traces_all ORDER BY ALL").fetchall()
    assert got == [("SPY_5m", d3, 0, 0), ("SPY_5m", d3, 1, 1), ("SPY_5m", d3, 2, 0), ("SPY_5m", d4, 0, 1), ("SPY_5m", d4, 1, -1)]
