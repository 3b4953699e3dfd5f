"""Grid files: YAML descriptions of strategy and classifier parameter sweeps, and their expansion.

A grid file (``admf_assets/grids/default.yaml`` is the bundled example)::

    symbol: SPY            # optional
    timeframe: 5m          # optional, bar size such as 1m, 5m, 15m, 1h, 1d
    description: ...       # optional, free text (also: name)
    strategies:
      - type: rsi_bands
        params:
          period: [7, 14]                            # list: each value
          oversold: 30                               # scalar: one value
          overbought: {start: 70, stop: 80, step: 5} # range: 70, 75, 80 (stop INCLUSIVE)
        constraints: intraday                        # optional free-text label
    classifiers:           # optional, same shape; absent or null -> DEFAULT_CLASSIFIERS
      - type: trend
        params: {threshold: [0.01, 0.02]}

Expansion rules:

* Each entry expands to the cartesian product of its parameter values; parameters not named take
  their schema defaults (:mod:`admf_assets.core.schemas`).
* Ranges ``{start, stop, step}`` include ``stop`` when it lies on the step grid. Values are
  computed in decimal arithmetic from the numbers as written, so ``{start: 0.1, stop: 0.3,
  step: 0.1}`` gives exactly ``0.1, 0.2, 0.3`` (never ``0.30000000000000004``). A range whose
  three numbers are all integers gives ints, otherwise floats. ``step`` must be > 0, and a range
  that yields no value (``start > stop``) is an error.
* A schema violation (unknown type, unknown parameter, wrong type, out of range) raises
  :class:`~admf_assets.core.schemas.GridError` naming the file, the entry index and the parameter.
* A combination that breaks a cross-field rule (e.g. ``fast_period >= slow_period`` from a product
  of two lists) is skipped and counted in :attr:`Grid.skipped` under
  ``"<type>: <rule>"``; an entry whose every combination is skipped is an error.
* Configurations with the same hash as an earlier one are dropped (first-seen order kept) and
  counted under ``"duplicate strategy configuration"`` / ``"duplicate classifier
  configuration"``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from admf_assets.core.config import ClassifierConfig, StrategyConfig
from admf_assets.core.schemas import (
    CLASSIFIER_SCHEMAS,
    GridError,
    Kind,
    get_schema,
    make_classifier,
    parameter_problems,
    resolve_aliases,
    rule_violations,
    _cast,
    _format_problems,
)

MAX_RANGE_VALUES = 10_000
"""Largest number of values one range mapping may produce (guards against a mistyped step)."""

MAX_COMBINATIONS = 1_000_000
"""Largest cartesian product one grid entry may expand to."""

_TOP_LEVEL_KEYS = ("symbol", "timeframe", "strategies", "classifiers", "description", "name")
_ENTRY_KEYS = {"strategy": ("type", "params", "constraints"), "classifier": ("type", "params")}
_RANGE_KEYS = {"start", "stop", "step"}

_CLASSIFIER_ORDER = ("trend", "volatility", "momentum_regime")

DEFAULT_CLASSIFIERS: tuple[ClassifierConfig, ...] = tuple(
    make_classifier(t, {})
    for t in sorted(CLASSIFIER_SCHEMAS, key=lambda t: (_CLASSIFIER_ORDER + (t,)).index(t))
)
"""One default-parameter :class:`ClassifierConfig` per classifier type (trend, volatility,
momentum_regime); used when a grid has no ``classifiers`` key (or ``classifiers: null``)."""


@dataclass
class Grid:
    """An expanded grid.

    Attributes:
        source: where it came from (file path as given, or ``"<dict>"``).
        symbol: the grid's ``symbol`` or ``None``.
        timeframe: the grid's ``timeframe`` (bar size, e.g. ``"5m"``) or ``None``.
        strategies: unique normalised strategy configurations, in expansion order.
        classifiers: unique normalised classifier configurations, in expansion order.
        skipped: reason -> number of combinations dropped (cross-field rule violations such as
            ``"sma_crossover: fast_period >= slow_period"``, and duplicates).
    """

    source: str
    symbol: str | None
    timeframe: str | None
    strategies: list[StrategyConfig]
    classifiers: list[ClassifierConfig]
    skipped: dict[str, int] = field(default_factory=dict)

    def counts_by_type(self) -> dict[str, int]:
        """Number of strategies per strategy type, in first-seen order."""
        out: dict[str, int] = {}
        for s in self.strategies:
            out[s.strategy_type] = out.get(s.strategy_type, 0) + 1
        return out


def default_grid_path() -> Path:
    """Path of the bundled default grid, ``admf_assets/grids/default.yaml``."""
    return Path(__file__).resolve().parent.parent / "grids" / "default.yaml"


def load_grid(path: str | Path, *, cache_dir: str | Path | None = None) -> Grid:
    """Read a grid YAML file and expand it (see module docstring).

    Args:
        path: the grid file.
        cache_dir: optional folder of parsed documents: the YAML document is kept there as JSON
            under the sha256 of the file's bytes, so an unchanged grid is read back with
            ``json`` (a 5,000-entry grid: 0.03 s instead of 0.26 s of YAML) and expanded and
            validated as always. Only documents that JSON reproduces exactly are kept (not,
            e.g., YAML dates or non-string keys), and only the :data:`GRID_CACHE_KEEP` most
            recently used; a cache that cannot be read or written is ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        GridError: invalid YAML or an invalid grid; messages start with the path.
    """
    p = Path(path)
    data = p.read_bytes()
    cached = _cached_document(data, cache_dir) if cache_dir is not None else None
    if cached is not None:
        return parse_grid(cached, source=str(p))
    try:
        # libyaml's C loader when PyYAML was built with it (a 5,000-entry grid: 0.5 s instead of
        # 1.3 s), the same safe subset of YAML and the same objects
        mapping = yaml.load(data.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise GridError(f"{p}: not valid YAML: {exc}") from None
    if cache_dir is not None:
        _store_document(data, mapping, cache_dir)
    return parse_grid(mapping, source=str(p))


GRID_CACHE_KEEP = 32
"""Parsed grid documents kept in a ``cache_dir``: the most recently used ones (each read of a
cached document refreshes its mtime); older ones are deleted whenever a new one is stored."""


def _document_path(data: bytes, cache_dir: str | Path) -> Path:
    return Path(cache_dir) / f"{hashlib.sha256(data).hexdigest()}.json"


def _cached_document(data: bytes, cache_dir: str | Path) -> Any | None:
    """The cached JSON form of the grid document ``data``, or None (absent or unreadable)."""
    path = _document_path(data, cache_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        os.utime(path)  # recently used: kept by _prune_documents
    except OSError:
        pass
    return document


def _store_document(data: bytes, mapping: Any, cache_dir: str | Path) -> None:
    """Keep ``mapping`` as JSON when JSON gives back an equal document (atomic write; best effort)."""
    try:
        text = json.dumps(mapping, allow_nan=False)
        if json.loads(text) != mapping:
            return
        target = _document_path(data, cache_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _prune_documents(target.parent, keep=GRID_CACHE_KEEP)
    except (TypeError, ValueError, OSError):
        return


def _prune_documents(cache_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used documents of ``cache_dir`` (files named
    ``<sha256 hex>.json``, nothing else in the folder; best effort: a file another process
    removes first, or one that cannot be removed, is skipped)."""
    documents = []
    for path in cache_dir.glob("*.json"):
        if not re.fullmatch(r"[0-9a-f]{64}\.json", path.name):
            continue
        try:
            documents.append((path.stat().st_mtime_ns, path.name, path))
        except OSError:
            continue
    for _, _, path in sorted(documents, reverse=True)[keep:]:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            continue


