"""The charts draw the numbers they are given (checked on the matplotlib Figures, not the PNG)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from admf_assets.lib.plots import (
    equity_figure,
    figure_png,
    heatmap_figure,
    sensitivity_figure,
    sharpe_histogram_figure,
)


def test_sensitivity_curve_plots_mean_sharpe_by_value_with_a_one_std_band():
    frames = {
        "period": pd.DataFrame({"parameter_value": [10.0, 20.0, 30.0], "avg_sharpe": [0.5, 1.2, -0.3], "std_sharpe": [0.1, 0.2, np.nan]}),
        "std_dev": pd.DataFrame({"parameter_value": [1.5, 2.0], "avg_sharpe": [0.0, 0.7], "std_sharpe": [0.3, 0.3]}),
    }
    fig = sensitivity_figure(frames, "bollinger_bands")
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == ["period", "std_dev"]
    line = axes[0].lines[0]
    assert list(line.get_xdata()) == [10.0, 20.0, 30.0] and list(line.get_ydata()) == [0.5, 1.2, -0.3]
    band = axes[0].collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(1.4) and band[:, 1].min() == pytest.approx(-0.3)  # NaN std -> no band
    # one Sharpe-ratio scale for every panel, covering both panels' curves and bands
    assert axes[0].get_ylim() == axes[1].get_ylim() and axes[0].get_ylim()[0] < -0.3 and axes[0].get_ylim()[1] > 1.4
    assert axes[0].get_ylabel() and not axes[1].get_ylabel()
    assert figure_png(fig).startswith(b"\x89PNG")


def test_heatmap_cells_are_the_mean_sharpe_of_each_parameter_pair():
    grid = pd.DataFrame({"value_a": [10, 10, 20, 20], "value_b": [1.5, 2.0, 1.5, 2.0], "avg_sharpe": [0.1, -0.4, 0.9, 0.2]})
    fig = heatmap_figure(grid, "period", "std_dev", "bollinger_bands")
    image = fig.axes[0].images[0].get_array()
    assert np.asarray(image).tolist() == [[0.1, -0.4], [0.9, 0.2]]  # rows value_a ascending, columns value_b
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1.5", "2"]
    assert fig.axes[0].images[0].get_clim() == (-0.9, 0.9)  # symmetric around 0


def test_equity_figure_draws_the_curve_and_its_drawdown():
    days = [dt.date(2025, 6, d) for d in (2, 3, 4, 5)]
    equity = pd.Series([1.0, 1.1, 0.99, 1.045], index=days)
    fig = equity_figure(equity, "x")
    top, bottom = fig.axes
    assert list(top.lines[0].get_ydata()) == [1.0, 1.1, 0.99, 1.045]
    dd = bottom.collections[0].get_paths()[0].vertices[:, 1]
    assert dd.min() == pytest.approx(0.99 / 1.1 - 1)  # 10% off the 1.1 peak


def test_histogram_counts_finite_sharpe_ratios_and_marks_sr0():
    sharpe = np.array([0.1, 0.2, np.nan, 1.5, -0.5, np.inf])
    fig = sharpe_histogram_figure(sharpe, 1.2, "SPY_5m")
    ax = fig.axes[0]
    # one stepfilled polygon: vertex 2i + 1 is the top left corner of bin i (40 bins)
    (poly,) = ax.patches
    heights = poly.get_xy()[1:81:2, 1]
    assert len(heights) == 40 and heights.sum() == 4
    assert list(ax.lines[0].get_xdata()) == [1.2, 1.2]


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        sensitivity_figure({}, "t")
    with pytest.raises(ValueError):
        equity_figure(pd.Series(dtype=float), "t")
