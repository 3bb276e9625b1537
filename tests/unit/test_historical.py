"""Training sets equal what online state serves at the same time, feature for feature."""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_service.aggregation.reference import Event, brute_force, matches, selected
from feature_service.aggregation.registry import AGGREGATIONS
from feature_service.aggregation.state import OutsideRetentionError
from feature_service.definitions import FeatureView, Registry, load_definitions
from feature_service.events.parsing import parse_timestamp
from feature_service.offline.event_log import EventLog
from feature_service.offline.historical import get_historical_features
from feature_service.online.redis_layout import view_layout
from feature_service.plan import view_plan
from feature_service.requests import RequestError, query_time
from feature_service.stream.source_processor import watermarks_before
from tests.entity_state import EntityState

T0 = 1_790_000_040.0  # a multiple of a minute

DEFS = """
entities:
  - {{name: customer, join_key: customer_id}}
sources:
  - name: tx
    topic: tx
    timestamp_field: ts
    schema: {{customer_id: string, amount: float, qty: int, category: string, online: bool}}
feature_views:
  - name: v
    source: tx
    entity: customer
{extra}
    features:
{features}
"""


def registry_of(tmp: Path, features: list[str], extra: str = "") -> Registry:
    text = DEFS.format(features="\n".join(f"      - {f}" for f in features), extra=extra)
    path = tmp / "defs.yaml"
    path.write_text(text)
    return load_definitions(path)


def write_log(
    tmp: Path, registry: Registry, rows: list[dict[str, Any]], partitions: int = 2
) -> EventLog:
    """Events -> offline log files as the worker writes them (offsets, watermarks).

    Events go to the partition of their entity (a keyed topic), each partition in two
    batches.
    """
    log = EventLog(str(tmp / "offline"))
    source = registry.sources["tx"]
    for p in range(partitions):
        part = _partition(rows, p, partitions)
        if not part:
            continue
        ts = np.array([r["ts"] for r in part], dtype=np.float64)
        data: dict[str, Any] = {
            c: np.array([r[c] for r in part], dtype=object) for c in source.schema
        }
        data["amount"] = np.array([r["amount"] for r in part], dtype=np.float64)
        data["ts"] = ts
        data["event_ts"] = ts
        data["_partition"] = np.full(len(part), p, dtype=np.int32)
        data["_offset"] = np.arange(len(part), dtype=np.int64)
        data["_watermark"] = watermarks_before(ts, -math.inf)
        df = pd.DataFrame(data)
        half = len(part) // 2
        log.write_batch(source, p, 0, df.iloc[:half])
        log.write_batch(source, p, half, df.iloc[half:])
    return log


def _partition(rows: list[dict[str, Any]], p: int, partitions: int) -> list[dict[str, Any]]:
    return [r for r in rows if sum(map(ord, r["customer_id"])) % partitions == p]


def online_states(
    view: FeatureView, rows: list[dict[str, Any]], batch: int, partitions: int = 2
) -> dict[str, EntityState]:
    """Per entity, the online state the worker builds from the events `write_log` wrote:
    accepted (not late) events, batch by batch, compacting each touched entity at its
    partition's watermark after each batch."""
    layout = view_layout(view)
    states: dict[str, EntityState] = {}
    for p in range(partitions):
        part = _partition(rows, p, partitions)
        ts = np.array([r["ts"] for r in part], dtype=np.float64)
        late = view_plan(view).late(ts, watermarks_before(ts, -math.inf))
        for start in range(0, len(part), batch):
            touched = set()
            for offset in range(start, min(start + batch, len(part))):
                if late[offset]:
                    continue
                row = part[offset]
                values = {c: _plain(row[c]) for c in ("amount", "qty", "category", "online")}
                passes = [
                    True if f.where is None else f.where.evaluate_row(values) for f in view.features
                ]
                state = states.setdefault(row["customer_id"], EntityState(layout))
                assert state.add(row["ts"], offset * 4096 + p, values, passes)
                touched.add(row["customer_id"])
            watermark = float(ts[: start + batch].max())
            for entity in touched:
                states[entity].compact(watermark)
    return states


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def same(aggregation: str, offline: Any, online: Any, scale: float) -> bool:
    offline, online = _plain(offline), _plain(online)
    if offline is None or online is None:
        return offline is None and online is None
    if aggregation in ("sum", "mean", "var", "std"):
        if aggregation in ("var", "std"):
            floor = 1e-12 * scale * scale
            if aggregation == "std":
                offline, online = offline * offline, online * online
        else:
            floor = 1e-12 * scale
        return math.isclose(offline, online, rel_tol=1e-9, abs_tol=floor)
    return bool(offline == online)


