"""``admf history`` / ``admf db`` through typer's CliRunner against the real server."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import typer
from typer.testing import CliRunner

from admf_assets.cli import history as cli
from admf_assets.history import migrate
from admf_assets.history import repository as repo
from admf_assets.history.repository import NewRun

T0 = datetime(2025, 6, 4, 13, 30, tzinfo=timezone.utc)

app = typer.Typer()
app.add_typer(cli.history_app, name="history")
app.add_typer(cli.db_app, name="db")


@pytest.fixture
def run_cli(db_url):
    runner = CliRunner()

    def invoke(*args, url=db_url):
        return runner.invoke(app, [str(a) for a in args], env={"ADMF_POSTGRES_URL": url, "COLUMNS": "200"})

    return invoke


def _save(engine, name="cli", period=20, std_dev=2.0, run_id=None):
    snap = {"type": "bollinger_bands", "parameters": {"period": period, "std_dev": std_dev}, "symbol": "SPY",
            "timeframe": "5m", "bars_path": "SPY_5m.csv"}
    run = NewRun(snapshot=snap, start_date=T0, end_date=T0 + timedelta(days=1), strategy_name=name,
                 run_id=run_id or uuid.uuid4())
    return repo.save_run(engine, run, {"sharpe_ratio": 1.25, "total_return": 0.1, "total_trades": 7})


def _one_line_error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    return lines[0]


def test_list_pages_with_cursor(clean, run_cli):
    ids = {str(_save(clean, name=f"n{i % 2}")) for i in range(5)}
    first = run_cli("history", "list", "--limit", 3)
    assert first.exit_code == 0, first.output
    assert "next cursor:" in first.stdout
    token = first.stdout.split("next cursor:")[1].split()[0]
    second = run_cli("history", "list", "--limit", 3, "--cursor", token)
    assert second.exit_code == 0 and "(last page)" in second.stdout
    shown = {i for i in ids if i in first.stdout} | {i for i in ids if i in second.stdout}
    assert shown == ids
    assert not ({i for i in ids if i in first.stdout} & {i for i in ids if i in second.stdout})
    filtered = run_cli("history", "list", "--strategy", "n1")
    assert filtered.exit_code == 0 and "n0" not in filtered.stdout and "n1" in filtered.stdout
    bad = run_cli("history", "list", "--cursor", "garbage")
    assert bad.exit_code == cli.EXIT_BAD_INPUT
    _one_line_error(bad)


def test_show_compare_find(clean, run_cli):
    a = _save(clean, period=20, std_dev=2.0)
    b = _save(clean, period=25, std_dev=2.0)
    shown = run_cli("history", "show", a)
    assert shown.exit_code == 0, shown.output
    assert str(a) in shown.stdout and "sharpe_ratio" in shown.stdout and '"period": 20' in shown.stdout
    compared = run_cli("history", "compare", a, b)
    assert compared.exit_code == 0, compared.output
    assert str(a) in compared.stdout and str(b) in compared.stdout and "period=25" in compared.stdout
    found = run_cli("history", "find", "--param", "period=20", "--param", "std_dev=2.0")
    assert found.exit_code == 0, found.output
    assert str(a) in found.stdout and str(b) not in found.stdout
    assert run_cli("history", "find", "--param", "period").exit_code == cli.EXIT_BAD_INPUT
    assert run_cli("history", "compare", a).exit_code == cli.EXIT_BAD_INPUT
    top = run_cli("history", "top", "--limit", 1)
    assert top.exit_code == 0 and "1.25" in top.stdout


def test_unknown_run_id(clean, run_cli):
    missing = uuid.uuid4()
    result = run_cli("history", "show", missing)
    assert result.exit_code == cli.EXIT_RUN_NOT_FOUND == 6
    assert str(missing) in _one_line_error(result)
    a = _save(clean)
    assert run_cli("history", "compare", a, missing).exit_code == cli.EXIT_RUN_NOT_FOUND
    assert run_cli("history", "reproduce", missing).exit_code == cli.EXIT_RUN_NOT_FOUND
    malformed = run_cli("history", "show", "not-a-uuid")
    assert malformed.exit_code == cli.EXIT_BAD_INPUT
    _one_line_error(malformed)


def test_duplicate_run_exit_code(clean, run_cli):
    a = _save(clean)
    # Reproduce into an id that is already stored: the evaluation runs on --bars (the snapshot's
    # own bars path does not exist here) and the insert is refused as a duplicate.
    b = _save(clean)
    result = run_cli("history", "reproduce", a, "--new-run-id", b, "--bars", _small_bars_path())
    assert result.exit_code == cli.EXIT_DUPLICATE_RUN == 5, result.output
    assert "duplicate" in _one_line_error(result)


def _small_bars_path():
    from pathlib import Path

    import admf_assets

    return Path(admf_assets.__file__).parent / "sample_data" / "yahoo_5m_2025" / "SPY_5m.csv"


def test_database_down(run_cli):
    bad_url = "postgresql+psycopg2://postgres@127.0.0.1:1/admf"
    for args in (("history", "list"), ("history", "show", uuid.uuid4()), ("db", "upgrade")):
        result = run_cli(*args, url=bad_url)
        assert result.exit_code == cli.EXIT_DB_UNAVAILABLE == 4, result.output
        line = _one_line_error(result)
        assert "database unavailable" in line and "127.0.0.1:1" in line
    unset = run_cli("history", "list", url="")
    assert unset.exit_code == cli.EXIT_DB_UNAVAILABLE
    assert "ADMF_POSTGRES_URL" in _one_line_error(unset)


def test_exit_codes_distinct():
    codes = [cli.EXIT_BAD_INPUT, cli.EXIT_STORE, cli.EXIT_DB_UNAVAILABLE, cli.EXIT_DUPLICATE_RUN,
             cli.EXIT_RUN_NOT_FOUND, cli.EXIT_NOT_REPRODUCED]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes


def test_db_upgrade_downgrade_cli(make_database, run_cli):
    url = make_database()
    up = run_cli("db", "upgrade", url=url)
    head = migrate.head_revision()
    assert up.exit_code == 0 and head in up.stdout, up.output
    missing_schema_db = run_cli("db", "downgrade", "base", url=url)
    assert missing_schema_db.exit_code == 0 and "base" in missing_schema_db.stdout
    listed = run_cli("history", "list", url=url)
    assert listed.exit_code == cli.EXIT_STORE
    assert "admf db upgrade" in _one_line_error(listed)
    assert run_cli("db", "downgrade", "nosuchrev", url=url).exit_code == cli.EXIT_BAD_INPUT
    assert run_cli("db", "upgrade", url=url).exit_code == 0
    current = run_cli("db", "current", url=url)
    assert current.exit_code == 0 and current.stdout.startswith(head)
