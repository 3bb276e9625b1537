"""The one expression evaluator: one row and columns give the same bits; derived
features and computed columns equal the expression of the brute force's values."""

from __future__ import annotations

import asyncio
import math
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_service.aggregation.reference import Event, brute_force
from feature_service.definitions import DefinitionError, load_definitions
from feature_service.derived import derive_rows, needs
from feature_service.expressions import (
    BOOL,
    NUMBER,
    STRING,
    ExpressionError,
    parse_expression,
)
from feature_service.offline.historical import get_historical_features
from feature_service.online.service import online_features
from feature_service.requests import RequestError, resolve_features
from tests.unit.test_historical import T0, write_log

SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.5, 10.0, 1e308, -1e308, 5e-324, math.inf, -math.inf, None]
NAMES = {"a": NUMBER, "b": NUMBER, "c": NUMBER, "s": STRING, "f": BOOL}


def bits(value: Any) -> Any:
    """A value with its exact bits (a null is None, NaN included)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return struct.pack("<d", value)
    return value


number_leaf = st.sampled_from(["a", "b", "c", "0", "1", "-2.5", "10", "1e308", "null"])


def _numbers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "%", "**"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(["abs", "log", "exp", "sqrt", "-"]), children).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        st.tuples(children, st.sampled_from(["<", "<=", "==", "!=", ">"]), children, children,
                  children).map(lambda t: f"if({t[0]} {t[1]} {t[2]}, {t[3]}, {t[4]})"),
        st.tuples(children, children).map(lambda t: f"if(f or s == 'x', {t[0]}, {t[1]})"),
    )  # fmt: skip


numeric_expressions = st.recursive(number_leaf, _numbers, max_leaves=8)
boolean_expressions = st.one_of(
    st.tuples(numeric_expressions, st.sampled_from(["<", ">=", "==", "!="]), numeric_expressions)
    .map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
    numeric_expressions.map(lambda e: f"not ({e} > 0) and (s in ['x', null] or f)"),
    numeric_expressions.map(lambda e: f"{e} in [0, 1, -2.5]"),
    st.just("coalesce(f, s != 'y')"),
)  # fmt: skip
values = st.sampled_from(SPECIAL)
rows = st.lists(
    st.tuples(values, values, values, st.sampled_from(["x", "y", None]),
              st.sampled_from([True, False, None])),
    min_size=1, max_size=12,
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(numeric_expressions, boolean_expressions), data=rows)
def test_one_row_and_columns_give_the_same_bits(text: str, data: list[tuple]) -> None:
    expr = parse_expression(text, NAMES)
    n = len(data)
    columns = {
        "a": np.array([np.nan if r[0] is None else r[0] for r in data], dtype=np.float64),
        "b": np.array([r[1] for r in data], dtype=object),  # an int/object column
        "c": np.array([np.nan if r[2] is None else r[2] for r in data], dtype=np.float64),
        "s": np.array([r[3] for r in data], dtype=object),
        "f": np.array([r[4] for r in data], dtype=object),
    }
    vector = expr.evaluate_columns(columns, n)
    for i, r in enumerate(data):
        one = expr.evaluate_row(dict(zip("abcsf", r, strict=True)))
        assert bits(one) == bits(vector[i]), (text, r, one, vector[i])
        assert (
            expr.truth_row(dict(zip("abcsf", r, strict=True))) == expr.truth_columns(columns, n)[i]
        )


@pytest.mark.parametrize(
    ("text", "row", "expected"),
    [
        ("a / b", {"a": 1.0, "b": 0.0}, None),  # division by zero is null
        ("a % b", {"a": 1.0, "b": 0.0}, None),
        ("a ** b", {"a": 0.0, "b": -1.0}, None),
        ("log(a)", {"a": 0.0}, None),
        ("log(a)", {"a": -1.0}, None),
        ("sqrt(a)", {"a": -4.0}, None),
        ("sqrt(a)", {"a": 4.0}, 2.0),
        ("a - b", {"a": math.inf, "b": math.inf}, None),  # NaN is null
        ("a * 2", {"a": 1e308}, math.inf),  # overflow is an infinity
        ("a + 1", {"a": None}, None),  # nulls propagate
        ("min(a, b)", {"a": None, "b": 1.0}, None),
        ("coalesce(a, b, 3)", {"a": None, "b": None}, 3.0),
        ("if(a > 1, 'big', 'small')", {"a": None}, "small"),  # a null compares false
        ("a > 3 * 100", {"a": 301}, True),
        ("a % 10 == 0", {"a": 120.0}, True),
        ("not (a > 1)", {"a": None}, True),
    ],
)
def test_semantics(text: str, row: dict, expected: Any) -> None:
    assert bits(parse_expression(text, {"a": NUMBER, "b": NUMBER}).evaluate_row(row)) == bits(
        expected
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a +", "does not parse"),
        ("x + 1", "names unknown name(s) x"),
        ("s + 1", "+ needs numbers"),
        ("s > 1", "compares a string with a number"),
        ("log(s)", "log() takes numbers"),
        ("if(a, 1)", "if() takes 3 argument(s)"),
        ("open('f')", "not allowed"),
        ("a.b", "not allowed"),
        ("request.amount", "only known to derived features"),
        ("a // 2", "operator // is not allowed"),
        (" or ".join(["a > 1"] * 200), "more than 500 terms"),
        ("a" * 5000, "longer than"),
    ],
)
def test_refusals_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        parse_expression(text, {"a": NUMBER, "s": STRING})


# ------------------------------------------------------------------------ definitions

DEFS = """
entities:
  - {{name: customer, join_key: customer_id}}
