"""Real bars shared by the core tests: regular-hours slices of the bundled SPY 5-minute sample.

The session filter here is deliberately independent of :mod:`admf_assets.core.bars` (a fixed
13:30-19:55 UTC window, which is regular hours in June 2025, and volume > 0), so indicator and
strategy tests do not rest on the code under test elsewhere.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

import admf_assets

CSV = Path(admf_assets.__file__).parent / "sample_data" / "yahoo_5m_2025" / "SPY_5m.csv"


@lru_cache(maxsize=None)
def _rth_bars_cached(days: int) -> pd.DataFrame:
    df = pd.read_csv(CSV)
    df.columns = [c.lower() for c in df.columns]
    ts = pd.to_datetime(df["datetime"], utc=True)
    minutes = ts.dt.hour * 60 + ts.dt.minute
    rth = df[(minutes >= 13 * 60 + 30) & (minutes <= 19 * 60 + 55) & (df["volume"] > 0)].copy()
    rth["day"] = ts[rth.index].dt.date
    keep = sorted(rth["day"].unique())[:days]
    return rth[rth["day"].isin(keep)].reset_index(drop=True)


def rth_bars(days: int = 5) -> pd.DataFrame:
    """Regular-hours bars (13:30-19:55 UTC, volume > 0) of the first ``days`` sessions of the sample."""
    return _rth_bars_cached(days).copy()
