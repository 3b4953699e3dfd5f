"""The whole asset graph through Dagster: N strategies x 3 symbols x one year, then one new day.

Builds a scratch landing folder, grid and workspace (nothing in the repository is touched), sets
the ``ADMF_*`` variables before the code location loads (partition definitions are fixed at load
time) and runs :func:`admf_assets.lib.pipeline.run_graph` in process, twice:

1. every trading day but the last one (bars, signal traces, classifier states of every day x
   symbol, then the analytics assets and the daily summaries);
2. the last trading day alone, after it lands (the "new trading day" a schedule would run): by
   default the same three runs through ``run_graph``; with ``--launched`` the schedule's own
   ``newest_trading_day_job`` and then ``daily_summary_job`` (what the automation sensor requests),
   each through ``dg.execute_job`` on a reconstructable job, so the code location's executor runs
   the steps as in a launched run, each run starting with the package's per-process memory empty
   as a run worker does (the run worker's own start, about 4 s of imports, is not timed).

Bars: the SPY 5-minute year of ``../shared/data/SPY_5m.csv`` (internal data, read in place). Only
SPY is real: the other symbols are SYNTHESIZED from it by scaling every price by a constant
(``SPYH`` = 0.5 x SPY, ``SPYD`` = 2 x SPY, same volume), which keeps the bars valid and the
computational load identical per symbol; their metrics carry no information.

    python bench/graph_throughput.py --strategies 5000 --symbols 3
    python bench/graph_throughput.py --strategies 500 --days 20        # a quick check
    python bench/graph_throughput.py --repeat 3                        # the new day 3 times: median, min, max
    python bench/graph_throughput.py --strategies 500 --days 20 --no-cache   # every day file read (ADMF_HISTORY_CACHE=0)
    python bench/graph_throughput.py --postgres-url postgresql+psycopg2://postgres@127.0.0.1:5432/postgres
    python bench/graph_throughput.py --launched --repeat 3             # the new day as the schedule launches it

The Dagster instance is the embedded default (SQLite run and event storage in a temp folder)
unless ``--postgres-url`` names a PostgreSQL server: then run, event log and schedule storage go to
a scratch database created on it for the run and dropped afterwards (the production setup of
``dagster_home/postgres``).

Before the graph and after the new day, the script prints the machine's speed at that moment:
the issue's fused reference (``bench/fused_reference.py``) over the MA-crossover grid of the
whole bars file on 2 threads, next to the issue's 17,700 strategies/s (the host's other core is
sometimes busy, which slows every two-thread figure by up to a quarter).

The readers go through the whole-history cache (``<workspace>/cache/history/``,
``admf_assets/core/history_cache.py``) unless ``--no-cache``; its size is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED_YEAR = HERE.parents[1] / "shared" / "data" / "SPY_5m.csv"
SYNTHETIC = (("SPYH", 0.5), ("SPYD", 2.0), ("SPYT", 3.0), ("SPYQ", 0.25))


def write_landing(landing: Path, bars: pd.DataFrame, symbols: list[tuple[str, float]], upto: pd.Timestamp | None) -> None:
    """One CSV per symbol (timestamp, OHLCV), bars before ``upto`` only when given."""
    landing.mkdir(parents=True, exist_ok=True)
    part = bars if upto is None else bars[bars["timestamp"] < upto]
    for symbol, scale in symbols:
        out = part.copy()
        for col in ("open", "high", "low", "close"):
            out[col] = (out[col] * scale).round(4)
        tmp = landing / f".{symbol}_5m.csv.tmp"
        out.to_csv(tmp, index=False)
        os.replace(tmp, landing / f"{symbol}_5m.csv")


def write_grid(path: Path, n: int) -> None:
    """The benchmark grid of ``bench/grid_throughput.py`` (N strategies over the nine types) as YAML,
    one entry per configuration."""
    import yaml

    sys.path.insert(0, str(HERE))
    from grid_throughput import build_configs

    entries = [{"type": c.strategy_type, "params": dict(c.params)} for c in build_configs(n)]
    path.write_text(yaml.safe_dump({"timeframe": "5m", "strategies": entries}, sort_keys=False))


@contextlib.contextmanager
def scratch_database(server_url: str | None):
    """A new empty database on the PostgreSQL server ``server_url`` (its URL), dropped on exit;
    ``None`` when no server is given."""
    if not server_url:
        yield None
        return
    import uuid

    import sqlalchemy as sa

    name = f"admf_graph_bench_{uuid.uuid4().hex[:12]}"  # a generated identifier, never user input
    admin = sa.create_engine(sa.make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run_summary(instance, results) -> str:
    """``job wall s / events`` of every run: the run's wall time from Dagster's run statistics and
    the number of events it stored in the instance's event log."""
    parts = []
    for name, result in results.items():
        stats = instance.get_run_stats(result.run_id)
        wall = (stats.end_time or 0.0) - (stats.start_time or 0.0)
        parts.append(f"{name} {wall:.1f} s / {len(instance.all_logs(result.run_id))} events")
    return ", ".join(parts)


