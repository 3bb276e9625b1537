"""The training-set engines by name, for every caller that lets a user choose one.

`historical_frame(..., engine="local" | "spark")` is the training set as a pandas frame
(`entity_df`'s rows and columns, then the features) from the engine named:

- ``local``: `offline.buckets.bucketed_historical_features` (a small log whole in this
  process, a larger one in buckets, one process per core);
- ``spark``: `offline.spark_engine.spark_historical_frame` in the session given (or a
  local one), the same per-bucket function on Spark's executors.

The SDK's `get_historical_features` and `parity` call it, so a parity check runs the
offline side through exactly the code a training set of that engine runs.

>>> check_engine("spark")
'spark'
>>> check_engine("duckdb")
Traceback (most recent call last):
...
feature_service.requests.RequestError: unknown engine 'duckdb': use local or spark
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from feature_service.definitions import Registry
from feature_service.offline.event_log import EventLog
from feature_service.requests import RequestError

ENGINES = ("local", "spark")


def check_engine(engine: str) -> str:
    """`engine` if it names an engine; a `RequestError` naming them otherwise."""
    if engine not in ENGINES:
        raise RequestError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
    return engine


def historical_frame(
    registry: Registry,
    offline: EventLog | str,
    entity_df: pd.DataFrame,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
    *,
    engine: str = "local",
    spark: Any = None,
) -> pd.DataFrame:
    """The training set of `entity_df` by `engine` (module doc); `spark`: the session of
    the Spark engine (default `spark_engine.spark_session()`)."""
    check_engine(engine)
    if engine == "spark":
        from feature_service.offline import spark_engine

        session = spark or spark_engine.spark_session()
        uri = offline.uri if isinstance(offline, EventLog) else offline
        return spark_engine.spark_historical_frame(
            session, registry, uri, entity_df, features, feature_service,
            full_feature_names, max_offsets,
        )  # fmt: skip
    from feature_service.offline.buckets import bucketed_historical_features

    return bucketed_historical_features(
        registry, offline, entity_df, features, feature_service, full_feature_names,
        max_offsets=max_offsets,
    )  # fmt: skip
