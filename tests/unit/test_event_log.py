"""The offline event log: whole files, replays rewrite, nobody overwrites another range."""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_service.definitions import Source
from feature_service.offline.event_log import EventLog

SOURCE = Source("tx", "tx", "ts", {"customer_id": "string", "amount": "float"}, "customer_id", 1)
DAY = 86400.0


def frame(offsets: list[int], ts: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{o}" for o in offsets],
            "amount": np.arange(len(offsets), dtype=float),
            "event_ts": ts,
            "_partition": np.zeros(len(offsets), dtype=np.int32),
            "_offset": np.asarray(offsets, dtype=np.int64),
            "_watermark": ts,
        }
    )


def test_a_batch_spanning_midnight_is_split_by_date(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path))
    paths = log.write_batch(SOURCE, 0, 10, frame([10, 11], [20_000 * DAY - 1, 20_000 * DAY + 1]))
    assert [Path(p).parent.name for p in paths] == ["date=2024-10-03", "date=2024-10-04"]
    assert len(log.read(SOURCE)) == 2


def test_replaying_a_batch_rewrites_the_same_file(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path))
    log.write_batch(SOURCE, 0, 10, frame([10, 11], [DAY, DAY + 1]))
    log.write_batch(SOURCE, 0, 10, frame([10, 11], [DAY, DAY + 1]))
    assert len(log.files("tx")) == 1
    assert log.read(SOURCE)["_offset"].tolist() == [10, 11]


def test_a_stale_batch_written_late_never_replaces_a_committed_one(tmp_path: Path) -> None:
    """A paused worker (a zombie) flushes its old batch 10..11 after the partition's new
    owner wrote and committed 10..13 from the same first offset: nothing is lost."""
    log = EventLog(str(tmp_path))
    log.write_batch(SOURCE, 0, 10, frame([10, 11, 12, 13], [DAY, DAY, DAY, DAY]))  # new owner
    log.write_batch(SOURCE, 0, 10, frame([10, 11], [DAY, DAY]))  # the zombie, late
    assert log.read(SOURCE)["_offset"].tolist() == [10, 11, 12, 13]
    assert len(log.files("tx")) == 2


def test_overlapping_replays_are_read_once_per_offset(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path))
    log.write_batch(SOURCE, 0, 0, frame([0, 1, 2], [DAY, DAY, DAY + 1]))
    log.write_batch(SOURCE, 0, 1, frame([1, 2, 3], [DAY, DAY + 1, DAY + 2]))  # other bounds
    table = log.scan(SOURCE, ["amount", "event_ts"])
    assert table.column_names == ["amount", "event_ts"]
    assert table.num_rows == 4
    assert sorted(log.read(SOURCE)["_offset"]) == [0, 1, 2, 3]


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A full disk failed every retry of a flush and left a `.tmp-*` file each time."""
    log = EventLog(str(tmp_path))
    big = frame(list(range(20_000)), [DAY] * 20_000)
    # A file size limit makes the write fail like a full disk does (EFBIG instead of ENOSPC).
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        for _ in range(3):
            with pytest.raises(OSError):
                log.write_batch(SOURCE, 0, 0, big)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert not list(tmp_path.rglob(".tmp-*"))
    assert log.files("tx") == []