# --------------------------------------------------------------------------- worked example


def test_rows_keep_order_and_labels_and_unknown_entities_get_zero_or_null(
    tmp_path: Path,
) -> None:
    registry = registry_of(
        tmp_path,
        [
            "{name: n_1h, aggregation: count, window: 1h}",
            "{name: s_1h, column: amount, aggregation: sum, window: 1h}",
            "{name: last_cat, column: category, aggregation: last}",
            "{name: qty_first, column: qty, aggregation: first}",
            "{name: cats_1d, column: category, aggregation: count_distinct, window: 1d}",
        ],
    )
    events = [
        {"customer_id": "a", "amount": 1.0, "qty": 3, "category": "x", "online": True, "ts": T0},
        {"customer_id": "a", "amount": 2.0, "qty": 4, "category": "y", "online": False,
         "ts": T0 + 600},
        {"customer_id": "b", "amount": 5.0, "qty": None, "category": "x", "online": True,
         "ts": T0 + 30},
    ]  # fmt: skip
    log = write_log(tmp_path, registry, events)
    entity_df = pd.DataFrame(
        {
            "customer_id": ["a", "nobody", "a", "b", "a", "a"],
            "event_timestamp": [T0 + 600, T0 + 600, T0 - 1, T0 + 30, T0 + 7300, T0 + 10],
            "label": [1, 0, 1, 0, 1, 0],
        }
    )
    out = get_historical_features(
        registry,
        log,
        entity_df,
        ["v:n_1h", "v:s_1h", "v:last_cat", "v:qty_first", "v:cats_1d"],
    )
    assert list(out.columns) == [
        "customer_id", "event_timestamp", "label", "n_1h", "s_1h", "last_cat", "qty_first",
        "cats_1d",
    ]  # fmt: skip
    assert out["label"].tolist() == [1, 0, 1, 0, 1, 0]
    assert out["n_1h"].tolist() == [2, 0, 0, 1, 0, 1]
    assert [_plain(v) for v in out["s_1h"]] == [3.0, None, None, 5.0, None, 1.0]
    assert [_plain(v) for v in out["last_cat"]] == ["y", None, None, "x", "y", "x"]
    assert [_plain(v) for v in out["qty_first"]] == [3, None, None, None, 3, 3]
    assert out["cats_1d"].tolist() == [2, 0, 0, 1, 2, 1]


def test_iso_strings_and_datetimes_are_the_same_times(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, ["{name: n, aggregation: count, window: 1h}"])
    events = [{"customer_id": "a", "amount": 1.0, "qty": 1, "category": "x", "online": True,
               "ts": T0}]  # fmt: skip
    log = write_log(tmp_path, registry, events, partitions=1)
    iso = pd.Timestamp(T0, unit="s", tz="UTC").isoformat()
    frames = [
        pd.DataFrame({"customer_id": ["a"], "event_timestamp": [T0]}),
        pd.DataFrame({"customer_id": ["a"], "event_timestamp": [iso]}),
        pd.DataFrame({"customer_id": ["a"], "event_timestamp": pd.to_datetime([T0], unit="s")}),
    ]
    for frame in frames:
        assert get_historical_features(registry, log, frame, ["v:n"])["n"].tolist() == [1]