def parse_grid(mapping: Any, source: str = "<dict>") -> Grid:
    """Expand an already-parsed grid mapping (the YAML document as Python objects).

    Args:
        mapping: dict with keys ``symbol``, ``timeframe``, ``strategies``, ``classifiers``
            (and free-text ``description``/``name``).
        source: name used in error messages and stored in :attr:`Grid.source`.

    Raises:
        GridError: structure errors, unknown types/parameters, schema violations, empty ranges or
            entries whose every combination breaks a cross-field rule.
    """
    if not isinstance(mapping, Mapping):
        raise GridError(f"{source}: a grid must be a mapping with a 'strategies' list")
    unknown = [k for k in mapping if k not in _TOP_LEVEL_KEYS]
    if unknown:
        raise GridError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(_TOP_LEVEL_KEYS)})"
        )
    symbol = _optional_str(mapping.get("symbol"), f"{source}: symbol")
    timeframe = _optional_str(mapping.get("timeframe"), f"{source}: timeframe")

    skipped: dict[str, int] = {}
    raw_strategies = mapping.get("strategies")
    if not isinstance(raw_strategies, list) or not raw_strategies:
        raise GridError(f"{source}: 'strategies' must be a non-empty list of entries")
    strategies = _expand_all(raw_strategies, "strategy", source, skipped)

    raw_classifiers = mapping.get("classifiers")
    if raw_classifiers is None:
        classifiers = list(DEFAULT_CLASSIFIERS)
    elif not isinstance(raw_classifiers, list):
        raise GridError(f"{source}: 'classifiers' must be a list of entries")
    else:
        classifiers = _expand_all(raw_classifiers, "classifier", source, skipped)

    return Grid(
        source=source,
        symbol=symbol,
        timeframe=timeframe,
        strategies=strategies,  # type: ignore[arg-type]
        classifiers=classifiers,  # type: ignore[arg-type]
        skipped=skipped,
    )


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise GridError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _expand_all(entries: list[Any], kind: Kind, source: str, skipped: dict[str, int]) -> list[Any]:
    section = "strategies" if kind == "strategy" else "classifiers"
    seen: set[str] = set()
    out: list[Any] = []
    for i, entry in enumerate(entries):
        for config in _expand_entry(entry, kind, f"{source}: {section}[{i}]", skipped):
            h = config.strategy_hash if kind == "strategy" else config.classifier_hash
            if h in seen:
                reason = f"duplicate {kind} configuration"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            seen.add(h)
            out.append(config)
    return out


