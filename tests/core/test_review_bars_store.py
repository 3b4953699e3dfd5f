"""Review fixes: epoch overflow in bar timestamps, StoreError for bad trace rows, UTC ``ts``
from :func:`admf_assets.core.api.prepare_bars`, and the stored bars' ``ts`` unit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from admf_assets.core import bars as bars_mod
from admf_assets.core.api import compute_signal_traces, prepare_bars
from admf_assets.core.bars import BarValidationError, normalize_bars
from admf_assets.core.config import StrategyConfig
from admf_assets.core.store import StoreError, read_bar_history, read_trace_history
from admf_assets.core.traces import write_parquet_atomic
from tests.core.reference import stored_series


def _frame(ts, source_row=None) -> pd.DataFrame:
    n = len(ts)
    df = pd.DataFrame({"ts": ts, "open": [1.0] * n, "high": [1.0] * n, "low": [1.0] * n,
                       "close": [1.0] * n, "volume": [1.0] * n})
    if source_row is not None:
        df["source_row"] = source_row
    return df


def _ts_error(ts, source_row=None) -> BarValidationError:
    with pytest.raises(BarValidationError) as info:
        normalize_bars(_frame(ts, source_row), source="f.csv", symbol="SPY")
    err = info.value
    assert err.rule == "ts_parse" and err.field == "ts" and err.source == "f.csv"
    return err


# --- 1. integer epochs that overflow int64 nanoseconds ----------------------------------------


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "ts",
    [
        np.array([1748871000, 1748871300, 50_000_000_000], dtype=np.int64),
        ["1748871000", "1748871300", "50000000000"],
        np.array([1748871000, 1748871300, -50_000_000_000], dtype=np.int64),
        np.array([1748871000.0, 1748871300.0, 50e9]),
    ],
    ids=["int64", "text", "negative", "float"],
)
def test_seconds_epoch_beyond_int64_ns_raises_naming_its_row(ts, fast, monkeypatch):
    monkeypatch.setattr(bars_mod, "_FAST_PARSE", fast)
    err = _ts_error(ts, source_row=[11, 12, 13])
    assert err.row == 13  # the source row of the offending value, not its position
    assert "50000000000" in err.detail and "out of range" in err.detail


def test_epoch_overflow_names_the_first_offending_row():
    ts = np.array([1748871000, 60_000_000_000, 1748871300, 50_000_000_000], dtype=np.int64)
    err = _ts_error(ts)
    assert err.row == 2 and "60000000000" in err.detail


def test_epochs_inside_the_range_are_unchanged():
    # the largest seconds epochs that still fit (2262) and millisecond epochs keep their values
    ts = np.array([9_000_000_000, 1748871000], dtype=np.int64)
    out = normalize_bars(_frame(ts), symbol="SPY")
    assert out["ts"].tolist() == [pd.Timestamp(9_000_000_000, unit="s", tz="UTC"),
                                  pd.Timestamp(1748871000, unit="s", tz="UTC")]
    ms = normalize_bars(_frame(["1748871000000", "1748871300000"]), symbol="SPY")
    assert ms["ts"].tolist() == [pd.Timestamp("2025-06-02 13:30", tz="UTC"), pd.Timestamp("2025-06-02 13:35", tz="UTC")]


# --- 2. text epochs that do not fit int64 at all ----------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_text_epoch_outside_int64_names_its_row_and_value(fast, monkeypatch):
    monkeypatch.setattr(bars_mod, "_FAST_PARSE", fast)
    err = _ts_error(["1748871000", "1748871300", "99999999999999999999"])
    assert err.row == 3 and "99999999999999999999" in err.detail
    err = _ts_error(["1748871000", "-99999999999999999999", "1748871300"], source_row=[5, 6, 7])
    assert err.row == 6 and "-99999999999999999999" in err.detail


# --- 3. trace rows that do not fit the file: StoreError naming the file ------------------------


def _corrupt(path, column, transform):
    pf = pq.ParquetFile(path)
    meta = dict(pf.schema_arrow.metadata or {})
    table = pf.read()
    i = table.schema.get_field_index(column)
    table = table.set_column(i, table.schema.field(i), transform(table.column(column)))
    write_parquet_atomic(table, path, kv_metadata=meta)


@pytest.mark.parametrize("use_cache", [False, True])
@pytest.mark.parametrize(
    "column, transform, message",
    [
        ("strat", lambda c: pa.array(["SPY_5m_bogus"] * len(c), type=c.type), "SPY_5m_bogus"),
        ("val", lambda c: pa.array([5] * len(c), type=c.type), "-1, 0 or"),
        ("idx", lambda c: pa.array([10_000] * len(c), type=c.type), ""),
    ],
    ids=["unknown_strat", "bad_value", "idx_out_of_day"],
)
def test_bad_trace_rows_raise_store_error_naming_the_file(tmp_path, monkeypatch, use_cache, column, transform, message):
    monkeypatch.delenv("ADMF_HISTORY_CACHE", raising=False)
    layout, history, _, _ = stored_series(tmp_path)
    assert len(read_trace_history(layout, history, use_cache=use_cache).rows) > 0  # fills the cache
    bad = layout.signals_file("SPY", "5m", history.days[-1])
    _corrupt(bad, column, transform)
    with pytest.raises(StoreError) as info:
        read_trace_history(layout, history, use_cache=use_cache)
    assert str(bad) in str(info.value) and message in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


# --- 4. ts dtypes: stored bars are microseconds; prepare_bars returns UTC ----------------------


@pytest.mark.parametrize("use_cache", [False, True])
def test_stored_bars_ts_is_utc_microseconds_as_documented(tmp_path, monkeypatch, use_cache):
    from admf_assets.core.store import BarHistory

    monkeypatch.delenv("ADMF_HISTORY_CACHE", raising=False)
    layout, _, _, _ = stored_series(tmp_path)
    for _ in range(2):  # second read hits the bars cache
        history = read_bar_history(layout, "SPY", "5m", use_cache=use_cache)
        assert history.bars["ts"].dtype == pd.DatetimeTZDtype("us", "UTC")
    assert "datetime64[us, UTC]" in BarHistory.__doc__


def _ny_bars(n=60):
    ts = pd.date_range("2025-06-02 09:30", periods=n, freq="5min", tz="America/New_York")
    close = np.linspace(100, 110, n) + np.sin(np.arange(n))
    return pd.DataFrame({"ts": ts, "open": close, "high": close + 0.5, "low": close - 0.5, "close": close, "volume": 1.0})


def test_prepare_bars_converts_an_aware_non_utc_ts_to_utc():
    ny = _ny_bars()
    out = prepare_bars(ny, symbol="SPY")
    assert str(out["ts"].dt.tz) == "UTC"
    assert (out["ts"] == ny["ts"]).all()  # same instants
    assert out["ts"].iloc[0] == pd.Timestamp("2025-06-02 13:30", tz="UTC")
    assert str(ny["ts"].dt.tz) == "America/New_York"  # the input is not modified


def test_prepare_bars_keeps_utc_input_and_traces_do_not_depend_on_the_zone():
    ny = _ny_bars()
    utc = ny.assign(ts=ny["ts"].dt.tz_convert("UTC"))
    out = prepare_bars(utc, symbol="SPY")
    pd.testing.assert_series_equal(out["ts"], utc["ts"])
    assert out["ts"].dtype == utc["ts"].dtype
    configs = [StrategyConfig("sma_crossover", {"fast_period": 3, "slow_period": 8})]
    a = compute_signal_traces(utc, configs, symbol="SPY", timeframe="5m")
    b = compute_signal_traces(ny, configs, symbol="SPY", timeframe="5m")
    assert a.num_rows > 0 and a.equals(b)
