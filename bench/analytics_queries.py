"""Latency of the ``admf analytics`` queries on synthetic warehouses.

Builds temporary DuckDB warehouses through the project's schema (``sql/duckdb/*.sql`` via
:func:`admf_assets.core.warehouse.connect`), fills ``strategies``, ``strategy_parameters``,
``parameter_analysis``, ``grid_overfitting`` and ``strategy_correlations`` with synthetic rows
generated in SQL, then times the exact query functions the CLI calls
(:mod:`admf_assets.core.queries`):

* scan (unfiltered top 50, and with every filter), analyze-parameters (pre-computed and on the
  fly), two-parameter grid, correlations, over ``--rows`` strategies (default 100,000);
* scan with filters over ``--big-rows`` strategies (default 1,000,000; issue 6 target <= 100 ms);
* the ``strategy_correlations`` computation itself (Pearson on ``--corr-top`` x 252 daily returns).

Prints median / min / max milliseconds over ``--repeat`` runs (after one warm-up). Nothing here
is asserted; figures go in reports, not tests.

    .venv/bin/python bench/analytics_queries.py [--rows 100000] [--big-rows 1000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from admf_assets.core.analytics import correlation_clusters, correlation_table
from admf_assets.core.queries import ScanFilter, correlation_pairs, parameter_grid, parameter_sensitivity, scan
from admf_assets.core.warehouse import connect

TYPES = ["bollinger_bands", "rsi_bands", "sma_crossover", "momentum", "ma_crossover", "rsi_threshold", "rsi_extreme", "bollinger_breakout", "momentum_breakout"]
SYMBOLS = ["AAPL", "GLD", "MSFT", "QQQ", "SPY"]


def fill(conn, n: int, with_parameters: bool = True, corr_top: int = 100) -> None:
    """Insert ``n`` synthetic strategies (and their parameters, parameter_analysis, grids and
    correlations of the top ``corr_top``) in one transaction."""
    conn.execute("BEGIN TRANSACTION")
    conn.execute("INSERT INTO runs (run_id, created_at, workflow_type, status) VALUES ('bench', now(), 'grid_search', 'completed')")
    conn.execute(
        """
        INSERT INTO strategies (strategy_id, run_id, strategy_hash, strategy_type, symbol, timeframe, parameters,
                                total_return, sharpe_ratio, sortino_ratio, max_drawdown, win_rate, profit_factor,
                                total_trades, deflated_sharpe_ratio, grid_id, commission_bps, slippage_bps)
        SELECT printf('%s_5m_%s_%012x', sym, typ, i), 'bench', printf('%012x', i), typ, sym, '5m',
               json_object('period', 5 + i % 50, 'std_dev', 1.0 + (i // 50) % 9 * 0.25),
               (random() - 0.5) * 0.4, (random() - 0.5) * 6, (random() - 0.5) * 8, random() * 0.4,
               random(), random() * 3, (random() * 400)::BIGINT, random(), sym || '_5m_bench', 0.5, 1.0
        FROM (SELECT i, $types[1 + i % 9] AS typ, $symbols[1 + (i // 9) % 5] AS sym FROM range($n) t(i))
        """,
        {"n": n, "types": TYPES, "symbols": SYMBOLS},
    )
    if with_parameters:
        conn.execute(
            """
            INSERT INTO strategy_parameters
            SELECT strategy_id, strategy_type, 'period', CAST(parameters->>'period' AS DOUBLE) FROM strategies
            UNION ALL
            SELECT strategy_id, strategy_type, 'std_dev', CAST(parameters->>'std_dev' AS DOUBLE) FROM strategies
            """
        )
        conn.execute(
            """
            INSERT INTO parameter_analysis
            SELECT 'bench', p.strategy_type, p.parameter_name, p.parameter_value, avg(s.sharpe_ratio),
                   stddev_samp(s.sharpe_ratio), count(*), max(s.sharpe_ratio)
            FROM strategy_parameters p JOIN strategies s USING (strategy_id)
            GROUP BY ALL
            """
        )
    conn.execute(
        """INSERT INTO grid_overfitting (grid_id, run_id, symbol, timeframe, config_hash, pbo)
           SELECT grid_id, 'bench', symbol, '5m', 'bench', random() FROM (SELECT DISTINCT grid_id, symbol FROM strategies)"""
    )
    conn.execute(
        """
        INSERT INTO strategy_correlations
        WITH top AS (SELECT strategy_id, row_number() OVER (ORDER BY sharpe_ratio DESC, strategy_id) AS r
                     FROM strategies QUALIFY r <= $top)
        SELECT a.strategy_id, b.strategy_id, a.r, b.r, random() * 2 - 1, 252, 'bench'
        FROM top a JOIN top b ON a.strategy_id < b.strategy_id
        """,
        {"top": corr_top},
    )
    conn.execute("COMMIT")


def timed(fn, repeat: int) -> tuple[float, float, float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), min(times), max(times), result


def report(label: str, fn, repeat: int) -> None:
    med, lo, hi, result = timed(fn, repeat)
    rows = len(result[0]) if isinstance(result, tuple) else len(result)
    print(f"  {label:<58} median {med:8.2f} ms   min {lo:8.2f}   max {hi:8.2f}   ({rows} rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--corr-top", type=int, default=100)
    args = ap.parse_args()
    filters = ScanFilter(min_sharpe=1.0, max_drawdown=0.15, min_trades=100, strategy_types=["momentum", "ma_crossover"], top=50)

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "analytics.duckdb"
        with connect(db) as conn:
            t0 = time.perf_counter()
            fill(conn, args.rows, corr_top=args.corr_top)
            print(f"{args.rows:,} strategies ({args.rows * 2:,} parameter rows) inserted in {time.perf_counter() - t0:.1f} s; "
                  f"{args.repeat} timed runs each")
            report("scan: top 50 by sharpe_ratio, no filter", lambda: scan(conn, ScanFilter(top=50)), args.repeat)
            report("scan: sharpe>=1, dd<=0.15, trades>=100, 2 types", lambda: scan(conn, filters), args.repeat)
            report("scan: sorted by deflated_sharpe_ratio, max PBO 0.5", lambda: scan(conn, ScanFilter(max_pbo=0.5, sort_by="deflated_sharpe_ratio")), args.repeat)
            report("analyze-parameters (parameter_analysis rows)", lambda: parameter_sensitivity(conn, "bollinger_bands", "period"), args.repeat)
            conn.execute("DELETE FROM parameter_analysis")
            report("analyze-parameters (computed on the fly)", lambda: parameter_sensitivity(conn, "bollinger_bands", "period"), args.repeat)
            report("analyze-parameters, two parameters (heatmap grid)", lambda: parameter_grid(conn, "bollinger_bands", "period", "std_dev"), args.repeat)
            report(f"correlations: stored pairs of the top {args.corr_top}", lambda: correlation_pairs(conn, args.corr_top), args.repeat)

        rng = np.random.default_rng(0)
        daily = pd.DataFrame(rng.normal(0, 0.01, size=(252, args.corr_top)), columns=[f"s{i:04d}" for i in range(args.corr_top)])
        ranks = {c: i + 1 for i, c in enumerate(daily.columns)}
        report(f"correlations: computing {args.corr_top} x 252-day Pearson pairs", lambda: correlation_table(daily, ranks), args.repeat)
        pairs = correlation_table(daily, ranks)
        report("correlations: clusters at 0.1 (connected components)", lambda: correlation_clusters(list(daily.columns), pairs, 0.1), args.repeat)

        big = Path(tmp) / "big.duckdb"
        with connect(big) as conn:
            t0 = time.perf_counter()
            fill(conn, args.big_rows, with_parameters=False, corr_top=2)
            print(f"{args.big_rows:,} strategies inserted in {time.perf_counter() - t0:.1f} s")
            report("scan: top 50 by sharpe_ratio, no filter", lambda: scan(conn, ScanFilter(top=50)), args.repeat)
            report("scan: sharpe>=1, dd<=0.15, trades>=100, 2 types", lambda: scan(conn, filters), args.repeat)
            report("scan: symbol SPY, min DSR 0.9, by deflated_sharpe_ratio", lambda: scan(conn, ScanFilter(symbol="SPY", min_dsr=0.9, sort_by="deflated_sharpe_ratio")), args.repeat)


if __name__ == "__main__":
    main()
