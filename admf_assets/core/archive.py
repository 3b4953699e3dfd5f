"""The archive of partitions past retention: monthly zstd Parquet compaction, checksums, verify.

No Dagster here: the archive job (``admf_assets/defs/operations``) and ``admf archive`` call it.

**Layout.** The archive (a local folder or any fsspec URL, e.g. ``s3://bucket/admf`` or
``memory://x``) mirrors the hot folders (:mod:`admf_assets.core.layout`) with ONE file per month
per series: ``bars/SPY_5m/2025-06.parquet``, ``traces/signals/SPY_5m/2025-06.parquet``,
``tables/daily_signal_summary/2025-06.parquet``, ``postgres/daily_signal_summary/2025-06.parquet``.
A month file holds the rows of its partitions with an extra ``partition_date`` (date32) column.

**Per-partition Parquet metadata.** A hot trace file carries key-value metadata that readers check
(``admf.configurations``, ``admf.history_start``, ``admf.history_fingerprint``, ...). The month
file keeps every partition's key-value metadata in its footer: ``admf.archive.partitions`` maps
``YYYY-MM-DD`` to ``{key: blob id}`` and ``admf.archive.blobs`` maps blob id (sha256[:16] of the
value) to the base64 value, so the configuration JSON shared by every day of a month is stored once.
:func:`ArchiveLocation.read_partition` returns each partition's table and metadata exactly as the
hot file had them.

**Idempotent append.** Archiving a partition rewrites its month file atomically (temp file + move)
with the union of the month's other partitions and the new partition's rows; rows of a partition
already in the file are replaced, never appended twice. So a run that stops after the copy and
before deleting the hot files, then runs again, leaves every row exactly once. The columns of a
new partition must equal those already in the file (names, order, types): a schema change is
refused with :class:`ArchiveError`, never merged.

**Verification.** The footer also records each partition's row count and :func:`rows_checksum`
(``admf.archive.stats``). Every rewrite reads its temp file back and compares EVERY partition: the
new ones with the source rows, the kept ones with the old footer; any difference raises
:class:`ArchiveVerificationError`, the old month file stays and nothing is deleted.

**Durability.** For a local archive the temp file is fsynced, moved with ``os.replace`` and its
folder (and parents up to the archive root) fsynced before :meth:`ArchiveLocation.write_month`
returns, i.e. before any hot file is deleted (hot writes do the same,
:func:`admf_assets.core.traces.write_parquet_atomic`).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from admf_assets.core.layout import ARCHIVE_MARKER, FILE_KINDS, WorkspaceLayout, kind_subdir

PARTITION_COLUMN = "partition_date"
"""date32 column added to every archived row: the trading day (partition) it belongs to."""
PARTITIONS_KEY = b"admf.archive.partitions"
BLOBS_KEY = b"admf.archive.blobs"
STATS_KEY = b"admf.archive.stats"
"""Footer key: ``{YYYY-MM-DD: [rows, checksum]}`` of every partition, verified when the file was
written; a later rewrite of the month verifies the partitions it keeps against it."""
SUMMARY_TABLE = "daily_signal_summary"
SUMMARY_KIND = "tables/daily_signal_summary"
POSTGRES_SUMMARY_KIND = "postgres/daily_signal_summary"
LOCK_NAME = "archive.lock"


class ArchiveError(RuntimeError):
    """The archive cannot be read or written (bad month file, schema clash); names the file."""


class ArchiveVerificationError(ArchiveError):
    """Rows read back from the archive differ from the source (count or checksum); nothing was
    deleted. The message names the month file and each partition that differs."""


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def rows_checksum(table: pa.Table) -> str:
    """Order-independent checksum of the rows of ``table`` (16 hex characters).

    Each row is hashed with :func:`pandas.util.hash_pandas_object` (SipHash-based uint64 over
    every column value in column order, ``index=False``); the checksum is the sum of the row hashes
    modulo 2**64, mixed with the column names. Row order does not matter (the archive sorts by
    partition), but any changed value, missing or duplicated row changes it. Schema metadata and
    the ``partition_date`` column are ignored, so hot and archived rows compare directly.
    """
    if PARTITION_COLUMN in table.column_names:
        table = table.drop_columns([PARTITION_COLUMN])
    names = hashlib.sha256("\x1f".join(table.column_names).encode()).digest()[:8]
    total = int.from_bytes(names, "little")
    if table.num_rows:
        df = table.replace_schema_metadata(None).to_pandas()
        row_hashes = pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64)
        total = (total + int(row_hashes.sum(dtype=np.uint64))) % (1 << 64)
    return f"{total:016x}"


@dataclass(frozen=True)
class PartitionStats:
    """Row count and :func:`rows_checksum` of one partition's rows."""

    rows: int
    checksum: str


def stats_of(table: pa.Table) -> PartitionStats:
    """:class:`PartitionStats` of ``table``."""
    return PartitionStats(table.num_rows, rows_checksum(table))


@dataclass(frozen=True)
class ManifestEntry:
    """One move recorded in the ``archive_manifest`` table (sql/duckdb/020_operations.sql).

    Attributes:
        kind: ``bars``, ``signals``, ``classifiers``, ``tables/daily_signal_summary`` or
            ``postgres/daily_signal_summary``.
        series: ``SPY_5m`` for file kinds, the table name otherwise.
        partition_key: ``YYYY-MM-DD`` (a trading day; Postgres months are recorded per day too).
        source: the hot file or table the rows left. target: the month file that holds them.
        rows, checksum: verified on both sides (:func:`rows_checksum`).
    """

    kind: str
    series: str
    partition_key: str
    source: str
    target: str
    rows: int
    checksum: str


