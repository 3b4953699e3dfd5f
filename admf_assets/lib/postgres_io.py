"""A pandas IO manager storing asset outputs as PostgreSQL tables (SQLAlchemy 2 + psycopg2).

Each asset is one table ``<schema>.<asset name>`` (a prefixed key's components joined by ``__``).
The table is created on the first write from the DataFrame's dtypes. Writes are transactional:

- partitioned asset: the table has an extra ``partition_key`` TEXT column; a write deletes exactly
  that partition's rows and inserts the new ones in one transaction (re-materializing a
  partition replaces it, never duplicates it; other partitions are untouched);
- unpartitioned asset: all rows are replaced in one transaction.

If a write fails (type mismatch, unknown column, lost connection), the transaction is rolled back
and the previous rows stay. Identifiers (schema, table, columns) must match ``IDENTIFIER`` and
are quoted by SQLAlchemy; values are always bound parameters. Row order is kept through an
internal ``admf_row`` column.

Configure the URL from the environment rather than in code, e.g.::

    PostgresPandasIOManager(url=dg.EnvVar("ADMF_POSTGRES_URL"), schema="admf")

A bare ``postgresql://`` (or ``postgres://``) URL is taken as ``postgresql+psycopg2://``: under
SQLAlchemy 2.1 the bare scheme means psycopg (v3), which is not installed.
"""

from __future__ import annotations

import math
import re
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateSchema

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
PARTITION_COLUMN = "partition_key"
ROW_COLUMN = "admf_row"
RESERVED_COLUMNS = frozenset({PARTITION_COLUMN, ROW_COLUMN})


