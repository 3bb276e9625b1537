"""Online state (engine v2) and window arithmetic against the brute-force reference."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_service.aggregation.reference import (
    Event,
    FeatureSpec,
    brute_force,
    matches,
    selected,
)
from feature_service.aggregation.registry import AGGREGATIONS
from feature_service.aggregation.spec import aggregation_of
from feature_service.aggregation.state import (
    Events,
    LayoutMismatchError,
    OutsideRetentionError,
    StaleFormatError,
    StateLayout,
    decode,
    evaluate,
    write,
)
from feature_service.aggregation.windows import (
    default_hop,
    hop_start,
    hop_starts,
    window_start,
)
from feature_service.definitions import load_definitions
from feature_service.online.reader import view_values
from feature_service.plan import view_plan
from tests.entity_state import EntityState

NAMES = sorted(AGGREGATIONS)
NUMERIC = {name for name, agg in AGGREGATIONS.items() if agg.numeric_only}
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
        elif AGGREGATIONS[name].needs_column:
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
        params = AGGREGATIONS[name].example_params()
        specs.append(FeatureSpec(f"f{i}_{name}", name, column, window, hop, predicate, params))
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
            t = float(hop_start(base, level) + level * draw(st.integers(-2, 60)))
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
        assert matches(spec, got[spec.name], expected, values), (
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
        assert matches(spec, a[spec.name], b[spec.name], values), (spec, a, b)


def columns_of(events: Sequence[Event], how: str) -> dict[str, np.ndarray]:
    cols = {c: [e.values.get(c) for e in events] for c in ("x", "i", "k")}
    if how == "object":
        return {c: np.array(v, dtype=object) for c, v in cols.items()}
    return {
        "x": np.array([NAN if v is None else v for v in cols["x"]], dtype=np.float64),
        "i": np.array(cols["i"], dtype=object),
        "k": np.array(cols["k"], dtype=object),
    }


KINDS = {"x": "float", "i": "int", "k": "string"}


def layout_of(specs: Sequence[FeatureSpec], typed: bool = True, **kw: Any) -> StateLayout:
    return StateLayout(specs, KINDS if typed else None, **kw)


def state_of(layout: StateLayout, events: Sequence[Event]) -> EntityState:
    state = EntityState(layout)
    for e in events:
        assert state.add(e.ts, e.seq, e.values, e.passes)
    return state


def batch_events(
    layout: StateLayout, events: Sequence[Event], codes: Sequence[int], how: str
) -> Events:
    n = len(events)
    return Events.of(
        layout,
        np.asarray(codes, dtype=np.int64),
        [e.ts for e in events],
        [e.seq for e in events],
        columns_of(events, how),
        None
        if all(e.passes is None for e in events)
        else np.array([e.passes for e in events], dtype=bool).reshape(n, len(layout.features)),
    )


# ----------------------------------------------------------------------- exactness


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_state_matches_brute_force_at_any_time(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    layout = layout_of(specs, data.draw(st.booleans()))
    state = state_of(layout, events)
    for t in data.draw(query_times(events, layout.levels)):
        check_against_reference(specs, events, t, state.evaluate(t))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_arrival_order_does_not_change_values(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    layout = layout_of(specs)
    shuffled = list(events)
    data.draw(st.randoms(use_true_random=False)).shuffle(shuffled)
    one, other = state_of(layout, events), state_of(layout, shuffled)
    for t in data.draw(query_times(events, layout.levels)):
        same_values(specs, one.evaluate(t), other.evaluate(t), events)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_batches_of_many_entities_written_and_read_together(data: st.DataObject) -> None:
    """The worker's path: several flushes, each writing many entities at once through
    `write`, then one `evaluate` of many (entity, t) rows; against the brute force."""
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres))
    owners = data.draw(st.lists(st.integers(0, 2), min_size=len(events), max_size=len(events)))
    layout = layout_of(specs)
    blobs: list[bytes | None] = [None, None, None]
    cut = data.draw(st.integers(0, len(events)))
    for lo, hi in ((0, cut), (cut, len(events))):  # two flushes: merging into stored state
        part = events[lo:hi]
        states = decode(layout, blobs)
        how = data.draw(st.sampled_from(["object", "typed"]))
        new = batch_events(layout, part, owners[lo:hi], how)
        last = np.full(3, np.nan)
        for e, o in zip(part, owners[lo:hi], strict=True):
            last[o] = e.ts if np.isnan(last[o]) else max(last[o], e.ts)
        blobs = list(write(layout, states, new, np.full(3, -np.inf), last))
    states = decode(layout, blobs)
    times = data.draw(query_times(events, layout.levels))
    rows = [(o, t) for o in range(3) for t in times]
    got = evaluate(layout, states, [o for o, _ in rows], [t for _, t in rows])
    for r, (owner, t) in enumerate(rows):
        mine = [e for e, o in zip(events, owners, strict=True) if o == owner]
        check_against_reference(specs, mine, t, {name: got[name][r] for name in layout.names})
    only = sorted(data.draw(st.sets(st.sampled_from(layout.names), min_size=1)))
    some = evaluate(layout, states, [o for o, _ in rows], [t for _, t in rows], only)
    assert list(some) == [n for n in layout.names if n in only]
    assert all(some[n] == got[n] for n in only)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_compaction_keeps_values_exact_and_refuses_late_events(data: st.DataObject) -> None:
    specs, wheres = data.draw(views())
    layout0 = layout_of(specs)
    layout = layout_of(specs, retention_s=layout0.max_window + data.draw(st.integers(0, 30)))
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
    state = EntityState.from_bytes(layout, state.to_bytes())
    earliest = wm2 - layout.retention_s + layout.max_window
    times = [earliest, math.ceil(earliest), wm2, wm2 + 1e-3]
    times += [earliest + data.draw(st.floats(0, 200)) for _ in range(3)]
    for level in layout.levels:
        times.append(float(hop_start(earliest, level) + level))
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


# ----------------------------------------------------------------------- behaviours


def test_count_1h_decays_to_zero_after_an_hour() -> None:
    layout = StateLayout([FeatureSpec("txn_count_1h", "count", window_s=3600)])
    state = EntityState(layout)
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
    assert len(decode(layout, [state.to_bytes()]).events) == 0  # nothing retained


def test_window_bounds_are_inclusive_at_both_ends() -> None:
    spec = FeatureSpec("n", "count", window_s=600, hop_s=60)
    state = EntityState(StateLayout([spec]))
    t = 10_030.5
    start = window_start(t, 600, 60)
    assert start == 9420.0
    for seq, ts in enumerate([start - 1e-9, start, t, t + 1e-9]):
        state.add(ts, seq, {})
    assert state.evaluate(t) == {"n": 2}


def test_time_before_every_event_sees_nothing() -> None:
    specs = [
        FeatureSpec(
            f"f_{n}",
            n,
            "x",
            60 if i % 2 else None,
            60 if i % 2 else None,
            params=AGGREGATIONS[n].example_params(),
        )
        for i, n in enumerate(NAMES)
    ]
    state = EntityState(StateLayout(specs, {"x": "float"}))
    state.add(1000.0, 0, {"x": 3.0})
    got = state.evaluate(999.999)
    assert got == {s.name: aggregation_of(s).empty_value(999.999) for s in specs}
    assert {n for n, v in got.items() if v is not None} == {
        "f_count",
        "f_count_distinct",
        "f_approx_count_distinct",
        "f_decayed_count",
    }


def test_late_event_is_refused_and_changes_nothing() -> None:
    layout = StateLayout([FeatureSpec("s", "sum", "x", 120, 60), FeatureSpec("n", "count")])
    state = EntityState(layout)
    assert state.add(500.0, 0, {"x": 1.0})
    state.compact(watermark=600.0)  # horizon 480
    before = state.to_bytes()
    assert not state.add(479.9, 1, {"x": 5.0})
    assert state.to_bytes() == before
    assert state.add(480.0, 4, {"x": 2.0})
    assert state.evaluate(600.0) == {"s": 3.0, "n": 2}


def test_lifetime_features_survive_compaction() -> None:
    specs = [
        FeatureSpec("total", "sum", "x"),
        FeatureSpec("first_x", "first", "x"),
        FeatureSpec("kinds", "count_distinct", "k"),
        FeatureSpec("recent", "count", window_s=60),
    ]
    layout = StateLayout(specs, {"x": "float", "k": "string"}, retention_s=120)
    state = EntityState(layout)
    for i in range(100):
        state.add(i * 10.0, i, {"x": float(i), "k": "abc"[i % 3]})
    state.compact(watermark=1000.0)
    kept = decode(layout, [state.to_bytes()]).events
    assert kept.ts[~kept.witnesses].min() >= 1000 - 120 - 60 and len(kept) < 20
    # compacted: witnesses of the lifetime first and distinct kinds, the sum in the base
    assert kept.ts[kept.witnesses].tolist() == [0.0, 10.0, 20.0]
    assert state.evaluate(1000.0) == {"total": 4950.0, "first_x": 0.0, "kinds": 3, "recent": 10}
    # before the latest event: base + the retained events up to t
    assert state.evaluate(975.0) == {"total": 4753.0, "first_x": 0.0, "kinds": 3, "recent": 8}
    with pytest.raises(OutsideRetentionError):
        state.evaluate(800.0)


def test_old_events_written_into_a_compacted_state_are_folded_not_lost() -> None:
    """A backfill (or a writer whose partitions lag) writes events older than the
    state's own cutoff, at a lower watermark than the state's `w`: they must go to the
    base at once, or a lifetime value misses them."""
    specs = [FeatureSpec("total", "sum", "x"), FeatureSpec("recent", "count", window_s=60)]
    layout = StateLayout(specs, {"x": "float"}, retention_s=120)
    state = EntityState(layout)
    for i in range(50, 100):
        state.add(i * 10.0, i, {"x": float(i)})
    state.compact(watermark=1000.0)  # cutoff 840: everything before is in the base
    old = Events.of(layout, [0, 0], [100.0, 200.0], [1, 2], {"x": np.array([1.0, 2.0])})
    blob = write(
        layout, decode(layout, [state.to_bytes()]), old, np.array([300.0]), np.array([200.0])
    )[0]
    merged = EntityState.from_bytes(layout, blob)
    assert merged.evaluate(975.0)["total"] == sum(range(50, 98)) + 3.0
    assert merged.evaluate(1000.0)["total"] == sum(range(50, 100)) + 3.0


def test_where_mask_selects_events_per_feature() -> None:
    specs = [
        FeatureSpec("some", "count", window_s=60, where=PREDICATES[0]),
        FeatureSpec("other", "count", window_s=60, where=PREDICATES[1]),
    ]
    layout = StateLayout(specs)
    state = EntityState(layout)
    state.add(1.0, 0, {}, (True, False))
    state.add(2.0, 1, {}, (True, True))
    state.add(3.0, 2, {}, (False, False))  # reaches no feature: not even stored
    assert state.evaluate(10.0) == {"some": 2, "other": 1}
    assert decode(layout, [state.to_bytes()]).events.ts.tolist() == [1.0, 2.0]


def test_hops_that_do_not_divide_each_other_are_refused() -> None:
    with pytest.raises(ValueError, match="divide"):
        StateLayout(
            [
                FeatureSpec("a", "count", window_s=600, hop_s=60),
                FeatureSpec("b", "count", window_s=900, hop_s=90),
            ]
        )
    with pytest.raises(ValueError, match="multiple"):
        FeatureSpec("c", "count", window_s=90, hop_s=60)
    with pytest.raises(ValueError, match="retention"):
        StateLayout([FeatureSpec("d", "count", window_s=600)], retention_s=300)
    with pytest.raises(ValueError, match="column"):
        FeatureSpec("e", "sum")


def test_state_of_another_layout_or_format_is_refused() -> None:
    state = EntityState(StateLayout([FeatureSpec("a", "count", window_s=60)]))
    state.add(1.0, 0, {})
    other = StateLayout([FeatureSpec("a", "sum", "x", window_s=60)])
    with pytest.raises(LayoutMismatchError):
        EntityState.from_bytes(other, state.to_bytes())
    with pytest.raises(StaleFormatError):
        decode(other, [b"[3,1.5,null]"])  # a value of the tile hashes of engine v1


def test_features_sharing_a_filter_share_one_flag() -> None:
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
    layout = StateLayout(specs, {"x": "float"})
    assert layout.feature_filter == (None, None, None, None, 0, 0, None, None)
    assert layout.record.names == ("ts", "seq", "witness", "w0", "x")
    state = EntityState(layout)
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
    # 3 events of 8 + 8 + 1 + 1 + 8 bytes, one JSON header: far below a tile hash
    assert len(state.to_bytes()) < 200


def test_layout_of_lifetime_features_only() -> None:
    layout = StateLayout([FeatureSpec("n", "count"), FeatureSpec("last_k", "last", "k")])
    assert layout.retention_s == 0
    state = EntityState(layout)
    for seq, (ts, k) in enumerate([(5.0, "a"), (7.0, "b"), (6.0, "c")]):
        assert state.add(ts, seq, {"k": k})
    assert state.evaluate(10.0) == {"n": 3, "last_k": "b"}
    assert state.evaluate(6.5) == {"n": 2, "last_k": "c"}
    state.compact(10_000.0)  # cutoff 7200: the count in the base, the last one kept
    kept = decode(layout, [state.to_bytes()]).events
    assert kept.ts.tolist() == [7.0] and kept.witnesses.all()
    assert state.evaluate(10_000.0) == {"n": 3, "last_k": "b"}
    with pytest.raises(OutsideRetentionError):
        state.evaluate(6.5)


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
    assert hop_start(t, hop) == math.floor(Fraction(t) / hop) * hop
    assert hop_starts(np.array([t]), hop).tolist() == [hop_start(t, hop)]


def test_random_long_history_with_realistic_hops() -> None:
    """Minutes-to-days windows over two weeks of events, written in flushes then compacted."""
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
    layout = StateLayout(specs, KINDS, retention_s=8 * 86400)
    t0 = 1_700_000_000.0
    events = [
        Event(
            t0 + rnd.uniform(0, 14 * 86400),
            i,
            {"x": rnd.choice([None, rnd.uniform(-50, 500)]), "k": rnd.choice("abcdefg")},
        )
        for i in range(3000)
    ]
    blobs: list[bytes | None] = [None]
    for chunk in range(0, 3000, 500):
        part = events[chunk : chunk + 500]
        new = batch_events(layout, part, [0] * len(part), "object")
        newest = np.array([max(e.ts for e in part)])
        blobs = write(layout, decode(layout, blobs), new, np.array([-np.inf]), newest)
    state = EntityState.from_bytes(layout, blobs[0])
    state.compact(t0 + 14 * 86400)
    for t in [t0 + 14 * 86400, t0 + 13.5 * 86400 + 0.5, t0 + 15 * 86400, t0 + 22 * 86400]:
        check_against_reference(specs, events, t, state.evaluate(t))


def test_times_before_compacted_witnesses_are_refused_not_answered() -> None:
    """Lifetime features kept by witnesses only (no base IRs): a time before the newest
    compacted event must be refused after a round trip through the stored bytes, not
    answered from the witnesses (the last one at or before it would be wrong)."""
    layout = StateLayout(
        [FeatureSpec("first_x", "first", "x"), FeatureSpec("last_x", "last", "x")], {"x": "float"}
    )
    state = EntityState(layout)
    for i in range(10):
        state.add(i * 10.0, i, {"x": float(i)})
    state.compact(watermark=10_000.0)  # cutoff 7200: all compacted, first and last kept
    state = EntityState.from_bytes(layout, state.to_bytes())
    assert state.evaluate(10_000.0) == {"first_x": 0.0, "last_x": 9.0}
    with pytest.raises(OutsideRetentionError):
        state.evaluate(45.0)


# ----------------------------------------------------------------------- bounded state


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_compacted_state_matches_brute_force_at_or_after_its_horizon(
    data: st.DataObject,
) -> None:
    """Random streams written in random flushes (out of order: some events arrive below
    the horizon already set), compaction forced at a random budget: at every t at or
    after the horizon the brute force's value, before it a refusal naming it."""
    specs, wheres = data.draw(views())
    events = data.draw(histories(wheres, max_size=60))
    form = data.draw(st.sampled_from(["suffix", "hops"]))  # kinds that keep IRs
    kinds = {type(agg) for agg in AGGREGATIONS.values()}  # bound kinds are new instances
    saved = {kind: kind.__dict__.get("compacted") for kind in kinds}
    try:
        for kind in kinds:
            if kind.compacted != "distinct":
                kind.compacted = form
        layout = layout_of(specs, data.draw(st.booleans()))
        state = EntityState(layout, budget=data.draw(st.integers(1, 12)))
        accepted: list[Event] = []
        at = 0
        wm = -math.inf
        while at < len(events):
            step = data.draw(st.integers(1, 15))
            for e in events[at : at + step]:
                if state.add(e.ts, e.seq, e.values, e.passes):
                    accepted.append(e)
            at += step
            if data.draw(st.integers(0, 3)) == 0:  # sometimes a watermark moves on too
                wm = max(wm, max(e.ts for e in accepted) + data.draw(st.floats(-50, 100)))
            state.compact(wm)
            _check_compacted(data, specs, layout, state, accepted, wm)
        state = EntityState.from_bytes(layout, state.to_bytes())
        _check_compacted(data, specs, layout, state, accepted, wm)
    finally:
        for kind, own in saved.items():
            if own is None:
                del kind.compacted
            else:
                kind.compacted = own


