"""Materialization metadata helpers: previews and Markdown tables shown in the Dagster UI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd


def markdown_table(df: pd.DataFrame, limit: int = 10, floatfmt: str = ".4g") -> dg.MetadataValue:
    """The first ``limit`` rows of ``df`` as a Markdown table (pandas ``to_markdown``/tabulate)."""
    return dg.MetadataValue.md(df.head(limit).to_markdown(index=False, floatfmt=floatfmt))


def path_value(path) -> dg.MetadataValue:
    """A file or folder path as path metadata."""
    return dg.MetadataValue.path(str(path))


PARTITION_METADATA_MAX = 64
"""Widest step (in partitions) whose partitions each get their own metadata."""


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[Any, Mapping[str, Any]]) -> bool:
    """Attach ``by_partition[key]`` to the materialization of partition ``key`` of the step's
    asset, when the step covers at most :data:`PARTITION_METADATA_MAX` partitions; returns
    whether it did.

    In a single-run range, Dagster copies the step's ``MaterializeResult`` metadata onto every
    partition, so per-partition figures (rows of that day, its file) need
    ``context.add_asset_metadata(..., partition_key=key)``. That call recomputes the step's whole
    partition range each time (5 to 8 ms for a year of three symbols), which would cost about 4 s
    per step on a 765-partition backfill: wider steps carry only their ``run_*`` totals.
    """
    if len(context.partition_keys) > PARTITION_METADATA_MAX:
        return False
    for key, metadata in by_partition.items():
        context.add_asset_metadata(dict(metadata), partition_key=key)
    return True
