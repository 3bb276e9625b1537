"""Training sets inside Apache Spark: the bucketed engine's per-bucket function on executors.

`spark_historical_features(spark, registry, offline_uri, entities, features)` returns a
Spark DataFrame: the entity rows (a pandas frame or a Spark DataFrame) in their order,
every column kept, plus one column per feature, with the values of the local engines.
For each (entity, source) of the features asked (`buckets.plan_buckets`):

- Spark reads the source's offline log where it lives (`<uri>/events/source=<name>/`,
  local paths or ``s3a://``; an ``s3://`` URI is read as ``s3a://``), only the columns
  the evaluator reads; a Python step adds each event's bucket (`buckets.key_buckets`,
  the local engine's hash of the canonical entity id) and each row's;
- events and rows are cogrouped by bucket (`applyInArrow`): each bucket is evaluated
  by `buckets.evaluate_bucket`, the evaluator over that bucket's events alone;
- the values of several (entity, source) groups are joined on the row's position,
  and the result is sorted by it, so rows keep the caller's order.

`spark_session(master)` starts or joins Spark: ``local[N]``, a cluster master
(``spark://``, ``yarn``, ``k8s://``), or Spark Connect (``sc://host:15002``). Executors
run this package: it must be installed in their Python (`PYSPARK_PYTHON`, set here to
this interpreter for local masters).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from feature_service.definitions import Registry
from feature_service.offline.buckets import (
    BUCKET_COLUMN,
    ROW_COLUMN,
    BucketGroup,
    choose_buckets,
    evaluate_bucket,
    key_buckets,
    plan_buckets,
)
from feature_service.offline.event_log import arrow_schema
from feature_service.offline.historical import TIMESTAMP_COLUMN, epoch_seconds
from feature_service.requests import RequestError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def spark_session(master: str | None = None, app_name: str = "feature-service") -> SparkSession:
    """A Spark session on `master` (default ``local[*]``, or the `spark-submit` one);
    ``sc://...`` connects to Spark Connect."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise RequestError(
            "the Spark engine needs pyspark: pip install 'feature-service[spark]'"
        ) from None
    if master is not None and master.startswith("sc://"):
        return SparkSession.builder.remote(master).getOrCreate()
    # Local workers must run this interpreter (its packages), not `python3` from PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif not os.environ.get("SPARK_HOME") and "spark.master" not in os.environ.get(
        "PYSPARK_SUBMIT_ARGS", ""
    ):
        builder = builder.master("local[*]")
    return builder.getOrCreate()


def spark_log_path(offline_uri: str, source: str) -> str:
    """Where Spark reads a source's log.

    >>> spark_log_path("s3://bucket/offline", "tx")
    's3a://bucket/offline/events/source=tx'
    >>> spark_log_path("stores/offline", "tx").endswith("stores/offline/events/source=tx")
    True
    """
    if offline_uri.startswith("s3://"):
        return "s3a://" + offline_uri[len("s3://") :].rstrip("/") + f"/events/source={source}"
    if "://" not in offline_uri:
        offline_uri = os.path.abspath(offline_uri)
    return offline_uri.rstrip("/") + f"/events/source={source}"


def spark_historical_features(
    spark: SparkSession,
    registry: Registry,
    offline_uri: str,
    entities: pd.DataFrame | DataFrame,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
    *,
    buckets: int | None = None,
) -> DataFrame:
    """The training set of `entities` (rows with the join keys and `event_timestamp`) as a
    Spark DataFrame in the rows' order (module doc). `buckets`: B (default: from the
    log's size, `buckets.choose_buckets`, at least the default parallelism)."""
    from pyspark.sql import functions as F

    if isinstance(entities, pd.DataFrame):
        rows = _spark_rows(spark, entities)
        given = _spark_rows(spark, entities, evaluated=False)
    else:
        rows = given = entities.withColumn(ROW_COLUMN, F.monotonically_increasing_id())
    values = spark_feature_values(
        spark, registry, offline_uri, rows, features, feature_service, full_feature_names,
        max_offsets, buckets=buckets,
    )  # fmt: skip
    return given.join(values, on=ROW_COLUMN, how="left").orderBy(ROW_COLUMN).drop(ROW_COLUMN)


