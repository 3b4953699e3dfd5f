"""The analytics assets on the materialized workspace: DSR/PBO columns, the per-run registry,
regime-aware scores, strategy correlations and the PNG metadata shown in the Dagster UI."""

from __future__ import annotations

import base64
import math

import numpy as np
import pandas as pd
import pytest

from admf_assets.core.analytics import REGIME_SHRINK_TRADES, series_daily_returns
from admf_assets.core.layout import WorkspaceLayout
from admf_assets.core.metrics import CostModel
from admf_assets.core.overfitting import grid_deflated_sharpe, probability_of_backtest_overfitting
from admf_assets.core.store import load_series
from tests.analytics.conftest import CORRELATION_TOP_N

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metadata(result, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return event.materialization.metadata


def _embedded_png(md_text: str) -> bytes:
    assert md_text.startswith("![") and "(data:image/png;base64," in md_text
    return base64.b64decode(md_text.split("base64,", 1)[1].rstrip(")"))


def test_strategies_carry_the_deflated_sharpe_ratio_of_their_grid(db, workspace, built):
    strategies = db.execute("SELECT * FROM strategies").df()
    assert len(strategies) == 2 * 1140 and strategies["strategy_id"].is_unique  # re-materialized: replaced, not duplicated
    assert set(strategies["run_id"]) == {built["second_run_id"]}
    grids = db.execute("SELECT * FROM grid_overfitting ORDER BY symbol").df()
    assert list(grids["symbol"]) == ["AAPL", "SPY"] and (grids["n_strategies"] == 1140).all()
    # recompute SPY's DSR and PBO from the stored bars and traces
    history, traces = load_series(WorkspaceLayout(workspace), "SPY", "5m")
    daily = series_daily_returns(history, traces, CostModel(0.5, 1.0))
    returns = daily.to_numpy().T
    expect = grid_deflated_sharpe(returns)
    spy = strategies[strategies["symbol"] == "SPY"].set_index("strategy_id").loc[list(daily.columns)]
    np.testing.assert_allclose(spy["deflated_sharpe_ratio"].to_numpy(dtype=float), expect["deflated_sharpe_ratio"], equal_nan=True)
    row = grids[grids["symbol"] == "SPY"].iloc[0]
    assert row["n_trials"] == expect["n_trials"] and row["n_obs"] == len(daily) == 12
    assert row["expected_max_sharpe"] == pytest.approx(expect["expected_max_sharpe"])
    trial = np.isfinite(spy["deflated_sharpe_ratio"].to_numpy(dtype=float))
    assert row["pbo"] == pytest.approx(probability_of_backtest_overfitting(returns[trial]).pbo)
    assert 0.0 <= row["pbo"] <= 1.0
    best = spy.sort_values("sharpe_ratio", ascending=False).iloc[0]
    assert row["best_strategy_id"] == best.name and row["best_sharpe"] == pytest.approx(best["sharpe_ratio"])
    # the daily Sharpe ratio behind the DSR is the stored (annualized) Sharpe ratio / sqrt(252)
    sample = spy[spy["total_trades"] > 3].iloc[0]
    r = daily[sample.name].to_numpy()
    assert r.mean() / r.std(ddof=1) * math.sqrt(252) == pytest.approx(sample["sharpe_ratio"], rel=1e-9)
    assert spy["grid_id"].nunique() == 1 and spy["grid_id"].iloc[0] == row["grid_id"]
    # signal changes and the compression ratio count each strategy's stored change rows
    rows_per_strategy = np.bincount(traces.rows.series, minlength=traces.rows.n_series)
    np.testing.assert_array_equal(spy["signal_changes"].to_numpy(dtype=np.int64), rows_per_strategy)
    np.testing.assert_allclose(spy["compression_ratio"].to_numpy(dtype=float), rows_per_strategy / len(history.bars), rtol=0, atol=0)


def test_run_registry_keeps_every_run_of_strategy_performance(db, built):
    runs = db.execute("SELECT run_id, count(*) AS n, count(DISTINCT strategy_hash) AS hashes FROM run_strategies GROUP BY run_id").df()
    assert set(runs["run_id"]) == {built["first_run_id"], built["second_run_id"]}
    assert (runs["n"] == 2280).all() and (runs["hashes"] == 1140).all()
    assert db.execute("SELECT count(*) FROM runs WHERE run_id IN (?, ?)", [built["first_run_id"], built["second_run_id"]]).fetchone()[0] == 2


def test_regime_aware_score_follows_its_definition(db):
    rp = db.execute("SELECT * FROM regime_performance").df()
    assert rp["regime_aware_score"].notna().any()
    for (sid, cid), grp in list(rp.groupby(["strategy_id", "classifier_id"]))[::997][:12]:
        n = grp["trade_count"].to_numpy(dtype=float)
        total = n.sum()
        if total == 0:
            assert grp["regime_aware_score"].isna().all()
            continue
        sr = np.nan_to_num(np.clip(grp["sharpe_ratio"].to_numpy(dtype=float), 0, None))
        expect = float(np.sum(n / total * sr * n / (n + REGIME_SHRINK_TRADES)))
        assert grp["regime_aware_score"].to_numpy() == pytest.approx(np.full(len(grp), expect))
        assert grp["regime_weight"].sum() == pytest.approx(1.0)


def test_strategy_correlations_are_pearson_correlations_of_daily_net_returns(db, workspace):
    pairs = db.execute("SELECT * FROM strategy_correlations").df()
    assert len(pairs) == CORRELATION_TOP_N * (CORRELATION_TOP_N - 1) // 2
    assert (pairs["strategy_id_a"] < pairs["strategy_id_b"]).all()
    top = db.execute(
        "SELECT strategy_id FROM strategies WHERE sharpe_ratio IS NOT NULL AND total_trades > 0 ORDER BY sharpe_ratio DESC, strategy_id LIMIT ?",
        [CORRELATION_TOP_N],
    ).df()["strategy_id"].tolist()
    ranks = {sid: i + 1 for i, sid in enumerate(top)}
    assert set(pairs["strategy_id_a"]) | set(pairs["strategy_id_b"]) == set(top)
    assert all(ranks[a] == ra and ranks[b] == rb for a, b, ra, rb in pairs[["strategy_id_a", "strategy_id_b", "rank_a", "rank_b"]].itertuples(index=False))
    layout = WorkspaceLayout(workspace)
    daily = pd.concat([series_daily_returns(*load_series(layout, s, "5m"), CostModel(0.5, 1.0)) for s in ("AAPL", "SPY")], axis=1)
    for a, b, corr, n_days in pairs[["strategy_id_a", "strategy_id_b", "correlation", "n_days"]].iloc[::37].itertuples(index=False):
        x, y = daily[a].to_numpy(), daily[b].to_numpy()
        assert n_days == 12
        assert corr == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert pairs["correlation"].between(-1.0, 1.0).all()


def test_materializations_carry_plots_and_the_top_table(built, workspace):
    perf = _metadata(built["second_result"], "strategy_performance")
    assert "deflated_sharpe_ratio" in perf["top_10_by_sharpe"].value
    assert "pbo" in perf["overfitting_by_grid"].value
    png = _embedded_png(perf["sharpe_distribution_SPY_5m"].value)
    assert png.startswith(PNG_MAGIC) and len(png) > 2000
    assert (workspace / "plots" / "sharpe_SPY_5m.png").read_bytes() == png
    params = _metadata(built["results"]["analytics_job"], "parameter_analysis")
    for stype in ("bollinger_bands", "rsi_bands", "sma_crossover"):
        assert _embedded_png(params[f"sensitivity_{stype}"].value).startswith(PNG_MAGIC)
        assert (workspace / "plots" / f"sensitivity_{stype}.png").stat().st_size > 2000
    corr = _metadata(built["correlation_result"], "strategy_correlations")
    assert corr["pairs"].value == CORRELATION_TOP_N * (CORRELATION_TOP_N - 1) // 2
