"""Sparse signal encoding: dense per-bar values <-> change rows.

The sparse trace contract (``../shared/docs/strategy-semantics.md``): one row per series on its
first emitted value and then only where the value changes; the value holds until the next row;
no row at the end of data. This module is the array-level core of that contract; building Parquet
tables from it lives in :mod:`admf_assets.core.traces`.

Dense values are ``int8`` arrays of shape ``(S, T)`` (S series, T bars). Strategy signals use
``-1/0/+1``; classifier regimes use category codes ``0..K-1``. Bars before a series has a value
(indicator warm-up) hold :data:`NO_VALUE`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_VALUE = np.int8(-128)
"""Marker for "no value yet" (warm-up) in dense int8 arrays."""


@dataclass(frozen=True)
class SparseRows:
    """Change rows of S series over T bars, sorted by ``series`` then ``idx``.

    Attributes:
        series: int32 array (R,), row index of the series (0..S-1) in the dense matrix.
        idx: int32 array (R,), 0-based bar index of the change.
        val: int8 array (R,), the value from that bar on.
        n_series: S.
        n_bars: T.
    """

    series: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    n_series: int
    n_bars: int

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    def counts(self) -> np.ndarray:
        """Rows per series, int64 array (S,)."""
        return np.bincount(self.series, minlength=self.n_series).astype(np.int64)

    def select(self, mask: np.ndarray) -> "SparseRows":
        """Rows where the boolean ``mask`` (R,) is true, same S and T."""
        return SparseRows(self.series[mask], self.idx[mask], self.val[mask], self.n_series, self.n_bars)


def encode_sparse(values: np.ndarray, missing: np.int8 = NO_VALUE) -> SparseRows:
    """Encode a dense ``(S, T)`` int8 matrix as change rows.

    A row is emitted at bar t of series s when ``values[s, t] != missing`` and either t is the
    series' first non-missing bar or ``values[s, t] != values[s, t-1]``. A return to ``missing``
    after a value is not expected (indicators keep their value once warm) and emits no row.

    Args:
        values: int8 array of shape (S, T).
        missing: the warm-up marker.

    Returns:
        :class:`SparseRows` sorted by series then bar index.

    Raises:
        ValueError: if ``values`` is not 2-D.
    """
    if values.ndim != 2:
        raise ValueError(f"encode_sparse expects a 2-D (series, bars) array, got shape {values.shape}")
    n_series, n_bars = values.shape
    present = values != missing
    change = np.empty_like(present)
    if n_bars:
        change[:, 0] = present[:, 0]
        np.not_equal(values[:, 1:], values[:, :-1], out=change[:, 1:])
        change[:, 1:] &= present[:, 1:]
    series, idx = np.nonzero(change)
    return SparseRows(
        series=series.astype(np.int32),
        idx=idx.astype(np.int32),
        val=values[series, idx].astype(np.int8),
        n_series=n_series,
        n_bars=n_bars,
    )


def decode_dense(rows: SparseRows, missing: np.int8 = NO_VALUE) -> np.ndarray:
    """Expand change rows back into the dense ``(S, T)`` int8 matrix (forward fill).

    Bars before a series' first row hold ``missing``. ``decode_dense(encode_sparse(v))`` equals
    ``v`` whenever ``v`` never returns to ``missing`` after its first value.

    Raises:
        ValueError: if a row's ``idx`` is outside ``[0, n_bars)`` or rows are not sorted by
            (series, idx).
    """
    out = np.full((rows.n_series, rows.n_bars), missing, dtype=np.int8)
    if len(rows) == 0:
        return out
    if rows.idx.min() < 0 or rows.idx.max() >= rows.n_bars:
        raise ValueError(f"row idx outside [0, {rows.n_bars})")
    key = rows.series.astype(np.int64) * max(rows.n_bars, 1) + rows.idx
    if np.any(np.diff(key) <= 0):
        raise ValueError("sparse rows must be sorted by (series, idx) without duplicates")
    # Segment ends: next row of the same series, else end of data.
    ends = np.empty(len(rows), dtype=np.int64)
    ends[:-1] = np.where(rows.series[1:] == rows.series[:-1], rows.idx[1:], rows.n_bars)
    ends[-1] = rows.n_bars
    lengths = ends - rows.idx
    flat_start = rows.series.astype(np.int64) * rows.n_bars + rows.idx
    # Positions covered by each segment, built without a Python loop over rows.
    total = int(lengths.sum())
    seg_of = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out.reshape(-1)[np.repeat(flat_start, lengths) + offsets] = rows.val[seg_of]
    return out