def _check_compacted(
    data: st.DataObject,
    specs: Sequence[FeatureSpec],
    layout: StateLayout,
    state: EntityState,
    events: Sequence[Event],
    wm: float,
) -> None:
    meta = state.meta
    horizon = None if meta is None else meta.horizon
    earliest = wm - layout.retention_s + layout.max_window  # the cutoff's reach
    newest = max((e.ts for e in events), default=0.0)
    times = [newest, newest + 0.5, newest + 3600.0]
    times += data.draw(query_times(events, layout.levels))
    if horizon is not None:
        times += [horizon, math.nextafter(horizon, math.inf), horizon + 1.0]
        times += [float(hop_start(horizon, level) + level) for level in layout.levels]
    for t in times:
        if horizon is not None and t < horizon:
            with pytest.raises(OutsideRetentionError, match="compaction horizon") as refused:
                state.evaluate(t)
            assert refused.value.horizon == horizon
            continue
        if t < earliest:  # the cutoff's refusal, as for any entity
            try:
                got = state.evaluate(t)
            except OutsideRetentionError:
                continue
        else:
            got = state.evaluate(t)
        check_against_reference(specs, events, t, got)
    # many rows at once: the vectorised path
    rows = [t for t in times if (horizon is None or t >= horizon) and t >= earliest] * 3
    got = evaluate(layout, decode(layout, [state.to_bytes()]), [0] * len(rows), rows)
    for r, t in enumerate(rows):
        check_against_reference(specs, events, t, {n: got[n][r] for n in layout.names})


