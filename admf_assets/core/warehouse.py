"""The DuckDB analytics warehouse: one embedded file per workspace, DDL in ``sql/duckdb/*.sql``.

DuckDB allows one writing process per database file; a second process fails with ``Could not
set lock on file``. Every connection made here (writers *and* readers, Dagster runs *and* the
``admf`` command line) first takes a cross-process :class:`filelock.FileLock` on
``<database>.lock``, so concurrent runs wait their turn instead of failing (Dagster's own
``duckdb_writer`` pool additionally keeps writer steps of one instance to one at a time).

Table writes replace their rows (delete + insert) inside one transaction per asset
(:func:`transaction`), so re-materializing replaces data and a failure leaves the previous rows
untouched. The lock is not re-entrant: never open a second connection while holding one.

The bulk-replaced tables of :data:`TABLE_KEYS` carry no PRIMARY KEY / UNIQUE constraint or index
(DuckDB maintains each with an ART index that cost more than the write itself); their keys stay
unique and non-NULL because :func:`replace_rows` checks them, and :func:`apply_schema` rebuilds
tables that a warehouse created with the old constraints still has.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Iterator, Sequence

import duckdb
import pandas as pd
import pyarrow as pa
from filelock import FileLock

SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "duckdb"
"""The warehouse DDL: every ``*.sql`` file of this folder, applied in file-name order
(``000_core.sql`` first; later files add the tables of one domain each)."""


def schema_files() -> list[Path]:
    """The DDL files of :data:`SQL_DIR` in the order they are applied.

    Raises:
        FileNotFoundError: when the package is not run from a source checkout (install with
            ``pip install -e .``).
    """
    files = sorted(SQL_DIR.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no warehouse DDL (*.sql) under {SQL_DIR}; install the project with `pip install -e .`")
    return files


def schema_sql() -> str:
    """The DDL of every file of :func:`schema_files`, concatenated (idempotent
    ``CREATE ... IF NOT EXISTS`` statements)."""
    return "\n".join(f.read_text() for f in schema_files())


_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def _declared_tables() -> tuple[str, ...]:
    return tuple(dict.fromkeys(_CREATE_TABLE.findall(schema_sql())))


TABLES: tuple[str, ...] = _declared_tables()
"""Whitelist of table names that write helpers accept: the tables the DDL files create."""

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "strategies": ("strategy_id",),
    "strategy_parameters": ("strategy_id", "parameter_name"),
    "classifiers": ("classifier_id",),
    "regime_performance": ("strategy_id", "classifier_id", "regime"),
    "parameter_analysis": ("strategy_type", "parameter_name", "parameter_value"),
    "grid_overfitting": ("grid_id",),
    "strategy_correlations": ("strategy_id_a", "strategy_id_b"),
    "run_strategies": ("run_id", "strategy_id"),
}
"""Key columns of the bulk-replaced tables whose DDL declares no PRIMARY KEY / UNIQUE constraint:
:func:`replace_rows` keeps each key unique and non-NULL for the rows written through it (the
``parameter_analysis`` asset writes its table with an ``INSERT ... GROUP BY`` of exactly the key
columns instead), and :func:`apply_schema` removes the old constraints and indexes from these
tables."""


@contextlib.contextmanager
def warehouse_lock(database: str | Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold the cross-process lock of ``database`` (waits up to ``timeout`` seconds).

    Raises:
        filelock.Timeout: when the lock is not obtained within ``timeout`` seconds.
    """
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=timeout):
        yield


_OLD_KEYS_SQL = """
SELECT DISTINCT table_name, index_name FROM duckdb_indexes()
WHERE database_name = current_database() AND schema_name = 'main' AND list_contains($tables, table_name)
UNION ALL
SELECT DISTINCT table_name, NULL FROM duckdb_constraints()
WHERE database_name = current_database() AND schema_name = 'main' AND list_contains($tables, table_name)
  AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')
"""
"""(table, index name) of every index, (table, NULL) of every PRIMARY KEY / UNIQUE constraint of
the tables ``$tables``."""


