"""Grid throughput: evaluation core, end to end with files, and an MA-crossover race (plain NumPy, fused reference, vectorbt).

Runs on the full SPY 5-minute year of ``../shared/data/SPY_5m.csv`` when present (internal data,
never copied into the repo), else on the bundled Yahoo SPY sample. Prints medians with min and
max over ``--repeat`` runs of

* the evaluation core: indicators (once per distinct period), signals, sparse trace rows and every
  metric of the performance table (``admf_assets.core.metrics.METRIC_COLUMNS``), no file I/O;
* end to end: the same on the configurations ordered by type, plus one trace Parquet file per
  strategy type (the ``admf traces`` layout, written by ``admf_assets.core.traces.TraceFileWriter``
  on two threads) and ``strategy_index.parquet`` with its headline metrics;
* the process's peak resident memory after those stages;
* the MA-crossover part of the grid through this package, a plain NumPy array-at-a-time
  implementation, the fused reference of ``bench/fused_reference.py`` (one numba pass over the
  bars per strategy, nine metrics; timed on 1 and on 2 numba threads, and printed next to the
  issue's 15,600 / 17,700 strategies/s as the calibration of this machine) and vectorbt
  (``Portfolio.from_signals`` with the same fees and slippage, run in the interpreter given by
  ``--vectorbt-python`` because vectorbt 1.2.0 needs pandas >= 3 while this package pins pandas
  2.3), with the speed ratios and per-strategy agreement checks.

    python bench/grid_throughput.py --strategies 5000 --repeat 3
    python bench/grid_throughput.py --strategies 1000 --bars-file admf_assets/sample_data/yahoo_5m_2025/SPY_5m.csv
    python bench/grid_throughput.py --vectorbt-python /tmp/benchvenv/bin/python --compare-strategies 500
    PYTHONPATH=. /tmp/benchvenv2/bin/python bench/grid_throughput.py --profile core   # or reference
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED_YEAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "SPY_5m.csv"
ANNUAL = np.sqrt(252.0)
FUSED_REFERENCE = Path(__file__).resolve().with_name("fused_reference.py")
ISSUE_FUSED_RATES = (15_600, 17_700)
"""The performance issue's figures for its fused reference on its machine class (strategies/s on
one and on two cores, MA-crossover grid over the SPY 5-minute year, nine metrics)."""
ISSUE_BARS = 19_853

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
    from admf_assets.core.grid import parse_grid

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


def ma_configs(n: int):
    """``ma_crossover`` configurations of the wide grid: all of them (2,015: the fast < slow pairs
    of fast 2..60 x slow 10..200 step 5) when n is 0 or larger, else n spread over the grid."""
    from admf_assets.core.grid import parse_grid

    spec = {"strategies": [WIDE_GRID["strategies"][1]]}
    grid = parse_grid(spec, source="bench").strategies
    if n <= 0 or n >= len(grid):
        return grid
    step = max(1, len(grid) // n)
    return grid[::step][:n]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(label: str, values: list[float], n: int) -> str:
    med = statistics.median(values)
    return f"{label:<34}{med:>9.3f}{min(values):>9.3f}{max(values):>9.3f}{n / med:>14,.0f}"


# --------------------------------------------------------------------------- plain NumPy MA crossover


def numpy_ma_crossover(close: np.ndarray, day: np.ndarray, fast: np.ndarray, slow: np.ndarray, per_side: float, chunk: int = 64) -> dict[str, np.ndarray]:
    """Array-at-a-time MA crossover (+1 if SMA(fast) > SMA(slow) else -1, none before both exist):
    total return, daily Sharpe ratio (sqrt(252)), max drawdown, closed trades, win rate. Moving
    averages from one cumulative sum; positions, returns and equity as (chunk, T) float64 blocks."""
    t_len = close.size
    csum = np.concatenate([[0.0], np.cumsum(close)])
    ret = np.zeros(t_len)
    ret[1:] = close[1:] / close[:-1] - 1.0
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])

    def sma(n: np.ndarray) -> np.ndarray:
        out = np.full((n.size, t_len), np.nan)
        for i, w in enumerate(n):
            out[i, w - 1 :] = (csum[w:] - csum[:-w]) / w
        return out

    res = {k: np.empty(fast.size) for k in ("total_return", "sharpe", "max_drawdown", "trades", "win_rate")}
    for s0 in range(0, fast.size, chunk):
        f, sl = sma(fast[s0 : s0 + chunk]), sma(slow[s0 : s0 + chunk])
        valid = ~(np.isnan(f) | np.isnan(sl))
        pos = np.where(valid, np.where(f > sl, 1.0, -1.0), 0.0)
        prev = np.zeros_like(pos)
        prev[:, 1:] = pos[:, :-1]
        net = prev * ret - np.abs(pos - prev) * per_side
        growth = 1.0 + net
        equity = np.cumprod(growth, axis=1)
        res["total_return"][s0 : s0 + chunk] = equity[:, -1] - 1.0
        peak = np.maximum(np.maximum.accumulate(equity, axis=1), 1.0)
        res["max_drawdown"][s0 : s0 + chunk] = np.maximum(1.0 - (equity / peak).min(axis=1), 0.0)
        daily = np.multiply.reduceat(growth, starts, axis=1) - 1.0
        sd = daily.std(axis=1, ddof=1)
        res["sharpe"][s0 : s0 + chunk] = np.where(sd > 0, daily.mean(axis=1) / np.where(sd > 0, sd, 1) * ANNUAL, np.nan)
        for j in range(pos.shape[0]):
            change = np.flatnonzero(pos[j, 1:] != pos[j, :-1]) + 1
            first = np.flatnonzero(valid[j])[:1]
            bars = np.concatenate([first, change[change > (first[0] if first.size else 0)]])
            side = pos[j, bars]
            entry, exit_ = bars[:-1], bars[1:]
            net_tr = side[:-1] * (close[exit_] - close[entry]) / close[entry] - 2 * per_side
            res["trades"][s0 + j] = entry.size
            res["win_rate"][s0 + j] = (net_tr > 0).mean() if entry.size else np.nan
    return res


# --------------------------------------------------------------------------- fused reference


def load_fused_reference():
    """``bench/fused_reference.py`` as a module, imported by path (no sys.path change)."""
    import importlib.util

    name = "admf_bench_fused_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUSED_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def time_fused(fused, close, day, fast, slow, per_side, threads: int, repeat: int) -> tuple[list[float], dict]:
    """``repeat`` timings of the fused reference on ``threads`` numba threads (the caller's thread
    count is restored afterwards) and the result of the last run."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # NUMBA_NUM_THREADS caps it
    try:
        timings = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = fused.fused_ma_crossover(close, day, fast, slow, per_side)
            timings.append(time.perf_counter() - t0)
    finally:
        numba.set_num_threads(before)
    return timings, result