def spark_historical_frame(
    spark: SparkSession,
    registry: Registry,
    offline_uri: str,
    entity_df: pd.DataFrame,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
    *,
    buckets: int | None = None,
) -> pd.DataFrame:
    """`spark_historical_features` of a pandas `entity_df`, returned as pandas: its rows
    and columns exactly as given, the values computed by Spark (what the local engines
    return)."""
    values = spark_feature_values(
        spark, registry, offline_uri, _spark_rows(spark, entity_df), features,
        feature_service, full_feature_names, max_offsets, buckets=buckets,
    ).toArrow()  # fmt: skip
    position = np.asarray(values[ROW_COLUMN].to_numpy(), dtype=np.int64)
    inverse = np.full(len(entity_df), -1, dtype=np.int64)
    inverse[position] = np.arange(position.size)
    ordered = values.take(pa.array(inverse)).to_pandas()
    out = entity_df.copy()
    for name in values.column_names:
        if name != ROW_COLUMN:
            out[name] = ordered[name].to_numpy()
    return out


def spark_feature_values(
    spark: SparkSession,
    registry: Registry,
    offline_uri: str,
    rows: DataFrame,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
    *,
    buckets: int | None = None,
) -> DataFrame:
    """`ROW_COLUMN` and each feature's value, for `rows` (`ROW_COLUMN`, the join keys,
    `event_timestamp`), in no particular order."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    sample = _empty_pandas(rows.drop(ROW_COLUMN).schema)
    plan = plan_buckets(registry, sample, features, feature_service, full_feature_names)
    parallelism = _parallelism(spark)
    result: DataFrame | None = None
    for group in plan.groups:
        source = registry.sources[group.source]
        schema = arrow_schema(source)
        columns = [c for c in schema.names if c in set(group.columns)]
        event_schema = pa.schema([schema.field(c) for c in columns])
        events = (
            spark.read.schema(from_arrow_schema(schema))
            .option("recursiveFileLookup", "true")
            .option("pathGlobFilter", "p*-o*.parquet")
            .parquet(spark_log_path(offline_uri, group.source))
            .select(*columns)
        )
        b = buckets or max(choose_buckets(_estimated_events(events), parallelism), parallelism)
        keyed_events = events.mapInArrow(
            _add_buckets(group.join_keys, b, event_schema),
            from_arrow_schema(event_schema.append(pa.field(BUCKET_COLUMN, pa.int32()))),
        )
        row_columns = [ROW_COLUMN, *group.join_keys, TIMESTAMP_COLUMN, *group.request_fields]
        row_schema = to_arrow_schema(rows.select(*row_columns).schema, timezone="UTC")
        keyed_rows = rows.select(*row_columns).mapInArrow(
            _add_buckets(group.join_keys, b, row_schema, rows=True),
            from_arrow_schema(row_schema.append(pa.field(BUCKET_COLUMN, pa.int32()))),
        )
        out_schema = pa.schema(
            [pa.field(ROW_COLUMN, pa.int64()), *_feature_fields(registry, group, sample, plan)]
        )
        values = (
            keyed_events.groupBy(BUCKET_COLUMN)
            .cogroup(keyed_rows.groupBy(BUCKET_COLUMN))
            .applyInArrow(
                _bucket_function(
                    registry, group, event_schema, out_schema, full_feature_names, max_offsets
                ),
                from_arrow_schema(out_schema),
            )
        )
        result = values if result is None else result.join(values, on=ROW_COLUMN, how="full")
    assert result is not None  # a plan has a group per feature asked, and one at least
    return result


# ------------------------------------------------------------------ what runs where


def _spark_rows(spark: SparkSession, entity_df: pd.DataFrame, evaluated: bool = True) -> DataFrame:
    """A pandas frame of entity rows as a Spark DataFrame with each row's position.

    `evaluated`: the rows the evaluator reads, their `event_timestamp` as the evaluator's
    own epoch seconds (`historical.epoch_seconds`: Spark's timestamps hold microseconds,
    a pandas one nanoseconds); otherwise every column as given (datetimes to the
    microsecond), for the training set Spark returns."""
    frame = entity_df.reset_index(drop=True).copy()
    if evaluated:
        frame[TIMESTAMP_COLUMN] = epoch_seconds(frame[TIMESTAMP_COLUMN])
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype) or frame[name].dtype.kind == "M":
            frame[name] = pd.to_datetime(frame[name], utc=True).dt.floor("us")
    frame[ROW_COLUMN] = np.arange(len(frame), dtype=np.int64)
    return spark.createDataFrame(frame)


def _empty_pandas(schema: Any) -> pd.DataFrame:
    """An empty pandas frame with a Spark schema's columns (for the plan's dry run)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema, timezone="UTC").empty_table().to_pandas()