def _expand_entry(entry: Any, kind: Kind, where: str, skipped: dict[str, int]) -> list[Any]:
    if not isinstance(entry, Mapping):
        raise GridError(f"{where}: an entry must be a mapping with 'type' and 'params'")
    allowed = _ENTRY_KEYS[kind]
    extra = [k for k in entry if k not in allowed]
    type_name = entry.get("type")
    if not isinstance(type_name, str):
        raise GridError(f"{where}: entry needs a 'type' string, got {type_name!r}")
    where = f"{where} ({type_name})"
    if extra:
        raise GridError(
            f"{where}: unknown entry key(s) {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
        )
    schema = get_schema(type_name, kind, where)
    constraints = entry.get("constraints")
    if constraints is not None and not isinstance(constraints, str):
        raise GridError(f"{where}: constraints must be a string, got {constraints!r}")
    params = resolve_aliases(type_name, entry.get("params"), kind=kind, where=where)

    # Per-parameter value lists, validated value by value (all problems reported together).
    props = schema["properties"]
    names: list[str] = []
    value_lists: list[list[Any]] = []
    problems: list[str] = []
    for name, spec in params.items():
        try:
            values = expand_values(spec)
        except GridError as exc:
            problems.append(f"parameter {name!r}: {exc}")
            continue
        cast_values = []
        for v in values:
            p = parameter_problems(type_name, {name: v}, kind=kind)
            if p:
                problems.extend(x for x in p if x not in problems)
            else:
                cast_values.append(_cast(props[name], v))
        names.append(name)
        value_lists.append(cast_values)
    if problems:
        raise GridError(_format_problems(where, type_name, problems))

    total = 1
    for vl in value_lists:
        total *= len(vl)
    if total > MAX_COMBINATIONS:
        raise GridError(f"{where}: expands to {total:,} combinations (limit {MAX_COMBINATIONS:,})")

    defaults = {n: _cast(s, s["default"]) for n, s in props.items()}
    order = list(props)
    out: list[Any] = []
    n_skipped = 0
    first_reason = ""
    for combo in itertools.product(*value_lists):
        merged = dict(defaults)
        merged.update(zip(names, combo))
        normal = {n: merged[n] for n in order}
        violations = rule_violations(type_name, normal, kind=kind)
        if violations:
            reason = f"{type_name}: {violations[0]}"
            skipped[reason] = skipped.get(reason, 0) + 1
            n_skipped += 1
            first_reason = first_reason or violations[0]
            continue
        if kind == "strategy":
            out.append(StrategyConfig(type_name, normal, constraints))
        else:
            out.append(ClassifierConfig(type_name, normal))
    if not out:
        raise GridError(
            f"{where}: every one of the {n_skipped} combination(s) breaks a cross-field rule "
            f"(first: {first_reason})"
        )
    return out


