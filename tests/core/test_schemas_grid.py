"""Parameter schemas, normalisation, hashing and grid expansion (admf_assets.core.schemas / grid)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from admf_assets.core.config import ClassifierConfig, StrategyConfig
from admf_assets.core.grid import (
    DEFAULT_CLASSIFIERS,
    Grid,
    default_grid_path,
    expand_values,
    load_grid,
    parse_grid,
)
from admf_assets.core.schemas import (
    CLASSIFIER_SCHEMAS,
    STRATEGY_SCHEMAS,
    GridError,
    make_classifier,
    make_strategy,
    normalize_parameters,
)

NINE_TYPES = {
    "sma_crossover",
    "ma_crossover",
    "bollinger_bands",
    "bollinger_breakout",
    "rsi_bands",
    "rsi_threshold",
    "rsi_extreme",
    "momentum_breakout",
    "momentum",
}


# ------------------------------------------------------------------------------ schemas


def test_schema_files_cover_every_type():
    assert set(STRATEGY_SCHEMAS) == NINE_TYPES
    assert set(CLASSIFIER_SCHEMAS) == {"trend", "volatility", "momentum_regime"}
    schema_dir = Path(__file__).resolve().parents[2] / "admf_assets" / "core" / "schemas"
    assert len(list(schema_dir.glob("*.json"))) == 12
    for schema in [*STRATEGY_SCHEMAS.values(), *CLASSIFIER_SCHEMAS.values()]:
        assert schema["additionalProperties"] is False
        for spec in schema["properties"].values():
            assert spec["type"] in ("integer", "number")
            assert "default" in spec


@pytest.mark.parametrize(
    "type_name, expected",
    [
        ("sma_crossover", {"fast_period": 10, "slow_period": 20}),
        ("ma_crossover", {"fast_period": 5, "slow_period": 20}),
        ("bollinger_bands", {"period": 20, "std_dev": 2.0}),
        ("bollinger_breakout", {"period": 20, "std_dev": 2.0}),
        ("rsi_bands", {"period": 14, "oversold": 30.0, "overbought": 70.0}),
        ("rsi_threshold", {"period": 14, "threshold": 50.0}),
        ("rsi_extreme", {"period": 14, "oversold": 30.0, "overbought": 70.0, "exit_level": 50.0}),
        ("momentum_breakout", {"period": 10, "threshold": 0.02}),
        ("momentum", {"period": 14}),
    ],
)
def test_strategy_defaults(type_name, expected):
    params = normalize_parameters(type_name, {})
    assert params == expected
    for name, value in params.items():
        kind = STRATEGY_SCHEMAS[type_name]["properties"][name]["type"]
        assert type(value) is (int if kind == "integer" else float), (name, value)


def test_classifier_defaults():
    assert make_classifier("trend").params == {"fast_period": 10, "slow_period": 50, "threshold": 0.02}
    assert make_classifier("volatility").params == {"atr_period": 14, "lookback": 50, "high": 1.5, "low": 0.5}
    assert make_classifier("momentum_regime").params == {
        "rsi_period": 14,
        "momentum_period": 10,
        "threshold": 0.01,
    }
    assert [c.classifier_type for c in DEFAULT_CLASSIFIERS] == ["trend", "volatility", "momentum_regime"]
    assert all(isinstance(c, ClassifierConfig) for c in DEFAULT_CLASSIFIERS)


def test_cast_to_schema_types():
    p = normalize_parameters("bollinger_bands", {"period": 20.0, "std_dev": 2})
    assert p == {"period": 20, "std_dev": 2.0}
    assert type(p["period"]) is int and type(p["std_dev"]) is float
    with pytest.raises(GridError, match="period"):
        normalize_parameters("bollinger_bands", {"period": 20.5})
    with pytest.raises(GridError, match="period"):
        normalize_parameters("bollinger_bands", {"period": True})
    with pytest.raises(GridError, match="period"):
        normalize_parameters("bollinger_bands", {"period": "20"})
    with pytest.raises(GridError, match="std_dev"):
        normalize_parameters("bollinger_bands", {"std_dev": float("nan")})


def test_all_problems_reported_with_where():
    with pytest.raises(GridError) as info:
        normalize_parameters(
            "rsi_bands",
            {"period": 0, "oversold": -5, "overbought": 150, "bogus": 1},
            where="grid.yaml: strategies[3] (rsi_bands)",
        )
    msg = str(info.value)
    assert msg.startswith("grid.yaml: strategies[3] (rsi_bands)")
    for name in ("'period'", "'oversold'", "'overbought'", "'bogus'"):
        assert name in msg
    assert "4 problems" in msg


@pytest.mark.parametrize(
    "type_name, params, parameter",
    [
        ("bollinger_bands", {"std_dev": 0}, "std_dev"),
        ("momentum_breakout", {"threshold": -0.01}, "threshold"),
        ("rsi_threshold", {"threshold": 101}, "threshold"),
        ("rsi_extreme", {"exit_level": -1}, "exit_level"),
        ("sma_crossover", {"fast_period": 0}, "fast_period"),
        ("momentum", {"lookback": 3}, "lookback"),
    ],
)
def test_schema_ranges(type_name, params, parameter):
    with pytest.raises(GridError, match=parameter):
        make_strategy(type_name, params)


@pytest.mark.parametrize(
    "type_name, params, rule",
    [
        ("sma_crossover", {"fast_period": 20, "slow_period": 20}, "fast_period >= slow_period"),
        ("ma_crossover", {"fast_period": 30}, "fast_period >= slow_period"),
        ("rsi_bands", {"oversold": 70, "overbought": 60}, "oversold >= overbought"),
        ("rsi_extreme", {"exit_level": 75}, "exit_level >= overbought"),
        ("rsi_extreme", {"exit_level": 25}, "oversold >= exit_level"),
    ],
)
def test_cross_field_rules_raise_directly(type_name, params, rule):
    with pytest.raises(GridError, match=rule):
        make_strategy(type_name, params)


def test_classifier_cross_field_rules():
    with pytest.raises(GridError, match="low >= high"):
        make_classifier("volatility", {"low": 2.0, "high": 1.5})
    with pytest.raises(GridError, match="fast_period >= slow_period"):
        make_classifier("trend", {"fast_period": 60})


def test_unknown_type():
    with pytest.raises(GridError, match="unknown strategy type 'macd'"):
        make_strategy("macd", {})
    with pytest.raises(GridError, match="unknown classifier type"):
        make_classifier("sma_crossover", {})


# ------------------------------------------------------------------------------ hashing


def test_hash_int_float_equivalence_and_key_order():
    a = make_strategy("bollinger_bands", {"period": 20, "std_dev": 2})
    b = make_strategy("bollinger_bands", {"std_dev": 2.0, "period": 20.0})
    assert a.strategy_hash == b.strategy_hash
    assert a.to_json() == b.to_json()
    assert a == b


def test_hash_alias_and_defaults():
    alias = make_strategy("momentum", {"sma_period": 14})
    canonical = make_strategy("momentum", {"period": 14})
    default = make_strategy("momentum", {})
    assert alias.strategy_hash == canonical.strategy_hash == default.strategy_hash
    assert alias.params == {"period": 14}
    with pytest.raises(GridError, match="sma_period"):
        make_strategy("momentum", {"period": 14, "sma_period": 14})
    # partially given == full default
    partial = make_strategy("rsi_extreme", {"oversold": 30})
    full = make_strategy("rsi_extreme", {"period": 14, "oversold": 30, "overbought": 70, "exit_level": 50})
    assert partial.strategy_hash == full.strategy_hash


def test_hash_differs_for_different_params_and_types():
    hashes = {
        make_strategy("bollinger_bands", {"period": 20}).strategy_hash,
        make_strategy("bollinger_bands", {"period": 25}).strategy_hash,
        make_strategy("bollinger_bands", {"std_dev": 2.5}).strategy_hash,
        make_strategy("bollinger_breakout", {}).strategy_hash,
    }
    assert len(hashes) == 4


def test_hash_pinned_literal():
    # Canonical JSON written out by hand: keys sorted, separators "," and ":", numbers typed
    # per schema (period integer, levels float).
    text = '{"parameters":{"overbought":70.0,"oversold":30.0,"period":14},"type":"rsi_bands"}'
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    assert expected == "b26f6120d2fd"
    config = make_strategy("rsi_bands", {"period": 14.0, "oversold": 30, "overbought": 70})
    assert config.to_json() == text
    assert config.strategy_hash == expected
    assert config.strategy_id("SPY", "5m") == "SPY_5m_rsi_bands_b26f6120d2fd"


def test_constraints_not_in_hash():
    a = make_strategy("sma_crossover", {}, constraints="intraday")
    assert a.constraints == "intraday"
    assert a.strategy_hash == make_strategy("sma_crossover", {}).strategy_hash


# ------------------------------------------------------------------------------ grid


def test_expand_values_shapes():
    assert expand_values(5) == [5]
    assert expand_values([7, 14]) == [7, 14]
    assert expand_values({"start": 10, "stop": 20, "step": 5}) == [10, 15, 20]  # inclusive stop
    assert expand_values({"start": 10, "stop": 22, "step": 5}) == [10, 15, 20]  # off-grid stop
    ints = expand_values({"start": 1, "stop": 3, "step": 1})
    assert all(type(v) is int for v in ints)


def test_float_range_values_exact():
    assert expand_values({"start": 0.1, "stop": 0.3, "step": 0.1}) == [0.1, 0.2, 0.3]
    vals = expand_values({"start": 1.5, "stop": 3.0, "step": 0.25})
    assert vals == [1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0]
    vals = expand_values({"start": 0.001, "stop": 0.01, "step": 0.001})
    assert len(vals) == 10 and vals[2] == 0.003 and vals[-1] == 0.01
    assert all(repr(v) == str(round(v, 3)) for v in vals)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"start": 1, "stop": 5, "step": 0}, "step must be > 0"),
        ({"start": 1, "stop": 5, "step": -1}, "step must be > 0"),
        ({"start": 5, "stop": 1, "step": 1}, "yields no value"),
        ({"start": 1, "stop": 5}, "missing"),
        ({"start": 1, "stop": 5, "step": 1, "num": 3}, "unknown"),
        ({"start": "a", "stop": 5, "step": 1}, "must be a number"),
        ([], "empty"),
    ],
)
def test_bad_value_specs(spec, message):
    with pytest.raises(GridError, match=message):
        expand_values(spec)


def test_product_counts_and_order():
    grid = parse_grid(
        {
            "symbol": "SPY",
            "timeframe": "5m",
            "strategies": [
                {
                    "type": "bollinger_bands",
                    "params": {"period": [10, 20, 30], "std_dev": {"start": 1.5, "stop": 2.5, "step": 0.5}},
                    "constraints": "intraday",
                }
            ],
        }
    )
    assert isinstance(grid, Grid)
    assert grid.symbol == "SPY" and grid.timeframe == "5m"
    assert len(grid.strategies) == 9
    assert grid.skipped == {}
    assert [(s.params["period"], s.params["std_dev"]) for s in grid.strategies[:4]] == [
        (10, 1.5),
        (10, 2.0),
        (10, 2.5),
        (20, 1.5),
    ]
    assert all(s.constraints == "intraday" for s in grid.strategies)
    assert all(isinstance(s, StrategyConfig) for s in grid.strategies)
    # no classifiers key -> the defaults
    assert grid.classifiers == list(DEFAULT_CLASSIFIERS)


def test_cross_field_combinations_skipped_and_counted():
    grid = parse_grid(
        {
            "strategies": [
                {"type": "sma_crossover", "params": {"fast_period": [5, 10, 20], "slow_period": [10, 20]}},
                {"type": "rsi_bands", "params": {"oversold": [30, 40], "overbought": [35, 70]}},
            ]
        }
    )
    # sma: (5,10) (5,20) (10,20) valid; (10,10) (20,10) (20,20) skipped
    sma = [s for s in grid.strategies if s.strategy_type == "sma_crossover"]
    assert [(s.params["fast_period"], s.params["slow_period"]) for s in sma] == [(5, 10), (5, 20), (10, 20)]
    # rsi: (30,35) (30,70) (40,70) valid; (40,35) skipped
    assert sum(s.strategy_type == "rsi_bands" for s in grid.strategies) == 3
    assert grid.skipped == {
        "sma_crossover: fast_period >= slow_period": 3,
        "rsi_bands: oversold >= overbought": 1,
    }


def test_duplicates_dropped_first_seen_order():
    grid = parse_grid(
        {
            "strategies": [
                {"type": "momentum", "params": {"period": [10, 20]}},
                {"type": "momentum", "params": {"sma_period": [20.0, 30, 10]}},
            ],
            "classifiers": [],
        }
    )
    assert [s.params["period"] for s in grid.strategies] == [10, 20, 30]
    assert grid.skipped == {"duplicate strategy configuration": 2}
    assert grid.classifiers == []


def test_classifier_entries_expand():
    grid = parse_grid(
        {
            "strategies": [{"type": "momentum"}],
            "classifiers": [
                {"type": "trend", "params": {"threshold": [0.01, 0.02]}},
                {"type": "volatility", "params": {"low": [0.5, 1.6]}},
            ],
        }
    )
    assert [c.classifier_type for c in grid.classifiers] == ["trend", "trend", "volatility"]
    assert grid.skipped == {"volatility: low >= high": 1}


@pytest.mark.parametrize(
    "entry, fragments",
    [
        ({"type": "macd", "params": {}}, ["strategies[1]", "macd"]),
        ({"type": "rsi_bands", "params": {"period": [7, 0]}}, ["strategies[1] (rsi_bands)", "'period'"]),
        ({"type": "rsi_bands", "params": {"overbought": 150}}, ["strategies[1] (rsi_bands)", "'overbought'"]),
        ({"type": "rsi_bands", "params": {"lookback": 5}}, ["strategies[1] (rsi_bands)", "'lookback'"]),
        ({"type": "bollinger_bands", "params": {"period": 20.5}}, ["strategies[1]", "'period'"]),
        ({"type": "bollinger_bands", "params": {"std_dev": "1e-3"}}, ["strategies[1]", "'std_dev'"]),
        (
            {"type": "bollinger_bands", "params": {"std_dev": {"start": 1, "stop": 2, "step": 0}}},
            ["strategies[1]", "'std_dev'", "step"],
        ),
        ({"type": "momentum", "param": {"period": 5}}, ["strategies[1] (momentum)", "'param'"]),
        (
            {"type": "sma_crossover", "params": {"fast_period": [30, 40], "slow_period": 20}},
            ["strategies[1] (sma_crossover)", "fast_period >= slow_period"],
        ),
    ],
)
def test_schema_violations_raise_with_location(entry, fragments, tmp_path):
    path = tmp_path / "grid.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"strategies": [{"type": "momentum"}, entry]}))
    with pytest.raises(GridError) as info:
        load_grid(path)
    msg = str(info.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_structure_errors():
    with pytest.raises(GridError, match="strategies"):
        parse_grid({"symbol": "SPY"})
    with pytest.raises(GridError, match="unknown top-level"):
        parse_grid({"strategies": [{"type": "momentum"}], "stratgies": []})
    with pytest.raises(GridError, match="constraints"):
        parse_grid({"strategies": [{"type": "momentum", "constraints": 5}]})
    with pytest.raises(GridError, match="symbol"):
        parse_grid({"symbol": 5, "strategies": [{"type": "momentum"}]})


def test_yaml_range_file(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        "symbol: QQQ\n"
        "strategies:\n"
        "  - type: momentum_breakout\n"
        "    params:\n"
        "      period: {start: 5, stop: 15, step: 5}\n"
        "      threshold: {start: 0.001, stop: 0.003, step: 0.001}\n"
    )
    grid = load_grid(path)
    assert grid.source == str(path)
    assert len(grid.strategies) == 9
    assert sorted({s.params["threshold"] for s in grid.strategies}) == [0.001, 0.002, 0.003]
    assert {type(s.params["period"]) for s in grid.strategies} == {int}


def test_default_grid():
    path = default_grid_path()
    assert path.name == "default.yaml" and path.is_file()
    grid = load_grid(path)
    counts = grid.counts_by_type()
    assert 1000 <= len(grid.strategies) <= 1500
    assert set(counts) == NINE_TYPES
    assert all(n >= 10 for n in counts.values())
    assert len({s.strategy_hash for s in grid.strategies}) == len(grid.strategies)
    assert {c.classifier_type for c in grid.classifiers} == {"trend", "volatility", "momentum_regime"}
    assert [c.classifier_hash for c in grid.classifiers] == [c.classifier_hash for c in DEFAULT_CLASSIFIERS]
    # Every config passes direct validation (cross-field rules included).
    for s in grid.strategies:
        assert make_strategy(s.strategy_type, dict(s.params)).strategy_hash == s.strategy_hash
    json.dumps([dict(s.params) for s in grid.strategies])


def test_direct_construction_hashes_like_make_strategy():
    """StrategyConfig normalises itself: 10.0 vs 10, missing defaults and aliases hash alike."""
    from admf_assets.core.config import StrategyConfig

    canonical = make_strategy("sma_crossover", {"fast_period": 10, "slow_period": 20}).strategy_hash
    assert StrategyConfig("sma_crossover", {"fast_period": 10.0, "slow_period": 20}).strategy_hash == canonical
    assert StrategyConfig("sma_crossover", {"fast_period": 10}).strategy_hash == canonical  # slow default 20
    assert StrategyConfig("momentum", {"sma_period": 14}).strategy_hash == StrategyConfig("momentum", {"period": 14}).strategy_hash


def test_cached_per_parameter_validation_equals_whole_object_validation():
    """parameter_problems validates (and caches) each parameter on its own; the problems equal
    jsonschema's over the whole object, in path order, for valid, invalid and repeated values."""
    from jsonschema import Draft202012Validator

    from admf_assets.core.schemas import parameter_problems

    values = [0, 1, 2, 2.0, 2.5, -3, True, False, None, "7", "1e-3", [1], {"a": 1}, 1e9, 0.0, -0.0]
    for kind, schemas in (("strategy", STRATEGY_SCHEMAS), ("classifier", CLASSIFIER_SCHEMAS)):
        for type_name, schema in schemas.items():
            names = list(schema["properties"])
            validator = Draft202012Validator(schema)
            for i, v in enumerate(values * 2):  # the second pass is served by the cache
                params = {name: values[(i + k) % len(values)] if k else v for k, name in enumerate(names)}
                expected = [
                    f"parameter {str(e.path[0])!r}: {e.message}"
                    for e in sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.path])
                ]
                got = [p.split(" (a quoted")[0] for p in parameter_problems(type_name, params, kind=kind)]
                assert got == expected, (type_name, params)