def test_busy_entity_is_compacted_and_its_state_stops_growing() -> None:
    specs = [
        FeatureSpec("n_1h", "count", window_s=3600),
        FeatureSpec("s_1d", "sum", "x", 86400),
        FeatureSpec("d_1d", "count_distinct", "k", 86400),
        FeatureSpec("a_1d", "approx_count_distinct", "k", 86400),
        FeatureSpec("last", "last", "x"),
    ]
    layout = layout_of(specs)
    state = EntityState(layout, budget=100)
    rng = random.Random(3)
    sizes, events = [], []
    for day in range(6):
        for j in range(600):
            ts = 1_700_000_000.0 + day * 86400 + j * 144.0
            e = Event(ts, len(events), {"x": float(j % 7), "k": f"c{rng.randrange(300)}"})
            events.append(e)
            state.add(e.ts, e.seq, e.values)
        state.compact()
        sizes.append(len(state.to_bytes()))
    meta = state.meta
    assert meta is not None and meta.horizon is not None
    assert state.to_bytes()[20:22] == b"F3"
    assert max(sizes) < 8000  # bounded by windows and hops: 3600 events take 50 KB raw
    t = events[-1].ts + 1.0
    check_against_reference(specs, events, t, state.evaluate(t))
    with pytest.raises(OutsideRetentionError, match=str(meta.horizon)):
        state.evaluate(meta.horizon - 1.0)


