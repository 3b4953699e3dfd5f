"""``landing_sensor``: new or changed bar files in the landing folder -> runs for the days they cover.

The cursor is JSON ``{file name: "<mtime_ns>:<size>"}`` of the landing folder's bar files (the
files' fingerprints). A tick compares the folder with the cursor; for new or changed files it
loads the affected symbols' bars (validated, regular session), takes the trading days they cover
on which EVERY configured symbol has bars (a ``date|symbol`` run covers all symbols) and requests
``newest_trading_day_job`` (bars, traces, classifier states, analytics) once per contiguous range
of those days: as few runs as the single-run backfill policies allow. With no cursor yet (first
tick), only days whose bars are not stored yet are requested, so turning the sensor on over an
existing workspace does not recompute everything.

Ordering: a day's traces are computed from every stored bar up to that day, so the runs of one
tick must run oldest range first and one at a time. The run requests are returned oldest range
first; the sensor daemon submits them in that order (unless ``sensors: num_submit_workers`` is
set in ``dagster.yaml``, which submits them in parallel), the queued run coordinator starts
queued runs in submission order, and the ``admf/writes: market_data`` tag of
``newest_trading_day_job`` with the limit of 1 in ``dagster_home/dagster.yaml`` keeps a later
range from starting before the earlier one has finished. If an earlier range fails, the later
ones still run (over the bars stored so far): re-run the failed range, then the later ones.

The daily summaries of the days a run materialized are requested afterwards by
``admf_automation_sensor`` (``newest_trading_day_job`` does not include ``daily_signal_summary``),
older days included.
"""


import datetime as dt
import hashlib
import json

import dagster as dg
import numpy as np

from admf_assets.core.bars import BarValidationError, discover_bar_files, load_symbol_bars, trading_dates
from admf_assets.core.store import partition_sources
from admf_assets.defs.pipeline.jobs import newest_trading_day_job
from admf_assets.lib.partitions import contiguous_ranges, range_tags, symbols, trading_days
from admf_assets.lib.resources import AdmfWorkspace


def landing_fingerprints(landing_dir: str) -> dict[str, str]:
    """``{file name: "<mtime_ns>:<size>"}`` of the bar files directly in ``landing_dir``.

    Raises:
        FileNotFoundError: the landing folder (or a file listed a moment ago) does not exist.
        admf_assets.core.bars.BarValidationError: the folder's files cannot be grouped by symbol
            (see :func:`admf_assets.core.bars.discover_bar_files`).
    """
    out = {}
    for files in discover_bar_files(landing_dir).values():
        for path in files:
            st = path.stat()
            out[path.name] = f"{st.st_mtime_ns}:{st.st_size}"
    return dict(sorted(out.items()))


def _symbol_days(landing_dir: str, symbol: str, calendar: str) -> set[dt.date]:
    bars, _ = load_symbol_bars(landing_dir, symbol, calendar=calendar)
    days = np.unique(np.asarray(trading_dates(bars["ts"], calendar), dtype="datetime64[D]"))
    return {d.astype(dt.date) for d in days}


@dg.sensor(
    job=newest_trading_day_job,
    minimum_interval_seconds=300,
    description="Materializes the trading days covered by new or changed bar files in the landing folder (ADMF_LANDING_DIR).",
)
def landing_sensor(context: dg.SensorEvaluationContext, workspace: AdmfWorkspace):
    """Run requests (``date|symbol`` range tags, run key ``landing-<first>-<last>-<digest>``) for
    the trading days of new or changed landing files; see the module docstring."""
    try:
        current = landing_fingerprints(workspace.landing_dir)
    except (FileNotFoundError, BarValidationError) as err:
        return dg.SkipReason(f"landing folder unreadable: {err}")
    previous = json.loads(context.cursor) if context.cursor else None
    changed = sorted(name for name, fp in current.items() if previous is None or previous.get(name) != fp)
    if not changed:
        return dg.SkipReason(f"no new or changed bar files in {workspace.landing_dir}")
    by_symbol = discover_bar_files(workspace.landing_dir)
    touched = sorted(s for s, files in by_symbol.items() if any(p.name in changed for p in files))
    configured = symbols.get_partition_keys()
    try:
        covered = {s: _symbol_days(workspace.landing_dir, s, workspace.calendar) for s in configured if s in by_symbol}
    except BarValidationError as err:
        # keep the old cursor: the file is looked at again once fixed
        return dg.SkipReason(f"invalid landing file, nothing requested: {err}")
    if set(covered) != set(configured):
        missing = sorted(set(configured) - set(covered))
        return dg.SkipReason(f"no landing file for symbol(s) {', '.join(missing)} in {workspace.landing_dir}")
    common = set.intersection(*covered.values())
    wanted = set()
    for s in touched:
        if s in covered:
            wanted |= covered[s] & common
    if previous is None:
        stored = set.intersection(*(set(partition_sources(workspace.layout, "bars", s, workspace.timeframe)) for s in configured))
        wanted -= stored
    keys = trading_days.get_partition_keys()
    known = set(keys)
    wanted_keys = sorted(d.isoformat() for d in wanted if d.isoformat() in known)
    cursor = json.dumps(current, sort_keys=True)
    if not wanted_keys:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"{len(changed)} changed file(s), no new trading day to materialize"), cursor=cursor)
    digest = hashlib.sha256(json.dumps({n: current[n] for n in changed}, sort_keys=True).encode()).hexdigest()[:10]
    requests = []
    # oldest range first: each day's traces are computed from all earlier bars, and the runs
    # (tag admf/writes=market_data, limit 1) start in the order they are submitted
    for first, last in contiguous_ranges(wanted_keys, keys):
        requests.append(
            dg.RunRequest(
                run_key=f"landing-{first}-{last}-{digest}",
                tags={**range_tags(dt.date.fromisoformat(first), dt.date.fromisoformat(last)), "admf/landing_files": ",".join(changed)[:1000]},
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.definitions
def landing_defs() -> dg.Definitions:
    return dg.Definitions(sensors=[landing_sensor])