def fused_agreement(fused, result: dict, ours, rows, close, fast, slow) -> bool:
    """Print the agreement of the fused reference's nine metrics with ``compute_metrics``
    (``ours``) for every strategy (floats within 1e-9 relative / 1e-12 absolute, NaN where the
    package has NaN, trade counts exactly). Strategies whose cumulative-sum moving averages flip an
    exact tie SMA(fast) == SMA(slow) of the package's Kahan-summed rolling means take another side
    on that bar and are counted apart. Returns False when a strategy without such a flip
    disagrees."""
    from admf_assets.core.sparse import decode_dense

    n = len(fast)
    tie_bars = fused.side_differences(close, fast, slow, decode_dense(rows, missing=np.int8(0)))
    flips = tie_bars > 0
    same_all = np.ones(n, dtype=bool)
    wrong = []
    for name in fused.METRICS:
        mine, theirs = result[name], ours[name].to_numpy()
        if name == "total_trades":
            same = mine == theirs
        else:
            same = np.isclose(mine, theirs, rtol=1e-9, atol=1e-12, equal_nan=True)
        same_all &= same
        if np.any(~same & ~flips):
            wrong.append(f"{name} for {int(np.sum(~same & ~flips))}")
    print(f"agreement fused reference / compute_metrics, nine metrics (rtol 1e-9, counts exact): all nine equal for "
          f"{int(same_all.sum())}/{n}; {int(flips.sum())} strategies take another side on {int(tie_bars.sum())} bars in all "
          f"({int((same_all & flips).sum())} of them still equal; cumulative-sum moving averages flip exact ties "
          "SMA(fast) == SMA(slow)); " + ("no other difference" if not wrong else "DIFFERENT without a tie flip: " + ", ".join(wrong)))
    return not wrong


