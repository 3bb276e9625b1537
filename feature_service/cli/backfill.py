"""`feature-service backfill`: build a view's online state from the offline log."""

from __future__ import annotations

from typing import Annotated

import typer

from feature_service.cli.console import console


def backfill(
    view: Annotated[str, typer.Option("--view", help="The feature view to backfill.")],
) -> None:
    """Fold the offline log's events from before the stream took over a (new) view
    into its online state, next to the running workers, without replaying Kafka.

    Run it after the workers run the definitions with the view. Safe to run again: what
    is done is skipped; each event counts once (stream/backfill.py explains how).

    Example: feature-service backfill --view customer_txn_v2
    """
    import asyncio

    from feature_service.cli.progress import progress_bar
    from feature_service.core.config import load_settings
    from feature_service.definitions import load_definitions
    from feature_service.offline.event_log import EventLog
    from feature_service.online.redis_client import connect
    from feature_service.stream.backfill import BackfillReport, backfill_view

    settings = load_settings()
    registry = load_definitions(settings.definitions)
    if view not in registry.feature_views:
        known = ", ".join(sorted(registry.feature_views))
        raise ValueError(f"unknown feature view {view!r} (known: {known})")
    if not settings.redis_url:
        raise ValueError("no Redis: set FS_REDIS_URL or start `feature-service up`")
    redis_url = settings.redis_url
    with progress_bar("entities") as advance:

        async def run() -> BackfillReport:
            redis = connect(redis_url, socket_connect_timeout=2.0, socket_timeout=30.0)
            try:
                return await backfill_view(
                    registry,
                    view,
                    redis,
                    EventLog(settings.offline_uri),
                    advance,
                )
            finally:
                await redis.aclose()

        report = asyncio.run(run())
    starts = ", ".join(f"p{p}<{o}" for p, o in sorted(report.starts.items()))
    console.print(
        f"backfilled {report.view}: {report.events} events ({starts}) into "
        f"{report.entities} entities; {report.late} late left out, "
        + (f"{report.skipped} without the view's key left out, " if report.skipped else "")
        + f"{report.skipped_entities} entities already done",
        highlight=False,
        soft_wrap=True,
    )
