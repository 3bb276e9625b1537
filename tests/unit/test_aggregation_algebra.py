"""The aggregation algebra against a brute-force reference, and its monoid laws.

These pin the first twelve aggregations, their IR shapes included; every registered
kind, those with parameters too, is held to its plain path and its oracle by
test_aggregation_kinds.py."""

from __future__ import annotations

import doctest
import json
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import feature_service.aggregation.base as base_module
import feature_service.aggregation.numerics as numerics_module
import feature_service.aggregation.reference as reference_module
import feature_service.aggregation.registry as registry_module
import feature_service.aggregation.spec as spec_module
import feature_service.aggregation.state as state_module
import feature_service.aggregation.window_events as window_events_module
import feature_service.aggregation.windows as windows_module
from feature_service.aggregation.base import PRESENT, Aggregation
from feature_service.aggregation.reference import Event, FeatureSpec, brute_force, matches
from feature_service.aggregation.registry import AGGREGATIONS as ALL_AGGREGATIONS

AGGREGATIONS = {
    name: ALL_AGGREGATIONS[name]
    for name in (
        "count",
        "count_distinct",
        "first",
        "last",
        "max",
        "mean",
        "min",
        "skew",
        "std",
        "sum",
        "time_since_last",
        "var",
    )
}
NAMES = sorted(AGGREGATIONS)
NUMERIC = sorted(name for name, agg in AGGREGATIONS.items() if agg.numeric_only)
FLOATY = {name for name, agg in AGGREGATIONS.items() if agg.rounded}  # agree to rounding
NAN = math.nan

numbers = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.integers(-20, 20).map(float),
)
numeric_values = st.one_of(st.none(), st.just(NAN), numbers, numbers, numbers)
labels = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))
small_ints = st.one_of(st.none(), st.integers(-5, 5))
times = st.one_of(st.integers(0, 30).map(float), st.floats(0, 30, allow_nan=False))


def values_for(name: str) -> st.SearchStrategy[Any]:
    return numeric_values if name in NUMERIC else st.one_of(numeric_values, labels, small_ints)


@st.composite
def aggregation_and_events(draw: st.DrawFn) -> tuple[str, list[tuple[float, int, Any]]]:
    """An aggregation and events ``(ts, seq, value)``; seq is unique (arrival order)."""
    name = draw(st.sampled_from(NAMES))
    n = draw(st.integers(0, 30))
    ts = draw(st.lists(times, min_size=n, max_size=n))
    values = draw(st.lists(values_for(name), min_size=n, max_size=n))
    return name, [(t, seq, v) for seq, (t, v) in enumerate(zip(ts, values, strict=True))]


def fold(agg: Aggregation, events: list[tuple[float, int, Any]]) -> Any:
    ir = agg.empty()
    for ts, seq, value in events:
        ir = agg.update(ir, ts, seq, value)
    return ir


def reference(name: str, events: list[tuple[float, int, Any]], t: float) -> Any:
    spec = FeatureSpec("f", name, "x")
    return brute_force([Event(ts, seq, {"x": v}) for ts, seq, v in events], t, spec)


def assert_value(name: str, actual: Any, expected: Any, events: list[tuple[float, int, Any]]):
    values = [v for _, _, v in events if isinstance(v, float | int)]
    assert matches(name, actual, expected, values), (name, actual, expected)


def assert_ir_close(name: str, a: Any, b: Any) -> None:
    """IRs equal, floats to rounding (for the float aggregations)."""
    if name not in FLOATY:
        assert a == b
        return
    assert a[0] == b[0]
    scale = max(1.0, *(abs(x) for x in a[1:]), *(abs(x) for x in b[1:]))
    for x, y in zip(a[1:], b[1:], strict=True):
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9 * scale), (name, a, b)


# ----------------------------------------------------------------------- against brute force


@settings(max_examples=300, deadline=None)
@given(aggregation_and_events())
def test_folding_updates_matches_brute_force(case: tuple[str, list[Any]]) -> None:
    name, events = case
    t = 31.0
    assert_value(
        name,
        AGGREGATIONS[name].finalize(fold(AGGREGATIONS[name], events), t),
        reference(name, events, t),
        events,
    )


