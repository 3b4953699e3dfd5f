"""Materialization metadata helpers: previews and Markdown tables shown in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd


def markdown_table(df: pd.DataFrame, limit: int = 10, floatfmt: str = ".4g") -> dg.MetadataValue:
    """The first ``limit`` rows of ``df`` as a Markdown table (pandas ``to_markdown``/tabulate)."""
    return dg.MetadataValue.md(df.head(limit).to_markdown(index=False, floatfmt=floatfmt))


def path_value(path) -> dg.MetadataValue:
    """A file or folder path as path metadata."""
    return dg.MetadataValue.path(str(path))
