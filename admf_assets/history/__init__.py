"""Run history on PostgreSQL (no Dagster import here).

* :mod:`admf_assets.history.models`: SQLAlchemy models of ``backtest_runs`` / ``performance_metrics``.
* :mod:`admf_assets.history.snapshot`: the pydantic :class:`ConfigSnapshot` stored as JSONB.
* :mod:`admf_assets.history.repository`: save, list (keyset pagination), show, compare, search,
  reproduce; the error classes.
* :mod:`admf_assets.history.migrate`: Alembic upgrade/downgrade (scripts in ``sql/postgres``).

The database URL comes from ``ADMF_POSTGRES_URL`` (``postgresql+psycopg2://...``).
"""

from admf_assets.history.repository import (
    DatabaseUnavailableError,
    DuplicateRunError,
    Evaluation,
    HistoryError,
    InvalidCursorError,
    InvalidInputError,
    NewRun,
    ReproductionError,
    Reproduction,
    RunNotFoundError,
    SchemaMissingError,
    compare_runs,
    evaluate,
    evaluate_and_save,
    find_runs_by_params,
    get_run,
    list_runs,
    make_engine,
    reproduce_run,
    save_run,
    top_by_sharpe,
)
from admf_assets.history.snapshot import ConfigSnapshot, CostSnapshot

__all__ = [
    "ConfigSnapshot",
    "CostSnapshot",
    "DatabaseUnavailableError",
    "DuplicateRunError",
    "Evaluation",
    "HistoryError",
    "InvalidCursorError",
    "InvalidInputError",
    "NewRun",
    "Reproduction",
    "ReproductionError",
    "RunNotFoundError",
    "SchemaMissingError",
    "compare_runs",
    "evaluate",
    "evaluate_and_save",
    "find_runs_by_params",
    "get_run",
    "list_runs",
    "make_engine",
    "reproduce_run",
    "save_run",
    "top_by_sharpe",
]