def month_of(day: dt.date) -> str:
    """``2025-06`` for any day of June 2025."""
    return f"{day.year:04d}-{day.month:02d}"


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """``(first day, first day of the next month)`` of ``YYYY-MM``.

    Raises:
        ValueError: for a malformed month.
    """
    year, mon = (int(x) for x in month.split("-"))
    first = dt.date(year, mon, 1)
    return first, first + dt.timedelta(days=calendar.monthrange(year, mon)[1])


# --------------------------------------------------------------------------------------------
# The archive location
# --------------------------------------------------------------------------------------------


@dataclass
class MonthFile:
    """A month file read whole: rows (with ``partition_date``), per-partition metadata and the
    per-partition :class:`PartitionStats` recorded in its footer (empty for files written before
    the footer held them)."""

    table: pa.Table
    partitions: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    stats: dict[str, PartitionStats] = field(default_factory=dict)

    def days(self) -> list[dt.date]:
        """Trading days (partitions) held, ascending."""
        return sorted(dt.date.fromisoformat(d) for d in self.partitions)

    def partition(self, day: dt.date) -> tuple[pa.Table, dict[bytes, bytes]]:
        """The rows of ``day`` without ``partition_date``, with the partition's own schema metadata."""
        key = day.isoformat()
        if key not in self.partitions:
            raise KeyError(key)
        mask = pc.equal(self.table[PARTITION_COLUMN], pa.scalar(day, pa.date32()))
        part = self.table.filter(mask).drop_columns([PARTITION_COLUMN])
        meta = self.partitions[key]
        return part.replace_schema_metadata(meta or None), meta


