"""`feature-service offline check|quarantine`: find and set aside unreadable log files.

A file of the offline log that cannot be read (truncated, overwritten) stops training
sets, backfills, parity and feature logs of its source with one error naming it; these
commands are the way forward. `check` reads every file whole and lists the ones that
fail; `quarantine FILE` moves one to `<offline>/quarantine/` (kept, outside the log),
after which the readers run again, without that file's events.
"""

from __future__ import annotations

from typing import Annotated

import typer

from feature_service.cli.console import console

offline_app = typer.Typer(
    help="Check the offline log for unreadable files and move them aside.",
    no_args_is_help=True,
)


def offline_check(
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Only this source (default: every source logged)."),
    ] = None,
) -> None:
    """List the files of the offline log (FS_OFFLINE_URI) that cannot be read.

    Reads every file whole; prints `unreadable  FILE: reason` per bad file and exits with
    code 1 when there is one, else prints how many files were read (exit code 0).

    Example: feature-service offline check --source transactions
    """
    from feature_service.core.config import load_settings
    from feature_service.offline.event_log import EventLog

    log = EventLog(load_settings().offline_uri)
    sources = [source] if source else log.sources()
    checked, broken = 0, []
    for name in sources:
        files = log.files(name)
        checked += len(files)
        broken += log.unreadable_files(files)
    for path, reason in broken:
        line = f"unreadable  {path}: {reason}"
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    quarantined = log.quarantined()
    summary = f"checked {checked} files of {', '.join(sources) or 'no source'} in {log.uri}"
    if quarantined:
        summary += f"; {len(quarantined)} quarantined in {log.quarantine_root()}"
    console.print(summary, highlight=False, soft_wrap=True, markup=False)
    if broken:
        console.print(
            f"{len(broken)} unreadable: move each out of the log with "
            "`feature-service offline quarantine FILE`",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1)


def offline_quarantine(
    file: Annotated[str, typer.Argument(help="A file of the offline log, as `check` lists it.")],
) -> None:
    """Move a file out of the offline log to `<offline>/quarantine/` (kept, not deleted).

    Training sets, backfills, parity and feature logs then run without its events: they
    are missing from them until sent again. Moving it back puts them back.

    Example: feature-service offline quarantine \\
             stores/offline/events/source=transactions/date=2026-11-03/p0-o000000000010-e000000000020.parquet
    """
    from feature_service.core.config import load_settings
    from feature_service.offline.event_log import EventLog, batch_range

    log = EventLog(load_settings().offline_uri)
    target = log.quarantine(file)
    batch = batch_range(target)
    events = ""
    if batch is not None:
        partition, first, end = batch
        last = f"{end - 1}" if end is not None else "?"
        events = f" (partition {partition}, offsets {first}..{last})"
    console.print(
        f"moved {file} to {target}: its events{events} are no longer in training sets, "
        "backfills or parity until sent again",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