sources:
  - name: tx
    topic: tx
    timestamp_field: ts
    schema: {{customer_id: string, amount: float, qty: int, category: string, online: bool}}
    columns: {{is_round: "amount % 10 == 0", amount_x3: "amount * 3", big: "amount_x3 > 3 * 100"}}
feature_views:
  - name: v
    source: tx
    entity: customer
    request: {{amount: float}}
    features:
{features}
"""

FEATURES = [
    "{name: s1, column: amount, aggregation: sum, window: 1h}",
    "{name: s2, column: amount, aggregation: sum, window: 2h}",
    "{name: m2, column: amount, aggregation: mean, window: 2h}",
    "{name: d2, column: amount, aggregation: std, window: 2h}",
    "{name: n1, aggregation: count, window: 1h}",
    "{name: round_share, column: is_round, aggregation: mean, window: 2h}",
    "{name: big_count, aggregation: count, window: 2h, where: 'big and amount_x3 > qty'}",
    "{name: x3_max, column: amount_x3, aggregation: max, window: 2h}",
    '{name: ratio, expression: "s1 / s2"}',
    '{name: z, expression: "(request.amount - m2) / d2"}',
    '{name: zz, expression: "coalesce(z, 0) + ratio * n1"}',
]


def registry_with(tmp: Path, features: list[str]) -> Any:
    path = tmp / "defs.yaml"
    path.write_text(DEFS.format(features="\n".join(f"      - {f}" for f in features)))
    return load_definitions(path)


@pytest.mark.parametrize(
    ("feature", "path", "message"),
    [
        ('{name: r, expression: "s1 / nope"}', "features[1].expression", "unknown feature(s) nope"),
        ('{name: r, expression: "r + 1"}', "features", "cycle: r -> r"),
        ('{name: r, expression: "request.fx * s1"}', "features[1].expression",
         "unknown request field(s) fx"),
        ('{name: r, expression: "s1 > \'a\'"}', "features[1].expression",
         "compares a number with a string"),
        ('{name: r, expression: "s1", window: 1h}', "features[1]", "takes no window"),
    ],
)  # fmt: skip
def test_bad_derived_features_are_refused_with_file_and_path(
    tmp_path: Path, feature: str, path: str, message: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        registry_with(tmp_path, [FEATURES[0], feature])
    (issue,) = caught.value.issues
    assert issue.path == f"feature_views[0].{path}" and issue.file.endswith("defs.yaml")
    assert message in issue.message


def test_cycles_between_derived_features_and_computed_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"cycle: a -> b -> a"):
        registry_with(tmp_path, [FEATURES[0], '{name: a, expression: "b"}',
                                 '{name: b, expression: "a + s1"}'])  # fmt: skip
    path = tmp_path / "cols.yaml"
    path.write_text(DEFS.format(features="      - " + FEATURES[0]).replace(
        'big: "amount_x3 > 3 * 100"', 'big: "amount_x3 > 3 * 100", u: "w", w: "u"'))  # fmt: skip
    with pytest.raises(DefinitionError) as caught:
        load_definitions(path)
    assert caught.value.issues[0].path == "sources[0].columns"
    assert "cycle" in caught.value.issues[0].message


def test_a_missing_request_field_is_a_422_naming_it(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, FEATURES)
    refs = resolve_features(registry, ["v:z"])
    with pytest.raises(RequestError, match=r"needs request field 'amount'") as caught:
        asyncio.run(online_features(None, refs, {"customer_id": ["a"]}, T0, 10))  # type: ignore[arg-type]
    assert caught.value.status == 422
    with pytest.raises(RequestError, match=r"'amount' .* is float, got 'x'"):
        asyncio.run(online_features(None, refs, {"customer_id": ["a"], "amount": ["x"]}, T0, 10))  # type: ignore[arg-type]
    frame = pd.DataFrame({"customer_id": ["a"], "event_timestamp": [T0]})
    with pytest.raises(RequestError, match=r"needs request field 'amount'"):
        get_historical_features(registry, str(tmp_path / "none"), frame, ["v:z"])


event_lists = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from([0.0, 30.0, 600.0, 3000.0, 5000.0]),
        st.one_of(st.none(), st.sampled_from([0.0, 10.0, 20.0, 7.5, 100.0, 250.0, -40.0])),
        st.one_of(st.none(), st.integers(0, 400)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=event_lists,
    request=st.lists(st.sampled_from([None, 0.0, 15.0, -1e308, math.inf]), min_size=1, max_size=4),
)
def test_derived_features_equal_the_expression_of_the_brute_force_values(
    events: list[tuple], request: list[Any]
) -> None:
    """Training sets (columns) and the lookup's row-by-row path both give the derived
    value of the brute force's aggregates, bit for bit; computed columns are evaluated
    from the log as the worker evaluates them."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = registry_with(Path(tmp), FEATURES)
        view = registry.feature_views["v"]
        rows = []
        clock = T0
        for entity, gap, amount, qty in events:
            clock += gap
            rows.append({"customer_id": entity, "amount": np.nan if amount is None else amount,
                         "qty": qty, "category": "c", "online": True, "ts": clock})  # fmt: skip
        log = write_log(Path(tmp), registry, rows)
        times = [T0 + 3600.0 * k for k in range(4)]
        keys = [(c, t, r) for c in ("a", "b") for t in times for r in request]
        frame = pd.DataFrame({
            "customer_id": [c for c, _, _ in keys],
            "event_timestamp": [t for _, t, _ in keys],
            "amount": pd.Series([r for _, _, r in keys], dtype=object),
        })  # fmt: skip
        names = view.feature_names
        out = get_historical_features(registry, log, frame, [f"v:{n}" for n in names])
        plan = needs(view, ["ratio", "z", "zz"])
        for i, (entity, t, r) in enumerate(keys):
            base = {}
            for index, f in enumerate(view.features):
                events_ = []
                for seq, row in enumerate(rows):
                    if row["customer_id"] != entity:
                        continue
                    amount = None if np.isnan(row["amount"]) else row["amount"]
                    values = {"amount": amount, "qty": row["qty"]}
                    for name, expr in view.source.computed:
                        values[name] = expr.evaluate_row(values)
                    passes = [g.where is None or g.where.evaluate_row(values)
                              for g in view.features]  # fmt: skip
                    events_.append(Event(row["ts"], seq, values, passes))
                base[f.name] = brute_force(events_, t, f, index)
            # the lookup's path, row by row, over the aggregate values the training set
            # has, gives the training set's derived values bit for bit
            served = {f.name: [_plain(out[f.name].iloc[i])] for f in view.features}
            online = derive_rows(view, plan.derived, served, {"amount": [r]}, 1)
            # and over the brute force's values, the same bits where those are the same
            # bits (floating sums may differ in the last place: DESIGN.md's 1e-9)
            exact = all(bits(served[f.name][0]) == bits(base[f.name]) for f in view.features)
            brute = derive_rows(view, plan.derived, {k: [v] for k, v in base.items()},
                                {"amount": [r]}, 1)  # fmt: skip
            for d in plan.derived:
                assert bits(online[d.name][0]) == bits(out[d.name].iloc[i])
                if exact:
                    assert bits(brute[d.name][0]) == bits(out[d.name].iloc[i])
            for name in ("round_share", "big_count", "x3_max", "n1"):
                got, want = out[name].iloc[i], base[name]
                assert (bits(got) == bits(want)) or math.isclose(got, want, rel_tol=1e-9)


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------- feature services

