"""strategy_index's file views: re-created only when their definition changes
(admf_assets/defs/analytics/assets.py ``ensure_file_views``)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from admf_assets.core.archive import ArchiveLocation, refresh_file_views
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.defs.analytics.assets import ensure_file_views


def _rows(values):
    return pa.table({"idx": pa.array(range(len(values)), pa.int32()), "val": pa.array(values, pa.int8())})


def _count(conn, view):
    return conn.execute(f"SELECT count(*) FROM {view}").fetchone()[0]


def test_views_are_kept_while_their_definition_is_unchanged(tmp_path):
    layout = WorkspaceLayout(tmp_path / "ws")
    archive = ArchiveLocation(str(tmp_path / "archive"))
    d3, d4, d5 = dt.date(2025, 6, 3), dt.date(2025, 6, 4), dt.date(2025, 6, 5)
    first = layout.kind_file("signals", "SPY", "5m", d4)
    first.parent.mkdir(parents=True)
    pq.write_table(_rows([1, -1]), first)
    with duckdb.connect(str(tmp_path / "a.duckdb")) as conn:
        assert ensure_file_views(conn, layout, archive) == (["signal_traces_all"], True)
        assert _count(conn, "signal_traces_all") == 2
        # unchanged definition: nothing re-created, and a new day file is seen (globs bind at query time)
        pq.write_table(_rows([0, 1, 0]), layout.kind_file("signals", "SPY", "5m", d5))
        assert ensure_file_views(conn, layout, archive) == (["signal_traces_all"], False)
        assert _count(conn, "signal_traces_all") == 5
        # a new kind gets its view
        bars = layout.kind_file("bars", "SPY", "5m", d4)
        bars.parent.mkdir(parents=True)
        pq.write_table(pa.table({"close": [1.0, 2.0]}), bars)
        assert ensure_file_views(conn, layout, archive) == (["market_bars_all", "signal_traces_all"], True)
        assert _count(conn, "market_bars_all") == 2
        # archived rows change the definition (hot + archive union)
        archive.merge_month(archive.month_path("signals", "SPY_5m", "2025-06"), {d3: (_rows([1, 1, 1, 1]), {})})
        assert ensure_file_views(conn, layout, archive) == (["market_bars_all", "signal_traces_all"], True)
        assert _count(conn, "signal_traces_all") == 9
        assert ensure_file_views(conn, layout, archive)[1] is False
        # a view re-created by someone else (archive or restore run) loses the comment: re-created again
        refresh_file_views(conn, layout, archive)
        assert ensure_file_views(conn, layout, archive)[1] is True
        # a kind whose files are all gone loses its view
        bars.unlink()
        assert ensure_file_views(conn, layout, archive) == (["signal_traces_all"], True)
        names = {r[0] for r in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert "market_bars_all" not in names and "signal_traces_all" in names
