"""Shared by the core tests: real regular-hours bars of the bundled SPY 5-minute sample, and
plain per-bar reference loops written independently of the vectorized code.

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


def ref_rsi(close, n):
    """Wilder 1978 RSI as the textbook per-bar loop; None until n changes are seen."""
    out = [None] * len(close)
    avg_gain = avg_loss = None
    gains, losses = [], []
    for t in range(1, len(close)):
        change = close[t] - close[t - 1]
        gain, loss = max(change, 0.0), max(-change, 0.0)
        if avg_gain is None:
            gains.append(gain)
            losses.append(loss)
            if len(gains) < n:
                continue
            avg_gain, avg_loss = sum(gains) / n, sum(losses) / n
        else:
            avg_gain = (avg_gain * (n - 1) + gain) / n
            avg_loss = (avg_loss * (n - 1) + loss) / n
        out[t] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return out


def stored_series(tmp_path: Path):
    """Two stored days of SPY bars (the bundled sample's regular sessions) with the signal traces
    of one strategy (whole-history slices) in a workspace at ``tmp_path``:
    ``(layout, bar history, the whole-history rows, the raw bars)``."""
    from admf_assets.core.config import StrategyConfig
    from admf_assets.core.engine import strategy_rows
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.store import history_metadata, read_bar_history, write_bars_day, write_trace_file
    from admf_assets.core.traces import config_record

    bars = rth_bars(2)
    layout = WorkspaceLayout(tmp_path)
    for day in sorted(set(bars["day"])):
        sub = bars[bars["day"] == day].reset_index(drop=True)
        write_bars_day(layout, "SPY", "5m", day, sub.assign(ts=pd.to_datetime(sub["datetime"], utc=True)))
    history = read_bar_history(layout, "SPY", "5m")
    configs = [StrategyConfig("sma_crossover", {"fast_period": 3, "slow_period": 8})]
    rows, fingerprints = strategy_rows(history.bars, configs), history.fingerprints()
    for day, start, stop in history.spans:
        write_trace_file(
            layout.signals_file("SPY", "5m", day), rows, kind="signals", ts=history.bars["ts"].to_numpy(),
            close=history.bars["close"].to_numpy(), symbol="SPY", timeframe="5m",
            records=[config_record(c, "SPY", "5m") for c in configs], start=start, stop=stop,
            extra_metadata=history_metadata(history, fingerprints, day),
        )
    return layout, history, rows, bars
