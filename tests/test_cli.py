"""``admf traces`` and ``admf metrics``: a researcher's quick test outside Dagster."""

from __future__ import annotations


import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from admf_assets.cli.main import app
from admf_assets.core.api import compute_signal_traces, trace_metrics
from admf_assets.core.bars import bundled_sample_dir, read_bar_file, validate_bars
from admf_assets.core.grid import load_grid

runner = CliRunner()

GRID = """\
symbol: SPY
timeframe: 5m
strategies:
  - {type: rsi_bands, params: {period: [7, 14], oversold: 30, overbought: [70, 80]}}
  - {type: bollinger_bands, params: {period: {start: 10, stop: 30, step: 10}, std_dev: 2.0}}
  - {type: sma_crossover, params: {fast_period: [5, 10], slow_period: [20, 10]}}
"""


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Five trading days of the bundled SPY sample, all hours, as a CSV in vendor spelling."""
    folder = tmp_path_factory.mktemp("cli")
    raw = pd.read_csv(bundled_sample_dir() / "SPY_5m.csv")
    days = raw["Datetime"].str[:10]
    keep = raw[days.isin(["2025-06-04", "2025-06-05", "2025-06-06", "2025-06-09", "2025-06-10"])]
    path = folder / "SPY_5m.csv"
    keep.to_csv(path, index=False)
    grid = folder / "grid.yaml"
    grid.write_text(GRID)
    return folder, path, grid


def test_traces_then_metrics(week):
    folder, bars_path, grid_path = week
    out = folder / "out"
    result = runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(grid_path), "--out", str(out), "--rth"])
    assert result.exit_code == 0, result.output
    grid = load_grid(grid_path)
    assert len(grid.strategies) == 4 + 3 + 3  # sma (10, 10) is skipped: fast must be < slow
    files = sorted(p.name for p in (out / "traces" / "SPY_5m" / "signals").glob("*.parquet"))
    assert files == ["bollinger_bands.parquet", "rsi_bands.parquet", "sma_crossover.parquet"]
    index = pq.read_table(out / "strategy_index.parquet").to_pandas()
    assert len(index) == len(grid.strategies)
    classifier_files = sorted(p.name.split("_")[0] for p in (out / "traces" / "SPY_5m" / "classifiers").glob("*.parquet"))
    assert classifier_files == sorted(c.classifier_type.split("_")[0] for c in grid.classifiers)

    # The files equal the Python API on the same bars (RTH only, as --rth asked).
    bars, _ = validate_bars(read_bar_file(bars_path), source=str(bars_path), session="regular")
    assert len(bars) == 5 * 78
    api = compute_signal_traces(bars, grid.strategies, symbol="SPY", timeframe="5m").to_pandas()
    written = pd.concat([pq.read_table(p).to_pandas() for p in (out / "traces" / "SPY_5m" / "signals").glob("*.parquet")])
    key = ["strat", "idx"]
    pd.testing.assert_frame_equal(
        written.sort_values(key).reset_index(drop=True)[["idx", "val", "strat", "px"]],
        api.sort_values(key).reset_index(drop=True)[["idx", "val", "strat", "px"]],
    )

    result = runner.invoke(app, ["metrics", "--bars", str(bars_path), "--traces", str(out), "--output", str(folder / "m.csv")])
    assert result.exit_code == 0, result.output
    assert "strategies, commission 0.5 bps" in result.output
    table = pd.read_csv(folder / "m.csv")
    expected = trace_metrics(compute_signal_traces(bars, grid.strategies, symbol="SPY", timeframe="5m"), bars)
    merged = table.merge(expected, on="strategy_id", suffixes=("", "_api"))
    assert len(merged) == len(expected) > 0
    pd.testing.assert_series_equal(merged["sharpe_ratio"], merged["sharpe_ratio_api"], check_names=False)
    # `admf traces` had already written the same headline metrics (default costs) into the index
    at_trace_time = index.merge(expected, on="strategy_id", suffixes=("", "_api"))
    assert len(at_trace_time) == len(expected)
    for col in ("sharpe_ratio", "total_return", "max_drawdown", "total_trades"):
        pd.testing.assert_series_equal(at_trace_time[col], at_trace_time[f"{col}_api"], check_names=False, check_dtype=False)
    # the index now carries the headline metrics and answers a seed-001 query
    with duckdb.connect() as con:
        con.execute("SET file_search_path = ?", [str(out)])
        n = con.execute("SELECT count(*) FROM 'strategy_index.parquet' WHERE sharpe_ratio IS NOT NULL").fetchone()[0]
        rsi = con.execute("SELECT count(*) FROM 'strategy_index.parquet' WHERE strategy_type = 'rsi_bands' AND period = 14").fetchone()[0]
    assert n == len(expected) and rsi == 2


def test_metrics_refuses_other_bars(week, tmp_path):
    folder, bars_path, grid_path = week
    out = tmp_path / "out"
    assert runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(grid_path), "--out", str(out)]).exit_code == 0
    other = tmp_path / "SPY_5m.csv"
    pd.read_csv(bars_path).head(500).to_csv(other, index=False)
    result = runner.invoke(app, ["metrics", "--bars", str(other), "--traces", str(out)])
    assert result.exit_code == 3
    assert "bars" in result.output


def test_bad_grid_and_bad_bars_exit_2_with_a_named_error(week, tmp_path):
    folder, bars_path, _ = week
    bad_grid = tmp_path / "bad.yaml"
    bad_grid.write_text("strategies:\n  - {type: rsi_bands, params: {period: 0}}\n")
    result = runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(bad_grid), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "period" in result.output and "bad.yaml" in result.output

    raw = pd.read_csv(bars_path)
    raw.loc[200, "Low"] = raw.loc[200, "Open"] + 5.0  # low above open
    bad_bars = tmp_path / "SPY_5m.csv"
    raw.to_csv(bad_bars, index=False)
    good_grid = folder / "grid.yaml"
    result = runner.invoke(app, ["traces", "--bars", str(bad_bars), "--grid", str(good_grid), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "row 201" in result.output and "low_le_open_close" in result.output


def test_trace_set_costs_and_files_equal_one_type_at_a_time(week, tmp_path):
    # write_trace_set evaluates every type at once and writes on threads: each type's file equals
    # that type evaluated alone, and the index's headline metrics follow the costs given (NULL
    # without costs)
    from admf_assets.core.metrics import CostModel
    from admf_assets.core.research import write_trace_set

    _, bars_path, grid_path = week
    grid = load_grid(grid_path)
    bars, _ = validate_bars(read_bar_file(bars_path), source=str(bars_path), session="all")
    costly = write_trace_set(bars, grid.strategies, (), tmp_path / "a", symbol="SPY", timeframe="5m", costs=CostModel(2.0, 3.0), threads=2)
    assert costly["files"] == 3 and costly["strategies"] == len(grid.strategies)
    index = pq.read_table(tmp_path / "a" / "strategy_index.parquet").to_pandas()
    expected = trace_metrics(compute_signal_traces(bars, grid.strategies, symbol="SPY", timeframe="5m"), bars, CostModel(2.0, 3.0))
    merged = index.merge(expected, on="strategy_id", suffixes=("", "_api"))
    assert len(merged) == len(grid.strategies)
    pd.testing.assert_series_equal(merged["sharpe_ratio"], merged["sharpe_ratio_api"], check_names=False)
    for stype in {c.strategy_type for c in grid.strategies}:
        alone = compute_signal_traces(bars, [c for c in grid.strategies if c.strategy_type == stype], symbol="SPY", timeframe="5m")
        written = pq.read_table(tmp_path / "a" / "traces" / "SPY_5m" / "signals" / f"{stype}.parquet")
        assert written.select(["idx", "val", "strat", "px"]).equals(alone.select(["idx", "val", "strat", "px"])), stype
    write_trace_set(bars, grid.strategies, (), tmp_path / "b", symbol="SPY", timeframe="5m", costs=None)
    assert pq.read_table(tmp_path / "b" / "strategy_index.parquet").to_pandas()["sharpe_ratio"].isna().all()


def test_trace_set_keeps_the_old_index_when_a_trace_file_fails(week, tmp_path):
    # the index is renamed into place only after every trace file is written: a failing file
    # leaves the previous index (and no temp file) behind
    from admf_assets.core.research import write_trace_set

    _, bars_path, grid_path = week
    grid = load_grid(grid_path)
    bars, _ = validate_bars(read_bar_file(bars_path), source=str(bars_path), session="all")
    out = tmp_path / "o"
    write_trace_set(bars, grid.strategies[:2], (), out, symbol="SPY", timeframe="5m")
    before = pq.read_table(out / "strategy_index.parquet")
    blocked = out / "traces" / "SPY_5m" / "signals" / "bollinger_bands.parquet"
    blocked.mkdir(parents=True)  # a folder where the bollinger_bands file must go
    with pytest.raises(OSError):
        write_trace_set(bars, grid.strategies, (), out, symbol="SPY", timeframe="5m")
    assert pq.read_table(out / "strategy_index.parquet").equals(before)
    assert [p.name for p in out.rglob("*.tmp")] == []


# --- the bars of `admf metrics` must be the bars the traces were computed on -----------------

SMALL_GRID = """\
timeframe: 5m
strategies:
  - {type: sma_crossover, params: {fast_period: [5], slow_period: [20]}}
  - {type: rsi_bands, params: {period: [14], oversold: 30, overbought: 70}}
