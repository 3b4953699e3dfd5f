"""One-line messages of `admf backfill` that name the cause."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from admf_assets.cli.main import app


def test_backfill_before_the_first_partition_names_the_partition_span():
    out = CliRunner().invoke(app, ["backfill", "--from", "2025-01-02", "--to", "2025-01-03"])
    assert out.exit_code == 2, out.output
    assert "no trading-day partition between 2025-01-02 and 2025-01-03: the partitions run from 2025-06-04 (ADMF_START_DATE)" in out.output


def test_backfill_through_an_unreachable_webserver_says_so():
    with socket.socket() as sock:  # a free local port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = CliRunner().invoke(app, ["backfill", "--from", "2025-06-04", "--to", "2025-06-05", "--graphql-url", f"http://127.0.0.1:{port}"])
    assert out.exit_code == 1, out.output
    assert f"cannot launch the backfill through http://127.0.0.1:{port}" in out.output
    assert "is the Dagster webserver running there?" in out.output
