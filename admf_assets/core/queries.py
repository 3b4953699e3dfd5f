"""The researcher's read queries over the DuckDB warehouse (``admf analytics ...``).

Every query is one parameterized SQL statement; values are always bound (``$name``
parameters), and the only text ever spliced into SQL comes from the fixed mappings
:data:`SCAN_SORT_COLUMNS` (after a whitelist check, :func:`check_sort_metric`) and
``_SCAN_PREDICATES`` (fragments chosen by which filters are set, never user text). Functions take an open connection (see
:func:`admf_assets.core.warehouse.connect`) and return pandas DataFrames. The listing queries
(:func:`scan`, :func:`top_combinations`, :func:`duplicates`) also count every matching row before
their LIMIT (a ``count(*) OVER ()`` in the same statement) and put it in ``df.attrs["total"]``.

duckdb and pandas are imported only for type checking here, so the CLI can import the
whitelist (for its help text) without loading them.

Units are those of ``sql/duckdb/000_core.sql``: returns, drawdowns and win rates are fractions,
Sharpe / Sortino ratios annualized with sqrt(252), ``deflated_sharpe_ratio`` and ``pbo`` are
probabilities in [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # annotations only (``from __future__ import annotations``)
    import duckdb
    import pandas as pd


class QueryError(ValueError):
    """A query option is invalid (unknown metric, strategy type or parameter); the message names it."""


SCAN_SORT_COLUMNS: dict[str, tuple[str, str]] = {
    "sharpe_ratio": ("s.sharpe_ratio", "DESC"),
    "deflated_sharpe_ratio": ("s.deflated_sharpe_ratio", "DESC"),
    "sortino_ratio": ("s.sortino_ratio", "DESC"),
    "calmar_ratio": ("s.calmar_ratio", "DESC"),
    "total_return": ("s.total_return", "DESC"),
    "annualized_return": ("s.annualized_return", "DESC"),
    "profit_factor": ("s.profit_factor", "DESC"),
    "win_rate": ("s.win_rate", "DESC"),
    "total_trades": ("s.total_trades", "DESC"),
    "avg_trade_return": ("s.avg_trade_return", "DESC"),
    "gross_sharpe": ("s.gross_sharpe", "DESC"),
    "max_drawdown": ("s.max_drawdown", "ASC"),
    "volatility": ("s.volatility", "ASC"),
    "pbo": ("g.pbo", "ASC"),
}
"""Whitelist of ``--sort-by`` metrics: name -> (SQL expression, direction). Drawdown, volatility
and PBO sort ascending (smaller is better), everything else descending. For every metric,
strategies without a closed trade (``total_trades`` 0 or NULL) come after the others, NULLs
last, ties by ``sharpe_ratio`` descending (NULLs last), then ``strategy_id``."""

SCAN_COLUMNS: tuple[str, ...] = (
    "strategy_id", "strategy_type", "symbol", "parameters", "sharpe_ratio", "deflated_sharpe_ratio",
    "sortino_ratio", "total_return", "max_drawdown", "win_rate", "profit_factor", "total_trades", "pbo", "run_id",
)
"""Columns returned by :func:`scan` (``pbo`` is the strategy's grid PBO), followed by the sort
metric when it is not one of them."""


def sort_metrics_help() -> str:
    """The ``--sort-by`` whitelist as text for help messages (descending, then ascending metrics)."""
    desc = [m for m, (_, d) in SCAN_SORT_COLUMNS.items() if d == "DESC"]
    asc = [m for m, (_, d) in SCAN_SORT_COLUMNS.items() if d == "ASC"]
    return f"{', '.join(desc)} (descending); {', '.join(asc)} (ascending)"


def check_sort_metric(metric: str) -> tuple[str, str]:
    """The (SQL expression, direction) of a whitelisted sort metric.

    Raises:
        QueryError: for any name outside :data:`SCAN_SORT_COLUMNS` (the value is never put in SQL).
    """
    try:
        return SCAN_SORT_COLUMNS[metric]
    except (KeyError, TypeError):
        raise QueryError(f"unknown --sort-by metric {metric!r}; expected one of {', '.join(SCAN_SORT_COLUMNS)}") from None


_SCAN_SQL = """
SELECT s.strategy_id, s.strategy_type, s.symbol, s.parameters, s.sharpe_ratio, s.deflated_sharpe_ratio,
       s.sortino_ratio, s.total_return, s.max_drawdown, s.win_rate, s.profit_factor, s.total_trades,
       g.pbo, s.run_id{extra},
       count(*) OVER () AS matches
FROM strategies s
LEFT JOIN grid_overfitting g ON g.grid_id = s.grid_id
WHERE {where}
ORDER BY coalesce(s.total_trades, 0) = 0, {order} {direction} NULLS LAST, s.sharpe_ratio DESC NULLS LAST, s.strategy_id
LIMIT $top
"""

_SCAN_PREDICATES: dict[str, str] = {
    "min_sharpe": "s.sharpe_ratio >= $min_sharpe",
    "max_drawdown": "s.max_drawdown <= $max_drawdown",
    "min_trades": "s.total_trades >= $min_trades",
    "types": "list_contains($types, s.strategy_type)",
    "symbol": "s.symbol = $symbol",
    "min_dsr": "s.deflated_sharpe_ratio >= $min_dsr",
    "max_pbo": "g.pbo <= $max_pbo",
}
"""Fixed SQL fragments of :func:`scan`'s filters; only those with a value are put in the WHERE
clause (their values stay bound parameters), which lets DuckDB push them into the scan."""


@dataclass(frozen=True)
class ScanFilter:
    """Options of :func:`scan` (None = no filter).

    Attributes:
        min_sharpe: keep ``sharpe_ratio >= min_sharpe`` (annualized, after costs).
        max_drawdown: keep ``max_drawdown <= max_drawdown`` (positive fraction, 0.15 = 15 %).
        min_trades: keep ``total_trades >= min_trades`` (closed trades).
        strategy_types: keep these strategy types.
        symbol: keep this symbol.
        min_dsr: keep ``deflated_sharpe_ratio >= min_dsr`` (probability).
        max_pbo: keep strategies whose grid has ``pbo <= max_pbo``.
        top: at most this many rows (>= 1).
        sort_by: a :data:`SCAN_SORT_COLUMNS` name.
    """

    min_sharpe: float | None = None
    max_drawdown: float | None = None
    min_trades: int | None = None
    strategy_types: Sequence[str] | None = None
    symbol: str | None = None
    min_dsr: float | None = None
    max_pbo: float | None = None
    top: int = 50
    sort_by: str = "sharpe_ratio"


def scan(conn: duckdb.DuckDBPyConnection, f: ScanFilter) -> pd.DataFrame:
    """Strategies matching ``f``, best first by ``f.sort_by``: one parameterized query.

    Returns:
        DataFrame with :data:`SCAN_COLUMNS` (``parameters`` a JSON string), plus the sort metric
        when it is not among them; ``attrs["total"]`` = strategies matching before ``top``.

    Raises:
        QueryError: for a sort metric outside the whitelist or ``top < 1``.
    """
    order, direction = check_sort_metric(f.sort_by)
    if f.top < 1:
        raise QueryError(f"--top must be >= 1, got {f.top}")
    values = {
        "min_sharpe": f.min_sharpe,
        "max_drawdown": f.max_drawdown,
        "min_trades": f.min_trades,
        "types": list(f.strategy_types) if f.strategy_types else None,
        "symbol": f.symbol,
        "min_dsr": f.min_dsr,
        "max_pbo": f.max_pbo,
    }
    params = {k: v for k, v in values.items() if v is not None}
    where = " AND ".join(_SCAN_PREDICATES[k] for k in params) or "TRUE"
    params["top"] = int(f.top)
    # the sort metric is always a column of the result: its whitelisted expression and name
    extra = "" if f.sort_by in SCAN_COLUMNS else f", {order} AS {f.sort_by}"
    return _with_total(conn.execute(_SCAN_SQL.format(where=where, order=order, direction=direction, extra=extra), params).df())


def _with_total(df: pd.DataFrame) -> pd.DataFrame:
    """Move the ``matches`` column (``count(*) OVER ()``: rows before the LIMIT) to ``df.attrs["total"]``."""
    total = int(df["matches"].iloc[0]) if len(df) else 0
    df = df.drop(columns="matches")
    df.attrs["total"] = total
    return df


def known_symbols(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """The symbols of the ``strategies`` table, sorted (to validate ``--symbol``)."""
    return [r[0] for r in conn.execute("SELECT DISTINCT symbol FROM strategies WHERE symbol IS NOT NULL ORDER BY symbol").fetchall()]


# ------------------------------------------------------------------------------------------
# Parameter sensitivity
# ------------------------------------------------------------------------------------------

_PRECOMPUTED_SQL = """
SELECT parameter_value, avg_sharpe, std_sharpe, count_strategies, best_sharpe
FROM parameter_analysis
WHERE strategy_type = $type AND parameter_name = $name
ORDER BY parameter_value
"""

_ON_THE_FLY_SQL = """
SELECT p.parameter_value, avg(s.sharpe_ratio) AS avg_sharpe, stddev_samp(s.sharpe_ratio) AS std_sharpe,
       count(*) AS count_strategies, max(s.sharpe_ratio) AS best_sharpe
FROM strategy_parameters p JOIN strategies s USING (strategy_id)
WHERE p.strategy_type = $type AND p.parameter_name = $name
GROUP BY p.parameter_value
ORDER BY p.parameter_value
"""

_TWO_PARAMETER_SQL = """
SELECT a.parameter_value AS value_a, b.parameter_value AS value_b, avg(s.sharpe_ratio) AS avg_sharpe,
       stddev_samp(s.sharpe_ratio) AS std_sharpe, count(*) AS count_strategies, max(s.sharpe_ratio) AS best_sharpe
FROM strategy_parameters a
JOIN strategy_parameters b ON b.strategy_id = a.strategy_id AND b.parameter_name = $name_b
JOIN strategies s ON s.strategy_id = a.strategy_id
WHERE a.strategy_type = $type AND a.parameter_name = $name_a
GROUP BY a.parameter_value, b.parameter_value
ORDER BY a.parameter_value, b.parameter_value
"""

_PARAMETER_NAMES_SQL = """
SELECT strategy_type, list(DISTINCT parameter_name ORDER BY parameter_name) AS names
FROM strategy_parameters GROUP BY strategy_type ORDER BY strategy_type
"""


def parameter_names(conn: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """``{strategy_type: [parameter names]}`` of the current ``strategy_parameters`` table."""
    return {t: list(n) for t, n in conn.execute(_PARAMETER_NAMES_SQL).fetchall()}


def _check_parameter(conn: duckdb.DuckDBPyConnection, strategy_type: str, names: Sequence[str]) -> None:
    known = parameter_names(conn)
    if strategy_type not in known:
        shown = ", ".join(known) or "none: materialize strategy_performance first"
        raise QueryError(f"unknown strategy type {strategy_type!r} in strategy_parameters; known: {shown}")
    for name in names:
        if name not in known[strategy_type]:
            raise QueryError(f"{strategy_type} has no parameter {name!r}; its parameters: {', '.join(known[strategy_type])}")


def parameter_sensitivity(conn: duckdb.DuckDBPyConnection, strategy_type: str, parameter: str) -> tuple[pd.DataFrame, str]:
    """Sharpe ratio statistics per value of one parameter of one strategy type (symbols pooled).

    Reads the pre-computed ``parameter_analysis`` rows; when there are none (asset not yet
    materialized since the last ``strategy_performance``), computes the same aggregate on the fly
    from ``strategy_parameters`` x ``strategies``.

    Returns:
        ``(frame, source)``: columns parameter_value, avg_sharpe, std_sharpe (sample, ddof 1),
        count_strategies, best_sharpe ordered by value; ``source`` is ``"parameter_analysis"`` or
        ``"computed"``.

    Raises:
        QueryError: unknown strategy type or parameter (message lists the known ones).
    """
    pre = conn.execute(_PRECOMPUTED_SQL, {"type": strategy_type, "name": parameter}).df()
    if len(pre):
        return pre, "parameter_analysis"
    _check_parameter(conn, strategy_type, [parameter])
    return conn.execute(_ON_THE_FLY_SQL, {"type": strategy_type, "name": parameter}).df(), "computed"


def parameter_grid(conn: duckdb.DuckDBPyConnection, strategy_type: str, parameter_a: str, parameter_b: str) -> pd.DataFrame:
    """Sharpe ratio statistics per pair of values of two parameters (for a heatmap).

    Returns:
        Columns value_a, value_b, avg_sharpe, std_sharpe, count_strategies, best_sharpe.

    Raises:
        QueryError: unknown strategy type or parameter, or the same parameter twice.
    """
    if parameter_a == parameter_b:
        raise QueryError(f"--parameter given twice with the same name {parameter_a!r}")
    _check_parameter(conn, strategy_type, [parameter_a, parameter_b])
    return conn.execute(_TWO_PARAMETER_SQL, {"type": strategy_type, "name_a": parameter_a, "name_b": parameter_b}).df()


# ------------------------------------------------------------------------------------------
# Correlations, regime combinations, duplicates, one strategy
# ------------------------------------------------------------------------------------------

_CORRELATIONS_SQL = """
SELECT strategy_id_a, strategy_id_b, rank_a, rank_b, correlation, n_days
FROM strategy_correlations
WHERE rank_a <= $top AND rank_b <= $top
ORDER BY correlation DESC NULLS LAST, strategy_id_a, strategy_id_b
"""

_TOP_RANKED_SQL = """
SELECT DISTINCT strategy_id, rank FROM (
    SELECT strategy_id_a AS strategy_id, rank_a AS rank FROM strategy_correlations
    UNION ALL SELECT strategy_id_b, rank_b FROM strategy_correlations)
WHERE rank <= $top ORDER BY rank
"""


def correlation_pairs(conn: duckdb.DuckDBPyConnection, top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored pairs among the ``top`` best-ranked strategies of ``strategy_correlations``.

    Returns:
        ``(pairs, members)``: pairs with strategy_id_a, strategy_id_b, rank_a, rank_b,
        correlation (Pearson, daily net returns), n_days, ordered by correlation descending; and
        the ranked strategies (strategy_id, rank, 1 = best Sharpe) joined with strategy_type,
        symbol and sharpe_ratio.
    """
    pairs = conn.execute(_CORRELATIONS_SQL, {"top": int(top)}).df()
    members = conn.execute(
        f"""SELECT r.strategy_id, r.rank, s.strategy_type, s.symbol, s.sharpe_ratio
            FROM ({_TOP_RANKED_SQL}) r LEFT JOIN strategies s USING (strategy_id) ORDER BY r.rank""",
        {"top": int(top)},
    ).df()
    return pairs, members


_TOP_COMBINATIONS_SQL = """
SELECT rp.strategy_id, rp.classifier_id, s.strategy_type, c.classifier_type, s.symbol,
       any_value(rp.regime_aware_score) AS regime_aware_score,
       any_value(s.sharpe_ratio) AS sharpe_ratio,
       any_value(rp.regime_aware_score) - any_value(s.sharpe_ratio) AS regime_edge,
       arg_max(rp.regime, rp.sharpe_ratio) FILTER (WHERE rp.trade_count > 0) AS best_regime,
       max(rp.sharpe_ratio) FILTER (WHERE rp.trade_count > 0) AS best_regime_sharpe,
       CAST(sum(rp.trade_count) AS BIGINT) AS trades,
       count(*) AS regimes,
       any_value(s.parameters) AS strategy_parameters,
       any_value(c.parameters) AS classifier_parameters,
       count(*) OVER () AS matches
FROM regime_performance rp
JOIN strategies s ON s.strategy_id = rp.strategy_id
JOIN classifiers c ON c.classifier_id = rp.classifier_id
WHERE ($symbol IS NULL OR s.symbol = $symbol)
GROUP BY rp.strategy_id, rp.classifier_id, s.strategy_type, c.classifier_type, s.symbol
HAVING ($min_trades IS NULL OR sum(rp.trade_count) >= $min_trades) AND any_value(rp.regime_aware_score) IS NOT NULL
ORDER BY regime_aware_score DESC, rp.strategy_id, rp.classifier_id
LIMIT $limit
"""


def top_combinations(conn: duckdb.DuckDBPyConnection, limit: int, symbol: str | None = None, min_trades: int | None = None) -> pd.DataFrame:
    """Best strategy x classifier pairs by the stored ``regime_aware_score`` (docs/analytics.md).

    Returns:
        One row per pair: strategy_id, classifier_id, strategy_type, classifier_type, symbol,
        regime_aware_score, sharpe_ratio (whole sample), regime_edge (score - Sharpe),
        best_regime and its best_regime_sharpe (among regimes with trades), trades (closed
        trades attributed to a regime, an integer), regimes, strategy_parameters,
        classifier_parameters; ``attrs["total"]`` = pairs matching before ``limit``. Empty when
        nothing matches the filters, or when no row has a score yet (see :func:`has_regime_scores`).
    """
    if limit < 1:
        raise QueryError(f"--limit must be >= 1, got {limit}")
    return _with_total(conn.execute(_TOP_COMBINATIONS_SQL, {"limit": int(limit), "symbol": symbol, "min_trades": min_trades}).df())


def has_regime_scores(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether any ``regime_performance`` row has a ``regime_aware_score`` (materialized by a
    version of the asset that computes it)."""
    return conn.execute("SELECT count(regime_aware_score) > 0 FROM regime_performance").fetchone()[0]


_REGISTRY = """
SELECT run_id, strategy_hash, strategy_type, symbol, config_hash, parameters, sharpe_ratio, recorded_at
FROM run_strategies
"""

_INDEX_FILES = """
UNION ALL
SELECT 'file:' || filename, strategy_hash, strategy_type, symbol, 'file:' || filename, NULL::JSON,
       sharpe_ratio, NULL::TIMESTAMP
FROM read_parquet($files, filename = true, union_by_name = true)
"""

_DUPLICATES_SQL = """
WITH records AS ({records})
SELECT strategy_hash,
       any_value(strategy_type) AS strategy_type,
       any_value(parameters) AS parameters,
       count(DISTINCT run_id) AS runs,
       count(DISTINCT config_hash) AS grids,
       list(DISTINCT symbol ORDER BY symbol) AS symbols,
       min(recorded_at) AS first_seen,
       max(recorded_at) AS last_seen,
       min(sharpe_ratio) AS min_sharpe,
       max(sharpe_ratio) AS max_sharpe,
       count(*) OVER () AS matches
FROM records
WHERE ($symbol IS NULL OR symbol = $symbol)
GROUP BY strategy_hash
HAVING (CASE WHEN $across = 'grids' THEN count(DISTINCT config_hash) ELSE count(DISTINCT run_id) END) > 1
ORDER BY runs DESC, grids DESC, strategy_hash
LIMIT $limit
"""

DUPLICATE_SCOPES = ("runs", "grids")
"""``--across`` values of :func:`duplicates`."""


def duplicates(
    conn: duckdb.DuckDBPyConnection,
    across: str = "runs",
    symbol: str | None = None,
    limit: int = 100,
    index_files: Sequence[str] = (),
) -> pd.DataFrame:
    """Strategy hashes recorded in more than one run (or grid) of ``run_strategies`` (seed 001's
    cross-run query ``GROUP BY strategy_hash HAVING run_count > 1``).

    A *run* is a materialization of ``strategy_performance`` (its Dagster run id); a *grid* is a
    grid content, identified by ``config_hash`` (sha256[:12] of the sorted strategy hashes
    evaluated on one symbol), so re-running the same grid is a new run but not a new grid, and
    the same grid on two symbols is one grid. Each of ``index_files`` (``strategy_index.parquet``
    files written by ``admf traces``/``admf metrics``) counts as one more run and grid, named
    ``file:<path>``.

    Returns:
        strategy_hash, strategy_type, parameters (JSON of a warehouse record, NULL if only in
        index files), runs, grids, symbols (list), first_seen, last_seen, min_sharpe and
        max_sharpe across its records (how stable the result is); ``attrs["total"]`` = hashes
        matching before ``limit``.

    Raises:
        QueryError: for ``across`` outside :data:`DUPLICATE_SCOPES` or ``limit < 1``.
        duckdb.Error: for an index file that is not a strategy index (missing columns).
    """
    if across not in DUPLICATE_SCOPES:
        raise QueryError(f"unknown --across {across!r}; expected one of {', '.join(DUPLICATE_SCOPES)}")
    if limit < 1:
        raise QueryError(f"--limit must be >= 1, got {limit}")
    params: dict = {"across": across, "symbol": symbol, "limit": int(limit)}
    records = _REGISTRY
    if index_files:
        records += _INDEX_FILES
        params["files"] = [str(f) for f in index_files]
    return _with_total(conn.execute(_DUPLICATES_SQL.format(records=records), params).df())


def strategy_row(conn: duckdb.DuckDBPyConnection, strategy_id: str) -> dict | None:
    """The ``strategies`` row of ``strategy_id`` (with its grid's ``pbo``) as a dict, or None."""
    df = conn.execute(
        """SELECT s.*, g.pbo, g.expected_max_sharpe, g.n_trials
           FROM strategies s LEFT JOIN grid_overfitting g ON g.grid_id = s.grid_id
           WHERE s.strategy_id = $id""",
        {"id": strategy_id},
    ).df()
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    row["parameters"] = json.loads(row["parameters"]) if row.get("parameters") else {}
    return row
