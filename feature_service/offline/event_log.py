"""The offline event log: every accepted event of a source, in Parquet, exactly once.

Layout under the offline URI (any fsspec filesystem)::

    events/source=<source>/date=<YYYY-MM-DD>/p<partition>-o<first offset>.parquet

Each file holds the events of one fetched batch of one topic partition that fall on
that date (UTC, by event time), with the source's columns plus:

- `event_ts` (float64 epoch seconds), the event time the windows use;
- `_partition`, `_offset`: where the event sits in the source topic;
- `_watermark`: the partition's watermark just before the event (newest event time seen
  at lower offsets). A view decides lateness from it (`event_ts < _watermark -
  allowed_lateness`), exactly as the worker did online, so training sets leave out the
  same late events the online state left out.

Exactly once: a file is written to a temporary name and renamed, so it is whole or
absent (a write that fails removes its temporary file). Its name is the batch's range,
`p<partition>-o<first offset>-e<last offset + 1>`, and its content depends only on the
events in that range of the partition (parsing and watermarks are deterministic), so a
replay of the same range rewrites the same file with the same bytes. No writer ever
deletes a file: a worker that was paused past its session (a zombie) may still write a
stale batch after the partition's new owner wrote and committed its own, and deleting
or replacing by first offset alone is how such a zombie used to wipe committed events.
Batches whose ranges overlap (a replay after a crash or a rebalance took other batch
boundaries, or a zombie wrote late) hold the same rows for the same offsets; `scan`
reads each `(partition, offset)` once, so readers see every event exactly once. Files
of batches that were never committed hold events a replay writes again; readers that
must not run ahead of online state bound offsets themselves (`parity`). Files named
`p<partition>-o<first offset>` (no end) were written before ranges were named; they are
read as they are (they cannot overlap each other).

Unreadable files: a file the scan cannot read (truncated or overwritten on disk, by
hand or a failing device) stops every reader of its source with `UnreadableLogFile`, an
OSError (so the API answers 503 and the CLI one line) naming the file and what to do;
no reader ever skips one, which would drop its events from training sets silently.
`unreadable(source)` lists them (`feature-service offline check`), and
`quarantine(path)` moves one out of the log, to `<offline>/quarantine/` under the same
relative path, kept for inspection (`feature-service offline quarantine FILE`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from feature_service.definitions import Source

_FILE = re.compile(r"p(\d+)-o(\d+)(?:-e(\d+))?\.parquet$")
QUARANTINE_DIR = "quarantine"
META_COLUMNS = ("event_ts", "_partition", "_offset", "_watermark")
_ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.float64(),  # event times are kept as epoch seconds
}


READ_FAILURES = (pa.ArrowException, OSError, EOFError)
"""What reading a log file raises when the file is damaged or gone."""


def failure_reason(exc: BaseException) -> str:
    """The reason a file could not be read, for `UnreadableLogFile`: the first line of the
    error, at most 300 characters.

    >>> failure_reason(OSError("Couldn't deserialize thrift\\nmore"))
    "Couldn't deserialize thrift"
    """
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class UnreadableLogFile(OSError):
    """A file of the offline log that cannot be read; the message names it and the way out.

    An OSError, as any other failure to read the offline store: API routes answer 503
    with the message, CLI commands print it as their one error line.
    """

    def __init__(self, path: str, reason: str, others: int = 0) -> None:
        self.path = path
        self.reason = reason
        more = f" (and {others} more)" if others else ""
        super().__init__(
            f"unreadable file in the offline log: {path}{more}: {reason}; "
            "`feature-service offline check` lists such files and "
            "`feature-service offline quarantine FILE` moves one out of the log"
        )


def arrow_schema(source: Source) -> pa.Schema:
    """The Parquet schema of a source's event log."""
    fields = [pa.field(name, _ARROW_TYPES[kind]) for name, kind in source.schema.items()]
    names = set(source.schema)
    fields += [
        pa.field(name, kind)
        for name, kind in (
            ("event_ts", pa.float64()),
            ("_partition", pa.int32()),
            ("_offset", pa.int64()),
            ("_watermark", pa.float64()),
        )
        if name not in names
    ]
    return pa.schema(fields)


