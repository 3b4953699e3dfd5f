"""Publishing grid evaluations to the run history through the RunHistoryIOManager.

The whole graph runs on 2 bundled trading days x 2 symbols with ``ADMF_PUBLISH_HISTORY=1``
against a throwaway PostgreSQL database; the published rows are compared with the DuckDB
``strategies`` table, re-published (replaced, not duplicated) and one run is reproduced from
its stored snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import duckdb
import pandas as pd
import pytest
from sqlalchemy import text

from admf_assets.history import migrate
from admf_assets.history.publish import PUBLICATION_COLUMNS, publication_frame, publish_runs, published_run_id, published_runs
from admf_assets.history.repository import InvalidInputError, get_run, make_engine, reproduce_run
from admf_assets.lib.pipeline import code_location, run_graph, with_overrides
from admf_assets.lib.settings import Settings

DAYS = (dt.date(2025, 6, 9), dt.date(2025, 6, 10))


@pytest.fixture(scope="module")
def history_url(make_database):
    url = make_database()
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="module")
def published(history_url, tmp_path_factory):
    settings = with_overrides(Settings.from_env(), workspace=str(tmp_path_factory.mktemp("publish") / "workspace"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADMF_PUBLISH_HISTORY", "1")
        mp.setenv("ADMF_POSTGRES_URL", history_url)
        with dg.instance_for_test() as instance:
            results = run_graph(instance, settings=settings, first_day=DAYS[0], last_day=DAYS[-1])
            location = code_location(settings)
            yield {"results": results, "settings": settings, "instance": instance, "location": location}


@pytest.fixture(scope="module")
def engine(history_url):
    eng = make_engine(history_url)
    yield eng
    eng.dispose()


def _stored(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(
            text(
                """
                SELECT r.run_id::text AS run_id, r.strategy_name, r.strategy_type, r.instrument_symbol,
                       r.config_snapshot, r.dagster_run_id, r.start_date, r.end_date, r.execution_duration_seconds,
                       m.sharpe_ratio, m.total_return, m.max_drawdown, m.max_drawdown_date, m.total_trades,
                       m.win_rate, m.final_balance, m.avg_win, m.avg_loss, m.expectancy
                FROM backtest_runs r JOIN performance_metrics m ON m.backtest_run_id = r.id
                ORDER BY r.strategy_name
                """
            ),
            conn,
        )


def _warehouse(settings) -> pd.DataFrame:
    from pathlib import Path

    with duckdb.connect(str(Path(settings.workspace) / "analytics.duckdb"), read_only=True) as conn:
        return conn.execute("SELECT * FROM strategies ORDER BY strategy_id").df()


def test_main_job_publishes_one_row_per_strategy_and_symbol(published, engine):
    results = published["results"]
    assert list(results) == ["market_data_job", "analytics_job", "daily_summary_job", "publish_history_job"]
    assert all(r.success for r in results.values())
    stored = _stored(engine)
    strategies = _warehouse(published["settings"])
    assert len(stored) == len(strategies) > 1000
    assert sorted(stored["instrument_symbol"].unique()) == ["AAPL", "SPY"]
    analytics_run = results["analytics_job"].run_id
    assert set(stored["dagster_run_id"]) == {analytics_run}
    assert list(stored["run_id"]) == [str(published_run_id(analytics_run, s)) for s in stored["strategy_name"]]
    assert (stored["execution_duration_seconds"] > 0).all()


def test_published_metrics_and_snapshots_equal_the_warehouse(published, engine):
    stored = _stored(engine).set_index("strategy_name")
    strategies = _warehouse(published["settings"]).set_index("strategy_id")
    joined = strategies.join(stored, rsuffix="_pg", how="inner")
    assert len(joined) == len(strategies)
    for column in ("sharpe_ratio", "total_return", "max_drawdown", "win_rate"):
        a, b = joined[column], joined[f"{column}_pg"]
        assert ((a - b).abs().fillna(0) <= 1e-12).all() and (a.isna() == b.isna()).all(), column
    assert (joined["total_trades"] == joined["total_trades_pg"]).all()
    assert (joined["expectancy"].fillna(-9) == joined["avg_trade_return"].fillna(-9)).all()
    assert ((joined["final_balance"] - 100_000 * (1 + joined["total_return"])).abs() < 1e-6).all()
    for sid, row in joined.head(50).iterrows():
        snap = row["config_snapshot"]
        assert snap["type"] == row["strategy_type"]
        assert snap["parameters"] == json.loads(row["parameters"])
        assert snap["symbol"] == row["symbol"] and snap["timeframe"] == "5m"
        assert snap["costs"] == {"commission_bps": 0.5, "slippage_bps": 1.0}
        assert snap["bars_path"].endswith(f"bars/{row['symbol']}_5m")
        assert snap["bars_through"] == DAYS[-1].isoformat()  # the last day evaluated
    traded = joined[joined["total_trades"] > 0]
    assert traded["max_drawdown_date"].notna().all()
    assert (traded["max_drawdown_date"] >= traded["start_date"]).all() and (traded["max_drawdown_date"] <= traded["end_date"]).all()
    # avg win / loss are means of closed trades' net returns: wins positive, losses negative
    assert (joined["avg_win"].dropna() > 0).all() and (joined["avg_loss"].dropna() < 0).all()
    assert joined.loc[joined["winning_trades"] > 0, "avg_win"].notna().all()


def test_republishing_replaces_instead_of_duplicating(published, engine):
    before = _stored(engine)
    again = published["location"].resolve_job_def("publish_history_job").execute_in_process(instance=published["instance"])
    assert again.success
    after = _stored(engine)
    assert len(after) == len(before)
    assert list(after["run_id"]) == list(before["run_id"])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM performance_metrics")).scalar_one() == len(before)
    # what the IO manager loads downstream: the latest publishing run's rows, metrics included
    loaded = published_runs(engine)
    assert list(loaded.columns) == list(PUBLICATION_COLUMNS)
    assert sorted(loaded["run_id"]) == sorted(before["run_id"])
    merged = loaded.merge(before, on="run_id", suffixes=("", "_db"))
    assert ((merged["sharpe_ratio"] - merged["sharpe_ratio_db"]).abs().fillna(0) == 0).all()
    assert published_runs(engine, "no-such-dagster-run").empty


def test_a_published_run_reproduces_identically(published, engine):
    stored = _stored(engine)
    pick = stored[stored["total_trades"] > 2].iloc[0]
    outcome = reproduce_run(engine, pick["run_id"])
    assert outcome.identical, outcome.differences
    assert get_run(engine, outcome.new_run_id)["reproduced_from_run_id"] == uuid.UUID(pick["run_id"])
    # re-publishing the evaluation updates its rows in place: the reproduction keeps its link
    again = published["location"].resolve_job_def("publish_history_job").execute_in_process(instance=published["instance"])
    assert again.success
    assert get_run(engine, outcome.new_run_id)["reproduced_from_run_id"] == uuid.UUID(pick["run_id"])
    assert get_run(engine, pick["run_id"])["metrics"]["sharpe_ratio"] == pick["sharpe_ratio"]
    with engine.begin() as conn:  # keep the other tests' row counts
        conn.execute(text("DELETE FROM backtest_runs WHERE run_id = :r"), {"r": str(outcome.new_run_id)})


def _frame(n: int, dagster_run_id: str) -> pd.DataFrame:
    ts = pd.Series(pd.date_range("2025-06-09 13:30", periods=10, freq="5min", tz="UTC"))
    perf = pd.DataFrame(
        {
            "strategy_id": [f"SPY_5m_sma_crossover_{k:012x}" for k in range(n)],
            "strategy_type": "sma_crossover",
            "symbol": "SPY",
            "timeframe": "5m",
            "parameters": [json.dumps({"fast_period": 5 + k, "slow_period": 30}) for k in range(n)],
            "commission_bps": 0.5,
            "slippage_bps": 1.0,
            "start_ts": ts.iloc[0],
            "end_ts": ts.iloc[-1],
            "total_return": 0.01,
            "sharpe_ratio": 1.5,
            "sortino_ratio": 2.0,
            "max_drawdown": 0.02,
            "max_drawdown_idx": 3,
            "calmar_ratio": 0.5,
            "volatility": 0.1,
            "total_trades": 4,
            "winning_trades": 3,
            "losing_trades": 1,
            "win_rate": 0.75,
            "profit_factor": 2.0,
            "avg_trade_return": 0.0025,
        }
    )
    return publication_frame(perf, dagster_run_id=dagster_run_id, bars_paths={"SPY": "/data/SPY.csv"}, bar_timestamps={"SPY": ts})


def test_a_failed_publication_keeps_the_previous_rows(make_database):
    url = make_database()
    migrate.upgrade(url)
    eng = make_engine(url)
    try:
        first = _frame(2, "run-a")
        assert list(first.columns) == list(PUBLICATION_COLUMNS)
        assert publish_runs(eng, first) == 2
        second = _frame(3, "run-a")
        second.loc[2, "strategy_name"] = "x" * 300  # longer than backtest_runs.strategy_name allows
        with pytest.raises(InvalidInputError, match="rejected by the database"):
            publish_runs(eng, second)
        bad = _frame(1, "run-b")
        bad["sharpe_ratio"] = bad["sharpe_ratio"].astype(object)
        bad.loc[0, "sharpe_ratio"] = "high"
        with pytest.raises(InvalidInputError, match=r"row 0 .*sharpe_ratio"):
            publish_runs(eng, bad)
        stored = _stored(eng)
        assert list(stored["run_id"]) == list(first["run_id"])
        assert stored["max_drawdown_date"].iloc[0] == pd.Timestamp("2025-06-09 13:45", tz="UTC")
    finally:
        eng.dispose()


def test_publishing_is_absent_without_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv("ADMF_PUBLISH_HISTORY", raising=False)
    settings = with_overrides(Settings.from_env(), workspace=str(tmp_path / "ws"))
    names = {job.name for job in code_location(settings).jobs}
    assert "publish_history_job" not in names and "analytics_job" in names
    monkeypatch.setenv("ADMF_PUBLISH_HISTORY", "1")
    monkeypatch.delenv("ADMF_POSTGRES_URL", raising=False)
    with pytest.raises(Exception) as info:  # Dagster wraps it in its component-tree error
        code_location(settings)
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, dg.DagsterInvalidConfigError) and "ADMF_POSTGRES_URL" in str(e) for e in chain)
