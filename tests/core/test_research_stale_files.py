"""``admf traces`` into a folder that already holds a set, and ``admf metrics`` on what the index names.

A second ``write_research_traces`` into the same folder replaces the earlier set (its files
that the new set did not write are removed), and ``research_metrics`` reads only the trace files
``strategy_index.parquet`` names, refusing files that disagree on session, bar count, symbol or
timeframe, or that are missing.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from admf_assets.core.bars import bundled_sample_dir, read_bar_file, validate_bars
from admf_assets.core.grid import load_grid
from admf_assets.core.research import ResearchStoreError, research_metrics, write_research_traces, write_trace_set

BOTH = """\
symbol: SPY
timeframe: 5m
strategies:
  - {type: bollinger_bands, params: {period: [20], std_dev: [2.0]}}
  - {type: sma_crossover, params: {fast_period: [5], slow_period: [20]}}
"""
SMA = """\
symbol: SPY
timeframe: 5m
strategies:
  - {type: sma_crossover, params: {fast_period: [5], slow_period: [20]}}
"""


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Five trading days of the bundled SPY sample, all hours (extended hours included)."""
    folder = tmp_path_factory.mktemp("research_stale")
    raw = pd.read_csv(bundled_sample_dir() / "SPY_5m.csv")
    keep = raw[raw["Datetime"].str[:10].isin(["2025-06-04", "2025-06-05", "2025-06-06", "2025-06-09", "2025-06-10"])]
    bars = folder / "SPY_5m.csv"
    keep.to_csv(bars, index=False)
    both, sma = folder / "both.yaml", folder / "sma.yaml"
    both.write_text(BOTH)
    sma.write_text(SMA)
    return bars, both, sma


def signals(out):
    return out / "traces" / "SPY_5m" / "signals"


def test_second_write_replaces_the_set_and_metrics_equal_a_clean_folder(week, tmp_path):
    bars, both, sma = week
    out = tmp_path / "out"
    write_research_traces(bars, both, out, rth=False)
    assert (signals(out) / "bollinger_bands.parquet").is_file()
    write_research_traces(bars, sma, out, rth=True)
    # the earlier set's bollinger_bands file is gone; only the new set's files remain
    assert sorted(p.name for p in signals(out).iterdir()) == ["sma_crossover.parquet"]

    clean = tmp_path / "clean"
    write_research_traces(bars, sma, clean, rth=True)
    got = research_metrics(bars, out)
    expected = research_metrics(bars, clean)
    assert len(got) == 1
    pd.testing.assert_frame_equal(got, expected)
    # and the headline metrics written back into the index agree too
    pd.testing.assert_frame_equal(
        pq.read_table(out / "strategy_index.parquet").to_pandas(), pq.read_table(clean / "strategy_index.parquet").to_pandas()
    )
    # same classifiers both times: their files are rewritten, not removed
    names = sorted(p.name for p in (out / "traces" / "SPY_5m" / "classifiers").iterdir())
    assert names == sorted(p.name for p in (clean / "traces" / "SPY_5m" / "classifiers").iterdir()) and names


def test_stale_classifiers_and_other_series_are_removed_but_nothing_else(week, tmp_path):
    bars_path, both, _ = week
    grid = load_grid(both)
    bars, _ = validate_bars(read_bar_file(bars_path), source=str(bars_path), session="all")
    out = tmp_path / "out"
    write_trace_set(bars, grid.strategies, grid.classifiers, out, symbol="QQQ", timeframe="5m")
    assert list((out / "traces" / "QQQ_5m" / "classifiers").glob("*.parquet"))
    other = out / "traces" / "QQQ_5m" / "signals" / "notes.txt"
    other.write_text("mine")
    mine = out / "mine.parquet"
    shutil.copy(out / "traces" / "QQQ_5m" / "signals" / "sma_crossover.parquet", mine)
    write_trace_set(bars, grid.strategies[1:], (), out, symbol="SPY", timeframe="5m")
    assert sorted(p.relative_to(out).as_posix() for p in (out / "traces").rglob("*.parquet")) == [
        "traces/SPY_5m/signals/sma_crossover.parquet"
    ]
    assert other.read_text() == "mine" and mine.is_file()  # not trace files of this tool: kept


def test_metrics_ignore_a_trace_file_the_index_does_not_name(week, tmp_path):
    bars, both, sma = week
    allhours = tmp_path / "allhours"
    write_research_traces(bars, both, allhours, rth=False)
    out = tmp_path / "out"
    write_research_traces(bars, sma, out, rth=True)
    expected = research_metrics(bars, out)
    # a stray all-hours file sorting first, and another series' folder
    shutil.copy(signals(allhours) / "bollinger_bands.parquet", signals(out) / "aaa.parquet")
    shutil.copytree(signals(allhours), out / "traces" / "AAA_5m" / "signals")
    pd.testing.assert_frame_equal(research_metrics(bars, out), expected)