def test_grid_document_cache(tmp_path, monkeypatch):
    """load_grid(cache_dir=...) keeps the YAML document as JSON under the file's sha256; the grid
    read back equals a plain read, an edited file misses, and a document JSON cannot reproduce
    (a YAML date) or a damaged cache file falls back to YAML."""
    cache = tmp_path / "cache"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        "timeframe: 5m\nstrategies:\n  - type: sma_crossover\n    params: {fast_period: [5, 10], slow_period: 30}\n"
        "  - type: bollinger_bands\n    params: {period: 20, std_dev: 2}\n"
    )
    plain = load_grid(grid_file)
    first = load_grid(grid_file, cache_dir=cache)
    files = list(cache.glob("*.json"))
    assert len(files) == 1 and files[0].stem == hashlib.sha256(grid_file.read_bytes()).hexdigest()
    with monkeypatch.context() as m:
        m.setattr("admf_assets.core.grid.yaml.load", lambda *a, **k: pytest.fail("a cached grid was parsed as YAML again"))
        again = load_grid(grid_file, cache_dir=cache)
    for got in (first, again):
        assert [(c.strategy_type, dict(c.params), c.strategy_hash) for c in got.strategies] == [
            (c.strategy_type, dict(c.params), c.strategy_hash) for c in plain.strategies
        ]
        assert got.skipped == plain.skipped and got.timeframe == plain.timeframe
    # std_dev 2 stays an int in the document and is cast by the schema, from YAML or from JSON
    assert isinstance(json.loads(files[0].read_text())["strategies"][1]["params"]["std_dev"], int)
    files[0].write_text("{not json")
    assert len(load_grid(grid_file, cache_dir=cache).strategies) == len(plain.strategies)
    grid_file.write_text(grid_file.read_text().replace("30", "40"))
    edited = load_grid(grid_file, cache_dir=cache).strategies
    assert {c.params["slow_period"] for c in edited if c.strategy_type == "sma_crossover"} == {40}
    dated = tmp_path / "dated.yaml"
    dated.write_text("description: 2025-06-04\nstrategies:\n  - type: momentum\n    params: {period: 10}\n")
    assert len(load_grid(dated, cache_dir=cache).strategies) == 1  # read from YAML, not cached
    assert not (cache / f"{hashlib.sha256(dated.read_bytes()).hexdigest()}.json").exists()
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []


