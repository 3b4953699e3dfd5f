"""Run history on PostgreSQL: save, list (keyset pagination), show, compare, search, reproduce.

Synchronous SQLAlchemy 2 over psycopg2; every query is parameterized. Engines come from
:func:`make_engine` (a bare ``postgresql://`` URL is rewritten to ``postgresql+psycopg2://``,
because SQLAlchemy 2.1 maps the bare scheme to psycopg 3, which is not installed).

Row shapes:

* *summary rows* (:func:`list_runs`, :func:`find_runs_by_params`, :func:`top_by_sharpe`): dicts
  with :data:`SUMMARY_FIELDS` (``run_id`` a UUID, dates timezone-aware datetimes, metric values
  floats/ints or ``None``).
* *run details* (:func:`get_run`, :func:`compare_runs`): every ``backtest_runs`` column except the
  internal ``id``, plus ``metrics``: a dict of :data:`~admf_assets.history.models.PERFORMANCE_COLUMNS`.

Metric units: returns, drawdowns, volatility, win rate, expectancy, avg win/loss are fractions
(0.1 = 10%); Sharpe/Sortino/volatility annualized with sqrt(252); ``final_balance`` in the
snapshot's ``initial_capital`` currency; non-finite values (NaN, inf) are stored as NULL.

``execution_duration_seconds`` holds two different things depending on where a run comes from
(see :func:`duration_label`): for a run stored by :func:`evaluate_and_save` /
:func:`reproduce_run`, the wall time of that one evaluation (reading the bars, signals, metrics);
for a run published from a Dagster grid evaluation (``dagster_run_id`` set), the wall time of the
whole ``strategy_performance`` step divided by the number of strategies it evaluated at once, an
average share and not the time of this run.

Reproduction compares metrics with a tolerance (:data:`REPRODUCE_RTOL`, :data:`REPRODUCE_ATOL`,
see :func:`compare_metrics`): a re-evaluation may legitimately differ from the stored value in the
last bits of a float (e.g. a mean summed in a different order).

Errors (all subclasses of :class:`HistoryError`): :class:`DatabaseUnavailableError` (server
unreachable or URL unset), :class:`SchemaMissingError` (migrations not applied),
:class:`DuplicateRunError`, :class:`RunNotFoundError`, :class:`InvalidInputError` (bad cursor,
run id, snapshot or metrics; also a ``ValueError``), :class:`ReproductionError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from pydantic import ValidationError
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError, ProgrammingError

from admf_assets.history.models import EXECUTION_STATUSES, PERFORMANCE_COLUMNS, backtest_runs, performance_metrics
from admf_assets.history.snapshot import ConfigSnapshot

URL_ENV = "ADMF_POSTGRES_URL"
"""Environment variable holding the database URL (e.g. ``postgresql+psycopg2://postgres@127.0.0.1:5432/admf``)."""

MAX_PAGE_SIZE = 1000
"""Largest ``limit`` accepted by the list/search functions."""

REPRODUCE_RTOL = 1e-9
"""Relative tolerance of :func:`compare_metrics` (float metrics)."""

REPRODUCE_ATOL = 1e-12
"""Absolute tolerance of :func:`compare_metrics` (float metrics; matters for values near 0)."""

EXACT_METRICS: tuple[str, ...] = ("total_trades", "winning_trades", "losing_trades", "max_drawdown_date")
"""Metrics :func:`compare_metrics` compares exactly (integer counts and the drawdown date)."""

SUMMARY_FIELDS: tuple[str, ...] = (
    "run_id",
    "strategy_name",
    "strategy_type",
    "instrument_symbol",
    "start_date",
    "end_date",
    "execution_status",
    "created_at",
    "total_return",
    "sharpe_ratio",
    "max_drawdown",
    "total_trades",
)
"""Keys of a summary row."""

RUN_FIELDS: tuple[str, ...] = (
    "run_id",
    "strategy_name",
    "strategy_type",
    "instrument_symbol",
    "start_date",
    "end_date",
    "config_snapshot",
    "execution_status",
    "execution_duration_seconds",
    "reproduced_from_run_id",
    "dagster_run_id",
    "created_at",
)
"""Run columns of a run-details dict (besides ``metrics``)."""


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class HistoryError(Exception):
    """Base class of the run-history errors."""


class DatabaseUnavailableError(HistoryError):
    """The PostgreSQL server cannot be reached (or no URL is configured)."""


class SchemaMissingError(HistoryError):
    """The history tables do not exist: run ``admf db upgrade``."""


class DuplicateRunError(HistoryError):
    """A run with this ``run_id`` is already stored."""


class RunNotFoundError(HistoryError, LookupError):
    """No stored run has this ``run_id``."""


class InvalidInputError(HistoryError, ValueError):
    """A malformed argument: cursor, run id, snapshot, metrics or limit."""


class InvalidCursorError(InvalidInputError):
    """A pagination cursor that was not produced by :func:`list_runs` with the same filters."""


class ReproductionError(HistoryError):
    """A stored run cannot be re-evaluated (bars file missing or unreadable)."""


# --------------------------------------------------------------------------------------------
# Engine and error mapping
# --------------------------------------------------------------------------------------------


def normalize_url(url: str) -> str:
    """Force the psycopg2 driver: ``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg2://``.

    Raises:
        InvalidInputError: the URL cannot be parsed or is not a PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise InvalidInputError(f"invalid database URL: {err}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if not parsed.drivername.startswith("postgresql"):
        raise InvalidInputError(f"not a PostgreSQL URL (driver {parsed.drivername!r}); expected postgresql+psycopg2://...")
    return parsed.render_as_string(hide_password=False)


def url_from_env() -> str:
    """The URL in ``ADMF_POSTGRES_URL``.

    Raises:
        DatabaseUnavailableError: the variable is unset or empty.
    """
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        raise DatabaseUnavailableError(
            f"{URL_ENV} is not set (e.g. postgresql+psycopg2://postgres@127.0.0.1:5432/admf)"
        )
    return url


def make_engine(url: str | None = None, *, connect_timeout: int = 5, **kwargs: Any) -> Engine:
    """A psycopg2 engine for ``url`` (default :func:`url_from_env`); no connection is opened yet.

    Args:
        url: SQLAlchemy URL; bare ``postgresql://`` is mapped to psycopg2.
        connect_timeout: seconds before a connection attempt fails.
        kwargs: passed to :func:`sqlalchemy.create_engine`.
    """
    connect_args = {"connect_timeout": connect_timeout, "application_name": "admf_history"}
    connect_args.update(kwargs.pop("connect_args", {}))
    return create_engine(normalize_url(url or url_from_env()), pool_pre_ping=True, connect_args=connect_args, **kwargs)


def _describe(engine: Engine | None) -> str:
    if engine is None:
        return "the database"
    u = engine.url
    return f"PostgreSQL at {u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


def first_error_line(err: BaseException) -> str:
    """The first non-empty line of a (driver) error's message, for one-line error reports."""
    orig = getattr(err, "orig", None) or err
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


@contextlib.contextmanager
def database_errors(engine: Engine | None = None) -> Iterator[None]:
    """Map driver errors to :class:`DatabaseUnavailableError` / :class:`SchemaMissingError`."""
    try:
        yield
    except (OperationalError, InterfaceError) as err:
        raise DatabaseUnavailableError(f"cannot reach {_describe(engine)}: {first_error_line(err)}") from err
    except ProgrammingError as err:
        if getattr(getattr(err, "orig", None), "pgcode", None) == "42P01":  # undefined_table
            raise SchemaMissingError(
                f"history tables missing in {_describe(engine)} ({first_error_line(err)}); run `admf db upgrade`"
            ) from err
        raise


# --------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------


def parse_run_id(value: str | uuid.UUID) -> uuid.UUID:
    """A run id as :class:`uuid.UUID`.

    Raises:
        InvalidInputError: ``value`` is not a UUID.
    """
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise InvalidInputError(f"not a run id (UUID expected): {value!r}") from None


def clean_value(value: Any) -> Any:
    """A value ready to bind: numpy scalars -> Python, NaN/inf/NaT -> ``None``, pandas
    timestamps -> ``datetime``, booleans -> int."""
    if value is None or type(value).__name__ == "NaTType":
        return None
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise a metrics dict for ``performance_metrics``.

    Unknown keys are rejected, missing ones become ``None``, numpy scalars become Python numbers
    and non-finite floats become ``None``.

    Raises:
        InvalidInputError: unknown metric names or non-numeric values.
    """
    unknown = sorted(set(metrics) - set(PERFORMANCE_COLUMNS))
    if unknown:
        raise InvalidInputError(f"unknown metric name(s) {unknown}; expected a subset of {list(PERFORMANCE_COLUMNS)}")
    out: dict[str, Any] = {}
    for name in PERFORMANCE_COLUMNS:
        value = clean_value(metrics.get(name))
        if value is not None and name != "max_drawdown_date" and not isinstance(value, (int, float)):
            raise InvalidInputError(f"metric {name!r} must be a number, got {value!r}")
        if name in ("total_trades", "winning_trades", "losing_trades") and value is not None:
            value = int(value)
        out[name] = value
    return out


def metrics_identical(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Metrics that differ between two metrics dicts, as ``{name: (a, b)}`` (empty: identical).

    Comparison is exact (no tolerance); ``None`` (and NaN, stored as NULL) equals ``None``.
    :func:`reproduce_run` uses :func:`compare_metrics` (with a tolerance) instead.
    """
    ca, cb = clean_metrics(a), clean_metrics(b)
    return {k: (ca[k], cb[k]) for k in PERFORMANCE_COLUMNS if ca[k] != cb[k]}


def relative_difference(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)`` (0.0 when ``a == b``, including both 0)."""
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


@dataclass(frozen=True)
class MetricComparison:
    """The outcome of :func:`compare_metrics`.

    Attributes:
        differences: ``{name: (a, b)}`` of the metrics outside the tolerance (empty: they match).
        max_relative_difference: largest :func:`relative_difference` over the float metrics that
            are numbers on both sides (0.0 when all are bit-identical or there are none).
        exact: every metric is exactly equal (bit for bit).
    """

    differences: dict[str, tuple[Any, Any]]
    max_relative_difference: float
    exact: bool


def compare_metrics(
    a: Mapping[str, Any], b: Mapping[str, Any], *, rtol: float = REPRODUCE_RTOL, atol: float = REPRODUCE_ATOL
) -> MetricComparison:
    """Compare two metrics dicts with a tolerance.

    Float metrics match when ``|a - b| <= max(rtol * max(|a|, |b|), atol)`` (:func:`math.isclose`,
    symmetric in ``a`` and ``b``); NaN/``None`` (NaN is stored as NULL) matches only NaN/``None``.
    :data:`EXACT_METRICS` (trade counts, drawdown date) must be exactly equal.
    """
    ca, cb = clean_metrics(a), clean_metrics(b)
    differences: dict[str, tuple[Any, Any]] = {}
    worst = 0.0
    for name in PERFORMANCE_COLUMNS:
        x, y = ca[name], cb[name]
        if x == y:
            continue
        if name in EXACT_METRICS or x is None or y is None:
            differences[name] = (x, y)
            continue
        worst = max(worst, relative_difference(float(x), float(y)))
        if not math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=atol):
            differences[name] = (x, y)
    exact = all(ca[k] == cb[k] for k in PERFORMANCE_COLUMNS)
    return MetricComparison(differences, worst, exact)


def duration_label(run: Mapping[str, Any]) -> tuple[str, str]:
    """``(field, description)`` saying what a run's ``execution_duration_seconds`` measures.

    * Published from a Dagster grid evaluation (``dagster_run_id`` set): the wall time of the
      ``strategy_performance`` step divided by the number of strategies it evaluated together,
      an average share of the grid, not a time this run took on its own:
      ``("grid_seconds_per_strategy", ...)``.
    * Stored by :func:`evaluate_and_save` / :func:`reproduce_run`: the wall time of this one
      evaluation (reading the bars, signals, metrics): ``("evaluation_seconds", ...)``.
    """
    if run.get("dagster_run_id"):
        return (
            "grid_seconds_per_strategy",
            f"wall time of the strategy_performance step of Dagster run {run['dagster_run_id']} "
            "divided by the number of strategies it evaluated together (average share, not this run's own time)",
        )
    return "evaluation_seconds", "wall time of this run's evaluation: reading the bars, signals and metrics"


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"limit must be an integer in 1..{MAX_PAGE_SIZE}, got {limit!r}")
    return limit


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


@dataclass
class NewRun:
    """A run to store with :func:`save_run`.

    Attributes:
        snapshot: the configuration (validated with :class:`ConfigSnapshot`; a dict is accepted).
        start_date, end_date: timestamps of the first and last bar evaluated (timezone-aware).
        strategy_name: display name (default ``<type>_<config hash>``).
        execution_status: ``"success"`` or ``"failed"``.
        execution_duration_seconds: seconds (>= 0) or ``None``: the wall time of this run's
            evaluation (see :func:`duration_label` for what published runs store instead).
        run_id: the public identity (default: a new random UUID).
        reproduced_from_run_id: the run this one re-evaluates, if any (must exist).
        dagster_run_id: the Dagster run that produced it, if any.
    """

    snapshot: ConfigSnapshot | Mapping[str, Any]
    start_date: datetime
    end_date: datetime
    strategy_name: str | None = None
    execution_status: str = "success"
    execution_duration_seconds: float | None = None
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    reproduced_from_run_id: uuid.UUID | None = None
    dagster_run_id: str | None = None


def validate_snapshot(snapshot: ConfigSnapshot | Mapping[str, Any]) -> ConfigSnapshot:
    """The validated snapshot.

    Raises:
        InvalidInputError: naming the offending fields.
    """
    if isinstance(snapshot, ConfigSnapshot):
        return snapshot
    try:
        return ConfigSnapshot.model_validate(dict(snapshot))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'snapshot'}: {e['msg']}" for e in err.errors())
        raise InvalidInputError(f"invalid config snapshot: {problems}") from None


def save_run(engine: Engine, run: NewRun, metrics: Mapping[str, Any]) -> uuid.UUID:
    """Store a run and its metrics in ONE transaction; returns ``run.run_id``.

    Args:
        engine: from :func:`make_engine`.
        run: the run (its snapshot is validated before anything is written).
        metrics: :data:`PERFORMANCE_COLUMNS` values (see :func:`clean_metrics`).

    Raises:
        DuplicateRunError: ``run.run_id`` is already stored (nothing is written).
        RunNotFoundError: ``run.reproduced_from_run_id`` names no stored run.
        InvalidInputError: invalid snapshot, metrics, status or dates.
        DatabaseUnavailableError, SchemaMissingError: see the module docstring.
    """
    snap = validate_snapshot(run.snapshot)
    values_metrics = clean_metrics(metrics)
    if run.execution_status not in EXECUTION_STATUSES:
        raise InvalidInputError(f"execution_status must be one of {EXECUTION_STATUSES}, got {run.execution_status!r}")
    for name in ("start_date", "end_date"):
        value = getattr(run, name)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidInputError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if run.end_date < run.start_date:
        raise InvalidInputError(f"end_date {run.end_date} is before start_date {run.start_date}")
    run_id = parse_run_id(run.run_id)
    reproduced = parse_run_id(run.reproduced_from_run_id) if run.reproduced_from_run_id is not None else None
    row = {
        "run_id": run_id,
        "strategy_name": run.strategy_name or snap.default_strategy_name(),
        "strategy_type": snap.type,
        "instrument_symbol": snap.symbol,
        "start_date": run.start_date,
        "end_date": run.end_date,
        "config_snapshot": snap.to_json_dict(),
        "execution_status": run.execution_status,
        "execution_duration_seconds": clean_value(run.execution_duration_seconds),
        "reproduced_from_run_id": reproduced,
        "dagster_run_id": run.dagster_run_id,
    }
    try:
        with database_errors(engine), engine.begin() as conn:
            new_id = conn.execute(insert(backtest_runs).values(**row).returning(backtest_runs.c.id)).scalar_one()
            conn.execute(insert(performance_metrics).values(backtest_run_id=new_id, **values_metrics))
    except IntegrityError as err:
        diag = getattr(getattr(err, "orig", None), "diag", None)
        constraint = getattr(diag, "constraint_name", None) or ""
        if constraint == "uq_backtest_runs_run_id":
            raise DuplicateRunError(f"run {run_id} is already stored") from None
        if constraint.startswith("fk_backtest_runs_reproduced_from"):
            raise RunNotFoundError(f"reproduced_from_run_id {reproduced} is not a stored run") from None
        raise InvalidInputError(f"rejected by the database: {first_error_line(err)}") from None
    return run_id


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------

_SUMMARY_SELECT = """
SELECT r.id, r.run_id, r.strategy_name, r.strategy_type, r.instrument_symbol, r.start_date, r.end_date,
       r.execution_status, r.created_at, m.total_return, m.sharpe_ratio, m.max_drawdown, m.total_trades
FROM backtest_runs AS r
LEFT JOIN performance_metrics AS m ON m.backtest_run_id = r.id
"""

_RUN_SELECT = (
    "SELECT r.id, "
    + ", ".join(f"r.{c}" for c in RUN_FIELDS)
    + ", "
    + ", ".join(f"m.{c} AS m_{c}" for c in PERFORMANCE_COLUMNS)
    + "\nFROM backtest_runs AS r\nLEFT JOIN performance_metrics AS m ON m.backtest_run_id = r.id\n"
)


def encode_cursor(created_at: datetime, run_pk: int, strategy: str | None, symbol: str | None) -> str:
    """Opaque url-safe base64 token of a keyset position ``(created_at, id)`` and its filters."""
    payload = json.dumps({"v": 1, "t": created_at.isoformat(), "i": run_pk, "f": [strategy, symbol]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(token: str, strategy: str | None, symbol: str | None) -> tuple[datetime, int]:
    """The ``(created_at, id)`` keyset position of ``token``.

    Raises:
        InvalidCursorError: malformed token, or made for different filters.
    """
    try:
        raw = base64.urlsafe_b64decode(token.strip() + "=" * (-len(token.strip()) % 4))
        data = json.loads(raw)
        created_at = datetime.fromisoformat(data["t"])
        pk = data["i"]
        filters = data["f"]
        if data.get("v") != 1 or not isinstance(pk, int) or created_at.tzinfo is None:
            raise ValueError
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidCursorError(f"invalid cursor {token!r}") from None
    if list(filters) != [strategy, symbol]:
        raise InvalidCursorError("cursor was made for different --strategy/--symbol filters")
    return created_at, pk


def list_runs_query(
    strategy: str | None = None, symbol: str | None = None, limit: int = 20, cursor: str | None = None
) -> tuple[str, dict[str, Any]]:
    """SQL and parameters of one :func:`list_runs` page (fetches ``limit + 1`` rows).

    Keyset pagination on ``(created_at, id)`` descending (no OFFSET), served by the
    ``(created_at DESC, id DESC)`` index or the strategy/symbol composite indexes.

    ``strategy`` matches ``strategy_name`` exactly; when it is a registered strategy type
    (:data:`admf_assets.core.schemas.STRATEGY_TYPES`, e.g. ``rsi_extreme``) it also matches every
    run of that ``strategy_type``.
    """
    _check_limit(limit)
    where, params = [], {"limit": limit + 1}
    if strategy is not None:
        if strategy in _strategy_types():
            where.append("(r.strategy_name = :strategy OR r.strategy_type = :strategy)")
        else:
            where.append("r.strategy_name = :strategy")
        params["strategy"] = strategy
    if symbol is not None:
        where.append("r.instrument_symbol = :symbol")
        params["symbol"] = symbol
    if cursor is not None:
        params["cursor_created_at"], params["cursor_id"] = decode_cursor(cursor, strategy, symbol)
        where.append("(r.created_at, r.id) < (:cursor_created_at, :cursor_id)")
    sql = _SUMMARY_SELECT
    if where:
        sql += "WHERE " + " AND ".join(where) + "\n"
    sql += "ORDER BY r.created_at DESC, r.id DESC\nLIMIT :limit"
    return sql, params


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in SUMMARY_FIELDS}


def list_runs(
    engine: Engine,
    strategy: str | None = None,
    symbol: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of runs, newest first.

    Args:
        strategy: only runs with this ``strategy_name`` (e.g. ``SPY_5m_rsi_extreme_1a2b3c4d5e6f``
            for a published run, ``<type>_<hash>`` by default for :func:`evaluate_and_save`), or,
            when it is a registered strategy type (e.g. ``rsi_extreme``), also every run of that type.
        symbol: only runs on this ``instrument_symbol``.
        limit: page size, 1..:data:`MAX_PAGE_SIZE`.
        cursor: ``next_cursor`` of the previous page (same filters), ``None`` for the first page.

    Returns:
        ``(rows, next_cursor)``: summary rows and the token of the next page (``None`` on the
        last page). Pages never overlap or skip rows, even while runs are being added.

    Raises:
        InvalidInputError / InvalidCursorError, DatabaseUnavailableError, SchemaMissingError.
    """
    sql, params = list_runs_query(strategy, symbol, limit, cursor)
    with database_errors(engine), engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(text(sql), params).mappings()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(last["created_at"], last["id"], strategy, symbol)
    return [_summary(r) for r in rows], next_cursor


def _details(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in RUN_FIELDS}
    out["metrics"] = {c: row[f"m_{c}"] for c in PERFORMANCE_COLUMNS}
    return out


GET_RUN_SQL = _RUN_SELECT + "WHERE r.run_id = :run_id"
"""SQL of :func:`get_run` (served by the unique index on ``run_id``)."""


def get_run(engine: Engine, run_id: str | uuid.UUID) -> dict[str, Any]:
    """Details of one run (see the module docstring for the shape).

    Raises:
        InvalidInputError: ``run_id`` is not a UUID.
        RunNotFoundError: no such run.
        DatabaseUnavailableError, SchemaMissingError.
    """
    rid = parse_run_id(run_id)
    with database_errors(engine), engine.connect() as conn:
        row = conn.execute(text(GET_RUN_SQL), {"run_id": rid}).mappings().first()
    if row is None:
        raise RunNotFoundError(f"no run with id {rid}")
    return _details(row)


def compare_runs(engine: Engine, run_ids: Sequence[str | uuid.UUID]) -> list[dict[str, Any]]:
    """Details of several runs in the order given (one query).

    Raises:
        InvalidInputError: empty list or malformed id.
        RunNotFoundError: naming every unknown id.
        DatabaseUnavailableError, SchemaMissingError.
    """
    ids = [parse_run_id(r) for r in run_ids]
    if not ids:
        raise InvalidInputError("compare_runs needs at least one run id")
    with database_errors(engine), engine.connect() as conn:
        rows = conn.execute(text(_RUN_SELECT + "WHERE r.run_id = ANY(:run_ids)"), {"run_ids": list(set(ids))}).mappings()
        found = {row["run_id"]: _details(row) for row in rows}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise RunNotFoundError(f"no run with id {', '.join(missing)}")
    return [found[i] for i in ids]


def _strategy_types() -> tuple[str, ...]:
    from admf_assets.core.schemas import STRATEGY_TYPES

    return STRATEGY_TYPES


def _suggest(name: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_search_params(params: Mapping[str, Any], strategy_type: str | None = None) -> dict[str, Any]:
    """Validate the parameter names (and strategy type) of a search against the registered
    strategy schemas (:data:`admf_assets.core.schemas.STRATEGY_SCHEMAS`), so that a typo is an
    error rather than an empty result.

    With ``strategy_type``, every name must be a parameter of that type (an alias, e.g.
    momentum's ``sma_period``, is renamed to its canonical name, which is what snapshots store);
    without it, every name must be a parameter of at least one type.

    Returns:
        ``params`` with canonical names.

    Raises:
        InvalidInputError: no parameters, an unknown strategy type or parameter name (the
            message lists the valid names).
    """
    from admf_assets.core.schemas import STRATEGY_SCHEMAS, STRATEGY_TYPES

    if not isinstance(params, Mapping) or not params:
        raise InvalidInputError("find_runs_by_params needs at least one parameter")
    if strategy_type is not None:
        if strategy_type not in STRATEGY_SCHEMAS:
            raise InvalidInputError(
                f"unknown strategy type {strategy_type!r}{_suggest(str(strategy_type), STRATEGY_TYPES)}; "
                f"known types: {', '.join(STRATEGY_TYPES)}"
            )
        schema = STRATEGY_SCHEMAS[strategy_type]
        names = list(schema["properties"])
        aliases: Mapping[str, str] = schema.get("x-aliases", {})
        out: dict[str, Any] = {}
        for key, value in params.items():
            name = aliases.get(str(key), str(key))
            if name not in names:
                raise InvalidInputError(
                    f"{strategy_type} has no parameter {key!r}{_suggest(str(key), names)}; "
                    f"its parameters: {', '.join(names)}"
                )
            if name in out:
                raise InvalidInputError(f"parameter {name!r} given twice (as {name!r} and its alias)")
            out[name] = value
        return out
    known = sorted({n for schema in STRATEGY_SCHEMAS.values() for n in schema["properties"]})
    for key in params:
        if str(key) not in known:
            owners = sorted(t for t, schema in STRATEGY_SCHEMAS.items() if str(key) in schema.get("x-aliases", {}))
            hint = f" (an alias of {owners[0]}'s {STRATEGY_SCHEMAS[owners[0]]['x-aliases'][str(key)]!r}; give --type {owners[0]} or the canonical name)" if owners else _suggest(str(key), known)
            raise InvalidInputError(f"unknown parameter {key!r}{hint}; known parameters: {', '.join(known)}")
    return {str(k): v for k, v in params.items()}


def _containment(params: Mapping[str, Any], strategy_type: str | None) -> str:
    checked = check_search_params(params, strategy_type)
    containment: dict[str, Any] = {"parameters": {k: clean_value(v) for k, v in checked.items()}}
    if strategy_type is not None:
        containment["type"] = strategy_type
    return json.dumps(containment, sort_keys=True)


def find_runs_query(
    params: Mapping[str, Any], strategy_type: str | None = None, limit: int = 100
) -> tuple[str, dict[str, Any]]:
    """SQL and parameters of :func:`find_runs_by_params`: ``config_snapshot @> :filter``
    (JSONB containment, served by the GIN ``jsonb_path_ops`` index).

    Raises:
        InvalidInputError: bad ``limit``, or see :func:`check_search_params`.
    """
    _check_limit(limit)
    containment = _containment(params, strategy_type)
    # The containment runs in a MATERIALIZED CTE so that ORDER BY ... LIMIT cannot tempt the
    # planner into walking the created_at index and filtering every row (its selectivity
    # estimate for @> is rough): the match set comes from the GIN index, then it is sorted.
    sql = (
        "WITH r AS MATERIALIZED (\n"
        "    SELECT id, run_id, strategy_name, strategy_type, instrument_symbol, start_date, end_date,\n"
        "           execution_status, created_at\n"
        "    FROM backtest_runs\n"
        "    WHERE config_snapshot @> CAST(:filter AS jsonb)\n"
        ")\n"
        "SELECT r.id, r.run_id, r.strategy_name, r.strategy_type, r.instrument_symbol, r.start_date, r.end_date,\n"
        "       r.execution_status, r.created_at, m.total_return, m.sharpe_ratio, m.max_drawdown, m.total_trades\n"
        "FROM r\nLEFT JOIN performance_metrics AS m ON m.backtest_run_id = r.id\n"
        "ORDER BY r.created_at DESC, r.id DESC\nLIMIT :limit"
    )
    return sql, {"filter": containment, "limit": limit}


def count_runs_query(params: Mapping[str, Any], strategy_type: str | None = None) -> tuple[str, dict[str, Any]]:
    """SQL and parameters of :func:`count_runs_by_params` (same filter as :func:`find_runs_query`)."""
    return "SELECT count(*) FROM backtest_runs WHERE config_snapshot @> CAST(:filter AS jsonb)", {
        "filter": _containment(params, strategy_type)
    }


def count_runs_by_params(engine: Engine, params: Mapping[str, Any], *, strategy_type: str | None = None) -> int:
    """How many runs :func:`find_runs_by_params` would match without a limit.

    Raises:
        InvalidInputError (see :func:`check_search_params`), DatabaseUnavailableError, SchemaMissingError.
    """
    sql, qparams = count_runs_query(params, strategy_type)
    with database_errors(engine), engine.connect() as conn:
        return int(conn.execute(text(sql), qparams).scalar_one())


def find_runs_by_params(
    engine: Engine, params: Mapping[str, Any], *, strategy_type: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Runs whose snapshot parameters contain ``params`` (e.g. ``{"period": 20, "std_dev": 2.0}``),
    newest first, at most ``limit``.

    Numbers match numerically (``2`` matches a stored ``2.0``). Parameter names and
    ``strategy_type`` are checked against the registered strategy schemas
    (:func:`check_search_params`); see :func:`count_runs_by_params` for the total.

    Raises:
        InvalidInputError: empty ``params``, unknown strategy type or parameter name, bad
            ``limit``; DatabaseUnavailableError, SchemaMissingError.
    """
    sql, qparams = find_runs_query(params, strategy_type, limit)
    with database_errors(engine), engine.connect() as conn:
        return [_summary(r) for r in conn.execute(text(sql), qparams).mappings()]


def top_by_sharpe_query(limit: int = 20) -> tuple[str, dict[str, Any]]:
    """SQL and parameters of :func:`top_by_sharpe` (index ``(sharpe_ratio DESC NULLS LAST, backtest_run_id)``)."""
    _check_limit(limit)
    sql = (
        "SELECT r.id, r.run_id, r.strategy_name, r.strategy_type, r.instrument_symbol, r.start_date, r.end_date,\n"
        "       r.execution_status, r.created_at, m.total_return, m.sharpe_ratio, m.max_drawdown, m.total_trades\n"
        "FROM performance_metrics AS m\nJOIN backtest_runs AS r ON r.id = m.backtest_run_id\n"
        "ORDER BY m.sharpe_ratio DESC NULLS LAST, m.backtest_run_id\nLIMIT :limit"
    )
    return sql, {"limit": limit}


def top_by_sharpe(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` runs with the highest Sharpe ratio (runs without one come last).

    Raises:
        InvalidInputError, DatabaseUnavailableError, SchemaMissingError.
    """
    sql, params = top_by_sharpe_query(limit)
    with database_errors(engine), engine.connect() as conn:
        return [_summary(r) for r in conn.execute(text(sql), params).mappings()]


# --------------------------------------------------------------------------------------------
# Evaluation and reproduction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`.

    Attributes:
        metrics: :data:`PERFORMANCE_COLUMNS` values (see :func:`metrics_from_core`).
        start_date, end_date: first and last bar timestamps (UTC).
        n_bars: bars evaluated.
        duration_seconds: wall time of this one evaluation (reading the bars, signals, metrics),
            seconds; stored as ``execution_duration_seconds``.
    """

    metrics: dict[str, Any]
    start_date: datetime
    end_date: datetime
    n_bars: int
    duration_seconds: float


def metrics_from_core(row: Mapping[str, Any], initial_capital: float, trades=None) -> dict[str, Any]:
    """Map one row of :func:`admf_assets.core.api.trace_metrics` to ``performance_metrics`` columns.

    ``final_balance = initial_capital * (1 + total_return)``; ``expectancy`` = mean net trade
    return (``avg_trade_return``); ``avg_win`` / ``avg_loss`` = mean net return of winning /
    losing closed trades (``trades``: the :func:`admf_assets.core.metrics.extract_trades` frame of
    this strategy; ``None`` leaves them NULL). ``max_drawdown_date`` is left NULL here
    (:func:`evaluate` fills it with the timestamp of the drawdown's trough bar).

    The two means are taken with ``Series.where(...).groupby(...).mean()``, exactly as the
    ``backtest_history`` asset computes them for a published grid: pandas' groupby mean sums with
    Kahan compensation, ``Series.mean`` with numpy's pairwise summation, and the two differ in
    the last bit for about half the strategies.
    """
    total_return = clean_value(row["total_return"])
    out = {
        "total_return": total_return,
        "final_balance": None if total_return is None else float(initial_capital) * (1.0 + total_return),
        "sharpe_ratio": row["sharpe_ratio"],
        "sortino_ratio": row["sortino_ratio"],
        "max_drawdown": row["max_drawdown"],
        "max_drawdown_date": None,
        "calmar_ratio": row["calmar_ratio"],
        "volatility": row["volatility"],
        "total_trades": row["total_trades"],
        "winning_trades": row["winning_trades"],
        "losing_trades": row["losing_trades"],
        "win_rate": row["win_rate"],
        "profit_factor": row["profit_factor"],
        "expectancy": row["avg_trade_return"],
        "avg_win": None,
        "avg_loss": None,
    }
    if trades is not None and len(trades):
        net = trades["net_return"].reset_index(drop=True)
        key = [0] * len(net)  # one group: the same summation as the per-strategy groupby of a grid
        for name, kept in (("avg_win", net.where(net > 0)), ("avg_loss", net.where(net < 0))):
            mean = kept.groupby(key).mean()
            out[name] = float(mean.iloc[0]) if kept.notna().any() else None
    return clean_metrics(out)


def read_snapshot_bars(path: Path, symbol: str, timeframe: str, through=None):
    """The bars a snapshot's ``bars_path`` names.

    ``path`` is either one bars file (CSV or Parquet, read with
    :func:`admf_assets.core.bars.read_bar_file`, used exactly as given) or a workspace's bar
    folder ``<root>/bars/<SYM>_<tf>`` (what the ``backtest_history`` asset publishes): its day
    partitions (up to ``through``, a date, when given) concatenated in date order with
    :func:`admf_assets.core.store.read_bar_history`, i.e. the validated session bars the grid
    evaluation ran on.

    Returns:
        DataFrame with ``ts`` (UTC) and float64 ``open, high, low, close, volume``, plus ``symbol``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        admf_assets.core.bars.BarValidationError: an unreadable bars file.
        admf_assets.core.store.StoreError: a bar folder without day partitions.
    """
    from admf_assets.core.bars import read_bar_file
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.store import read_bar_history

    if path.is_dir():
        layout = WorkspaceLayout(path.parents[1])
        if layout.bars_dir(symbol, timeframe).resolve() != path.resolve():
            raise FileNotFoundError(f"{path} is not the bar folder of {symbol} {timeframe} (expected <root>/bars/{symbol}_{timeframe})")
        bars = read_bar_history(layout, symbol, timeframe, through=through).bars.copy()
        bars["symbol"] = symbol
        return bars
    if not path.exists():
        raise FileNotFoundError(str(path))
    return read_bar_file(path, symbol=symbol)


def evaluate(snapshot: ConfigSnapshot | Mapping[str, Any], bars=None) -> Evaluation:
    """Evaluate the snapshot's strategy with :mod:`admf_assets.core.api`.

    Args:
        snapshot: the configuration.
        bars: a bars DataFrame, or a path (a CSV/Parquet file or a workspace bar folder, see
            :func:`read_snapshot_bars`); default: ``snapshot.bars_path``. A file's bars are used
            exactly as given (no session filter).

    Raises:
        InvalidInputError: invalid snapshot.
        ReproductionError: bars file missing or unreadable.
    """
    import numpy as np
    import pandas as pd

    from admf_assets.core.api import compute_signal_traces, prepare_bars, trace_metrics
    from admf_assets.core.bars import BarValidationError
    from admf_assets.core.metrics import CostModel, extract_trades
    from admf_assets.core.store import StoreError
    from admf_assets.core.traces import table_to_rows

    snap = validate_snapshot(snapshot)
    started = time.perf_counter()
    try:
        if bars is None or isinstance(bars, (str, Path)):
            frame = read_snapshot_bars(Path(bars if bars is not None else snap.bars_path), snap.symbol, snap.timeframe, snap.bars_through)
        else:
            frame = prepare_bars(bars, symbol=snap.symbol)
    except FileNotFoundError as err:
        raise ReproductionError(f"bars file not found: {err}") from None
    except (BarValidationError, StoreError) as err:
        raise ReproductionError(f"bars unreadable: {err}") from None
    if len(frame) == 0:
        raise ReproductionError("no bars to evaluate")
    frame = frame[["ts", "open", "high", "low", "close", "volume", "symbol"]].reset_index(drop=True)
    costs = CostModel(snap.costs.commission_bps, snap.costs.slippage_bps)
    config = snap.strategy_config()
    trace = compute_signal_traces(frame, [config], symbol=snap.symbol, timeframe=snap.timeframe)
    table = trace_metrics(trace, frame, costs, calendar=snap.calendar)
    row = table.iloc[0]
    rows = table_to_rows(trace, [row["strategy_id"]], len(frame))
    trades = extract_trades(rows, frame["close"].to_numpy(dtype=np.float64), costs)
    metrics = metrics_from_core(row, snap.initial_capital, trades)
    ts = pd.to_datetime(frame["ts"], utc=True)
    trough = int(row["max_drawdown_idx"])
    if trough >= 0:
        metrics["max_drawdown_date"] = ts.iloc[trough].to_pydatetime()
    return Evaluation(
        metrics=metrics,
        start_date=ts.iloc[0].to_pydatetime(),
        end_date=ts.iloc[-1].to_pydatetime(),
        n_bars=len(frame),
        duration_seconds=time.perf_counter() - started,
    )


def evaluate_and_save(
    engine: Engine,
    snapshot: ConfigSnapshot | Mapping[str, Any],
    bars=None,
    *,
    strategy_name: str | None = None,
    run_id: uuid.UUID | None = None,
    reproduced_from_run_id: uuid.UUID | None = None,
    dagster_run_id: str | None = None,
) -> tuple[uuid.UUID, Evaluation]:
    """:func:`evaluate` then :func:`save_run`; returns ``(run_id, evaluation)``.

    Raises:
        the errors of :func:`evaluate` and :func:`save_run`.
    """
    snap = validate_snapshot(snapshot)
    result = evaluate(snap, bars)
    new = NewRun(
        snapshot=snap,
        start_date=result.start_date,
        end_date=result.end_date,
        strategy_name=strategy_name,
        execution_duration_seconds=result.duration_seconds,
        run_id=run_id or uuid.uuid4(),
        reproduced_from_run_id=reproduced_from_run_id,
        dagster_run_id=dagster_run_id,
    )
    return save_run(engine, new, result.metrics), result


@dataclass(frozen=True)
class Reproduction:
    """The outcome of :func:`reproduce_run`.

    Attributes:
        original_run_id: the run re-evaluated.
        new_run_id: the stored reproduction (``reproduced_from_run_id`` = original).
        identical: the reproduction matches: every metric within the tolerance of
            :func:`compare_metrics` (rtol :data:`REPRODUCE_RTOL`, atol :data:`REPRODUCE_ATOL`;
            trade counts and drawdown date exact) and the same bar date range.
        differences: ``{name: (original, reproduced)}`` of what is outside the tolerance.
        max_relative_difference: largest relative difference of the float metrics (0.0: none).
        exact: every metric is bit-identical (implies ``identical`` when the dates match).
        rtol, atol: the tolerance used.
    """

    original_run_id: uuid.UUID
    new_run_id: uuid.UUID
    identical: bool
    differences: dict[str, tuple[Any, Any]]
    max_relative_difference: float = 0.0
    exact: bool = True
    rtol: float = REPRODUCE_RTOL
    atol: float = REPRODUCE_ATOL


def reproduce_run(
    engine: Engine,
    run_id: str | uuid.UUID,
    bars=None,
    *,
    new_run_id: uuid.UUID | None = None,
    rtol: float = REPRODUCE_RTOL,
    atol: float = REPRODUCE_ATOL,
) -> Reproduction:
    """Re-run a stored evaluation from its snapshot, store it, and compare the metrics.

    Float metrics match within ``rtol`` / ``atol`` (see :func:`compare_metrics`): a float
    recomputed by different code (e.g. summed in a different order) may differ from the stored
    one in its last bits. Trade counts, the drawdown date and the bar date range must be equal.

    Args:
        run_id: the stored run.
        bars: override of the bars (DataFrame or path); default: the snapshot's ``bars_path``.
        new_run_id: id of the reproduction (default: a new random UUID).
        rtol, atol: tolerance of the float metrics.

    Raises:
        RunNotFoundError, InvalidInputError, ReproductionError, DuplicateRunError (``new_run_id``
        already stored), DatabaseUnavailableError, SchemaMissingError.
    """
    original = get_run(engine, run_id)
    snap = validate_snapshot(original["config_snapshot"])
    if isinstance(bars, (str, Path)):
        snap = snap.model_copy(update={"bars_path": str(bars)})
    new_id, result = evaluate_and_save(
        engine,
        snap,
        bars,
        strategy_name=original["strategy_name"],
        run_id=new_run_id,
        reproduced_from_run_id=original["run_id"],
    )
    comparison = compare_metrics(original["metrics"], result.metrics, rtol=rtol, atol=atol)
    differences = dict(comparison.differences)
    for name in ("start_date", "end_date"):
        if original[name] != getattr(result, name):
            differences[name] = (original[name], getattr(result, name))
    return Reproduction(
        original["run_id"],
        new_id,
        not differences,
        differences,
        max_relative_difference=comparison.max_relative_difference,
        exact=comparison.exact,
        rtol=rtol,
        atol=atol,
    )


# --------------------------------------------------------------------------------------------
# Synthetic data (benchmarks and index tests)
# --------------------------------------------------------------------------------------------

_FILL_RUNS_SQL = """
INSERT INTO backtest_runs (run_id, strategy_name, strategy_type, instrument_symbol, start_date, end_date,
                           config_snapshot, execution_status, execution_duration_seconds, created_at)
SELECT gen_random_uuid(),
       'synthetic_' || (g % :n_strategies),
       'bollinger_bands',
       'SYN' || (g % :n_symbols),
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + (g % 300) * INTERVAL '1 day',
       TIMESTAMPTZ '2025-01-01 00:00:00+00' + (g % 300 + 30) * INTERVAL '1 day',
       jsonb_build_object(
           'schema_version', 1,
           'type', 'bollinger_bands',
           'parameters', jsonb_build_object('period', 5 + g % 97, 'std_dev', 1.0 + (g % 7) * 0.25),
           'symbol', 'SYN' || (g % :n_symbols),
           'timeframe', '5m',
           'bars_path', 'synthetic.csv',
           'costs', jsonb_build_object('commission_bps', 0.5, 'slippage_bps', 1.0),
           'initial_capital', 100000.0,
           'calendar', 'XNYS'),
       'success',
       0.1 + (g % 10) * 0.01,
       now() - INTERVAL '1 year' + g * INTERVAL '1 second'
FROM generate_series(1, :n) AS g
"""

_FILL_METRICS_SQL = """
INSERT INTO performance_metrics (backtest_run_id, total_return, final_balance, sharpe_ratio, sortino_ratio,
                                 max_drawdown, calmar_ratio, volatility, total_trades, winning_trades,
                                 losing_trades, win_rate, profit_factor, expectancy)
SELECT r.id, x.ret, 100000.0 * (1 + x.ret), x.sharpe, x.sharpe * 1.4, 0.05 + random() * 0.2, x.sharpe / 2,
       0.1 + random() * 0.2, 100, 45, 55, 0.45, 0.9 + random() * 0.4, x.ret / 100
FROM backtest_runs AS r
CROSS JOIN LATERAL (SELECT random() * 4 - 1 AS sharpe, random() * 0.4 - 0.1 AS ret WHERE r.id > 0) AS x
WHERE r.id > :after_id
"""


def fill_synthetic_runs(conn: Connection, n: int, *, n_strategies: int = 50, n_symbols: int = 20) -> None:
    """Bulk-insert ``n`` synthetic runs with metrics (``INSERT ... SELECT generate_series``).

    Runs are named ``synthetic_<k>`` on symbols ``SYN<k>``, bollinger_bands parameters
    ``period`` 5..101 and ``std_dev`` 1.0..2.5 (679 combinations), one second apart in
    ``created_at``. For benchmarks and index tests only; run ``ANALYZE`` afterwards.
    """
    after = conn.execute(text("SELECT coalesce(max(id), 0) FROM backtest_runs")).scalar_one()
    conn.execute(text(_FILL_RUNS_SQL), {"n": n, "n_strategies": n_strategies, "n_symbols": n_symbols})
    conn.execute(text(_FILL_METRICS_SQL), {"after_id": after})
