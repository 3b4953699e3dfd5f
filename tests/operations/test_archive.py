"""archive_job and the archive: files and rows before and after, same answers, restore, faults."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from filelock import Timeout
from typer.testing import CliRunner

import admf_assets.core.archive as archive_mod
from admf_assets.core.archive import ArchiveLocation, ArchiveVerificationError, archive_lock, rows_checksum
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.store import load_series, read_bar_history, read_trace_history
from admf_assets.defs.operations.archive import execute_archive, plan_now
from admf_assets.lib.pipeline import code_location

from .conftest import DAYS, SYMBOLS

KINDS = ("bars", "signals", "classifiers")
BARS_KEPT = DAYS[-2:]  # retain_bars_days=2
TRACES_KEPT = DAYS[-3:]  # retain_traces_days=3
CUTOFFS = {"bars": DAYS[-2], "traces": DAYS[-3], "summaries": DAYS[-2]}


def _layout(settings) -> WorkspaceLayout:
    return WorkspaceLayout(Path(settings.workspace))


def _db(settings):
    return duckdb.connect(str(_layout(settings).duckdb_file), read_only=True)


def _hot_days(settings, kind, symbol="SPY"):
    layout = _layout(settings)
    return list(layout.dated_files(layout.kind_dir(kind, symbol, "5m")))


_VIEW_ORDER = {"bars": "series, partition_date, ts", "signals": "series, partition_date, strat, idx", "classifiers": "series, partition_date, strat, idx"}


def _file_view_rows(settings, views: bool = False) -> dict[str, pd.DataFrame]:
    """Every row of each file kind with ``series`` and ``partition_date``: through the DuckDB
    ``*_all`` views (``views=True``) or straight from the hot day files (before archiving)."""
    from admf_assets.core.archive import FILE_VIEWS
    from admf_assets.core.layout import kind_subdir

    out = {}
    with _db(settings) as conn:
        for view, kind in FILE_VIEWS.items():
            if views:
                source = view
            else:
                glob = f"{Path(settings.workspace) / kind_subdir(kind)}/*/*.parquet"
                source = (f"(SELECT * EXCLUDE (filename), regexp_extract(filename, '([^/]+)/[^/]+\\.parquet$', 1) AS series, "
                          f"CAST(regexp_extract(filename, '(\\d{{4}}-\\d{{2}}-\\d{{2}})\\.parquet$', 1) AS DATE) AS partition_date "
                          f"FROM read_parquet('{glob}', filename = true))")
            out[kind] = conn.execute(f"SELECT * FROM {source} ORDER BY {_VIEW_ORDER[kind]}").df()
    return out


def _archive(settings, **kw):
    plan = plan_now(settings.workspace, settings.calendar, str(_layout(settings).duckdb_file), bars_days=settings.retain_bars_days,
                    traces_days=settings.retain_traces_days, summaries_days=settings.retain_summaries_days)
    return execute_archive(root=settings.workspace, archive_url=settings.archive_url, database=str(_layout(settings).duckdb_file),
                           cutoffs=plan.cutoffs, **kw)


def _hot_tables(settings):
    """{(kind, symbol, day): pyarrow table with its metadata} of every hot file."""
    layout = _layout(settings)
    out = {}
    for kind in KINDS:
        for symbol in SYMBOLS:
            for day, path in layout.dated_files(layout.kind_dir(kind, symbol, "5m")).items():
                out[(kind, symbol, day)] = pq.read_table(path)
    return out


def _summary(settings, table="daily_signal_summary"):
    with _db(settings) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY date, symbol, strategy_type").df()


def test_plan_counts_trading_days_back_from_the_newest_bar_day(ops_settings):
    plan = plan_now(ops_settings.workspace, "XNYS", str(_layout(ops_settings).duckdb_file), bars_days=2, traces_days=3, summaries_days=2)
    assert plan.cutoffs == CUTOFFS  # 2025-06-10 / 06-09: the weekend 06-07/08 is not counted
    assert plan.files["bars"] == {"AAPL_5m": DAYS[:4], "SPY_5m": DAYS[:4]}
    assert plan.files["signals"]["SPY_5m"] == DAYS[:3]
    assert plan.summary_days == DAYS[:4]
    assert plan.partitions == 2 * 4 + 2 * 3 * 2 + 4
    assert plan.run_key().startswith("archive-bars2025-06-10-summaries2025-06-10-traces2025-06-09-")


def test_archive_job_moves_partitions_verifies_records_and_observes(ops_settings):
    before_files = _hot_tables(ops_settings)
    before_summary = _summary(ops_settings)
    with dg.instance_for_test() as instance:
        result = code_location(ops_settings).resolve_job_def("archive_job").execute_in_process(instance=instance)
    assert result.success

    # hot storage keeps exactly the retained days
    for symbol in SYMBOLS:
        assert _hot_days(ops_settings, "bars", symbol) == BARS_KEPT
        assert _hot_days(ops_settings, "signals", symbol) == TRACES_KEPT
        assert _hot_days(ops_settings, "classifiers", symbol) == TRACES_KEPT
    # one zstd month file per series and kind, holding the moved partitions' rows exactly
    archive = ArchiveLocation(ops_settings.archive_url)
    month = Path(ops_settings.archive_url) / "traces" / "signals" / "SPY_5m" / "2025-06.parquet"
    assert sorted(p.name for p in month.parent.iterdir()) == ["2025-06.parquet"]
    assert pq.ParquetFile(month).metadata.row_group(0).column(0).compression == "ZSTD"
    stored = pq.read_table(month)
    for day in DAYS[:3]:
        original = before_files[("signals", "SPY", day)]
        part = stored.filter(pc.equal(stored["partition_date"], pa.scalar(day, pa.date32())))
        assert part.num_rows == original.num_rows > 0
        table, meta = archive.read_partition("signals", "SPY_5m", day)
        assert table.equals(original) and meta == original.schema.metadata  # rows and Parquet metadata preserved
    # manifest: one row per moved partition, rows and checksum of the source
    with _db(ops_settings) as conn:
        manifest = conn.execute("SELECT * FROM archive_manifest ORDER BY kind, series, partition_key").df()
        assert conn.execute("SELECT min(date) FROM daily_signal_summary").fetchone()[0] == DAYS[-2]
    assert len(manifest) == 2 * 4 + 2 * 3 * 2 + 4
    assert manifest["run_id"].eq(result.run_id).all() and manifest["restored_at"].isna().all()
    row = manifest[(manifest.kind == "bars") & (manifest.series == "AAPL_5m") & (manifest.partition_key == "2025-06-05")].iloc[0]
    source = before_files[("bars", "AAPL", dt.date(2025, 6, 5))]
    assert row["rows"] == source.num_rows == 78 and row["checksum"] == rows_checksum(source)
    assert row["target"] == str(Path(ops_settings.archive_url) / "bars" / "AAPL_5m" / "2025-06.parquet")
    summary_rows = manifest[manifest.kind == "tables/daily_signal_summary"]
    assert summary_rows["rows"].sum() == (before_summary["date"] < pd.Timestamp(DAYS[-2])).sum()
    # observations on the assets in the UI
    observed = {e.asset_key.to_user_string(): e.event_specific_data.asset_observation.metadata for e in result.get_asset_observation_events()}
    assert set(observed) == {"market_bars", "signal_traces", "classifier_states", "daily_signal_summary"}
    assert observed["market_bars"]["archived_partitions"].value == 8
    assert observed["market_bars"]["archived_rows"].value == 8 * 78


def test_archive_job_with_only_bars_before_moves_only_bars(ops_settings):
    """ArchiveConfig: a cutoff given for some kinds archives only those kinds (an empty field is
    not filled in from the policy); the policy's cutoffs apply only when no cutoff is given."""
    before_summary = _summary(ops_settings)
    config = {"ops": {"archive_partitions": {"config": {"bars_before": DAYS[-1].isoformat()}}}}
    with dg.instance_for_test() as instance:
        result = code_location(ops_settings).resolve_job_def("archive_job").execute_in_process(instance=instance, run_config=config)
    assert result.success
    for symbol in SYMBOLS:
        assert _hot_days(ops_settings, "bars", symbol) == [DAYS[-1]]  # the given cutoff, not the policy's (2 days)
        assert _hot_days(ops_settings, "signals", symbol) == DAYS  # traces and summaries untouched
        assert _hot_days(ops_settings, "classifiers", symbol) == DAYS
    pd.testing.assert_frame_equal(_summary(ops_settings), before_summary)
    with _db(ops_settings) as conn:
        kinds = conn.execute("SELECT kind, count(*) FROM archive_manifest GROUP BY kind ORDER BY kind").fetchall()
    assert kinds == [("bars", 2 * 5)]
    meta = result.output_for_node("archive_partitions")
    assert meta == 2 * 5
    (materialized,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    cutoffs = materialized.event_specific_data.metadata["cutoffs"].value
    assert cutoffs == '{"bars": "2025-06-11", "summaries": null, "traces": null}'


def test_every_reader_and_downstream_asset_gives_the_same_answer_after_archiving(ops_settings):
    layout = _layout(ops_settings)
    history, traces = load_series(layout, "SPY", "5m")
    states = read_trace_history(layout, history, "classifiers")
    with _db(ops_settings) as conn:
        perf_before = conn.execute("SELECT * EXCLUDE (run_id, created_at, processed_at) FROM strategies ORDER BY strategy_id").df()
        regime_before = conn.execute("SELECT * FROM regime_performance ORDER BY ALL").df()
    summary_before = _summary(ops_settings)
    files_before = _file_view_rows(ops_settings)

    _archive(ops_settings)
    assert _hot_days(ops_settings, "signals") == TRACES_KEPT
    # SQL over the files: the *_all views give the rows of before, archived days included
    files_after = _file_view_rows(ops_settings, views=True)
    for kind, frame in files_before.items():
        pd.testing.assert_frame_equal(files_after[kind], frame, check_dtype=False)

    history2, traces2 = load_series(WorkspaceLayout(Path(ops_settings.workspace)), "SPY", "5m")  # archive found via the marker file
    pd.testing.assert_frame_equal(history.bars, history2.bars)
    assert history.spans == history2.spans
    for a, b in ((traces.rows, traces2.rows), (states.rows, read_trace_history(layout, history2, "classifiers").rows)):
        assert (a.series == b.series).all() and (a.idx == b.idx).all() and (a.val == b.val).all()
    # archived summary rows through the view
    pd.testing.assert_frame_equal(_summary(ops_settings, "daily_signal_summary_all"), summary_before)

    # downstream assets recomputed from the archived partitions: same performance, same regimes
    location = code_location(ops_settings)
    with dg.instance_for_test() as instance:
        assert location.resolve_job_def("analytics_job").execute_in_process(instance=instance).success
        tags = {"dagster/asset_partition_range_start": DAYS[0].isoformat(), "dagster/asset_partition_range_end": DAYS[-1].isoformat()}
        assert location.resolve_job_def("daily_summary_job").execute_in_process(instance=instance, tags=tags).success
    with _db(ops_settings) as conn:
        perf_after = conn.execute("SELECT * EXCLUDE (run_id, created_at, processed_at) FROM strategies ORDER BY strategy_id").df()
        regime_after = conn.execute("SELECT * FROM regime_performance ORDER BY ALL").df()
    pd.testing.assert_frame_equal(perf_before, perf_after)
    pd.testing.assert_frame_equal(regime_before, regime_after)
    # re-materialized summaries of archived days land hot; the view shows each day once
    pd.testing.assert_frame_equal(_summary(ops_settings, "daily_signal_summary_all"), summary_before)


def test_restore_brings_partitions_back_verified(ops_settings, monkeypatch):
    before_files = _hot_tables(ops_settings)
    before_summary = _summary(ops_settings)
    _archive(ops_settings)
    for name, value in {"ADMF_WORKSPACE": ops_settings.workspace, "ADMF_ARCHIVE_URL": ops_settings.archive_url}.items():
        monkeypatch.setenv(name, value)
    from admf_assets.cli.main import app

    out = CliRunner().invoke(app, ["archive", "restore", "--from", "2025-06-05", "--to", "2025-06-06"])
    assert out.exit_code == 0, out.output
    assert "restored 14 partition(s)" in out.output
    for symbol in SYMBOLS:
        assert _hot_days(ops_settings, "bars", symbol) == [DAYS[1], DAYS[2], *BARS_KEPT]
        assert _hot_days(ops_settings, "signals", symbol) == DAYS[1:]
    after_files = _hot_tables(ops_settings)
    for key, table in after_files.items():
        assert table.equals(before_files[key]) and table.schema.metadata == before_files[key].schema.metadata
    archive = ArchiveLocation(ops_settings.archive_url)
    assert list(archive.archived_days("bars", "SPY_5m")) == [DAYS[0], DAYS[3]]
    assert list(archive.archived_days("signals", "SPY_5m")) == [DAYS[0]]
    summary = _summary(ops_settings)
    assert sorted(set(summary["date"].dt.date)) == [DAYS[1], DAYS[2], *DAYS[-2:]]
    pd.testing.assert_frame_equal(_summary(ops_settings, "daily_signal_summary_all"), before_summary)
    with _db(ops_settings) as conn:
        assert conn.execute("SELECT count(*) FROM archive_manifest WHERE restored_at IS NOT NULL").fetchone()[0] == 14
        # the views hold each day once, restored days from their hot files again
        days = conn.execute("SELECT DISTINCT partition_date FROM signal_traces_all WHERE series = 'SPY_5m' ORDER BY 1").fetchall()
        assert [d[0] for d in days] == DAYS
    out = CliRunner().invoke(app, ["archive", "status"])
    assert out.exit_code == 0 and "SPY_5m" in out.output
    assert "hot_and_archived" in out.output and "e+0" not in out.output  # row counts as integers
    out = CliRunner().invoke(app, ["archive", "restore", "--from", "2025-06-09", "--to", "2025-06-01"])
    assert out.exit_code == 2 and "before --from" in out.output


def _month_rows(settings, kind_dir: str) -> pa.Table:
    return pq.read_table(Path(settings.archive_url) / kind_dir / "2025-06.parquet")


def test_crash_after_copy_before_delete_then_rerun_leaves_each_row_once(ops_settings, monkeypatch):
    before_files = _hot_tables(ops_settings)

    def crash(path):
        raise RuntimeError("simulated crash after the copy, before the delete")

    monkeypatch.setattr(archive_mod, "_delete_hot", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _archive(ops_settings)
    # the copy exists, nothing was deleted
    assert _hot_days(ops_settings, "bars") == DAYS
    assert _month_rows(ops_settings, "bars/AAPL_5m").num_rows == 4 * 78
    monkeypatch.undo()

    _archive(ops_settings)
    for symbol in SYMBOLS:
        for kind, sub, moved in (("bars", "bars", DAYS[:4]), ("signals", "traces/signals", DAYS[:3]), ("classifiers", "traces/classifiers", DAYS[:3])):
            table = _month_rows(ops_settings, f"{sub}/{symbol}_5m")
            expected = sum(before_files[(kind, symbol, d)].num_rows for d in moved)
            assert table.num_rows == expected  # each row exactly once
            keys = table.select(["partition_date", "ts"] + (["strat"] if kind == "signals" else ["strat"] if kind == "classifiers" else []))
            assert keys.group_by(keys.column_names).aggregate([]).num_rows == expected
    assert _hot_days(ops_settings, "bars") == BARS_KEPT


def test_crash_before_summary_delete_then_rerun_leaves_each_row_once(ops_settings, monkeypatch):
    before_summary = _summary(ops_settings)
    real = archive_mod.record_manifest

    def failing(conn, entries, **kw):
        if entries and entries[0].kind.startswith("tables/"):
            raise RuntimeError("simulated crash in the summary transaction")
        return real(conn, entries, **kw)

    monkeypatch.setattr(archive_mod, "record_manifest", failing)
    with pytest.raises(RuntimeError, match="summary transaction"):
        _archive(ops_settings)
    pd.testing.assert_frame_equal(_summary(ops_settings), before_summary)  # rolled back: rows still hot
    monkeypatch.undo()
    _archive(ops_settings)
    archived = _month_rows(ops_settings, "tables/daily_signal_summary")
    assert archived.num_rows == (before_summary["date"] < pd.Timestamp(DAYS[-2])).sum()
    pd.testing.assert_frame_equal(_summary(ops_settings, "daily_signal_summary_all"), before_summary)


def test_checksum_mismatch_deletes_nothing_and_says_which_partition(ops_settings, monkeypatch):
    real = ArchiveLocation.write_month

    def corrupting(self, path, month, expected=None):
        table = month.table
        if "close" in table.column_names:  # one bar's close altered on its way to the archive
            close = table["close"].to_pylist()
            close[0] = close[0] * 1.0001
            table = table.set_column(table.column_names.index("close"), "close", pa.array(close, pa.float64()))
        return real(self, path, archive_mod.MonthFile(table, month.partitions), expected)

    monkeypatch.setattr(ArchiveLocation, "write_month", corrupting)
    with pytest.raises(ArchiveVerificationError) as err:
        _archive(ops_settings)
    message = str(err.value)
    assert "bars/AAPL_5m/2025-06.parquet" in message and "2025-06-04" in message and "checksum" in message
    assert "nothing deleted" in message
    for symbol in SYMBOLS:
        assert _hot_days(ops_settings, "bars", symbol) == DAYS
    with _db(ops_settings) as conn:
        assert conn.execute("SELECT count(*) FROM archive_manifest WHERE kind = 'bars'").fetchone()[0] == 0


def _archive_in_process(settings, barrier):
    barrier.wait()
    entries = _archive(settings)
    return len(entries)


def _worker(settings, barrier, queue):
    try:
        queue.put(("ok", _archive_in_process(settings, barrier)))
    except Exception as err:  # reported to the test
        queue.put(("error", repr(err)))


def test_two_archive_runs_at_once_corrupt_nothing(ops_settings):
    before_files = _hot_tables(ops_settings)
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(ops_settings, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(status == "ok" for status, _ in results), results
    # the second run waited for the lock and found nothing left to move
    assert sorted(n for _, n in results) == [0, 2 * 4 + 2 * 3 * 2 + 4]
    for symbol in SYMBOLS:
        table = _month_rows(ops_settings, f"traces/signals/{symbol}_5m")
        assert table.num_rows == sum(before_files[("signals", symbol, d)].num_rows for d in DAYS[:3])
    with _db(ops_settings) as conn:
        assert conn.execute("SELECT count(*) FROM archive_manifest").fetchone()[0] == 2 * 4 + 2 * 3 * 2 + 4


def test_archive_lock_makes_a_second_run_wait(ops_settings):
    with archive_lock(_layout(ops_settings)):
        with pytest.raises(Timeout):
            _archive(ops_settings, lock_timeout=0.5)
    assert _hot_days(ops_settings, "bars") == DAYS


def test_fsspec_archive_url_is_readable_by_the_store(ops_settings):
    url = f"memory://admf-ops-{uuid.uuid4().hex[:8]}"
    layout = WorkspaceLayout(Path(ops_settings.workspace), archive=url)
    before = read_bar_history(layout, "AAPL", "5m")
    execute_archive(root=ops_settings.workspace, archive_url=url, database=str(layout.duckdb_file), cutoffs={"bars": DAYS[-1], "traces": None, "summaries": None})
    assert _hot_days(ops_settings, "bars", "AAPL") == [DAYS[-1]]
    archive = ArchiveLocation(url)
    assert list(archive.month_files("bars", "AAPL_5m")) == ["2025-06"]
    after = read_bar_history(layout, "AAPL", "5m")
    pd.testing.assert_frame_equal(before.bars, after.bars)
    assert before.fingerprints() == after.fingerprints()
