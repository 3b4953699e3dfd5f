"""EXPLAIN (FORMAT JSON) of the repository queries on 100,000 runs uses the intended indexes."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from admf_assets.history import migrate
from admf_assets.history import repository as repo
from admf_assets.history.models import INDEX_NAMES

N_RUNS = 100_000


def _plan_nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def _explain(engine, sql, params):
    with engine.connect() as conn:
        plan = conn.execute(text("EXPLAIN (FORMAT JSON) " + sql), params).scalar_one()
    return plan[0]["Plan"]


def _uses(plan, index: str, table: str) -> bool:
    return any(n.get("Index Name") == index and n.get("Relation Name", table) == table for n in _plan_nodes(plan))


def _no_seq_scan(plan, table: str) -> bool:
    return not any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == table for n in _plan_nodes(plan))


@pytest.fixture(scope="module")
def big_engine(make_database):
    url = make_database()
    migrate.upgrade(url)
    engine = repo.make_engine(url)
    with engine.begin() as conn:
        repo.fill_synthetic_runs(conn, N_RUNS)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE backtest_runs")
        conn.exec_driver_sql("ANALYZE performance_metrics")
    yield engine
    engine.dispose()


def test_row_counts(big_engine):
    with big_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM backtest_runs")).scalar_one() == N_RUNS
        assert conn.execute(text("SELECT count(*) FROM performance_metrics")).scalar_one() == N_RUNS


def test_list_first_and_deep_page_use_created_index(big_engine):
    plan = _explain(big_engine, *repo.list_runs_query(limit=20))
    assert _uses(plan, INDEX_NAMES["created"], "backtest_runs"), plan
    assert _no_seq_scan(plan, "backtest_runs")
    cursor = None
    for _ in range(5):
        _, cursor = repo.list_runs(big_engine, limit=20, cursor=cursor)
    plan = _explain(big_engine, *repo.list_runs_query(limit=20, cursor=cursor))
    assert _uses(plan, INDEX_NAMES["created"], "backtest_runs"), plan
    assert _no_seq_scan(plan, "backtest_runs")
    assert "OFFSET" not in repo.list_runs_query(limit=20, cursor=cursor)[0].upper()


def test_strategy_and_symbol_filters_use_composite_indexes(big_engine):
    plan = _explain(big_engine, *repo.list_runs_query(strategy="synthetic_7", limit=20))
    assert _uses(plan, INDEX_NAMES["strategy"], "backtest_runs"), plan
    _, cursor = repo.list_runs(big_engine, strategy="synthetic_7", limit=20)
    plan = _explain(big_engine, *repo.list_runs_query(strategy="synthetic_7", limit=20, cursor=cursor))
    assert _uses(plan, INDEX_NAMES["strategy"], "backtest_runs"), plan
    plan = _explain(big_engine, *repo.list_runs_query(symbol="SYN3", limit=20))
    assert _uses(plan, INDEX_NAMES["symbol"], "backtest_runs"), plan


def test_jsonb_search_uses_gin_index(big_engine):
    for params in ({"period": 20, "std_dev": 2.0}, {"period": 20}, {"std_dev": 2.0}):
        plan = _explain(big_engine, *repo.find_runs_query(params))
        assert _uses(plan, INDEX_NAMES["config_gin"], "backtest_runs"), (params, plan)
        assert _no_seq_scan(plan, "backtest_runs"), params
    rows = repo.find_runs_by_params(big_engine, {"period": 20, "std_dev": 2.0}, limit=1000)
    assert rows and len(rows) < 1000


def test_top_by_sharpe_uses_sharpe_index(big_engine):
    plan = _explain(big_engine, *repo.top_by_sharpe_query(20))
    assert _uses(plan, INDEX_NAMES["sharpe"], "performance_metrics"), plan
    assert _no_seq_scan(plan, "performance_metrics")
    rows = repo.top_by_sharpe(big_engine, 20)
    sharpes = [r["sharpe_ratio"] for r in rows]
    assert sharpes == sorted(sharpes, reverse=True) and len(rows) == 20


def test_get_run_uses_unique_index(big_engine):
    rows, _ = repo.list_runs(big_engine, limit=1)
    plan = _explain(big_engine, repo.GET_RUN_SQL, {"run_id": rows[0]["run_id"]})
    assert _uses(plan, "uq_backtest_runs_run_id", "backtest_runs"), plan
