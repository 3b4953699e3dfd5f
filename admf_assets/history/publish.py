"""Publishing a grid evaluation to the run history: one ``backtest_runs`` row per strategy and
symbol, each with its ``performance_metrics`` row, written in ONE transaction (no Dagster here).

The Dagster side (:mod:`admf_assets.lib.history_io`, asset ``backtest_history``) builds a
*publication frame* with :func:`publication_frame` from the warehouse's ``strategies`` table and
hands it to :func:`publish_runs`.

Identity and idempotency: a published run's ``run_id`` is
``uuid5(PUBLISH_NAMESPACE, "<dagster run id>/<strategy_id>")``, where the Dagster run id is the
run that COMPUTED the evaluation (the ``strategy_performance`` run recorded in the warehouse's
``strategies.run_id``), not the run that publishes it. Publishing the same evaluation again (a
retry, a re-execution of the step, or a later ``publish_history_job`` run before
``strategy_performance`` is re-materialized) therefore produces the same run ids, and
:func:`publish_runs` replaces those rows instead of adding duplicates; a new evaluation (a new
``strategy_performance`` run) adds a new generation of history rows (that is what a run history
is for). The ``dagster_run_id`` column holds that evaluating run id too.

Publication frame (one row per strategy x symbol), columns :data:`PUBLICATION_COLUMNS`:

* ``run_id`` (str, UUID), ``dagster_run_id`` (str), ``strategy_name`` (the strategy_id,
  ``<SYM>_<tf>_<type>_<hash>``), ``config_snapshot`` (dict, a valid
  :class:`~admf_assets.history.snapshot.ConfigSnapshot`), ``start_date`` / ``end_date``
  (timezone-aware first and last bar timestamps), ``execution_status`` (``success``),
  ``execution_duration_seconds`` (float seconds or NaN: the wall time of the grid evaluation
  divided by its number of strategies, an average share per strategy, since the grid evaluates
  all strategies together; ``admf history show`` labels it ``grid_seconds_per_strategy``);
* every :data:`~admf_assets.history.models.PERFORMANCE_COLUMNS` value, units as in that module
  (returns, drawdowns, volatility, win rate, expectancy, avg win/loss as fractions; Sharpe,
  Sortino and volatility annualized with sqrt(252); ``final_balance`` in the snapshot's
  ``initial_capital`` currency).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Mapping

import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError

from admf_assets.history.models import EXECUTION_STATUSES, PERFORMANCE_COLUMNS, backtest_runs, performance_metrics
from admf_assets.history.repository import (
    InvalidInputError,
    clean_metrics,
    clean_value,
    database_errors,
    first_error_line,
    validate_snapshot,
)
from admf_assets.history.snapshot import ConfigSnapshot, CostSnapshot

PUBLISH_NAMESPACE = uuid.UUID("6f1d4c8e-2b7a-5e1f-9c3d-0a4b8e7f6d21")
"""Namespace of the deterministic run ids of published evaluations (see the module docstring)."""

RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "dagster_run_id",
    "strategy_name",
    "config_snapshot",
    "start_date",
    "end_date",
    "execution_status",
    "execution_duration_seconds",
)
"""Run columns of a publication frame."""

PUBLICATION_COLUMNS: tuple[str, ...] = RUN_COLUMNS + PERFORMANCE_COLUMNS
"""Every column of a publication frame, in order."""


def published_run_id(dagster_run_id: str, strategy_id: str) -> uuid.UUID:
    """The run id of ``strategy_id`` evaluated by Dagster run ``dagster_run_id`` (uuid5; see the
    module docstring)."""
    return uuid.uuid5(PUBLISH_NAMESPACE, f"{dagster_run_id}/{strategy_id}")


def publication_frame(
    performance: pd.DataFrame,
    *,
    dagster_run_id: str,
    bars_paths: Mapping[str, str],
    bar_timestamps: Mapping[str, pd.Series],
    bars_through: Mapping[str, "dt.date"] | None = None,
    trade_means: pd.DataFrame | None = None,
    initial_capital: float = 100_000.0,
    calendar: str = "XNYS",
    duration_seconds: float | None = None,
) -> pd.DataFrame:
    """Build the publication frame of a grid evaluation.

    Args:
        performance: rows of the warehouse table ``strategies`` (one per strategy x symbol):
            ``strategy_id, strategy_type, symbol, timeframe, parameters`` (JSON text),
            ``commission_bps, slippage_bps`` (basis points per side), ``start_ts, end_ts`` and the
            metric columns of :data:`admf_assets.core.metrics.METRIC_COLUMNS` including
            ``max_drawdown_idx`` (int, bar of the drawdown trough, -1 when none).
        dagster_run_id: the Dagster run that computed ``performance`` (the ``strategy_performance``
            run, ``strategies.run_id``); it keys the published run ids.
        bars_paths: ``{symbol: path}`` of the bars the evaluation ran on (the workspace's bar
            folder of the series); stored in the snapshot so ``admf history reproduce`` can re-run it.
        bar_timestamps: ``{symbol: ts}`` timezone-aware bar timestamps (T,) of that history, used
            to turn ``max_drawdown_idx`` into ``max_drawdown_date``.
        bars_through: ``{symbol: last trading day evaluated}`` stored as the snapshot's
            ``bars_through`` (a bar folder may hold later days by the time a run is reproduced).
        trade_means: optional frame indexed by strategy_id with ``avg_win`` / ``avg_loss`` (mean
            net return of winning / losing closed trades, fractions); missing -> NULL.
        initial_capital: starting balance for ``final_balance = initial_capital * (1 + total_return)``.
        calendar: exchange calendar of the trading-day grouping (stored in the snapshot).
        duration_seconds: wall time of the whole evaluation divided by the number of strategies
            (seconds), or ``None``.

    Returns:
        DataFrame with :data:`PUBLICATION_COLUMNS`, one row per ``performance`` row, same order.

    Raises:
        InvalidInputError: a row whose configuration does not validate (names the strategy_id),
            or a symbol without bars path / timestamps.
    """
    records: list[dict[str, Any]] = []
    for row in performance.itertuples(index=False):
        sid = row.strategy_id
        if row.symbol not in bars_paths or row.symbol not in bar_timestamps:
            raise InvalidInputError(f"{sid}: no bars path / timestamps given for symbol {row.symbol!r}")
        try:
            snapshot = ConfigSnapshot(
                type=row.strategy_type,
                parameters=json.loads(row.parameters),
                symbol=row.symbol,
                timeframe=row.timeframe,
                bars_path=str(bars_paths[row.symbol]),
                costs=CostSnapshot(commission_bps=float(row.commission_bps), slippage_bps=float(row.slippage_bps)),
                initial_capital=initial_capital,
                calendar=calendar,
                bars_through=(bars_through or {}).get(row.symbol),
            )
        except ValueError as err:  # pydantic.ValidationError is a ValueError
            raise InvalidInputError(f"{sid}: invalid configuration: {err}") from None
        total_return = clean_value(row.total_return)
        ts = bar_timestamps[row.symbol]
        trough = int(row.max_drawdown_idx) if clean_value(row.max_drawdown_idx) is not None else -1
        means = trade_means.loc[sid] if trade_means is not None and sid in trade_means.index else None
        records.append(
            {
                "run_id": str(published_run_id(dagster_run_id, sid)),
                "dagster_run_id": dagster_run_id,
                "strategy_name": sid,
                "config_snapshot": snapshot.to_json_dict(),
                "start_date": pd.Timestamp(row.start_ts).tz_convert("UTC"),
                "end_date": pd.Timestamp(row.end_ts).tz_convert("UTC"),
                "execution_status": "success",
                "execution_duration_seconds": duration_seconds,
                "total_return": total_return,
                "final_balance": None if total_return is None else initial_capital * (1.0 + total_return),
                "sharpe_ratio": row.sharpe_ratio,
                "sortino_ratio": row.sortino_ratio,
                "max_drawdown": row.max_drawdown,
                "max_drawdown_date": pd.Timestamp(ts.iloc[trough]).tz_convert("UTC") if 0 <= trough < len(ts) else None,
                "calmar_ratio": row.calmar_ratio,
                "volatility": row.volatility,
                "total_trades": row.total_trades,
                "winning_trades": row.winning_trades,
                "losing_trades": row.losing_trades,
                "win_rate": row.win_rate,
                "profit_factor": row.profit_factor,
                "expectancy": row.avg_trade_return,
                "avg_win": None if means is None else means.get("avg_win"),
                "avg_loss": None if means is None else means.get("avg_loss"),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(PUBLICATION_COLUMNS))


def _run_row(record: Mapping[str, Any], where: str) -> dict[str, Any]:
    snap = validate_snapshot(record["config_snapshot"])
    status = record["execution_status"]
    if status not in EXECUTION_STATUSES:
        raise InvalidInputError(f"{where}: execution_status must be one of {EXECUTION_STATUSES}, got {status!r}")
    start, end = (clean_value(pd.Timestamp(record[k])) for k in ("start_date", "end_date"))
    if start is None or end is None:
        raise InvalidInputError(f"{where}: start_date and end_date are required")
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInputError(f"{where}: start_date and end_date must be timezone-aware")
    if end < start:
        raise InvalidInputError(f"{where}: end_date {end} is before start_date {start}")
    try:
        run_id = uuid.UUID(str(record["run_id"]))
    except ValueError:
        raise InvalidInputError(f"{where}: run_id is not a UUID: {record['run_id']!r}") from None
    return {
        "run_id": run_id,
        "strategy_name": str(record["strategy_name"]),
        "strategy_type": snap.type,
        "instrument_symbol": snap.symbol,
        "start_date": start,
        "end_date": end,
        "config_snapshot": snap.to_json_dict(),
        "execution_status": status,
        "execution_duration_seconds": clean_value(record["execution_duration_seconds"]),
        "reproduced_from_run_id": None,
        "dagster_run_id": clean_value(record["dagster_run_id"]),
    }


def publish_runs(engine: Engine, frame: pd.DataFrame) -> int:
    """Store every row of a publication frame and its metrics in ONE transaction.

    Rows whose ``run_id`` is already stored are updated in place and their metrics replaced
    (``INSERT ... ON CONFLICT (run_id) DO UPDATE``; a reproduction that references the run keeps
    its link), so publishing the same frame twice leaves one copy. Everything is
    validated before the transaction starts; any failure rolls the whole publication back and
    leaves the previous rows.

    Args:
        engine: from :func:`admf_assets.history.repository.make_engine`.
        frame: columns :data:`PUBLICATION_COLUMNS` (see the module docstring).

    Returns:
        The number of runs stored.

    Raises:
        InvalidInputError: a missing column, a duplicated run_id, an invalid snapshot, status,
            dates or metric (the message names the row's strategy_name).
        DatabaseUnavailableError, SchemaMissingError: server unreachable / migrations missing.
    """
    missing = [c for c in PUBLICATION_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"publication frame lacks column(s) {missing}")
    runs: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    for position, record in enumerate(frame[list(PUBLICATION_COLUMNS)].to_dict("records")):
        where = f"row {position} ({record['strategy_name']})"
        runs.append(_run_row(record, where))
        try:
            metrics.append(clean_metrics({k: record[k] for k in PERFORMANCE_COLUMNS}))
        except InvalidInputError as err:
            raise InvalidInputError(f"{where}: {err}") from None
    ids = [r["run_id"] for r in runs]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("publication frame holds the same run_id twice")
    if not runs:
        return 0
    try:
        with database_errors(engine), engine.begin() as conn:
            # upsert, not delete + insert: a stored run may be referenced by a reproduction
            # (reproduced_from_run_id), which must keep pointing at it
            upsert = pg_insert(backtest_runs)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[backtest_runs.c.run_id],
                    set_={c: upsert.excluded[c] for c in runs[0] if c not in ("run_id", "reproduced_from_run_id")},
                ),
                runs,
            )
            pk = dict(conn.execute(select(backtest_runs.c.run_id, backtest_runs.c.id).where(backtest_runs.c.run_id.in_(ids))).all())
            conn.execute(delete(performance_metrics).where(performance_metrics.c.backtest_run_id.in_(list(pk.values()))))
            conn.execute(insert(performance_metrics), [{"backtest_run_id": pk[i], **m} for i, m in zip(ids, metrics)])
    except (IntegrityError, DataError) as err:
        raise InvalidInputError(f"publication rejected by the database: {first_error_line(err)}") from None
    return len(runs)


def published_runs(engine: Engine, dagster_run_id: str | None = None) -> pd.DataFrame:
    """The runs of one evaluation, by the Dagster run that computed it (``dagster_run_id``;
    default: the evaluation whose rows were first stored most recently).

    Returns:
        DataFrame with :data:`PUBLICATION_COLUMNS` (``config_snapshot`` as dict, dates UTC),
        ordered by strategy_name; empty when nothing was published.

    Raises:
        DatabaseUnavailableError, SchemaMissingError.
    """
    r, m = backtest_runs.c, performance_metrics.c
    with database_errors(engine), engine.connect() as conn:
        if dagster_run_id is None:
            dagster_run_id = conn.execute(
                select(r.dagster_run_id).where(r.dagster_run_id.is_not(None)).order_by(r.created_at.desc(), r.id.desc()).limit(1)
            ).scalar_one_or_none()
            if dagster_run_id is None:
                return pd.DataFrame(columns=list(PUBLICATION_COLUMNS))
        query = (
            select(*[r[c] for c in RUN_COLUMNS], *[m[c] for c in PERFORMANCE_COLUMNS])
            .join_from(backtest_runs, performance_metrics, m.backtest_run_id == r.id)
            .where(r.dagster_run_id == dagster_run_id)
            .order_by(r.strategy_name)
        )
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=list(PUBLICATION_COLUMNS))
    frame["run_id"] = frame["run_id"].astype(str)
    return frame
