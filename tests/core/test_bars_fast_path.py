"""Tests for the fast parsing path and the load memo of admf_assets.core.bars.

The fast path (``B._FAST_PARSE``) must give exactly the frame the precise path gives, and on any
defect fall back so that the precise path raises its usual error. ``load_symbol_bars`` memoises
results keyed by the files' identity (path, inode, mtime, size) and hands out copies.

The shared data set (``../shared/data``) is used when present; those cases are skipped otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from admf_assets.core import bars as B
from admf_assets.core.bars import BarValidationError
from tests.core.test_bars import GOOD, HEADER, write_csv  # the precise path's own test files

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_FILES = [
    "SPY_5m.csv",
    "SPY_15m.csv",
    "SPY_1d.csv",
    "SPY_5m.parquet",
    "SPY_1m.parquet",
    "polygon_5m/XLK_5m.csv",
    "polygon_5m/UNH_5m.csv",
    "sp500_daily/DA-AAPL-T-2021-04-21.csv",
    "yahoo_5m_2025/QQQ_5m.csv",
]


def read_both(monkeypatch, path: Path, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``read_bar_file`` with the fast path on, then forced off."""
    fast = B.read_bar_file(path, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(B, "_FAST_PARSE", False)
        precise = B.read_bar_file(path, **kwargs)
    return fast, precise


def outcome(path: Path, **kwargs):
    """Validated frame, or the error's (message, row, rule, field)."""
    try:
        return B.validate_bars(B.read_bar_file(path, **kwargs), source=str(path), session="all")[0]
    except BarValidationError as err:
        return (str(err), err.row, err.rule, err.field)


def outcome_both(monkeypatch, path: Path):
    fast = outcome(path)
    with monkeypatch.context() as m:
        m.setattr(B, "_FAST_PARSE", False)
        precise = outcome(path)
    return fast, precise


def assert_same_outcome(fast, precise) -> None:
    if isinstance(precise, pd.DataFrame):
        assert isinstance(fast, pd.DataFrame), fast
        pd.testing.assert_frame_equal(fast, precise, check_exact=True)
    else:
        assert fast == precise


@pytest.fixture
def no_precise_helpers(monkeypatch):
    """Make the per-cell helpers of the precise path fail, to prove the fast path did the work."""

    def boom(*args, **kwargs):
        raise AssertionError("precise path used")

    monkeypatch.setattr(B, "_missing_mask", boom)
    monkeypatch.setattr(B, "_as_str_series", boom)


@pytest.fixture(autouse=True)
def empty_memo():
    B._clear_load_memo()
    yield
    B._clear_load_memo()


# ------------------------------------------------------------------------------------------
# Fast path == precise path on real data
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SPY_5m.csv", "QQQ_5m.csv", "AAPL_5m.csv", "MSFT_5m.csv", "GLD_5m.csv"])
def test_bundled_samples_identical_on_both_paths(monkeypatch, name):
    fast, precise = read_both(monkeypatch, B.bundled_sample_dir() / name)
    pd.testing.assert_frame_equal(fast, precise, check_exact=True)
    assert len(fast) > 11_000


@pytest.mark.parametrize("rel", SHARED_FILES)
def test_shared_data_identical_on_both_paths(monkeypatch, rel):
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not available")
    fast, precise = read_both(monkeypatch, path)
    pd.testing.assert_frame_equal(fast, precise, check_exact=True)


def test_clean_csv_files_never_touch_the_precise_helpers(no_precise_helpers):
    # Yahoo layout with a Symbol column: ISO strings with offsets, all-text prices and volumes
    df = B.read_bar_file(B.bundled_sample_dir() / "SPY_5m.csv")
    assert len(df) == 11_301 and (df["symbol"] == "SPY").all()


@pytest.mark.parametrize(
    "rel", ["SPY_5m.csv", "SPY_1d.csv", "polygon_5m/XLK_5m.csv", "sp500_daily/DA-AAPL-T-2021-04-21.csv"]
)
def test_clean_shared_csv_files_never_touch_the_precise_helpers(no_precise_helpers, rel):
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not available (../shared absent)")
    assert len(B.read_bar_file(path)) > 0


# ------------------------------------------------------------------------------------------
# Fast path == precise path on every accepted layout
# ------------------------------------------------------------------------------------------

_EPOCH_S = 1749043800  # 2025-06-04 13:30 UTC


@pytest.mark.parametrize(
    ("header", "lines"),
    [
        pytest.param(HEADER, GOOD, id="iso-utc-offset"),
        pytest.param(HEADER, [f"2025-06-04T09:{30 + 5 * k}:00-04:00,1,2,0.5,1,1" for k in range(4)], id="iso-T-minus4"),
        pytest.param(HEADER, [f"2025-06-04T13:{30 + 5 * k}:00Z,1,2,0.5,1,1" for k in range(4)], id="iso-Z"),
        pytest.param(HEADER, [f"2025-06-04 13:{30 + 5 * k}:00+0000,1,2,0.5,1,1" for k in range(4)], id="iso-compact-offset"),
        pytest.param(HEADER, [f"2025-06-04 13:{30 + 5 * k}:00.250+00:00,1,2,0.5,1,1" for k in range(4)], id="iso-fraction"),
        pytest.param("datetime,symbol,open,high,low,close,volume,vwap,transactions",
                     [f"2023-09-27 13:{30 + 5 * k}:00,XLK,162.58,162.9,162.4,162.7,604.0,162.57,4" for k in range(4)],
                     id="polygon-naive"),
        pytest.param("t,o,h,l,c,v,vw,n", [f"{(_EPOCH_S + 300 * k) * 1000},1,2,0.5,1.5,10,1.2,7" for k in range(3)],
                     id="epoch-ms-short-names"),
        pytest.param("time,open,high,low,close,volume", [f"{_EPOCH_S + 300 * k},1,2,0.5,1.5,10" for k in range(3)],
                     id="epoch-s"),
        pytest.param(",Datetime,Open,High,Low,Close,Volume",
                     ["0,2024-07-31,552.0,554.1,550.5,550.81,60000000", "1,2024-08-01,552.5,554.87,539.43,543.01,76000000"],
                     id="date-only-unnamed-index"),
        pytest.param("Datetime,Open,High,Low,Close,Volume,Symbol",
                     ["2025-06-04 13:30:00+00:00,596.96,597.6,596.78,597.55,2860540,NA",
                      "2025-06-04 13:35:00+00:00,597.58,597.91,597.41,597.77,1301964, NA "],
                     id="yahoo-symbol-NA-padded"),
        pytest.param(HEADER, [f"2025-06-04 13:{30 + 5 * k}:00+00:00, 1.5 ,1_002,+0.5,1e0,  7" for k in range(3)],
                     id="float-spellings"),
        pytest.param(HEADER, ["2025-06-04T17:30:00+02:00,1,2,0.5,1,1", "2025-06-04 15:35:00,1,2,0.5,1,1",
                              "2025-06-04T15:45:00Z,1,2,0.5,1,1"], id="mixed-aware-naive"),
        pytest.param(HEADER, [f"{_EPOCH_S},1,2,0.5,1,1", f"{_EPOCH_S + 300},1,2,0.5,1,1", "999999999,1,2,0.5,1,1"],
                     id="epoch-varying-width"),
        pytest.param("date,time,open,high,low,close,volume",
                     ["2025-06-04,13:30:00,1,2,0.5,1,1", "2025-06-04,13:35:00,1,2,0.5,1,1"], id="date-and-time"),
    ],
)
def test_layouts_identical_on_both_paths(monkeypatch, tmp_path, header, lines):
    path = write_csv(tmp_path, "SPY_5m.csv", lines, header=header)
    fast, precise = read_both(monkeypatch, path)
    pd.testing.assert_frame_equal(fast, precise, check_exact=True)
    assert list(fast.columns) == list(B.BAR_COLUMNS)


def test_text_columns_in_memory_and_parquet_identical(monkeypatch, tmp_path):
    frame = pd.DataFrame({
        "Datetime": [f"2025-06-04 13:{30 + 5 * k}:00+00:00" for k in range(3)],
        "Open": ["1.0", "1.1", "1.2"], "High": ["2", "2", "2"], "Low": ["0.5", "0.5", "0.5"],
        "Close": ["1.5", "1.5", "1.5"], "Volume": ["10", "0", "7"], "Ticker": ["AAA", "AAA ", "BBB"],
    })
    frame.to_parquet(tmp_path / "AAA_5m.parquet")
    fast, precise = read_both(monkeypatch, tmp_path / "AAA_5m.parquet")
    pd.testing.assert_frame_equal(fast, precise, check_exact=True)
    assert fast["symbol"].tolist() == ["AAA", "AAA", "BBB"]
    # non-str objects (floats, ints, None) in object columns always take the precise path
    mixed = frame.astype(object)
    mixed.loc[1, "Open"] = 1.1
    mixed.loc[2, "Volume"] = None
    fast = B.normalize_bars(mixed)
    monkeypatch.setattr(B, "_FAST_PARSE", False)
    pd.testing.assert_frame_equal(fast, B.normalize_bars(mixed), check_exact=True)


# ------------------------------------------------------------------------------------------
# Defects: the fast path falls back and the precise path reports, unchanged
# ------------------------------------------------------------------------------------------

DEFECTS = [
    # the defects of tests/core/test_bars.py::test_bad_bar_rejected
    (3, "2025-06-04 13:30:00+00:00,100.0,101.0,99.0,100.5,1000"),
    (3, "2025-06-04 13:35:00+00:00,100.0,101.0,99.0,100.5,1000"),
    (2, "2025-06-04 13:35:00+00:00,-100.5,101.5,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,101.0,100.0,101.2,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.6,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,NaN"),
    (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,-5"),
    (2, "not-a-time,100.5,101.5,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,abc,100.0,101.0,2000"),
    # further defects the fast path must not accept on its own
    (2, ",100.5,101.5,100.0,101.0,2000"),  # missing timestamp
    (2, "NA,100.5,101.5,100.0,101.0,2000"),
    (2, "2025-02-30 13:35:00+00:00,100.5,101.5,100.0,101.0,2000"),  # same shape, impossible date
    (2, "2025-06-04 25:35:00+00:00,100.5,101.5,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00:00,100.5,101.5,100.0,101.0,2000"),
    (2, " 2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,2000"),  # padded
    (2, "2025-06-04 13:35:00,100.5,101.5,100.0,101.0,2000"),  # naive among aware
    (2, "2025-06-04 13:35:00+05:30,100.5,101.5,100.0,101.0,2000"),  # other offset, same shape
    (2, "1749044100,100.5,101.5,100.0,101.0,2000"),  # epoch among ISO strings
    (2, "2025-06-04,100.5,101.5,100.0,101.0,2000"),  # date among date-times
    (2, "2025-06-04 13:35:00+00:00,100.5,N/A,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,None,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5, ,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,101.5,100.0,101.0,inf"),
    (2, "2025-06-04 13:35:00+00:00,100.5,0x10,100.0,101.0,2000"),
    (2, "2025-06-04 13:35:00+00:00,100.5,1,5,100.0,101.0,2000"),  # extra field
]


@pytest.mark.parametrize(("row", "bad_line"), DEFECTS)
def test_defects_give_the_precise_outcome(monkeypatch, tmp_path, row, bad_line):
    lines = list(GOOD)
    lines[row - 1] = bad_line
    fast, precise = outcome_both(monkeypatch, write_csv(tmp_path, "BAD_5m.csv", lines))
    assert_same_outcome(fast, precise)


@pytest.mark.parametrize(
    ("lines", "header"),
    [
        (["2025-06-04 13:30:00+00:00,1,2,0.5,1,1,SPY", "2025-06-04 13:35:00+00:00,1,2,0.5,1,1, "], HEADER + ",symbol"),
        (["2025-06-04 13:30:00+00:00,1,2,0.5,1,1,", "2025-06-04 13:35:00+00:00,1,2,0.5,1,1,SPY"], HEADER + ",symbol"),
        ([f"{_EPOCH_S},1,2,0.5,1,1", "99999999999999999999,1,2,0.5,1,1"], HEADER),  # epoch overflow
        (["2024-07-31,1,2,0.5,1,1", "2024-02-30,1,2,0.5,1,1"], HEADER),  # impossible date-only value
    ],
)
def test_symbol_and_epoch_defects_give_the_precise_outcome(monkeypatch, tmp_path, lines, header):
    fast, precise = outcome_both(monkeypatch, write_csv(tmp_path, "BAD_5m.csv", lines, header=header))
    assert_same_outcome(fast, precise)
    assert not isinstance(precise, pd.DataFrame)


def test_fallback_messages_are_the_precise_ones(tmp_path):
    lines = list(GOOD)
    lines[1] = "2025-06-04 13:35:00+00:00,100.5,abc,100.0,101.0,2000"
    path = write_csv(tmp_path, "SPY_5m.csv", lines)
    with pytest.raises(BarValidationError) as ei:
        B.read_bar_file(path)
    assert str(ei.value) == f"{path}: row 2 (field high): rule numeric violated: 'abc' is not a number"
    lines[1] = "2025-02-30 13:35:00+00:00,100.5,101.5,100.0,101.0,2000"
    path = write_csv(tmp_path, "SPY_5m.csv", lines)
    with pytest.raises(BarValidationError) as ei:
        B.read_bar_file(path)
    assert str(ei.value) == (
        f"{path}: row 2 (field ts): rule ts_parse violated: '2025-02-30 13:35:00+00:00' is not a timestamp"
    )


def test_uniform_template_and_fast_floats_decline_unusual_columns():
    same = np.array(["2025-06-04 13:30:00+00:00", "2025-12-31 23:55:00+00:00"], dtype=object)
    assert B._uniform_template(same) == same[0]
    for other in ("2025-06-04 13:30:00+01:00x", "2025-06-04T13:30:00+00:00", "2025-06-04 13:30:00-00:00",
                  "2025-06-04 13:30:00+00:0\x00", "2025-06-04 13:30:00+00:0٣"):
        assert B._uniform_template(np.array([same[0], other], dtype=object)) is None, other
    assert B._fast_ts_text(pd.Series(["NA", "NA"], dtype=object)) is None
    assert B._fast_floats(pd.Series(["1.5", " 2 ", "nan"], dtype=object)) is not None
    for bad in ("", "NA", "null", "abc", None, 1.5):
        assert B._fast_floats(pd.Series(["1.5", bad], dtype=object)) is None, bad


# ------------------------------------------------------------------------------------------
# load_symbol_bars memo
# ------------------------------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch):
    """Count read_bar_file calls (files actually parsed)."""
    calls: list[str] = []
    real = B.read_bar_file

    def counting(path, **kwargs):
        calls.append(Path(path).name)
        return real(path, **kwargs)

    monkeypatch.setattr(B, "read_bar_file", counting)
    return calls


def test_memo_hit_returns_equal_independent_copies(tmp_path, reads):
    write_csv(tmp_path, "SPY_5m.csv", GOOD)
    bars, rep = B.load_symbol_bars(tmp_path, "SPY")
    expected_bars, expected_rep = bars.copy(deep=True), rep.to_dict()
    bars.loc[0, "close"] = -1.0
    bars["volume"] = 0.0
    rep.rule_counts["no_nan"] = 99
    again, rep2 = B.load_symbol_bars(tmp_path, "SPY")
    assert reads == ["SPY_5m.csv"]  # parsed once
    pd.testing.assert_frame_equal(again, expected_bars, check_exact=True)
    assert rep2.to_dict() == expected_rep
    assert again is not bars and rep2 is not rep
    third, _ = B.load_symbol_bars(tmp_path, "SPY")
    assert third is not again and not np.shares_memory(third["close"].to_numpy(), again["close"].to_numpy())


def test_memo_key_includes_the_arguments(tmp_path, reads):
    write_csv(tmp_path, "SPY_5m.csv", ["2025-06-04 12:00:00+00:00,100.0,101.0,99.0,100.5,0", *GOOD])
    regular, _ = B.load_symbol_bars(tmp_path, "SPY")
    every, _ = B.load_symbol_bars(tmp_path, "SPY", session="all")
    assert (len(regular), len(every)) == (4, 5)
    assert len(reads) == 2
    B.load_symbol_bars(str(tmp_path), "SPY")  # str and Path spell the same key
    assert len(reads) == 2


def test_appended_file_is_read_again(tmp_path, reads):
    path = write_csv(tmp_path, "SPY_5m.csv", GOOD[:3])
    assert len(B.load_symbol_bars(tmp_path, "SPY")[0]) == 3
    with path.open("a") as fh:
        fh.write(GOOD[3] + "\n")
    bars, rep = B.load_symbol_bars(tmp_path, "SPY")
    assert len(bars) == rep.rows == 4 and len(reads) == 2


def test_atomically_replaced_file_is_read_again_even_with_same_size_and_mtime(tmp_path, reads):
    path = write_csv(tmp_path, "SPY_5m.csv", GOOD)
    first, _ = B.load_symbol_bars(tmp_path, "SPY")
    st = path.stat()
    tmp = write_csv(tmp_path, ".SPY_5m.csv.tmp", [line.replace("1000", "9000") for line in GOOD])
    os.replace(tmp, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the inode tells the files apart
    assert path.stat().st_size == st.st_size and path.stat().st_ino != st.st_ino
    second, _ = B.load_symbol_bars(tmp_path, "SPY")
    assert (first["volume"].iloc[0], second["volume"].iloc[0]) == (1000.0, 9000.0)
    assert len(reads) == 2


def test_rewritten_file_with_new_mtime_is_read_again(tmp_path, reads):
    path = write_csv(tmp_path, "SPY_5m.csv", GOOD)
    B.load_symbol_bars(tmp_path, "SPY")
    st = path.stat()
    path.write_text(path.read_text().replace("1000", "9000"))  # in place: same inode and size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    bars, _ = B.load_symbol_bars(tmp_path, "SPY")
    assert bars["volume"].iloc[0] == 9000.0 and len(reads) == 2


def test_new_file_in_the_folder_is_seen(tmp_path, reads):
    write_csv(tmp_path, "SPY_part1.csv", GOOD[:2])
    assert len(B.load_symbol_bars(tmp_path, "SPY")[0]) == 2
    write_csv(tmp_path, "SPY_part2.csv", GOOD[2:])
    bars, rep = B.load_symbol_bars(tmp_path, "SPY")
    assert len(bars) == 4 and "SPY_part2.csv" in rep.source
    (tmp_path / "SPY_part2.csv").unlink()
    assert len(B.load_symbol_bars(tmp_path, "SPY")[0]) == 2


def test_errors_are_not_memoised_and_memo_is_bounded(tmp_path, reads):
    lines = list(GOOD)
    lines[1] = "2025-06-04 13:35:00+00:00,100.5,abc,100.0,101.0,2000"
    path = write_csv(tmp_path, "SPY_5m.csv", lines)
    for _ in range(2):
        with pytest.raises(BarValidationError, match="row 2 \\(field high\\): rule numeric"):
            B.load_symbol_bars(tmp_path, "SPY")
    assert len(reads) == 2 and not B._LOAD_MEMO
    path.unlink()
    for k in range(B._LOAD_MEMO_SIZE + 3):
        write_csv(tmp_path, f"S{k}_5m.csv", GOOD)
    names = [f"S{k}" for k in range(B._LOAD_MEMO_SIZE + 3)]
    for name in names:
        B.load_symbol_bars(tmp_path, name)
    B.load_symbol_bars(tmp_path, names[3])  # a hit makes S3 the most recently used
    assert [key[1] for key in B._LOAD_MEMO] == [*names[4:], names[3]]
