"""The compiled daily and per-regime paths of ``core/metrics.py`` equal the NumPy reference.

``daily_net_returns``, ``daily_breakdown`` and ``regime_metrics`` moved from dense position blocks
(``tests/core/reference_metrics.py``, the previous implementation kept verbatim) to compiled passes
over the change rows (``core/kernels.py`` ``daily_net_kernel`` / ``regime_kernel``). Floats must
agree within 1e-9 relative (NaN where the reference is NaN), integers and labels exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from admf_assets.core.engine import strategy_rows
from admf_assets.core.metrics import (
    CostModel,
    compute_metrics,
    daily_breakdown,
    daily_net_returns,
    regime_metrics,
    regime_metrics_many,
)
from admf_assets.core.sparse import NO_VALUE, SparseRows
from tests.core import reference_metrics as ref
from tests.core.test_fast_equivalence import (
    BARS_PER_DAY,
    all_configs,
    day_codes_for,
    hand_made_rows,
    jump_case,
    random_bars,
    sample_bars,
    sample_day_codes,
)

COSTS = [CostModel(), CostModel(commission_bps=0.0, slippage_bps=0.0), CostModel(3.0, 7.5)]
COST_IDS = ["default", "free", "costly"]


def _ref_costs(costs: CostModel) -> ref.CostModel:
    return ref.CostModel(costs.commission_bps, costs.slippage_bps)


def _assert_frames_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for name in got.columns:
        a, b = got[name].to_numpy(), want[name].to_numpy()
        if a.dtype.kind in "iuO" or b.dtype.kind in "iuO":
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0.0, err_msg=name)


@pytest.fixture(scope="module", params=["spy_sample", "random_1"])
def case(request):
    if request.param == "spy_sample":
        bars, day = sample_bars(), sample_day_codes()
    else:
        bars = random_bars(1)
        day = day_codes_for(len(bars))
    rows = strategy_rows(bars, all_configs())
    return rows, bars["close"].to_numpy(), day


def _regimes(n: int, seed: int) -> np.ndarray:
    """Regime codes 0..2 in runs, an unknown warm-up and an unknown stretch mid-series."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(rng.integers(0, 3, n // 7 + 1), 7)[:n].astype(np.int8)
    codes[:25] = NO_VALUE
    codes[n // 2 : n // 2 + 40] = NO_VALUE
    return codes


@pytest.mark.parametrize("costs", COSTS, ids=COST_IDS)
def test_daily_net_returns_equal_reference(case, costs):
    rows, close, day = case
    days, got = daily_net_returns(rows, close, day, costs)
    rdays, want = ref.daily_net_returns(rows, close, day, _ref_costs(costs))
    np.testing.assert_array_equal(days, rdays)
    assert got.shape == want.shape == (rows.n_series, np.unique(day).size)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    # the days compound to the total return of compute_metrics
    total = compute_metrics(rows, close, day, costs)["total_return"].to_numpy()
    np.testing.assert_allclose(np.prod(1.0 + got, axis=1) - 1.0, total, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("costs", COSTS, ids=COST_IDS)
def test_daily_breakdown_equal_reference(case, costs):
    rows, close, day = case
    got = daily_breakdown(rows, close, day, costs)
    want = ref.daily_breakdown(rows, close, day, _ref_costs(costs))
    _assert_frames_equal(got, want)
    assert got["trades_closed"].sum() > 0


@pytest.mark.parametrize("costs", COSTS, ids=COST_IDS)
def test_regime_metrics_equal_reference(case, costs):
    rows, close, day = case
    labels = ["bear", "flat", "bull", "never"]  # code 3 never occurs: omitted by both
    regimes = _regimes(close.size, 3)
    got = regime_metrics(rows, close, day, regimes, labels, costs)
    want = ref.regime_metrics(rows, close, day, regimes, labels, _ref_costs(costs))
    _assert_frames_equal(got, want)
    assert set(got["regime"]) == {"bear", "flat", "bull"}
    assert np.isfinite(got["sharpe_ratio"]).sum() > len(got) // 2


def test_regime_metrics_without_unknown_bars_compound_to_total():
    bars = random_bars(2)
    close, day = bars["close"].to_numpy(), day_codes_for(len(bars))
    rows = strategy_rows(bars, all_configs())
    regimes = (np.arange(close.size) // 11 % 2).astype(np.int8)
    got = regime_metrics(rows, close, day, regimes, ["a", "b"], CostModel())
    want = ref.regime_metrics(rows, close, day, regimes, ["a", "b"], ref.CostModel())
    _assert_frames_equal(got, want)
    growth = (1.0 + got["total_return"].to_numpy()).reshape(rows.n_series, 2).prod(axis=1)
    total = compute_metrics(rows, close, day, CostModel())["total_return"].to_numpy()
    np.testing.assert_allclose(growth - 1.0, total, rtol=1e-9, atol=1e-12)


def test_hand_made_rows_and_edges_equal_reference():
    close = random_bars(4, n=2 * BARS_PER_DAY)["close"].to_numpy()
    t = close.size
    rows = hand_made_rows(t)
    day = day_codes_for(t)
    regimes = _regimes(t, 9)
    for costs in COSTS:
        _assert_frames_equal(daily_breakdown(rows, close, day, costs), ref.daily_breakdown(rows, close, day, _ref_costs(costs)))
        _assert_frames_equal(
            regime_metrics(rows, close, day, regimes, ["x", "y", "z"], costs),
            ref.regime_metrics(rows, close, day, regimes, ["x", "y", "z"], _ref_costs(costs)),
        )
    # one day, and no bars at all
    one = SparseRows(np.array([0], np.int32), np.array([0], np.int32), np.array([1], np.int8), 1, 3)
    c3 = np.array([100.0, 101.0, 99.5])
    d3 = np.zeros(3, np.int64)
    _assert_frames_equal(daily_breakdown(one, c3, d3, CostModel()), ref.daily_breakdown(one, c3, d3, ref.CostModel()))
    r3 = np.array([0, 1, 1], np.int8)
    _assert_frames_equal(
        regime_metrics(one, c3, d3, r3, ["u", "v"], CostModel()),
        ref.regime_metrics(one, c3, d3, r3, ["u", "v"], ref.CostModel()),
    )
    empty = SparseRows(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int8), 2, 0)
    days, out = daily_net_returns(empty, np.empty(0), np.empty(0, np.int64), CostModel())
    assert days.shape == (0,) and out.shape == (2, 0)
    got = regime_metrics(empty, np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8), ["u"], CostModel())
    want = ref.regime_metrics(empty, np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8), ["u"], ref.CostModel())
    _assert_frames_equal(got, want)


