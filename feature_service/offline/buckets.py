"""Training sets in buckets of entities: memory follows the largest bucket, not the log.

A row's features depend only on the events of its own entity, so the entity rows and
the log's events can be split by entity key into ``B`` buckets and each bucket
evaluated alone, by the one evaluator (`offline.historical.get_historical_features`)
over an in-memory log of that bucket's events (`TableLog`). The local engine here and
the Spark engine (`offline.spark_engine`) bucket the same way (`key_buckets`) and call
the same per-bucket function (`evaluate_bucket`), so they give the same values.

The local engine (`bucketed_historical_features`), one process per core:

1. Plan: the features asked, grouped by (entity join keys, source): one bucketing per
   entity, one event table per source. A dry run of the evaluator over no rows and no
   events checks the request (the same errors as the evaluator) and records the
   columns it reads of each source, so only those are spilled.
2. Spill: the log is read file by file (never whole), each file's events hashed by
   their entity id (`keys.EntityKey.arrow_ids`: ints and strings hash as the online
   keys name them, a composite key by its tuple's id) and appended to that bucket's
   Arrow IPC file (uncompressed: written and mapped back at memory speed, read by the
   evaluator through `TableLog`); the workers split the files.
3. Evaluate: each bucket's events and rows are evaluated in a worker and its values
   written as it completes (a row group per `ROWS_PER_SLICE` rows of `entity_df`).
4. The values are put back in `entity_df`'s row order, as a frame
   (`bucketed_historical_features`), or (`write_training_set`, the CLI's) into a
   Parquet file a slice of rows at a time, each slice read from its row groups of the
   buckets' files: the features of all rows are never held at once (at 3M events and
   4M rows, 755 MB for the CLI's process instead of 1755 MB).

Buckets (`choose_buckets`): enough that one bucket's events take about
``memory_budget / workers`` (1 GiB in all by default) in the evaluator
(~`EVALUATOR_BYTES_PER_EVENT` each, as measured with the 20 windowed features of
`benchmarks/pit.py`), and at least two per
worker so a slow bucket does not leave a core idle. One entity is never split: an
entity with a tenth of the log is a tenth of the log in one bucket.

>>> key_buckets([pa.array(["c1", "c2", None, "c1"])], 8).tolist()
[1, 6, -1, 1]
>>> key_buckets([pa.array([42])], 8).tolist() == key_buckets([pa.array(["42"])], 8).tolist()
True
>>> key_buckets([pa.array(["c1"]), pa.array([7])], 8).tolist()  # a composite key
[7]
"""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feature_service.definitions import Registry, Source
from feature_service.derived import needs, service_values
from feature_service.keys import EntityKey
from feature_service.offline.event_log import (
    READ_FAILURES,
    EventLog,
    UnreadableLogFile,
    arrow_schema,
    batches_overlap,
    failure_reason,
)
from feature_service.offline.feature_values import from_arrow, is_nested, nested_types, to_arrow
from feature_service.offline.historical import (
    TIMESTAMP_COLUMN,
    get_historical_features,
    service_request_columns,
)
from feature_service.requests import FeatureRef, RequestError, resolve_features

ROW_COLUMN = "_row"
"""The position of an entity row in the caller's `entity_df`, carried through buckets."""
BUCKET_COLUMN = "_bucket"
META_COLUMNS = ("event_ts", "_partition", "_offset", "_watermark")
EVALUATOR_BYTES_PER_EVENT = 400
"""Peak memory of the evaluator per event of a bucket (events, sort, index, 20 windowed
features' prefix sums), with headroom; 10M events took ~2.8 GB in one process."""
DEFAULT_MEMORY_BUDGET = 2**30
SINGLE_BUCKET_EVENTS = 2_000_000
"""Logs up to this size are evaluated whole in this process: ~1 s and ~0.8 GB (RESULTS.md),
less than starting processes and spilling would cost."""
ProgressFn = Callable[[int, int], None]
ROWS_PER_SLICE = 500_000
"""Rows of a training set written at a time (`write_training_set`)."""


# ------------------------------------------------------------------------- the hashing


