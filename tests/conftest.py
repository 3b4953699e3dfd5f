"""Test session setup.

Partition definitions are fixed when ``admf_assets`` is imported (from ``ADMF_*`` variables), so
the environment is set here, before any test module imports the package: two symbols (AAPL, SPY)
of the bundled sample and a scratch workspace. Every other ``ADMF_*`` variable the package reads
is removed, so that a developer's shell (``ADMF_SIGNAL_STORE``, ``ADMF_PUBLISH_HISTORY``,
retention settings...) cannot change what the tests see; tests that need one set it themselves.
``ADMF_POSTGRES_URL`` is kept: the tests under ``tests/postgres/`` take the server from it.

Tests run on the bundled sample; only ``tests/core/test_bars_fast_path.py`` also reads files of
``../shared/data`` when present, and skips those cases (visibly, with the reason) otherwise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SCRATCH = Path(tempfile.mkdtemp(prefix="admf-tests-"))
os.environ["ADMF_WORKSPACE"] = str(_SCRATCH / "workspace")
os.environ["ADMF_SYMBOLS"] = "AAPL,SPY"
os.environ["ADMF_START_DATE"] = "2025-06-04"
# every other ADMF_* variable read by admf_assets (lib/settings.py, core/history_cache.py,
# history/, cli/) or by dagster_home/postgres/dagster.yaml; ADMF_POSTGRES_URL is kept on purpose
_UNSET = (
    "ADMF_LANDING_DIR",
    "ADMF_GRID",
    "ADMF_TIMEFRAME",
    "ADMF_CALENDAR",
    "ADMF_ARCHIVE_URL",
    "ADMF_RETAIN_BARS_DAYS",
    "ADMF_RETAIN_TRACES_DAYS",
    "ADMF_RETAIN_SUMMARIES_DAYS",
    "ADMF_STORAGE_WARN_BYTES",
    "ADMF_STORAGE_GROWTH_WARN_BYTES_PER_DAY",
    "ADMF_POSTGRES_WARN_BYTES",
    "ADMF_SIGNAL_STORE",
    "ADMF_PUBLISH_HISTORY",
    "ADMF_HISTORY_CACHE",
    "ADMF_DAGSTER_URL",
    "ADMF_PG_HOST",
    "ADMF_PG_PORT",
    "ADMF_PG_USER",
    "ADMF_PG_PASSWORD",
    "ADMF_PG_DB",
    "DAGSTER_HOME",
)
for _name in _UNSET:
    os.environ.pop(_name, None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def scratch() -> Path:
    """A per-session scratch folder (removed by the OS temp cleanup)."""
    return _SCRATCH


@pytest.fixture
def workspace_env(tmp_path) -> Path:
    """``ADMF_WORKSPACE`` pointed at a fresh folder for one test (restored afterwards), for code
    that rebuilds the code location from the environment, e.g. a job that ``dg.reconstructable``
    rebuilds in a launched run or a step subprocess."""
    old = os.environ.get("ADMF_WORKSPACE")
    workspace = tmp_path / "workspace"
    os.environ["ADMF_WORKSPACE"] = str(workspace)
    try:
        yield workspace
    finally:
        if old is None:
            os.environ.pop("ADMF_WORKSPACE", None)
        else:
            os.environ["ADMF_WORKSPACE"] = old