def expand_values(spec: Any) -> list[Any]:
    """Values of one grid parameter: a scalar, a list of scalars, or a range mapping.

    Args:
        spec: ``20`` -> ``[20]``; ``[7, 14]`` -> ``[7, 14]``; ``{start: 1.5, stop: 3.0, step:
            0.25}`` -> ``[1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0]`` (stop inclusive, exact decimals).

    Returns:
        The list of raw values (types are checked later against the parameter's schema).

    Raises:
        GridError: empty list, nested list/mapping inside a list, malformed range (missing or
            unknown keys, non-numeric, step <= 0, start > stop, more than
            :data:`MAX_RANGE_VALUES` values).
    """
    if isinstance(spec, Mapping):
        return _expand_range(spec)
    if isinstance(spec, list):
        if not spec:
            raise GridError("empty list of values")
        for v in spec:
            if isinstance(v, (list, Mapping)):
                raise GridError(f"a value list may hold only scalars, got {v!r}")
        return list(spec)
    return [spec]


def _expand_range(spec: Mapping[str, Any]) -> list[int | float]:
    keys = set(spec)
    if keys != _RANGE_KEYS:
        missing = sorted(_RANGE_KEYS - keys)
        extra = sorted(map(str, keys - _RANGE_KEYS))
        detail = "; ".join(
            x for x in (f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "") if x
        )
        raise GridError(f"a range needs exactly start, stop, step ({detail})")
    nums: dict[str, Decimal] = {}
    for k in ("start", "stop", "step"):
        v = spec[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise GridError(f"range {k} must be a number, got {v!r}")
        try:
            d = Decimal(str(v))
        except InvalidOperation:  # pragma: no cover - str() of an int/float is always parseable
            raise GridError(f"range {k} must be a number, got {v!r}") from None
        if not d.is_finite():
            raise GridError(f"range {k} must be finite, got {v!r}")
        nums[k] = d
    start, stop, step = nums["start"], nums["stop"], nums["step"]
    if step <= 0:
        raise GridError(f"range step must be > 0, got {spec['step']!r}")
    if start > stop:
        raise GridError(f"range start {spec['start']!r} > stop {spec['stop']!r} yields no value")
    count = int((stop - start) / step) + 1
    if count > MAX_RANGE_VALUES:
        raise GridError(f"range yields {count:,} values (limit {MAX_RANGE_VALUES:,})")
    as_int = all(isinstance(spec[k], int) for k in ("start", "stop", "step"))
    values: list[int | float] = []
    for i in range(count):
        d = start + step * i
        if d > stop:  # pragma: no cover - guarded by count
            break
        values.append(int(d) if as_int else float(d))
    return values


def strategy_ids(grid: Grid, symbol: str, timeframe: str) -> list[str]:
    """Strategy ids (``{symbol}_{timeframe}_{type}_{hash}``) of every strategy in ``grid``."""
    return [s.strategy_id(symbol, timeframe) for s in grid.strategies]


__all__: Sequence[str] = (
    "DEFAULT_CLASSIFIERS",
    "Grid",
    "GridError",
    "MAX_COMBINATIONS",
    "MAX_RANGE_VALUES",
    "default_grid_path",
    "expand_values",
    "load_grid",
    "parse_grid",
    "strategy_ids",
)
