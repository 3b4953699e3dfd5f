"""``admf analytics ...`` on the materialized workspace: each command's rows checked against the
warehouse tables (pandas on the same rows), the whitelist refusal and the exit codes."""

from __future__ import annotations

import io
import json
import shutil

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from admf_assets.cli import main as cli_main
from admf_assets.cli.main import app
from admf_assets.core.analytics import correlation_clusters

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(workspace, *args):
    return runner.invoke(app, ["analytics", "--workspace", str(workspace), *args])


def _json(workspace, *args):
    result = _run(workspace, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _strategies(db) -> pd.DataFrame:
    return db.execute("SELECT s.*, g.pbo FROM strategies s LEFT JOIN grid_overfitting g USING (grid_id)").df()


def test_scan_equals_a_pandas_filter_of_the_same_table(workspace, db):
    rows = _json(workspace, "scan", "--min-sharpe", "0.5", "--max-drawdown", "0.03", "--min-trades", "5",
                 "--strategy-types", "rsi_bands,bollinger_bands", "--symbol", "SPY", "--top", "15")
    s = _strategies(db)
    expect = s[(s["sharpe_ratio"] >= 0.5) & (s["max_drawdown"] <= 0.03) & (s["total_trades"] >= 5)
               & s["strategy_type"].isin(["rsi_bands", "bollinger_bands"]) & (s["symbol"] == "SPY")]
    expect = expect.sort_values(["sharpe_ratio", "strategy_id"], ascending=[False, True]).head(15)
    assert len(expect) >= 3
    assert [r["strategy_id"] for r in rows] == expect["strategy_id"].tolist()
    assert [r["sharpe_ratio"] for r in rows] == pytest.approx(expect["sharpe_ratio"].tolist())
    assert [r["deflated_sharpe_ratio"] for r in rows] == pytest.approx(expect["deflated_sharpe_ratio"].tolist())
    assert [r["pbo"] for r in rows] == pytest.approx(expect["pbo"].tolist())


def test_scan_sorts_and_filters_by_deflated_sharpe_ratio_and_pbo(workspace, db):
    rows = _json(workspace, "scan", "--sort-by", "deflated_sharpe_ratio", "--min-dsr", "0.001", "--max-pbo", "0.5", "--top", "1000")
    s = _strategies(db)
    expect = s[(s["deflated_sharpe_ratio"] >= 0.001) & (s["pbo"] <= 0.5)]
    expect = expect.sort_values(["deflated_sharpe_ratio", "sharpe_ratio", "strategy_id"], ascending=[False, False, True], na_position="last")
    assert len(rows) == len(expect) > 0
    assert [r["strategy_id"] for r in rows] == expect["strategy_id"].tolist()
    # ascending metrics: smallest drawdown first, ties by Sharpe ratio (best first), then id
    dd = _json(workspace, "scan", "--sort-by", "max_drawdown", "--min-trades", "1", "--top", "5")
    expect_dd = s[s["total_trades"] >= 1].sort_values(["max_drawdown", "sharpe_ratio", "strategy_id"], ascending=[True, False, True],
                                                      na_position="last").head(5)
    assert [r["strategy_id"] for r in dd] == expect_dd["strategy_id"].tolist()


def test_scan_csv_and_table_formats(workspace, db, monkeypatch):
    result = _run(workspace, "scan", "--top", "7", "--format", "csv")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    s = _strategies(db).sort_values(["sharpe_ratio", "strategy_id"], ascending=[False, True], na_position="last").head(7)
    assert df["strategy_id"].tolist() == s["strategy_id"].tolist()
    # a console wide enough that no cell is folded onto a second line (a terminal under `pytest -s`
    # may be narrow); the rich table's data rows are the lines starting with "│", first column first
    monkeypatch.setattr(cli_main.console, "width", 400)
    table = _run(workspace, "scan", "--top", "3")
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:3]] == ["strategy_id", "parameters"] and "deflated_sharpe_ratio" in header
    rows = [line.split("│") for line in table.stdout.splitlines() if line.startswith("│")]
    assert [r[1].strip() for r in rows] == s["strategy_id"].head(3).tolist()