SERVICE = """
feature_services:
  - name: scoring
    request: {fx: float}
    features:
      - v:n1
      - v:z
      - {name: spend_fx, expression: "v__s2 * request.fx"}
      - {name: per_txn, expression: "v__s1 / v__n1"}
"""


def test_a_feature_service_combines_features_in_expressions_in_training_sets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text(DEFS.format(features="\n".join(f"      - {f}" for f in FEATURES)) + SERVICE)
    registry = load_definitions(path)
    rows = [
        {
            "customer_id": c,
            "amount": a,
            "qty": 1,
            "category": "c",
            "online": True,
            "ts": T0 + k * 60,
        }
        for k, (c, a) in enumerate([("a", 10.0), ("a", 25.5), ("b", 3.0), ("a", 4.0)])
    ]
    log = write_log(tmp_path, registry, rows)
    frame = pd.DataFrame({
        "customer_id": ["a", "b", "nobody"],
        "event_timestamp": [T0 + 600] * 3,
        "amount": [100.0, None, 1.0],
        "fx": [2.0, 0.5, None],
    })  # fmt: skip
    out = get_historical_features(registry, log, frame, feature_service="scoring")
    assert list(out.columns)[-4:] == ["n1", "z", "spend_fx", "per_txn"]
    plain = get_historical_features(registry, log, frame, ["v:s1", "v:s2", "v:n1"])
    assert out["spend_fx"].tolist()[:2] == [39.5 * 2.0, 3.0 * 0.5]
    assert math.isnan(out["spend_fx"].iloc[2])  # a null request field propagates
    want = plain["s1"].to_numpy() / plain["n1"].to_numpy()
    assert [bits(x) for x in out["per_txn"]] == [bits(x) for x in want[:2]] + [None]  # 0/0
    # the bucketed engine gives the same frame, in this process and in worker processes
    # (which get the views, expressions included, pickled)
    from feature_service.offline.buckets import bucketed_historical_features

    for workers in (1, 2):
        bucketed = bucketed_historical_features(
            registry, log, frame, feature_service="scoring", workers=workers, buckets=2
        )
        for name in ("n1", "z", "spend_fx", "per_txn"):
            assert [bits(x) for x in bucketed[name]] == [bits(x) for x in out[name]], name
    # a missing request field of the service is a 422 naming it, online and offline
    refs = resolve_features(registry, None, "scoring")
    with pytest.raises(RequestError, match=r"spend_fx needs request field 'fx'"):
        entities = {"customer_id": ["a"], "amount": [1.0]}
        asyncio.run(online_features(None, refs, entities, T0, 10))  # type: ignore[arg-type]
    with pytest.raises(RequestError, match=r"needs request field 'fx'"):
        get_historical_features(registry, log, frame.drop(columns="fx"), feature_service="scoring")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{name: x, expression: "v__nope + 1"}', "unknown feature (view__feature)(s) v__nope"),
        ('{name: x, expression: "s1 + 1"}', "write a view's feature as view__feature"),
        ('{name: x, expression: "v__s1 * request.fx2"}', "unknown request field(s) fx2"),
        ('{name: x, expression: "request.fx * 2"}', "reads no feature"),
    ],
)
def test_bad_service_expressions_are_refused_with_file_and_path(
    tmp_path: Path, entry: str, message: str
) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text(
        DEFS.format(features="\n".join(f"      - {f}" for f in FEATURES))
        + "feature_services:\n  - name: s\n    request: {fx: float}\n"
        + f"    features: [v:n1, {entry}]\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_definitions(path)
    (issue,) = caught.value.issues
    assert issue.path == "feature_services[0].features[1].expression"
    assert message in issue.message