def step_times(instance, results) -> str:
    """``step s, ...`` of every step of the runs, from Dagster's step statistics (wall seconds)."""
    parts = []
    for result in results.values():
        for stat in instance.get_run_step_stats(result.run_id):
            if stat.start_time is not None and stat.end_time is not None:
                parts.append(f"{stat.step_key} {stat.end_time - stat.start_time:.1f} s")
    return ", ".join(parts)


def machine_calibration(bars_file: Path, repeat: int = 5) -> str:
    """The issue's fused reference (``bench/fused_reference.py``) over the 2,015-strategy
    MA-crossover grid on the regular-session bars of ``bars_file`` (the whole file, whatever
    ``--days`` says; as ``grid_throughput.py`` reads them), 2 numba threads, median of ``repeat``: the machine's speed at
    the moment (the issue's machine class: 17,700 strategies/s on two cores), printed before and
    after the graph so runs of different sessions, or of a host whose other core is busy, can be
    compared. Its compile time is not timed."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from grid_throughput import ISSUE_FUSED_RATES, load_fused_reference, ma_configs, time_fused

    fused = load_fused_reference()
    configs = ma_configs(0)
    fast = np.array([c.params["fast_period"] for c in configs])
    slow = np.array([c.params["slow_period"] for c in configs])
    from admf_assets.core.bars import read_bar_file, trading_dates, validate_bars

    bars, _ = validate_bars(read_bar_file(bars_file), source=str(bars_file), session="regular")
    close = bars["close"].to_numpy(dtype=np.float64)
    day = np.unique(np.asarray(trading_dates(bars["ts"]), dtype="datetime64[D]"), return_inverse=True)[1].astype(np.int64)
    fused.fused_ma_crossover(close[:300], day[:300], fast[:2], slow[:2], 1.5e-4)  # compile
    times, _ = time_fused(fused, close, day, fast, slow, 1.5e-4, threads=2, repeat=repeat)
    rate = len(configs) / statistics.median(times)
    return (f"machine: fused reference {rate:,.0f} strategies/s on 2 threads ({len(configs):,} MA crossovers, "
            f"{len(close):,} bars; the issue's machine class: {ISSUE_FUSED_RATES[1]:,}/s, factor {rate / ISSUE_FUSED_RATES[1]:.2f})")


def launched_job(name: str):
    """The code location's job ``name`` as a run worker loads it: definitions from
    ``admf_assets.definitions`` (its default executor included), resources from the ``ADMF_*``
    environment set by :func:`main` (module level, for ``dg.reconstructable``)."""
    from admf_assets.lib.pipeline import code_location
    from admf_assets.lib.settings import Settings

    return code_location(Settings.from_env()).resolve_job_def(name)


def newest_trading_day_job():
    """The schedule's job, as :func:`launched_job` loads it (``dg.reconstructable`` target)."""
    return launched_job("newest_trading_day_job")


def daily_summary_job():
    """The daily summaries' job, as :func:`launched_job` loads it (``dg.reconstructable`` target)."""
    return launched_job("daily_summary_job")


