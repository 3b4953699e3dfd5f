"""Storage layout of an admf workspace: where every file of the system of record lives.

Parquet is the system of record; one file per (trading day, symbol) partition keeps files few
(never one file per strategy per day) and lets re-materializing a partition replace exactly one
file atomically::

    <root>/bars/<SYM>_<tf>/<YYYY-MM-DD>.parquet                 validated market bars
    <root>/traces/signals/<SYM>_<tf>/<YYYY-MM-DD>.parquet       sparse strategy traces (all strategies)
    <root>/traces/classifiers/<SYM>_<tf>/<YYYY-MM-DD>.parquet   sparse regime-classifier traces
    <root>/strategy_index.parquet                               one row per strategy
    <root>/analytics.duckdb                                     DuckDB analytics tables
    <root>/archive_location.txt                                 where partitions past retention went

Partitions past the retention policy move to an archive (a folder or an fsspec URL, see
:mod:`admf_assets.core.archive`) that mirrors these folders with one zstd Parquet file per month::

    <archive>/bars/<SYM>_<tf>/<YYYY-MM>.parquet                 + column partition_date
    <archive>/traces/signals/<SYM>_<tf>/<YYYY-MM>.parquet
    <archive>/traces/classifiers/<SYM>_<tf>/<YYYY-MM>.parquet
    <archive>/tables/daily_signal_summary/<YYYY-MM>.parquet     rows moved out of DuckDB
    <archive>/postgres/daily_signal_summary/<YYYY-MM>.parquet   detached Postgres month partitions

Paths stored inside data (``trace_path`` in the strategy index) are relative to ``<root>`` and
use ``/`` so that they resolve from DuckDB with ``SET file_search_path = '<root>'``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

_SERIES_RE = re.compile(r"^[A-Za-z0-9.\-]+$")
_DATE_FILE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")

ARCHIVE_MARKER = "archive_location.txt"
"""File under the workspace root naming the archive URL (written by the archive job), so any
:class:`WorkspaceLayout` of the root finds archived partitions without being told."""

FILE_KINDS = ("bars", "signals", "classifiers")
"""Partitioned file kinds of the system of record (one file per trading day and series)."""


def kind_subdir(kind: str) -> str:
    """``bars`` -> ``bars``, ``signals`` -> ``traces/signals``, ``classifiers`` -> ``traces/classifiers``.

    Raises:
        ValueError: for another kind.
    """
    if kind == "bars":
        return "bars"
    if kind in ("signals", "classifiers"):
        return f"traces/{kind}"
    raise ValueError(f"unknown partition kind {kind!r}; expected one of {', '.join(FILE_KINDS)}")


def _check_part(kind: str, value: str) -> str:
    if not _SERIES_RE.match(value):
        raise ValueError(f"invalid {kind} {value!r}: only letters, digits, '.', '-' are allowed")
    return value


@dataclass(frozen=True)
class WorkspaceLayout:
    """Path scheme of one workspace rooted at ``root``.

    Raises ``ValueError`` (from every method taking a symbol or timeframe) when the value holds
    characters outside ``[A-Za-z0-9.-]``, so user input can never escape the workspace.
    """

    root: Path
    archive: str | None = None
    """Archive URL or folder used while the workspace has no ``<root>/archive_location.txt``
    (nothing archived yet); once the archive job wrote that marker, the marker wins."""

    @property
    def archive_url(self) -> str | None:
        """The archive of this workspace: the URL recorded in :data:`ARCHIVE_MARKER` by the
        archive job (where the archived partitions actually are), else :attr:`archive`, else
        ``None`` (nothing archived).

        The marker wins over a configured URL so that changing ``ADMF_ARCHIVE_URL`` never hides
        partitions archived before the change (the archive job refuses such a change while the
        manifest lists partitions in the old archive, see
        :func:`admf_assets.core.archive.check_archive_url`).
        """
        marker = Path(self.root) / ARCHIVE_MARKER
        if marker.is_file():
            text = marker.read_text().strip()
            if text:
                return text
        return self.archive or None

    def kind_dir(self, kind: str, symbol: str, timeframe: str) -> Path:
        """Hot folder of a series for ``kind`` in :data:`FILE_KINDS`."""
        return Path(self.root) / kind_subdir(kind) / self.series_key(symbol, timeframe)

    def kind_file(self, kind: str, symbol: str, timeframe: str, day: dt.date) -> Path:
        """Hot file of one (day, series) partition for ``kind`` in :data:`FILE_KINDS`."""
        return self.kind_dir(kind, symbol, timeframe) / f"{day.isoformat()}.parquet"

    def series_key(self, symbol: str, timeframe: str) -> str:
        """``SPY_5m``: the folder name of one bar series."""
        return f"{_check_part('symbol', symbol)}_{_check_part('timeframe', timeframe)}"

    # -- folders (all raise ValueError for a symbol/timeframe outside [A-Za-z0-9.-]) ----------
    def bars_dir(self, symbol: str, timeframe: str) -> Path:
        """Folder of a series' bar day files."""
        return self.root / "bars" / self.series_key(symbol, timeframe)

    def signals_dir(self, symbol: str, timeframe: str) -> Path:
        return self.root / "traces" / "signals" / self.series_key(symbol, timeframe)

    def classifiers_dir(self, symbol: str, timeframe: str) -> Path:
        return self.root / "traces" / "classifiers" / self.series_key(symbol, timeframe)

    # -- files -------------------------------------------------------------------------------
    def bars_file(self, symbol: str, timeframe: str, day: dt.date) -> Path:
        return self.bars_dir(symbol, timeframe) / f"{day.isoformat()}.parquet"

    def signals_file(self, symbol: str, timeframe: str, day: dt.date) -> Path:
        return self.signals_dir(symbol, timeframe) / f"{day.isoformat()}.parquet"

    def classifiers_file(self, symbol: str, timeframe: str, day: dt.date) -> Path:
        return self.classifiers_dir(symbol, timeframe) / f"{day.isoformat()}.parquet"

    @property
    def strategy_index_file(self) -> Path:
        return self.root / "strategy_index.parquet"

    @property
    def duckdb_file(self) -> Path:
        return self.root / "analytics.duckdb"

    def signals_glob(self, symbol: str, timeframe: str) -> str:
        """Relative glob of a series' signal traces, the ``trace_path`` of the strategy index."""
        return f"traces/signals/{self.series_key(symbol, timeframe)}/*.parquet"

    # -- discovery ---------------------------------------------------------------------------
    @staticmethod
    def dated_files(folder: Path) -> dict[dt.date, Path]:
        """``{trading day: file}`` for the ``YYYY-MM-DD.parquet`` files of ``folder`` (sorted).

        Temporary files of an interrupted atomic write (``.tmp`` suffixes) are ignored.
        """
        if not folder.is_dir():
            return {}
        found = {}
        for path in folder.iterdir():
            m = _DATE_FILE_RE.match(path.name)
            if m:
                found[dt.date.fromisoformat(m.group(1))] = path
        return dict(sorted(found.items()))

    def series_on_disk(self, kind: str = "bars") -> list[tuple[str, str]]:
        """``[(symbol, timeframe)]`` of the hot series folders present under ``bars`` or a trace
        kind (series held only in the archive: :func:`admf_assets.core.store.series_with_traces`)."""
        base = self.root / "bars" if kind == "bars" else self.root / "traces" / kind
        if not base.is_dir():
            return []
        out = []
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            symbol, _, timeframe = d.name.rpartition("_")
            if symbol and timeframe:
                out.append((symbol, timeframe))
        return out
