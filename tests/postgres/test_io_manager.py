"""PostgresPandasIOManager against a real PostgreSQL database (a scratch database per module)."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from admf_assets.lib.postgres_io import PostgresPandasIOManager, UnsafeIdentifierError

DAYS = dg.StaticPartitionsDefinition(["2025-06-04", "2025-06-05"])
SCHEMA = "admf_io_test"


@pytest.fixture(scope="module")
def io_url(make_database) -> str:
    return make_database()


@pytest.fixture
def io_manager(io_url) -> PostgresPandasIOManager:
    return PostgresPandasIOManager(url=io_url, schema=SCHEMA)


def _rows(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), schema=SCHEMA, autoload_with=conn)
            return [tuple(r) for r in conn.execute(sa.select(t.c.partition_key, t.c.symbol, t.c.qty, t.c.px).order_by(t.c.partition_key, t.c.admf_row))]
    finally:
        engine.dispose()


def _asset(name: str, frame_for):
    @dg.asset(name=name, partitions_def=DAYS)
    def _a(context) -> pd.DataFrame:
        return frame_for(context.partition_key)

    return _a


def _frame(day: str, scale: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["AAPL", "SPY", "AAPL"],
            "qty": pd.Series([1, 2, 3], dtype="int64") * scale,
            "px": [1.5, float("nan"), 3.25],
            "ts": pd.to_datetime([f"{day} 13:30", f"{day} 13:35", f"{day} 13:40"], utc=True),
            "ok": [True, False, True],
        }
    )


def test_rematerializing_a_partition_replaces_it(io_manager, io_url):
    version = {"scale": 1}
    trades = _asset("trades", lambda day: _frame(day, version["scale"]))

    first = dg.materialize([trades], partition_key="2025-06-04", resources={"io_manager": io_manager})
    assert first.success
    dg.materialize([trades], partition_key="2025-06-05", resources={"io_manager": io_manager})
    version["scale"] = 10
    again = dg.materialize([trades], partition_key="2025-06-04", resources={"io_manager": io_manager})
    assert again.success

    rows = _rows(io_url, "trades")
    assert rows == [
        ("2025-06-04", "AAPL", 10, 1.5),
        ("2025-06-04", "SPY", 20, None),
        ("2025-06-04", "AAPL", 30, 3.25),
        ("2025-06-05", "AAPL", 1, 1.5),
        ("2025-06-05", "SPY", 2, None),
        ("2025-06-05", "AAPL", 3, 3.25),
    ]
    meta = again.asset_materializations_for_node("trades")[0].metadata
    assert meta["row_count"].value == 3
    assert meta["table"].value == f"{SCHEMA}.trades"


def test_failed_write_keeps_the_old_rows(io_manager, io_url):
    good = _asset("fills", _frame)
    assert dg.materialize([good], partition_key="2025-06-04", resources={"io_manager": io_manager}).success
    before = _rows(io_url, "fills")
    assert len(before) == 3

    # qty is BIGINT in the table: a text value fails inside the transaction, after the DELETE.
    bad = _asset("fills", lambda day: _frame(day).assign(qty=["1", "2", "not a number"]))
    result = dg.materialize([bad], partition_key="2025-06-04", resources={"io_manager": io_manager}, raise_on_error=False)
    assert not result.success
    assert _rows(io_url, "fills") == before


def test_insert_raising_inside_the_transaction_keeps_the_old_rows(io_manager, io_url, monkeypatch):
    good = _asset("quotes", _frame)
    assert dg.materialize([good], partition_key="2025-06-04", resources={"io_manager": io_manager}).success
    before = _rows(io_url, "quotes")

    real_execute = sa.engine.Connection.execute

    def execute(self, statement, *args, **kwargs):
        if isinstance(statement, sa.sql.dml.Insert) and statement.table.name == "quotes":
            real_execute(self, statement, *args, **kwargs)  # the rows are written, then the commit never happens
            raise RuntimeError("failure after the insert")
        return real_execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(sa.engine.Connection, "execute", execute)
    result = dg.materialize([_asset("quotes", lambda day: _frame(day, 5))], partition_key="2025-06-04",
                            resources={"io_manager": io_manager}, raise_on_error=False)
    monkeypatch.undo()
    assert not result.success
    assert _rows(io_url, "quotes") == before


def test_downstream_loads_the_partition_rows(io_manager):
    prices = _asset("prices", _frame)

    @dg.asset(partitions_def=DAYS, io_manager_key="mem")
    def price_summary(prices: pd.DataFrame) -> dict:
        return {"rows": len(prices), "qty": prices["qty"].tolist(), "px": prices["px"].tolist(), "ts": prices["ts"].tolist(),
                "ok": prices["ok"].tolist(), "columns": list(prices.columns)}

    resources = {"io_manager": io_manager, "mem": dg.InMemoryIOManager()}
    assert dg.materialize([prices], partition_key="2025-06-05", resources=resources).success
    assert dg.materialize([prices], partition_key="2025-06-04", resources=resources).success
    result = dg.materialize([prices.to_source_asset(), price_summary], partition_key="2025-06-05", resources=resources)
    assert result.success
    out = result.output_for_node("price_summary")
    assert out["columns"] == ["symbol", "qty", "px", "ts", "ok"]
    assert out["qty"] == [1, 2, 3]
    assert out["px"][0] == 1.5 and pd.isna(out["px"][1])
    assert out["ok"] == [True, False, True]
    assert pd.Timestamp(out["ts"][0]) == pd.Timestamp("2025-06-05 13:30", tz="UTC")


def test_unpartitioned_asset_replaces_all_rows(io_manager, io_url):
    n = {"rows": 3}

    @dg.asset
    def universe() -> pd.DataFrame:
        return pd.DataFrame({"symbol": ["AAPL", "SPY", "QQQ"][: n["rows"]]})

    @dg.asset(io_manager_key="mem")
    def universe_size(universe: pd.DataFrame) -> int:
        return len(universe)

    resources = {"io_manager": io_manager}
    dg.materialize([universe], resources=resources)
    n["rows"] = 2
    dg.materialize([universe], resources=resources)
    result = dg.materialize([universe.to_source_asset(), universe_size], resources={**resources, "mem": dg.InMemoryIOManager()})
    assert result.output_for_node("universe_size") == 2


@pytest.mark.parametrize(
    "key",
    [dg.AssetKey(['x"; DROP TABLE admf_io_test.trades; --']), dg.AssetKey(["a b"]), dg.AssetKey(["x" * 64])],
)
def test_hostile_asset_name_is_refused(io_manager, key):
    context = dg.build_output_context(asset_key=key)
    with pytest.raises(UnsafeIdentifierError):
        io_manager.handle_output(context, pd.DataFrame({"a": [1]}))
    with pytest.raises(UnsafeIdentifierError):
        io_manager.load_input(dg.build_input_context(asset_key=key))


def test_hostile_schema_and_column_are_refused(io_url):
    bad_schema = PostgresPandasIOManager(url=io_url, schema="admf; DROP SCHEMA public")
    with pytest.raises(UnsafeIdentifierError):
        bad_schema.handle_output(dg.build_output_context(asset_key=dg.AssetKey(["ok"])), pd.DataFrame({"a": [1]}))
    good = PostgresPandasIOManager(url=io_url, schema=SCHEMA)
    with pytest.raises(UnsafeIdentifierError):
        good.handle_output(dg.build_output_context(asset_key=dg.AssetKey(["ok"])), pd.DataFrame({'a") --': [1]}))


def test_url_from_env_var_and_bare_scheme(io_url, monkeypatch):
    bare = io_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    monkeypatch.setenv("ADMF_IO_TEST_URL", bare)
    manager = PostgresPandasIOManager(url=dg.EnvVar("ADMF_IO_TEST_URL"), schema=SCHEMA)
    result = dg.materialize([_asset("env_trades", _frame)], partition_key="2025-06-04", resources={"io_manager": manager})
    assert result.success
    assert len(_rows(io_url, "env_trades")) == 3