def forget_process_memory() -> None:
    """Empty the package's per-process memory (the history cache's files, ``load_series``'
    series, the landing files' parse), as a run worker the daemon launches starts: without this,
    runs executed in this benchmark's process would find what earlier runs left there."""
    from admf_assets.core import bars, history_cache, store

    with history_cache._memo_lock:
        history_cache._memo.clear()
    store._series_cache.clear()
    bars._clear_load_memo()


def launch_new_day(instance, day) -> dict:
    """The new day as the schedule and the automation sensor run it: ``newest_trading_day_job``
    (market data + analytics, the schedule's job) and then ``daily_summary_job`` for the day,
    each launched with ``dg.execute_job`` on a reconstructable job (the code location's executor,
    as a run worker uses it) instead of ``execute_in_process``. Returns ``{job: result}``."""
    import dagster as dg

    from admf_assets.lib.partitions import day_range_tags, range_tags

    results = {}
    for fn, tags in ((newest_trading_day_job, range_tags(day, day)), (daily_summary_job, day_range_tags(day, day))):
        forget_process_memory()  # each launched run is a fresh run-worker process
        with dg.execute_job(dg.reconstructable(fn), instance=instance, tags=tags) as result:
            results[fn.__name__] = result
    return results


def sampling_profiler():
    """A pyinstrument profiler sampling every millisecond (``--profile-year``, ``--profile-new-day``).

    Raises:
        SystemExit: pyinstrument is not installed (it is in the ``bench`` extra)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile-year and --profile-new-day need pyinstrument (pip install -e '.[bench]', bench/README.md)") from None
    return Profiler(interval=0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", type=int, default=5000)
    parser.add_argument("--symbols", type=int, default=3, help="SPY plus this many minus one synthetic symbols")
    parser.add_argument("--bars-file", type=Path, default=SHARED_YEAR)
    parser.add_argument("--days", type=int, default=None, help="use only the last N trading days of the file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print its path")
    parser.add_argument("--no-cache", action="store_true", help="turn the whole-history cache off (ADMF_HISTORY_CACHE=0)")
    parser.add_argument(
        "--batch-planned-events", action="store_true",
        help="Dagster's opt-in DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one planned event per asset and run "
        "instead of one per partition (a failed run then leaves its partitions unmarked instead of failed)",
    )
    parser.add_argument(
        "--postgres-url", default=None,
        help="PostgreSQL server for Dagster's instance storage (a scratch database is created and dropped); default SQLite",
    )
    parser.add_argument(
        "--launched", action="store_true",
        help="time the new day as the schedule launches it: newest_trading_day_job then daily_summary_job through "
        "dg.execute_job (the code location's executor) instead of run_graph's three execute_in_process runs",
    )
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="runs of the new trading day: the first after it lands, the others re-materialize it (median, min, max)",
    )
    parser.add_argument(
        "--profile-year", type=Path, default=None, metavar="FILE",
        help="run the year under pyinstrument (a sampling profiler, 1 ms) and write its text report to FILE; "
        "the year's time then includes the profiler's",
    )
    parser.add_argument(
        "--profile-new-day", type=Path, default=None, metavar="FILE",
        help="run the last new day under pyinstrument (a sampling profiler, 1 ms) and write its text report to FILE; "
        "that run's time then includes the profiler's",
    )
    args = parser.parse_args()
    if args.no_cache:
        os.environ["ADMF_HISTORY_CACHE"] = "0"
    if args.batch_planned_events:
        os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"

    raw = pd.read_csv(args.bars_file)
    raw.columns = [c.lower() for c in raw.columns]
    ts = pd.to_datetime(raw["timestamp"], utc=True)
    day = ts.dt.tz_convert("America/New_York").dt.date
    days = sorted(day.unique())
    if args.days:
        days = days[-args.days :]
        raw, ts, day = raw[day.isin(days)].reset_index(drop=True), ts[day.isin(days)].reset_index(drop=True), day[day.isin(days)]
    raw["timestamp"] = ts.dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    symbols = [("SPY", 1.0), *SYNTHETIC[: max(0, args.symbols - 1)]]
    last_start = pd.Timestamp(days[-1]).tz_localize("America/New_York").tz_convert("UTC")

    root = Path(tempfile.mkdtemp(prefix="admf-graph-bench-"))
    landing, grid = root / "landing", root / "grid.yaml"
    write_landing(landing, raw, symbols, upto=last_start.strftime("%Y-%m-%d %H:%M:%S+00:00"))
    write_grid(grid, args.strategies)
    os.environ.update(
        ADMF_WORKSPACE=str(root / "workspace"),
        ADMF_LANDING_DIR=str(landing),
        ADMF_GRID=str(grid),
        ADMF_SYMBOLS=",".join(s for s, _ in symbols),
        ADMF_START_DATE=str(days[0]),
        DAGSTER_HOME=str(root / "dagster_home"),
    )
    (root / "dagster_home").mkdir()

    import dagster as dg

    from admf_assets.lib.pipeline import run_graph
    from admf_assets.lib.settings import Settings

    settings = Settings.from_env()
    print(machine_calibration(args.bars_file))
    print(f"bars: {args.bars_file} ({len(days)} trading days), symbols {', '.join(s for s, _ in symbols)} "
          f"(only SPY is real; the others are SPY scaled by a constant), {args.strategies} strategies; scratch {root}")
    with scratch_database(args.postgres_url) as storage_url, dg.instance_for_test(
        overrides={"storage": {"postgres": {"postgres_url": storage_url}}} if storage_url else None
    ) as instance:
        print(f"Dagster instance storage: {type(instance.event_log_storage).__name__}")
        profiler = sampling_profiler() if args.profile_year else None
        t0 = time.perf_counter()
        if profiler:
            profiler.start()
        results = run_graph(instance, settings=settings, first_day=days[0], last_day=days[-2])
        full = time.perf_counter() - t0
        if profiler:
            profiler.stop()
            args.profile_year.write_text(profiler.output_text(unicode=True, show_all=False))
        ok = all(r.success for r in results.values())
        print(f"graph over {len(days) - 1} days x {len(symbols)} symbols: {full:.1f} s "
              f"({', '.join(results)}; {'all succeeded' if ok else 'FAILED'})")
        print(f"  steps: {step_times(instance, results)}; load average {os.getloadavg()[0]:.1f}")
        print(f"  runs: {run_summary(instance, results)}")
        write_landing(landing, raw, symbols, upto=None)
        new_day, ok2 = [], True
        for run in range(max(1, args.repeat)):
            profiler = sampling_profiler() if args.profile_new_day and run == max(1, args.repeat) - 1 else None
            t0 = time.perf_counter()
            if profiler:
                profiler.start()
            if args.launched:
                results = launch_new_day(instance, days[-1])
            else:
                results = run_graph(instance, settings=settings, first_day=days[-1], last_day=days[-1])
            new_day.append(time.perf_counter() - t0)  # the report is written after the clock stops
            if profiler:
                profiler.stop()
                args.profile_new_day.write_text(profiler.output_text(unicode=True, show_all=False))
            ok2 = ok2 and all(r.success for r in results.values())
            label = ("one new trading day" if run == 0 else "  the same day again") + (" (launched)" if args.launched else "")
            print(f"{label} ({days[-1]}) x {len(symbols)} symbols: {new_day[-1]:.1f} s ({'succeeded' if ok2 else 'FAILED'})")
            print(f"  steps: {step_times(instance, results)}; load average {os.getloadavg()[0]:.1f}")
            print(f"  runs: {run_summary(instance, results)}")
        if len(new_day) > 1:
            print(f"new day over {len(new_day)} runs: median {statistics.median(new_day):.1f} s, "
                  f"min {min(new_day):.1f} s, max {max(new_day):.1f} s")
    print(machine_calibration(args.bars_file))
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    cache = root / "workspace" / "cache" / "history"
    cache_files = [p for p in cache.rglob("*.arrow")] if cache.is_dir() else []
    print(f"history cache: {len(cache_files)} files, {sum(p.stat().st_size for p in cache_files) / 1e6:,.1f} MB under {cache}"
          + (" (turned off)" if args.no_cache else ""))
    if args.keep:
        print(f"kept {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    if not (ok and ok2):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