# --------------------------------------------------------------------------- vectorbt worker


def vectorbt_worker(in_path: str, out_path: str) -> None:
    """Run in the vectorbt interpreter: no admf_assets import here."""
    import pandas as pd
    import vectorbt as vbt

    data = np.load(in_path)
    close = pd.Series(data["close"], index=pd.date_range("2025-01-01", periods=data["close"].size, freq="5min"))
    fast, slow = data["fast"].astype(int), data["slow"].astype(int)
    fees, slippage, repeat = float(data["fees"]), float(data["slippage"]), int(data["repeat"])
    timings = []

    def stats(pf):
        trades = pf.trades.closed
        return {
            "total_return": pf.total_return().to_numpy(),
            "sharpe": pf.sharpe_ratio().to_numpy(),
            "max_drawdown": -pf.max_drawdown().to_numpy(),
            "trades": trades.count().to_numpy().astype(float),
            "win_rate": trades.win_rate().to_numpy(),
        }

    def frame(mask):
        return pd.DataFrame(mask, index=close.index)

    for rep in range(repeat + 1):  # the timed runs: vectorbt's own moving averages, long/short, costs
        if rep == 0:  # warm-up on two strategies: vectorbt's numba functions compile on first use
            fast_, slow_ = fast[:2], slow[:2]
        else:
            fast_, slow_ = fast, slow
        t0 = time.perf_counter()
        f = vbt.MA.run(close, window=list(fast_), short_name="fast").ma.to_numpy()
        s = vbt.MA.run(close, window=list(slow_), short_name="slow").ma.to_numpy()
        valid = ~(np.isnan(f) | np.isnan(s))
        long_, short_ = valid & (f > s), valid & ~(f > s)
        pf = vbt.Portfolio.from_signals(close, entries=frame(long_), short_entries=frame(short_), fees=fees,
                                        slippage=slippage, freq="5min", upon_opposite_entry="Reverse")
        result = stats(pf)
        if rep:
            timings.append(time.perf_counter() - t0)
    # bars where vectorbt's moving averages give another side than this package's
    ours = data["positions"].T  # (T, n) int8: +1 / -1 / 0 before the first value
    tie_bars = np.sum(long_ != (ours == 1), axis=0)
    # the package's own positions through vectorbt: (1) long-only without costs, where the
    # conventions coincide; (2) long/short with the benchmark's costs
    exact = stats(vbt.Portfolio.from_signals(close, entries=frame(ours == 1), exits=frame(ours == -1), freq="5min"))
    same = stats(vbt.Portfolio.from_signals(close, entries=frame(ours == 1), short_entries=frame(ours == -1), fees=fees,
                                            slippage=slippage, freq="5min", upon_opposite_entry="Reverse"))
    np.savez(
        out_path,
        timings=np.array(timings),
        peak_mb=peak_mb(),
        version=vbt.__version__,
        tie_bars=tie_bars,
        **{k: v for k, v in result.items()},
        **{f"exact_{k}": v for k, v in exact.items()},
        **{f"same_{k}": v for k, v in same.items()},
    )


# --------------------------------------------------------------------------- stages


def evaluation_core(bars, configs, close, day, costs, chunk_size):
    from admf_assets.core.engine import strategy_rows
    from admf_assets.core.indicators import IndicatorCache
    from admf_assets.core.metrics import compute_metrics

    cache = IndicatorCache(bars)  # fresh: indicator cost is part of every run
    rows = strategy_rows(bars, configs, chunk_size=chunk_size, cache=cache)
    metrics = compute_metrics(rows, close, day, costs)
    return rows, metrics


def end_to_end(out: Path, bars, configs, costs, chunk_size: int, symbol: str = "SPY", timeframe: str = "5m") -> int:
    """What ``admf traces`` writes, from scratch: :func:`admf_assets.core.research.write_trace_set`
    (one evaluation of the configurations ordered by type, one trace file per type written by
    ``TraceFileWriter`` on three threads while the main thread computes every metric and builds
    ``strategy_index.parquet`` with the headline metrics), without classifier files (the issue's
    stage is the strategies' traces and index). Returns the number of change rows written."""
    from admf_assets.core.research import write_trace_set

    summary = write_trace_set(bars, configs, (), out, symbol=symbol, timeframe=timeframe, chunk_size=chunk_size, costs=costs)
    return summary["change_rows"]


