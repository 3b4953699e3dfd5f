"""Day slices of sorted change rows: the binary-search kernel equals the full scan."""

from __future__ import annotations

import numpy as np
import pytest

from admf_assets.core import kernels
from admf_assets.core.engine import slice_rows
from admf_assets.core.sparse import SparseRows


def _sorted_rows(seed: int, n_series: int, n_bars: int, n_rows: int) -> SparseRows:
    rng = np.random.default_rng(seed)
    key = np.unique(rng.integers(0, n_series * n_bars, n_rows))  # sorted, unique (series, idx)
    series, idx = np.divmod(key, n_bars)
    val = rng.integers(-1, 2, key.size).astype(np.int8)
    return SparseRows(series.astype(np.int32), idx.astype(np.int32), val, n_series, n_bars)


@pytest.mark.parametrize("seed,n_series,n_bars,n_rows", [(1, 50, 400, 3000), (2, 7, 30, 5), (3, 300, 1000, 200_000)])
def test_sorted_slice_equals_scan(seed, n_series, n_bars, n_rows):
    rows = _sorted_rows(seed, n_series, n_bars, n_rows)
    cuts = [(0, n_bars), (0, 1), (n_bars - 1, n_bars), (n_bars // 3, n_bars // 2), (5, 5), (n_bars, n_bars)]
    for start, stop in cuts:
        want = kernels.rows_in_bar_range(rows.series, rows.idx, rows.val, start, stop)
        got = slice_rows(rows, start, stop)
        for name, w in zip(("series", "idx", "val"), want):
            a = getattr(got, name)
            assert a.dtype == w.dtype, name
            np.testing.assert_array_equal(a, w, err_msg=f"{name} [{start}, {stop})")
        assert (got.n_series, got.n_bars) == (n_series, n_bars)


def test_day_slices_partition_the_rows():
    rows = _sorted_rows(4, 40, 78 * 10, 20_000)
    parts = [slice_rows(rows, d * 78, (d + 1) * 78) for d in range(10)]
    assert sum(len(p) for p in parts) == len(rows)
    key = np.concatenate([p.series.astype(np.int64) * rows.n_bars + p.idx for p in parts])
    np.testing.assert_array_equal(np.sort(key), rows.series.astype(np.int64) * rows.n_bars + rows.idx)