def test_state_of_the_format_before_bounded_state_is_read() -> None:
    """An F2 state (written before compaction existed) is the uncompacted case."""
    layout = layout_of([FeatureSpec("n", "count", window_s=60)])
    state = EntityState(layout)
    state.add(10.0, 0, {})
    blob = state.to_bytes()
    assert blob[20:22] == b"F2"
    assert EntityState.from_bytes(layout, blob).evaluate(11.0) == {"n": 1}


def test_a_lookup_before_a_busy_entitys_horizon_is_refused_naming_it() -> None:
    """The reader's path (`online.reader.view_values`) over a compacted merchant of the
    shipped definitions: at the newest event every feature equals the brute force's,
    before the horizon the refusal names it."""
    view = load_definitions("definitions").feature_views["merchant_txn"]
    plan = view_plan(view)
    layout = plan.layout
    n = 3000
    rng = np.random.default_rng(5)
    ts = 1_790_000_000.0 + np.sort(rng.uniform(0, 2 * 86400, n))
    rows = [
        {
            "merchant_id": "m1",
            "customer_id": f"c{int(rng.integers(400))}",
            "amount": float(rng.lognormal(3, 1)),
            "is_international": bool(rng.random() < 0.2),
        }
        for _ in range(n)
    ]
    columns = {c: np.array([r[c] for r in rows], dtype=object) for c in rows[0]}
    columns["amount"] = columns["amount"].astype(np.float64)
    new = Events.of(
        layout, np.zeros(n, dtype=np.int64), ts, np.arange(n), columns, plan.passes(columns, n)
    )
    (blob,) = write(layout, decode(layout, [None], coded=True), new, ts[-1:], ts[-1:], budget=200)
    meta = decode(layout, [blob]).metas[0]
    assert meta is not None and meta.horizon is not None
    t = float(ts[-1]) + 1.0
    got = view_values(view, [blob], t).values
    events = [
        Event(
            float(x),
            i,
            r,
            [True if f.where is None else f.where.evaluate_row(r) for f in view.features],
        )
        for i, (x, r) in enumerate(zip(ts, rows, strict=True))
    ]
    for index, f in enumerate(view.features):
        want = brute_force(events, t, f, index)
        values = [e.values.get(f.column) for e in events] if f.column else []
        assert matches(f.aggregation, got[f.name][0], want, values), f.name
    with pytest.raises(OutsideRetentionError, match=str(meta.horizon)):
        view_values(view, [blob], meta.horizon - 60.0)