def compare_ma(args, bars, close, day, costs) -> None:
    """Same MA-crossover grid: this package vs plain NumPy vs the fused reference (1 and 2 numba
    threads) vs vectorbt, with agreement checks."""
    import numba

    configs = ma_configs(args.compare_strategies)
    n = len(configs)
    fast = np.array([c.params["fast_period"] for c in configs])
    slow = np.array([c.params["slow_period"] for c in configs])
    print(f"\nMA-crossover race: {n} ma_crossover strategies (fast {fast.min()}..{fast.max()}, slow {slow.min()}..{slow.max()}), "
          f"costs {costs.commission_bps} + {costs.slippage_bps} bps per side")
    fused = load_fused_reference()
    t0 = time.perf_counter()
    fused.fused_ma_crossover(close[:300], day[:300], fast[:2], slow[:2], costs.per_side)  # compile (not cached)
    print(f"fused reference: numba compile {time.perf_counter() - t0:.2f} s (not timed)")

    ours_t, numpy_t = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows, ours = evaluation_core(bars, configs, close, day, costs, args.chunk_size)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain = numpy_ma_crossover(close, day, fast, slow, costs.per_side)
        numpy_t.append(time.perf_counter() - t0)
    # the plain NumPy version follows the same conventions; its cumulative-sum moving averages
    # differ from the Kahan-summed rolling means in the last bits, which can flip exact ties
    # SMA(fast) == SMA(slow) on flat stretches of price (a tie means -1 here)
    same_tr = np.isclose(plain["total_return"], ours["total_return"], rtol=1e-9, atol=1e-12)
    same_n = plain["trades"] == ours["total_trades"].to_numpy()
    print(f"{'implementation':<34}{'median s':>9}{'min s':>9}{'max s':>9}{'strategies/s':>14}")
    print(summary("admf_assets (24 metrics)", ours_t, n))
    print(summary("plain NumPy (5 metrics)", numpy_t, n))
    fused1_t, _ = time_fused(fused, close, day, fast, slow, costs.per_side, 1, args.repeat)
    fused2_t, fused_res = time_fused(fused, close, day, fast, slow, costs.per_side, 2, args.repeat)
    print(summary("fused ref., 1 thread (9 metrics)", fused1_t, n))
    two = "2 threads" if numba.config.NUMBA_NUM_THREADS >= 2 else "2 threads: only 1"
    print(summary(f"fused ref., {two} (9 metrics)", fused2_t, n))
    rate = n / statistics.median(ours_t)
    print(f"ratio admf_assets / plain NumPy: {statistics.median(numpy_t) / statistics.median(ours_t):,.1f}x; "
          f"agreement: total return {same_tr.sum()}/{n}, trade counts {same_n.sum()}/{n} "
          "(the rest: cumulative-sum moving averages flip exact ties SMA(fast) == SMA(slow))")
    fused1, fused2 = n / statistics.median(fused1_t), n / statistics.median(fused2_t)
    print(f"ratio admf_assets / fused reference: {rate / fused2:,.2f}x (reference on 2 threads), "
          f"{rate / fused1:,.2f}x (reference on 1 thread)")
    issue1, issue2 = ISSUE_FUSED_RATES
    print(f"calibration: the issue's machine class: fused reference {issue1:,}/s on one core, {issue2:,}/s on two; "
          f"this machine: {fused1:,.0f}/s and {fused2:,.0f}/s (factor {fused2 / issue2:.2f} on two, {fused1 / issue1:.2f} on one)")
    if len(close) != ISSUE_BARS:
        print(f"  (the issue's figures are for the SPY 5-minute year, {ISSUE_BARS:,} bars; these bars: {len(close):,}, "
              "so the factor is not a machine comparison)")
    fused_ok = fused_agreement(fused, fused_res, ours, rows, close, fast, slow)
    compare_vectorbt(args, rows, ours, close, day, fast, slow, costs, rate)
    if not fused_ok:
        raise SystemExit("fused reference agreement check failed")


