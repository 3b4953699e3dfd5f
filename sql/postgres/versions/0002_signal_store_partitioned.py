"""Postgres signal store: admf_signals.daily_signal_summary range-partitioned by month.

The table lives in its own schema ``admf_signals`` (kept apart from the run-history tables, whose
SQLAlchemy models are compared with the default schema by autogenerate).

The serving copy of DuckDB's ``daily_signal_summary`` (one row per trading day, symbol and
strategy_type), declaratively partitioned by ``RANGE (date)`` with one partition per calendar
month named ``admf_signals.daily_signal_summary_yYYYYmMM``. Month partitions are created on demand by
``admf_assets.lib.postgres_io.publish_daily_summary``; the archive job detaches the months past
retention, exports them to the archive as Parquet, verifies and drops them
(``admf_assets.lib.postgres_io.archive_signal_store``). No DEFAULT partition: a row outside every
month partition is an error, never silently parked.

Revision ID: 0002_signal_store
Revises: 0001_run_history
Create Date: 2026-11-21
"""

from __future__ import annotations

from typing import Sequence, Union

from alembic import op

revision: str = "0002_signal_store"
down_revision: Union[str, None] = "0001_run_history"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


SCHEMA = "admf_signals"


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.execute(
        f"""
        CREATE TABLE {SCHEMA}.daily_signal_summary (
            date              DATE NOT NULL,
            symbol            TEXT NOT NULL,
            strategy_type     TEXT NOT NULL,
            strategy_count    BIGINT,
            signal_changes    BIGINT,
            trades_closed     BIGINT,
            wins              BIGINT,
            losses            BIGINT,
            net_pnl           DOUBLE PRECISION,
            avg_trade_return  DOUBLE PRECISION,
            published_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT pk_daily_signal_summary PRIMARY KEY (date, symbol, strategy_type)
        ) PARTITION BY RANGE (date)
        """
    )
    op.execute(f"CREATE INDEX ix_daily_signal_summary_symbol_date ON {SCHEMA}.daily_signal_summary (symbol, date)")


def downgrade() -> None:
    # the schema holds the parent, its month partitions and any partition detached by an
    # interrupted archive run
    op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
