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


# --------------------------------------------------------------------------------------------
# Tester report: find validation and totals, list --strategy, units, run duration
# --------------------------------------------------------------------------------------------


def _save_typed(engine, strategy_type, parameters, name=None, dagster_run_id=None, duration=None):
    snap = {"type": strategy_type, "parameters": parameters, "symbol": "SPY", "timeframe": "5m",
            "bars_path": "SPY_5m.csv"}
    run = NewRun(snapshot=snap, start_date=T0, end_date=T0 + timedelta(days=1), strategy_name=name,
                 dagster_run_id=dagster_run_id, execution_duration_seconds=duration)
    return repo.save_run(engine, run, {"sharpe_ratio": 0.5, "total_return": 0.1234, "max_drawdown": 0.0567,
                                       "total_trades": 3})


def test_find_rejects_unknown_type_and_parameter(clean, run_cli):
    _save(clean)
    typo = run_cli("history", "find", "--param", "perod=20")
    assert typo.exit_code == cli.EXIT_BAD_INPUT, typo.output
    line = _one_line_error(typo)
    assert "unknown parameter 'perod'" in line and "did you mean 'period'" in line and "std_dev" in line
    bad_type = run_cli("history", "find", "--param", "period=20", "--type", "bollinger_band")
    assert bad_type.exit_code == cli.EXIT_BAD_INPUT, bad_type.output
    line = _one_line_error(bad_type)
    assert "unknown strategy type 'bollinger_band'" in line and "bollinger_bands" in line and "rsi_extreme" in line
    wrong_param = run_cli("history", "find", "--param", "exit_level=50", "--type", "bollinger_bands")
    assert wrong_param.exit_code == cli.EXIT_BAD_INPUT
    assert "bollinger_bands has no parameter 'exit_level'; its parameters: period, std_dev" in _one_line_error(wrong_param)
    ok = run_cli("history", "find", "--param", "period=20", "--type", "bollinger_bands")
    assert ok.exit_code == 0 and "1 run(s) with period=20 type=bollinger_bands" in ok.stdout, ok.output


def test_find_alias_resolved_with_type(clean, run_cli):
    rid = _save_typed(clean, "momentum", {"period": 12})
    found = run_cli("history", "find", "--param", "sma_period=12", "--type", "momentum")
    assert found.exit_code == 0 and str(rid) in found.stdout, found.output
    untyped = run_cli("history", "find", "--param", "sma_period=12")
    assert untyped.exit_code == cli.EXIT_BAD_INPUT
    assert "alias of momentum's 'period'" in _one_line_error(untyped)


def test_find_limit_says_showing_n_of_total(clean, run_cli):
    for _ in range(10):
        _save(clean, period=20, std_dev=2.0)
    _save(clean, period=25)
    cut = run_cli("history", "find", "--param", "period=20", "--param", "std_dev=2.0", "--limit", 3)
    assert cut.exit_code == 0, cut.output
    assert "showing 3 of 10 run(s) with period=20 std_dev=2.0" in cut.stdout
    full = run_cli("history", "find", "--param", "period=20", "--limit", 10)
    assert "10 run(s) with period=20" in full.stdout and "showing" not in full.stdout
    assert repo.count_runs_by_params(clean, {"period": 20}) == 10


def test_list_strategy_accepts_name_or_type(clean, run_cli):
    rsi = _save_typed(clean, "rsi_extreme", {"period": 14}, name="SPY_5m_rsi_extreme_1a2b3c4d5e6f")
    boll = _save_typed(clean, "bollinger_bands", {"period": 20, "std_dev": 2.0}, name="SPY_5m_bollinger_bands_abc")
    by_type = run_cli("history", "list", "--strategy", "rsi_extreme")
    assert by_type.exit_code == 0, by_type.output
    assert str(rsi) in by_type.stdout and str(boll) not in by_type.stdout
    by_name = run_cli("history", "list", "--strategy", "SPY_5m_bollinger_bands_abc")
    assert str(boll) in by_name.stdout and str(rsi) not in by_name.stdout
    missing = run_cli("history", "list", "--strategy", "rsi_extrem")
    assert missing.exit_code == 0 and "0 run(s)" in missing.stdout
    assert "--strategy takes a full strategy name" in missing.stdout
    helped = run_cli("history", "list", "--help")
    assert "full strategy name" in " ".join(helped.stdout.split()) and "strategy type" in helped.stdout


def test_list_find_top_show_metrics_as_fractions(clean, run_cli):
    rid = _save_typed(clean, "bollinger_bands", {"period": 20, "std_dev": 2.0}, name="units")
    for args in (("history", "list"), ("history", "find", "--param", "period=20"), ("history", "top")):
        out = run_cli(*args)
        assert out.exit_code == 0, out.output
        text = out.stdout
        assert "0.1234" in text and "0.0567" in text, text
        assert "12.34%" not in text and "5.67%" not in text
        for column in ("total_return", "max_drawdown", "sharpe_ratio", "total_trades"):
            assert column in text
        assert "total_return and max_drawdown are fractions (0.1 = 10%)" in " ".join(text.split())
    shown = run_cli("history", "show", rid)
    assert "0.1234" in shown.stdout and "0.0567" in shown.stdout


def test_show_labels_what_the_duration_measures(clean, run_cli):
    single = _save_typed(clean, "bollinger_bands", {"period": 20, "std_dev": 2.0}, duration=0.42)
    published = _save_typed(clean, "bollinger_bands", {"period": 21, "std_dev": 2.0}, dagster_run_id="dagster-abc",
                            duration=0.000236777)
    one = run_cli("history", "show", single)
    assert one.exit_code == 0, one.output
    text = " ".join(one.stdout.split())
    assert "execution_duration_seconds" not in text
    assert "evaluation_seconds" in text and "0.42 (wall time of this run's evaluation" in text
    grid = run_cli("history", "show", published)
    text = " ".join(grid.stdout.split())
    assert "execution_duration_seconds" not in text and "evaluation_seconds" not in text
    assert "grid_seconds_per_strategy" in text and "0.000237 (wall time of the strategy_performance step" in text
    assert "dagster-abc" in text and "not this run's own time" in text