def compare_vectorbt(args, rows, ours, close, day, fast, slow, costs, rate) -> None:
    """The vectorbt part of :func:`compare_ma` (skipped without ``--vectorbt-python``)."""
    from admf_assets.core.metrics import CostModel, compute_metrics
    from admf_assets.core.sparse import decode_dense

    n = len(fast)
    python = args.vectorbt_python
    if not python or not Path(python).exists():
        print("vectorbt: skipped (give --vectorbt-python, an interpreter with vectorbt installed; bench/README.md)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, close=close, fast=fast, slow=slow, fees=costs.commission_bps / 1e4,
                 slippage=costs.slippage_bps / 1e4, repeat=args.vbt_repeat, positions=decode_dense(rows, missing=np.int8(0)))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([python, __file__, "--vectorbt-worker", str(src), str(dst)], check=True, env=env)
        vbt = dict(np.load(dst))
    vbt_t = list(vbt["timings"])
    print(summary(f"vectorbt {vbt['version']} (5 metrics)", vbt_t, n))
    print(f"vectorbt process peak resident memory: {float(vbt['peak_mb']):,.0f} MB")
    print(f"ratio admf_assets / vectorbt: {rate / (n / statistics.median(vbt_t)):,.0f}x")

    # vectorbt's rolling means differ from the Kahan-summed ones in the last bits: on exact ties
    # SMA(fast) == SMA(slow) the two can pick different sides
    ties = vbt["tie_bars"]
    same_n = np.sum(ours["total_trades"].to_numpy() == vbt["trades"].astype(np.int64))
    print(f"vectorbt's own moving averages: {int((ties > 0).sum())}/{n} strategies take another side on "
          f"{int(ties.sum())} bars in all (ties of the rolling means); closed-trade counts equal for {same_n}/{n}")
    # Agreement 1, identical conventions: this package's positions through vectorbt, long-only
    # without costs (vectorbt holds shares; a long from entry to exit earns exit/entry - 1 in both)
    long_rows = type(rows)(rows.series, rows.idx, np.maximum(rows.val, 0).astype(np.int8), rows.n_series, rows.n_bars)
    exact = compute_metrics(long_rows, close, day, CostModel(0.0, 0.0))
    tr_ok = np.allclose(exact["total_return"], vbt["exact_total_return"], rtol=1e-9, atol=1e-12)
    n_ok = np.array_equal(exact["total_trades"].to_numpy(), vbt["exact_trades"].astype(np.int64))
    worst = np.max(np.abs(exact["total_return"].to_numpy() - vbt["exact_total_return"]))
    print(f"agreement on the same positions, long-only without costs: total return {'equal' if tr_ok else 'DIFFERENT'} "
          f"for all {n} (max abs diff {worst:.1e}), closed-trade counts {'equal' if n_ok else 'DIFFERENT'}")
    # Agreement 2, the benchmarked long/short setup with costs on the same positions: trade counts
    # must match; total returns differ by the documented convention differences
    n_ok2 = np.array_equal(ours["total_trades"].to_numpy(), vbt["same_trades"].astype(np.int64))
    diff = ours["total_return"].to_numpy() - vbt["same_total_return"]
    print(f"agreement on the same positions, long/short with costs: closed-trade counts {'equal' if n_ok2 else 'DIFFERENT'} "
          f"for all {n}; total return differs by median {np.median(np.abs(diff)):.1e}, max {np.max(np.abs(diff)):.1e}\n"
          "  (fractions of capital over the year), because (a) a short here is rebalanced to -1 x equity every bar\n"
          "  (compounded bar returns) while vectorbt holds a fixed number of shorted shares from entry to exit, and\n"
          "  (b) costs here are bps of equity per unit of position traded, while vectorbt takes fees on the order\n"
          "  value, applies slippage to the fill price and sizes each order net of fees.")
    if not (tr_ok and n_ok and n_ok2):
        raise SystemExit("vectorbt agreement check failed")


