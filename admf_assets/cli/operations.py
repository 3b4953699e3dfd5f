"""``admf archive ...`` and ``admf backfill``: retention, archive restore and partition backfills."""

import typer

archive_app = typer.Typer(no_args_is_help=True, help="Archive of partitions past retention: status and restore.")
