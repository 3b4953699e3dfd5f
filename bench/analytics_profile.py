"""Time the core functions behind the analytics assets on an existing workspace (no Dagster).

For each series with signal traces: ``read_bar_history``, ``load_series`` (bars + signal traces),
``performance_table`` (compute_metrics), ``series_daily_returns`` + ``overfitting_tables`` (DSR,
PBO), the classifier traces + ``regime_table`` and ``daily_summary_table`` for the last day: the
work of ``strategy_performance``, ``regime_performance`` and ``daily_signal_summary`` without
their DuckDB writes and charts. Use a workspace kept by ``graph_throughput.py --keep``.

The reads go through the whole-history cache (``<workspace>/cache/history/``, see
``admf_assets/core/history_cache.py``) as the assets' do; ``--no-cache`` reads every day file
instead (``ADMF_HISTORY_CACHE=0``), ``--drop-cache`` deletes the cache first (the first series
read then pays the rebuild).

    python bench/analytics_profile.py --workspace /tmp/admf-graph-bench-XXXX/workspace [--cprofile 25] [--no-cache | --drop-cache]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--timeframe", default="5m")
    parser.add_argument("--cprofile", type=int, default=0, help="print this many functions by own time")
    parser.add_argument("--no-cache", action="store_true", help="read every day file (ADMF_HISTORY_CACHE=0)")
    parser.add_argument("--drop-cache", action="store_true", help="delete <workspace>/cache/history first")
    args = parser.parse_args()
    if args.no_cache:
        os.environ["ADMF_HISTORY_CACHE"] = "0"
    if args.drop_cache:
        import shutil

        shutil.rmtree(args.workspace / "cache" / "history", ignore_errors=True)

    from admf_assets.core.analytics import (
        daily_summary_table,
        overfitting_tables,
        performance_table,
        regime_table,
        series_daily_returns,
    )
    from admf_assets.core.layout import WorkspaceLayout
    from admf_assets.core.metrics import CostModel
    from admf_assets.core.store import load_series, read_bar_history, read_trace_history, series_with_traces

    layout = WorkspaceLayout(args.workspace)
    costs = CostModel()
    times: dict[str, list[float]] = defaultdict(list)
    prof = cProfile.Profile() if args.cprofile else None

    def timed(name, fn, *a):
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        out = fn(*a)
        if prof:
            prof.disable()
        times[name].append(time.perf_counter() - t0)
        return out

    for symbol, timeframe in series_with_traces(layout, args.timeframe):
        timed("read_bar_history", read_bar_history, layout, symbol, timeframe)
        history, traces = timed("load_series", load_series, layout, symbol, timeframe)
        perf = timed("performance_table", performance_table, layout, history, traces, costs)
        daily = timed("series_daily_returns", series_daily_returns, history, traces, costs)
        timed("overfitting_tables", overfitting_tables, daily, perf, symbol, timeframe)
        states = timed("read classifier traces", read_trace_history, layout, history, "classifiers")
        timed("regime_table", regime_table, history, traces, states, costs)
        timed("daily_summary_table (last day)", daily_summary_table, history, traces, costs, [history.days[-1]])
        print(f"{symbol}_{timeframe}: {len(traces.configs)} strategies, {len(history.bars)} bars, "
              f"{len(traces.rows)} change rows, {len(history.days)} days")
    print(f"load average {os.getloadavg()[0]:.1f}; history cache {'off' if args.no_cache else 'on'}")
    for name, values in times.items():
        print(f"  {name:32s} {sum(values):7.2f} s over {len(values)} series ({', '.join(f'{v:.2f}' for v in values)})")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