@pytest.mark.parametrize("hostile", ["sharpe_ratio; DROP TABLE strategies", "s.sharpe_ratio", "sharpe_ratio DESC, (SELECT 1)", "random()"])
def test_hostile_sort_by_is_refused_and_nothing_runs(workspace, db, hostile):
    before = db.execute("SELECT count(*) FROM strategies").fetchone()[0]
    result = _run(workspace, "scan", "--sort-by", hostile)
    assert result.exit_code == 2
    assert "unknown --sort-by metric" in result.output and "sharpe_ratio" in result.output
    with duckdb.connect(str(workspace / "analytics.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM strategies").fetchone()[0] == before == 2280


def test_analyze_parameters_reads_parameter_analysis_rows(workspace, db, tmp_path):
    rows = _json(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period")
    expect = db.execute(
        "SELECT * FROM parameter_analysis WHERE strategy_type = 'bollinger_bands' AND parameter_name = 'period' ORDER BY parameter_value"
    ).df()
    assert [r["parameter_value"] for r in rows] == expect["parameter_value"].tolist()
    assert [r["avg_sharpe"] for r in rows] == pytest.approx(expect["avg_sharpe"].tolist())
    assert [r["count_strategies"] for r in rows] == expect["count_strategies"].tolist()
    plot = tmp_path / "period.png"
    result = _run(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 5000


def test_analyze_parameters_computes_on_the_fly_when_rows_are_missing(workspace, db, tmp_path):
    copy = tmp_path / "ws"
    copy.mkdir()
    shutil.copy(workspace / "analytics.duckdb", copy / "analytics.duckdb")
    with duckdb.connect(str(copy / "analytics.duckdb")) as conn:
        conn.execute("DELETE FROM parameter_analysis")
    rows = _json(copy, "analyze-parameters", "--strategy", "rsi_bands", "--parameter", "oversold")
    s = db.execute("SELECT s.sharpe_ratio, p.parameter_value FROM strategy_parameters p JOIN strategies s USING (strategy_id) "
                   "WHERE p.strategy_type = 'rsi_bands' AND p.parameter_name = 'oversold'").df()
    g = s.groupby("parameter_value")["sharpe_ratio"].agg(["mean", "std", "size", "max"]).reset_index()
    assert [r["parameter_value"] for r in rows] == g["parameter_value"].tolist()
    assert [r["avg_sharpe"] for r in rows] == pytest.approx(g["mean"].tolist())
    assert [r["std_sharpe"] for r in rows] == pytest.approx(g["std"].tolist())
    assert [r["count_strategies"] for r in rows] == g["size"].tolist()
    assert [r["best_sharpe"] for r in rows] == pytest.approx(g["max"].tolist())


def test_analyze_two_parameters_gives_the_heatmap_grid(workspace, db, tmp_path):
    plot = tmp_path / "heat.png"
    rows = _json(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period", "--parameter", "std_dev", "--plot", str(plot))
    s = db.execute(
        """SELECT a.parameter_value AS a, b.parameter_value AS b, s.sharpe_ratio FROM strategy_parameters a
           JOIN strategy_parameters b ON a.strategy_id = b.strategy_id AND b.parameter_name = 'std_dev'
           JOIN strategies s ON s.strategy_id = a.strategy_id
           WHERE a.strategy_type = 'bollinger_bands' AND a.parameter_name = 'period'"""
    ).df()
    g = s.groupby(["a", "b"])["sharpe_ratio"].mean()
    assert len(rows) == len(g)
    for r in rows[::17]:
        assert r["avg_sharpe"] == pytest.approx(g.loc[(r["period"], r["std_dev"])])
    assert plot.read_bytes().startswith(PNG_MAGIC)


def test_analyze_parameters_unknown_names_exit_2(workspace):
    bad_type = _run(workspace, "analyze-parameters", "--strategy", "nope", "--parameter", "period")
    assert bad_type.exit_code == 2 and "unknown strategy type 'nope'" in bad_type.output and "bollinger_bands" in bad_type.output
    bad_param = _run(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "x; DROP TABLE strategies")
    assert bad_param.exit_code == 2 and "has no parameter" in bad_param.output
    three = _run(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "a", "--parameter", "b", "--parameter", "c")
    assert three.exit_code == 2


def test_correlations_lists_pairs_and_clusters(workspace, db):
    out = _json(workspace, "correlations", "--top", "20", "--min-correlation", "0.6")
    pairs = db.execute("SELECT * FROM strategy_correlations WHERE rank_a <= 20 AND rank_b <= 20").df()
    strong = pairs[pairs["correlation"] >= 0.6]
    assert {(p["strategy_id_a"], p["strategy_id_b"]) for p in out["pairs"]} == set(zip(strong["strategy_id_a"], strong["strategy_id_b"]))
    members = db.execute("SELECT strategy_id FROM strategies WHERE total_trades > 0 ORDER BY sharpe_ratio DESC, strategy_id LIMIT 20").df()["strategy_id"].tolist()
    clusters = correlation_clusters(members, pairs, 0.6)
    assert [[c["keep"], *c["members"].split()] if c["members"] else [c["keep"]] for c in out["clusters"]] == clusters
    cluster_of = {m: i for i, c in enumerate(clusters) for m in c}
    # every strong pair lies inside one cluster; the kept member is the best ranked of its cluster
    assert all(cluster_of[a] == cluster_of[b] for a, b in zip(strong["strategy_id_a"], strong["strategy_id_b"]))
    for c in clusters:
        assert members.index(c[0]) == min(members.index(m) for m in c)
    table = _run(workspace, "correlations", "--top", "20", "--min-correlation", "0.6")
    assert table.exit_code == 0 and "clusters" in table.stdout


def test_correlation_clusters_are_connected_components():
    pairs = pd.DataFrame({"strategy_id_a": ["a", "b", "d", "a"], "strategy_id_b": ["b", "c", "e", "e"], "correlation": [0.9, 0.8, 0.95, 0.1]})
    assert correlation_clusters(["a", "b", "c", "d", "e", "f"], pairs, 0.75) == [["a", "b", "c"], ["d", "e"]]
    assert correlation_clusters(["a", "b", "c", "d", "e", "f"], pairs, 0.05) == [["a", "b", "c", "d", "e"]]


def test_top_combinations_ranks_pairs_by_the_stored_score(workspace, db):
    rows = _json(workspace, "top-combinations", "--limit", "10", "--min-trades", "5")
    rp = db.execute("SELECT * FROM regime_performance").df()
    pairs = rp.groupby(["strategy_id", "classifier_id"]).agg(score=("regime_aware_score", "first"), trades=("trade_count", "sum")).reset_index()
    pairs = pairs[(pairs["trades"] >= 5) & pairs["score"].notna()]
    expect = pairs.sort_values(["score", "strategy_id", "classifier_id"], ascending=[False, True, True]).head(10)
    assert [(r["strategy_id"], r["classifier_id"]) for r in rows] == list(zip(expect["strategy_id"], expect["classifier_id"]))
    assert [r["regime_aware_score"] for r in rows] == pytest.approx(expect["score"].tolist())
    s = db.execute("SELECT strategy_id, sharpe_ratio FROM strategies").df().set_index("strategy_id")["sharpe_ratio"]
    assert [r["regime_edge"] for r in rows] == pytest.approx([r["regime_aware_score"] - s[r["strategy_id"]] for r in rows])


def test_duplicates_finds_hashes_seen_in_more_than_one_run(workspace, db, built):
    rows = _json(workspace, "duplicates", "--limit", "5000")
    reg = db.execute("SELECT * FROM run_strategies").df()
    g = reg.groupby("strategy_hash")["run_id"].nunique()
    assert sorted(r["strategy_hash"] for r in rows) == sorted(g[g > 1].index)
    # both runs evaluated the same grid (one config hash) on both symbols
    assert len(rows) == 1140 and all(r["runs"] == 2 and r["grids"] == 1 and r["symbols"] == "AAPL,SPY" for r in rows)
    spy = _json(workspace, "duplicates", "--symbol", "SPY", "--limit", "3")
    assert len(spy) == 3 and all(r["symbols"] == "SPY" for r in spy)
    assert _json(workspace, "duplicates", "--across", "grids") == []
    assert set(reg["run_id"]) == {built["first_run_id"], built["second_run_id"]}


def test_duplicates_across_grids_finds_a_hash_in_two_grid_contents(workspace, db, tmp_path):
    copy = tmp_path / "ws"
    copy.mkdir()
    shutil.copy(workspace / "analytics.duckdb", copy / "analytics.duckdb")
    picked = db.execute("SELECT strategy_hash FROM run_strategies WHERE symbol = 'SPY' GROUP BY 1 ORDER BY 1 LIMIT 4").df()["strategy_hash"].tolist()
    with duckdb.connect(str(copy / "analytics.duckdb")) as conn:
        # a later run of a smaller grid (other content) that shares 4 strategies
        conn.execute(
            """INSERT INTO run_strategies
               SELECT 'run-small-grid', strategy_id, strategy_hash, strategy_type, symbol, timeframe,
                      'SPY_5m_aaaaaaaaaaaa', 'aaaaaaaaaaaa', parameters, sharpe_ratio + 1, total_trades, recorded_at
               FROM run_strategies WHERE symbol = 'SPY' AND list_contains(?, strategy_hash)
               QUALIFY row_number() OVER (PARTITION BY strategy_hash ORDER BY recorded_at) = 1""",
            [picked],
        )
    rows = _json(copy, "duplicates", "--across", "grids")
    assert sorted(r["strategy_hash"] for r in rows) == sorted(picked)
    assert all(r["grids"] == 2 and r["runs"] == 3 for r in rows)
    with duckdb.connect(str(copy / "analytics.duckdb"), read_only=True) as conn:
        reg = conn.execute("SELECT * FROM run_strategies").df()
    spread = reg.groupby("strategy_hash")["sharpe_ratio"].agg(["min", "max"])
    assert [r["min_sharpe"] for r in rows] == pytest.approx(spread.loc[[r["strategy_hash"] for r in rows], "min"].tolist())
    assert [r["max_sharpe"] for r in rows] == pytest.approx(spread.loc[[r["strategy_hash"] for r in rows], "max"].tolist())


def test_duplicates_counts_strategy_index_files_as_runs(workspace, db):
    index = workspace / "strategy_index.parquet"
    rows = _json(workspace, "duplicates", "--across", "grids", "--index", str(index), "--limit", "5000")
    idx = pd.read_parquet(index)
    assert sorted(r["strategy_hash"] for r in rows) == sorted(idx["strategy_hash"].unique())
    assert all(r["runs"] == 3 and r["grids"] == 2 for r in rows)
    missing = _run(workspace, "duplicates", "--index", str(workspace / "nothing-*.parquet"))
    assert missing.exit_code == 2 and "no file matches" in missing.output


def test_show_replays_trades_consistent_with_the_stored_metrics(workspace, db, tmp_path):
    row = db.execute("SELECT * FROM strategies WHERE total_trades >= 5 ORDER BY sharpe_ratio DESC LIMIT 1").df().iloc[0]
    plot = tmp_path / "equity.png"
    out = _json(workspace, "show", row["strategy_id"], "--plot", str(plot), "--trades", "3")
    assert out["parameters"] == json.loads(row["parameters"])
    assert out["metrics"]["sharpe_ratio"] == pytest.approx(row["sharpe_ratio"])
    assert out["metrics"]["deflated_sharpe_ratio"] == pytest.approx(row["deflated_sharpe_ratio"])
    assert out["trades"]["closed_trades"] == row["total_trades"]
    assert out["trades"]["winning_trades"] == row["winning_trades"]
    assert out["trades"]["mean_net_return"] == pytest.approx(row["avg_trade_return"])
    assert out["trades"]["equity_end"] - 1.0 == pytest.approx(row["total_return"], rel=1e-9)
    assert len(out["recent_trades"]) == 3
    assert plot.read_bytes().startswith(PNG_MAGIC)
    table = _run(workspace, "show", row["strategy_id"])
    assert table.exit_code == 0 and "closed trades" in table.stdout


def test_errors_have_distinct_exit_codes(workspace, tmp_path):
    unknown = _run(workspace, "show", "SPY_5m_nope_000000000000")
    assert unknown.exit_code == 6 and "unknown strategy id" in unknown.output
    missing = _run(tmp_path / "empty", "scan")
    assert missing.exit_code == 3 and "no warehouse" in missing.output
    copy = tmp_path / "ws"
    copy.mkdir()
    shutil.copy(workspace / "analytics.duckdb", copy / "analytics.duckdb")
    with duckdb.connect(str(copy / "analytics.duckdb")) as conn:
        conn.execute("DELETE FROM strategy_correlations")
    empty = _run(copy, "correlations")
    assert empty.exit_code == 3 and "strategy_correlations" in empty.output
    bad_png = _run(workspace, "analyze-parameters", "--strategy", "bollinger_bands", "--parameter", "period", "--plot", str(tmp_path / "x.jpg"))
    assert bad_png.exit_code == 2


def test_bad_options_are_refused_before_any_work(workspace, db, tmp_path):
    unknown_type = _run(workspace, "scan", "--strategy-types", "bollinger_bands,no_such_type")
    assert unknown_type.exit_code == 2 and "no_such_type" in unknown_type.output
    sid = db.execute("SELECT strategy_id FROM strategies ORDER BY strategy_id LIMIT 1").fetchone()[0]
    png = tmp_path / "equity.png"
    as_csv = _run(workspace, "show", sid, "--format", "csv", "--plot", str(png))
    assert as_csv.exit_code == 2 and "table or json" in as_csv.output
    assert not png.exists()  # refused before the replay and the plot