class ArchiveLocation:
    """An archive root given as a local folder or an fsspec URL (see module docstring).

    Raises:
        ValueError: for an empty URL.
    """

    def __init__(self, url: str | os.PathLike[str]):
        url = str(url).strip()
        if not url:
            raise ValueError("empty archive location")
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/") or "/"
        self._cache: dict[str, MonthFile] = {}

    @property
    def is_local(self) -> bool:
        """True for a local folder (DuckDB can then read the month files directly)."""
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,))

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def display(self, path: str) -> str:
        """``path`` as a user sees it (with the URL scheme for remote archives)."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    # -- paths ---------------------------------------------------------------------------------
    def kind_dir(self, kind: str, series: str) -> str:
        """Folder of a series (file kinds) or a table (``tables/...``, ``postgres/...``)."""
        if kind in FILE_KINDS:
            return self._join(kind_subdir(kind), series)
        if kind in (SUMMARY_KIND, POSTGRES_SUMMARY_KIND):
            return self._join(kind)
        raise ValueError(f"unknown archive kind {kind!r}")

    def kind_glob(self, kind: str) -> str:
        """Glob of every month file of a file kind, all series (``<root>/traces/signals/*/*.parquet``)."""
        return self._join(kind_subdir(kind), "*", "*.parquet")

    def month_path(self, kind: str, series: str, month: str) -> str:
        """The month file of ``kind``/``series`` for ``YYYY-MM``."""
        month_bounds(month)  # validates
        return f"{self.kind_dir(kind, series)}/{month}.parquet"

    def month_files(self, kind: str, series: str) -> dict[str, str]:
        """``{YYYY-MM: path}`` of the month files present (sorted)."""
        folder = self.kind_dir(kind, series)
        try:
            names = self.fs.ls(folder, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for name in names:
            base = str(name).rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(".parquet") and not base.startswith(".") and len(base) == len("2025-06.parquet"):
                out[base[:7]] = str(name)
        return dict(sorted(out.items()))

    def series(self, kind: str) -> list[str]:
        """Series folder names (``SPY_5m``) present in the archive for a file kind."""
        folder = self._join(kind_subdir(kind))
        try:
            entries = self.fs.ls(folder, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")

    # -- reading -------------------------------------------------------------------------------
    def _footer(self, path: str) -> dict[bytes, bytes]:
        with self.fs.open(path, "rb") as fh:
            return pq.read_schema(fh).metadata or {}

    def partitions_in(self, path: str) -> list[dt.date]:
        """Trading days held by a month file (footer only)."""
        raw = self._footer(path).get(PARTITIONS_KEY)
        if raw is None:
            raise ArchiveError(f"{self.display(path)}: not an admf archive month file (no {PARTITIONS_KEY.decode()} metadata)")
        return sorted(dt.date.fromisoformat(d) for d in json.loads(raw))

    def archived_days(self, kind: str, series: str) -> dict[dt.date, str]:
        """``{day: month file}`` of every archived partition of a series (sorted)."""
        out = {}
        for path in self.month_files(kind, series).values():
            for day in self.partitions_in(path):
                out[day] = path
        return dict(sorted(out.items()))

    def read_month(self, path: str, *, cached: bool = False) -> MonthFile:
        """Read a month file whole (``cached``: reuse an earlier read of this object).

        Raises:
            ArchiveError: when the file is not an archive month file.
        """
        if cached and path in self._cache:
            return self._cache[path]
        with self.fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
        meta = table.schema.metadata or {}
        if PARTITIONS_KEY not in meta or PARTITION_COLUMN not in table.column_names:
            raise ArchiveError(f"{self.display(path)}: not an admf archive month file")
        blobs = {k: base64.b64decode(v) for k, v in json.loads(meta.get(BLOBS_KEY, b"{}")).items()}
        partitions = {
            day: {k.encode(): blobs[b] for k, b in keys.items()} for day, keys in json.loads(meta[PARTITIONS_KEY]).items()
        }
        stats = {day: PartitionStats(int(v[0]), str(v[1])) for day, v in json.loads(meta.get(STATS_KEY, b"{}")).items()}
        month = MonthFile(table.replace_schema_metadata(None), partitions, stats)
        if cached:
            self._cache[path] = month
        return month

    def read_partition(self, kind: str, series: str, day: dt.date, *, cached: bool = True) -> tuple[pa.Table, dict[bytes, bytes]]:
        """Rows and key-value metadata of one archived partition, as the hot file had them
        (``cached=False``: read the month file afresh, e.g. after an archive run rewrote it).

        Raises:
            KeyError: when the partition is not archived.
        """
        path = self.month_path(kind, series, month_of(day))
        if not self.fs.exists(path):
            raise KeyError(f"{kind}/{series}/{day.isoformat()}")
        return self.read_month(path, cached=cached).partition(day)

    def clear_cache(self) -> None:
        """Forget month files read with ``cached=True``."""
        self._cache.clear()

    # -- writing -------------------------------------------------------------------------------
    def write_month(self, path: str, month: MonthFile, expected: Mapping[dt.date, PartitionStats] | None = None) -> None:
        """Write ``month`` to ``path`` atomically and durably; an empty month removes the file.

        The rows go to a temp file in the same folder. With ``expected`` (stats of EVERY partition
        of ``month``) the temp file is read back and verified first (:meth:`verify_month`), so a
        failed verification leaves the previous month file as it was. Then, for a local archive:
        ``fsync`` of the temp file, ``os.replace`` onto ``path`` and ``fsync`` of the folder (and
        of its parents up to the archive root, which a first write may have created), so the month
        file survives a power loss before any caller deletes the hot copies. Other fsspec stores
        (``s3://``...) have no fsync: the upload completes before the move, and the moved file is
        verified again. The footer records each partition's metadata and stats (:data:`STATS_KEY`).

        Raises:
            ArchiveVerificationError: the written rows differ from ``expected`` (nothing replaced).
            ArchiveError: ``expected`` does not name exactly the month's partitions.
            OSError: the file system failed (the temp file is removed).
        """
        self._cache.pop(path, None)
        if not month.partitions:
            if self.fs.exists(path):
                self.fs.rm(path)
                if self.is_local:
                    self._fsync_folders(path.rsplit("/", 1)[0])
            return
        if expected is not None:
            if {d.isoformat() for d in expected} != set(month.partitions):
                raise ArchiveError(f"{self.display(path)}: expected stats for {sorted(d.isoformat() for d in expected)}, "
                                   f"the month holds {sorted(month.partitions)}")
            stats = {d.isoformat(): v for d, v in expected.items()}
        else:
            stats = {d: stats_of(month.partition(dt.date.fromisoformat(d))[0]) for d in month.partitions}
        blobs: dict[str, str] = {}
        parts: dict[str, dict[str, str]] = {}
        for day, meta in sorted(month.partitions.items()):
            keys = {}
            for k, v in meta.items():
                blob_id = hashlib.sha256(v).hexdigest()[:16]
                blobs[blob_id] = base64.b64encode(v).decode()
                keys[k.decode()] = blob_id
            parts[day] = keys
        order = pc.sort_indices(month.table, sort_keys=[(PARTITION_COLUMN, "ascending")])
        table = month.table.take(order).replace_schema_metadata(
            {
                PARTITIONS_KEY: json.dumps(parts, sort_keys=True).encode(),
                BLOBS_KEY: json.dumps(blobs, sort_keys=True).encode(),
                STATS_KEY: json.dumps({d: [v.rows, v.checksum] for d, v in stats.items()}, sort_keys=True).encode(),
            }
        )
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.tmp"
        try:
            if self.is_local:
                with open(tmp, "wb") as fh:
                    pq.write_table(table, fh, compression="zstd")
                    fh.flush()
                    os.fsync(fh.fileno())
            else:
                with self.fs.open(tmp, "wb") as fh:
                    pq.write_table(table, fh, compression="zstd")
            if expected is not None:
                self.verify_month(tmp, expected, label=path)
            if self.is_local:
                os.replace(tmp, path)
            else:
                self.fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm(tmp)
            raise
        if self.is_local:
            self._fsync_folders(folder)
        elif expected is not None:
            self.verify_month(path, expected)

    def _fsync_folders(self, folder: str) -> None:
        """fsync ``folder`` and its parents up to the archive root (local archives)."""
        from admf_assets.core.traces import fsync_dir

        root = Path(self.root)
        current = Path(folder)
        while True:
            fsync_dir(current)
            if current == root or root not in current.parents:
                break
            current = current.parent

    def _check_schema(self, path: str, reference: pa.Schema, reference_days: Sequence[str], day: dt.date, table: pa.Table) -> None:
        got = table.schema.remove_metadata()
        if got.equals(reference, check_metadata=False):
            return
        want_cols = {f.name: str(f.type) for f in reference}
        got_cols = {f.name: str(f.type) for f in got}
        diff = []
        for name in sorted(set(want_cols) | set(got_cols)):
            if want_cols.get(name) != got_cols.get(name):
                diff.append(f"{name}: {got_cols.get(name, 'missing')} (archived: {want_cols.get(name, 'missing')})")
        if not diff:
            diff.append(f"column order {list(got_cols)} (archived: {list(want_cols)})")
        raise ArchiveError(
            f"{self.display(path)}: partition {day.isoformat()} has other columns than the partitions already archived there "
            f"({', '.join(reference_days[:3])}{'...' if len(reference_days) > 3 else ''}): {'; '.join(diff)}. Nothing was archived or deleted; "
            "a schema change needs the month restored (admf archive restore) and re-materialized before it is archived again"
        )

    def merge_month(
        self, path: str, new: Mapping[dt.date, tuple[pa.Table, Mapping[bytes, bytes]]], *, drop: Iterable[dt.date] = ()
    ) -> dict[dt.date, PartitionStats]:
        """Rewrite a month file with ``new`` partitions replacing any rows they already had there
        (and without the partitions of ``drop``, in the same rewrite).

        Every partition of the rewritten file is verified before it replaces the old one
        (:meth:`write_month`): the new ones against :func:`rows_checksum` of the given tables, the
        kept ones against the stats in the old file's footer (computed from its rows for files
        written before the footer held them). Columns (names, order, types) must match the
        partitions the file keeps: a schema change is refused, never silently merged.

        Returns:
            The verified :class:`PartitionStats` of the ``new`` partitions.

        Raises:
            ArchiveError: a new partition's columns differ from the month file's (names the file,
                the partition and each column); the file is left as it was.
            ArchiveVerificationError: a partition read back differs (names file and partition);
                the file is left as it was.
        """
        existing = self.read_month(path) if self.fs.exists(path) else MonthFile(pa.table({}), {})
        dropped = set(drop)
        keep = {d: m for d, m in existing.partitions.items() if dt.date.fromisoformat(d) not in new and dt.date.fromisoformat(d) not in dropped}
        expected: dict[dt.date, PartitionStats] = {}
        tables = []
        reference: pa.Schema | None = None
        reference_days: list[str] = []
        if keep:  # the partitions that stay fix the columns (replacing every partition may change them)
            reference = existing.table.schema.remove(existing.table.schema.get_field_index(PARTITION_COLUMN)).remove_metadata()
            reference_days = sorted(keep)
        if keep:
            mask = pc.is_in(existing.table[PARTITION_COLUMN], value_set=pa.array([dt.date.fromisoformat(d) for d in keep], pa.date32()))
            tables.append(existing.table.filter(mask))
            for d in keep:
                day = dt.date.fromisoformat(d)
                expected[day] = existing.stats.get(d) or stats_of(existing.partition(day)[0])
        new_stats = {}
        for day, (table, meta) in sorted(new.items()):
            plain = table.replace_schema_metadata(None)
            if reference is None:
                reference, reference_days = plain.schema.remove_metadata(), [day.isoformat()]
            self._check_schema(path, reference, reference_days, day, plain)
            new_stats[day] = expected[day] = stats_of(plain)
            tables.append(plain.append_column(PARTITION_COLUMN, pa.array([day] * plain.num_rows, pa.date32())))
            keep[day.isoformat()] = dict(meta)
        try:
            merged = pa.concat_tables(tables) if tables else pa.table({})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ArchiveError(f"{self.display(path)}: the new partitions' columns do not match the month file: {err}") from err
        self.write_month(path, MonthFile(merged, keep), expected)
        return new_stats

    def remove_partitions(self, path: str, days: Iterable[dt.date]) -> None:
        """Rewrite a month file without ``days`` (deleting it when nothing is left); the kept
        partitions are verified against the footer stats before the file is replaced.

        Raises:
            ArchiveVerificationError: a kept partition differs from its footer stats (the file
                is left as it was).
        """
        month = self.read_month(path)
        drop = {d.isoformat() for d in days}
        keep = {d: m for d, m in month.partitions.items() if d not in drop}
        expected = {dt.date.fromisoformat(d): month.stats.get(d) or stats_of(month.partition(dt.date.fromisoformat(d))[0]) for d in keep}
        mask = pc.invert(pc.is_in(month.table[PARTITION_COLUMN], value_set=pa.array([dt.date.fromisoformat(d) for d in drop], pa.date32())))
        self.write_month(path, MonthFile(month.table.filter(mask), keep), expected)

    def verify_month(self, path: str, expected: Mapping[dt.date, PartitionStats], *, label: str | None = None) -> None:
        """Read the month file back and compare each partition's rows with ``expected``.

        ``label``: the file named in the error (the month file when ``path`` is its temp file).

        Raises:
            ArchiveVerificationError: naming the file and each partition that differs.
        """
        month = self.read_month(path)
        problems = []
        for day, want in sorted(expected.items()):
            if day.isoformat() not in month.partitions:
                problems.append(f"{day.isoformat()}: missing")
                continue
            got = stats_of(month.partition(day)[0])
            if got != want:
                problems.append(f"{day.isoformat()}: {got.rows} rows checksum {got.checksum}, source {want.rows} rows checksum {want.checksum}")
        if problems:
            raise ArchiveVerificationError(
                f"archive verification failed for {self.display(label or path)} (nothing deleted from hot storage, month file not replaced): "
                + "; ".join(problems)
            )

    # -- DuckDB ------------------------------------------------------------------------------
    def summary_glob(self) -> str | None:
        """Glob of the archived ``daily_signal_summary`` month files for DuckDB (local archives
        only; ``None`` when there are none)."""
        if not self.is_local or not self.month_files(SUMMARY_KIND, SUMMARY_TABLE):
            return None
        return f"{self.kind_dir(SUMMARY_KIND, SUMMARY_TABLE)}/*.parquet"


# --------------------------------------------------------------------------------------------
# Locks and markers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def archive_lock(layout: WorkspaceLayout, timeout: float = 600.0) -> Iterator[None]:
    """Hold ``<workspace>/archive.lock`` (cross-process, :class:`filelock.FileLock`), so two archive
    or restore runs never rewrite the same month file at once; the second waits.

    Raises:
        filelock.Timeout: when the lock is not obtained within ``timeout`` seconds.
    """
    root = Path(layout.root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / LOCK_NAME), timeout=timeout):
        yield


def write_marker(layout: WorkspaceLayout, url: str) -> None:
    """Record the archive URL in ``<workspace>/archive_location.txt`` (atomically and durably:
    temp file fsynced, ``os.replace``, folder fsynced)."""
    from admf_assets.core.traces import fsync_dir

    root = Path(layout.root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{ARCHIVE_MARKER}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as fh:
        fh.write(url + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / ARCHIVE_MARKER)
    fsync_dir(root)


def layout_archive(layout: WorkspaceLayout) -> ArchiveLocation | None:
    """The :class:`ArchiveLocation` of a layout (``None`` when nothing was ever archived)."""
    url = layout.archive_url
    return ArchiveLocation(url) if url else None


# --------------------------------------------------------------------------------------------
# Moving file partitions
# --------------------------------------------------------------------------------------------


def _split_series(series: str) -> tuple[str, str]:
    symbol, _, timeframe = series.rpartition("_")
    if not symbol or not timeframe:
        raise ValueError(f"invalid series folder {series!r}: expected <SYMBOL>_<timeframe>")
    return symbol, timeframe


def hot_partitions(layout: WorkspaceLayout, kind: str) -> dict[str, dict[dt.date, Path]]:
    """``{series: {day: hot file}}`` of a file kind."""
    out = {}
    for symbol, timeframe in layout.series_on_disk(kind):
        files = layout.dated_files(layout.kind_dir(kind, symbol, timeframe))
        if files:
            out[layout.series_key(symbol, timeframe)] = files
    return out


def _delete_hot(path: Path) -> None:
    """Delete one hot file after its rows verified in the archive (missing files are fine: a
    re-run after a crash may find some already gone)."""
    path.unlink(missing_ok=True)


def _read_hot(path: Path) -> tuple[pa.Table, dict[bytes, bytes]]:
    table = pq.read_table(path)
    return table, dict(pq.read_schema(path).metadata or {})


def archive_file_partitions(
    layout: WorkspaceLayout,
    archive: ArchiveLocation,
    kind: str,
    series: str,
    days: Sequence[dt.date],
    *,
    record: Callable[[list[ManifestEntry]], None],
    delete: Callable[[Path], None] | None = None,
) -> list[ManifestEntry]:
    """Move the hot files of ``days`` of one series into the archive, month by month.

    Per month: read the hot files, compute each partition's :class:`PartitionStats`, merge them
    into the month file (:meth:`ArchiveLocation.merge_month`), verify the file read back, call
    ``record`` with the month's manifest entries, and only then delete the hot files (``delete``,
    default :func:`_delete_hot`). Days without a hot file are skipped; a hot file rewritten while
    it was being archived (other mtime or size) is not deleted.

    Returns:
        The manifest entries of every moved partition.

    Raises:
        ArchiveVerificationError: a month did not verify; its hot files are kept.
        ArchiveError: a partition's columns differ from its month file's; its hot files are kept.
        ValueError: for an unknown kind or a malformed series.
    """
    symbol, timeframe = _split_series(series)
    delete = delete or _delete_hot
    by_month: dict[str, list[dt.date]] = {}
    for day in sorted(set(days)):
        if layout.kind_file(kind, symbol, timeframe, day).is_file():
            by_month.setdefault(month_of(day), []).append(day)
    moved: list[ManifestEntry] = []
    for month, month_days in by_month.items():
        target = archive.month_path(kind, series, month)
        new, sources, seen = {}, {}, {}
        for day in month_days:
            path = layout.kind_file(kind, symbol, timeframe, day)
            st = path.stat()
            seen[day] = (st.st_mtime_ns, st.st_size)
            table, meta = _read_hot(path)
            new[day] = (table, meta)
            sources[day] = path
        expected = archive.merge_month(target, new)  # verified (every partition) and fsynced before it returns
        entries = [
            ManifestEntry(kind, series, d.isoformat(), str(sources[d]), archive.display(target), expected[d].rows, expected[d].checksum)
            for d in month_days
        ]
        record(entries)
        for day in month_days:
            try:
                st = sources[day].stat()
            except FileNotFoundError:
                continue
            if (st.st_mtime_ns, st.st_size) == seen[day]:
                delete(sources[day])
            # else: re-materialized while being archived; the newer hot file stays (readers
            # prefer hot files) and the next archive run replaces the archived rows with it
        moved += entries
    return moved


def restore_file_partitions(
    layout: WorkspaceLayout,
    archive: ArchiveLocation,
    kind: str,
    series: str,
    days: Iterable[dt.date],
    *,
    record: Callable[[list[ManifestEntry]], None],
) -> list[ManifestEntry]:
    """Bring archived partitions of ``days`` back to hot files (atomic writes with the original
    key-value metadata), verify each written file, then remove them from their month files.

    A day that already has a hot file keeps the hot file (hot storage wins) and only leaves the
    archive. ``record`` receives the restored entries (before the month files are rewritten).

    Raises:
        ArchiveVerificationError: a restored file does not match the archived rows (the archive is
            left untouched).
    """
    from admf_assets.core.traces import write_parquet_atomic

    symbol, timeframe = _split_series(series)
    wanted = set(days)
    archived = {d: p for d, p in archive.archived_days(kind, series).items() if d in wanted}
    by_file: dict[str, list[dt.date]] = {}
    for day, path in archived.items():
        by_file.setdefault(path, []).append(day)
    restored = []
    for path, file_days in by_file.items():
        month = archive.read_month(path)
        entries = []
        for day in file_days:
            table, meta = month.partition(day)
            target = layout.kind_file(kind, symbol, timeframe, day)
            want = stats_of(table)
            if not target.is_file():
                write_parquet_atomic(table.replace_schema_metadata(None), target, kv_metadata=meta)
                got = stats_of(pq.read_table(target))
                if got != want:
                    target.unlink(missing_ok=True)
                    raise ArchiveVerificationError(f"restore of {target} from {archive.display(path)} does not match the archived rows")
            entries.append(ManifestEntry(kind, series, day.isoformat(), archive.display(path), str(target), want.rows, want.checksum))
        record(entries)
        archive.remove_partitions(path, file_days)
        restored += entries
    return restored


# --------------------------------------------------------------------------------------------
# DuckDB: daily_signal_summary rows and the manifest
# --------------------------------------------------------------------------------------------

SUMMARY_VIEW = "daily_signal_summary_all"
"""DuckDB view: hot ``daily_signal_summary`` rows plus the archived ones (hot rows win)."""


def refresh_summary_view(conn, archive: ArchiveLocation | None) -> None:
    """(Re)create :data:`SUMMARY_VIEW` over the hot table and, for a local archive with month
    files, the archived rows of days not in the hot table.

    DDL cannot take bound parameters, so the glob is embedded as a string literal; a path holding a
    single quote is refused.

    Raises:
        ArchiveError: for an archive path containing ``'``.
    """
    glob = archive.summary_glob() if archive is not None else None
    if glob is None:
        conn.execute(f"CREATE OR REPLACE VIEW {SUMMARY_VIEW} AS SELECT * FROM {SUMMARY_TABLE}")
        return
    if "'" in glob:
        raise ArchiveError(f"archive path {glob!r} contains a quote; DuckDB views cannot reference it safely")
    conn.execute(
        f"""
        CREATE OR REPLACE VIEW {SUMMARY_VIEW} AS
        SELECT * FROM {SUMMARY_TABLE}
        UNION ALL BY NAME
        SELECT * EXCLUDE ({PARTITION_COLUMN}) FROM read_parquet('{glob}', union_by_name = true) a
        WHERE NOT EXISTS (SELECT 1 FROM {SUMMARY_TABLE} h WHERE h.date = a.date)
        """
    )


FILE_VIEWS: dict[str, str] = {"market_bars_all": "bars", "signal_traces_all": "signals", "classifier_states_all": "classifiers"}
"""DuckDB views over the hot day files plus the archived month files of each file kind."""

_DAY_FILE = r"(\d{4}-\d{2}-\d{2})\.parquet$"
_SERIES_DIR = r"([^/]+)/[^/]+\.parquet$"


def _sql_glob(path: str) -> str:
    if "'" in path:
        raise ArchiveError(f"path {path!r} contains a quote; DuckDB views cannot reference it safely")
    return path


def refresh_file_views(conn, layout: WorkspaceLayout, archive: ArchiveLocation | None) -> list[str]:
    """(Re)create :data:`FILE_VIEWS`: every row of the kind's hot day files and of its archived
    month files (local archives), with two added columns, ``series`` (``SPY_5m``) and
    ``partition_date`` (the trading day, DATE). A day present in both (a crash between the copy
    and the delete, or a day re-materialized after archiving) is read from its hot file only, so
    a query gives the same rows before and after archiving.

    DDL cannot take bound parameters, so the globs are embedded as string literals (a path
    holding a quote is refused). A kind with no file anywhere gets no view (its old view is dropped).

    Returns:
        The names of the views created.

    Raises:
        ArchiveError: for a path containing ``'``.
    """
    made = []
    for view, kind in FILE_VIEWS.items():
        hot_root = Path(layout.root) / kind_subdir(kind)
        hot = any(hot_root.glob("*/*.parquet"))
        cold = archive is not None and archive.is_local and any(archive.month_files(kind, series) for series in archive.series(kind))
        parts = []
        if hot:
            glob = _sql_glob(f"{hot_root.as_posix()}/*/*.parquet")
            parts.append(
                f"SELECT * EXCLUDE (filename), regexp_extract(filename, '{_SERIES_DIR}', 1) AS series, "
                f"CAST(regexp_extract(filename, '{_DAY_FILE}', 1) AS DATE) AS {PARTITION_COLUMN} "
                f"FROM read_parquet('{glob}', filename = true, union_by_name = true)"
            )
        if cold:
            glob = _sql_glob(archive.kind_glob(kind))
            cold_sql = (
                f"SELECT * EXCLUDE (filename), regexp_extract(filename, '{_SERIES_DIR}', 1) AS series "
                f"FROM read_parquet('{glob}', filename = true, union_by_name = true)"
            )
            if hot:
                cold_sql = f"SELECT c.* FROM ({cold_sql}) c ANTI JOIN hot_days h ON c.series = h.series AND c.{PARTITION_COLUMN} = h.{PARTITION_COLUMN}"
            parts.append(cold_sql)
        if not parts:
            conn.execute(f"DROP VIEW IF EXISTS {view}")
            continue
        if hot and cold:
            body = (
                f"WITH hot AS ({parts[0]}), hot_days AS (SELECT DISTINCT series, {PARTITION_COLUMN} FROM hot) "
                f"SELECT * FROM hot UNION ALL BY NAME {parts[1]}"
            )
        else:
            body = parts[0]
        conn.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")
        made.append(view)
    return made


def record_manifest(conn, entries: Sequence[ManifestEntry], *, run_id: str | None = None, restored: bool = False) -> None:
    """Upsert ``entries`` into ``archive_manifest`` (one row per kind, series, partition_key).

    An archive move sets ``archived_at`` and clears ``restored_at``; a restore sets ``restored_at``.
    Run it inside the caller's transaction when it must commit with other writes.
    """
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for e in entries:
        if restored:
            conn.execute(
                "UPDATE archive_manifest SET restored_at = ? WHERE kind = ? AND series = ? AND partition_key = ?",
                [now, e.kind, e.series, e.partition_key],
            )
        else:
            conn.execute(
                """
                INSERT OR REPLACE INTO archive_manifest
                    (kind, series, partition_key, source, target, rows, checksum, archived_at, run_id, restored_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
                """,
                [e.kind, e.series, e.partition_key, e.source, e.target, e.rows, e.checksum, now, run_id],
            )


def archive_summary_rows(
    conn, archive: ArchiveLocation, before: dt.date, *, run_id: str | None = None, skip: Iterable[dt.date] = ()
) -> list[ManifestEntry]:
    """Move the ``daily_signal_summary`` rows dated before ``before`` into monthly archive files.

    Per month: fetch the rows, merge them into the month file, verify it, then in ONE DuckDB
    transaction record the manifest and delete the rows. ``conn`` is a warehouse connection held
    under its lock. ``skip``: days left hot (restored days pinned by the manifest, see
    :func:`restored_partitions`).

    Raises:
        ArchiveVerificationError: a month did not verify; its rows stay in DuckDB.
        ArchiveError: the rows' columns differ from the month file's.
    """
    skipped = set(skip)
    days = [r[0] for r in conn.execute(f"SELECT DISTINCT date FROM {SUMMARY_TABLE} WHERE date < ? ORDER BY date", [before]).fetchall()]
    days = [d for d in days if d not in skipped]
    by_month: dict[str, list[dt.date]] = {}
    for day in days:
        by_month.setdefault(month_of(day), []).append(day)
    moved = []
    for month, month_days in by_month.items():
        target = archive.month_path(SUMMARY_KIND, SUMMARY_TABLE, month)
        new = {}
        for day in month_days:
            table = conn.sql(f"SELECT * FROM {SUMMARY_TABLE} WHERE date = ? ORDER BY symbol, strategy_type", params=[day]).to_arrow_table()
            new[day] = (table, {})
        expected = archive.merge_month(target, new)  # verified and fsynced before it returns
        entries = [
            ManifestEntry(SUMMARY_KIND, SUMMARY_TABLE, d.isoformat(), f"duckdb:{SUMMARY_TABLE}", archive.display(target), expected[d].rows, expected[d].checksum)
            for d in month_days
        ]
        conn.execute("BEGIN TRANSACTION")
        try:
            record_manifest(conn, entries, run_id=run_id)
            conn.execute(f"DELETE FROM {SUMMARY_TABLE} WHERE date IN (SELECT UNNEST(?::DATE[]))", [month_days])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        moved += entries
    refresh_summary_view(conn, archive)
    return moved


def restore_summary_rows(conn, archive: ArchiveLocation, first: dt.date, last: dt.date) -> list[ManifestEntry]:
    """Bring archived ``daily_signal_summary`` rows of ``first..last`` back into DuckDB, then drop
    them from their month files.

    Hot rows win: a day that already has rows in DuckDB (re-materialized after it was archived)
    keeps them, and its archived rows are only dropped from the archive. The inserts and the
    manifest update (``restored_at``) are one DuckDB transaction; the month file is rewritten
    (verified, fsynced) after the commit.

    Returns:
        One :class:`ManifestEntry` per restored day (rows/checksum of the archived rows).

    Raises:
        ArchiveError: a month file is not an archive month file.
        ArchiveVerificationError: rewriting a month file without the restored days would alter
            a kept partition (the month file is left as it was; the rows are already back hot).
        duckdb.Error: the insert failed (rolled back; the archive is untouched).
    """
    archived = {d: p for d, p in archive.archived_days(SUMMARY_KIND, SUMMARY_TABLE).items() if first <= d <= last}
    by_file: dict[str, list[dt.date]] = {}
    for day, path in archived.items():
        by_file.setdefault(path, []).append(day)
    restored = []
    for path, file_days in by_file.items():
        month = archive.read_month(path)
        tables = [month.partition(d)[0].replace_schema_metadata(None) for d in file_days]
        entries = [
            ManifestEntry(SUMMARY_KIND, SUMMARY_TABLE, d.isoformat(), archive.display(path), f"duckdb:{SUMMARY_TABLE}", t.num_rows, rows_checksum(t))
            for d, t in zip(file_days, tables)
        ]
        conn.execute("BEGIN TRANSACTION")
        try:
            hot = {r[0] for r in conn.execute(
                f"SELECT DISTINCT date FROM {SUMMARY_TABLE} WHERE date IN (SELECT UNNEST(?::DATE[]))", [file_days]).fetchall()}
            back = [t for d, t in zip(file_days, tables) if d not in hot]
            if back:
                conn.register("_restored_rows", pa.concat_tables(back))
                conn.execute(f"INSERT INTO {SUMMARY_TABLE} BY NAME SELECT * FROM _restored_rows")
            record_manifest(conn, entries, restored=True)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if back:
            conn.unregister("_restored_rows")
        archive.remove_partitions(path, file_days)
        restored += entries
    refresh_summary_view(conn, archive)
    return restored


def manifest_rows(conn) -> pd.DataFrame:
    """The ``archive_manifest`` table ordered by kind, series, partition."""
    return conn.execute("SELECT * FROM archive_manifest ORDER BY kind, series, partition_key").df()


Pinned = Mapping[tuple[str, str], set[dt.date]]
"""``{(kind, series): {day}}`` of restored partitions (see :func:`restored_partitions`)."""


def restored_partitions(conn) -> dict[tuple[str, str], set[dt.date]]:
    """Partitions brought back by ``admf archive restore`` (manifest ``restored_at`` set), as
    ``{(kind, series): {day}}`` (kinds ``bars``, ``signals``, ``classifiers``,
    ``tables/daily_signal_summary``).

    A restore pins them hot: the retention plan and archive runs leave them alone until an archive
    run with ``include_restored`` (``admf archive run --include-restored``, or ``archive_job`` with
    ``include_restored: true``) moves them again, which clears ``restored_at``.
    """
    out: dict[tuple[str, str], set[dt.date]] = {}
    for kind, series, key in conn.execute(
        "SELECT kind, series, partition_key FROM archive_manifest WHERE restored_at IS NOT NULL AND length(partition_key) = 10"
    ).fetchall():
        out.setdefault((kind, series), set()).add(dt.date.fromisoformat(key))
    return out


def foreign_targets(conn, archive: ArchiveLocation) -> list[str]:
    """Month files listed by the manifest (partitions archived and not restored) that lie outside
    ``archive``: non-empty means the archive URL changed while data sits in the old one."""
    root = archive.display(archive.root).rstrip("/") + "/"
    targets = [r[0] for r in conn.execute("SELECT DISTINCT target FROM archive_manifest WHERE restored_at IS NULL ORDER BY target").fetchall()]
    return [t for t in targets if not t.startswith(root)]


def check_archive_url(conn, layout: WorkspaceLayout, archive: ArchiveLocation) -> None:
    """Refuse to archive into ``archive`` while the manifest holds partitions archived elsewhere.

    Changing ``ADMF_ARCHIVE_URL`` after partitions were archived would leave them behind: the
    workspace marker (``archive_location.txt``) would be rewritten to the new URL and readers
    would no longer find the old partitions.

    Raises:
        ArchiveError: naming the old location (from the manifest and the marker), the new URL and
            how many month files sit in the old one.
    """
    elsewhere = foreign_targets(conn, archive)
    if not elsewhere:
        return
    marker = Path(layout.root) / ARCHIVE_MARKER
    recorded = marker.read_text().strip() if marker.is_file() else "?"
    raise ArchiveError(
        f"the archive URL is {archive.url!r} but archive_manifest lists {len(elsewhere)} month file(s) archived elsewhere "
        f"(workspace marker {marker}: {recorded!r}; e.g. {elsewhere[0]}). Refusing to archive, so those partitions are not orphaned: "
        f"set ADMF_ARCHIVE_URL back to {recorded!r}, or restore them first (admf archive restore)"
    )


# --------------------------------------------------------------------------------------------
# Retention cutoffs
# --------------------------------------------------------------------------------------------


def retention_cutoff(sessions: Sequence[dt.date], newest: dt.date | None, keep: int) -> dt.date | None:
    """First trading day kept hot: the ``keep``-th most recent session up to ``newest``.

    Args:
        sessions: the exchange's sessions, sorted ascending.
        newest: the newest day with data (``None``: nothing stored, no cutoff).
        keep: trading days kept hot (>= 1).

    Returns:
        The cutoff day (partitions strictly before it are past retention), or ``None`` when fewer
        than ``keep`` sessions exist up to ``newest``.

    Raises:
        ValueError: for ``keep < 1``.
    """
    if keep < 1:
        raise ValueError(f"retention must keep at least 1 trading day, got {keep}")
    if newest is None:
        return None
    upto = [s for s in sessions if s <= newest]
    if len(upto) < keep:
        return None
    return upto[-keep]


@dataclass(frozen=True)
class RetentionPlan:
    """What the retention policy moves now.

    Attributes:
        cutoffs: ``{"bars"|"traces"|"summaries": first day kept hot}`` (``None``: nothing past
            retention, e.g. fewer stored sessions than the policy keeps).
        files: ``{kind: {series: [days]}}`` hot file partitions before their kind's cutoff.
        summary_days: ``daily_signal_summary`` days in DuckDB before the summaries cutoff.
    """

    cutoffs: dict[str, dt.date | None]
    files: dict[str, dict[str, list[dt.date]]]
    summary_days: list[dt.date]

    @property
    def empty(self) -> bool:
        """True when nothing is past retention."""
        return not self.summary_days and not any(days for per in self.files.values() for days in per.values())

    @property
    def partitions(self) -> int:
        """Partitions to move (file partitions + summary days)."""
        return sum(len(d) for per in self.files.values() for d in per.values()) + len(self.summary_days)

    def run_key(self) -> str:
        """``archive-bars<cutoff>-summaries<cutoff>-traces<cutoff>-<digest>`` (cutoffs in name order): names the cutoffs;
        the digest (sha256[:10] of the partitions to move) makes a later plan with the same
        cutoffs (partitions backfilled below them) a new key, while a repeated tick of the same
        state repeats the key (Dagster launches a run key once)."""
        parts = "-".join(f"{k}{(v.isoformat() if v else 'none')}" for k, v in sorted(self.cutoffs.items()))
        listing = json.dumps(
            {"files": {k: {s: [d.isoformat() for d in days] for s, days in sorted(v.items())} for k, v in sorted(self.files.items())},
             "summaries": [d.isoformat() for d in self.summary_days]},
            sort_keys=True,
        )
        return f"archive-{parts}-{hashlib.sha256(listing.encode()).hexdigest()[:10]}"


TRACE_KINDS = ("signals", "classifiers")


def plan_retention(
    layout: WorkspaceLayout,
    sessions: Sequence[dt.date],
    *,
    bars_days: int,
    traces_days: int,
    summaries_days: int,
    summary_days_stored: Sequence[dt.date] = (),
    pinned: Pinned | None = None,
) -> RetentionPlan:
    """The partitions past retention in hot storage.

    Cutoffs count trading days back from the newest hot bar day of any series
    (:func:`retention_cutoff`): bars use ``bars_days``, signal and classifier traces
    ``traces_days``, ``daily_signal_summary`` rows ``summaries_days``.

    Args:
        layout: the workspace (hot storage is scanned).
        sessions: exchange sessions, ascending, covering at least the newest stored day and the
            ``max(keep)`` sessions before it.
        summary_days_stored: distinct dates of the hot ``daily_signal_summary`` rows.
        pinned: restored partitions (:func:`restored_partitions`), left out of the plan: a
            restore keeps them hot until an archive run with ``include_restored``.
    """
    pinned = pinned or {}
    hot = {kind: hot_partitions(layout, kind) for kind in FILE_KINDS}
    bar_days = [d for files in hot["bars"].values() for d in files]
    newest = max(bar_days) if bar_days else None
    cutoffs = {
        "bars": retention_cutoff(sessions, newest, bars_days),
        "traces": retention_cutoff(sessions, newest, traces_days),
        "summaries": retention_cutoff(sessions, newest, summaries_days),
    }
    files: dict[str, dict[str, list[dt.date]]] = {}
    for kind in FILE_KINDS:
        cutoff = cutoffs["bars" if kind == "bars" else "traces"]
        per = {}
        if cutoff is not None:
            for series, days in hot[kind].items():
                keep = pinned.get((kind, series), set())
                old = [d for d in days if d < cutoff and d not in keep]
                if old:
                    per[series] = old
        files[kind] = per
    s_cut = cutoffs["summaries"]
    keep = pinned.get((SUMMARY_KIND, SUMMARY_TABLE), set())
    summary = sorted(d for d in set(summary_days_stored) if s_cut is not None and d < s_cut and d not in keep)
    return RetentionPlan(cutoffs, files, summary)