extremes = st.sampled_from([1.7e308, -1.7e308, math.inf, -math.inf, -0.0, 1e-300, 2**60])


@settings(max_examples=400, deadline=None)
@given(
    aggregation_and_events(),
    st.lists(st.tuples(st.integers(0, 30), extremes), max_size=4),
    st.booleans(),
)
def test_fold_is_the_update_loop_bit_for_bit(
    case: tuple[str, list[Any]], extreme: list[tuple[int, float]], columnless: bool
) -> None:
    """Each aggregation's own `fold` (the one-loop form a lookup of one entity uses)
    gives exactly the IR of folding `update`, overflow and signed zeros included."""
    name, events = case
    events = list(events)
    for at, x in extreme:  # overflowing sums and means, infinities, -0.0
        if name in NUMERIC or not events:
            events.insert(min(at, len(events)), (float(at), len(events) + at, x))
    agg = AGGREGATIONS[name]
    if columnless and not agg.needs_column:
        events = [(ts, seq, PRESENT) for ts, seq, _ in events]
        got = agg.fold([e[0] for e in events], [e[1] for e in events], None)
    else:
        got = agg.fold([e[0] for e in events], [e[1] for e in events], [e[2] for e in events])
    assert json.dumps(got) == json.dumps(fold(agg, events)), (name, events)