def test_regime_metrics_rejects_bad_codes():
    rows = SparseRows(np.array([0], np.int32), np.array([0], np.int32), np.array([1], np.int8), 1, 3)
    with pytest.raises(ValueError, match="regime codes"):
        regime_metrics(rows, np.array([1.0, 2.0, 3.0]), np.zeros(3, np.int64), np.array([0, 5, 0], np.int8), ["a"], CostModel())


@pytest.mark.parametrize("costs", COSTS, ids=COST_IDS)
def test_extract_trades_equal_reference(case, costs):
    rows, close, _ = case
    from admf_assets.core.metrics import extract_trades

    got = extract_trades(rows, close, costs)
    want = ref.extract_trades(rows, close, _ref_costs(costs))
    _assert_frames_equal(got, want)
    assert len(got) > rows.n_series


def test_table_to_rows_keeps_unsorted_files_working():
    # a trace table whose rows are not in (series, idx) order still maps back sorted
    import pyarrow as pa

    from admf_assets.core.traces import table_to_rows

    table = pa.table(
        {
            "idx": pa.array([5, 1, 3, 0], pa.int32()),
            "strat": pa.array(["b", "b", "a", "b"]),
            "val": pa.array([1, -1, 1, 0], pa.int8()),
        }
    )
    rows = table_to_rows(table, ["a", "b"], n_bars=10)
    np.testing.assert_array_equal(rows.series, [0, 1, 1, 1])
    np.testing.assert_array_equal(rows.idx, [3, 0, 1, 5])
    np.testing.assert_array_equal(rows.val, [1, 0, -1, 1])


def test_daily_breakdown_only_days_equals_filtered_full_result(case):
    rows, close, day = case
    full = daily_breakdown(rows, close, day, CostModel())
    wanted = [0, int(day[-1]), 3]
    part = daily_breakdown(rows, close, day, CostModel(), only_days=wanted)
    want = full[full["day"].isin(wanted)].reset_index(drop=True)
    _assert_frames_equal(part, want)
    assert len(part) == 3 * rows.n_series
    assert daily_breakdown(rows, close, day, CostModel(), only_days=[]).empty


