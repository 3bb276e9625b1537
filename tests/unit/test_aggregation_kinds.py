"""Every registered aggregation, each evaluation path held to the plain one.

One property test over `AGGREGATIONS`: a kind added to the registry is covered without a
line of test code. The plain path is `update` folded over the events in (ts, seq) order
and `finalize`d (`Aggregation`'s definition); every other path a kind may override (its
`fold`, `grouped`, `merge` of arbitrary batches in any order, `over_windows` of many
windows, the compaction's `witnesses`) must give the same value: bit for bit, except a
floating sum (`rel_tol` > 0), which agrees within its declared tolerance. The value also
agrees with the kind's `oracle` (the contract, computed plainly), an approximation
within its documented bound (`Aggregation.matches_exact`). A kind with parameters is
bound to values drawn from each parameter's range (`parameter_values`).
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from feature_service.aggregation.base import PRESENT, Aggregation, Parameter
from feature_service.aggregation.registry import AGGREGATIONS
from feature_service.aggregation.values import plain_value
from feature_service.aggregation.window_events import WindowEvents

NAMES = sorted(AGGREGATIONS)

finite_numbers = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.integers(-20, 20).map(float),
    st.sampled_from([1e150, -1e150, 1e-300, -0.0, 0.0, 2.0**60, 0.1]),  # extremes
)
COLUMNS = {
    "float": st.one_of(st.none(), st.just(math.nan), finite_numbers, finite_numbers),
    "int": st.one_of(st.none(), st.integers(-5, 5), st.integers(-(2**53), 2**53)),
    "bool": st.one_of(st.none(), st.booleans()),
    "string": st.one_of(st.none(), st.sampled_from(["a", "b", "c", "", "1"])),
}


def parameter_values(param: Parameter) -> st.SearchStrategy[Any]:
    """Values of one parameter: small ones, where a k-list or a bound is exercised by
    a few dozen events, and the example."""
    if param.kind == "int":
        low = int(param.low) + (1 if param.open else 0)
        return st.integers(low, min(int(param.high), low + 6))
    if param.kind == "duration":
        return st.sampled_from([1, 7, 60, 86400])
    inner = st.floats(param.low, param.high, exclude_min=param.open, exclude_max=param.open)
    if param.kind == "floats":
        return st.lists(inner, min_size=1, max_size=4)
    return inner


@st.composite
def cases(draw: st.DrawFn) -> tuple[Aggregation, str | None, list[tuple[float, int, Any]]]:
    """A kind, its column's schema kind (None: no column) and events (ts, seq, value)
    in arrival order (seq unique, times out of order and tied)."""
    agg = AGGREGATIONS[draw(st.sampled_from(NAMES))]
    given = {
        key: draw(parameter_values(param))
        for key, param in agg.parameters.items()
        if (param.default is None and not param.optional) or draw(st.booleans())
    }
    try:
        agg = agg.bind(given)
    except ValueError:  # a combination the kind refuses (one of two parameters)
        assume(False)
    kinds = ["float", "int", "bool"] if agg.numeric_only else list(COLUMNS)
    column = draw(st.sampled_from([*kinds, *([None] if not agg.needs_column else [])]))
    n = draw(st.integers(0, 40))
    ts = draw(st.lists(st.integers(0, 20).map(float), min_size=n, max_size=n))
    if column is None:
        values: list[Any] = [PRESENT] * n
    else:
        values = draw(st.lists(COLUMNS[column], min_size=n, max_size=n))
    seqs = draw(st.permutations(range(n)))
    return agg, column, [(t, s, v) for t, s, v in zip(ts, seqs, values, strict=True)]


def plain(agg: Aggregation, events: list[tuple[float, int, Any]]) -> Any:
    """The IR of the plain path: `update` over the events in (ts, seq) order."""
    ir = agg.empty()
    for ts, seq, value in sorted(events, key=lambda e: (e[0], e[1])):
        ir = agg.update(ir, ts, seq, value)
    return ir


def same(agg: Aggregation, got: Any, want: Any, events: list[tuple[float, int, Any]]) -> bool:
    """Bit for bit (as JSON: -0.0, None), or for a floating sum within its tolerance."""
    got, want = plain_value(got), plain_value(want)
    if not agg.rounded:
        return json.dumps(got) == json.dumps(want)
    numbers = [v for _, _, v in events if isinstance(v, float | int) and v == v]
    return agg.matches(got, want, agg.magnitude(numbers))


@settings(max_examples=600, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
# -0.0 alone: the paths give 0.0 (a value is normalised as `update` does), the oracle too
@example((AGGREGATIONS["min"], "float", [(0.0, 0, -0.0)]), random.Random(0))
@example((AGGREGATIONS["max"], "float", [(0.0, 0, -0.0)]), random.Random(0))
# more values than the strategy draws: approx_percentile's fold takes numpy's passes
@example(
    (
        AGGREGATIONS["approx_percentile"].bind({"percentiles": [0.1, 0.5, 0.99]}),
        "float",
        [(float(i % 21), i, None if i % 13 == 0 else (-1) ** i * 1.5 ** (i % 40) - i % 3)
         for i in range(200)],
    ),
    random.Random(0),
)  # fmt: skip
def test_every_path_of_every_kind_gives_the_plain_value(
    case: tuple[Aggregation, str | None, list[tuple[float, int, Any]]], rnd: random.Random
) -> None:
    agg, column, events = case
    t = 25.0
    ordered = sorted(events, key=lambda e: (e[0], e[1]))
    reference = plain(agg, events)
    want = agg.finalize(reference, t)
    valued = [e for e in events if e[2] is not None and e[2] == e[2]]

    # the contract, computed plainly
    exact = agg.oracle(sorted(valued), t)
    if type(agg).matches_exact is Aggregation.matches_exact:  # an exact kind
        assert same(agg, want, exact, events), (agg, want)
    else:
        numbers = [v for _, _, v in valued if isinstance(v, float | int)]
        assert agg.matches_exact(want, exact, agg.magnitude(numbers)), (agg, want, exact)

    # fold of the (ts, seq)-ordered events: the IR of the update loop, bit for bit
    ts, seq, vals = ([e[i] for e in ordered] for i in range(3))
    folded = agg.fold(ts, seq, None if column is None else vals)
    assert json.dumps(folded) == json.dumps(reference), agg

    # fold of the events as they arrived (a fast path that takes them in order checks
    # that they are): the same IR, or for a floating sum the same value to tolerance
    ts, seq, vals = ([e[i] for e in events] for i in range(3))
    arrived = agg.fold(ts, seq, None if column is None else vals)
    if agg.rounded:
        assert same(agg, agg.finalize(arrived, t), want, events), agg
    else:
        assert json.dumps(arrived) == json.dumps(reference), agg

    # arbitrary batches (shuffled within), merged in an arbitrary order
    batches: list[list[tuple[float, int, Any]]] = [[] for _ in range(rnd.randint(1, 5))]
    for event in events:
        batches[rnd.randrange(len(batches))].append(event)
    irs = [plain(agg, b) for b in batches]
    rnd.shuffle(irs)
    merged = agg.empty()
    for ir in irs:
        merged = agg.merge(merged, ir) if rnd.random() < 0.5 else agg.merge(ir, merged)
    assert same(agg, agg.finalize(merged, t), want, events), agg
    assert json.loads(json.dumps(merged)) == merged  # stored as JSON

    # grouped: the IR of each batch at once
    group = np.zeros(len(events), dtype=np.int64)
    for g, b in enumerate(batches):
        for e in b:
            group[events.index(e)] = g
    column_array = _column(column, [e[2] for e in events])
    grouped = agg.grouped(
        [e[0] for e in events], [e[1] for e in events], column_array, group, len(batches)
    )
    for g, b in enumerate(batches):
        assert same(agg, agg.finalize(grouped[g], t), agg.finalize(plain(agg, b), t), b)

    # over_windows: many windows of the sorted events at once, as training sets and
    # online reads of many rows evaluate them, against the plain path of each window
    member = np.array([v is not None and v == v for *_, v in ordered], dtype=np.bool_)
    sorted_values = _column(column, [e[2] for e in ordered])
    stream = WindowEvents.select(
        np.zeros(len(ordered), dtype=np.int64),
        np.array([e[0] for e in ordered], dtype=np.float64),
        sorted_values,
        column,
        member,
    )
    n = len(stream.ts)
    windows = [(0, n)] + [tuple(sorted(rnd.sample(range(n + 1), 2))) for _ in range(4) if n]
    lo = np.array([w[0] for w in windows], dtype=np.int64)
    hi = np.array([w[1] for w in windows], dtype=np.int64)
    at = np.full(lo.size, t)
    kept = [e for e in ordered if e[2] is not None and e[2] == e[2]]
    for lifetime in (False, True):
        if lifetime:
            lo = np.zeros_like(lo)
        got = list(agg.over_windows(stream, lo, hi, at, lifetime=lifetime))
        for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
            window = kept[a:b]
            assert same(agg, got[i], agg.finalize(plain(agg, window), t), window), (agg, a, b)

    # compaction: a lifetime value over compacted events is kept by its witnesses alone
    if agg.keeps_witnesses and kept:
        kept_values = None if column is None else _column(column, [e[2] for e in kept])
        picked = agg.witnesses(np.zeros(len(kept), dtype=np.int64), kept_values, column)
        witnesses = [e for e, w in zip(kept, picked.tolist(), strict=True) if w]
        assert same(agg, agg.finalize(plain(agg, witnesses), t), want, events), agg


def _column(kind: str | None, values: list[Any]) -> Any:
    """Values as the stores give them: float64 with NaN, objects for the rest."""
    if kind is None:
        return None
    if kind == "float":
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