class UnsafeIdentifierError(ValueError):
    """A schema, table or column name that is not a plain SQL identifier."""


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` when it matches ``IDENTIFIER`` (letters, digits, ``_``; at most 63 chars)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise UnsafeIdentifierError(f"refusing {what} name {name!r}: it must match {IDENTIFIER.pattern}")
    return name


def psycopg2_url(url: str) -> sa.URL:
    """``url`` parsed, with ``postgresql``/``postgres`` mapped to ``postgresql+psycopg2``."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.drivername != "postgresql+psycopg2":
        raise ValueError(f"expected a postgresql+psycopg2:// URL, got driver {parsed.drivername!r}")
    return parsed


def sql_type(dtype) -> sa.types.TypeEngine:
    """The column type for a pandas dtype (anything unrecognised is stored as TEXT)."""
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return sa.DateTime(timezone=True)
    if pd.api.types.is_datetime64_dtype(dtype):
        return sa.DateTime(timezone=False)
    return sa.Text()


def _native(value: Any) -> Any:
    """A value psycopg2 can bind: NaN/NaT/NA become NULL, numpy scalars become Python ones."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


class PostgresPandasIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames in PostgreSQL tables ``<schema>.<asset name>`` (see module doc)."""

    url: str = Field(description="postgresql+psycopg2:// URL of the database; use dg.EnvVar('ADMF_POSTGRES_URL').")
    schema_name: str = Field(default="admf", alias="schema", description="Schema holding the asset tables.")

    # -- helpers -----------------------------------------------------------------------------
    def _engine(self) -> sa.Engine:
        return sa.create_engine(psycopg2_url(self.url), poolclass=NullPool)

    def _table_name(self, asset_key: dg.AssetKey) -> str:
        return check_identifier("__".join(asset_key.path), "table")

    def _table(self, name: str, columns: list[sa.Column]) -> sa.Table:
        return sa.Table(name, sa.MetaData(), *columns, schema=check_identifier(self.schema_name, "schema"))

    @staticmethod
    def _partition_key(context: dg.OutputContext | dg.InputContext) -> str | None:
        if not context.has_asset_partitions:
            return None
        keys = context.asset_partition_keys
        if len(keys) != 1:
            raise dg.DagsterInvariantViolationError(
                f"PostgresPandasIOManager writes one partition per output; got {len(keys)} partition keys for {context.asset_key.to_user_string()}"
            )
        return keys[0]

    # -- IO manager API ------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"PostgresPandasIOManager stores pandas DataFrames, got {type(obj).__name__}")
        name = self._table_name(context.asset_key)
        data_columns = [check_identifier(str(c), "column") for c in obj.columns]
        if len(set(data_columns)) != len(data_columns):
            raise ValueError(f"duplicate column names in the output of {name}")
        clash = RESERVED_COLUMNS & set(data_columns)
        if clash:
            raise ValueError(f"columns {sorted(clash)} are reserved by PostgresPandasIOManager")
        partition = self._partition_key(context)

        columns = [sa.Column(ROW_COLUMN, sa.BigInteger(), nullable=False)]
        if partition is not None:
            columns.insert(0, sa.Column(PARTITION_COLUMN, sa.Text(), nullable=False, index=True))
        columns += [sa.Column(c, sql_type(obj[c].dtype)) for c in data_columns]
        table = self._table(name, columns)

        records = []
        for position, row in enumerate(obj.itertuples(index=False, name=None)):
            record = {c: _native(v) for c, v in zip(data_columns, row)}
            record[ROW_COLUMN] = position
            if partition is not None:
                record[PARTITION_COLUMN] = partition
            records.append(record)

        engine = self._engine()
        try:
            with engine.begin() as conn:  # one transaction: any failure keeps the old rows
                conn.execute(CreateSchema(table.schema, if_not_exists=True))
                table.create(conn, checkfirst=True)
                if partition is not None:
                    conn.execute(table.delete().where(table.c[PARTITION_COLUMN] == partition))
                else:
                    conn.execute(table.delete())
                if records:
                    conn.execute(table.insert(), records)
        finally:
            engine.dispose()
        context.add_output_metadata(
            {
                "row_count": dg.MetadataValue.int(len(records)),
                "table": dg.MetadataValue.text(f"{table.schema}.{name}"),
                **({"partition_key": dg.MetadataValue.text(partition)} if partition is not None else {}),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """The stored rows: the partition's rows (one partition), ``{partition key: rows}`` (several
        partitions of a partitioned upstream), or all rows (unpartitioned)."""
        name = self._table_name(context.asset_key)
        schema = check_identifier(self.schema_name, "schema")
        engine = self._engine()
        try:
            with engine.connect() as conn:
                table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
                data_columns = [c.name for c in table.columns if c.name not in RESERVED_COLUMNS]
                partitioned = PARTITION_COLUMN in table.c
                if context.has_asset_partitions and partitioned:
                    keys = list(context.asset_partition_keys)
                    query = (
                        sa.select(table.c[PARTITION_COLUMN], *[table.c[c] for c in data_columns])
                        .where(table.c[PARTITION_COLUMN].in_(keys))
                        .order_by(table.c[PARTITION_COLUMN], table.c[ROW_COLUMN])
                    )
                    frame = _frame(conn.execute(query), [PARTITION_COLUMN, *data_columns])
                    parts = {k: g.drop(columns=PARTITION_COLUMN).reset_index(drop=True) for k, g in frame.groupby(PARTITION_COLUMN, sort=False)}
                    empty = frame.drop(columns=PARTITION_COLUMN).iloc[0:0]
                    if len(keys) == 1:
                        return parts.get(keys[0], empty)
                    return {k: parts.get(k, empty) for k in keys}
                order = [table.c[PARTITION_COLUMN]] if partitioned else []
                query = sa.select(*[table.c[c] for c in data_columns]).order_by(*order, table.c[ROW_COLUMN])
                return _frame(conn.execute(query), data_columns)
        finally:
            engine.dispose()


def _frame(result: sa.CursorResult, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(result.fetchall(), columns=columns)


# --------------------------------------------------------------------------------------------
# The Postgres signal store: daily_signal_summary, range-partitioned by month (migration 0002)
# --------------------------------------------------------------------------------------------

SIGNAL_STORE_SCHEMA = "admf_signals"
SIGNAL_STORE_TABLE = "daily_signal_summary"
"""Parent table of the signal store, ``admf_signals.daily_signal_summary`` (``PARTITION BY RANGE
(date)``, sql/postgres/versions/0002_signal_store_partitioned.py)."""
_PARENT = f"{SIGNAL_STORE_SCHEMA}.{SIGNAL_STORE_TABLE}"
SIGNAL_STORE_COLUMNS = [
    "date", "symbol", "strategy_type", "strategy_count", "signal_changes", "trades_closed",
    "wins", "losses", "net_pnl", "avg_trade_return",
]
_MONTH_TABLE = re.compile(r"^daily_signal_summary_y(\d{4})m(\d{2})$")


def month_partition_name(month: str) -> str:
    """``2025-06`` -> ``daily_signal_summary_y2025m06`` (the month partition's table name).

    Raises:
        ValueError: for a malformed month.
    """
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"invalid month {month!r}: expected YYYY-MM")
    return f"{SIGNAL_STORE_TABLE}_y{m.group(1)}m{m.group(2)}"


def _month_bounds(month: str):
    from admf_assets.core.archive import month_bounds

    return month_bounds(month)


class DetachedPartitionError(RuntimeError):
    """A month table of the signal store exists but is not attached to the serving table: an
    archive run detached it and stopped before dropping it (see :func:`archive_signal_store`)."""


def ensure_month_partitions(conn: sa.Connection, months) -> None:
    """Create the month partitions of ``months`` (``YYYY-MM``) that do not exist yet, and check
    that every one of them is attached to the serving table.

    A month table left DETACHED by an interrupted archive run (:func:`archive_signal_store`
    detaches, exports, records, then drops) is not re-attached: its rows may already be in the
    archive month file, an archive run still in progress would drop it after the rows published
    into it, and the archive's own resume path (the next archive run that archives summaries, e.g.
    ``admf archive run``) finishes it without loss or duplicates. Publishing
    into such a month raises :class:`DetachedPartitionError` instead of PostgreSQL's bare "no
    partition of relation found for row".

    The serving table is locked ``ROW EXCLUSIVE`` (what the publication's DELETE/INSERT take
    anyway) before the check, so an archive run cannot detach a checked month before the caller's
    transaction writes into it. Partition DDL cannot take bound parameters: the table name
    matches :data:`IDENTIFIER` and the bounds are ISO dates formatted here from validated months,
    never user text.

    Raises:
        ValueError: for a malformed month.
        DetachedPartitionError: a month's table exists but is not a partition of
            ``admf_signals.daily_signal_summary`` (names the table; run ``admf archive run``).
    """
    names = {}
    for month in sorted(set(months)):
        name = check_identifier(month_partition_name(month), "partition")
        first, nxt = _month_bounds(month)
        conn.exec_driver_sql(
            f'CREATE TABLE IF NOT EXISTS {SIGNAL_STORE_SCHEMA}."{name}" PARTITION OF {_PARENT} '
            f"FOR VALUES FROM ('{first.isoformat()}') TO ('{nxt.isoformat()}')"
        )
        names[name] = month
    if not names:
        return
    conn.exec_driver_sql(f"LOCK TABLE {_PARENT} IN ROW EXCLUSIVE MODE")
    attached = dict(
        conn.execute(
            sa.text(
                "SELECT c.relname, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid "
                "AND i.inhparent = CAST(:parent AS regclass)) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = ANY(:names)"
            ),
            {"parent": _PARENT, "schema": SIGNAL_STORE_SCHEMA, "names": sorted(names)},
        ).all()
    )
    detached = sorted(n for n in names if not attached.get(n, False))
    if detached:
        tables = ", ".join(f"{SIGNAL_STORE_SCHEMA}.{n}" for n in detached)
        raise DetachedPartitionError(
            f"signal store month table(s) {tables} (month(s) {', '.join(names[n] for n in detached)}) exist but are not "
            f"attached to {_PARENT}: an archive run detached them and did not finish (their rows may already be in the "
            "archive). Run `admf archive run` (or launch archive_job) to finish archiving them, then publish again."
        )


def publish_daily_summary(url_or_engine, rows: pd.DataFrame, days) -> int:
    """Replace the signal store's rows of ``days`` with ``rows`` in one transaction.

    Args:
        url_or_engine: ``postgresql+psycopg2://`` URL or an Engine (migrated to 0002 or later).
        rows: DataFrame with :data:`SIGNAL_STORE_COLUMNS` (DuckDB ``daily_signal_summary`` rows).
        days: the trading days (``datetime.date``) whose rows are replaced (days with no rows are
            emptied).

    Returns:
        Rows inserted.

    Raises:
        KeyError: when a column of :data:`SIGNAL_STORE_COLUMNS` is missing.
        sqlalchemy.exc.ProgrammingError: when the table does not exist (run ``admf db upgrade``).
        DetachedPartitionError: a month of ``days`` was detached by an archive run that did not
            finish (nothing is written; run ``admf archive run``).
    """
    from admf_assets.core.archive import month_of

    frame = rows[SIGNAL_STORE_COLUMNS]
    days = sorted(set(days))
    engine = sa.create_engine(psycopg2_url(url_or_engine), poolclass=NullPool) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.begin() as conn:
            ensure_month_partitions(conn, {month_of(d) for d in days})
            conn.execute(sa.text(f"DELETE FROM {_PARENT} WHERE date = ANY(:days)"), {"days": days})
            records = [{c: _native(v) for c, v in zip(SIGNAL_STORE_COLUMNS, row)} for row in frame.itertuples(index=False, name=None)]
            if records:
                cols = ", ".join(SIGNAL_STORE_COLUMNS)
                params = ", ".join(f":{c}" for c in SIGNAL_STORE_COLUMNS)
                conn.execute(sa.text(f"INSERT INTO {_PARENT} ({cols}) VALUES ({params})"), records)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
    return len(frame)


def signal_store_partitions(conn: sa.Connection) -> dict[str, tuple[str, bool]]:
    """``{YYYY-MM: (table name, attached)}`` of the month tables of the signal store, including
    tables detached by an interrupted archive run (``attached`` False)."""
    attached = {
        r[0]
        for r in conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": _PARENT},
        )
    }
    names = conn.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :schema AND tablename LIKE :pat"),
        {"schema": SIGNAL_STORE_SCHEMA, "pat": f"{SIGNAL_STORE_TABLE}_y%"},
    ).scalars()
    out = {}
    for name in names:
        m = _MONTH_TABLE.match(name)
        if m:
            out[f"{m.group(1)}-{m.group(2)}"] = (name, name in attached)
    return dict(sorted(out.items()))


def _month_table_rows(conn: sa.Connection, name: str) -> pd.DataFrame:
    check_identifier(name, "partition")
    result = conn.execute(sa.text(f'SELECT * FROM {SIGNAL_STORE_SCHEMA}."{name}" ORDER BY date, symbol, strategy_type'))
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def signal_store_arrow_schema():
    """The pyarrow schema of the exported signal store rows (the columns of migration 0002:
    ``date`` date32, ``symbol``/``strategy_type`` string, counts int64, ``net_pnl`` and
    ``avg_trade_return`` float64, ``published_at`` timestamp[us, UTC]). Fixed, so a day whose
    nullable columns are all NULL exports with the same types as any other day."""
    import pyarrow as pa

    fields = [("date", pa.date32()), ("symbol", pa.string()), ("strategy_type", pa.string())]
    fields += [(c, pa.int64()) for c in ("strategy_count", "signal_changes", "trades_closed", "wins", "losses")]
    fields += [("net_pnl", pa.float64()), ("avg_trade_return", pa.float64()), ("published_at", pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields)


def _day_tables(frame: pd.DataFrame, name: str) -> dict:
    """``{day: pyarrow table}`` of a month table's rows, one per ``date`` (schema
    :func:`signal_store_arrow_schema`)."""
    import pyarrow as pa

    schema = signal_store_arrow_schema()
    if list(frame.columns) != schema.names:
        raise ValueError(f"postgres table {SIGNAL_STORE_SCHEMA}.{name}: columns {list(frame.columns)}, expected {schema.names} (migration 0002)")
    out = {}
    for day, group in frame.groupby("date", sort=True):
        out[pd.Timestamp(day).date()] = pa.Table.from_pandas(group.reset_index(drop=True), schema=schema, preserve_index=False).replace_schema_metadata(None)
    return out


def _legacy_month_partitions(archive, target: str) -> tuple[list, dict]:
    """Partitions of a Postgres month file written by the first version of the archive (all of a
    month's rows under ONE partition keyed by the month's first day), and their rows re-keyed by
    each row's ``date``: ``([legacy partition days], {day: (table, metadata)})``. Empty when the
    file does not exist or is already keyed per day."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not archive.fs.exists(target):
        return [], {}
    month = archive.read_month(target)
    legacy, resplit = [], {}
    for day in month.days():
        table, meta = month.partition(day)
        dates = set(table["date"].to_pylist())
        if dates <= {day}:
            continue
        legacy.append(day)
        plain = table.replace_schema_metadata(None)
        for d in sorted(dates):
            part = plain.filter(pc.equal(plain["date"], pa.scalar(d, pa.date32())))
            resplit[d] = (part.cast(signal_store_arrow_schema()) if part.schema.names == signal_store_arrow_schema().names else part, meta)
    return legacy, resplit


def archive_signal_store(url_or_engine, archive, before, *, record) -> list:
    """Detach, export, verify and drop the signal store's month partitions that lie wholly before
    ``before`` (the summaries retention cutoff).

    Per month: ``ALTER TABLE ... DETACH PARTITION`` (committed: the month leaves the serving table
    and waits as a standalone table), export its rows to the archive month file
    ``postgres/daily_signal_summary/YYYY-MM.parquet`` (zstd) as ONE PARTITION PER DAY (keyed by
    each row's ``date``), merged with the days already archived there: a month partition that was
    recreated by republishing a single old day replaces only that day in the archive, never the
    month's other days. Every day of the rewritten file is verified (the exported days against the
    Postgres rows, row count from ``count(*)`` and :func:`admf_assets.core.archive.rows_checksum`;
    the kept days against the file's footer), ``record`` is called with one manifest entry per
    exported day (``partition_key`` ``YYYY-MM-DD``), then ``DROP TABLE``. A run interrupted after
    the detach resumes from the detached table on the next call (whatever its ``before``; the
    archive job calls this only when it archives summaries:
    the month already left the serving table, and publishing into it is refused until it is
    finished, see :func:`ensure_month_partitions`). A month file of the first archive
    version (the whole month under one partition) is re-keyed per day in the same rewrite, its
    days recorded in the manifest too.

    Returns:
        The :class:`admf_assets.core.archive.ManifestEntry` of each archived day.

    Raises:
        admf_assets.core.archive.ArchiveVerificationError: the export did not verify; the
            detached table is kept (nothing dropped).
        admf_assets.core.archive.ArchiveError: the month file holds other columns.
        ValueError: the month table's columns are not those of migration 0002.
    """
    from admf_assets.core.archive import POSTGRES_SUMMARY_KIND, ArchiveVerificationError, ManifestEntry, month_bounds

    engine = sa.create_engine(psycopg2_url(url_or_engine), poolclass=NullPool) if isinstance(url_or_engine, str) else url_or_engine
    moved = []
    try:
        with engine.connect() as conn:
            months = signal_store_partitions(conn)
        for month, (name, attached) in months.items():
            if attached and month_bounds(month)[1] > before:
                continue  # a DETACHED month is finished whatever the cutoff: an earlier run chose to archive it
            check_identifier(name, "partition")
            if attached:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f'ALTER TABLE {_PARENT} DETACH PARTITION {SIGNAL_STORE_SCHEMA}."{name}"')
            with engine.connect() as conn:
                frame = _month_table_rows(conn, name)
                counted = conn.execute(sa.text(f'SELECT count(*) FROM {SIGNAL_STORE_SCHEMA}."{name}"')).scalar_one()
            days = _day_tables(frame, name)
            fetched = sum(t.num_rows for t in days.values())
            if fetched != counted:
                raise ArchiveVerificationError(f"postgres table {name}: fetched {fetched} rows but count(*) says {counted}")
            source = f"postgres:{SIGNAL_STORE_SCHEMA}.{name}"
            entries = []
            if days:
                target = archive.month_path(POSTGRES_SUMMARY_KIND, SIGNAL_STORE_TABLE, month)
                new = {d: (t, {b"admf.source": source.encode()}) for d, t in days.items()}
                legacy, resplit = _legacy_month_partitions(archive, target)
                new = {**{d: v for d, v in resplit.items() if d not in new}, **new}
                stats = archive.merge_month(target, new, drop=[d for d in legacy if d not in new])
                entries = [
                    ManifestEntry(POSTGRES_SUMMARY_KIND, SIGNAL_STORE_TABLE, d.isoformat(),
                                  source if d in days else new[d][1].get(b"admf.source", b"").decode() or source,
                                  archive.display(target), stats[d].rows, stats[d].checksum)
                    for d in sorted(new)
                ]
                record(entries)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP TABLE {SIGNAL_STORE_SCHEMA}."{name}"')
            moved += entries
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
    return moved