def test_grid_document_cache_keeps_the_most_recently_used_documents(tmp_path, monkeypatch):
    """Storing a document beyond GRID_CACHE_KEEP deletes the least recently used ones; reading a
    cached document counts as a use."""
    import os

    from admf_assets.core import grid as grid_module

    monkeypatch.setattr(grid_module, "GRID_CACHE_KEEP", 3)
    cache = tmp_path / "cache"
    cache.mkdir()
    other = cache / "notes.json"  # not a cached document: never pruned
    other.write_text("{}")
    os.utime(other, ns=(10**17, 10**17))
    files = []
    for i, period in enumerate((10, 11, 12, 13)):
        path = tmp_path / f"g{period}.yaml"
        path.write_text(f"strategies:\n  - type: momentum\n    params: {{period: {period}}}\n")
        files.append(path)
        load_grid(path, cache_dir=cache)
        if i < 3:  # distinct, increasing mtimes whatever the clock's resolution
            doc = cache / f"{hashlib.sha256(path.read_bytes()).hexdigest()}.json"
            os.utime(doc, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    kept = {p.stem for p in cache.glob("*.json")} - {"notes"}
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert kept == {digest[files[1]], digest[files[2]], digest[files[3]]}  # g10, the oldest, went
    load_grid(files[1], cache_dir=cache)  # a read: g11 is now the most recently used
    g14 = tmp_path / "g14.yaml"
    g14.write_text("strategies:\n  - type: momentum\n    params: {period: 14}\n")
    load_grid(g14, cache_dir=cache)
    kept = {p.stem for p in cache.glob("*.json")} - {"notes"}
    assert digest[files[1]] in kept and hashlib.sha256(g14.read_bytes()).hexdigest() in kept and len(kept) == 3
    assert other.exists()
