"""``admf analytics ...``: the researcher's analytics queries over the DuckDB warehouse."""

import typer

analytics_app = typer.Typer(no_args_is_help=True, help="Analytics over the materialized warehouse: scan, parameter sensitivity, correlations, regime combinations.")
