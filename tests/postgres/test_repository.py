"""Repository on a real server: save, keyset pagination, filters, JSONB search, show/compare, errors."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from admf_assets.history import repository as repo
from admf_assets.history.models import PERFORMANCE_COLUMNS
from admf_assets.history.repository import NewRun

T0 = datetime(2025, 6, 4, 13, 30, tzinfo=timezone.utc)


def snapshot(period=20, std_dev=2.0, symbol="SPY", strategy_type="bollinger_bands"):
    params = {"period": period, "std_dev": std_dev} if strategy_type == "bollinger_bands" else {}
    return {
        "type": strategy_type,
        "parameters": params,
        "symbol": symbol,
        "timeframe": "5m",
        "bars_path": "SPY_5m.csv",
        "costs": {"commission_bps": 0.5, "slippage_bps": 1.0},
    }


def metrics(sharpe=1.0, **extra):
    out = {"total_return": 0.05, "final_balance": 105_000.0, "sharpe_ratio": sharpe, "total_trades": 10,
           "winning_trades": 6, "losing_trades": 4, "win_rate": 0.6}
    out.update(extra)
    return out


def save(engine, name="alpha", symbol="SPY", period=20, std_dev=2.0, sharpe=1.0, run_id=None):
    run = NewRun(snapshot=snapshot(period, std_dev, symbol), start_date=T0, end_date=T0 + timedelta(days=5),
                 strategy_name=name, execution_duration_seconds=0.5)
    if run_id is not None:
        run.run_id = run_id
    return repo.save_run(engine, run, metrics(sharpe))


def all_pages(engine, limit, **filters):
    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = repo.list_runs(engine, limit=limit, cursor=cursor, **filters)
        pages += 1
        seen.extend(rows)
        if cursor is None:
            return seen, pages
        assert len(rows) == limit


def test_save_and_get_roundtrip(clean):
    engine = clean
    rid = save(engine, sharpe=float("nan"))
    run = repo.get_run(engine, rid)
    assert run["run_id"] == rid
    assert run["strategy_name"] == "alpha" and run["strategy_type"] == "bollinger_bands"
    assert run["instrument_symbol"] == "SPY"
    assert run["config_snapshot"]["parameters"] == {"period": 20, "std_dev": 2.0}
    assert run["config_snapshot"]["costs"] == {"commission_bps": 0.5, "slippage_bps": 1.0}
    assert run["start_date"] == T0
    assert run["metrics"]["sharpe_ratio"] is None  # NaN stored as NULL
    assert run["metrics"]["total_trades"] == 10
    assert set(run["metrics"]) == set(PERFORMANCE_COLUMNS)
    assert repo.get_run(engine, str(rid))["run_id"] == rid


def test_pagination_no_duplicates_or_gaps(clean):
    engine = clean
    ids = {save(engine, name=f"s{i % 3}", symbol="SPY" if i % 2 else "QQQ", sharpe=i / 10) for i in range(47)}
    # Ties on created_at: the keyset must fall back to id.
    with engine.begin() as conn:
        conn.execute(text("UPDATE backtest_runs SET created_at = TIMESTAMPTZ '2025-01-01 00:00:00+00' WHERE id % 4 = 0"))
    rows, pages = all_pages(engine, 10)
    assert pages == 5
    got = [r["run_id"] for r in rows]
    assert len(got) == len(set(got)) == 47 and set(got) == ids
    created = [r["created_at"] for r in rows]
    assert created == sorted(created, reverse=True)

    # exact page boundary: 47 rows in pages of 47 -> one page, no cursor
    rows, cursor = repo.list_runs(engine, limit=47)
    assert len(rows) == 47 and cursor is None
    # a run added after the first page does not disturb later pages
    first, cursor = repo.list_runs(engine, limit=20)
    save(engine, name="late")
    rest, _ = all_pages_from(engine, cursor, 20)
    assert {r["run_id"] for r in first} | {r["run_id"] for r in rest} == ids


def all_pages_from(engine, cursor, limit):
    out = []
    while cursor is not None:
        rows, cursor = repo.list_runs(engine, limit=limit, cursor=cursor)
        out.extend(rows)
    return out, None


def test_filters(clean):
    engine = clean
    for i in range(30):
        save(engine, name=f"s{i % 3}", symbol="SPY" if i % 2 else "QQQ")
    rows, pages = all_pages(engine, 4, strategy="s1")
    assert len(rows) == 10 and {r["strategy_name"] for r in rows} == {"s1"}
    rows, _ = all_pages(engine, 4, symbol="QQQ")
    assert len(rows) == 15 and {r["instrument_symbol"] for r in rows} == {"QQQ"}
    rows, _ = all_pages(engine, 3, strategy="s1", symbol="QQQ")
    assert len(rows) == 5
    assert repo.list_runs(engine, strategy="nope") == ([], None)


def test_cursor_errors(clean):
    engine = clean
    for _ in range(3):
        save(engine)
    _, cursor = repo.list_runs(engine, limit=1)
    with pytest.raises(repo.InvalidCursorError):
        repo.list_runs(engine, limit=1, cursor="not-a-cursor")
    with pytest.raises(repo.InvalidCursorError, match="different"):
        repo.list_runs(engine, limit=1, cursor=cursor, strategy="alpha")
    for bad in (0, 10_000):
        with pytest.raises(repo.InvalidInputError):
            repo.list_runs(engine, limit=bad)


def test_find_by_params(clean):
    engine = clean
    a = save(engine, period=20, std_dev=2.0)
    b = save(engine, period=20, std_dev=2.5)
    c = save(engine, period=30, std_dev=2.0)
    assert {r["run_id"] for r in repo.find_runs_by_params(engine, {"period": 20})} == {a, b}
    assert {r["run_id"] for r in repo.find_runs_by_params(engine, {"period": 20, "std_dev": 2.0})} == {a}
    assert {r["run_id"] for r in repo.find_runs_by_params(engine, {"std_dev": 2})} == {a, c}  # numeric match
    assert repo.find_runs_by_params(engine, {"period": 21}) == []
    assert repo.find_runs_by_params(engine, {"period": 20}, strategy_type="rsi_bands") == []
    with pytest.raises(repo.InvalidInputError):
        repo.find_runs_by_params(engine, {})
    assert repo.count_runs_by_params(engine, {"period": 20}) == 2
    assert repo.count_runs_by_params(engine, {"period": 20}, strategy_type="bollinger_bands") == 2
    # a typo is an error naming the valid names, not an empty result
    with pytest.raises(repo.InvalidInputError, match=r"unknown parameter 'perod'.*did you mean 'period'"):
        repo.find_runs_by_params(engine, {"perod": 20})
    with pytest.raises(repo.InvalidInputError, match=r"unknown strategy type 'bollinger_band'.*known types: .*bollinger_bands"):
        repo.find_runs_by_params(engine, {"period": 20}, strategy_type="bollinger_band")
    with pytest.raises(repo.InvalidInputError, match=r"rsi_bands has no parameter 'std_dev'; its parameters: period"):
        repo.count_runs_by_params(engine, {"std_dev": 2.0}, strategy_type="rsi_bands")
    assert repo.check_search_params({"sma_period": 5}, "momentum") == {"period": 5}


def test_list_strategy_name_or_type(clean):
    engine = clean
    named = save(engine, name="SPY_5m_bollinger_bands_0123456789ab")
    other = save(engine, name="custom")
    rows, _ = repo.list_runs(engine, strategy="bollinger_bands")  # a registered type: every run of it
    assert {r["run_id"] for r in rows} == {named, other}
    rows, _ = repo.list_runs(engine, strategy="custom")
    assert [r["run_id"] for r in rows] == [other]
    sql, _ = repo.list_runs_query(strategy="custom")
    assert "WHERE r.strategy_name = :strategy\n" in sql and "r.strategy_type = :strategy" not in sql  # a plain name keeps the (strategy_name, created_at, id) index path


def test_compare_and_top(clean):
    engine = clean
    a = save(engine, sharpe=0.5)
    b = save(engine, sharpe=2.5)
    c = save(engine, sharpe=None)
    runs = repo.compare_runs(engine, [b, a])
    assert [r["run_id"] for r in runs] == [b, a]
    assert [r["metrics"]["sharpe_ratio"] for r in runs] == [2.5, 0.5]
    assert [r["run_id"] for r in repo.top_by_sharpe(engine, 3)] == [b, a, c]
    missing = uuid.uuid4()
    with pytest.raises(repo.RunNotFoundError, match=str(missing)):
        repo.compare_runs(engine, [a, missing])


def test_duplicate_run_is_rejected_atomically(clean):
    engine = clean
    rid = save(engine, name="first")
    with pytest.raises(repo.DuplicateRunError, match=str(rid)):
        save(engine, name="second", run_id=rid)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM backtest_runs")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM performance_metrics")).scalar_one() == 1
    assert repo.get_run(engine, rid)["strategy_name"] == "first"


def test_metrics_failure_rolls_back_run(clean):
    engine = clean
    run = NewRun(snapshot=snapshot(), start_date=T0, end_date=T0)
    with pytest.raises(repo.InvalidInputError):
        repo.save_run(engine, run, {"total_trades": -1})  # violates the metrics CHECK after the run insert
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM backtest_runs")).scalar_one() == 0


def test_unknown_and_invalid_ids(clean):
    with pytest.raises(repo.RunNotFoundError):
        repo.get_run(clean, uuid.uuid4())
    with pytest.raises(repo.InvalidInputError):
        repo.get_run(clean, "nope")
    run = NewRun(snapshot=snapshot(), start_date=T0, end_date=T0, reproduced_from_run_id=uuid.uuid4())
    with pytest.raises(repo.RunNotFoundError):
        repo.save_run(clean, run, {})


def test_snapshot_validated_before_insert(clean):
    bad = snapshot()
    bad["type"] = "no_such_strategy"
    with pytest.raises(repo.InvalidInputError, match="no_such_strategy"):
        repo.save_run(clean, NewRun(snapshot=bad, start_date=T0, end_date=T0), {})
    bad = snapshot()
    del bad["symbol"]
    with pytest.raises(repo.InvalidInputError, match="symbol"):
        repo.save_run(clean, NewRun(snapshot=bad, start_date=T0, end_date=T0), {})
    with pytest.raises(repo.InvalidInputError, match="unknown metric"):
        repo.save_run(clean, NewRun(snapshot=snapshot(), start_date=T0, end_date=T0), {"sharpe": 1.0})


def test_database_down():
    engine = repo.make_engine("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere", connect_timeout=2)
    with pytest.raises(repo.DatabaseUnavailableError, match="127.0.0.1:1"):
        repo.list_runs(engine)
    with pytest.raises(repo.DatabaseUnavailableError):
        repo.save_run(engine, NewRun(snapshot=snapshot(), start_date=T0, end_date=T0), {})


def test_schema_missing(make_database):
    engine = repo.make_engine(make_database())
    try:
        with pytest.raises(repo.SchemaMissingError, match="admf db upgrade"):
            repo.list_runs(engine)
    finally:
        engine.dispose()
