"""SQLAlchemy 2 declarative models of the run history (PostgreSQL only).

Two tables (see ``sql/postgres/versions`` for the migration that creates them):

* ``backtest_runs``: one row per evaluation of one strategy configuration on one bar series.
  ``run_id`` (UUID, made by the application) is the public identity; ``id`` (bigserial) is the
  internal key used for joins and as the keyset tie-breaker. ``config_snapshot`` (JSONB) holds
  the validated :class:`admf_assets.history.snapshot.ConfigSnapshot`.
  ``execution_duration_seconds`` is the wall time of a single evaluation, or for a run published
  from a Dagster grid the grid step's wall time divided by its number of strategies (see
  :func:`admf_assets.history.repository.duration_label`).
* ``performance_metrics``: exactly one row per run (``backtest_run_id`` UNIQUE, ON DELETE
  CASCADE). Returns, drawdowns, volatility, win rate and expectancy are fractions; Sharpe,
  Sortino and volatility are annualized with sqrt(252); ``final_balance`` is in the currency of
  the snapshot's ``initial_capital``.

The index names below are part of the contract checked by the EXPLAIN tests.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EXECUTION_STATUSES: tuple[str, ...] = ("success", "failed")
"""Allowed values of ``backtest_runs.execution_status``."""

PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "total_return",
    "final_balance",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "max_drawdown_date",
    "calmar_ratio",
    "volatility",
    "total_trades",
    "winning_trades",
    "losing_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_win",
    "avg_loss",
)
"""Metric columns of ``performance_metrics`` (every one nullable), in display order."""

INDEX_NAMES: dict[str, str] = {
    "created": "ix_backtest_runs_created_at_id",
    "strategy": "ix_backtest_runs_strategy_created_at_id",
    "symbol": "ix_backtest_runs_symbol_created_at_id",
    "config_gin": "ix_backtest_runs_config_snapshot_gin",
    "sharpe": "ix_performance_metrics_sharpe_run",
}
"""The query indexes by role (used by the EXPLAIN tests and the benchmark)."""


class Base(DeclarativeBase):
    """Declarative base of the history tables (its ``metadata`` is Alembic's target)."""

    metadata = MetaData(naming_convention=NAMING)


class BacktestRun(Base):
    """One evaluation of one strategy configuration (table ``backtest_runs``)."""

    __tablename__ = "backtest_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    strategy_name: Mapped[str] = mapped_column(String(255), nullable=False)
    strategy_type: Mapped[str] = mapped_column(String(100), nullable=False)
    instrument_symbol: Mapped[str] = mapped_column(String(50), nullable=False)
    start_date: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end_date: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    config_snapshot: Mapped[dict] = mapped_column(JSONB, nullable=False)
    execution_status: Mapped[str] = mapped_column(String(20), nullable=False)
    execution_duration_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    reproduced_from_run_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("backtest_runs.run_id"), nullable=True
    )
    dagster_run_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    metrics: Mapped["PerformanceMetrics | None"] = relationship(
        back_populates="run", uselist=False, cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint(
            "jsonb_typeof(config_snapshot) = 'object' AND config_snapshot ? 'type' "
            "AND config_snapshot ? 'parameters'",
            name="config_snapshot_shape",
        ),
        CheckConstraint(
            "execution_status IN ('success', 'failed')", name="execution_status_valid"
        ),
        CheckConstraint("end_date >= start_date", name="date_range"),
        CheckConstraint(
            "execution_duration_seconds IS NULL OR execution_duration_seconds >= 0",
            name="duration_nonnegative",
        ),
        Index(INDEX_NAMES["created"], text("created_at DESC"), text("id DESC")),
        Index(INDEX_NAMES["strategy"], "strategy_name", text("created_at DESC"), text("id DESC")),
        Index(INDEX_NAMES["symbol"], "instrument_symbol", text("created_at DESC"), text("id DESC")),
        Index(
            INDEX_NAMES["config_gin"],
            "config_snapshot",
            postgresql_using="gin",
            postgresql_ops={"config_snapshot": "jsonb_path_ops"},
        ),
        Index(
            "ix_backtest_runs_reproduced_from_run_id",
            "reproduced_from_run_id",
            postgresql_where=text("reproduced_from_run_id IS NOT NULL"),
        ),
    )


class PerformanceMetrics(Base):
    """The metrics of one run (table ``performance_metrics``, one row per run)."""

    __tablename__ = "performance_metrics"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    backtest_run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("backtest_runs.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    total_return: Mapped[float | None] = mapped_column(Double)
    final_balance: Mapped[float | None] = mapped_column(Double)
    sharpe_ratio: Mapped[float | None] = mapped_column(Double)
    sortino_ratio: Mapped[float | None] = mapped_column(Double)
    max_drawdown: Mapped[float | None] = mapped_column(Double)
    max_drawdown_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    calmar_ratio: Mapped[float | None] = mapped_column(Double)
    volatility: Mapped[float | None] = mapped_column(Double)
    total_trades: Mapped[int | None] = mapped_column(Integer)
    winning_trades: Mapped[int | None] = mapped_column(Integer)
    losing_trades: Mapped[int | None] = mapped_column(Integer)
    win_rate: Mapped[float | None] = mapped_column(Double)
    profit_factor: Mapped[float | None] = mapped_column(Double)
    expectancy: Mapped[float | None] = mapped_column(Double)
    avg_win: Mapped[float | None] = mapped_column(Double)
    avg_loss: Mapped[float | None] = mapped_column(Double)

    run: Mapped[BacktestRun] = relationship(back_populates="metrics")

    __table_args__ = (
        CheckConstraint(
            "total_trades IS NULL OR total_trades >= 0", name="total_trades_nonnegative"
        ),
        Index(
            INDEX_NAMES["sharpe"],
            text("sharpe_ratio DESC NULLS LAST"),
            "backtest_run_id",
        ),
    )


backtest_runs = BacktestRun.__table__
performance_metrics = PerformanceMetrics.__table__
