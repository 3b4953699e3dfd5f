"""The DuckDB analytics warehouse: one embedded file per workspace, DDL in ``sql/duckdb/*.sql``.

DuckDB allows one writing process per database file; a second process fails with ``Could not
set lock on file``. Every connection made here (writers *and* readers, Dagster runs *and* the
``admf`` command line) first takes a cross-process :class:`filelock.FileLock` on
``<database>.lock``, so concurrent runs wait their turn instead of failing (Dagster's own
``duckdb_writer`` pool additionally keeps writer steps of one instance to one at a time).

Table writes replace their rows (delete + insert) inside one transaction per asset
(:func:`transaction`), so re-materializing replaces data and a failure leaves the previous rows
untouched. The lock is not re-entrant: never open a second connection while holding one.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def connect(database: str | Path, *, timeout: float = 600.0, apply_schema: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse under its lock, creating the schema if needed; closes on exit."""
    with warehouse_lock(database, timeout):
        conn = duckdb.connect(str(database))
        try:
            if apply_schema:
                conn.execute(schema_sql())
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
    then insert ``rows`` by column name. Returns the number inserted.

    Call it inside :func:`transaction` so the delete and the insert (and the asset's other
    writes) commit together. ``where`` is SQL written by this package (never user input); its
    values go in ``params``.

    Raises:
        ValueError: for a table outside :data:`TABLES`.
        duckdb.Error: on a constraint violation (the enclosing transaction rolls back).
    """
    _check_table(table)
    conn.execute(f"DELETE FROM {table}" + (f" WHERE {where}" if where else ""), list(params))
    if len(rows):
        conn.register("_incoming_rows", to_arrow(rows))
        # No cleanup on failure: in an aborted transaction every statement fails until ROLLBACK,
        # and a second error would hide the constraint violation.
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming_rows")
        conn.unregister("_incoming_rows")
    return len(rows)
