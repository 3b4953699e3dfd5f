"""Latency of the run-history queries on PostgreSQL with 100,000 stored runs.

Creates a scratch database ``admf_bench_<random>`` on the server of ``ADMF_POSTGRES_URL`` (through
the ``postgres`` maintenance database), migrates it, bulk-inserts N synthetic runs with metrics
(``INSERT ... SELECT generate_series``), runs ANALYZE, then times each query through the
repository functions (one warm connection pool) and prints the median and 95th percentile in
milliseconds. The scratch database is dropped at the end unless ``--keep``.

    ADMF_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/postgres \\
        python bench/history_queries.py --runs 100000 --repeat 50
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admf_assets.history import migrate
from admf_assets.history import repository as repo


def _timed(fn, repeat: int) -> tuple[float, float]:
    samples = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get(repo.URL_ENV), help="server URL (default: ADMF_POSTGRES_URL)")
    parser.add_argument("--runs", type=int, default=100_000, help="synthetic runs to insert")
    parser.add_argument("--repeat", type=int, default=50, help="timed repetitions per query")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    if not args.url:
        print("error: set ADMF_POSTGRES_URL or pass --url", file=sys.stderr)
        return 2

    server = make_url(repo.normalize_url(args.url))
    name = f"admf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = repo.make_engine(url)
    try:
        migrate.upgrade(url)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            repo.fill_synthetic_runs(conn, args.runs)
        fill_s = time.perf_counter() - t0
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE backtest_runs")
            conn.exec_driver_sql("ANALYZE performance_metrics")
        with engine.connect() as conn:
            ids = conn.execute(
                text("SELECT run_id FROM backtest_runs TABLESAMPLE SYSTEM (1) LIMIT :n"), {"n": args.repeat}
            ).scalars().all() or conn.execute(text("SELECT run_id FROM backtest_runs LIMIT :n"), {"n": args.repeat}).scalars().all()
            size = conn.execute(text("SELECT pg_size_pretty(pg_total_relation_size('backtest_runs'))")).scalar_one()

        cursor = None
        for _ in range(99):  # cursor of page 100
            _, cursor = repo.list_runs(engine, limit=20, cursor=cursor)
        rng = random.Random(7)
        params = [{"period": 5 + rng.randrange(97), "std_dev": 1.0 + rng.randrange(7) * 0.25} for _ in range(args.repeat)]

        cases = [
            ("one run by id", lambda i: repo.get_run(engine, ids[i % len(ids)])),
            ("first page of 20", lambda i: repo.list_runs(engine, limit=20)),
            ("page 100 by cursor", lambda i: repo.list_runs(engine, limit=20, cursor=cursor)),
            ("strategy filter (20)", lambda i: repo.list_runs(engine, strategy=f"synthetic_{i % 50}", limit=20)),
            ("JSONB parameter search", lambda i: repo.find_runs_by_params(engine, params[i], limit=100)),
            ("top 20 by Sharpe", lambda i: repo.top_by_sharpe(engine, 20)),
        ]
        for _, fn in cases:  # warm-up
            fn(0)
        print(f"{args.runs:,} runs inserted in {fill_s:.2f} s (backtest_runs {size}); {args.repeat} repetitions each")
        print(f"{'query':<26}{'median ms':>12}{'p95 ms':>10}")
        for label, fn in cases:
            med, p95 = _timed(fn, args.repeat)
            print(f"{label:<26}{med:>12.2f}{p95:>10.2f}")
    finally:
        engine.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept scratch database {name}")
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
