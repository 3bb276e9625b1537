"""`feature-service status` prints whole headers and values when piped, `--json` gives
what `GET /status` serves, and freshness names the newest event's time."""

from __future__ import annotations

import io
import json

from rich.console import Console

from feature_service.api.routes.status import StatusOut
from feature_service.cli.status import print_status, status_json
from feature_service.observability.pipeline import (
    PartitionStatus,
    PipelineStatus,
    SourceStatus,
    WorkerStatus,
)

NOW = 1796601600.0  # 2026-12-07 00:00 UTC
NEWEST = 1794095999.0  # 2026-11-07 23:59:59 UTC, the end of the bundled November sample


def replayed_sample() -> PipelineStatus:
    source = SourceStatus(
        source="transactions",
        topic="transactions",
        views=["customer_transaction_features", "merchant_txn"],
        events=1_234_567,
        dlq=3,
        late={"customer_transaction_features": 2, "merchant_txn": 0},
        skipped={"customer_transaction_features": 0, "merchant_txn": 41},
        flushes=12,
        last_flush_ms=8.5,
        last_commit_ts=NOW - 4.0,
        newest_event_ts=NEWEST,
        freshness_s=NOW - NEWEST,
        lag=0,
        events_per_s=0.0,
        workers=1,
        partitions=[PartitionStatus(0, 600_000, 600_000, 0, NEWEST)],
    )
    worker = WorkerStatus(
        id="w-1:42",
        host="w-1",
        pid=42,
        seen_s_ago=0.5,
        started=NOW - 60,
        partitions=["transactions:0"],
        sources={"transactions": {"events": 1_234_567, "rate": 0.0}},
    )
    return PipelineStatus(at=NOW, sources=[source], workers=[worker])


def printed(width: int, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system=None)
    print_status(replayed_sample(), console)
    return out.getvalue()


def test_piped_status_keeps_every_header_and_value_whole() -> None:
    text = printed(80, terminal=False)
    assert "…" not in text
    header = next(line for line in text.splitlines() if "view" in line and "topic" in line)
    for name in ("newest event", "last commit", "events/s", "events", "skipped", "DLQ",
                 "late", "lag", "workers"):  # fmt: skip
        assert name in header, header
    assert "customer_transaction_features" in text and "1234567" in text
    merchant_row = next(line for line in text.splitlines() if "merchant_txn" in line)
    assert " 41 " in merchant_row


def test_freshness_shows_the_newest_event_time_and_its_age() -> None:
    text = printed(200, terminal=False)
    assert "2026-11-07 23:59 UTC (29 d 0 h ago)" in text
    assert "4.0 s ago" in text  # the pipeline itself is alive: it committed 4 s ago


def test_status_json_is_what_the_api_serves() -> None:
    status = replayed_sample()
    document = json.loads(status_json(status))
    served = StatusOut.model_validate(document).model_dump(mode="json")
    assert document == served
    (source,) = document["sources"]
    assert source["skipped"] == {"customer_transaction_features": 0, "merchant_txn": 41}
    assert source["newest_event_ts"] == NEWEST and source["last_commit_ts"] == NOW - 4.0
    assert document["workers"][0]["pid"] == 42
