"""The offline event log: whole files, replays rewrite, uncommitted files removed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def test_files_past_the_committed_offset_are_removed(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path))
    log.write_batch(SOURCE, 0, 0, frame([0, 1], [DAY, DAY]))
    log.write_batch(SOURCE, 0, 2, frame([2, 3], [DAY, DAY]))  # written, never committed
    assert log.remove_uncommitted("tx", 0, committed_offset=2) == 1
    assert log.read(SOURCE)["_offset"].tolist() == [0, 1]
    assert not list(tmp_path.rglob(".tmp-*"))
