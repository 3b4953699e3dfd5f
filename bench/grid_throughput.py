"""End-to-end grid throughput: signals -> sparse traces -> metrics -> Parquet, for N strategies.

Runs on the full SPY 5-minute year of ``../shared/data/SPY_5m.csv`` when present (internal data,
never copied into the repo), else on the bundled Yahoo SPY sample. Prints strategies per second
for each stage and the process's peak resident memory.

    python bench/grid_throughput.py --strategies 5000 --repeat 3
    python bench/grid_throughput.py --strategies 1000 --bars-file admf_assets/sample_data/yahoo_5m_2025/SPY_5m.csv
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from admf_assets.core.bars import bundled_sample_dir, read_bar_file, trading_dates, validate_bars
from admf_assets.core.engine import strategy_rows
from admf_assets.core.grid import parse_grid
from admf_assets.core.metrics import CostModel, compute_metrics
from admf_assets.core.traces import build_signal_table, series_columns, write_parquet_atomic

SHARED_YEAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "SPY_5m.csv"

WIDE_GRID = {
    "strategies": [
        {"type": "sma_crossover", "params": {"fast_period": {"start": 2, "stop": 60, "step": 1}, "slow_period": {"start": 10, "stop": 200, "step": 5}}},
        {"type": "ma_crossover", "params": {"fast_period": {"start": 2, "stop": 60, "step": 1}, "slow_period": {"start": 10, "stop": 200, "step": 5}}},
        {"type": "bollinger_bands", "params": {"period": {"start": 5, "stop": 100, "step": 1}, "std_dev": {"start": 1.0, "stop": 3.5, "step": 0.1}}},
        {"type": "bollinger_breakout", "params": {"period": {"start": 5, "stop": 100, "step": 1}, "std_dev": {"start": 1.0, "stop": 3.5, "step": 0.1}}},
        {"type": "rsi_bands", "params": {"period": {"start": 3, "stop": 50, "step": 1}, "oversold": [15, 20, 25, 30, 35], "overbought": [65, 70, 75, 80, 85]}},
        {"type": "rsi_threshold", "params": {"period": {"start": 3, "stop": 50, "step": 1}, "threshold": {"start": 30, "stop": 70, "step": 2}}},
        {"type": "rsi_extreme", "params": {"period": {"start": 3, "stop": 40, "step": 1}, "oversold": [20, 25, 30], "overbought": [70, 75, 80], "exit_level": [45, 50, 55]}},
        {"type": "momentum_breakout", "params": {"period": {"start": 2, "stop": 100, "step": 1}, "threshold": {"start": 0.001, "stop": 0.02, "step": 0.001}}},
        {"type": "momentum", "params": {"period": {"start": 2, "stop": 400, "step": 1}}},
    ]
}


def build_configs(n: int):
    """N configurations taken round-robin across the nine strategy types of a wide grid."""
    grid = parse_grid(WIDE_GRID, source="bench")
    by_type: dict[str, list] = {}
    for c in grid.strategies:
        by_type.setdefault(c.strategy_type, []).append(c)
    picked = []
    for c in itertools.chain.from_iterable(itertools.zip_longest(*by_type.values())):
        if c is not None:
            picked.append(c)
        if len(picked) == n:
            break
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", type=int, default=5000)
    parser.add_argument("--bars-file", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=512)
    args = parser.parse_args()

    path = args.bars_file or (SHARED_YEAR if SHARED_YEAR.is_file() else bundled_sample_dir() / "SPY_5m.csv")
    bars, report = validate_bars(read_bar_file(path), source=str(path), session="regular")
    configs = build_configs(args.strategies)
    dates = np.asarray(trading_dates(bars["ts"]), dtype="datetime64[D]")
    _, day = np.unique(dates, return_inverse=True)
    close = bars["close"].to_numpy(dtype=np.float64)
    ts = bars["ts"].to_numpy()
    ids, hashes, jsons = series_columns(configs, "SPY", "5m")
    print(f"bars: {path} ({len(bars)} regular-session bars, {report.sessions} sessions)")
    print(f"strategies: {len(configs)} over {len({c.strategy_type for c in configs})} types, chunk size {args.chunk_size}")

    timings: dict[str, list[float]] = {"signals+sparse": [], "metrics": [], "trace files": [], "end to end": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            rows = strategy_rows(bars, configs, chunk_size=args.chunk_size)
            t1 = time.perf_counter()
            compute_metrics(rows, close, day.astype(np.int64), CostModel())
            t2 = time.perf_counter()
            table = build_signal_table(
                rows, ts=ts, close=close, symbol="SPY", series_ids=ids, series_hashes=hashes, series_json=jsons,
            )
            write_parquet_atomic(table, Path(tmp) / "signals.parquet")
            t3 = time.perf_counter()
        timings["signals+sparse"].append(t1 - t0)
        timings["metrics"].append(t2 - t1)
        timings["trace files"].append(t3 - t2)
        timings["end to end"].append(t3 - t0)

    print(f"change rows: {len(rows)} (compression ratio {len(rows) / (len(bars) * len(configs)):.5f})")
    print(f"{'stage':<16}{'median s':>10}{'min s':>9}{'max s':>9}{'strategies/s':>15}")
    for stage, values in timings.items():
        med = statistics.median(values)
        print(f"{stage:<16}{med:>10.3f}{min(values):>9.3f}{max(values):>9.3f}{len(configs) / med:>15,.0f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
