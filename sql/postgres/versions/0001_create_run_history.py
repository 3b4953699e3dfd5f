"""Create backtest_runs and performance_metrics with their query indexes.

Revision ID: 0001_run_history
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_run_history"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "backtest_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("strategy_name", sa.String(255), nullable=False),
        sa.Column("strategy_type", sa.String(100), nullable=False),
        sa.Column("instrument_symbol", sa.String(50), nullable=False),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("config_snapshot", postgresql.JSONB(), nullable=False),
        sa.Column("execution_status", sa.String(20), nullable=False),
        sa.Column("execution_duration_seconds", sa.Double(), nullable=True),
        sa.Column("reproduced_from_run_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("dagster_run_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backtest_runs"),
        sa.UniqueConstraint("run_id", name="uq_backtest_runs_run_id"),
        sa.ForeignKeyConstraint(
            ["reproduced_from_run_id"],
            ["backtest_runs.run_id"],
            name="fk_backtest_runs_reproduced_from_run_id_backtest_runs",
        ),
        sa.CheckConstraint(
            "jsonb_typeof(config_snapshot) = 'object' AND config_snapshot ? 'type' "
            "AND config_snapshot ? 'parameters'",
            name=op.f("ck_backtest_runs_config_snapshot_shape"),
        ),
        sa.CheckConstraint(
            "execution_status IN ('success', 'failed')", name=op.f("ck_backtest_runs_execution_status_valid")
        ),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_backtest_runs_date_range")),
        sa.CheckConstraint(
            "execution_duration_seconds IS NULL OR execution_duration_seconds >= 0",
            name=op.f("ck_backtest_runs_duration_nonnegative"),
        ),
    )
    op.create_index(
        "ix_backtest_runs_created_at_id", "backtest_runs", [sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index(
        "ix_backtest_runs_strategy_created_at_id",
        "backtest_runs",
        ["strategy_name", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_backtest_runs_symbol_created_at_id",
        "backtest_runs",
        ["instrument_symbol", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_backtest_runs_config_snapshot_gin",
        "backtest_runs",
        ["config_snapshot"],
        postgresql_using="gin",
        postgresql_ops={"config_snapshot": "jsonb_path_ops"},
    )
    # Lookups of the runs reproduced from a given run (and FK checks on delete).
    op.create_index(
        "ix_backtest_runs_reproduced_from_run_id",
        "backtest_runs",
        ["reproduced_from_run_id"],
        postgresql_where=sa.text("reproduced_from_run_id IS NOT NULL"),
    )

    op.create_table(
        "performance_metrics",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("backtest_run_id", sa.BigInteger(), nullable=False),
        sa.Column("total_return", sa.Double(), nullable=True),
        sa.Column("final_balance", sa.Double(), nullable=True),
        sa.Column("sharpe_ratio", sa.Double(), nullable=True),
        sa.Column("sortino_ratio", sa.Double(), nullable=True),
        sa.Column("max_drawdown", sa.Double(), nullable=True),
        sa.Column("max_drawdown_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("calmar_ratio", sa.Double(), nullable=True),
        sa.Column("volatility", sa.Double(), nullable=True),
        sa.Column("total_trades", sa.Integer(), nullable=True),
        sa.Column("winning_trades", sa.Integer(), nullable=True),
        sa.Column("losing_trades", sa.Integer(), nullable=True),
        sa.Column("win_rate", sa.Double(), nullable=True),
        sa.Column("profit_factor", sa.Double(), nullable=True),
        sa.Column("expectancy", sa.Double(), nullable=True),
        sa.Column("avg_win", sa.Double(), nullable=True),
        sa.Column("avg_loss", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_performance_metrics"),
        sa.UniqueConstraint("backtest_run_id", name="uq_performance_metrics_backtest_run_id"),
        sa.ForeignKeyConstraint(
            ["backtest_run_id"],
            ["backtest_runs.id"],
            name="fk_performance_metrics_backtest_run_id_backtest_runs",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "total_trades IS NULL OR total_trades >= 0", name=op.f("ck_performance_metrics_total_trades_nonnegative")
        ),
    )
    op.create_index(
        "ix_performance_metrics_sharpe_run",
        "performance_metrics",
        [sa.text("sharpe_ratio DESC NULLS LAST"), "backtest_run_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_performance_metrics_sharpe_run", table_name="performance_metrics")
    op.drop_table("performance_metrics")
    op.drop_index("ix_backtest_runs_reproduced_from_run_id", table_name="backtest_runs")
    op.drop_index("ix_backtest_runs_config_snapshot_gin", table_name="backtest_runs")
    op.drop_index("ix_backtest_runs_symbol_created_at_id", table_name="backtest_runs")
    op.drop_index("ix_backtest_runs_strategy_created_at_id", table_name="backtest_runs")
    op.drop_index("ix_backtest_runs_created_at_id", table_name="backtest_runs")
    op.drop_table("backtest_runs")