def test_a_row_at_an_events_own_time_includes_it_as_online_as_of_does(tmp_path: Path) -> None:
    """ms and µs event times (a quarter of ms times were once a float step early offline):
    a row at an event's exact time, given as the same string or as a datetime, counts
    that event, as the online `as_of` of the same string does."""
    registry = registry_of(
        tmp_path,
        ["{name: n, aggregation: count}", "{name: since, aggregation: time_since_last}"],
    )
    view = registry.feature_views["v"]
    texts = [
        "2026-11-03T06:58:25.765Z",
        "2026-11-03T06:58:26.001Z",
        "2026-11-03T06:58:27.123457Z",
        "2026-11-03T06:58:28.999999Z",
    ]
    events = [
        {"customer_id": "a", "amount": 1.0, "qty": 1, "category": "x", "online": True,
         "ts": parse_timestamp(text)}  # as the worker reads the event
        for text in texts
    ]  # fmt: skip
    log = write_log(tmp_path, registry, events, partitions=1)
    states = online_states(view, events, batch=10, partitions=1)
    frames = [
        pd.DataFrame({"customer_id": ["a"] * len(texts), "event_timestamp": texts}),
        pd.DataFrame({"customer_id": ["a"] * len(texts), "event_timestamp": pd.to_datetime(texts)}),
        pd.DataFrame(
            {
                "customer_id": ["a"] * len(texts),
                "event_timestamp": pd.to_datetime(texts).tz_convert(None).astype("M8[ns]"),
            }
        ),
    ]
    for frame in frames:
        out = get_historical_features(registry, log, frame, ["v:n", "v:since"])
        assert out["n"].tolist() == [1, 2, 3, 4], frame["event_timestamp"].dtype
        assert out["since"].tolist() == [0.0] * 4
        online = [states["a"].evaluate(query_time(text)) for text in texts]
        assert out["n"].tolist() == [o["n"] for o in online]
        assert out["since"].tolist() == [o["since"] for o in online]


def test_bad_requests_name_the_problem(tmp_path: Path) -> None:
    registry = registry_of(tmp_path, ["{name: n, aggregation: count, window: 1h}"])
    log = EventLog(str(tmp_path / "empty"))
    ok = pd.DataFrame({"customer_id": ["a"], "event_timestamp": [T0]})
    with pytest.raises(RequestError, match="view 'v' has no 'nope'"):
        get_historical_features(registry, log, ok, ["v:nope"])
    with pytest.raises(ValueError, match="needs entity key 'customer_id'"):
        get_historical_features(registry, log, ok.drop(columns="customer_id"), ["v:n"])
    with pytest.raises(ValueError, match="no 'event_timestamp' column"):
        get_historical_features(registry, log, ok.drop(columns="event_timestamp"), ["v:n"])
    bad_time = ok.assign(event_timestamp=["yesterday"])
    with pytest.raises(ValueError, match="ISO-8601"):
        get_historical_features(registry, log, bad_time, ["v:n"])
    # an empty log: every row still comes back
    assert get_historical_features(registry, log, ok, ["v:n"])["n"].tolist() == [0]


def test_late_events_are_left_out_as_online(tmp_path: Path) -> None:
    registry = registry_of(
        tmp_path, ["{name: n, aggregation: count}"], extra="    allowed_lateness: 10m"
    )
    events = [
        {"customer_id": "a", "amount": 1.0, "qty": 1, "category": "x", "online": True, "ts": ts}
        for ts in (T0, T0 + 3600, T0 + 3000, T0 + 100)  # the last is 3500 s behind: late
    ]
    log = write_log(tmp_path, registry, events, partitions=1)
    frame = pd.DataFrame({"customer_id": ["a"], "event_timestamp": [T0 + 7200]})
    assert get_historical_features(registry, log, frame, ["v:n"])["n"].tolist() == [3]


