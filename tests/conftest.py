"""Test session setup.

Partition definitions are fixed when ``admf_assets`` is imported (from ``ADMF_*`` variables), so
the environment is set here, before any test module imports the package: two symbols (AAPL, SPY)
of the bundled sample and a scratch workspace. Tests never read ``../shared``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SCRATCH = Path(tempfile.mkdtemp(prefix="admf-tests-"))
os.environ["ADMF_WORKSPACE"] = str(_SCRATCH / "workspace")
os.environ["ADMF_SYMBOLS"] = "AAPL,SPY"
os.environ["ADMF_START_DATE"] = "2025-06-04"
os.environ.pop("ADMF_LANDING_DIR", None)
os.environ.pop("ADMF_GRID", None)
os.environ.pop("DAGSTER_HOME", None)

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
