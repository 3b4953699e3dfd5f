"""Parameter schemas ("node templates") for strategy and classifier types, and normalisation.

Each strategy type and each regime-classifier type has one JSON Schema (Draft 2020-12) shipped as
package data in ``admf_assets/core/schemas/``: ``strategy.<type>.json`` and
``classifier.<type>.json``. A schema lists every parameter with its JSON type (``"integer"`` or
``"number"``), its range and its default, and forbids unknown parameters
(``additionalProperties: false``). Rules from ``../shared/docs/strategy-semantics.md``:

* periods are integers >= 1; ``std_dev`` > 0; RSI levels (``oversold``, ``overbought``,
  ``exit_level``, the ``rsi_threshold`` threshold) are numbers in 0..100; momentum thresholds are
  numbers >= 0.
* Cross-field rules JSON Schema cannot express are declared in the schema under the extension
  keyword ``x-increasing`` (a list of parameter chains that must be *strictly increasing*:
  ``fast_period < slow_period``, ``oversold < overbought``, ``oversold < exit_level <
  overbought``, volatility ``low < high``) and checked in code after JSON Schema validation
  (:func:`rule_violations`).
* Parameter aliases are declared under ``x-aliases`` (``momentum``: ``sma_period`` -> ``period``)
  and resolved before validation.

Normalisation (:func:`normalize_parameters`) makes configurations hash alike whenever they mean the
same thing: aliases resolved, defaults filled, each value cast to its schema type (``int`` for
``"integer"``: 20 and 20.0 both become ``20``; ``float`` for ``"number"``: 2 becomes ``2.0``),
parameters in schema order. Identity (hash, canonical JSON) is in :mod:`admf_assets.core.config`.
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any, Literal, Mapping

from jsonschema import Draft202012Validator

from admf_assets.core.config import ClassifierConfig, StrategyConfig

Kind = Literal["strategy", "classifier"]


class GridError(ValueError):
    """A strategy/classifier configuration or grid file is invalid.

    The message names where the problem is (file, entry index, type) and every offending parameter;
    several problems found at once are all listed, one per line.
    """


_SCHEMA_KEYS = frozenset({"$schema", "$id", "title", "description", "type", "properties", "additionalProperties"})
"""Top-level keywords a parameter schema may use (besides ``x-*`` annotations): none relates
two parameters, so each parameter validates on its own."""


def _load_schemas(kind: Kind) -> dict[str, dict[str, Any]]:
    """Load and check every ``<kind>.<type>.json`` file under ``admf_assets/core/schemas``."""
    out: dict[str, dict[str, Any]] = {}
    folder = resources.files("admf_assets.core").joinpath("schemas")
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        name = entry.name
        if not (name.startswith(kind + ".") and name.endswith(".json")):
            continue
        schema = json.loads(entry.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        type_name = name[len(kind) + 1 : -len(".json")]
        if schema.get("x-type") != type_name or schema.get("x-kind") != kind:
            raise RuntimeError(f"schema file {name}: x-type/x-kind do not match the file name")
        other = [k for k in schema if k not in _SCHEMA_KEYS and not k.startswith("x-")]
        if other or schema.get("type") != "object" or schema.get("additionalProperties") is not False:
            # parameter_problems validates each parameter on its own (and caches the result),
            # which is exact only while no keyword relates two parameters
            raise RuntimeError(
                f"schema file {name}: a parameter schema is an object with 'properties' and "
                f"additionalProperties false only (cross-field rules go in x-increasing); found {other}"
            )
        out[type_name] = schema
    return out


STRATEGY_SCHEMAS: dict[str, dict[str, Any]] = _load_schemas("strategy")
"""Strategy type name -> its JSON Schema (dict), loaded from ``core/schemas/strategy.*.json``."""

CLASSIFIER_SCHEMAS: dict[str, dict[str, Any]] = _load_schemas("classifier")
"""Classifier type name -> its JSON Schema (dict), loaded from ``core/schemas/classifier.*.json``."""

STRATEGY_TYPES: tuple[str, ...] = tuple(sorted(STRATEGY_SCHEMAS))
"""The registered strategy type names, sorted."""

CLASSIFIER_TYPES: tuple[str, ...] = tuple(sorted(CLASSIFIER_SCHEMAS))
"""The registered classifier type names, sorted."""

_VALIDATORS: dict[tuple[str, str], Draft202012Validator] = {
    **{("strategy", t): Draft202012Validator(s) for t, s in STRATEGY_SCHEMAS.items()},
    **{("classifier", t): Draft202012Validator(s) for t, s in CLASSIFIER_SCHEMAS.items()},
}


def get_schema(type_name: str, kind: Kind = "strategy", where: str = "") -> dict[str, Any]:
    """The JSON Schema of one strategy (``kind="strategy"``) or classifier type.

    Raises:
        GridError: unknown ``kind`` or ``type_name`` (the message lists the known types).
    """
    if kind == "strategy":
        table = STRATEGY_SCHEMAS
    elif kind == "classifier":
        table = CLASSIFIER_SCHEMAS
    else:
        raise GridError(f"{_prefix(where)}unknown kind {kind!r} (expected 'strategy' or 'classifier')")
    try:
        return table[type_name]
    except (KeyError, TypeError):
        raise GridError(
            f"{_prefix(where)}unknown {kind} type {type_name!r}; known {kind} types: "
            + ", ".join(sorted(table))
        ) from None


def parameter_defaults(type_name: str, kind: Kind = "strategy") -> dict[str, int | float]:
    """Default value of every parameter of a type, cast to its schema type, in schema order."""
    schema = get_schema(type_name, kind)
    return {name: _cast(spec, spec["default"]) for name, spec in schema["properties"].items()}


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _cast(spec: Mapping[str, Any], value: Any) -> int | float:
    """Cast an already-validated value to the Python type of its JSON Schema type."""
    if spec.get("type") == "integer":
        return int(value)
    if spec.get("type") == "number":
        return float(value)
    return value


def resolve_aliases(
    type_name: str, params: Mapping[str, Any] | None, *, kind: Kind = "strategy", where: str = ""
) -> dict[str, Any]:
    """Rename alias parameter names to their canonical names (``x-aliases`` in the schema).

    Args:
        type_name: strategy or classifier type.
        params: raw parameter mapping (``None`` means no parameters).
        kind: ``"strategy"`` or ``"classifier"``.
        where: location text for error messages (e.g. ``"grid.yaml: strategies[3] (momentum)"``).

    Returns:
        A new dict with canonical names, original order otherwise kept.

    Raises:
        GridError: ``params`` is not a mapping, a parameter name is not a string, or an alias and
            its canonical name are both given.
    """
    schema = get_schema(type_name, kind, where)
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise GridError(
            f"{_prefix(where)}parameters must be a mapping of name -> value, got {type(params).__name__}"
        )
    aliases: Mapping[str, str] = schema.get("x-aliases", {})
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in params.items():
        if not isinstance(key, str):
            problems.append(f"parameter name {key!r} is not a string")
            continue
        name = aliases.get(key, key)
        if name in out:
            problems.append(f"parameter {name!r} given twice (as {name!r} and its alias {key!r})")
            continue
        out[name] = value
    if problems:
        raise GridError(_format_problems(where, type_name, problems))
    return out


def _format_problems(where: str, type_name: str, problems: list[str]) -> str:
    head = f"{where}: " if where else ""
    if len(problems) == 1:
        return f"{head}invalid {type_name} parameters: {problems[0]}"
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"{head}{len(problems)} problems in {type_name} parameters:\n{lines}"


def _describe_error(error: Any) -> str:
    """One readable line for a jsonschema ``ValidationError`` on a parameter."""
    message = error.message
    instance = error.instance
    if isinstance(instance, str):
        try:
            float(instance)
        except ValueError:
            pass
        else:
            message += " (a quoted or YAML-1.1 exponent number like 1e-3 is read as text; write 0.001)"
    return message


def parameter_problems(
    type_name: str, params: Mapping[str, Any], *, kind: Kind = "strategy"
) -> list[str]:
    """Every schema problem of already alias-resolved ``params`` (empty list when valid).

    Checks unknown parameter names (listing the allowed ones), JSON types and ranges through
    jsonschema, and rejects non-finite numbers (NaN, +-inf), which JSON Schema range keywords let
    through. Each problem text names its parameter. Cross-field rules are *not* checked here (see
    :func:`rule_violations`).
    """
    schema = get_schema(type_name, kind)
    props: Mapping[str, Any] = schema["properties"]
    problems: list[str] = []
    known = {}
    for name, value in params.items():
        if name not in props:
            aliases = schema.get("x-aliases", {})
            allowed = ", ".join(list(props) + [f"{a} (alias of {c})" for a, c in aliases.items()])
            problems.append(f"unknown parameter {name!r} (allowed: {allowed})")
        else:
            known[name] = value
    for name in sorted(known, key=str):  # the order of jsonschema's errors sorted by path
        value = known[name]
        # the sign keeps -0.0 apart from 0.0 (equal and hashed alike, but printed differently)
        sign = math.copysign(1.0, value) if isinstance(value, float) else 0.0
        try:
            problems.extend(_value_problems(kind, type_name, name, type(value), sign, value))
        except TypeError:  # an unhashable value (a YAML list or mapping): not cached
            problems.extend(_value_problems.__wrapped__(kind, type_name, name, type(value), sign, value))
    for name, value in known.items():
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"parameter {name!r}: {value!r} is not a finite number")
    return problems


@functools.lru_cache(maxsize=65536)
def _value_problems(kind: Kind, type_name: str, name: str, value_type: type, sign: float, value: Any) -> tuple[str, ...]:
    """jsonschema's problems with one parameter value, cached: a grid repeats each value across
    many entries (5,000 entries: 0.5 s of validation without the cache). ``value_type`` keeps
    ``True``, ``1`` and ``1.0`` apart in the cache key, ``sign`` (of a float) ``0.0`` and ``-0.0``.
    Exact because no schema keyword relates two parameters (checked when the schemas load)."""
    validator = _VALIDATORS[(kind, type_name)]
    return tuple(f"parameter {name!r}: {_describe_error(e)}" for e in validator.iter_errors({name: value}))


def rule_violations(
    type_name: str, params: Mapping[str, Any], *, kind: Kind = "strategy"
) -> list[str]:
    """Cross-field rule violations of *normalised* ``params`` (empty list when none).

    The rules are the schema's ``x-increasing`` chains; each adjacent pair ``a, b`` of a chain must
    satisfy ``params[a] < params[b]``. A violation is reported as ``"a >= b"`` (e.g.
    ``"fast_period >= slow_period"``), which :mod:`admf_assets.core.grid` also uses as the
    ``skipped`` reason.
    """
    schema = get_schema(type_name, kind)
    out: list[str] = []
    for chain in schema.get("x-increasing", []):
        for a, b in zip(chain[:-1], chain[1:]):
            if a in params and b in params and not params[a] < params[b]:
                out.append(f"{a} >= {b}")
    return out


def normalize_parameters(
    type_name: str,
    params: Mapping[str, Any] | None,
    *,
    kind: Kind = "strategy",
    where: str = "",
    check_rules: bool = True,
) -> dict[str, int | float]:
    """Validate and normalise the parameters of one strategy or classifier configuration.

    Steps: resolve aliases; validate against the type's JSON Schema (all problems collected);
    fill defaults; cast each value to its schema type (``"integer"`` -> ``int``, so 20 and 20.0
    give ``20`` while 20.5 is rejected; ``"number"`` -> ``float``, so 2 gives ``2.0``); check the
    cross-field rules (unless ``check_rules`` is false).

    Args:
        type_name: strategy type (``kind="strategy"``) or classifier type (``kind="classifier"``).
        params: raw parameters; missing ones take their defaults. ``None`` = all defaults.
        kind: ``"strategy"`` or ``"classifier"``.
        where: location for messages, e.g. ``"grid.yaml: strategies[3] (rsi_bands)"``.
        check_rules: check cross-field rules (``fast_period < slow_period`` ...).

    Returns:
        A new dict with every parameter of the type, in schema order.

    Raises:
        GridError: unknown type, unknown parameter, wrong type, out of range, non-finite number,
            alias clash, or (with ``check_rules``) a cross-field rule violation. The message names
            ``where`` and every offending parameter.
    """
    schema = get_schema(type_name, kind, where)
    resolved = resolve_aliases(type_name, params, kind=kind, where=where)
    problems = parameter_problems(type_name, resolved, kind=kind)
    if problems:
        raise GridError(_format_problems(where, type_name, problems))
    out: dict[str, int | float] = {}
    for name, spec in schema["properties"].items():
        out[name] = _cast(spec, resolved[name] if name in resolved else spec["default"])
    if check_rules:
        violations = rule_violations(type_name, out, kind=kind)
        if violations:
            detail = [f"rule violated: {v} ({_rule_values(v, out)})" for v in violations]
            raise GridError(_format_problems(where, type_name, detail))
    return out


def _rule_values(violation: str, params: Mapping[str, Any]) -> str:
    a, _, b = violation.partition(" >= ")
    return f"{a}={params.get(a)!r}, {b}={params.get(b)!r}"


def make_strategy(
    strategy_type: str,
    params: Mapping[str, Any] | None = None,
    constraints: str | None = None,
    where: str = "",
) -> StrategyConfig:
    """Build a validated, normalised :class:`StrategyConfig`.

    Args:
        strategy_type: one of :data:`STRATEGY_TYPES`.
        params: raw parameters (defaults fill the rest; aliases allowed).
        constraints: optional free-text label (not part of the hash).
        where: location for messages.

    Raises:
        GridError: see :func:`normalize_parameters`; also if ``constraints`` is not a string.
    """
    if constraints is not None and not isinstance(constraints, str):
        raise GridError(f"{_prefix(where)}constraints must be a string, got {type(constraints).__name__}")
    normal = normalize_parameters(strategy_type, params, kind="strategy", where=where)
    return StrategyConfig(strategy_type, normal, constraints)


def make_classifier(
    classifier_type: str, params: Mapping[str, Any] | None = None, where: str = ""
) -> ClassifierConfig:
    """Build a validated, normalised :class:`ClassifierConfig` (one of :data:`CLASSIFIER_TYPES`).

    Raises:
        GridError: see :func:`normalize_parameters`.
    """
    normal = normalize_parameters(classifier_type, params, kind="classifier", where=where)
    return ClassifierConfig(classifier_type, normal)