@pytest.mark.parametrize(
    ("field", "key", "value"),
    [
        ("session", b"admf.session", b"as_given"),
        ("total_bars", b"admf.total_bars", b"999"),
        ("symbol", b"admf.symbol", b"QQQ"),
        ("timeframe", b"admf.timeframe", b"15m"),
    ],
)
def test_metrics_refuse_files_that_disagree(week, tmp_path, field, key, value):
    bars, both, _ = week
    out = tmp_path / "out"
    write_research_traces(bars, both, out, rth=True)
    research_metrics(bars, out)  # consistent: fine
    sma = signals(out) / "sma_crossover.parquet"  # the index names bollinger_bands first
    table = pq.read_table(sma)
    meta = dict(table.schema.metadata)
    assert meta[key] != value
    meta[key] = value
    pq.write_table(table.replace_schema_metadata(meta), sma)
    with pytest.raises(ResearchStoreError, match=rf"sma_crossover\.parquet: {field} "):
        research_metrics(bars, out)


def test_metrics_refuse_two_sets_for_different_bars_named_by_one_index(week, tmp_path):
    # a folder pieced together from a regular-hours set and an all-hours set
    bars, both, sma = week
    a, b = tmp_path / "a", tmp_path / "b"
    write_research_traces(bars, both, a, rth=True)
    write_research_traces(bars, sma, b, rth=False)
    shutil.copy(signals(b) / "sma_crossover.parquet", signals(a) / "sma_crossover.parquet")
    with pytest.raises(ResearchStoreError, match=r"sma_crossover\.parquet: session 'as_given' differs from 'regular'"):
        research_metrics(bars, a)


def test_metrics_refuse_a_missing_indexed_file(week, tmp_path):
    bars, both, _ = week
    out = tmp_path / "out"
    write_research_traces(bars, both, out, rth=True)
    (signals(out) / "sma_crossover.parquet").unlink()
    with pytest.raises(ResearchStoreError, match=r"sma_crossover\.parquet, which does not exist"):
        research_metrics(bars, out)


def test_every_trace_file_names_the_bars_it_was_computed_on(week, tmp_path):
    from admf_assets.core.research import bars_fingerprint

    bars_path, both, _ = week
    out = tmp_path / "out"
    write_research_traces(bars_path, both, out, rth=True)
    bars, _ = validate_bars(read_bar_file(bars_path), source=str(bars_path), session="regular")
    files = sorted((out / "traces" / "SPY_5m").rglob("*.parquet"))
    assert len(files) > 2  # signals and classifiers
    for f in files:
        meta = pq.read_schema(f).metadata
        assert meta[b"admf.bars_fingerprint"] == bars_fingerprint(bars["ts"], bars["close"]).encode()
        assert meta[b"admf.bars_symbol"] == meta[b"admf.symbol"] == b"SPY"
    # the fingerprint does not depend on the timestamps' resolution or the container
    assert bars_fingerprint(bars["ts"].dt.as_unit("ns"), bars["close"].to_list()) == bars_fingerprint(bars["ts"].dt.as_unit("us"), bars["close"])


def test_metrics_refuse_bars_whose_closes_differ(week, tmp_path):
    bars_path, both, _ = week
    out = tmp_path / "out"
    write_research_traces(bars_path, both, out, rth=True)
    before = (out / "strategy_index.parquet").read_bytes()
    raw = pd.read_csv(bars_path)
    row = raw.index[raw["Datetime"].str.startswith("2025-06-05 15:00")][0]
    raw.loc[row, ["Open", "High", "Low", "Close"]] += 0.01  # one bar's prices, mid-set
    other = tmp_path / "SPY_5m.csv"
    raw.to_csv(other, index=False)
    with pytest.raises(ResearchStoreError, match=r"SPY_5m\.csv are not the bars .*bars fingerprint differs"):
        research_metrics(other, out)
    assert (out / "strategy_index.parquet").read_bytes() == before


def test_metrics_accept_a_set_written_before_the_bars_checks(week, tmp_path):
    # trace files without admf.bars_fingerprint / admf.bars_symbol: symbol, count and timestamps
    # are still checked, the rest works as before
    bars_path, both, _ = week
    out = tmp_path / "out"
    write_research_traces(bars_path, both, out, rth=True)
    expected = research_metrics(bars_path, out)
    for f in (out / "traces" / "SPY_5m" / "signals").glob("*.parquet"):
        table = pq.read_table(f)
        meta = {k: v for k, v in table.schema.metadata.items() if k not in (b"admf.bars_fingerprint", b"admf.bars_symbol")}
        pq.write_table(table.replace_schema_metadata(meta), f)
    pd.testing.assert_frame_equal(research_metrics(bars_path, out), expected)
    aapl = tmp_path / "AAPL_5m.csv"
    pd.read_csv(bars_path).assign(Symbol="AAPL").to_csv(aapl, index=False)
    with pytest.raises(ResearchStoreError, match=r"symbol AAPL in the bars file, SPY in the traces"):
        research_metrics(aapl, out)
