"""Reproducing a stored run from its snapshot on a small bars file gives identical metrics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
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