MIGRATION_VERSION = "1: keyed tables without PRIMARY KEY / UNIQUE constraints or indexes"
"""Part of :func:`schema_digest`: change it when :func:`apply_schema`'s migration code changes
without a change of the DDL files, so warehouses recorded under the old digest are migrated."""


def schema_digest() -> str:
    """sha256 (hex) of :func:`schema_sql` and :data:`MIGRATION_VERSION`: what ``admf_schema``
    records once :func:`apply_schema` has brought a warehouse up to date."""
    return hashlib.sha256((schema_sql() + "\n-- " + MIGRATION_VERSION).encode()).hexdigest()


def apply_schema(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Create or upgrade the warehouse schema on ``conn``: run :func:`schema_sql`, then drop every
    index of a :data:`TABLE_KEYS` table and rebuild those still carrying a PRIMARY KEY / UNIQUE
    constraint (DuckDB cannot drop one with ALTER TABLE): rename the table, create it from the
    DDL, copy every row by column name, drop the old one, all in one transaction.

    Idempotent. A warehouse whose ``admf_schema`` table holds the current :func:`schema_digest`
    is left alone after that one query (the DDL and the catalog query took 20 to 33 ms per
    connection, and a new day's runs open 14); otherwise the DDL runs, old keys are migrated, and
    the digest is recorded last, so a failed migration is retried on the next connection. A
    table dropped by hand from a warehouse carrying the current digest is not re-created: delete
    the ``admf_schema`` row (or the warehouse) to force the DDL. Call it on a connection without
    an open transaction (the migration and the digest are written in transactions of their own).

    Returns:
        The tables rebuilt or stripped of indexes (empty when the schema was current).

    Raises:
        RuntimeError: when a rebuilt table's row count differs from the old one (rolled back).
        duckdb.Error: from the DDL or the copy (rolled back).
    """
    digest = schema_digest()
    recorded = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' "
        "AND table_name = 'admf_schema'"
    ).fetchone()[0]  # absent in a new warehouse, or one older than admf_schema
    if recorded and conn.execute("SELECT digest FROM admf_schema").fetchall() == [(digest,)]:
        return []
    conn.execute(schema_sql())
    found = conn.execute(_OLD_KEYS_SQL, {"tables": list(TABLE_KEYS)}).fetchall()
    if not found:
        _record_digest(conn, digest)
        return []
    indexes = sorted({index for _, index in found if index is not None})
    rebuild = sorted({table for table, index in found if index is None})
    with transaction(conn):
        for index in indexes:  # an index blocks ALTER TABLE ... RENAME; the new DDL declares none
            conn.execute('DROP INDEX "{}"'.format(index.replace('"', '""')))  # a catalog name, quoted
        for table in rebuild:
            conn.execute(f"ALTER TABLE {_check_table(table)} RENAME TO _old_{table}")
        conn.execute(schema_sql())
        for table in rebuild:
            old = conn.execute(f"SELECT count(*) FROM _old_{table}").fetchone()[0]
            new = conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _old_{table}").fetchone()[0]
            if new != old:
                raise RuntimeError(f"rebuilding {table}: copied {new} of {old} rows")
            conn.execute(f"DROP TABLE _old_{table}")
    _record_digest(conn, digest)
    return sorted({table for table, _ in found})


def _record_digest(conn: duckdb.DuckDBPyConnection, digest: str) -> None:
    """Make ``digest`` the one row of ``admf_schema`` (one transaction)."""
    with transaction(conn):
        conn.execute("DELETE FROM admf_schema")
        conn.execute("INSERT INTO admf_schema VALUES (?, ?)", [digest, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)])


_apply_schema = apply_schema  # connect()'s keyword argument of the same name hides the function


@contextlib.contextmanager
def connect(database: str | Path, *, timeout: float = 600.0, apply_schema: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse under its lock, creating or migrating the schema (:func:`apply_schema`)
    unless ``apply_schema=False``; closes on exit."""
    with warehouse_lock(database, timeout):
        conn = duckdb.connect(str(database))
        try:
            if apply_schema:
                _apply_schema(conn)
            yield conn
        finally:
            conn.close()


def _check_table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown warehouse table {table!r}; expected one of {', '.join(TABLES)}")
    return table


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """DataFrame -> Arrow with NaN turned into NULL (DuckDB would keep NaN, which sorts above
    every number in ``ORDER BY ... DESC``)."""
    return pa.Table.from_pandas(df, preserve_index=False)


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block in one DuckDB transaction: committed on success, rolled back on any error,
    so an asset that writes several tables leaves either all new rows or all old ones."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def replace_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows: pd.DataFrame,
    *,
    where: str | None = None,
    params: Sequence[object] = (),
) -> int:
    """Replace rows of ``table``: delete (all, or those matching ``where`` with ``params`` bound),
    then insert ``rows`` (one DataFrame row per table row, columns by name). Returns the number
    inserted.

    Call it inside :func:`transaction` so the delete and the insert (and the asset's other
    writes) commit together. ``where`` is SQL written by this package (never user input); its
    values go in ``params``.

    For a table of :data:`TABLE_KEYS` the key is checked before the table is touched: it must be
    non-NULL, unique among ``rows`` and, with ``where``, absent from the rows the delete keeps,
    so the key stays unique table-wide without a constraint.

    Raises:
        ValueError: for a table outside :data:`TABLES`; for a key column missing from ``rows``, a
            NULL key or a duplicate key (the message names the table, the key columns, the
            number of offending rows and the first offending key values).
        duckdb.Error: on a constraint violation of the other tables (the enclosing transaction
            rolls back).
    """
    _check_table(table)
    if len(rows):
        keys = TABLE_KEYS.get(table, ())
        missing = [k for k in keys if k not in rows.columns]
        if missing:
            raise ValueError(f"{table}: incoming rows lack key column(s) {', '.join(missing)}")
        conn.register("_incoming_rows", to_arrow(rows))
        problem = _key_problem(conn, table, keys, where, params) if keys else None
        if problem:
            conn.unregister("_incoming_rows")
            raise ValueError(problem)
    conn.execute(f"DELETE FROM {table}" + (f" WHERE {where}" if where else ""), list(params))
    if len(rows):
        # No cleanup on failure: in an aborted transaction every statement fails until ROLLBACK,
        # and a second error would hide the constraint violation.
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming_rows")
        conn.unregister("_incoming_rows")
    return len(rows)


def _key_problem(
    conn: duckdb.DuckDBPyConnection, table: str, keys: tuple[str, ...], where: str | None, params: Sequence[object]
) -> str | None:
    """Why the registered ``_incoming_rows`` would break the key of ``table`` (None if they
    would not): a NULL key, a key repeated among them, or (with ``where``) a key of a row the
    delete keeps. Each message gives the offending row count and up to 3 key values."""
    cols = ", ".join(keys)
    first = "SELECT {cols}, count(*) OVER () AS n FROM ({rows}) ORDER BY ALL LIMIT 3"
    checks = [
        ("NULL in key", f"SELECT {cols} FROM _incoming_rows WHERE " + " OR ".join(f"{k} IS NULL" for k in keys), ()),
        (
            "duplicate key",
            f"SELECT {cols} FROM _incoming_rows SEMI JOIN "
            f"(SELECT {cols} FROM _incoming_rows GROUP BY {cols} HAVING count(*) > 1) USING ({cols})",
            (),
        ),
    ]
    if where:
        kept = f"SELECT {cols} FROM {table} WHERE ({where}) IS NOT TRUE"
        checks.append((f"duplicate key of rows kept by WHERE {where}", f"SELECT {cols} FROM _incoming_rows SEMI JOIN ({kept}) USING ({cols})", params))
    for what, rows, args in checks:
        found = conn.execute(first.format(cols=cols, rows=rows), list(args)).fetchall()
        if found:
            values = ", ".join(repr(r[:-1] if len(keys) > 1 else r[0]) for r in found)
            return f"{table}: {what} ({cols}) in {found[0][-1]} incoming row(s), first: {values}"
    return None
