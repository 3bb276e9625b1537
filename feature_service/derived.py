"""Derived features: a view's `expression:` features, evaluated after its aggregations
from their values and the request fields, by the one evaluator (`feature_service.
expressions`), online (`online.service`) and in training sets (`offline.historical`)
alike, so a derived value is the expression of the same aggregate values on both sides.

A request names features; `needs` says which aggregations must be read for them (the
ones named, and those the derived ones read, in order) and which request fields they
take. `derive` evaluates the derived ones over columns (numpy: training sets, a lookup
of many entities), `derive_rows` one row at a time (the compiled closures: a lookup of
a few entities); both give the same bits (tests/unit/test_expressions.py).

>>> from feature_service.definitions import load_definitions
>>> view = load_definitions("definitions").feature_views["customer_txn"]
>>> needs(view, ["amount_z"]).request_fields
('amount',)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_service.definitions import DerivedFeature, FeatureView, ServiceExpression
from feature_service.expressions import REQUEST
from feature_service.requests import RequestError

ROWS_ONE_BY_ONE = 8
"""Up to this many rows, derived features are evaluated row by row (the closures);
beyond, on columns. The values are the same either way."""


@dataclass(frozen=True)
class Needs:
    """What evaluating some features of a view takes."""

    aggregations: tuple[str, ...]  # aggregate features to read, named ones first
    derived: tuple[DerivedFeature, ...]  # derived features to evaluate, in order
    request_fields: tuple[str, ...]


def needs(view: FeatureView, names: Sequence[str]) -> Needs:
    """The aggregations and request fields the features `names` of `view` need
    (remembered: a model asks for the same features every time)."""
    return _needs(view, tuple(names))


@lru_cache(maxsize=4096)
def _needs(view: FeatureView, names: tuple[str, ...]) -> Needs:
    by_name = {d.name: d for d in view.derived}
    wanted: set[str] = set()
    stack = [n for n in names if n in by_name]
    while stack:
        name = stack.pop()
        if name in wanted:
            continue
        wanted.add(name)
        stack.extend(n for n in by_name[name].expression.names if n in by_name)
    derived = tuple(d for d in view.derived if d.name in wanted)
    aggregates = dict.fromkeys(n for n in names if n not in by_name)
    for d in derived:
        aggregates.update(dict.fromkeys(sorted(n for n in d.expression.names if n not in by_name)))
    fields = sorted({f for d in derived for f in d.expression.request_fields})
    return Needs(tuple(aggregates), derived, tuple(fields))


def request_column(
    owner: str, kinds: Mapping[str, str], name: str, values: Any
) -> npt.NDArray[Any]:
    """The values of request field `name` (of kind `kinds[name]`, declared by `owner`, a
    view or a feature service) as given (a list, a pandas column), checked against its
    kind; a `RequestError` naming a value of another type."""
    kind = kinds[name]
    array = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else None
    items = list(values) if array is None else array.tolist()
    for value in items:
        if _null(value):
            continue
        if kind in ("float", "int", "timestamp"):
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            )
        elif kind == "bool":
            ok = isinstance(value, (bool, np.bool_))
        else:
            ok = isinstance(value, str)
        if not ok:
            raise RequestError(f"request field {name!r} of {owner} is {kind}, got {_shown(value)}")
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def service_values(
    expression: ServiceExpression,
    inputs: Mapping[str, Sequence[Any]],
    request: Mapping[str, Sequence[Any]],
    n: int,
    columns: bool,
) -> Any:
    """A feature service's expression over its `inputs` (`view__feature` -> values) and
    `request` fields: one row at a time (lists, None null) or on columns (`columns`)."""
    expr = expression.expression
    given: dict[str, Any] = dict(inputs)
    given.update((f"{REQUEST}.{f}", v) for f, v in request.items())
    if columns:
        return expr.evaluate_columns({k: given[k] for k in expr.inputs}, n)
    return [expr.evaluate_row({k: given[k][i] for k in expr.inputs}) for i in range(n)]


def derive(
    view: FeatureView,
    derived: Sequence[DerivedFeature],
    values: Mapping[str, Any],
    request: Mapping[str, npt.NDArray[Any]],
    n: int,
) -> dict[str, npt.NDArray[Any]]:
    """The derived features `derived` (in order) of `n` rows over columns: `values` the
    aggregate features they read, `request` the request fields (name -> column)."""
    columns: dict[str, Any] = dict(values)
    columns.update((f"{REQUEST}.{name}", column) for name, column in request.items())
    out = {}
    for d in derived:
        expr = d.expression
        out[d.name] = columns[d.name] = expr.evaluate_columns(
            {key: columns[key] for key in expr.inputs}, n
        )
    return out


def derive_rows(
    view: FeatureView,
    derived: Sequence[DerivedFeature],
    values: Mapping[str, Sequence[Any]],
    request: Mapping[str, Sequence[Any]],
    n: int,
) -> dict[str, list[Any]]:
    """`derive`, one row at a time (values as lists, None for null)."""
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, column in values.items():
        for row, value in zip(rows, column, strict=True):
            row[name] = value
    for name, column in request.items():
        key = f"{REQUEST}.{name}"
        for row, value in zip(rows, column, strict=True):
            row[key] = value
    out: dict[str, list[Any]] = {}
    for d in derived:
        evaluate = d.expression.evaluate_row
        column = out[d.name] = [evaluate(row) for row in rows]
        for row, value in zip(rows, column, strict=True):
            row[d.name] = value
    return out


def as_values(column: Any) -> list[Any]:
    """A derived column as a lookup serves it: plain values, None for null (NaN)."""
    if isinstance(column, np.ndarray) and column.dtype == np.float64:
        return [None if math.isnan(v) else v for v in column.tolist()]
    return list(column)


def _null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
