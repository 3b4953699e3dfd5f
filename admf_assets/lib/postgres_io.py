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
