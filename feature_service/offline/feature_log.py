"""The feature values as of each event, for analysis: one Parquet table per view.

`write_feature_log(registry, log, view)` evaluates every feature of `view` at the time
of each event of its source in the offline log, with the training-set engine
(`offline.historical`), and writes
`<offline>/features/view=<view>/features.parquet` (atomically: a temporary file, then a
rename, so readers never see half a table and a rerun replaces it).

Columns: the view's join keys, `event_timestamp` (the event's time), `_partition` and
`_offset` (which event it was), `_late` (true when the event was late for this view: it
is kept here but, as online, counts in no feature), then one column per feature.

Semantics: "as of the event" is `t = event_ts` with the window rule of DESIGN.md, so a
value includes the event itself and any other event of the entity at the same time;
this is exactly what `/get-online-features` with `as_of = event_ts` answers once the
stream has caught up.

Why a batch job and not the worker: evaluating ~30 features per event on the hot path
would cost the stream more than all of its aggregation does today, for a table read by
people, not by models. The job reads only the log, so it can run anywhere, any time
(`feature-service feature-log --view NAME`), and gives the same numbers.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from feature_service.definitions import FeatureView, Registry
from feature_service.offline.event_log import EventLog
from feature_service.offline.feature_values import nested_types, to_arrow
from feature_service.offline.historical import (
    ProgressFn,
    get_historical_features,
)
from feature_service.plan import view_plan

TIMESTAMP_COLUMN = "event_timestamp"


def feature_log_path(log: EventLog, view: FeatureView) -> str:
    return f"{log.root}/features/view={view.name}/features.parquet"


def feature_log(
    registry: Registry, log: EventLog, view: FeatureView, progress: ProgressFn | None = None
) -> pd.DataFrame:
    """Every event of the view's source with every feature of the view as of that event."""
    keys = list(view.entity.join_keys)
    events = log.scan(view.source, [*keys, "event_ts", "_partition", "_offset", "_watermark"])
    frame = events.to_pandas(integer_object_nulls=True)  # int keys with nulls stay ints
    order = np.lexsort((frame["_offset"].to_numpy(), frame["_partition"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    late = view_plan(view).late(frame["event_ts"].to_numpy(), frame["_watermark"].to_numpy())
    entity_df = pd.DataFrame(
        {
            **{key: frame[key] for key in keys},
            TIMESTAMP_COLUMN: frame["event_ts"],
            "_partition": frame["_partition"],
            "_offset": frame["_offset"],
            "_late": late,
        }
    )
    features = [f"{view.name}:{f.name}" for f in view.features]
    return get_historical_features(registry, log, entity_df, features, progress=progress)


def write_feature_log(
    registry: Registry, log: EventLog, view: FeatureView, progress: ProgressFn | None = None
) -> tuple[str, int]:
    """Compute and write the view's feature log; return (path, rows)."""
    nested = nested_types(registry, {f.name: f"{view.name}:{f.name}" for f in view.features})
    table = to_arrow(feature_log(registry, log, view, progress), nested)
    path = feature_log_path(log, view)
    directory = path.rsplit("/", 1)[0]
    log.fs.makedirs(directory, exist_ok=True)
    tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
    with log.fs.open(tmp, "wb") as out:
        pq.write_table(table, out, compression="zstd")
    log.fs.mv(tmp, path)
    return path, table.num_rows