def test_regime_metrics_when_a_short_factor_is_not_positive():
    # A short's factor 1 - ret <= 0: the kernel multiplies bar by bar instead of using the
    # per-column prefix products; same figures.
    close, day, rows = jump_case(17)
    t = close.size
    regimes = _regimes(t, 3)
    got = regime_metrics(rows, close, day, regimes, ["x", "y", "z"], CostModel())
    want = ref.regime_metrics(rows, close, day, regimes, ["x", "y", "z"], ref.CostModel())
    _assert_frames_equal(got, want)
    assert got["trade_count"].sum() > 0


def test_regime_metrics_many_equals_one_call_per_classifier_bit_for_bit(case):
    # one walk for several classifiers: 4 regimes with one never seen, another run pattern,
    # a classifier that never knows its regime, and two regimes alternating every 50 bars
    rows, close, day = case
    n = close.size
    classifiers = [
        (_regimes(n, 3), ["bear", "flat", "bull", "never"]),
        (_regimes(n, 11), ["a", "b", "c"]),
        (np.full(n, NO_VALUE, dtype=np.int8), ["unknown"]),
        ((np.arange(n) // 50 % 2).astype(np.int8), ["lo", "hi"]),
    ]
    tables = regime_metrics_many(rows, close, day, [c for c, _ in classifiers], [lab for _, lab in classifiers], CostModel(3.0, 7.5))
    assert len(tables) == len(classifiers)
    for (codes, labels), table in zip(classifiers, tables):
        pd.testing.assert_frame_equal(table, regime_metrics(rows, close, day, codes, labels, CostModel(3.0, 7.5)), check_exact=True)
    assert tables[2].empty and set(tables[0]["regime"]) == {"bear", "flat", "bull"}


def test_regime_metrics_many_when_one_classifier_needs_bar_by_bar_products():
    # A short's factor 1 - ret <= 0 at bar 150: the classifier that attributes that bar to a
    # regime multiplies bar by bar, the one that does not (unknown around it) keeps the prefix
    # products; both as in separate calls, and both equal to the reference.
    close, day, rows = jump_case(17)
    n = close.size
    everywhere = _regimes(n, 3)
    everywhere[140:160] = 1
    blind = everywhere.copy()
    blind[140:160] = NO_VALUE
    labels = ["x", "y", "z"]
    tables = regime_metrics_many(rows, close, day, [everywhere, blind], [labels, labels], CostModel())
    for codes, table in zip((everywhere, blind), tables):
        pd.testing.assert_frame_equal(table, regime_metrics(rows, close, day, codes, labels, CostModel()), check_exact=True)
        _assert_frames_equal(table, ref.regime_metrics(rows, close, day, codes, labels, ref.CostModel()))
    with pytest.raises(ValueError, match="classifier 1: regime codes must be in"):
        regime_metrics_many(rows, close, day, [everywhere, np.full(n, 7, np.int8)], [labels, labels], CostModel())
    with pytest.raises(ValueError, match="pair up"):
        regime_metrics_many(rows, close, day, [everywhere], [labels, labels], CostModel())


def test_daily_breakdown_of_each_day_with_repeated_rows_and_carried_trades():
    # Rows repeating a value (no trade event), trades opened days before they close, a series
    # with no rows and one opening on bar 0: every day's rows, computed alone, equal the rows of
    # the whole computation bit for bit.
    close = random_bars(6, n=4 * BARS_PER_DAY)["close"].to_numpy()
    t = close.size
    rows = SparseRows(
        series=np.array([0, 0, 0, 0, 0, 2, 2, 2, 3, 3, 3], dtype=np.int32),
        idx=np.array([0, 5, 90, 91, 200, 10, 170, 171, 77, 78, t - 1], dtype=np.int32),
        val=np.array([1, 1, 1, -1, 0, -1, -1, 1, 1, 0, -1], dtype=np.int8),
        n_series=4,
        n_bars=t,
    )
    day = day_codes_for(t)
    for costs in COSTS:
        full = daily_breakdown(rows, close, day, costs)
        for d in range(4):
            part = daily_breakdown(rows, close, day, costs, only_days=[d])
            want = full[full["day"] == d].reset_index(drop=True)
            pd.testing.assert_frame_equal(part, want, check_exact=True)
        assert full["trades_closed"].sum() == 4  # 0: +1 -> -1 at 91, -1 -> 0 at 200; 2: -1 -> +1; 3: +1 -> 0
