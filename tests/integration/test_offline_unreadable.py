"""A corrupt file in the offline log is named, listed by `offline check` and can be
moved out of the log by `offline quarantine` (issue 21, item 14)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_service.definitions import load_definitions
from feature_service.offline.event_log import EventLog, UnreadableLogFile
from tests.integration.running_up import ROOT, clean_env, error_line, run_cli

pytestmark = pytest.mark.integration
DAY = 86400.0
T0 = 20_400 * DAY  # 2025-11-08, midday below


def _write_log(offline: Path) -> list[str]:
    """Three batches of partition 0 of `transactions` (offsets 0..29), one file each."""
    source = load_definitions(ROOT / "definitions").sources["transactions"]
    log = EventLog(str(offline))
    paths = []
    for first in (0, 10, 20):
        offsets = np.arange(first, first + 10)
        ts = T0 + 43_200 + offsets.astype(float)
        paths += log.write_batch(
            source,
            0,
            first,
            {
                "transaction_id": [f"t{o}" for o in offsets],
                "customer_id": ["c1"] * 10,
                "merchant_id": ["m1"] * 10,
                "amount": np.ones(10),
                "category": ["food"] * 10,
                "channel": ["web"] * 10,
                "is_international": [False] * 10,
                "ts": ts,
                "event_ts": ts,
                "_partition": np.zeros(10, dtype=np.int32),
                "_offset": offsets,
                "_watermark": ts,
            },
        )
    return paths


def _truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def _garble_footer(path: str) -> None:
    """Overwrite the file's metadata, its footer intact: "Couldn't deserialize thrift"."""
    data = bytearray(Path(path).read_bytes())
    size = struct.unpack("<i", data[-8:-4])[0]
    data[-8 - size : -8] = b"\xff" * size
    Path(path).write_bytes(bytes(data))


def test_an_unreadable_file_is_named_listed_and_quarantined(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    paths = _write_log(offline)
    broken = paths[1]
    _garble_footer(broken)
    rows = tmp_path / "rows.parquet"
    pd.DataFrame(
        {"customer_id": ["c1"], "event_timestamp": [pd.Timestamp(T0 + DAY - 1, unit="s", tz="UTC")]}
    ).to_parquet(rows)
    env = clean_env(FS_OFFLINE_URI=str(offline), FS_DEFINITIONS=str(ROOT / "definitions"))
    out = tmp_path / "train.parquet"
    train = ("training-set", "-e", str(rows), "-f", "customer_txn:txn_count_1d", "-o", str(out))

    # The training set names the file and what to do, in one line.
    line = error_line(run_cli(*train, cwd=tmp_path, env=env))
    assert broken in line and "feature-service offline check" in line, line
    assert not out.exists()
    line = error_line(run_cli("feature-log", "--view", "customer_txn", cwd=tmp_path, env=env))
    assert broken in line, line  # every reader of the log: one line naming the file

    # `offline check` lists it (and only it), exit code 1.
    check = run_cli("offline", "check", "--source", "transactions", cwd=tmp_path, env=env)
    assert check.returncode == 1, check.stdout + check.stderr
    listed = [line for line in check.stdout.splitlines() if line.startswith("unreadable")]
    assert len(listed) == 1 and broken in listed[0], check.stdout

    # Quarantine moves it out of the log, keeping it; nothing else changes.
    moved = run_cli("offline", "quarantine", broken, cwd=tmp_path, env=env)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    kept = offline / "quarantine" / Path(broken).relative_to(offline)
    assert kept.is_file() and not Path(broken).exists()
    assert str(kept) in moved.stdout and "offsets 10..19" in moved.stdout, moved.stdout

    # Training sets run again, on the events that remain (20, not 30); check says so.
    trained = run_cli(*train, cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr
    assert pd.read_parquet(out)["txn_count_1d"].tolist() == [20]
    again = run_cli("offline", "check", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 quarantined" in again.stdout, again.stdout

    # A file outside the log is refused, one line.
    line = error_line(run_cli("offline", "quarantine", str(rows), cwd=tmp_path, env=env))
    assert str(rows) in line and "not a file of the offline log" in line, line


def test_scan_raises_an_oserror_naming_the_file(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    paths = _write_log(offline)
    _truncate(paths[2])
    source = load_definitions(ROOT / "definitions").sources["transactions"]
    with pytest.raises(UnreadableLogFile) as caught:
        EventLog(str(offline)).scan(source, ["customer_id", "event_ts"])
    assert isinstance(caught.value, OSError)
    assert caught.value.path == paths[2] and paths[2] in str(caught.value)