def profile(which: str, bars, configs, close, day, costs, chunk_size: int) -> None:
    """pyinstrument profile of one run: this package's evaluation core (``core``) or end to end
    (``end-to-end``), or the NumPy reference implementation kept in the tests (``reference``, the
    code before the compiled core)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument (the bench venv, bench/README.md)") from None
    if which in ("core", "end-to-end"):
        evaluation_core(bars, configs[:20], close, day, costs, chunk_size)  # load the compiled kernels
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from admf_assets.core.engine import concat_rows
        from admf_assets.core.sparse import encode_sparse
        from tests.core import reference_metrics
        from tests.core.reference_indicators import IndicatorCache
        from tests.core.reference_strategies import iter_signal_chunks
    prof = Profiler(interval=0.0005)
    prof.start()
    if which == "core":
        evaluation_core(bars, configs, close, day, costs, chunk_size)
    elif which == "end-to-end":
        with tempfile.TemporaryDirectory() as tmp:
            end_to_end(Path(tmp), bars, configs, costs, chunk_size)
    else:
        parts, offsets = [], []
        for offset, block in iter_signal_chunks(bars, configs, chunk_size=chunk_size, cache=IndicatorCache(bars)):
            parts.append(encode_sparse(block))
            offsets.append(offset)
        rows = concat_rows(parts, len(configs), len(bars), offsets)
        reference_metrics.compute_metrics(rows, close, day, reference_metrics.CostModel(costs.commission_bps, costs.slippage_bps))
    prof.stop()
    print(prof.output_text(unicode=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", type=int, default=5000)
    parser.add_argument("--bars-file", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=128)
    parser.add_argument(
        "--compare-strategies", type=int, default=0,
        help="MA-crossover strategies in the race (default 0: the whole ma_crossover grid, 2,015; vectorbt then peaks near 14 GB)",
    )
    parser.add_argument("--vectorbt-python", default=os.environ.get("ADMF_BENCH_VBT_PYTHON", "/tmp/benchvenv/bin/python"))
    parser.add_argument("--vbt-repeat", type=int, default=1)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--profile", choices=("core", "end-to-end", "reference"), help="print a pyinstrument profile of one run and stop")
    parser.add_argument("--vectorbt-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vectorbt_worker:
        vectorbt_worker(*args.vectorbt_worker)
        return

    import numba

    from admf_assets.core.bars import bundled_sample_dir, read_bar_file, trading_dates, validate_bars
    from admf_assets.core.metrics import CostModel

    path = args.bars_file or (SHARED_YEAR if SHARED_YEAR.is_file() else bundled_sample_dir() / "SPY_5m.csv")
    bars, report = validate_bars(read_bar_file(path), source=str(path), session="regular")
    configs = build_configs(args.strategies)
    dates = np.asarray(trading_dates(bars["ts"]), dtype="datetime64[D]")
    _, day = np.unique(dates, return_inverse=True)
    day = day.astype(np.int64)
    close = bars["close"].to_numpy(dtype=np.float64)
    costs = CostModel()
    print(f"bars: {path} ({len(bars)} regular-session bars, {report.sessions} sessions)")
    print(f"strategies: {len(configs)} over {len({c.strategy_type for c in configs})} types; "
          f"{os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}")

    if args.profile:
        profile(args.profile, bars, configs, close, day, costs, args.chunk_size)
        return
    t0 = time.perf_counter()
    evaluation_core(bars, configs[:20], close, day, costs, args.chunk_size)  # load compiled kernels
    print(f"warm-up (load or compile the numba kernels): {time.perf_counter() - t0:.2f} s")

    core_t, e2e_t = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows, metrics = evaluation_core(bars, configs, close, day, costs, args.chunk_size)
        core_t.append(time.perf_counter() - t0)
        del rows, metrics
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            written = end_to_end(Path(tmp), bars, configs, costs, args.chunk_size)
            e2e_t.append(time.perf_counter() - t0)
    print(f"change rows: {written:,} (compression ratio {written / (len(bars) * len(configs)):.5f})")
    print(f"{'stage':<34}{'median s':>9}{'min s':>9}{'max s':>9}{'strategies/s':>14}")
    print(summary("evaluation core (no file I/O)", core_t, len(configs)))
    print(summary("end to end (traces + index)", e2e_t, len(configs)))
    print(f"peak resident memory: {peak_mb():,.0f} MB")
    print("load average (1/5/15 min; above 2 = other processes shared these 2 cores): "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if not args.skip_compare:
        compare_ma(args, bars, close, day, costs)


if __name__ == "__main__":
    main()
