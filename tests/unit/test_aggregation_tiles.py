"""Tile state and window arithmetic against the brute-force reference of the contract."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_service.aggregation.algebra import AGGREGATORS
from feature_service.aggregation.reference import (
    Event,
    FeatureSpec,
    brute_force,
    matches,
    selected,
)
from feature_service.aggregation.tiles import (
    LayoutMismatchError,
    NeedMoreFields,
    OutsideRetentionError,
    TileLayout,
    TileState,
    decode_field,
    encode_field,
)
from feature_service.aggregation.windows import (
    check_levels,
    cover,
    default_hop,
    tile_start,
    tile_starts,
    window_start,
)

NAMES = sorted(AGGREGATORS)
NUMERIC = {name for name, agg in AGGREGATORS.items() if agg.numeric_only}
NAN = math.nan
BASES = [0.0, 1_700_000_000.0]

# ----------------------------------------------------------------------- strategies


PREDICATES = [lambda row, k=k: bool(row) or k >= 0 for k in range(3)]
"""Stand-ins for `where`: features sharing one share a slot (and a pass bit)."""


@st.composite
def views(draw: st.DrawFn) -> tuple[list[FeatureSpec], list[int | None]]:
    """Features of one view (random windows and hops from one divisible chain) and
    which `where` each has (an index into PREDICATES, or None)."""
    g = draw(st.sampled_from([1, 2, 3, 5]))
    chain = sorted({g, g * draw(st.sampled_from([1, 2, 3, 4])) * draw(st.sampled_from([1, 5]))})
    chain = sorted({*chain, chain[-1] * draw(st.sampled_from([1, 2]))})
    specs, wheres = [], []
    for i in range(draw(st.integers(1, 7))):
        name = draw(st.sampled_from(NAMES))
        if name in NUMERIC:
            column: str | None = draw(st.sampled_from(["x", "i"]))
        elif AGGREGATORS[name].needs_column:
            column = draw(st.sampled_from(["x", "i", "k"]))
        else:
            column = draw(st.sampled_from([None, None, "x", "k"]))
        if draw(st.integers(0, 4)) == 0:
            window = hop = None
        else:
            hop = draw(st.sampled_from(chain))
            window = hop * draw(st.integers(1, 5))
        where = draw(st.sampled_from([None, None, 0, 1, 2]))
        predicate = None if where is None else PREDICATES[where]
        specs.append(FeatureSpec(f"f{i}_{name}", name, column, window, hop, predicate))
        wheres.append(where)
    return specs, wheres


row_values = st.fixed_dictionaries(
    {
        "x": st.one_of(
            st.none(), st.just(NAN), st.floats(-1e3, 1e3), st.integers(-9, 9).map(float)
        ),
        "i": st.one_of(st.none(), st.integers(-5, 5)),
        "k": st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    }
)
offsets = st.one_of(
    st.integers(0, 90).map(float),  # many duplicates and tile boundaries
    st.integers(0, 180).map(lambda k: k / 2),
    st.floats(0, 90, allow_nan=False),
)


@st.composite
def histories(draw: st.DrawFn, wheres: Sequence[int | None], max_size: int = 40) -> list[Event]:
    """Events in arrival order: seq is the arrival index, times are shuffled."""
    base = draw(st.sampled_from(BASES))
    n = draw(st.integers(0, max_size))
    out = []
    for seq in range(n):
        ts = base + draw(offsets)
        verdicts = [draw(st.booleans()) for _ in PREDICATES]
        passes = tuple(True if w is None else verdicts[w] for w in wheres)
        out.append(Event(ts, seq, draw(row_values), passes))
    return out


@st.composite
def query_times(draw: st.DrawFn, events: Sequence[Event], levels: Sequence[int]) -> list[float]:
    base = events[0].ts if events else draw(st.sampled_from(BASES))
    base = math.floor(base / 100) * 100
    picks = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0 and events:
            t = draw(st.sampled_from(events)).ts + draw(st.sampled_from([0.0, 0.25, -0.25, 1e-6]))
        elif kind == 1:  # exactly on a tile boundary
            level = draw(st.sampled_from(list(levels)))
            t = float(tile_start(base, level) + level * draw(st.integers(-2, 60)))
        elif kind == 2:  # before every event
            t = base - draw(st.floats(0.001, 500))
        else:
            t = base + draw(st.floats(-10, 400))
        picks.append(t)
    return picks


def check_against_reference(
    specs: Sequence[FeatureSpec], events: Sequence[Event], t: float, got: dict[str, Any]
) -> None:
    assert list(got) == [s.name for s in specs]
    for index, spec in enumerate(specs):
        expected = brute_force(events, t, spec, index)
        chosen = selected(events, t, spec, index)
        values = [e.values.get(spec.column) for e in chosen] if spec.column else []
        assert matches(spec.aggregation, got[spec.name], expected, values), (
            spec,
            t,
            got[spec.name],
            expected,
        )


def same_values(
    specs: Sequence[FeatureSpec], a: dict[str, Any], b: dict[str, Any], events: Sequence[Event]
) -> None:
    """Two computations agree (sums to rounding, relative to the values' magnitude)."""
    for spec in specs:
        values = [e.values.get(spec.column) for e in events] if spec.column else []
        assert matches(spec.aggregation, a[spec.name], b[spec.name], values), (spec, a, b)


def columns_of(events: Sequence[Event], how: str) -> dict[str, np.ndarray]:
    cols = {c: [e.values.get(c) for e in events] for c in ("x", "i", "k")}
    if how == "object":
        return {c: np.array(v, dtype=object) for c, v in cols.items()}
    return {
        "x": np.array([NAN if v is None else v for v in cols["x"]], dtype=np.float64),
        "i": np.array(cols["i"], dtype=object),
        "k": np.array(cols["k"], dtype=object),
    }


def state_of(layout: TileLayout, events: Sequence[Event]) -> TileState:
    state = TileState(layout)
    for e in events:
        assert state.add(e.ts, e.seq, e.values, e.passes)
    return state


# ----------------------------------------------------------------------- exactness


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_tiles_match_brute_force_at_any_time(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    layout = TileLayout(specs)
    state = state_of(layout, events)
    for t in data.draw(query_times(events, layout.levels)):
        check_against_reference(specs, events, t, state.evaluate(t))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_arrival_order_does_not_change_values(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    layout = TileLayout(specs)
    shuffled = list(events)
    data.draw(st.randoms(use_true_random=False)).shuffle(shuffled)
    one, other = state_of(layout, events), state_of(layout, shuffled)
    for t in data.draw(query_times(events, layout.levels)):
        same_values(specs, one.evaluate(t), other.evaluate(t), events)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_batch_add_matches_brute_force_and_single_adds(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    layout = TileLayout(specs)
    batch = TileState(layout)
    cut = data.draw(st.integers(0, len(events)))
    for part in (events[:cut], events[cut:]):  # two batches: merging into existing tiles
        accepted = batch.add_batch(
            [e.ts for e in part],
            [e.seq for e in part],
            columns_of(part, data.draw(st.sampled_from(["object", "typed"]))),
            np.array([e.passes for e in part], dtype=bool).reshape(len(part), len(specs)),
        )
        assert accepted.all()
    single = state_of(layout, events)
    for t in data.draw(query_times(events, layout.levels)):
        got = batch.evaluate(t)
        check_against_reference(specs, events, t, got)
        same_values(specs, got, single.evaluate(t), events)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_batches_of_many_entities_split_into_per_entity_deltas(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    owners = data.draw(
        st.lists(st.sampled_from(["u1", "u2", "u3"]), min_size=len(events), max_size=len(events))
    )
    layout = TileLayout(specs)
    deltas = layout.batch_fields(
        [e.ts for e in events],
        [e.seq for e in events],
        columns_of(events, "typed"),
        np.array([e.passes for e in events], dtype=bool).reshape(len(events), len(specs)),
        entities=owners,
    )
    for owner in ("u1", "u2", "u3"):
        mine = [e for e, o in zip(events, owners, strict=True) if o == owner]
        stored = {k: decode_field(encode_field(v)) for k, v in deltas.get(owner, {}).items()}
        state = TileState.from_fields(layout, stored)
        for t in data.draw(query_times(events, layout.levels)):
            check_against_reference(specs, mine, t, state.evaluate(t))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_compaction_keeps_values_exact_and_refuses_late_events(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    layout0 = TileLayout(specs)
    layout = TileLayout(specs, retention_s=layout0.max_window + data.draw(st.integers(0, 30)))
    events = data.draw(histories(wheres, max_size=60))
    base = events[0].ts if events else 0.0
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    state = state_of(layout, first)
    wm1 = base + data.draw(st.floats(-50, 120))
    state.compact(wm1)
    accepted = list(first)
    for e in second:
        late = e.ts < wm1 - layout.retention_s
        assert state.add(e.ts, e.seq, e.values, e.passes) is (not late)
        if not late:
            accepted.append(e)
    wm2 = wm1 + data.draw(st.floats(0, 80))
    state.compact(wm2)
    state = TileState.from_fields(layout, json.loads(json.dumps(state.to_fields())))
    earliest = wm2 - layout.retention_s + layout.max_window
    times = [earliest, math.ceil(earliest), wm2, wm2 + 1e-3]
    times += [earliest + data.draw(st.floats(0, 200)) for _ in range(3)]
    for level in layout.levels:
        times.append(float(tile_start(earliest, level) + level))
    times += [e.ts + d for e in accepted for d in (0.0, -1e-6) if e.ts + d >= earliest][:8]
    for t in times:
        check_against_reference(specs, accepted, t, state.evaluate(t))
    # earlier times: exact, or refused; never a wrong value
    for t in data.draw(query_times(events, layout.levels)):
        try:
            got = state.evaluate(t)
        except OutsideRetentionError:
            assert t < earliest
            continue
        check_against_reference(specs, accepted, t, got)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_reading_planned_fields_gives_the_same_values(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    layout = TileLayout(specs)
    events = data.draw(histories(wheres))
    state = state_of(layout, events)
    compact = data.draw(st.booleans())
    if events and compact:
        state.compact(max(e.ts for e in events) + data.draw(st.floats(-20, 20)))
    stored = {k: encode_field(v) for k, v in state.to_fields().items()}  # as in Redis
    calls: list[list[str]] = []

    def hmget(names: list[str]) -> list[Any]:
        calls.append(names)
        return [decode_field(stored.get(name)) for name in names]

    wm = state.watermark
    for t in data.draw(query_times(events, layout.levels)):
        if wm is not None and t < wm - layout.retention_s + layout.max_window:
            continue
        calls.clear()
        try:
            expected = state.evaluate(t)
        except OutsideRetentionError:
            with pytest.raises(OutsideRetentionError):
                layout.read(t, hmget)
            continue
        assert layout.read(t, hmget) == expected
        assert 1 <= len(calls) <= 2
        assert len(calls) == 1 or (layout.lifetime and t < state.to_fields()["hi"])
        assert len(set(calls[0])) == len(calls[0])
        # as the online reader does it: only the fields the hash has, planned names absent
        names, planned = layout.planned(t)
        sparse = {n: decode_field(stored[n]) for n in names if n in stored}
        try:
            got = layout.evaluate_fields(sparse, t, absent=planned)
        except NeedMoreFields as more:
            sparse.update({n: decode_field(stored.get(n)) for n in more.fields})
            got = layout.evaluate_fields(sparse, t, absent=planned)
        assert got == expected
        # a request for some features only reads and evaluates what those need
        only = frozenset(data.draw(st.sets(st.sampled_from(layout.names), min_size=1)))
        names, planned = layout.planned(t, only)
        assert set(names) <= set(layout.planned(t)[0])
        sparse = {n: decode_field(stored[n]) for n in names if n in stored}
        try:
            got = layout.evaluate_fields(sparse, t, absent=planned, only=only)
        except NeedMoreFields as more:
            sparse.update({n: decode_field(stored.get(n)) for n in more.fields})
            got = layout.evaluate_fields(sparse, t, absent=planned, only=only)
        assert got == {name: expected[name] for name in only}


# ----------------------------------------------------------------------- behaviours


def test_count_1h_decays_to_zero_after_an_hour() -> None:
    layout = TileLayout([FeatureSpec("txn_count_1h", "count", window_s=3600)])
    state = TileState(layout)
    t0 = 1_700_000_017.25
    for i in range(5):
        state.add(t0 + i * 60, i, {})
    last = t0 + 4 * 60
    assert state.evaluate(last) == {"txn_count_1h": 5}
    assert state.evaluate(last + 3600) == {"txn_count_1h": 1}  # hop slack: start is floored
    assert state.evaluate(last + 3660) == {"txn_count_1h": 0}
    assert state.evaluate(last + 7200) == {"txn_count_1h": 0}
    state.compact(last + 7200)
    assert state.evaluate(last + 7200) == {"txn_count_1h": 0}
    assert not any(name.startswith(("t:", "r:")) for name in state.to_fields())


def test_window_bounds_are_inclusive_at_both_ends() -> None:
    spec = FeatureSpec("n", "count", window_s=600, hop_s=60)
    state = TileState(TileLayout([spec]))
    t = 10_030.5
    start = window_start(t, 600, 60)
    assert start == 9420.0
    for seq, ts in enumerate([start - 1e-9, start, t, t + 1e-9]):
        state.add(ts, seq, {})
    assert state.evaluate(t) == {"n": 2}


def test_time_before_every_event_sees_nothing() -> None:
    specs = [
        FeatureSpec(f"f_{n}", n, "x", 60 if i % 2 else None, 60 if i % 2 else None)
        for i, n in enumerate(NAMES)
    ]
    state = TileState(TileLayout(specs))
    state.add(1000.0, 0, {"x": 3.0})
    got = state.evaluate(999.999)
    assert got == {
        s.name: (0 if s.aggregation in ("count", "count_distinct") else None) for s in specs
    }


def test_late_event_is_refused_and_changes_nothing() -> None:
    layout = TileLayout([FeatureSpec("s", "sum", "x", 120, 60), FeatureSpec("n", "count")])
    state = TileState(layout)
    assert state.add(500.0, 0, {"x": 1.0})
    state.compact(watermark=600.0)  # horizon 480
    before = state.to_fields()
    assert not state.add(479.9, 1, {"x": 5.0})
    assert not state.add_batch([100.0, 200.0], [2, 3], {"x": np.array([1.0, 2.0])}).any()
    assert state.to_fields() == before
    assert state.add(480.0, 4, {"x": 2.0})
    assert state.evaluate(600.0) == {"s": 3.0, "n": 2}


def test_lifetime_features_survive_compaction() -> None:
    specs = [
        FeatureSpec("total", "sum", "x"),
        FeatureSpec("first_x", "first", "x"),
        FeatureSpec("kinds", "count_distinct", "k"),
        FeatureSpec("recent", "count", window_s=60),
    ]
    layout = TileLayout(specs, retention_s=120)
    state = TileState(layout)
    for i in range(100):
        state.add(i * 10.0, i, {"x": float(i), "k": "abc"[i % 3]})
    state.compact(watermark=1000.0)
    fields = state.to_fields()
    assert min(int(k.rsplit(":", 1)[1]) for k in fields if k[0] in "tr") >= 1000 - 120 - 60
    assert state.evaluate(1000.0) == {"total": 4950.0, "first_x": 0.0, "kinds": 3, "recent": 10}
    # before the latest event: base + tiles + raw, not the running totals
    assert state.evaluate(975.0) == {"total": 4753.0, "first_x": 0.0, "kinds": 3, "recent": 8}
    with pytest.raises(OutsideRetentionError):
        state.evaluate(800.0)


def test_old_tiles_merged_into_a_compacted_state_are_folded_not_lost() -> None:
    """A backfill (or a writer whose partitions lag) merges tiles older than the state's
    own cutoff and compacts at a lower watermark than the state's `w`: those tiles must
    be folded into the base at once, or a lifetime value in the past misses them."""
    specs = [FeatureSpec("total", "sum", "x"), FeatureSpec("recent", "count", window_s=60)]
    layout = TileLayout(specs, retention_s=120)
    state = TileState(layout)
    for i in range(50, 100):
        state.add(i * 10.0, i, {"x": float(i)})
    state.compact(watermark=1000.0)  # cutoff 840: everything before is in `b`
    stored = {k: encode_field(v) for k, v in state.to_fields().items()}
    old = layout.batch_fields(
        np.array([100.0, 200.0]), np.array([1, 2]), {"x": np.array([1.0, 2.0])}
    )
    delta = old[None]
    current = {k: decode_field(stored[k]) for k in delta if k in stored}
    changed = layout.merge_fields(current, delta)
    plan = layout.plan_compaction(
        stored.keys() | changed.keys(), 300.0, decode_field(stored.get("w"))
    )
    read = {k: changed[k] if k in changed else decode_field(stored.get(k)) for k in plan.read}
    changed.update(layout.apply_compaction(plan, read))
    for name in plan.delete:
        changed.pop(name, None)
    fields = {k: decode_field(v) for k, v in stored.items() if k not in plan.delete}
    fields.update(changed)
    merged = TileState.from_fields(layout, fields)
    assert merged.evaluate(975.0)["total"] == sum(range(50, 98)) + 3.0
    assert merged.evaluate(1000.0)["total"] == sum(range(50, 100)) + 3.0


def test_where_mask_selects_events_per_feature() -> None:
    specs = [
        FeatureSpec("all", "count", window_s=60),
        FeatureSpec("some", "count", window_s=60, where=PREDICATES[0]),
    ]
    state = TileState(TileLayout(specs))
    state.add(1.0, 0, {}, (True, False))
    state.add(2.0, 1, {}, (True, True))
    state.add(3.0, 2, {}, (False, False))  # reaches no feature: not even stored
    assert state.evaluate(10.0) == {"all": 2, "some": 1}
    assert json.dumps(state.to_fields()).count("3.0") == 0


def test_hops_that_do_not_divide_each_other_are_refused() -> None:
    with pytest.raises(ValueError, match="divide"):
        TileLayout(
            [
                FeatureSpec("a", "count", window_s=600, hop_s=60),
                FeatureSpec("b", "count", window_s=900, hop_s=90),
            ]
        )
    with pytest.raises(ValueError, match="multiple"):
        FeatureSpec("c", "count", window_s=90, hop_s=60)
    with pytest.raises(ValueError, match="retention"):
        TileLayout([FeatureSpec("d", "count", window_s=600)], retention_s=300)
    with pytest.raises(ValueError, match="column"):
        FeatureSpec("e", "sum")


def test_state_of_another_layout_is_refused() -> None:
    state = TileState(TileLayout([FeatureSpec("a", "count", window_s=60)]))
    state.add(1.0, 0, {})
    other = TileLayout([FeatureSpec("a", "sum", "x", window_s=60)])
    with pytest.raises(LayoutMismatchError):
        TileState.from_fields(other, state.to_fields())
    with pytest.raises(LayoutMismatchError):
        other.evaluate_fields(state.to_fields(), 2.0, complete=True)


def test_plan_lists_only_the_fields_a_read_needs() -> None:
    specs = [
        FeatureSpec("n_1h", "count", window_s=3600),
        FeatureSpec("s_1d", "sum", "x", window_s=86400),
    ]
    layout = TileLayout(specs)
    assert layout.levels == (60, 3600)
    t = 1_700_003_723.5
    plan = layout.plan(t)
    assert plan[:5] == ["v", "w", "lo", "hi", "r:1700003700"]
    tiles = [name for name in plan if name.startswith("t:")]
    assert len(tiles) == len(set(tiles)) < 60 + 24 + 60
    with pytest.raises(NeedMoreFields) as missing:
        layout.evaluate_fields({name: None for name in plan[:-1]}, t)
    assert missing.value.fields == [plan[-1]]


def test_features_with_the_same_state_share_one_slot() -> None:
    shared = PREDICATES[0]
    specs = [
        FeatureSpec("s_1h", "sum", "x", 3600),
        FeatureSpec("s_1d", "sum", "x", 86400),
        FeatureSpec("sd_1h", "std", "x", 3600),
        FeatureSpec("v_1d", "var", "x", 86400),
        FeatureSpec("n_where_1h", "count", None, 3600, where=shared),
        FeatureSpec("n_where_1d", "count", None, 86400, where=shared),
        FeatureSpec("n_1h", "count", None, 3600),
        FeatureSpec("total", "sum", "x"),
    ]
    layout = TileLayout(specs)
    assert layout.slot_of == (0, 0, 1, 1, 2, 2, 3, 0)
    state = TileState(layout)
    for seq, (ts, x, ok) in enumerate([(10.0, 1.0, True), (20.0, 3.0, False), (4000.0, 5.0, True)]):
        state.add(ts, seq, {"x": x}, (True, True, True, True, ok, ok, True, True))
    assert state.evaluate(4000.0) == {
        "s_1h": 5.0,
        "s_1d": 9.0,
        "sd_1h": None,
        "v_1d": 4.0,
        "n_where_1h": 1,
        "n_where_1d": 2,
        "n_1h": 1,
        "total": 9.0,
    }
    assert all(len(v) == 4 for k, v in state.to_fields().items() if k.startswith("t:"))


def test_layout_of_lifetime_features_only() -> None:
    layout = TileLayout([FeatureSpec("n", "count"), FeatureSpec("last_k", "last", "k")])
    assert layout.levels == (60, 3600) and layout.retention_s == 0
    assert layout.plan(100.0) == ["v", "w", "lo", "hi", "r:60", "a"]
    state = TileState(layout)
    assert state.add_batch([5.0, 7.0, 6.0], [0, 1, 2], {"k": np.array(["a", "b", "c"])}).all()
    assert state.evaluate(10.0) == {"n": 3, "last_k": "b"}
    assert state.evaluate(6.5) == {"n": 2, "last_k": "c"}


# ----------------------------------------------------------------------- window arithmetic


def test_default_hops_follow_the_design() -> None:
    table = {
        60: 60,
        3600: 60,
        3601: 300,
        43199: 300,
        43200: 3600,
        86400: 3600,
        12 * 86400 - 1: 3600,
        12 * 86400: 86400,
        90 * 86400: 86400,
    }
    assert {w: default_hop(w) for w in table} == table


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.floats(-1e10, 1e10, allow_nan=False), st.integers(-(10**9), 10**10).map(float)),
    st.sampled_from([1, 3, 7, 60, 300, 3600, 86400]),
    st.integers(1, 30),
)
def test_window_start_is_the_exact_floor(t: float, hop: int, k: int) -> None:
    window = hop * k
    exact = math.floor((Fraction(t) - window) / hop) * hop
    assert window_start(t, window, hop) == exact
    assert tile_start(t, hop) == math.floor(Fraction(t) / hop) * hop
    assert tile_starts(np.array([t]), hop).tolist() == [tile_start(t, hop)]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_cover_tiles_an_interval_exactly_with_aligned_tiles(data: st.DataObject) -> None:
    g = data.draw(st.sampled_from([1, 5, 60]))
    levels = check_levels({g, g * data.draw(st.sampled_from([2, 5])), g * 10 * 6})
    start = g * data.draw(st.integers(-200, 200))
    end = start + g * data.draw(st.integers(0, 400))
    pieces = cover(start, end, levels)
    cur = start
    for level, s in pieces:
        assert s == cur and s % level == 0 and level in levels
        cur += level
    assert cur == end
    # never more than a climb, a run along the top and a descent
    bound = 2 * sum(b // a for a, b in itertools.pairwise(levels))
    assert len(pieces) <= bound + (end - start) // levels[-1]


def test_random_long_history_with_realistic_hops() -> None:
    """Minutes-to-days windows over a week of events, batch-added then compacted."""
    rnd = random.Random(7)
    specs = [
        FeatureSpec("n_1h", "count", window_s=3600),
        FeatureSpec("amount_sum_1d", "sum", "x", 86400),
        FeatureSpec("amount_std_7d", "std", "x", 7 * 86400),
        FeatureSpec("amount_max_6h", "max", "x", 6 * 3600),
        FeatureSpec("kinds_1d", "count_distinct", "k", 86400),
        FeatureSpec("since_1d", "time_since_last", None, 86400),
        FeatureSpec("last_k", "last", "k"),
        FeatureSpec("mean_x", "mean", "x"),
    ]
    layout = TileLayout(specs, retention_s=8 * 86400)
    t0 = 1_700_000_000.0
    events = [
        Event(
            t0 + rnd.uniform(0, 14 * 86400),
            i,
            {"x": rnd.choice([None, rnd.uniform(-50, 500)]), "k": rnd.choice("abcdefg")},
        )
        for i in range(3000)
    ]
    state = TileState(layout)
    for chunk in range(0, 3000, 500):
        part = events[chunk : chunk + 500]
        state.add_batch([e.ts for e in part], [e.seq for e in part], columns_of(part, "object"))
    state.compact(t0 + 14 * 86400)
    for t in [t0 + 14 * 86400, t0 + 13.5 * 86400 + 0.5, t0 + 15 * 86400, t0 + 22 * 86400]:
        check_against_reference(specs, events, t, state.evaluate(t))