@dataclass
class EventLog:
    """Reads and writes the event log under `uri` (e.g. `stores/offline`, `s3://b/p`)."""

    uri: str

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(self.uri)

    def source_dir(self, source: str) -> str:
        return f"{self.root}/events/source={source}"

    def write_batch(
        self,
        source: Source,
        partition: int,
        first_offset: int,
        frame: pd.DataFrame | Mapping[str, Any],
    ) -> list[str]:
        """Write one batch (columns of `arrow_schema`, as a frame or a mapping of
        arrays), split by UTC date; return the paths."""
        schema = arrow_schema(source)
        if isinstance(frame, pd.DataFrame):
            table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        else:
            table = pa.Table.from_arrays(
                [pa.array(frame[f.name], type=f.type, from_pandas=True) for f in schema],
                schema=schema,
            )
        if table.num_rows == 0:
            return []
        offsets = table["_offset"].to_numpy()
        end_offset = int(offsets.max()) + 1
        # UTC days by integer division; only the distinct days are formatted as dates
        ts = table["event_ts"].to_numpy()
        days = np.floor(np.asarray(ts, dtype=np.float64) / 86400).astype(np.int64)
        written = []
        for day in np.unique(days):
            date = pd.Timestamp(int(day) * 86400, unit="s", tz="UTC").strftime("%Y-%m-%d")
            part = table.filter(pa.array(days == day))
            directory = f"{self.source_dir(source.name)}/date={date}"
            name = f"p{partition}-o{first_offset:012d}-e{end_offset:012d}.parquet"
            path = f"{directory}/{name}"
            self.fs.makedirs(directory, exist_ok=True)
            tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
            try:
                with self.fs.open(tmp, "wb") as out:
                    pq.write_table(part, out, compression="zstd")
                self.fs.mv(tmp, path)
            except BaseException:
                self._remove_quietly(tmp)  # e.g. a full disk: no temporary file per retry
                raise
            written.append(path)
        return written

    def _remove_quietly(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path)
        except OSError:
            pass

    def files(self, source: str, partition: int | None = None) -> list[str]:
        pattern = f"p{partition}-o*.parquet" if partition is not None else "p*-o*.parquet"
        # Object stores (s3fs) cache listings; another worker may have written since.
        self.fs.invalidate_cache(self.source_dir(source))
        return sorted(self.fs.glob(f"{self.source_dir(source)}/date=*/{pattern}"))

    def read(self, source: Source, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole log of a source as one frame (empty, with the right columns, if none)."""
        names = list(columns) if columns is not None else arrow_schema(source).names
        return self.scan(source, names).to_pandas()

    def scan(self, source: Source, columns: Sequence[str]) -> pa.Table:
        """Only `columns` of the whole log of a source, each `(partition, offset)` once,
        read by pyarrow's dataset scanner (column projection, multi-threaded); an empty
        table with those columns if none. UnreadableLogFile when a file cannot be read."""
        paths = self.files(source.name)
        try:
            return self._scan(source, paths, columns)
        except (pa.ArrowException, OSError) as exc:
            # Which file? pyarrow's message may not say (e.g. "Couldn't deserialize
            # thrift"): each file is checked, on this failure path only.
            broken = self.unreadable_files(paths)
            if broken:
                (path, reason), *others = broken
                raise UnreadableLogFile(path, reason, len(others)) from exc
            raise

    def _scan(self, source: Source, paths: Sequence[str], columns: Sequence[str]) -> pa.Table:
        schema = arrow_schema(source)
        if not paths:
            return schema.empty_table().select(list(columns))
        dataset = pads.dataset(paths, schema=schema, format="parquet", filesystem=self.fs)
        if not batches_overlap(paths):
            return dataset.to_table(columns=list(columns))
        wanted = list(dict.fromkeys([*columns, "_partition", "_offset"]))
        table = dataset.to_table(columns=wanted)
        offsets = np.asarray(table["_offset"].to_numpy(), dtype=np.int64)
        partitions = np.asarray(table["_partition"].to_numpy(), dtype=np.int64)
        _, first = np.unique(np.stack([partitions, offsets], axis=1), axis=0, return_index=True)
        first.sort()  # keep the log's order
        return table.take(pa.array(first)).select(list(columns))

    # ------------------------------------------------------------ unreadable files

    def sources(self) -> list[str]:
        """The sources that have a log under this URI."""
        self.fs.invalidate_cache(f"{self.root}/events")
        found = self.fs.glob(f"{self.root}/events/source=*")
        return sorted(path.rsplit("source=", 1)[1] for path in found)

    def unreadable(self, source: str) -> list[tuple[str, str]]:
        """(path, reason) of every file of a source's log that cannot be read whole."""
        return self.unreadable_files(self.files(source))

    def unreadable_files(self, paths: Sequence[str]) -> list[tuple[str, str]]:
        broken = []
        for path in paths:
            reason = self.read_error(path)
            if reason is not None:
                broken.append((path, reason))
        return broken

    def read_error(self, path: str) -> str | None:
        """Why a file cannot be read whole (its metadata and every column), or None.

        One thread: a check that ends its process right after (`offline check`) with
        Arrow's column readers still on their pool aborted it at exit now and then
        ("terminate called without an active exception", apache/arrow#34314; 6 of 80
        runs on a loaded box, 1 of 350 with one thread)."""
        try:
            with self.fs.open(path, "rb") as data:
                pq.ParquetFile(data).read(use_threads=False)
        except READ_FAILURES as exc:
            return failure_reason(exc)
        return None

    def quarantine_root(self) -> str:
        return f"{self.root}/{QUARANTINE_DIR}"

    def quarantined(self) -> list[str]:
        """Files moved out of the log by `quarantine`."""
        self.fs.invalidate_cache(self.quarantine_root())
        return sorted(self.fs.glob(f"{self.quarantine_root()}/events/source=*/date=*/*.parquet"))

    def quarantine(self, path: str) -> str:
        """Move a file of the log to `<offline>/quarantine/<its path in the log>`; return
        where. Its events are then missing from training sets, backfills and parity.

        >>> EventLog("stores/offline").quarantine(  # doctest: +SKIP
        ...     "stores/offline/events/source=tx/date=2026-11-03/p0-o0-e10.parquet")
        'stores/offline/quarantine/events/source=tx/date=2026-11-03/p0-o0-e10.parquet'
        """
        _, stripped = fsspec.core.url_to_fs(path)
        events = f"{self.root}/events/"
        if not stripped.startswith(events) or _FILE.search(stripped) is None:
            raise ValueError(f"{path} is not a file of the offline log at {self.uri}")
        if not self.fs.isfile(stripped):
            raise FileNotFoundError(f"{path}: no such file")
        target = f"{self.quarantine_root()}/{stripped[len(self.root) + 1 :]}"
        if self.fs.exists(target):
            raise FileExistsError(f"{target} already exists; move it away first")
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(stripped, target)
        return target


def batch_range(path: str) -> tuple[int, int, int | None] | None:
    """(partition, first offset, end offset or None) from a log file's name.

    >>> batch_range("d/p2-o000000000010-e000000000020.parquet")
    (2, 10, 20)
    """
    match = _FILE.search(path)
    if match is None:
        return None
    end = match.group(3)
    return int(match.group(1)), int(match.group(2)), None if end is None else int(end)


def batches_overlap(paths: Sequence[str]) -> bool:
    """Whether two batches of a partition (files named by range) share offsets.

    >>> batches_overlap(["d/p0-o000000000000-e000000000010.parquet",
    ...                  "d/p0-o000000000010-e000000000020.parquet"])
    False
    >>> batches_overlap(["d/p0-o000000000000-e000000000010.parquet",
    ...                  "d/p0-o000000000005-e000000000020.parquet"])
    True
    """
    ranges: dict[int, set[tuple[int, int]]] = {}
    for path in paths:
        match = _FILE.search(path)
        if match is None or match.group(3) is None:
            continue
        ranges.setdefault(int(match.group(1)), set()).add(
            (int(match.group(2)), int(match.group(3)))
        )
    for batches in ranges.values():
        end = -1
        for first, last in sorted(batches):
            if first < end:
                return True
            end = max(end, last)
    return False
