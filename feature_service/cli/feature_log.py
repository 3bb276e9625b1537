"""`feature-service feature-log`: every event with the view's features as of that event."""

from __future__ import annotations

from typing import Annotated

import typer

from feature_service.cli.console import console
from feature_service.cli.options import DefinitionsOption


def feature_log_command(
    view: Annotated[
        list[str] | None,
        typer.Option("--view", "-v", help="A feature view (repeat; default: every view)."),
    ] = None,
    definitions: DefinitionsOption = None,
) -> None:
    """Write the feature values as of each event, per view, into the offline store:
    <offline>/features/view=<name>/features.parquet (replaced on each run).

    Same numbers as a training set with the events as rows, and as the online API with
    as_of = the event's time. Reads only the offline store (FS_OFFLINE_URI).

    Example: feature-service feature-log --view customer_txn
    """
    from feature_service.cli.progress import progress_bar
    from feature_service.core.config import load_settings
    from feature_service.definitions import load_definitions
    from feature_service.offline.event_log import EventLog
    from feature_service.offline.feature_log import write_feature_log

    settings = load_settings()
    registry = load_definitions(definitions or settings.definitions)
    names = view or sorted(registry.feature_views)
    unknown = [n for n in names if n not in registry.feature_views]
    if unknown:
        known = ", ".join(sorted(registry.feature_views))
        raise ValueError(f"unknown feature view {unknown[0]!r} (known: {known})")
    log = EventLog(settings.offline_uri)
    for name in names:
        with progress_bar(name) as advance:
            path, rows = write_feature_log(registry, log, registry.feature_views[name], advance)
        console.print(f"{name}: {rows} events -> {path}", highlight=False)
