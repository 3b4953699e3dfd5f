"""admf_assets: a Dagster data-asset platform for large strategy grid searches.

Pure computation (indicators, strategies, classifiers, trace encoding, hashing, metrics) lives in
:mod:`admf_assets.core` and imports no Dagster. Dagster wiring lives in :mod:`admf_assets.defs`
(loaded by :mod:`admf_assets.definitions`), shared Dagster-side code in :mod:`admf_assets.lib`, the
``admf`` command line in :mod:`admf_assets.cli`.
"""

__version__ = "0.1.0"
