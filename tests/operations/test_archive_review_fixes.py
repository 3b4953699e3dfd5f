"""Regression tests of the operations review (defects 1-7): durable month files, hot rows win on
restore, restores pinned against the retention sensor, readers racing an archive run, refused
schema changes, refused archive URL changes."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import admf_assets.core.archive as archive_mod
import admf_assets.core.store as store_mod
from admf_assets.core.archive import (
    ArchiveError,
    ArchiveLocation,
    ArchiveVerificationError,
    archive_file_partitions,
    restore_file_partitions,
    rows_checksum,
)
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.store import partition_sources, read_bar_history
from admf_assets.core.traces import write_parquet_atomic
from admf_assets.defs.operations.archive import execute_archive, plan_now, retention_sensor
from admf_assets.defs.resources import build_resources
from admf_assets.lib.resources import AdmfWorkspace

from .conftest import DAYS, SYMBOLS

D1, D2, D3 = dt.date(2025, 6, 4), dt.date(2025, 6, 5), dt.date(2025, 6, 6)


def _bars(n: int, start: float = 100.0) -> pa.Table:
    return pa.table({"ts": pa.array(range(n), pa.int64()), "close": pa.array([start + i for i in range(n)], pa.float64())})


def _layout(settings) -> WorkspaceLayout:
    return WorkspaceLayout(Path(settings.workspace))


def _archive(settings, **kw):
    extra = {"include_restored": True} if kw.get("include_restored") else {}
    plan = plan_now(settings.workspace, settings.calendar, str(_layout(settings).duckdb_file), bars_days=settings.retain_bars_days,
                    traces_days=settings.retain_traces_days, summaries_days=settings.retain_summaries_days, **extra)
    return execute_archive(root=settings.workspace, archive_url=kw.pop("archive_url", settings.archive_url),
                           database=str(_layout(settings).duckdb_file), cutoffs=plan.cutoffs, **kw)


def _hot_days(settings, kind, symbol="SPY"):
    layout = _layout(settings)
    return list(layout.dated_files(layout.kind_dir(kind, symbol, "5m")))


def _cli(settings, monkeypatch, *args):
    for name, value in {"ADMF_WORKSPACE": settings.workspace, "ADMF_ARCHIVE_URL": settings.archive_url,
                        "ADMF_RETAIN_BARS_DAYS": str(settings.retain_bars_days), "ADMF_RETAIN_TRACES_DAYS": str(settings.retain_traces_days),
                        "ADMF_RETAIN_SUMMARIES_DAYS": str(settings.retain_summaries_days)}.items():
        monkeypatch.setenv(name, value)
    from admf_assets.cli.main import app

    return CliRunner().invoke(app, list(args))


# -- 1. durability -------------------------------------------------------------------------------


class _Events:
    """Records fsync / os.replace / hot-file deletes in call order (paths resolved via /proc)."""

    def __init__(self, monkeypatch):
        self.log: list[tuple[str, str]] = []
        real_fsync, real_replace, real_delete = os.fsync, os.replace, archive_mod._delete_hot

        def fsync(fd):
            self.log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            return real_fsync(fd)

        def replace(src, dst, *a, **kw):
            self.log.append(("replace", f"{os.fspath(src)} -> {os.fspath(dst)}"))
            return real_replace(src, dst, *a, **kw)

        def delete(path):
            self.log.append(("unlink", str(path)))
            return real_delete(path)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(archive_mod, "_delete_hot", delete)

    def index(self, pred, after: int = -1) -> int:
        for i, event in enumerate(self.log):
            if i > after and pred(event):
                return i
        raise AssertionError(f"no such event after #{after} in {self.log}")


def test_month_file_and_folder_are_fsynced_before_any_hot_file_is_deleted(tmp_path, monkeypatch):
    layout = WorkspaceLayout(tmp_path / "ws")
    for day in (D1, D2):
        write_parquet_atomic(_bars(3), layout.bars_file("SPY", "5m", day))
    archive = ArchiveLocation(tmp_path / "archive")
    month = archive.month_path("bars", "SPY_5m", "2025-06")
    folder = month.rsplit("/", 1)[0]
    events = _Events(monkeypatch)

    archive_file_partitions(layout, archive, "bars", "SPY_5m", [D1, D2], record=lambda entries: None)

    first_unlink = events.index(lambda e: e[0] == "unlink")
    moved = events.index(lambda e: e[0] == "replace" and e[1].endswith(f"-> {month}"))
    tmp = events.log[moved][1].split(" -> ")[0]
    assert Path(tmp).parent == Path(folder) and Path(tmp).name.startswith(".2025-06.parquet.")
    file_synced = events.index(lambda e: e == ("fsync", tmp))
    folder_synced = events.index(lambda e: e == ("fsync", folder), after=moved)
    assert file_synced < moved < folder_synced < first_unlink
    # the series folder and its parents were created by this first write: synced too (entries durable)
    for parent in (str(Path(folder).parent), str(tmp_path / "archive")):
        assert events.index(lambda e, p=parent: e == ("fsync", p), after=moved) < first_unlink
    assert not layout.bars_file("SPY", "5m", D1).exists()

    # restore rewrites the month file without the restored day: fsynced the same way
    events.log.clear()
    restore_file_partitions(layout, archive, "bars", "SPY_5m", [D1], record=lambda entries: None)
    moved = events.index(lambda e: e[0] == "replace" and e[1].endswith(f"-> {month}"))
    tmp = events.log[moved][1].split(" -> ")[0]
    assert events.index(lambda e: e == ("fsync", tmp)) < moved < events.index(lambda e: e == ("fsync", folder), after=moved)
    assert archive.archived_days("bars", "SPY_5m") == {D2: month}


# -- 6. schema changes and verification of every partition --------------------------------------


def test_a_column_change_is_refused_naming_file_partition_and_column_and_nothing_is_deleted(tmp_path):
    layout = WorkspaceLayout(tmp_path / "ws")
    archive = ArchiveLocation(tmp_path / "archive")
    write_parquet_atomic(_bars(3), layout.bars_file("SPY", "5m", D1))
    archive_file_partitions(layout, archive, "bars", "SPY_5m", [D1], record=lambda entries: None)
    month = archive.month_path("bars", "SPY_5m", "2025-06")
    before = pq.read_table(month)

    changed = _bars(4).append_column("volume", pa.array([1.0] * 4, pa.float64()))  # a new column
    write_parquet_atomic(changed, layout.bars_file("SPY", "5m", D2))
    recorded = []
    with pytest.raises(ArchiveError) as err:
        archive_file_partitions(layout, archive, "bars", "SPY_5m", [D2], record=recorded.extend)
    message = str(err.value)
    assert "bars/SPY_5m/2025-06.parquet" in message and "partition 2025-06-05" in message
    assert "volume: double (archived: missing)" in message and "Nothing was archived or deleted" in message
    assert recorded == [] and layout.bars_file("SPY", "5m", D2).is_file()
    assert pq.read_table(month).equals(before)  # the month file is untouched

    retyped = pa.table({"ts": pa.array(range(2), pa.int64()), "close": pa.array(["1", "2"])})  # a changed type
    write_parquet_atomic(retyped, layout.bars_file("SPY", "5m", D3))
    with pytest.raises(ArchiveError, match=r"partition 2025-06-06 .*close: string \(archived: double\)"):
        archive_file_partitions(layout, archive, "bars", "SPY_5m", [D3], record=recorded.extend)
    assert layout.bars_file("SPY", "5m", D3).is_file() and archive.read_month(month).days() == [D1]


def test_every_partition_of_a_rewritten_month_is_verified_before_it_replaces_the_file(tmp_path, monkeypatch):
    layout = WorkspaceLayout(tmp_path / "ws")
    archive = ArchiveLocation(tmp_path / "archive")
    write_parquet_atomic(_bars(3), layout.bars_file("SPY", "5m", D1))
    archive_file_partitions(layout, archive, "bars", "SPY_5m", [D1], record=lambda entries: None)
    month = archive.month_path("bars", "SPY_5m", "2025-06")
    d1_rows = archive.read_month(month).partition(D1)[0]

    real = ArchiveLocation.write_month

    def corrupt_kept_partition(self, path, month_file, expected=None):
        table = month_file.table
        close = table["close"].to_pylist()
        close[0] += 1.0  # first row: the kept (earlier archived) partition of 2025-06-04
        table = table.set_column(table.column_names.index("close"), "close", pa.array(close, pa.float64()))
        return real(self, path, archive_mod.MonthFile(table, month_file.partitions), *([expected] if expected is not None else []))

    monkeypatch.setattr(ArchiveLocation, "write_month", corrupt_kept_partition)
    write_parquet_atomic(_bars(2, start=200.0), layout.bars_file("SPY", "5m", D2))
    with pytest.raises(ArchiveVerificationError, match=r"2025-06\.parquet.*2025-06-04: 3 rows checksum"):
        archive_file_partitions(layout, archive, "bars", "SPY_5m", [D2], record=lambda entries: None)
    monkeypatch.undo()
    stored = archive.read_month(month)
    assert stored.days() == [D1] and stored.partition(D1)[0].equals(d1_rows)  # old file kept, intact
    assert layout.bars_file("SPY", "5m", D2).is_file()
    assert not [p for p in Path(month).parent.iterdir() if p.name.endswith(".tmp")]  # temp file removed
    assert stored.stats == {"2025-06-04": archive_mod.PartitionStats(3, rows_checksum(d1_rows))}  # footer stats


# -- 3. restore: hot rows win --------------------------------------------------------------------


def test_restore_keeps_summary_rows_rematerialized_after_archiving(ops_settings, monkeypatch):
    database = str(_layout(ops_settings).duckdb_file)
    with duckdb.connect(database, read_only=True) as conn:
        original = conn.execute("SELECT * FROM daily_signal_summary ORDER BY date, symbol, strategy_type").df()
    _archive(ops_settings)
    # DAYS[1] re-materialized hot after it was archived (other values than the archived rows)
    newer = original[original["date"] == str(DAYS[1])].copy()
    newer["net_pnl"] = newer["net_pnl"] + 1.0
    with duckdb.connect(database) as conn:
        conn.register("newer", newer)
        conn.execute("INSERT INTO daily_signal_summary BY NAME SELECT * FROM newer")

    out = _cli(ops_settings, monkeypatch, "archive", "restore", "--from", str(DAYS[1]), "--to", str(DAYS[2]))
    assert out.exit_code == 0, out.output
    with duckdb.connect(database, read_only=True) as conn:
        hot = conn.execute("SELECT * FROM daily_signal_summary ORDER BY date, symbol, strategy_type").df()
        restored = conn.execute("SELECT count(*) FROM archive_manifest WHERE kind = 'tables/daily_signal_summary' AND restored_at IS NOT NULL").fetchone()[0]
    day1 = hot[hot["date"] == str(DAYS[1])].reset_index(drop=True)
    assert len(day1) == len(newer) > 0
    assert (day1["net_pnl"].to_numpy() == newer.sort_values(["symbol", "strategy_type"])["net_pnl"].to_numpy()).all()  # the newer rows
    day2 = hot[hot["date"] == str(DAYS[2])].reset_index(drop=True)
    expected2 = original[original["date"] == str(DAYS[2])].reset_index(drop=True)
    assert day2.equals(expected2)  # archived rows of a day with no hot rows come back
    assert restored == 2
    archive = ArchiveLocation(ops_settings.archive_url)
    assert set(archive.archived_days("tables/daily_signal_summary", "daily_signal_summary")) == {DAYS[0], DAYS[3]}


# -- 4. restored partitions are pinned hot -------------------------------------------------------


def test_retention_sensor_does_not_undo_a_restore_until_include_restored(ops_settings, monkeypatch):
    _archive(ops_settings)
    out = _cli(ops_settings, monkeypatch, "archive", "restore", "--from", str(DAYS[1]), "--to", str(DAYS[2]))
    assert out.exit_code == 0, out.output

    with dg.build_sensor_context(resources=build_resources(ops_settings)) as context:
        tick = retention_sensor(context)
    assert isinstance(tick, dg.SkipReason) and "nothing past retention" in tick.skip_message
    plan = plan_now(ops_settings.workspace, "XNYS", str(_layout(ops_settings).duckdb_file), bars_days=2, traces_days=3, summaries_days=2)
    assert plan.empty
    # an archive run with the policy's cutoffs leaves the restored days hot
    assert _archive(ops_settings) == []
    assert _hot_days(ops_settings, "bars") == [DAYS[1], DAYS[2], *DAYS[-2:]]

    # explicit re-archive: `admf archive run --include-restored`
    out = _cli(ops_settings, monkeypatch, "archive", "run", "--include-restored")
    assert out.exit_code == 0, out.output
    assert "archived 14 partition(s)" in out.output  # 2 days x (2 bars + 2 signals + 2 classifiers) + 2 summary days
    for symbol in SYMBOLS:
        assert _hot_days(ops_settings, "bars", symbol) == DAYS[-2:]
    with duckdb.connect(str(_layout(ops_settings).duckdb_file), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM archive_manifest WHERE restored_at IS NOT NULL").fetchone()[0] == 0


# -- 5. readers racing an archive or restore run ---------------------------------------------------


def test_reader_falls_back_to_the_archive_when_a_hot_file_vanishes_after_listing(ops_settings, monkeypatch):
    layout = _layout(ops_settings)
    before = read_bar_history(layout, "SPY", "5m")
    sources = partition_sources(layout, "bars", "SPY", "5m")
    assert all(s.path is not None for s in sources.values())  # all hot when listed
    _archive(ops_settings)  # ... then archived before they are read
    assert _hot_days(ops_settings, "bars") == DAYS[-2:]
    for day, source in sources.items():
        table, meta = source.read()
        assert table.num_rows == 78 and meta[b"admf.kind"] == b"bars"
        assert source.metadata() == meta

    # through a whole reader: an archive run lands between the listing and the reads
    real = store_mod.partition_sources
    ran = []

    def list_then_archive(*args, **kw):
        out = real(*args, **kw)
        if not ran:
            ran.append(execute_archive(root=ops_settings.workspace, archive_url=ops_settings.archive_url,
                                       database=str(layout.duckdb_file), cutoffs={"bars": DAYS[-1], "traces": None, "summaries": None}))
        return out

    monkeypatch.setattr(store_mod, "partition_sources", list_then_archive)
    after = read_bar_history(layout, "SPY", "5m")
    assert ran and ran[0] and _hot_days(ops_settings, "bars") == [DAYS[-1]]
    assert after.bars.equals(before.bars) and after.spans == before.spans


def test_reader_falls_back_to_the_hot_file_when_a_restore_runs_after_listing(ops_settings, monkeypatch):
    layout = _layout(ops_settings)
    before = read_bar_history(layout, "SPY", "5m")
    _archive(ops_settings)
    sources = partition_sources(layout, "bars", "SPY", "5m")
    assert sources[DAYS[0]].path is None  # archived when listed
    out = _cli(ops_settings, monkeypatch, "archive", "restore", "--from", str(DAYS[0]), "--to", str(DAYS[3]))
    assert out.exit_code == 0, out.output
    assert not ArchiveLocation(ops_settings.archive_url).archived_days("bars", "SPY_5m")
    tables = [sources[d].read()[0] for d in DAYS]
    assert pa.concat_tables(tables).to_pandas()["close"].tolist() == before.bars["close"].tolist()


# -- 7. archive URL changes ----------------------------------------------------------------------


def test_changing_the_archive_url_is_refused_and_readers_keep_the_recorded_archive(ops_settings, tmp_path):
    layout = _layout(ops_settings)
    before = read_bar_history(layout, "AAPL", "5m")
    _archive(ops_settings)
    other = str(tmp_path / "other-archive")
    with pytest.raises(ArchiveError) as err:
        _archive(ops_settings, archive_url=other)
    message = str(err.value)
    assert other in message and ops_settings.archive_url in message and "set ADMF_ARCHIVE_URL back" in message
    assert (Path(ops_settings.workspace) / "archive_location.txt").read_text().strip() == ops_settings.archive_url
    assert not Path(other).exists()
    # readers configured with the new URL still find the partitions where they were archived
    workspace = AdmfWorkspace(root=ops_settings.workspace, landing_dir=ops_settings.landing_dir, grid_path=ops_settings.grid_path, archive_url=other)
    assert workspace.layout.archive_url == ops_settings.archive_url
    after = read_bar_history(workspace.layout, "AAPL", "5m")
    assert after.days == DAYS and after.bars.equals(before.bars)
