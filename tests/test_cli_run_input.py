"""``admf run``: bad input is refused before any run (one line, exit 2), and the printed top list
carries the Deflated Sharpe Ratio and closed trades and leaves out strategies with fewer than
``--min-trades`` closed trades."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from admf_assets.cli.main import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./dagster_home here: an ephemeral instance
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # `admf run --landing/--grid` set these in os.environ: set-then-delete so that monkeypatch
    # removes them again after the test whatever their state before
    for name in ("ADMF_LANDING_DIR", "ADMF_GRID", "ADMF_TIMEFRAME", "ADMF_RETAIN_BARS_DAYS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("ADMF_WORKSPACE", str(tmp_path / "workspace"))
    return tmp_path


def one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and "Traceback" not in output
    return lines[0]


def no_run(tmp_path, monkeypatch):
    """Fail the test if a Dagster run is started."""
    import admf_assets.lib.pipeline as pipeline

    def boom(*args, **kwargs):
        raise AssertionError("a run was started")

    monkeypatch.setattr(pipeline, "run_graph", boom)


def test_missing_landing_folder_is_one_line_and_exit_2(env, monkeypatch):
    no_run(env, monkeypatch)
    result = runner.invoke(app, ["run", "--landing", str(env / "nonexistent")])
    assert result.exit_code == 2, result.output
    assert one_line_error(result.output) == f"error: landing directory not found: {env / 'nonexistent'}"
    assert not (env / "workspace").exists()


def test_invalid_grid_is_refused_before_any_bars_are_written(env, monkeypatch):
    no_run(env, monkeypatch)
    bad = env / "bad_param.yaml"
    bad.write_text("strategies:\n  - {type: rsi_bands, params: {period: 14, bogus: 3}}\n")
    result = runner.invoke(app, ["run", "--grid", str(bad)])
    assert result.exit_code == 2, result.output
    line = one_line_error(result.output)
    assert "bad_param.yaml" in line and "unknown parameter 'bogus'" in line
    assert not (env / "workspace").exists()  # no bars, no traces


def test_missing_grid_file_is_one_line_and_exit_2(env, monkeypatch):
    no_run(env, monkeypatch)
    result = runner.invoke(app, ["run", "--grid", str(env / "nope.yaml")])
    assert result.exit_code == 2, result.output
    assert one_line_error(result.output) == f"error: grid file not found: {env / 'nope.yaml'}"


def test_bad_setting_is_one_line_and_exit_2(env, monkeypatch):
    no_run(env, monkeypatch)
    monkeypatch.setenv("ADMF_RETAIN_BARS_DAYS", "many")
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2, result.output
    assert "ADMF_RETAIN_BARS_DAYS='many' is not an integer" in one_line_error(result.output)


def fill_warehouse(database):
    from admf_assets.core.warehouse import connect

    rows = [
        # strategy_id, sharpe, dsr, trades
        ("SPY_5m_sma_crossover_0000000lucky", 2.049, 0.31, 1),  # sqrt(252 / 60): one trade in 60 days
        ("SPY_5m_sma_crossover_000000three", 1.9, 0.40, 3),
        ("SPY_5m_sma_crossover_00000steady", 1.2, 0.87, 42),
        ("SPY_5m_sma_crossover_0000000five", 0.8, 0.55, 5),
        ("SPY_5m_sma_crossover_00000000none", None, None, 0),
    ]
    with connect(database) as conn:
        for sid, sharpe, dsr, trades in rows:
            conn.execute(
                "INSERT INTO strategies (strategy_id, strategy_hash, strategy_type, symbol, timeframe, parameters, "
                "sharpe_ratio, deflated_sharpe_ratio, total_trades, total_return, max_drawdown, win_rate) "
                "VALUES (?, ?, 'sma_crossover', 'SPY', '5m', ?, ?, ?, ?, 0.01, 0.02, 0.5)",
                [sid, sid[-8:], json.dumps({"fast_period": 5, "slow_period": 20}), sharpe, dsr, trades],
            )


@pytest.fixture
def warehouse_only(env, monkeypatch):
    """``admf run`` with the graph's runs replaced by a warehouse filled beforehand."""
    import admf_assets.lib.pipeline as pipeline

    (env / "workspace").mkdir()
    fill_warehouse(env / "workspace" / "analytics.duckdb")
    monkeypatch.setattr(pipeline, "run_graph", lambda instance, settings: {})
    return env


def table_rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if "SPY_5m_" in line]


def test_top_list_has_dsr_and_trades_and_leaves_out_few_trade_strategies(warehouse_only):
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "strategy_id" in line)
    assert "deflated_sharpe_ratio" in header and "total_trades" in header
    rows = table_rows(result.output)
    assert [r.split()[1] for r in rows] == ["SPY_5m_sma_crossover_00000steady", "SPY_5m_sma_crossover_0000000five"]  # default --min-trades 5
    assert "0.87" in rows[0] and " 42 " in rows[0]
    assert "2 of 5 strategies have at least 5 closed trades (--min-trades)" in result.output


def test_min_trades_option(warehouse_only):
    result = runner.invoke(app, ["run", "--min-trades", "1", "--top", "3"])
    assert result.exit_code == 0, result.output
    assert [r.split()[1] for r in table_rows(result.output)] == [
        "SPY_5m_sma_crossover_0000000lucky", "SPY_5m_sma_crossover_000000three", "SPY_5m_sma_crossover_00000steady",
    ]
    everything = runner.invoke(app, ["run", "--min-trades", "0"])
    assert len(table_rows(everything.output)) == 5
    assert runner.invoke(app, ["run", "--min-trades", "-1"]).exit_code == 2
