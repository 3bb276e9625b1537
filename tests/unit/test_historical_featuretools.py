"""An independent oracle: featuretools' point-in-time feature matrix (cutoff times,
`use_previous` windows) equals our training set.

Cutoffs sit on hop boundaries and no event sits on a window boundary, so our hop rounding
(`floor(t/h)*h - W`) and featuretools' open/closed window ends cannot matter; what is
compared is everything else: which events each row sees and what each primitive makes
of them. Empty windows differ by convention only: featuretools' Sum says 0 where we say null
(DESIGN.md: empty windows are null except counts) and its NumUnique NaN where we say 0;
those cells are compared as such.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_service.aggregation.registry import aggregation
from feature_service.offline.historical import get_historical_features
from tests.unit.test_historical import T0, registry_of, write_log

ft = pytest.importorskip("featuretools")

WINDOWS = {"1h": "1 hour", "1d": "1 day", None: None}


def test_featuretools_feature_matrix_equals_our_training_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 3000
    start = T0 - T0 % 3600  # an hour boundary
    # event times never on a whole second, so never on a window boundary
    # in time order (an event far behind the newest would be late and left out)
    ts = start + np.sort(np.floor(rng.uniform(0, 4 * 86400, n))) + rng.uniform(0.001, 0.999, n)
    events = [
        {"customer_id": f"c{int(rng.integers(0, 25))}",
         "amount": float(np.round(rng.lognormal(3, 1), 2)) if rng.random() > 0.03 else np.nan,
         "qty": 1, "category": str(rng.choice(["a", "b", "c", "d", "e"])), "online": True,
         "ts": float(t)}
        for t in ts
    ]  # fmt: skip
    specs = []
    for window in WINDOWS:
        w = f", window: {window}" if window else ""
        suffix = window or "life"
        specs.append(f"{{name: count_{suffix}, aggregation: count{w}}}")
        for agg in ("sum", "mean", "min", "max", "std"):
            specs.append(f"{{name: {agg}_{suffix}, aggregation: {agg}, column: amount{w}}}")
        specs.append(f"{{name: nu_{suffix}, aggregation: count_distinct, column: category{w}}}")
    # the event times' own, lifetime only: featuretools 1.31's windowed AvgTimeBetween
    # and TimeSinceFirst fail on pandas 2 at some cutoffs (a dtype cast, a KeyError)
    specs.append("{name: mean_gap_life, aggregation: mean_gap}")
    specs.append("{name: since_first_life, aggregation: time_since_first}")
    registry = registry_of(tmp_path, specs)
    log = write_log(tmp_path, registry, events, partitions=3)
    view = registry.feature_views["v"]

    # cutoffs: whole hours from before the first event to after the last
    pairs = {(int(rng.integers(0, 26)), int(rng.integers(-2, 4 * 24 + 30))) for _ in range(320)}
    chosen = sorted(pairs)[:300]  # distinct (customer, cutoff): featuretools wants that
    rng.shuffle(chosen)
    customers = [f"c{c}" for c, _ in chosen]  # c25 has no events
    cutoff_s = start + 3600.0 * np.array([h for _, h in chosen], dtype=np.float64)
    ours = get_historical_features(
        registry,
        log,
        pd.DataFrame({"customer_id": customers, "event_timestamp": cutoff_s}),
        [f"v:{f.name}" for f in view.features],
    )

    frame = pd.DataFrame(events)
    frame["event_id"] = np.arange(n)
    frame["time"] = pd.to_datetime(frame["ts"], unit="s")
    es = ft.EntitySet("tx")
    es.add_dataframe(
        dataframe_name="events",
        dataframe=frame[["event_id", "customer_id", "amount", "category", "time"]],
        index="event_id",
        time_index="time",
        logical_types={"category": "Categorical", "customer_id": "Categorical"},
    )
    es.add_dataframe(
        dataframe_name="customers",
        dataframe=pd.DataFrame({"customer_id": [f"c{i}" for i in range(26)]}),
        index="customer_id",
        logical_types={"customer_id": "Categorical"},
    )
    es.add_relationship("customers", "customer_id", "events", "customer_id")
    features = []
    for f in view.features:
        window = f.name.rsplit("_", 1)[1]
        # the primitive each of ours declares it computes the value of
        primitive = ft.primitives.get_aggregation_primitives()[
            aggregation(f.aggregation).featuretools
        ]
        on_times = any("time_index" in t.semantic_tags for t in primitive.input_types)
        base = ft.Feature(es["events"].ww[f.column or ("time" if on_times else "event_id")])
        features.append(
            ft.Feature(
                base,
                parent_dataframe_name="customers",
                primitive=primitive,
                use_previous=WINDOWS[None if window == "life" else window],
            ).rename(f.name)
        )
    cutoff = pd.DataFrame(
        {
            "customer_id": customers,
            "time": pd.to_datetime(cutoff_s, unit="s"),
            "row": np.arange(300),
        }
    )
    matrix = ft.calculate_feature_matrix(
        features, es, cutoff_time=cutoff, cutoff_time_in_index=False, verbose=False
    )
    assert len(matrix) == 300
    matrix = matrix.sort_values("row")

    checked = 0
    for f in view.features:
        theirs = matrix[f.name].tolist()
        mine = ours[f.name].tolist()
        for i in range(300):
            a, b = _num(mine[i]), _num(theirs[i])
            if f.aggregation == "sum" and a is None:  # no amount in the window
                assert b == 0, (f.name, i, a, b)
                continue
            if f.aggregation == "count_distinct" and a == 0:  # featuretools: NaN
                assert b is None, (f.name, i, a, b)
                continue
            if a is None or b is None:
                assert a is None and b is None, (f.name, i, a, b)
                continue
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (
                f.name,
                i,
                a,
                b,
                customers[i],
                cutoff_s[i],
                matrix.iloc[i].to_dict(),
            )
            checked += 1
    assert checked > 3000


def _num(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value
