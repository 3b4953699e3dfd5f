"""``admf analytics ...`` user-visible output on the materialized workspace: empty results versus
store errors, "showing N of M" titles, the sort column and the scan order (non-trading strategies
last, ties by Sharpe ratio), symbol validation, help texts, integer formatting."""

from __future__ import annotations

import io
import json
import re
import shutil

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from admf_assets.cli import main as cli_main
from admf_assets.cli.main import app
from admf_assets.core.queries import SCAN_SORT_COLUMNS

runner = CliRunner()


def _run(workspace, *args):
    return runner.invoke(app, ["analytics", "--workspace", str(workspace), *args])


def _json(workspace, *args):
    result = _run(workspace, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _csv(workspace, *args) -> pd.DataFrame:
    """The CSV output read as strings (to see how numbers are printed)."""
    result = _run(workspace, *args, "--format", "csv")
    assert result.exit_code == 0, result.output
    return pd.read_csv(io.StringIO(result.stdout), dtype=str, keep_default_na=False)


def _title(result) -> str:
    """The rich table's title line (the first non-empty stdout line)."""
    return next(line for line in result.stdout.splitlines() if line.strip()).strip()


def _header(result) -> list[str]:
    line = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    return [c.strip() for c in line.split("┃")[1:-1]]


def _squeezed_help(*args) -> str:
    """``--help`` output without box characters and whitespace (rich wraps the text at spaces)."""
    result = runner.invoke(app, ["analytics", *args, "--help"])
    assert result.exit_code == 0, result.output
    return re.sub(r"[\s│]+", "", result.stdout)


def _strategies(db) -> pd.DataFrame:
    return db.execute("SELECT s.*, g.pbo FROM strategies s LEFT JOIN grid_overfitting g USING (grid_id)").df()


def _pairs(db) -> pd.DataFrame:
    rp = db.execute("SELECT rp.*, s.symbol FROM regime_performance rp JOIN strategies s USING (strategy_id)").df()
    g = rp.groupby(["strategy_id", "classifier_id", "symbol"]).agg(score=("regime_aware_score", "first"), trades=("trade_count", "sum")).reset_index()
    return g[g["score"].notna()]


@pytest.fixture()
def wide(monkeypatch):
    """A console wide enough that no table cell or title is folded."""
    monkeypatch.setattr(cli_main.console, "width", 400)


# 1. top-combinations: filters matching nothing are an empty result, not a store error ----------

def test_top_combinations_filters_matching_nothing_give_an_empty_result(workspace, db, wide):
    assert _pairs(db)["trades"].max() < 100000
    assert _json(workspace, "top-combinations", "--min-trades", "100000") == []
    csv = _run(workspace, "top-combinations", "--min-trades", "100000", "--format", "csv")
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("strategy_id,classifier_id,")
    assert len(csv.stdout.splitlines()) == 1
    table = _run(workspace, "top-combinations", "--symbol", "spy", "--min-trades", "100000")
    assert table.exit_code == 0, table.output
    assert "no pair matches --symbol SPY --min-trades 100000" in table.stderr
    assert "re-materialize" not in table.output
    assert _title(table).startswith("showing 0 of 0 strategy x classifier pairs")


def test_top_combinations_without_scores_is_still_a_store_error(workspace, tmp_path):
    copy = tmp_path / "ws"
    copy.mkdir()
    shutil.copy(workspace / "analytics.duckdb", copy / "analytics.duckdb")
    with duckdb.connect(str(copy / "analytics.duckdb")) as conn:
        conn.execute("UPDATE regime_performance SET regime_aware_score = NULL")
    result = _run(copy, "top-combinations")
    assert result.exit_code == 3 and "has no regime_aware_score yet" in result.output


# 2. titles: showing N of M ---------------------------------------------------------------------

def test_duplicates_title_counts_all_matching_hashes(workspace, db, wide):
    reg = db.execute("SELECT strategy_hash, run_id FROM run_strategies").df()
    runs = reg.groupby("strategy_hash")["run_id"].nunique()
    total = int((runs > 1).sum())
    assert total == 1140
    assert _title(_run(workspace, "duplicates")) == f"showing 100 of {total:,} strategy hashes in more than one run"
    three = _run(workspace, "duplicates", "--limit", "3")
    assert _title(three) == f"showing 3 of {total:,} strategy hashes in more than one run"
    assert len([line for line in three.stdout.splitlines() if line.startswith("│")]) == 3
    assert _title(_run(workspace, "duplicates", "--across", "grids")) == "showing 0 of 0 strategy hashes in more than one grid"


def test_scan_and_top_combinations_titles_count_all_matches(workspace, db, wide):
    s = _strategies(db)
    n_spy = int((s["symbol"] == "SPY").sum())
    assert _title(_run(workspace, "scan", "--symbol", "SPY", "--top", "4")).startswith(f"showing 4 of {n_spy:,} strategies by sharpe_ratio")
    pairs = _pairs(db)
    n = int((pairs["trades"] >= 5).sum())
    assert n > 2
    assert _title(_run(workspace, "top-combinations", "--limit", "2", "--min-trades", "5")) == (
        f"showing 2 of {n:,} strategy x classifier pairs by regime-aware score")


# 3. the sort column is always an output column --------------------------------------------------

@pytest.mark.parametrize("metric", ["calmar_ratio", "volatility", "gross_sharpe", "annualized_return", "avg_trade_return", "sortino_ratio", "pbo"])
def test_scan_shows_the_sort_column(workspace, db, wide, metric):
    s = _strategies(db).set_index("strategy_id")
    csv = pd.read_csv(io.StringIO(_run(workspace, "scan", "--sort-by", metric, "--top", "5", "--format", "csv").stdout))
    assert metric in csv.columns
    assert csv[metric].tolist() == pytest.approx(s.loc[csv["strategy_id"], metric].tolist(), nan_ok=True)
    rows = _json(workspace, "scan", "--sort-by", metric, "--top", "5")
    assert all(metric in r for r in rows)
    table = _run(workspace, "scan", "--sort-by", metric, "--top", "5")
    assert table.exit_code == 0 and metric in _header(table)


# 4./5. order: non-trading strategies last, ties by Sharpe ratio then id -------------------------

def _expected_order(s: pd.DataFrame, metric: str) -> list[str]:
    ascending = SCAN_SORT_COLUMNS[metric][1] == "ASC"
    s = s.assign(_idle=s["total_trades"].fillna(0) == 0)
    keys = ["_idle", metric] + (["sharpe_ratio"] if metric != "sharpe_ratio" else []) + ["strategy_id"]
    order = [True, ascending] + ([False] if metric != "sharpe_ratio" else []) + [True]
    return s.sort_values(keys, ascending=order, na_position="last")["strategy_id"].tolist()


@pytest.mark.parametrize("metric", list(SCAN_SORT_COLUMNS))
def test_scan_order_puts_non_trading_strategies_last_and_breaks_ties_by_sharpe(workspace, db, metric):
    s = _strategies(db)
    idle = set(s.loc[s["total_trades"].fillna(0) == 0, "strategy_id"])
    assert 0 < len(idle) < len(s)
    rows = _json(workspace, "scan", "--sort-by", metric, "--top", str(len(s)))
    ids = [r["strategy_id"] for r in rows]
    assert ids == _expected_order(s, metric)
    first_idle = next(i for i, sid in enumerate(ids) if sid in idle)
    assert all(sid in idle for sid in ids[first_idle:]) and first_idle == len(s) - len(idle)


def test_scan_ascending_metrics_start_with_strategies_that_trade(workspace):
    for metric in ("max_drawdown", "volatility"):
        rows = _json(workspace, "scan", "--sort-by", metric, "--top", "3")
        assert all(r["total_trades"] > 0 and r["sharpe_ratio"] is not None for r in rows), metric


def test_scan_by_pbo_lists_the_best_sharpe_of_a_grid_first(workspace, db):
    s = _strategies(db)
    rows = _json(workspace, "scan", "--sort-by", "pbo", "--top", "20")
    best_grid = s[s["total_trades"] > 0].sort_values("pbo").iloc[0]["pbo"]
    trading = s[(s["total_trades"] > 0) & (s["pbo"] == best_grid)]
    assert rows[0]["sharpe_ratio"] == pytest.approx(trading["sharpe_ratio"].max())
    same = [r["sharpe_ratio"] for r in rows if r["pbo"] == rows[0]["pbo"]]
    assert same == sorted(same, reverse=True)


# 6./8. help texts ----------------------------------------------------------------------------

def test_show_help_offers_table_and_json_only(workspace, db):
    result = runner.invoke(app, ["analytics", "show", "--help"])
    line = next(line for line in result.stdout.splitlines() if "--format" in line)
    assert "<table|json>" in line and "table|csv|json" not in line
    sid = db.execute("SELECT strategy_id FROM strategies ORDER BY strategy_id LIMIT 1").fetchone()[0]
    refused = _run(workspace, "show", sid, "--format", "csv")
    assert refused.exit_code == 2 and "show supports --format table or json" in refused.output


def test_scan_help_lists_the_sort_metrics_and_the_order():
    text = _squeezed_help("scan")
    desc = ",".join(m for m, (_, d) in SCAN_SORT_COLUMNS.items() if d == "DESC")
    asc = ",".join(m for m, (_, d) in SCAN_SORT_COLUMNS.items() if d == "ASC")
    assert f"{desc}(descending);{asc}(ascending)" in text
    assert "errormessage" not in text
    assert "nevertradecomeaftertheothers" in text


# 7. symbols: upper-cased, unknown ones refused ---------------------------------------------------

def test_scan_symbol_is_case_insensitive_and_unknown_symbols_exit_2(workspace, db):
    lower = _json(workspace, "scan", "--symbol", "spy", "--top", "5")
    assert len(lower) == 5 and all(r["symbol"] == "SPY" for r in lower)
    assert lower == _json(workspace, "scan", "--symbol", "SPY", "--top", "5")
    known = ", ".join(sorted(_strategies(db)["symbol"].unique()))
    for command in (("scan",), ("top-combinations",)):
        bad = _run(workspace, *command, "--symbol", "XYZ")
        assert bad.exit_code == 2 and f"unknown --symbol XYZ; known symbols: {known}" in bad.output, command
    gld = _run(workspace, "top-combinations", "--symbol", "gld")
    assert gld.exit_code == 2 and "GLD" in gld.output and "re-materialize" not in gld.output


def test_top_combinations_symbol_is_case_insensitive(workspace, db):
    rows = _json(workspace, "top-combinations", "--symbol", "aapl", "--limit", "5")
    assert len(rows) == 5 and all(r["symbol"] == "AAPL" for r in rows)
    assert rows == _json(workspace, "top-combinations", "--symbol", "AAPL", "--limit", "5")


# 9. integers printed as integers, parameter names as column names ----------------------------------

def test_top_combinations_trades_are_integers(workspace, db):
    csv = _csv(workspace, "top-combinations", "--limit", "10")
    assert len(csv) == 10 and all(re.fullmatch(r"\d+", t) for t in csv["trades"])
    assert all(re.fullmatch(r"\d+", t) for t in csv["regimes"])
    rows = _json(workspace, "top-combinations", "--limit", "10")
    assert all(isinstance(r["trades"], int) for r in rows)
    pairs = _pairs(db).set_index(["strategy_id", "classifier_id"])["trades"]
    assert [r["trades"] for r in rows] == [int(pairs.loc[(r["strategy_id"], r["classifier_id"])]) for r in rows]


def test_two_parameter_analysis_names_columns_after_the_parameters(workspace, db):
    csv = _csv(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period", "--parameter", "std_dev")
    assert csv.columns.tolist()[:2] == ["period", "std_dev"] and "value_a" not in csv.columns
    periods = db.execute("SELECT DISTINCT parameter_value FROM strategy_parameters "
                         "WHERE strategy_type = 'bollinger_bands' AND parameter_name = 'period' ORDER BY 1").df()["parameter_value"]
    assert sorted(set(csv["period"]), key=int) == [str(int(p)) for p in periods]
    assert "2.5" in set(csv["std_dev"]) and "2" in set(csv["std_dev"])  # non-integral values kept as they are
    rows = _json(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period", "--parameter", "std_dev")
    assert set(rows[0]) >= {"period", "std_dev", "avg_sharpe"} and isinstance(rows[0]["period"], int)


def test_one_parameter_analysis_prints_integral_values_as_integers(workspace):
    csv = _csv(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period")
    assert all(re.fullmatch(r"\d+", v) for v in csv["parameter_value"])