def test_std_of_large_amounts_keeps_full_precision(tmp_path: Path) -> None:
    """Amounts of mean 1e6 and spread 3: prefix sums of squares would cancel to noise
    (their rounding error is ~1e-16 * 1e12 * n, the variance ~10 * n).

    Offline and online must both match the exactly computed (rational) variance to a
    relative 1e-9 with no absolute floor, and so each other. (Offline's two-pass stays
    exact far beyond this; online's Welford/Chan moments lose about eps * mean / std,
    so parity holds up to mean / std of about 1e6.)
    """
    registry = registry_of(
        tmp_path,
        [
            "{column: amount, aggregations: [std, var, mean, sum], windows: [10m, 1h]}",
            "{name: life_std, column: amount, aggregation: std}",
        ],
    )
    rng = np.random.default_rng(0)
    n = 1500
    ts = T0 + np.sort(rng.uniform(0, 43200, n))
    amounts = 1e6 + np.round(rng.normal(0, 3, n), 2)
    events = [
        {"customer_id": f"c{i % 3}", "amount": float(a), "qty": 1, "category": "x",
         "online": True, "ts": float(t)}
        for i, (a, t) in enumerate(zip(amounts, ts, strict=True))
    ]  # fmt: skip
    log = write_log(tmp_path, registry, events)
    view = registry.feature_views["v"]
    states = online_states(view, events, batch=500)
    times = float(ts[-1]) - rng.uniform(0, 3000, 120)  # within online retention
    customers = [f"c{i % 3}" for i in range(120)]
    frame = pd.DataFrame({"customer_id": customers, "event_timestamp": times})
    out = get_historical_features(registry, log, frame, [f"v:{f.name}" for f in view.features])
    by_entity: dict[str, list[Event]] = {}
    for i, e in enumerate(events):
        by_entity.setdefault(e["customer_id"], []).append(
            Event(e["ts"], i, {"amount": e["amount"]})
        )
    checked = 0
    for row in out.to_dict(orient="records"):
        t = row["event_timestamp"]
        online = states[row["customer_id"]].evaluate(t)
        for f in view.features:
            xs = [e.values["amount"] for e in selected(by_entity[row["customer_id"]], t, f)]
            exact = {
                "std": statistics.stdev, "var": statistics.variance,
                "mean": statistics.fmean, "sum": math.fsum,
            }[f.aggregation]  # fmt: skip
            got = _plain(row[f.name])
            if len(xs) < (2 if f.aggregation in ("std", "var") else 1):
                assert got is None and online[f.name] is None
                continue
            want = exact(xs)
            assert math.isclose(got, want, rel_tol=1e-9), (f.name, "offline", got, want)
            assert math.isclose(online[f.name], want, rel_tol=1e-9), (f.name, "online", want)
            checked += 1
    assert checked > 800


# --------------------------------------------------------------------------- property

AGG_NUMERIC = ["sum", "mean", "min", "max", "std", "var", "first", "last", "count"]
WINDOWS = [None, "1m", "5m", "10m", "1h", "2h"]
WHERES = [None, "category == 'x'", "online", "amount > 20", "qty in [1, 2]"]


@st.composite
def definitions(draw: st.DrawFn) -> list[str]:
    n = draw(st.integers(1, 6))
    out = []
    for i in range(n):
        column, aggregation = draw(
            st.one_of(
                st.tuples(st.sampled_from(["amount", "qty"]), st.sampled_from(AGG_NUMERIC)),
                st.tuples(
                    st.sampled_from(["category", "online"]),
                    st.sampled_from(["count", "count_distinct", "first", "last"]),
                ),
                st.tuples(st.none(), st.sampled_from(["count", "time_since_last"])),
                st.tuples(st.just("amount"), st.just("time_since_last")),
            )
        )
        window = draw(st.sampled_from(WINDOWS))
        where = draw(st.sampled_from(WHERES))
        parts = [f"name: f{i}", f"aggregation: {aggregation}"]
        if column:
            parts.append(f"column: {column}")
        if window:
            parts.append(f"window: {window}")
        if where:
            parts.append(f'where: "{where}"')
        out.append("{" + ", ".join(parts) + "}")
    return out


