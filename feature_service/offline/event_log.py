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
absent, and its name depends only on (partition, first offset), so a replay of the same
batch rewrites the same file. A batch is committed when the worker records its end
offset in Redis, after the files are written; files of a batch that was written but
never committed (the worker died in between) start at or after the committed offset and
are deleted by `remove_uncommitted` before the partition is consumed again, whatever
batch boundaries the replay then takes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from feature_service.definitions import Source

_FILE = re.compile(r"p(\d+)-o(\d+)\.parquet$")
META_COLUMNS = ("event_ts", "_partition", "_offset", "_watermark")
_ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.float64(),  # event times are kept as epoch seconds
}


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
        self, source: Source, partition: int, first_offset: int, frame: pd.DataFrame
    ) -> list[str]:
        """Write one batch (columns of `arrow_schema`), split by UTC date; return the paths."""
        if frame.empty:
            return []
        schema = arrow_schema(source)
        dates = pd.to_datetime(frame["event_ts"].to_numpy(), unit="s", utc=True).strftime(
            "%Y-%m-%d"
        )
        written = []
        for date in sorted(set(dates)):
            part = frame[np.asarray(dates == date)]
            table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
            directory = f"{self.source_dir(source.name)}/date={date}"
            path = f"{directory}/p{partition}-o{first_offset:012d}.parquet"
            self.fs.makedirs(directory, exist_ok=True)
            tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
            with self.fs.open(tmp, "wb") as out:
                pq.write_table(table, out, compression="zstd")
            self.fs.mv(tmp, path)
            written.append(path)
        return written

    def files(self, source: str, partition: int | None = None) -> list[str]:
        pattern = f"p{partition}-o*.parquet" if partition is not None else "p*-o*.parquet"
        # Object stores (s3fs) cache listings; another worker may have written since.
        self.fs.invalidate_cache(self.source_dir(source))
        return sorted(self.fs.glob(f"{self.source_dir(source)}/date=*/{pattern}"))

    def remove_uncommitted(self, source: str, partition: int, committed_offset: int) -> int:
        """Delete files of `partition` whose first offset is at or past the committed one."""
        removed = 0
        for path in self.files(source, partition):
            match = _FILE.search(path)
            if match and int(match.group(2)) >= committed_offset:
                self.fs.rm(path)
                removed += 1
        return removed

    def read(self, source: Source, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole log of a source as one frame (empty, with the right columns, if none)."""
        paths = self.files(source.name)
        schema = arrow_schema(source)
        if not paths:
            return schema.empty_table().to_pandas()
        tables = [
            pq.read_table(p, filesystem=self.fs, columns=columns, schema=schema) for p in paths
        ]
        return pa.concat_tables(tables).to_pandas()

    def scan(self, source: Source, columns: Sequence[str]) -> pa.Table:
        """Only `columns` of the whole log of a source, read by pyarrow's dataset scanner
        (column projection, multi-threaded); an empty table with those columns if none."""
        schema = arrow_schema(source)
        paths = self.files(source.name)
        if not paths:
            return schema.empty_table().select(list(columns))
        dataset = pads.dataset(paths, schema=schema, format="parquet", filesystem=self.fs)
        return dataset.to_table(columns=list(columns))
