"""Ten separate processes (multiprocessing spawn) saving at the same moment."""

from __future__ import annotations

import multiprocessing as mp
import queue
import uuid
from datetime import datetime, timezone

from sqlalchemy import text

N_PROCESSES = 10
T0 = datetime(2025, 6, 4, 13, 30, tzinfo=timezone.utc)


def _save_in_child(url: str, index: int, barrier, results) -> None:
    """Child process: own engine, wait for the others, save one run, report its id."""
    from admf_assets.history import repository as repo

    try:
        engine = repo.make_engine(url)
        snap = {"type": "bollinger_bands", "parameters": {"period": 10 + index, "std_dev": 2.0}, "symbol": "SPY",
                "timeframe": "5m", "bars_path": "SPY_5m.csv"}
        run = repo.NewRun(snapshot=snap, start_date=T0, end_date=T0, strategy_name=f"concurrent_{index}")
        # Validate the snapshot before the barrier so that all inserts start together.
        repo.validate_snapshot(snap)
        barrier.wait(timeout=60)
        run_id = repo.save_run(engine, run, {"sharpe_ratio": index / 10, "total_trades": index})
        engine.dispose()
        results.put(("ok", index, str(run_id)))
    except Exception as err:  # reported to the parent
        results.put(("error", index, f"{type(err).__name__}: {err}"))


def test_concurrent_saves_from_processes(clean, db_url):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=_save_in_child, args=(db_url, i, barrier, results)) for i in range(N_PROCESSES)]
    for p in procs:
        p.start()
    outcomes = []
    try:
        for _ in range(N_PROCESSES):
            outcomes.append(results.get(timeout=90))
    except queue.Empty:
        pass
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    errors = [o for o in outcomes if o[0] != "ok"]
    assert not errors, errors
    assert len(outcomes) == N_PROCESSES
    assert all(p.exitcode == 0 for p in procs)
    saved = {uuid.UUID(o[2]) for o in outcomes}
    assert len(saved) == N_PROCESSES
    with clean.connect() as conn:
        rows = conn.execute(text("SELECT run_id, strategy_name FROM backtest_runs")).all()
        n_metrics = conn.execute(text("SELECT count(*) FROM performance_metrics")).scalar_one()
    assert len(rows) == N_PROCESSES and n_metrics == N_PROCESSES
    assert {r.run_id for r in rows} == saved
    assert sorted(r.strategy_name for r in rows) == sorted(f"concurrent_{i}" for i in range(N_PROCESSES))
