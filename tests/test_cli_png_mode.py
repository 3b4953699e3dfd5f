"""PNG charts (``admf analytics ... --plot``, ``<workspace>/plots/``) get the mode any new file
gets under the process umask, as the Parquet files do (not ``tempfile.mkstemp``'s 0600)."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pytest

from admf_assets.core.traces import write_parquet_atomic
from admf_assets.lib.plots import sharpe_histogram_png, write_png


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_png_mode_follows_the_umask_like_parquet(tmp_path, umask, mask):
    os.umask(mask)
    png = write_png(sharpe_histogram_png([0.1, 0.5, 1.2, -0.3], 0.9, "grid"), tmp_path / "plots" / "hist.png")
    parquet = write_parquet_atomic(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    mode = stat.S_IMODE(png.stat().st_mode)
    assert mode == 0o666 & ~mask
    assert mode == stat.S_IMODE(parquet.stat().st_mode)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rewrite replaces the file, with the same mode and no temp file left
    write_png(b"\x89PNG\r\n\x1a\nsecond", png)
    assert png.read_bytes().endswith(b"second") and stat.S_IMODE(png.stat().st_mode) == 0o666 & ~mask
    assert sorted(p.name for p in png.parent.iterdir()) == ["hist.png"]


def test_failed_png_write_leaves_no_temp_file(tmp_path, umask, monkeypatch):
    target = tmp_path / "plots" / "x.png"

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_png(b"data", target)
    assert list(target.parent.iterdir()) == []
