"""The run-history IO manager: stores a grid evaluation's publication frame in PostgreSQL's
``backtest_runs`` / ``performance_metrics`` (the tables of ``admf db upgrade``).

Publishing is optional: the embedded default has no PostgreSQL. It is switched on by
configuration alone, with ``ADMF_PUBLISH_HISTORY=1`` and ``ADMF_POSTGRES_URL`` (see
:func:`publish_enabled`); then the code location gains the ``backtest_history`` asset and the
``publish_history_job`` (``admf_assets/defs/history/``), and ``admf run`` runs it after the analytics.
"""

from __future__ import annotations

import os

import dagster as dg
import pandas as pd
from pydantic import Field

from admf_assets.history.publish import PUBLICATION_COLUMNS, publish_runs, published_runs
from admf_assets.history.repository import URL_ENV, make_engine

PUBLISH_ENV = "ADMF_PUBLISH_HISTORY"
"""Set to ``1`` (or ``true``/``yes``) to publish grid evaluations to the PostgreSQL run history."""


def publish_enabled() -> bool:
    """Whether ``ADMF_PUBLISH_HISTORY`` asks for publishing.

    Raises:
        dagster.DagsterInvalidConfigError: publishing is asked for but ``ADMF_POSTGRES_URL`` is unset.
    """
    wanted = os.environ.get(PUBLISH_ENV, "").strip().lower() in ("1", "true", "yes")
    if wanted and not os.environ.get(URL_ENV, "").strip():
        raise dg.DagsterInvalidConfigError(f"{PUBLISH_ENV} is set but {URL_ENV} is not; set the PostgreSQL URL", [], None)
    return wanted


class RunHistoryIOManager(dg.ConfigurableIOManager):
    """Writes a publication frame (:data:`admf_assets.history.publish.PUBLICATION_COLUMNS`, one row
    per strategy x symbol) to ``backtest_runs`` + ``performance_metrics`` in one transaction.
    Run ids are keyed by the Dagster run that computed the evaluation (``strategy_performance``),
    not by the publishing run: rows already stored under the same run ids (the same evaluation
    published again, in this or any later Dagster run) are replaced, never duplicated; a new
    evaluation adds new rows. A failure leaves the previous rows.

    Loading returns the runs of the evaluation first published most recently (a re-publication
    keeps its rows' ``created_at``).

    Raises (from ``handle_output``): ``admf_assets.history.repository.InvalidInputError`` for a
    malformed frame, ``DatabaseUnavailableError`` / ``SchemaMissingError`` when the server is
    unreachable or ``admf db upgrade`` was not run.
    """

    url: str = Field(description="postgresql+psycopg2:// URL of the run-history database; use dg.EnvVar('ADMF_POSTGRES_URL').")

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"RunHistoryIOManager stores a publication DataFrame, got {type(obj).__name__}")
        engine = make_engine(self.url)
        try:
            stored = publish_runs(engine, obj)
        finally:
            engine.dispose()
        symbols = sorted({s["symbol"] for s in obj["config_snapshot"]}) if len(obj) else []
        context.add_output_metadata(
            {
                "published_runs": dg.MetadataValue.int(stored),
                "symbols": dg.MetadataValue.text(", ".join(symbols)),
                "tables": dg.MetadataValue.text("backtest_runs, performance_metrics"),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        engine = make_engine(self.url)
        try:
            return published_runs(engine)
        finally:
            engine.dispose()


__all__ = ["PUBLICATION_COLUMNS", "PUBLISH_ENV", "RunHistoryIOManager", "publish_enabled"]
