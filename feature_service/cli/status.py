"""`feature-service status`: the pipeline's numbers as a rich table (the UI's, in a terminal).

Reads the same `observability.pipeline.PipelineStatus` the API's `/status` serves,
straight from Redis and the broker (like the SDK, it does not need the API);
`--json` prints exactly the body `/status` answers (`status_json`).

Freshness is shown as the newest event's time and its age ("2026-11-07 23:59 UTC
(29 d 0 h ago)"), beside how long ago the worker last committed: a replayed sample of
old events is days old while the pipeline is live. Piped or redirected (not a
terminal), the table is printed as wide as it needs, so no header or number is cut.

>>> from rich.console import Console
>>> print_status(status, Console())  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

from redis.exceptions import RedisError
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from feature_service.core.config import Settings
from feature_service.definitions import Registry
from feature_service.observability.pipeline import (
    BrokerOffsets,
    PipelineStatus,
    read_pipeline_status,
)
from feature_service.online.redis_client import connect


def format_age(seconds: float | None) -> str:
    """`12.5 s`, `4 min 2 s`, `3 h 20 min`, `18 d 6 h`; `-` when unknown.

    >>> format_age(3 * 86400 + 7200)
    '3 d 2 h'
    """
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def format_newest_event(ts: float | None, now: float) -> str:
    """The newest event's time (UTC, to the minute) and its age; `-` when none.

    >>> format_newest_event(1794095999.0, 1796601600.0)
    '2026-11-07 23:59 UTC (29 d 0 h ago)'
    """
    if ts is None:
        return "-"
    when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{when} ({format_age(now - ts)} ago)"


def status_table(status: PipelineStatus) -> Group:
    """One row per feature view: newest event, last commit, events/s, events, skipped
    (an event without the view's join key, or one of its join keys for a composite key),
    DLQ, late, lag, workers."""
    table = Table(
        title="feature-service pipeline",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 1),
        collapse_padding=True,
    )
    table.add_column("view", no_wrap=True)
    table.add_column("topic", no_wrap=True)
    names = ("newest event", "last commit", "events/s", "events", "skipped", "DLQ", "late")
    for name in (*names, "lag", "workers"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in status.sources:
        committed = None if s.last_commit_ts is None else status.at - s.last_commit_ts
        for view in s.views:
            stale = s.freshness_s is not None and s.freshness_s > 3600
            skipped = s.skipped.get(view, 0)
            table.add_row(
                Text(view, style="bold"),
                s.topic if s.format == "json" else f"{s.topic} ({s.format})",
                Text(
                    format_newest_event(s.newest_event_ts, status.at),
                    style="yellow" if stale else "",
                ),
                "-" if committed is None else f"{format_age(committed)} ago",
                "-" if s.events_per_s is None else f"{s.events_per_s:.1f}",
                str(s.events),
                Text(str(skipped), style="yellow" if skipped else ""),
                Text(str(s.dlq), style="yellow" if s.dlq else ""),
                str(s.late.get(view, 0)),
                Text("?" if s.lag is None else str(s.lag), style="yellow" if s.lag else ""),
                Text(str(s.workers), style="" if s.workers else "bold red"),
            )
    at = datetime.fromtimestamp(status.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    notes = [f"{len(status.workers)} live worker(s) at {at}"]
    for w in status.workers:
        notes.append(f"  {w.id}: {', '.join(w.partitions) or 'no partitions'}")
    if status.broker_error:
        notes.append(f"lag unknown: {status.broker_error}")
    return Group(table, Text("\n".join(notes), style="dim"))


def print_status(status: PipelineStatus, console: Console) -> None:
    """Print the table on `console`; not a terminal (piped, redirected): as wide as the
    table needs, so headers and numbers are never cut to fit 80 columns."""
    table = status_table(status)
    if console.is_terminal:
        console.print(table)
        return
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    # print() caps `width` at the console's own (80 when not a terminal): a wider one
    wide = Console(file=console.file, width=max(console.width, needed), force_terminal=False)
    wide.print(table)


def status_json(status: PipelineStatus) -> str:
    """The body `GET /status` answers, as indented JSON."""
    return json.dumps(status.as_dict(), indent=2)


async def read_status(settings: Settings, registry: Registry) -> PipelineStatus:
    """The pipeline's numbers now, from the Redis and broker of `settings`."""
    if not settings.redis_url:
        raise ValueError("no Redis: set FS_REDIS_URL or start `feature-service up`")
    redis = connect(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        broker = BrokerOffsets(settings.kafka if settings.broker_url else None)
        return await read_pipeline_status(redis, registry, broker)
    except (RedisError, OSError) as exc:
        raise ValueError(f"cannot read Redis at {settings.redis_url}: {exc}") from None
    finally:
        await redis.aclose()


def show_status(settings: Settings, registry: Registry, watch: float | None) -> PipelineStatus:
    """Print the table once, or refresh it every `watch` seconds until Ctrl-C."""
    from feature_service.cli.console import console

    status = asyncio.run(read_status(settings, registry))
    if not watch:
        print_status(status, console)
        return status
    with Live(status_table(status), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(watch)  # the refresh period the user asked for
                status = asyncio.run(read_status(settings, registry))
                live.update(status_table(status), refresh=True)
        except KeyboardInterrupt:
            pass
    return status