@st.composite
def event_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 60))
    out = []
    clock = T0
    for _ in range(n):
        clock += draw(st.sampled_from([0.0, 0.5, 7.0, 59.999, 60.0, 301.0, 1800.0]))
        jitter = draw(st.sampled_from([0.0, 0.0, 0.0, -30.0, -600.0, -4000.0]))
        amount = draw(st.one_of(st.none(), st.floats(-50, 1e4, allow_nan=False), st.just(20.0)))
        out.append(
            {
                "customer_id": draw(st.sampled_from(["a", "b", "c"])),
                "amount": np.nan if amount is None else amount,
                "qty": draw(st.one_of(st.none(), st.integers(0, 3))),
                "category": draw(st.one_of(st.none(), st.sampled_from(["x", "y", "z"]))),
                "online": draw(st.one_of(st.none(), st.booleans())),
                "ts": clock + jitter,
            }
        )
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    features=definitions(),
    events=event_lists(),
    lateness=st.sampled_from(["", "    allowed_lateness: 15m"]),
    offsets=st.lists(st.floats(-100, 20000, allow_nan=False), min_size=1, max_size=12),
    batch=st.integers(1, 20),
)
def test_offline_equals_online_as_of_for_random_definitions_events_and_times(
    features: list[str],
    events: list[dict[str, Any]],
    lateness: str,
    offsets: list[float],
    batch: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = registry_of(Path(tmp), features, extra=lateness)
        view = registry.feature_views["v"]
        log = write_log(Path(tmp), registry, events)
        states = online_states(view, events, batch)
        times = [T0 + o for o in offsets]
        times += [e["ts"] for e in events[:5]] + [e["ts"] + 60 for e in events[:5]]
        rows = [(c, t) for c in ("a", "b", "c", "unknown") for t in times]
        frame = pd.DataFrame(
            {"customer_id": [c for c, _ in rows], "event_timestamp": [t for _, t in rows]}
        )
        names = [f.name for f in view.features]
        out = get_historical_features(registry, log, frame, [f"v:{n}" for n in names])
        scale = max((abs(e["amount"]) for e in events if not np.isnan(e["amount"])), default=1)
        for i, (entity, t) in enumerate(rows):
            state = states.get(entity)
            if state is None:  # never seen: NOT_FOUND online, with the values of no events
                online = {f.name: AGGREGATIONS[f.aggregation].empty_value(t) for f in view.features}
            else:
                try:
                    online = state.evaluate(t)
                except OutsideRetentionError:
                    continue  # online cannot answer this far back
            for f in view.features:
                offline = out[f.name].iloc[i]
                assert same(f.aggregation, offline, online[f.name], max(scale, 3.0)), (
                    f"{f} at {t} for {entity}: offline {offline!r} online {online[f.name]!r}"
                )


def test_reference_agrees_on_a_dense_random_log(tmp_path: Path) -> None:
    """Many events per entity, every aggregation: offline == the brute-force contract."""
    registry = registry_of(
        tmp_path,
        [
            "{column: amount, aggregations: [count, sum, mean, min, max, std, first, last],"
            " windows: [1h, 1d]}",
            "{name: cats_1d, column: category, aggregation: count_distinct, window: 1d}",
            "{name: cats, column: category, aggregation: count_distinct}",
            "{name: since, aggregation: time_since_last}",
            "{name: big_max, column: amount, aggregation: max, where: 'amount > 50'}",
        ],
    )
    rng = np.random.default_rng(7)
    n = 4000
    ts = T0 + np.round(np.sort(rng.uniform(0, 3 * 86400, n)), 1)
    events = [
        {"customer_id": f"c{int(rng.integers(0, 20))}",
         "amount": float(np.round(rng.lognormal(3, 1), 2)) if rng.random() > 0.05 else np.nan,
         "qty": int(rng.integers(0, 4)), "category": str(rng.choice(["a", "b", "c", "d"])),
         "online": bool(rng.random() < 0.3), "ts": float(t)}
        for t in ts
    ]  # fmt: skip
    log = write_log(tmp_path, registry, events, partitions=3)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{int(rng.integers(0, 21))}" for _ in range(200)],
            "event_timestamp": T0 + rng.uniform(-3600, 4 * 86400, 200),
        }
    )
    view = registry.feature_views["v"]
    out = get_historical_features(registry, log, frame, [f"v:{f.name}" for f in view.features])
    logged = log.read(view.source)
    by_entity: dict[str, list[Event]] = {}
    for row in logged.to_dict(orient="records"):
        values = {"amount": _plain(row["amount"]), "category": row["category"]}
        passes = [True if f.where is None else f.where.evaluate_row(values) for f in view.features]
        seq = int(row["_offset"]) * 4096 + int(row["_partition"])
        by_entity.setdefault(row["customer_id"], []).append(
            Event(float(row["event_ts"]), seq, values, passes)
        )
    for i, row in enumerate(out.to_dict(orient="records")):
        evs = by_entity.get(row["customer_id"], [])
        for k, f in enumerate(view.features):
            want = brute_force(evs, row["event_timestamp"], f, k)
            values = [e.values.get(f.column) for e in evs] if f.column else []
            got = _plain(row[f.name])
            assert matches(f.aggregation, got, want, values), (i, f.name, got, want)
