"""Tests for admf_assets.core.bars: reading, sessions, validation, discovery.

Uses only the bundled Yahoo sample (admf_assets/sample_data/yahoo_5m_2025) and small files
written to tmp_path; nothing here needs ../shared at test time.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from admf_assets.core import bars as B
from admf_assets.core.bars import BarValidationError

HEADER = "timestamp,open,high,low,close,volume"
# 2025-06-04 is a Wednesday; 13:30 UTC = 09:30 EDT, the regular open.
GOOD = [
    "2025-06-04 13:30:00+00:00,100.0,101.0,99.0,100.5,1000",
    "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,2000",
    "2025-06-04 13:40:00+00:00,101.0,101.2,100.1,100.2,1500",
    "2025-06-04 13:45:00+00:00,100.2,100.9,100.0,100.8,1200",
]


def write_csv(tmp_path: Path, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def ts_utc(*values: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(values), utc=True))


@pytest.fixture(scope="module")
def spy_raw() -> pd.DataFrame:
    return B.read_bar_file(B.bundled_sample_dir() / "SPY_5m.csv")


@pytest.fixture(scope="module")
def spy_valid(spy_raw):
    return B.validate_bars(spy_raw, source="SPY_5m.csv")


# ------------------------------------------------------------------------------------------
# Bundled sample
# ------------------------------------------------------------------------------------------


def test_bundled_sample_dir_holds_the_five_files():
    names = sorted(p.name for p in B.bundled_sample_dir().glob("*.csv"))
    assert names == ["AAPL_5m.csv", "GLD_5m.csv", "MSFT_5m.csv", "QQQ_5m.csv", "SPY_5m.csv"]


def test_read_spy_sample_layout_and_values(spy_raw):
    df = spy_raw
    assert list(df.columns) == list(B.BAR_COLUMNS)
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert df["symbol"].dtype == object
    for col in ("open", "high", "low", "close", "volume"):
        assert df[col].dtype == np.float64
    assert df["source_row"].dtype == np.int64
    assert len(df) == 11_301
    assert (df["symbol"] == "SPY").all()
    assert df["ts"].iloc[0] == pd.Timestamp("2025-06-04 08:00:00", tz="UTC")
    assert df["ts"].iloc[-1] == pd.Timestamp("2025-08-28 23:55:00", tz="UTC")
    assert df["source_row"].tolist() == list(range(1, 11_302))
    # first data row: 2025-06-04 08:00:00+00:00,596.97,597.3,595.8,597.26,0,SPY
    assert df.loc[0, ["open", "high", "low", "close", "volume"]].tolist() == [596.97, 597.3, 595.8, 597.26, 0.0]
    # float32 artifacts are kept bit-exact (no rounding)
    row = df.loc[df["ts"] == pd.Timestamp("2025-06-04 13:30", tz="UTC")].iloc[0]
    assert row["open"] == 596.9600219726562
    assert B.infer_timeframe(df["ts"]) == "5m"


def test_validate_spy_sample_regular_session(spy_raw, spy_valid):
    kept, rep = spy_valid
    assert rep.rows == 11_301
    assert rep.sessions == 60
    assert rep.rows_in_session == len(kept) == 59 * 78 + 40
    assert rep.dropped_outside_session == 11_301 - len(kept)
    assert rep.first_ts == pd.Timestamp("2025-06-04 13:30", tz="UTC")
    assert rep.last_ts == pd.Timestamp("2025-08-28 19:55", tz="UTC")
    assert rep.rule_counts == {rule: 0 for rule in B.RULES}
    assert kept["ts"].is_monotonic_increasing and kept["ts"].is_unique
    assert kept.index.equals(pd.RangeIndex(len(kept)))

    local = kept["ts"].dt.tz_convert("America/New_York")
    minutes = local.dt.hour * 60 + local.dt.minute
    assert minutes.min() == 9 * 60 + 30
    assert minutes.max() == 15 * 60 + 55  # no 16:00 bar, no post-market
    per_day = pd.Series(B.trading_dates(kept["ts"])).value_counts()
    assert len(per_day) == 60
    half_day = np.datetime64("2025-07-03")
    # 2025-07-03 closes at 13:00 ET: 09:30-12:55 would be 42 bars, but Yahoo has no 12:50 and 12:55 bars
    assert per_day[half_day] == 40
    assert (per_day.drop(half_day) == 78).all()
    assert minutes[local.dt.strftime("%Y-%m-%d") == "2025-07-03"].max() == 12 * 60 + 45


def test_spy_sample_quirks_match_data_readme(spy_raw, spy_valid):
    kept, rep = spy_valid
    local = spy_raw["ts"].dt.tz_convert("America/New_York")
    minutes = local.dt.hour * 60 + local.dt.minute
    clock_rth = (minutes >= 570) & (minutes < 960)
    # data README: 76 bars in the 09:30-16:00 clock window on the 2025-07-03 half-day
    assert int((clock_rth & (local.dt.strftime("%Y-%m-%d") == "2025-07-03")).sum()) == 76
    # every extended-hours row has volume 0 and none of them is kept
    mask = B.session_mask(spy_raw["ts"])
    assert (spy_raw.loc[~clock_rth, "volume"] == 0).all()
    assert not (mask & ~clock_rth.to_numpy()).any()
    # zero-volume bars inside 09:30-16:00: 36 on the half-day after 13:00 (dropped) + 3 kept
    assert int(((spy_raw["volume"] == 0) & clock_rth).sum()) == 39
    assert rep.zero_volume_bars == 3 == int((kept["volume"] == 0).sum())
    # the spurious extended-hours print from the data README is dropped
    spurious = spy_raw["ts"] == pd.Timestamp("2025-06-20 21:55", tz="UTC")  # 17:55 ET
    assert spy_raw.loc[spurious, "low"].iloc[0] < 556
    assert not mask[spurious.to_numpy()].any()
    # the 16:00 ET bar exists in the file but is never kept
    sixteen = (local.dt.hour == 16) & (local.dt.minute == 0)
    assert int(sixteen.sum()) == 60 and not mask[sixteen.to_numpy()].any()


@pytest.mark.parametrize("symbol", ["QQQ", "AAPL", "MSFT", "GLD"])
def test_other_sample_files_validate(symbol):
    kept, rep = B.validate_bars(B.read_bar_file(B.bundled_sample_dir() / f"{symbol}_5m.csv"), source=symbol)
    assert rep.sessions == 60
    assert (kept["symbol"] == symbol).all()
    assert rep.rows_in_session in (59 * 78 + 42, 59 * 78 + 40)


def test_session_all_keeps_everything(spy_raw):
    kept, rep = B.validate_bars(spy_raw, source="SPY_5m.csv", session="all")
    assert len(kept) == rep.rows_in_session == 11_301
    assert rep.dropped_outside_session == 0


# ------------------------------------------------------------------------------------------
# Sessions and dates
# ------------------------------------------------------------------------------------------


def test_session_mask_boundaries():
    ts = ts_utc(
        "2025-06-04 13:25",  # 09:25 EDT pre-market
        "2025-06-04 13:30",  # open
        "2025-06-04 19:55",  # last regular bar
        "2025-06-04 20:00",  # 16:00 bar, after the close
        "2025-07-03 16:55",  # 12:55 EDT on a half-day
        "2025-07-03 17:00",  # 13:00 EDT, half-day close
        "2025-07-04 14:00",  # Independence Day
        "2025-06-07 14:00",  # Saturday
        "2025-01-06 14:30",  # 09:30 EST (winter)
        "2025-01-06 13:30",  # 08:30 EST
        "2025-01-09 15:00",  # national day of mourning, NYSE closed
    )
    expected = [False, True, True, False, True, False, False, False, True, False, False]
    assert B.session_mask(ts).tolist() == expected
    assert B.session_mask(ts, session="all").all()
    # naive input is UTC; numpy input works too
    naive = ts.tz_localize(None).to_numpy()
    assert B.session_mask(naive).tolist() == expected
    with pytest.raises(ValueError, match="unknown session"):
        B.session_mask(ts, session="extended")


def test_trading_dates_use_new_york_local_date():
    ts = ts_utc("2025-06-05 00:30", "2025-06-04 13:30", "2025-01-06 04:59")
    out = B.trading_dates(ts)
    assert out.dtype == np.dtype("datetime64[D]")
    assert out.tolist() == [np.datetime64("2025-06-04", "D").item(), np.datetime64("2025-06-04", "D").item(),
                            np.datetime64("2025-01-05", "D").item()]


def test_infer_timeframe():
    base = pd.Timestamp("2025-06-04 13:30", tz="UTC")
    assert B.infer_timeframe(base + pd.to_timedelta(np.arange(10), unit="min")) == "1m"
    assert B.infer_timeframe(base + pd.to_timedelta(np.arange(10) * 15, unit="min")) == "15m"
    assert B.infer_timeframe(base + pd.to_timedelta(np.arange(10), unit="h")) == "1h"
    days = pd.bdate_range("2025-03-03", "2025-03-31", tz="UTC") + pd.Timedelta(hours=13, minutes=30)
    assert B.infer_timeframe(days) == "1d"
    with pytest.raises(ValueError):
        B.infer_timeframe(base + pd.to_timedelta(np.arange(10) * 2, unit="min"))
    with pytest.raises(ValueError):
        B.infer_timeframe([base])


# ------------------------------------------------------------------------------------------
# Column spellings and timestamp formats
# ------------------------------------------------------------------------------------------


def test_lowercase_timestamp_csv_symbol_from_filename(tmp_path):
    df = B.read_bar_file(write_csv(tmp_path, "SPY_5m.csv", GOOD))
    assert df["symbol"].tolist() == ["SPY"] * 4
    assert df["ts"].iloc[0] == pd.Timestamp("2025-06-04 13:30", tz="UTC")
    assert df["close"].tolist() == [100.5, 101.0, 100.2, 100.8]
    assert B.read_bar_file(tmp_path / "SPY_5m.csv", symbol="XYZ")["symbol"].iloc[0] == "XYZ"


def test_yahoo_style_datetime_capitalised_with_symbol_column(tmp_path):
    lines = [
        "2025-06-04 13:30:00+00:00,596.96,597.6,596.78,597.55,2860540,NA",
        "2025-06-04 13:35:00+00:00,597.58,597.91,597.41,597.77,1301964,NA",
    ]
    path = write_csv(tmp_path, "foo_5m.csv", lines, header="Datetime,Open,High,Low,Close,Volume,Symbol")
    df = B.read_bar_file(path, symbol="IGNORED")
    assert df["symbol"].tolist() == ["NA", "NA"]  # the column wins; ticker "NA" is not a missing value
    assert df["volume"].tolist() == [2860540.0, 1301964.0]


def test_unnamed_index_and_date_only_daily_bars(tmp_path):
    lines = [
        "0,2024-07-31,552.0,554.1,550.5,550.81,60000000",
        "1,2024-08-01,552.5,554.87,539.43,543.01,76000000",
        "2,2024-01-02,470.0,473.0,469.0,472.6,100",  # winter date: 09:30 EST = 14:30 UTC
    ]
    df = B.read_bar_file(write_csv(tmp_path, "SPY_1d.csv", lines, header=",Datetime,Open,High,Low,Close,Volume"))
    assert df["ts"].tolist() == list(ts_utc("2024-07-31 13:30", "2024-08-01 13:30", "2024-01-02 14:30"))
    assert [str(d) for d in B.trading_dates(df["ts"])] == ["2024-07-31", "2024-08-01", "2024-01-02"]
    assert B.session_mask(df["ts"]).all()  # daily bars stamped at the open pass the regular filter


def test_epoch_milliseconds_polygon_short_names(tmp_path):
    ms = [int(pd.Timestamp("2025-06-04 13:30", tz="UTC").value // 1_000_000) + k * 300_000 for k in range(3)]
    lines = [f"{m},1,2,0.5,1.5,10,1.2,7" for m in ms]
    df = B.read_bar_file(write_csv(tmp_path, "XLK_5m.csv", lines, header="t,o,h,l,c,v,vw,n"))
    assert df["ts"].tolist() == list(ts_utc("2025-06-04 13:30", "2025-06-04 13:35", "2025-06-04 13:40"))
    assert df["symbol"].iloc[0] == "XLK"


def test_epoch_seconds_in_parquet(tmp_path):
    secs = np.array([1749043800, 1749044100], dtype=np.int64)  # 2025-06-04 13:30 / 13:35 UTC
    pd.DataFrame({"time": secs, "open": [1.0, 1.0], "high": [2.0, 2.0], "low": [0.5, 0.5],
                  "close": [1.0, 1.0], "volume": [1, 2]}).to_parquet(tmp_path / "AAA_5m.parquet")
    df = B.read_bar_file(tmp_path / "AAA_5m.parquet")
    assert df["ts"].tolist() == list(ts_utc("2025-06-04 13:30", "2025-06-04 13:35"))


def test_naive_strings_are_utc_polygon_layout(tmp_path):
    lines = [
        "2023-09-27 13:30:00,XLK,162.58,162.9,162.4,162.7,604.0,162.57,4",
        "2023-09-27 13:35:00,XLK,162.7,162.8,162.6,162.7,300.0,162.68,5",
    ]
    path = write_csv(tmp_path, "XLK_5m.csv", lines, header="datetime,symbol,open,high,low,close,volume,vwap,transactions")
    df = B.read_bar_file(path)
    assert df["ts"].tolist() == list(ts_utc("2023-09-27 13:30", "2023-09-27 13:35"))
    assert list(df.columns) == list(B.BAR_COLUMNS)


def test_offsets_convert_to_utc_and_mixed_naive_aware(tmp_path):
    lines = [
        "2025-06-04T17:30:00+02:00,1,2,0.5,1,1",  # 15:30 UTC
        "2025-06-04 15:35:00,1,2,0.5,1,1",  # naive -> UTC (must not inherit +02:00)
        "2025-06-04T11:40:00-04:00,1,2,0.5,1,1",  # 15:40 UTC
        "2025-06-04T15:45:00Z,1,2,0.5,1,1",
    ]
    df = B.read_bar_file(write_csv(tmp_path, "SPY_5m.csv", lines))
    assert df["ts"].tolist() == list(
        ts_utc("2025-06-04 15:30", "2025-06-04 15:35", "2025-06-04 15:40", "2025-06-04 15:45")
    )


def test_parquet_tz_aware_new_york_and_datetime_index(tmp_path):
    local = pd.DatetimeIndex(["2025-06-04 09:30", "2025-06-04 09:35"]).tz_localize("America/New_York")
    frame = pd.DataFrame({"Open": [1.0, 1.1], "High": [1.2, 1.2], "Low": [0.9, 1.0], "Close": [1.1, 1.15],
                          "Volume": [10, 20]}, index=local.rename("timestamp"))
    frame.to_parquet(tmp_path / "QQQ_5m.parquet")
    df = B.read_bar_file(tmp_path / "QQQ_5m.parquet")
    assert df["ts"].tolist() == list(ts_utc("2025-06-04 13:30", "2025-06-04 13:35"))
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    # in memory: unnamed DatetimeIndex, symbol argument, re-normalising is harmless
    mem = B.normalize_bars(frame.rename_axis(None), symbol="QQQ")
    assert mem["ts"].tolist() == df["ts"].tolist()
    again = B.normalize_bars(mem)
    pd.testing.assert_frame_equal(again, mem)


def test_normalize_without_symbol_fails():
    frame = pd.DataFrame({"ts": ["2025-06-04 13:30"], "o": [1], "h": [1], "l": [1], "c": [1], "v": [1]})
    with pytest.raises(BarValidationError) as ei:
        B.normalize_bars(frame, source="mem")
    assert ei.value.rule == "symbol_missing"


# ------------------------------------------------------------------------------------------
# Rejected files: each error names file, row, rule and field
# ------------------------------------------------------------------------------------------


def _reject(tmp_path, lines, *, header=HEADER, name="BAD_5m.csv"):
    path = write_csv(tmp_path, name, lines, header=header)
    with pytest.raises(BarValidationError) as ei:
        B.validate_bars(B.read_bar_file(path), source=str(path))
    err = ei.value
    assert name in str(err)
    assert err.source == str(path)
    return err


@pytest.mark.parametrize(
    ("row", "bad_line", "rule", "field"),
    [
        (3, "2025-06-04 13:30:00+00:00,100.0,101.0,99.0,100.5,1000", "ts_sorted", "ts"),
        (3, "2025-06-04 13:35:00+00:00,100.0,101.0,99.0,100.5,1000", "ts_unique", "ts"),
        (2, "2025-06-04 13:35:00+00:00,-100.5,101.5,100.0,101.0,2000", "price_positive", "open"),
        (2, "2025-06-04 13:35:00+00:00,100.5,101.0,100.0,101.2,2000", "high_ge_open_close", "high"),
        (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.6,101.0,2000", "low_le_open_close", "low"),
        (2, "2025-06-04 13:35:00+00:00,100.5,,100.0,101.0,2000", "no_nan", "high"),
        (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,NaN", "no_nan", "volume"),
        (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,-5", "volume_nonnegative", "volume"),
        (2, "not-a-time,100.5,101.5,100.0,101.0,2000", "ts_parse", "ts"),
        (2, "2025-06-04 13:35:00+00:00,100.5,abc,100.0,101.0,2000", "numeric", "high"),
    ],
)
def test_bad_bar_rejected(tmp_path, row, bad_line, rule, field):
    lines = list(GOOD)
    lines[row - 1] = bad_line
    err = _reject(tmp_path, lines)
    assert (err.row, err.rule, err.field) == (row, rule, field)
    assert f"row {row} (field {field}): rule {rule} violated" in str(err)


def test_error_message_format_and_pickle(tmp_path):
    lines = list(GOOD)
    lines[2] = "2025-06-04 13:40:00+00:00,101.0,100.0,99.0,101.2,1500"
    err = _reject(tmp_path, lines, name="SPY_5m.csv")
    assert str(err) == (
        f"{tmp_path / 'SPY_5m.csv'}: row 3 (field high): rule high_ge_open_close violated: "
        "high 100.0 < max(open, close) 101.2"
    )
    back = pickle.loads(pickle.dumps(err))
    assert (back.source, back.row, back.rule, back.field, str(back)) == (
        err.source, err.row, err.rule, err.field, str(err))


def test_first_violation_in_row_order_wins(tmp_path):
    lines = list(GOOD)
    lines[1] = "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,-1"  # row 2: volume
    lines[3] = "2025-06-04 13:45:00+00:00,-1,100.9,100.0,100.8,1200"  # row 4: price
    err = _reject(tmp_path, lines)
    assert (err.row, err.rule) == (2, "volume_nonnegative")


def test_missing_column_named(tmp_path):
    err = _reject(tmp_path, ["2025-06-04 13:30:00+00:00,1,2,0.5,1"], header="timestamp,open,high,low,close")
    assert (err.rule, err.field, err.row) == ("missing_column", "volume", None)
    assert "BAD_5m.csv: (field volume): rule missing_column violated" in str(err)


def test_out_of_session_bad_prints_tolerated_but_counted(tmp_path):
    pre = "2025-06-04 12:00:00+00:00,100.0,99.0,98.0,100.5,0"  # 08:00 EDT, high < close
    path = write_csv(tmp_path, "SPY_5m.csv", [pre, *GOOD])
    kept, rep = B.validate_bars(B.read_bar_file(path), source=str(path))
    assert len(kept) == 4 and rep.dropped_outside_session == 1
    assert rep.rule_counts["high_ge_open_close"] == 1
    assert kept["source_row"].tolist() == [2, 3, 4, 5]
    with pytest.raises(BarValidationError) as ei:
        B.validate_bars(B.read_bar_file(path), source=str(path), session="all")
    assert (ei.value.row, ei.value.rule) == (1, "high_ge_open_close")


def test_multi_symbol_frame_checked_per_symbol(tmp_path):
    header = "timestamp,symbol,open,high,low,close,volume"
    lines = [
        "2025-06-04 13:30:00+00:00,BBB,1,2,0.5,1,1",
        "2025-06-04 13:30:00+00:00,AAA,1,2,0.5,1,1",
        "2025-06-04 13:35:00+00:00,BBB,1,2,0.5,1,1",
        "2025-06-04 13:35:00+00:00,AAA,1,2,0.5,1,1",
    ]
    kept, rep = B.validate_bars(B.read_bar_file(write_csv(tmp_path, "multi.csv", lines, header)), source="multi")
    assert kept["symbol"].tolist() == ["AAA", "AAA", "BBB", "BBB"]
    assert kept["source_row"].tolist() == [2, 4, 1, 3]
    lines[3] = "2025-06-04 13:30:00+00:00,AAA,1,2,0.5,1,1"
    err = _reject(tmp_path, lines, header=header, name="multi.csv")
    assert (err.row, err.rule) == (4, "ts_unique") and "AAA" in str(err) and "row 2" in str(err)


# ------------------------------------------------------------------------------------------
# Landing directories
# ------------------------------------------------------------------------------------------


def test_discover_and_load_symbol_bars(tmp_path):
    write_csv(tmp_path, "SPY_part2.csv", GOOD[2:])
    write_csv(tmp_path, "SPY_part1.csv", GOOD[:2])
    header = "datetime,ticker,open,high,low,close,volume"
    write_csv(tmp_path, "mixed.csv", [
        "2025-06-04 13:30:00,QQQ,1,2,0.5,1,1",
        "2025-06-04 13:30:00,SPY,100,102,99,101,5",  # overlaps SPY_part1 row 1
    ], header)
    (tmp_path / "notes.txt").write_text("ignored")
    found = B.discover_bar_files(tmp_path)
    assert list(found) == ["QQQ", "SPY"]
    assert [p.name for p in found["SPY"]] == ["SPY_part1.csv", "SPY_part2.csv", "mixed.csv"]
    assert [p.name for p in found["QQQ"]] == ["mixed.csv"]

    qqq, rep = B.load_symbol_bars(tmp_path, "QQQ")
    assert len(qqq) == 1 and rep.rows == 1

    with pytest.raises(BarValidationError) as ei:
        B.load_symbol_bars(tmp_path, "SPY")
    msg = str(ei.value)
    assert ei.value.rule == "ts_unique" and "SPY_part1.csv" in msg and "mixed.csv" in msg

    (tmp_path / "mixed.csv").unlink()
    spy, rep = B.load_symbol_bars(tmp_path, "SPY")
    assert spy["ts"].is_monotonic_increasing and len(spy) == 4
    assert spy["source_row"].tolist() == [1, 2, 1, 2]
    assert rep.rows == 4 and rep.sessions == 1 and "SPY_part2.csv" in rep.source
    with pytest.raises(FileNotFoundError, match="QQQ"):
        B.load_symbol_bars(tmp_path, "QQQ")


def test_load_bundled_sample_by_symbol():
    found = B.discover_bar_files(B.bundled_sample_dir())
    assert sorted(found) == ["AAPL", "GLD", "MSFT", "QQQ", "SPY"]
    bars, rep = B.load_symbol_bars(B.bundled_sample_dir(), "GLD")
    assert rep.sessions == 60 and len(bars) == rep.rows_in_session
    assert rep.to_dict()["first_ts"] == "2025-06-04T13:30:00+00:00"
