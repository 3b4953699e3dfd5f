"""Reproducing a stored run from its snapshot on a small bars file gives identical metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

import admf_assets
from admf_assets.cli import history as cli
from admf_assets.history import repository as repo

SAMPLE = Path(admf_assets.__file__).parent / "sample_data" / "yahoo_5m_2025" / "SPY_5m.csv"


@pytest.fixture
def small_bars(tmp_path) -> Path:
    path = tmp_path / "SPY_5m_small.csv"
    pd.read_csv(SAMPLE).head(1500).to_csv(path, index=False)
    return path


def _snapshot(bars: Path) -> dict:
    return {"type": "bollinger_bands", "parameters": {"period": 20, "std_dev": 2.0}, "symbol": "SPY",
            "timeframe": "5m", "bars_path": str(bars), "costs": {"commission_bps": 0.5, "slippage_bps": 1.0}}


def test_reproduce_identical(clean, small_bars):
    original_id, first = repo.evaluate_and_save(clean, _snapshot(small_bars))
    assert first.n_bars == 1500 and first.metrics["total_trades"] > 0
    assert first.metrics["sharpe_ratio"] is not None and first.metrics["avg_win"] is not None
    assert first.start_date <= first.metrics["max_drawdown_date"] <= first.end_date
    result = repo.reproduce_run(clean, original_id)
    assert result.identical, result.differences
    assert result.differences == {}
    original, again = repo.compare_runs(clean, [original_id, result.new_run_id])
    assert again["reproduced_from_run_id"] == original_id
    assert again["metrics"] == original["metrics"]
    assert again["config_snapshot"] == original["config_snapshot"]
    assert again["strategy_name"] == original["strategy_name"]


def test_reproduce_detects_different_bars(clean, small_bars, tmp_path):
    original_id, _ = repo.evaluate_and_save(clean, _snapshot(small_bars))
    other = tmp_path / "SPY_5m_other.csv"
    pd.read_csv(SAMPLE).head(1200).to_csv(other, index=False)
    result = repo.reproduce_run(clean, original_id, other)
    assert not result.identical and "total_return" in result.differences


def test_reproduce_cli(clean, small_bars, db_url):
    original_id, _ = repo.evaluate_and_save(clean, _snapshot(small_bars))
    app = typer.Typer()
    app.add_typer(cli.history_app, name="history")
    runner = CliRunner()
    env = {"ADMF_POSTGRES_URL": db_url}
    ok = runner.invoke(app, ["history", "reproduce", str(original_id)], env=env)
    assert ok.exit_code == 0, ok.output
    assert "metrics identical" in ok.stdout
    small_bars.unlink()
    gone = runner.invoke(app, ["history", "reproduce", str(original_id)], env=env)
    assert gone.exit_code == cli.EXIT_STORE, gone.output
    assert "bars file not found" in gone.stderr


# --------------------------------------------------------------------------------------------
# Tolerance of the comparison (a recomputed float may differ in its last bits)
# --------------------------------------------------------------------------------------------

def _set_metric(engine, run_id, name: str, value) -> None:
    assert name in repo.PERFORMANCE_COLUMNS  # the column name is a fixed identifier, the value is bound
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE performance_metrics SET {name} = :value "
                 "WHERE backtest_run_id = (SELECT id FROM backtest_runs WHERE run_id = :run_id)"),
            {"value": value, "run_id": run_id},
        )


def _invoke(db_url, *args):
    app = typer.Typer()
    app.add_typer(cli.history_app, name="history")
    return CliRunner().invoke(app, ["history", *map(str, args)], env={"ADMF_POSTGRES_URL": db_url, "COLUMNS": "200"})


def test_reproduce_within_tolerance_passes(clean, small_bars, db_url):
    original_id, first = repo.evaluate_and_save(clean, _snapshot(small_bars))
    loss, sharpe = first.metrics["avg_loss"], first.metrics["sharpe_ratio"]
    _set_metric(clean, original_id, "avg_loss", loss * (1 + 3e-16))  # the tester's last-bit case
    _set_metric(clean, original_id, "sharpe_ratio", sharpe * (1 + 5e-10))  # inside rtol 1e-9
    ok = _invoke(db_url, "reproduce", original_id)
    assert ok.exit_code == 0, ok.output
    out = " ".join(ok.stdout.split())
    assert "metrics match within tolerance (rtol 1e-09, atol 1e-12)" in out
    assert "max relative difference 5e-10" in out
    result = repo.reproduce_run(clean, original_id)
    assert result.identical and not result.exact and result.differences == {}
    assert math.isclose(result.max_relative_difference, 5e-10, rel_tol=1e-3)


def test_reproduce_outside_tolerance_exits_7(clean, small_bars, db_url):
    original_id, first = repo.evaluate_and_save(clean, _snapshot(small_bars))
    stored = first.metrics["sharpe_ratio"] * (1 + 1e-6)
    _set_metric(clean, original_id, "sharpe_ratio", stored)
    bad = _invoke(db_url, "reproduce", original_id)
    assert bad.exit_code == cli.EXIT_NOT_REPRODUCED == 7, bad.output
    out = " ".join(bad.stdout.split())
    assert "metrics DIFFER (rtol 1e-09, atol 1e-12; max relative difference 1e-06)" in out
    assert "sharpe_ratio" in out and repr(stored) in out and repr(first.metrics["sharpe_ratio"]) in out
    # integer counts compare exactly
    original_id, first = repo.evaluate_and_save(clean, _snapshot(small_bars))
    _set_metric(clean, original_id, "total_trades", first.metrics["total_trades"] + 1)
    counts = _invoke(db_url, "reproduce", original_id)
    assert counts.exit_code == cli.EXIT_NOT_REPRODUCED, counts.output
    assert "total_trades" in counts.stdout


def test_reproduce_help_documents_tolerance(db_url):
    helped = _invoke(db_url, "reproduce", "--help")
    text_ = " ".join(helped.stdout.split())
    assert "relative tolerance 1e-09, absolute 1e-12" in text_
    assert "relative tolerance 1e-9, absolute 1e-12" in " ".join(cli.reproduce_command.__doc__.split())
    assert "1e-9" in cli.__doc__ and "1e-12" in cli.__doc__
    assert (repo.REPRODUCE_RTOL, repo.REPRODUCE_ATOL) == (1e-9, 1e-12)


def test_compare_metrics_rules():
    base = {"sharpe_ratio": 1.0, "avg_loss": -0.0027808816910643735, "total_trades": 10, "win_rate": float("nan"),
            "expectancy": 0.0}
    same = repo.compare_metrics(base, dict(base))
    assert same.exact and same.differences == {} and same.max_relative_difference == 0.0
    # the tester's pair: equal within tolerance, not bit-identical
    near = repo.compare_metrics(base, {**base, "avg_loss": -0.002780881691064374})
    assert not near.exact and near.differences == {} and 0 < near.max_relative_difference < 1e-15
    assert repo.compare_metrics(base, {**base, "win_rate": None}).differences == {}  # NaN == NULL == NaN
    assert "win_rate" in repo.compare_metrics(base, {**base, "win_rate": 0.5}).differences
    assert repo.compare_metrics(base, {**base, "expectancy": 5e-13}).differences == {}  # atol near 0
    assert "expectancy" in repo.compare_metrics(base, {**base, "expectancy": 1e-11}).differences
    assert "total_trades" in repo.compare_metrics(base, {**base, "total_trades": 11}).differences
    assert "sharpe_ratio" in repo.compare_metrics(base, {**base, "sharpe_ratio": 1.0 + 2e-9}).differences


def test_trade_means_sum_like_the_published_grid():
    """Root cause of the last-bit differences: the publisher (backtest_history asset) takes
    avg_win / avg_loss with a pandas groupby mean over the whole grid (Kahan-compensated sum),
    evaluate() took Series.mean (numpy pairwise sum). metrics_from_core now sums like the grid."""
    rng = np.random.default_rng(7)
    net = pd.Series(rng.normal(-0.0005, 0.004, 400))
    series = np.repeat([0, 1], 200)
    grid = pd.DataFrame({"avg_win": net.where(net > 0).groupby(series).mean(),
                         "avg_loss": net.where(net < 0).groupby(series).mean()})
    plain_differs = 0
    row = {k: 0.0 for k in ("total_return", "sharpe_ratio", "sortino_ratio", "max_drawdown", "calmar_ratio",
                            "volatility", "win_rate", "profit_factor", "avg_trade_return")}
    row.update(total_trades=200, winning_trades=1, losing_trades=1)
    for sid in (0, 1):
        own = net[series == sid].reset_index(drop=True)
        metrics = repo.metrics_from_core(row, 100_000.0, pd.DataFrame({"net_return": own, "series": 0}))
        assert metrics["avg_win"] == grid.loc[sid, "avg_win"] and metrics["avg_loss"] == grid.loc[sid, "avg_loss"]
        plain_differs += float(own[own > 0].mean()) != grid.loc[sid, "avg_win"]
        plain_differs += float(own[own < 0].mean()) != grid.loc[sid, "avg_loss"]
    assert plain_differs  # Series.mean really differs from the grid's groupby mean on this data