def text_buckets(texts: pa.Array | pa.ChunkedArray, buckets: int) -> npt.NDArray[np.int32]:
    """The bucket of each entity id (Arrow strings; null: -1). Each distinct id is
    hashed once (pandas' SipHash with its fixed key: the same on every machine)."""
    if len(texts) == 0:
        return np.empty(0, dtype=np.int32)
    encoded = pa.chunked_array(texts) if isinstance(texts, pa.Array) else texts
    encoded = encoded.combine_chunks().dictionary_encode()
    uniques = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    of_unique = (pd.util.hash_array(uniques, categorize=False) % np.uint64(buckets)).astype(
        np.int32
    )
    indices = encoded.indices
    out = np.full(len(indices), -1, dtype=np.int32)
    valid = np.asarray(indices.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    codes = np.asarray(indices.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    out[valid] = of_unique[codes[valid]]
    return out


def key_buckets(
    columns: Sequence[pa.Array | pa.ChunkedArray], buckets: int
) -> npt.NDArray[np.int32]:
    """The bucket of each event by its join-key columns (Arrow, in `join_keys` order):
    its canonical id's (`keys.EntityKey.arrow_ids`), -1 without one."""
    key = EntityKey(tuple(str(i) for i in range(len(columns))))
    return text_buckets(key.arrow_ids(columns), buckets)


def row_buckets(keys: Sequence[pd.Series], buckets: int) -> npt.NDArray[np.int32]:
    """The bucket of each entity row by its join-key columns (any dtype; a key null or
    empty: -1)."""
    key = EntityKey(tuple(str(i) for i in range(len(keys))))
    ids = key.row_ids(list(keys))
    return text_buckets(pa.array(ids, type=pa.string()), buckets)


def choose_buckets(events: int, workers: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """How many buckets for `events` events on `workers` processes within `memory_budget`
    bytes: each bucket's evaluation about ``memory_budget / workers``, two per worker at
    least; one for a small log (`SINGLE_BUCKET_EVENTS`).

    >>> choose_buckets(1_000_000, 2)
    1
    >>> choose_buckets(10_000_000, 2)
    8
    >>> choose_buckets(100_000_000, 2)
    75
    """
    if events <= SINGLE_BUCKET_EVENTS:
        return 1
    per_worker = max(memory_budget // max(workers, 1), 1)
    needed = math.ceil(events * EVALUATOR_BYTES_PER_EVENT / per_worker)
    return max(needed, 2 * workers, 1)


# ---------------------------------------------------------------- an in-memory log


class TableLog(EventLog):
    """An event log held in memory: one Arrow table per source (a bucket's events), read
    by the evaluator as it reads the offline log. `overlapping`: the tables may hold an
    event twice (batches written twice, `offline.event_log`), so each `(partition,
    offset)` is kept once, as `EventLog.scan` does."""

    def __init__(self, tables: Mapping[str, pa.Table], overlapping: bool = False) -> None:
        super().__init__("memory://bucket")
        self.tables = dict(tables)
        self.overlapping = overlapping
        self.scanned: dict[str, list[str]] = {}

    def files(self, source: str, partition: int | None = None) -> list[str]:
        return []

    def scan(self, source: Source, columns: Sequence[str]) -> pa.Table:
        self.scanned.setdefault(source.name, [])
        self.scanned[source.name] = list(dict.fromkeys([*self.scanned[source.name], *columns]))
        table = self.tables.get(source.name)
        if table is None:
            return arrow_schema(source).empty_table().select(list(columns))
        if self.overlapping and table.num_rows:
            where = np.stack(
                [
                    np.asarray(table["_partition"].to_numpy(), dtype=np.int64),
                    np.asarray(table["_offset"].to_numpy(), dtype=np.int64),
                ],
                axis=1,
            )
            _, first = np.unique(where, axis=0, return_index=True)
            first.sort()
            table = table.take(pa.array(first))
        return table.select(list(columns))


# ------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BucketGroup:
    """The features of one (entity, source): their rows are bucketed by `join_keys` and
    evaluated over the events of `source` alone, reading its `columns`."""

    join_keys: tuple[str, ...]
    source: str
    features: tuple[str, ...]  # view:feature
    outputs: tuple[str, ...]  # their column names in the training set
    columns: tuple[str, ...]
    request_fields: tuple[str, ...] = ()  # entity row columns derived features read


@dataclass
class BucketPlan:
    groups: list[BucketGroup]
    full_feature_names: bool
    outputs: list[str] = field(default_factory=list)  # every output column, request order


def plan_buckets(
    registry: Registry,
    entity_df: pd.DataFrame,
    features: Sequence[str] | None,
    feature_service: str | None,
    full_feature_names: bool,
) -> BucketPlan:
    """Group the features asked by (join key, source), check the request by a dry run of
    the evaluator (no rows, no events: its own errors for unknown features, missing
    columns, clashing names) and record the columns it reads of each source."""
    refs = resolve_features(registry, features, feature_service, full_feature_names)
    if any(ref.service_expression is not None for ref in refs):
        # the local engine evaluates them after the buckets (`bucketed_historical_features`)
        raise RequestError(
            f"feature service {feature_service!r} computes features across views: ask for "
            "the view features it reads and apply its expressions, or use the local engine"
        )
    probe = TableLog({})
    get_historical_features(
        registry, probe, entity_df.iloc[:0], [f"{r.view.name}:{r.feature}" for r in refs],
        None, full_feature_names,
    )  # fmt: skip
    by_group: dict[tuple[tuple[str, ...], str], list[Any]] = {}
    for ref in refs:
        by_group.setdefault((ref.view.entity.join_keys, ref.view.source.name), []).append(ref)
    groups = []
    for (join_keys, source), members in by_group.items():
        columns = [*probe.scanned.get(source, []), *join_keys, *META_COLUMNS]
        fields = {f for r in members for f in needs(r.view, [r.feature]).request_fields}
        groups.append(
            BucketGroup(
                join_keys,
                source,
                tuple(f"{r.view.name}:{r.feature}" for r in members),
                tuple(r.output_name for r in members),
                tuple(dict.fromkeys(columns)),
                tuple(sorted(fields - {*join_keys, TIMESTAMP_COLUMN})),
            )
        )
    return BucketPlan(groups, full_feature_names, [r.output_name for r in refs])


def evaluate_bucket(
    registry: Registry,
    group: BucketGroup,
    events: pa.Table,
    rows: pd.DataFrame,
    full_feature_names: bool,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
    overlapping: bool = False,
) -> pd.DataFrame:
    """The features of `group` for the entity `rows` of one bucket over that bucket's
    `events` (the rows' columns first, then the features, rows in order)."""
    log = TableLog({group.source: events}, overlapping)
    return get_historical_features(
        registry, log, rows, list(group.features), None, full_feature_names,
        max_offsets=max_offsets,
    )  # fmt: skip


# ------------------------------------------------------------------ the local engine


@dataclass(frozen=True)
class _Spill:
    """Where one run keeps its buckets on disk."""

    root: Path

    def events(self, group: int, worker: int, bucket: int) -> Path:
        return self.root / f"g{group}" / f"w{worker}" / f"events-b{bucket}.arrow"

    def rows(self, group: int, bucket: int) -> Path:
        return self.root / f"g{group}" / f"rows-b{bucket}.parquet"

    def values(self, group: int, bucket: int) -> Path:
        return self.root / f"g{group}" / f"values-b{bucket}.parquet"


def _spill_files(
    offline: str,
    source: Source,
    paths: Sequence[str],
    columns: Sequence[str],
    join_keys: Sequence[str],
    buckets: int,
    spill: _Spill,
    group: int,
    worker: int,
) -> tuple[str, str] | None:
    """Read `paths` of the log one at a time and append each file's events to their
    bucket's file of this worker; (path, reason) of a file that cannot be read."""
    log = EventLog(offline)
    schema = arrow_schema(source)
    wanted = [c for c in schema.names if c in set(columns)]
    out_schema = pa.schema([schema.field(c) for c in wanted])
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    try:
        for path in paths:
            try:
                with log.fs.open(path, "rb") as data:
                    table = pq.read_table(data, columns=wanted, schema=schema)
            except READ_FAILURES as exc:
                return path, failure_reason(exc)
            bucket = key_buckets([table[c] for c in join_keys], buckets)
            order = np.argsort(bucket, kind="stable")
            sorted_buckets = bucket[order]
            table = table.take(pa.array(order))
            bounds = np.flatnonzero(np.diff(sorted_buckets)) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [sorted_buckets.size]))
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                b = int(sorted_buckets[start])
                if b < 0:
                    continue  # no join key: no view of this entity takes the event
                if b not in writers:
                    target = spill.events(group, worker, b)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    writers[b] = pa.ipc.new_file(str(target), out_schema)
                writers[b].write_table(table.slice(start, end - start).cast(out_schema))
    finally:
        for writer in writers.values():
            writer.close()
    return None


def _evaluate_spilled(
    registry: Registry,
    group: BucketGroup,
    group_index: int,
    bucket: int,
    spill: _Spill,
    workers: int,
    full_feature_names: bool,
    max_offsets: Mapping[str, Mapping[int, int]] | None,
    overlapping: bool,
) -> int:
    """Evaluate one spilled bucket and write its values (with `ROW_COLUMN`); its rows."""
    rows_path = spill.rows(group_index, bucket)
    if not rows_path.exists():
        return 0
    rows = pd.read_parquet(rows_path)
    parts = [
        pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        for w in range(workers)
        if (path := spill.events(group_index, w, bucket)).exists()
    ]
    source = registry.sources[group.source]
    events = (
        pa.concat_tables(parts)
        if parts
        else arrow_schema(source)
        .empty_table()
        .select([c for c in arrow_schema(source).names if c in set(group.columns)])
    )
    out = evaluate_bucket(
        registry, group, events, rows, full_feature_names, max_offsets, overlapping
    )
    del events, parts
    nested = nested_types(registry, dict(zip(group.outputs, group.features, strict=True)))
    values = to_arrow(out[[ROW_COLUMN, *group.outputs]], nested)  # lists and maps typed
    # a row group per slice of the training set's rows (the rows are in position order),
    # so a slice of the output reads only its own row groups (`write_training_set`)
    slice_of = np.asarray(values[ROW_COLUMN].to_numpy(), dtype=np.int64) // ROWS_PER_SLICE
    cuts = [0, *(np.flatnonzero(np.diff(slice_of)) + 1).tolist(), len(slice_of)]
    with pq.ParquetWriter(spill.values(group_index, bucket), values.schema) as writer:
        for start, end in itertools.pairwise(cuts):
            writer.write_table(values.slice(start, end - start))
    return len(rows)


class _InlineExecutor(Executor):
    """Runs each task at submit, in this process (one worker: no pool to start)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _process_context() -> multiprocessing.context.BaseContext:
    """Forked workers where the platform forks: they start in milliseconds with the
    modules loaded, and a caller's script needs no `if __name__ == "__main__"` guard
    (a spawned worker imports it again); they only run this module's functions."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def default_workers() -> int:
    """One process per core this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def log_events_count(log: EventLog, paths: Sequence[str]) -> int:
    """Events in the log files `paths`, from their Parquet footers."""
    total = 0
    for path in paths:
        try:
            with log.fs.open(path, "rb") as data:
                total += pq.ParquetFile(data).metadata.num_rows
        except READ_FAILURES as exc:
            raise UnreadableLogFile(path, failure_reason(exc)) from None
    return total


def bucketed_historical_features(
    registry: Registry,
    offline: EventLog | str,
    entity_df: pd.DataFrame,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    progress: ProgressFn | None = None,
    max_offsets: Mapping[str, Mapping[int, int]] | None = None,
    *,
    workers: int | None = None,
    buckets: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    spill_dir: str | Path | None = None,
) -> pd.DataFrame:
    """`get_historical_features`, bucketed (module doc): the same frame, the same values
    but for the last bits of floating sums, in memory bounded by the largest bucket.

    `workers`: processes (default one per core); `buckets`: B (default
    `choose_buckets`); `spill_dir`: where the buckets are kept while running (default a
    temporary folder, removed at the end). `progress` is called with (buckets done,
    buckets in all).
    """
    log = offline if isinstance(offline, EventLog) else EventLog(offline)
    refs = resolve_features(registry, features, feature_service, full_feature_names)
    if any(ref.service_expression is not None for ref in refs):
        return _with_service_expressions(
            registry, log, entity_df, refs, progress, max_offsets,
            workers=workers, buckets=buckets, memory_budget=memory_budget, spill_dir=spill_dir,
        )  # fmt: skip
    run = _BucketRun(
        registry, log, entity_df, features, feature_service, full_feature_names,
        progress, max_offsets, workers, buckets, memory_budget, spill_dir,
    )  # fmt: skip
    if run.b == 1:  # the whole log in this process, as the evaluator reads it
        return run.whole()
    values: dict[str, npt.NDArray[Any] | pd.api.extensions.ExtensionArray] = {}
    with run.evaluated() as spill:
        for g, group in enumerate(run.plan.groups):
            for name in group.outputs:
                values[name] = _assemble(spill, g, run.b, name, len(entity_df))
    out = entity_df.copy(deep=False)  # new columns only: the caller's frame is untouched
    for name in run.plan.outputs:
        out[name] = values.pop(name)  # each column held once
    return out


def write_training_set(
    registry: Registry,
    offline: EventLog | str,
    entity_df: pd.DataFrame,
    path: str | Path,
    features: Sequence[str] | None = None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
    progress: ProgressFn | None = None,
    *,
    workers: int | None = None,
    buckets: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> list[str]:
    """`bucketed_historical_features` written to the Parquet file `path` rather than
    returned: the rows `ROWS_PER_SLICE` at a time, each slice's values read from the
    buckets' files (their row groups of that slice), so the features of all rows are
    never held at once. The same file as the frame's `to_parquet(index=False)` but for
    its row groups; returns the feature columns written.
    """
    refs = resolve_features(registry, features, feature_service, full_feature_names)
    nested = nested_types(
        registry,
        {
            ref.output_name: f"{ref.view.name}:{ref.feature}"
            for ref in refs
            if ref.service_expression is None
        },
    )
    if any(ref.service_expression is not None for ref in refs):  # over whole rows: a frame
        frame = bucketed_historical_features(
            registry, offline, entity_df, features, feature_service, full_feature_names,
            progress, workers=workers, buckets=buckets, memory_budget=memory_budget,
        )  # fmt: skip
        types = pa.Schema.from_pandas(frame, preserve_index=False)
        _write_slices(path, types, len(frame), lambda lo, hi: frame.iloc[lo:hi], nested)
        return [ref.output_name for ref in refs]
    run = _BucketRun(
        registry, offline, entity_df, features, feature_service, full_feature_names,
        progress, None, workers, buckets, memory_budget, None,
    )  # fmt: skip
    if run.b == 1 or len(entity_df) == 0:
        whole = run.whole()
        types = pa.Schema.from_pandas(whole, preserve_index=False)
        _write_slices(path, types, len(whole), lambda lo, hi: whole.iloc[lo:hi], nested)
        return run.plan.outputs
    with run.evaluated() as spill:

        def rows(lo: int, hi: int) -> pd.DataFrame:
            part = entity_df.iloc[lo:hi].copy(deep=False)
            for g, group in enumerate(run.plan.groups):
                sliced = _slice_values(spill, g, run.b, lo, hi)
                for name in group.outputs:
                    part[name] = _column_values(sliced[name], hi - lo)
            return part

        values = [
            pq.read_schema(spilled)
            for g in range(len(run.plan.groups))
            for bucket in range(run.b)
            if (spilled := spill.values(g, bucket)).exists()
        ]  # a column of nulls in one bucket (null type) is text in another
        types = pa.unify_schemas(
            [pa.Schema.from_pandas(entity_df, preserve_index=False), *values],
            promote_options="default",
        )
        _write_slices(path, types, len(entity_df), rows, nested)
    return run.plan.outputs


class _BucketRun:
    """One bucketed run: the plan and B, then (`evaluated`) every group's buckets
    spilled and evaluated into a folder, kept until the caller has read the values."""

    def __init__(
        self,
        registry: Registry,
        offline: EventLog | str,
        entity_df: pd.DataFrame,
        features: Sequence[str] | None,
        feature_service: str | None,
        full_feature_names: bool,
        progress: ProgressFn | None,
        max_offsets: Mapping[str, Mapping[int, int]] | None,
        workers: int | None,
        buckets: int | None,
        memory_budget: int,
        spill_dir: str | Path | None,
    ) -> None:
        self.registry, self.entity_df = registry, entity_df
        self.log = offline if isinstance(offline, EventLog) else EventLog(offline)
        self.request = (features, feature_service, full_feature_names)
        self.progress, self.max_offsets, self.spill_dir = progress, max_offsets, spill_dir
        self.plan = plan_buckets(registry, entity_df, features, feature_service, full_feature_names)
        self.workers = max(workers or default_workers(), 1)
        self.files = {g.source: self.log.files(g.source) for g in self.plan.groups}
        self.b = buckets or choose_buckets(
            max(log_events_count(self.log, paths) for paths in self.files.values())
            if self.files
            else 0,
            self.workers,
            memory_budget,
        )

    def whole(self) -> pd.DataFrame:
        """The evaluator over the whole log in this process."""
        return get_historical_features(
            self.registry, self.log, self.entity_df, *self.request, self.progress,
            self.max_offsets,
        )  # fmt: skip

    @contextlib.contextmanager
    def evaluated(self) -> Iterator[_Spill]:
        own_dir = self.spill_dir is None
        root = Path(tempfile.mkdtemp(prefix="fs-buckets-") if own_dir else self.spill_dir)  # type: ignore[arg-type]
        spill = _Spill(root)
        pool: Executor = (
            ProcessPoolExecutor(self.workers, mp_context=_process_context())
            if self.workers > 1
            else _InlineExecutor()
        )
        try:
            self._evaluate(pool, spill)
            if isinstance(pool, ProcessPoolExecutor):
                pool.shutdown()  # the workers' memory back before the values are read
            yield spill
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if own_dir:
                shutil.rmtree(root, ignore_errors=True)

    def _evaluate(self, pool: Executor, spill: _Spill) -> None:
        registry, plan, b, n_workers = self.registry, self.plan, self.b, self.workers
        full_feature_names = plan.full_feature_names
        total, done = b * len(plan.groups), 0
        for g, group in enumerate(plan.groups):
            source = registry.sources[group.source]
            paths = self.files[group.source]
            spilled = [
                pool.submit(
                    _spill_files,
                    self.log.uri,
                    source,
                    paths[w::n_workers],
                    group.columns,
                    group.join_keys,
                    b,
                    spill,
                    g,
                    w,
                )
                for w in range(n_workers)
            ]
            _write_rows(self.entity_df, group, g, b, spill)
            for spilling in spilled:
                failed = spilling.result()
                if failed is not None:
                    raise UnreadableLogFile(*failed)
            evaluated = [
                pool.submit(
                    _evaluate_spilled,
                    registry,
                    group,
                    g,
                    bucket,
                    spill,
                    n_workers,
                    full_feature_names,
                    self.max_offsets,
                    batches_overlap(paths),
                )
                for bucket in range(b)
            ]
            for future in evaluated:
                future.result()
                done += 1
                if self.progress is not None:
                    self.progress(done, total)


def _with_service_expressions(
    registry: Registry,
    log: EventLog,
    entity_df: pd.DataFrame,
    refs: Sequence[FeatureRef],
    progress: ProgressFn | None,
    max_offsets: Mapping[str, Mapping[int, int]] | None,
    **engine: Any,
) -> pd.DataFrame:
    """A feature service with expressions across its views: the view features they read
    evaluated bucketed (each bucket is one entity's), then the expressions on the whole
    rows (`offline.historical`'s evaluator of them)."""
    reads = list(dict.fromkeys(f"{r.view.name}:{r.feature}" for ref in refs for r in ref.reads))
    service_request = service_request_columns(refs, entity_df)
    base = bucketed_historical_features(
        registry, log, entity_df, reads, None, True, progress, max_offsets, **engine
    )
    out = entity_df.copy(deep=False)
    for ref in refs:
        if ref.service_expression is None:
            out[ref.output_name] = base[f"{ref.view.name}__{ref.feature}"].to_numpy()
            continue
        inputs = {r.output_name: base[f"{r.view.name}__{r.feature}"].to_numpy() for r in ref.inputs}
        out[ref.output_name] = service_values(
            ref.service_expression, inputs, service_request, len(entity_df), columns=True
        )
    return out


def _write_rows(entity_df: pd.DataFrame, group: BucketGroup, g: int, b: int, spill: _Spill) -> None:
    """The rows the evaluator needs of each bucket: position, join keys, timestamp, and
    the request fields derived features read."""
    rows = pa.Table.from_pandas(
        pd.DataFrame(
            {
                ROW_COLUMN: np.arange(len(entity_df), dtype=np.int64),
                # as Series: nullable integers stay integers (numpy: floats, other ids)
                **{key: entity_df[key].reset_index(drop=True) for key in group.join_keys},
                TIMESTAMP_COLUMN: entity_df[TIMESTAMP_COLUMN].reset_index(drop=True),
                **{f: entity_df[f].to_numpy() for f in group.request_fields},
            }
        ),
        preserve_index=False,
    )  # converted once, then cut by bucket
    bucket = row_buckets([entity_df[key] for key in group.join_keys], b)
    bucket[bucket < 0] = 0  # a row without a key gets the values of no events anywhere
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(b + 1))
    for i in range(b):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        if hi > lo:
            path = spill.rows(g, i)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows.take(pa.array(order[lo:hi])), path, compression="lz4")


def _assemble(spill: _Spill, g: int, b: int, name: str, n_rows: int) -> Any:
    """One feature's values of every bucket, in entity_df's row order."""
    parts = [
        pq.read_table(path, columns=[ROW_COLUMN, name])
        for bucket in range(b)
        if (path := spill.values(g, bucket)).exists()
    ]
    if not parts:
        return np.empty(0, dtype=object)
    table = pa.concat_tables(parts)
    position = np.asarray(table[ROW_COLUMN].to_numpy(), dtype=np.int64)
    inverse = np.empty(n_rows, dtype=np.int64)
    inverse[position] = np.arange(position.size)
    column = table[name].take(pa.array(inverse))
    del table, position, inverse
    return _column_values(column, n_rows)


def _column_values(column: pa.ChunkedArray, n_rows: int) -> Any:
    """A feature's Arrow values as the evaluator's array (a column of nulls: None;
    lists and maps as Python lists and dicts, as online serves them)."""
    if is_nested(column.type):
        return from_arrow(column)
    return column.to_pandas().to_numpy() if column.type != pa.null() else np.full(n_rows, None)


def _slice_values(spill: _Spill, g: int, b: int, lo: int, hi: int) -> pa.Table:
    """Every bucket's values of group `g` for the rows ``lo <= position < hi``, in
    position order: only the row groups of each bucket's file that hold such rows."""
    parts = []
    for bucket in range(b):
        path = spill.values(g, bucket)
        if not path.exists():
            continue
        values = pq.ParquetFile(path)
        column = values.schema_arrow.get_field_index(ROW_COLUMN)
        groups = []
        for i in range(values.metadata.num_row_groups):
            stats = values.metadata.row_group(i).column(column).statistics
            if stats is None or not stats.has_min_max or (stats.min < hi and stats.max >= lo):
                groups.append(i)
        if groups:
            part = values.read_row_groups(groups)
            position = np.asarray(part[ROW_COLUMN].to_numpy(), dtype=np.int64)
            parts.append(part.filter(pa.array((position >= lo) & (position < hi))))
    table = pa.concat_tables(parts, promote_options="default")
    position = np.asarray(table[ROW_COLUMN].to_numpy(), dtype=np.int64)
    return table.take(pa.array(np.argsort(position, kind="stable")))


def _write_slices(
    path: str | Path,
    types: pa.Schema,
    n: int,
    rows: Callable[[int, int], pd.DataFrame],
    nested: Mapping[str, pa.DataType],
) -> None:
    """The frames `rows(lo, hi)` of every slice of `n` rows as one Parquet file (what
    `to_parquet(index=False)` writes of them all, in row groups of a slice); `types`:
    each column's Arrow type over all the rows, but for the list and map features of
    `nested`, which have their stated types (`offline.feature_values`)."""
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    try:
        for lo in range(0, max(n, 1), ROWS_PER_SLICE):
            part = to_arrow(rows(lo, min(lo + ROWS_PER_SLICE, n)), nested)
            if writer is None:
                fields = [
                    pa.field(f.name, nested[f.name]) if f.name in nested else types.field(f.name)
                    for f in part.schema
                ]
                schema = pa.schema(fields, metadata=part.schema.metadata)
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(part.cast(schema))
    finally:
        if writer is not None:
            writer.close()