EDGES = [
    [-0.0],
    [0.0, -0.0],
    [1.7e308, 1.7e308, 1.0],
    [-1.7e308, 1.7e308, 1.7e308],
    [math.inf, 1.0],
    [1.0, NAN, None, 2.0],
    [1e16, 1.0, -1e16],
    [2**60, 3, True],
    ["b", "a", None, "b", 1, 1.0],
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("values", EDGES, ids=range(len(EDGES)))
def test_fold_is_the_update_loop_on_edge_values(name: str, values: list[Any]) -> None:
    if name in NUMERIC and any(isinstance(v, str) for v in values):
        return
    agg = AGGREGATIONS[name]
    events = [(float(i // 2), i, v) for i, v in enumerate(values)]  # ties of time too
    got = agg.fold([e[0] for e in events], [e[1] for e in events], values)
    assert json.dumps(got) == json.dumps(fold(agg, events))


@pytest.mark.parametrize("name", ["count", "time_since_last"])
def test_columnless_aggregations_use_every_event(name: str) -> None:
    agg = AGGREGATIONS[name]
    ir = agg.fold([1.0, 5.0, 3.0], [0, 1, 2], None)
    assert agg.finalize(ir, 10.0) == {"count": 3, "time_since_last": 5.0}[name]
    with_column = agg.fold([1.0, 5.0, 3.0], [0, 1, 2], [1.0, None, NAN])
    assert agg.finalize(with_column, 10.0) == {"count": 1, "time_since_last": 9.0}[name]


@pytest.mark.parametrize("name", NAMES)
def test_no_events_give_zero_for_counts_and_none_otherwise(name: str) -> None:
    agg = AGGREGATIONS[name]
    expected = 0 if name in ("count", "count_distinct") else None
    assert agg.finalize(agg.empty(), 100.0) == expected
    assert agg.finalize(agg.fold([1.0], [0], [None]), 100.0) == expected


@pytest.mark.parametrize("name", ["std", "var"])
def test_std_and_var_need_two_values(name: str) -> None:
    agg = AGGREGATIONS[name]
    assert agg.finalize(agg.fold([1.0, 2.0], [0, 1], [4.0, None]), 3.0) is None
    assert agg.finalize(agg.fold([1.0, 2.0], [0, 1], [4.0, 4.0]), 3.0) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=60),
    st.floats(-1e5, 1e5, allow_nan=False),
    st.randoms(use_true_random=False),
)
def test_std_and_var_match_numpy_ddof1_to_1e_9(
    xs: list[float], shift: float, rnd: random.Random
) -> None:
    spread = max(xs) - min(xs)
    if spread < 1e-3 * max(1.0, abs(shift), *map(abs, xs)):
        xs = [*xs, xs[0] + max(1.0, abs(shift))]  # keep the problem well conditioned
    xs = [x + shift for x in xs]
    expected = {"var": np.var(xs, ddof=1), "std": np.std(xs, ddof=1)}
    for name in ("var", "std"):
        agg = AGGREGATIONS[name]
        events = list(enumerate(xs))
        folded = agg.fold([float(i) for i, _ in events], [i for i, _ in events], xs)
        parts = [agg.fold([0.0], [i], [x]) for i, x in events]
        rnd.shuffle(parts)
        while len(parts) > 1:  # merge in a random tree
            i = rnd.randrange(len(parts) - 1)
            parts[i : i + 2] = [agg.merge(parts[i], parts[i + 1])]
        grouped = agg.grouped(
            np.zeros(len(xs)), np.arange(len(xs)), np.array(xs), np.zeros(len(xs), dtype=np.int64)
        )[0]
        for ir in (folded, parts[0], grouped):
            assert math.isclose(agg.finalize(ir, 0.0), expected[name], rel_tol=1e-9)


def test_sum_is_compensated() -> None:
    agg = AGGREGATIONS["sum"]
    ir = agg.fold([0.0] * 4, [0, 1, 2, 3], [1e16, 1.0, 1.0, -1e16])
    assert agg.finalize(ir, 0.0) == 2.0
    left, right = agg.fold([0.0], [0], [1e16]), agg.fold([0.0, 0.0], [1, 2], [1.0, -1e16])
    assert agg.finalize(agg.merge(left, right), 0.0) == 1.0


def test_first_and_last_break_time_ties_by_seq() -> None:
    first, last = AGGREGATIONS["first"], AGGREGATIONS["last"]
    ts, seq, values = [5.0, 5.0, 5.0], [2, 0, 1], ["c", "a", "b"]
    assert first.finalize(first.fold(ts, seq, values), 5.0) == "a"
    assert last.finalize(last.fold(ts, seq, values), 5.0) == "c"


def test_count_distinct_is_exact_and_treats_equal_numbers_as_one() -> None:
    agg = AGGREGATIONS["count_distinct"]
    values = [1, 1.0, True, 2, "1", "a", "a", None, NAN, -0.0, 0.0]
    assert agg.finalize(agg.fold([0.0] * len(values), range(len(values)), values), 0.0) == 5
    many = agg.fold([0.0] * 5000, range(5000), [i % 1234 for i in range(5000)])
    assert agg.finalize(many, 0.0) == 1234


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_aggregations_refuse_strings(name: str) -> None:
    agg = AGGREGATIONS[name]
    with pytest.raises(TypeError):
        agg.update(agg.empty(), 0.0, 0, "abc")
    with pytest.raises(TypeError):
        agg.grouped([0.0], [0], np.array(["abc"]), [0])


def test_table_describes_each_aggregation() -> None:
    assert NAMES == [
        "count",
        "count_distinct",
        "first",
        "last",
        "max",
        "mean",
        "min",
        "skew",
        "std",
        "sum",
        "time_since_last",
        "var",
    ]
    assert set(NAMES) <= set(ALL_AGGREGATIONS)
    columnless = {n for n, a in AGGREGATIONS.items() if not a.needs_column}
    assert columnless == {"count", "time_since_last"}
    assert set(NUMERIC) == {"sum", "mean", "min", "max", "std", "var", "skew"}
    assert all(agg.name == name for name, agg in AGGREGATIONS.items())


# ----------------------------------------------------------------------- monoid laws


@settings(max_examples=300, deadline=None)
@given(aggregation_and_events(), st.randoms(use_true_random=False))
def test_merge_is_commutative_associative_and_order_free(
    case: tuple[str, list[Any]], rnd: random.Random
) -> None:
    name, events = case
    agg = AGGREGATIONS[name]
    parts: list[list[Any]] = [[], [], []]
    for event in events:
        parts[rnd.randrange(3)].append(event)
    a, b, c = (fold(agg, p) for p in parts)
    assert agg.merge(a, b) == agg.merge(b, a)  # bit for bit
    assert agg.merge(agg.empty(), a) == a
    assert agg.merge(a, agg.empty()) == a
    assert_ir_close(name, agg.merge(agg.merge(a, b), c), agg.merge(a, agg.merge(b, c)))
    folded = agg.merge(agg.merge(a, b), c)
    at_once = agg.merge_all(rnd.sample([a, b, c, agg.empty()], 4))
    if name in FLOATY:
        assert at_once[0] == folded[0]
        assert_value(name, agg.finalize(at_once, 31.0), agg.finalize(folded, 31.0), events)
    else:
        assert at_once == folded
    # shuffled events folded one by one, and the parts merged in another order
    shuffled = events[:]
    rnd.shuffle(shuffled)
    merged = agg.merge(c, agg.merge(b, a))
    assert_ir_close(name, fold(agg, shuffled), merged)
    assert_value(name, agg.finalize(merged, 31.0), reference(name, events, 31.0), events)


@settings(max_examples=150, deadline=None)
@given(aggregation_and_events())
def test_irs_survive_a_json_round_trip(case: tuple[str, list[Any]]) -> None:
    name, events = case
    agg = AGGREGATIONS[name]
    half = len(events) // 2
    a, b = fold(agg, events[:half]), fold(agg, events[half:])
    a2, b2 = (json.loads(json.dumps(ir)) for ir in (a, b))
    assert a2 == a
    assert agg.merge(a2, b2) == agg.merge(a, b)
    assert agg.finalize(agg.merge(a2, b2), 31.0) == agg.finalize(agg.merge(a, b), 31.0)
    more = agg.update(a2, 30.0, 10_000, PRESENT)
    assert more == agg.update(a, 30.0, 10_000, PRESENT)


# ----------------------------------------------------------------------- vectorised path


@st.composite
def grouped_case(draw: st.DrawFn) -> tuple[str, list[Any], list[int], str]:
    name, events = draw(aggregation_and_events())
    groups = draw(st.lists(st.integers(0, 4), min_size=len(events), max_size=len(events)))
    return name, events, groups, draw(st.sampled_from(["object", "typed", "none"]))


def as_array(values: list[Any], how: str) -> np.ndarray | None:
    if how == "none":
        return None
    if how == "typed":
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {float}:
            return np.array([NAN if v is None else v for v in values], dtype=np.float64)
        if kinds == {str} and None not in values:
            return np.array(values)
        if kinds == {int} and None not in values:
            return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object)


@settings(max_examples=400, deadline=None)
@given(grouped_case())
def test_grouped_equals_folding_updates(case: tuple[str, list[Any], list[int], str]) -> None:
    name, events, groups, how = case
    agg = AGGREGATIONS[name]
    if how == "none" and agg.needs_column:
        how = "object"
    values = as_array([v for _, _, v in events], how)
    n_groups = 6
    out = agg.grouped(
        np.array([e[0] for e in events], dtype=np.float64),
        np.array([e[1] for e in events], dtype=np.int64),
        values,
        np.array(groups, dtype=np.int64),
        n_groups,
    )
    assert len(out) == n_groups
    for g in range(n_groups):
        mine = [
            (ts, seq, PRESENT if values is None else v)
            for (ts, seq, v), gg in zip(events, groups, strict=True)
            if gg == g
        ]
        expected = fold(agg, mine)
        assert_ir_close(name, out[g], expected)
        assert json.loads(json.dumps(out[g])) == out[g]
        assert_value(name, agg.finalize(out[g], 31.0), agg.finalize(expected, 31.0), mine)


def test_grouped_handles_no_events_and_default_group_count() -> None:
    for name, agg in AGGREGATIONS.items():
        empty = np.zeros(0)
        assert agg.grouped(empty, empty, empty, empty.astype(np.int64), 2) == [agg.empty()] * 2
        out = agg.grouped([1.0, 2.0], [0, 1], np.array([3.0, 4.0]), [2, 2])
        assert len(out) == 3 and out[0] == agg.empty(), name


# ----------------------------------------------------------------------- documentation


@pytest.mark.parametrize(
    "module",
    [
        base_module,
        numerics_module,
        registry_module,
        windows_module,
        spec_module,
        reference_module,
        state_module,
        window_events_module,
    ],
    ids=lambda m: m.__name__.rsplit(".", 1)[-1],
)
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