def _parallelism(spark: SparkSession) -> int:
    try:
        return max(int(spark.sparkContext.defaultParallelism), 1)
    except Exception:  # Spark Connect has no SparkContext
        return max(int(spark.conf.get("spark.sql.shuffle.partitions") or 200), 1)


def _estimated_events(events: DataFrame) -> int:
    """The events of a source's log, counted by Spark (Parquet footers only)."""
    return int(events.select().count())


def _add_buckets(
    join_keys: Sequence[str], buckets: int, schema: pa.Schema, rows: bool = False
) -> Any:
    """The step adding each record's bucket (rows without a key go to bucket 0: they
    get the values of no events wherever they are; events without one are dropped)."""

    def add(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            bucket = key_buckets([batch.column(c) for c in join_keys], buckets)
            if rows:
                bucket[bucket < 0] = 0
                yield batch.append_column(BUCKET_COLUMN, pa.array(bucket))
            else:
                keep = bucket >= 0
                kept = batch.filter(pa.array(keep))
                yield kept.append_column(BUCKET_COLUMN, pa.array(bucket[keep]))

    return add


def _bucket_function(
    registry: Registry,
    group: BucketGroup,
    event_schema: pa.Schema,
    out_schema: pa.Schema,
    full_feature_names: bool,
    max_offsets: Mapping[str, Mapping[int, int]] | None,
) -> Any:
    """The function each executor applies to one bucket: events and rows in, the rows'
    positions and values out."""

    def evaluate(events: pa.Table, rows: pa.Table) -> pa.Table:
        if rows.num_rows == 0:
            return out_schema.empty_table()
        typed = events.drop_columns([BUCKET_COLUMN]).cast(event_schema)
        # integers with nulls as Python ints (a float 1.0 would be another id, "1.0")
        frame = rows.drop_columns([BUCKET_COLUMN]).to_pandas(integer_object_nulls=True)
        # A batch of the log may have been written twice (`offline.event_log`): each
        # (partition, offset) once, as the offline log's own scan keeps it.
        out = evaluate_bucket(
            registry, group, typed, frame, full_feature_names, max_offsets, overlapping=True
        )
        return pa.Table.from_pandas(out[list(out_schema.names)], out_schema, preserve_index=False)

    return evaluate


def _feature_fields(
    registry: Registry, group: BucketGroup, sample: pd.DataFrame, plan: Any
) -> list[pa.Field]:
    """The Arrow type of each feature of `group`: the evaluator's over no rows, or for
    values held as Python objects (strings, lists), the type the aggregation states."""
    empty = evaluate_bucket(
        registry,
        group,
        arrow_schema(registry.sources[group.source]).empty_table(),
        sample,
        plan.full_feature_names,
    )
    fields = []
    for name, ref in zip(group.outputs, group.features, strict=True):
        kind = pa.Schema.from_pandas(empty[[name]], preserve_index=False).field(name).type
        if pa.types.is_null(kind):
            kind = _stated_type(registry, ref)
        fields.append(pa.field(name, kind))
    return fields


def _stated_type(registry: Registry, ref: str) -> pa.DataType:
    """The Arrow type an aggregation states for its values (`Aggregation.value_type`),
    text where the kernel states none."""
    view_name, _, feature_name = ref.partition(":")
    view = registry.feature_views[view_name]
    feature = view.feature(feature_name)
    try:
        from feature_service.aggregation.spec import aggregation_of  # type: ignore[import-not-found,unused-ignore]

        column_kind = None if feature.column is None else view.source.column_kinds[feature.column]
        stated: pa.DataType = aggregation_of(feature).value_type(column_kind).arrow
        return stated
    except (ImportError, AttributeError, KeyError, TypeError):
        return pa.string()