"""


def test_metrics_refuses_another_symbols_bars_with_the_same_bar_count(tmp_path):
    # the tester's case: QQQ traces, AAPL bars; both samples have 4,644 bars
    sample = bundled_sample_dir()
    def rth_bars(name):
        return len(validate_bars(read_bar_file(sample / name), source=name, session="regular")[0])

    assert rth_bars("QQQ_5m.csv") == rth_bars("AAPL_5m.csv") == 4644
    grid = tmp_path / "grid.yaml"
    grid.write_text(SMALL_GRID)
    out = tmp_path / "out"
    traced = runner.invoke(app, ["traces", "--bars", str(sample / "QQQ_5m.csv"), "--grid", str(grid), "--out", str(out), "--rth"])
    assert traced.exit_code == 0, traced.output
    before = (out / "strategy_index.parquet").read_bytes()
    result = runner.invoke(app, ["metrics", "--bars", str(sample / "AAPL_5m.csv"), "--traces", str(out)])
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: ") and "Traceback" not in result.output
    assert "AAPL_5m.csv are not the bars the traces" in message and "symbol AAPL in the bars file, QQQ in the traces" in message
    assert (out / "strategy_index.parquet").read_bytes() == before  # not overwritten with wrong metrics
    assert runner.invoke(app, ["metrics", "--bars", str(sample / "QQQ_5m.csv"), "--traces", str(out)]).exit_code == 0


def test_metrics_refuses_same_symbol_and_count_but_other_prices(week, tmp_path):
    # another file spelled SPY with as many bars on the same timestamps: only the closes differ
    folder, bars_path, grid_path = week
    out = tmp_path / "out"
    assert runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(grid_path), "--out", str(out)]).exit_code == 0
    before = (out / "strategy_index.parquet").read_bytes()
    other = pd.read_csv(bars_path)
    for col in ("Open", "High", "Low", "Close"):
        other[col] = other[col] * 1.01
    fake = tmp_path / "SPY_5m.csv"
    other.to_csv(fake, index=False)
    result = runner.invoke(app, ["metrics", "--bars", str(fake), "--traces", str(out)])
    assert result.exit_code == 3, result.output
    assert "bars fingerprint differs" in " ".join(result.output.split())
    assert (out / "strategy_index.parquet").read_bytes() == before


def test_metrics_refuses_same_count_on_other_days(week, tmp_path):
    folder, bars_path, grid_path = week
    out = tmp_path / "out"
    assert runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(grid_path), "--out", str(out), "--rth"]).exit_code == 0
    raw = pd.read_csv(bundled_sample_dir() / "SPY_5m.csv")
    later = raw[raw["Datetime"].str[:10].isin(["2025-06-11", "2025-06-12", "2025-06-13", "2025-06-16", "2025-06-17"])]
    moved = tmp_path / "SPY_5m.csv"
    later.to_csv(moved, index=False)
    result = runner.invoke(app, ["metrics", "--bars", str(moved), "--traces", str(out)])
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert "first bar at 2025-06-11T13:30:00+00:00 in the bars file, at 2025-06-04T13:30:00+00:00 in the traces" in message


# --- `admf traces`: the symbol the bars file names --------------------------------------------


def test_traces_refuses_a_grid_symbol_the_bars_do_not_have(week, tmp_path):
    # the tester's case: a grid for QQQ on SPY bars (Symbol column = SPY)
    folder, bars_path, _ = week
    qqq = tmp_path / "qqq.yaml"
    qqq.write_text(GRID.replace("symbol: SPY", "symbol: QQQ"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(qqq), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: ") and len(result.output.strip().splitlines()) <= 3  # one (wrapped) line
    assert "qqq.yaml names symbol QQQ" in message and "holds SPY bars (its symbol column)" in message
    assert not out.exists()
    # --symbol cannot relabel a symbol column either
    result = runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(folder / "grid.yaml"), "--out", str(out), "--symbol", "QQQ"])
    assert result.exit_code == 2, result.output
    assert "--symbol QQQ but" in result.output and "holds SPY bars" in " ".join(result.output.split())
    assert not out.exists()
    # an explicit --symbol equal to the file's wins over the grid's (its documented default)
    result = runner.invoke(app, ["traces", "--bars", str(bars_path), "--grid", str(qqq), "--out", str(out), "--symbol", "SPY"])
    assert result.exit_code == 0, result.output
    assert (out / "traces" / "SPY_5m" / "signals").is_dir()


def test_traces_without_a_symbol_column_take_the_file_name_or_symbol(week, tmp_path):
    folder, bars_path, _ = week
    bare = tmp_path / "SPY_5m.csv"
    pd.read_csv(bars_path).drop(columns=["Symbol"]).to_csv(bare, index=False)
    qqq = tmp_path / "qqq.yaml"
    qqq.write_text(GRID.replace("symbol: SPY", "symbol: QQQ"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["traces", "--bars", str(bare), "--grid", str(qqq), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "names symbol QQQ" in message and "holds SPY bars (its file name" in message and "--symbol QQQ" in message
    # an explicit --symbol names the bars of a file without a symbol column
    result = runner.invoke(app, ["traces", "--bars", str(bare), "--grid", str(qqq), "--out", str(out), "--symbol", "QQQ"])
    assert result.exit_code == 0, result.output
    assert (out / "traces" / "QQQ_5m" / "signals").is_dir()
    assert pq.read_schema(out / "traces" / "QQQ_5m" / "signals" / "rsi_bands.parquet").metadata[b"admf.bars_symbol"] == b"SPY"
    # and `admf metrics` accepts that same file again
    assert runner.invoke(app, ["metrics", "--bars", str(bare), "--traces", str(out)]).exit_code == 0
