"""``run_graph`` / ``admf run`` / ``admf backfill`` when a step fails or a landing day has a gap.

A failed step must come back as one line naming the job, the step and the step's own error (no
traceback), and no later run may start. A trading day that one symbol has no landing bars for
must not be requested: a single-run range covers every partition between its ends, so the gap
splits the range.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from typer.testing import CliRunner

from admf_assets.cli.main import app
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.store import partition_sources
from admf_assets.lib.pipeline import RunFailedError, run_graph, with_overrides
from admf_assets.lib.settings import Settings, bundled_sample_dir

DAYS = [dt.date(2025, 6, 4), dt.date(2025, 6, 5), dt.date(2025, 6, 6)]
GAP = DAYS[1]


@pytest.fixture(scope="module")
def gap_landing(tmp_path_factory) -> Path:
    """AAPL and SPY sample bars, with AAPL's bars of 2025-06-05 removed."""
    landing = tmp_path_factory.mktemp("gap-landing")
    sample = Path(bundled_sample_dir())
    shutil.copy(sample / "SPY_5m.csv", landing / "SPY_5m.csv")
    aapl = pd.read_csv(sample / "AAPL_5m.csv", dtype=str)
    keep = ~aapl["Datetime"].str.startswith(GAP.isoformat())
    assert (~keep).sum() > 70  # the day's regular session was there
    aapl[keep].to_csv(landing / "AAPL_5m.csv", index=False)
    return landing


def test_a_gap_day_splits_the_range_and_is_not_requested(gap_landing, tmp_path):
    settings = with_overrides(Settings.from_env(), landing_dir=str(gap_landing), workspace=str(tmp_path / "workspace"))
    with dg.instance_for_test() as instance:
        results = run_graph(instance, settings=settings, first_day=DAYS[0], last_day=DAYS[-1])
    assert list(results) == [
        "market_data_job 2025-06-04..2025-06-04",
        "market_data_job 2025-06-06..2025-06-06",
        "analytics_job",
        "daily_summary_job 2025-06-04..2025-06-04",
        "daily_summary_job 2025-06-06..2025-06-06",
    ]
    assert all(r.success for r in results.values())
    layout = WorkspaceLayout(Path(settings.workspace))
    for symbol in ("AAPL", "SPY"):
        stored = set(partition_sources(layout, "bars", symbol, "5m"))
        assert {DAYS[0], DAYS[2]} <= stored and GAP not in stored, (symbol, sorted(stored))


def test_a_failed_step_stops_the_graph_with_its_own_message(tmp_path):
    # the landing bars are 5-minute bars; a workspace declared as 15-minute makes market_bars fail
    settings = with_overrides(Settings.from_env(), workspace=str(tmp_path / "workspace"), timeframe="15m")
    with dg.instance_for_test() as instance:
        with pytest.raises(RunFailedError) as caught:
            run_graph(instance, settings=settings, first_day=DAYS[0], last_day=DAYS[0])
    err = caught.value
    assert (err.label, err.step) == ("market_data_job", "market_bars")
    assert "landing bars are 5m bars but the workspace timeframe is 15m" in err.reason
    assert not err.reason.startswith("dagster.")  # the Failure's description, not its class path
    assert list(err.results) == ["market_data_job"] and not err.results["market_data_job"].success
    assert str(err).startswith("market_data_job: step market_bars failed: ")


@pytest.mark.parametrize("command", [["run"], ["backfill", "--from", "2025-06-04", "--to", "2025-06-04"]])
def test_cli_reports_a_failed_step_in_one_line(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./dagster_home here: an ephemeral instance
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("ADMF_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("ADMF_TIMEFRAME", "15m")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "error: run failed: market_data_job: step market_bars failed: " in result.output
    assert "workspace timeframe is 15m" in result.output
    assert "FAILED" in result.output  # the failed run is listed with its id


def test_backfill_leaves_out_days_without_landing_bars(gap_landing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("ADMF_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("ADMF_LANDING_DIR", str(gap_landing))
    only_gap = CliRunner().invoke(app, ["backfill", "--from", "2025-06-05", "--to", "2025-06-05", "--symbol", "AAPL"])
    assert only_gap.exit_code == 2, only_gap.output
    assert "no trading day with bars for AAPL" in only_gap.output


def test_backfill_runs_around_a_gap_day_and_says_so(gap_landing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("ADMF_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("ADMF_LANDING_DIR", str(gap_landing))
    out = CliRunner().invoke(app, ["backfill", "--from", "2025-06-04", "--to", "2025-06-06", "--symbol", "AAPL"])
    assert out.exit_code == 0, out.output
    assert "1 trading day(s) without landing bars for every chosen symbol left out: 2025-06-05" in out.output
    assert "market_data_job 2025-06-04..2025-06-04 x AAPL..AAPL" in out.output
    assert "market_data_job 2025-06-06..2025-06-06 x AAPL..AAPL" in out.output
    assert "5 run(s)" in out.output  # 2 market-data runs, analytics, 2 summary runs
    stored = set(partition_sources(WorkspaceLayout(tmp_path / "workspace"), "bars", "AAPL", "5m"))
    assert stored == {DAYS[0], DAYS[2]}


def test_cli_prints_no_dagster_beta_warnings(tmp_path):
    # a real `admf` process (warnings as Python shows them by default, not pytest's filters):
    # resolving the jobs emits Dagster BetaWarnings (e.g. `owners` of SensorDefinition), which the
    # CLI silences; the run fails at its first step, as above, to keep this short
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTHONWARNINGS")}
    env.update(ADMF_WORKSPACE=str(tmp_path / "workspace"), ADMF_TIMEFRAME="15m", COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "admf_assets.cli.main", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "workspace timeframe is 15m" in done.stderr
    assert "Warning" not in done.stderr and "in beta" not in done.stderr, done.stderr
    assert "Warning" not in done.stdout
