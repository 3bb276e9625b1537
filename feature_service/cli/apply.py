"""`feature-service apply FILE`: register a definitions file with the running services.

The file is checked together with the definitions already deployed (the folder
`FS_DEFINITIONS`), and refused if it changes the state layout of a view that has online
state (features added or removed, other windows, hops or `where` under the same name:
`online.view_layouts`, compared with the layouts recorded in Redis when it is reachable
and with the deployed files); a changed view is rolled out under a new name and
backfilled instead. Then the file is copied into that folder, the topics of new
sources are created when a broker is known, and the running worker and API notice the
change on their next poll (`FS_DEFINITIONS_POLL_S`): the worker restarts with the new
views, the API serves them.

A view of the file over a source declared elsewhere (whose events are already in the
offline log) starts empty from the events that arrive next. `apply` then backfills it
(`stream/backfill.py`), once the workers run the new definitions, which backfill
requires: it waits (`--wait`, 120 s) until every live worker holding a partition of the
view's topic (heartbeats in Redis, `observability.worker_monitor`) started after the
file was written, and together they hold every partition. If that does not happen in
time, or with `--no-backfill`, it prints the `feature-service backfill --view NAME`
command to run instead.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from feature_service.cli.console import console
from feature_service.cli.options import definitions_option
from feature_service.core.config import Settings
from feature_service.definitions import Registry
from feature_service.definitions.loader import definition_files, parse_definitions_text
from feature_service.definitions.model import DefinitionsFile
from feature_service.definitions.registry import DefinitionError, build_registry
from feature_service.online.view_layouts import (
    LayoutChange,
    LayoutChangeRefused,
    check_definitions,
)


@dataclass(frozen=True)
class Applied:
    target: Path
    registry: Registry
    views: list[str]  # the views the applied file defines
    topics_created: list[str]
    written_at: float  # the file's modification time: workers started after it run it
    backfill_views: list[str]  # views over sources declared elsewhere (in the offline log)
    layouts_unchecked: str | None = None  # why Redis was not consulted on view layouts


def existing_files(definitions: Path, exclude: Path | None = None) -> list[Path]:
    """The deployed definitions files, without `exclude` (a file about to be replaced)."""
    if not definitions.exists():
        return []
    files = definition_files(definitions)
    if exclude is not None:
        files = [f for f in files if f.resolve() != exclude.resolve()]
    return files


def registry_with(text: str, name: str, others: list[Path]) -> Registry:
    """The registry of `others` plus one more file's `text`; DefinitionError if they clash."""
    parsed: list[tuple[str, DefinitionsFile]] = [
        (str(f), parse_definitions_text(f.read_text(), str(f))) for f in others
    ]
    parsed.append((name, parse_definitions_text(text, name)))
    return build_registry(parsed)


def refuse_layout_changes(
    registry: Registry, settings: Settings, deployed: Registry | None = None
) -> str | None:
    """Raise `LayoutChangeRefused` if `registry` changes the state layout of a view with
    state: compared with the layouts recorded in the Redis of `settings` (when it is
    reachable) and with `deployed`. Returns why Redis was not consulted, or None.

    `validate` and `apply` call it; the rule itself is `view_layouts.refused_changes`.
    """
    from feature_service.online.redis_client import connect

    async def run() -> tuple[list[LayoutChange], str | None]:
        if not settings.redis_url:
            check = await check_definitions(None, registry, deployed)
            return check.changes, "no Redis configured (FS_REDIS_URL, or a running `up`)"
        redis = connect(
            settings.redis_url,
            cluster=settings.redis_cluster,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
        )
        try:
            check = await check_definitions(redis, registry, deployed)
        finally:
            await redis.aclose()
        return check.changes, check.unchecked

    changes, unchecked = asyncio.run(run())
    if changes:
        raise LayoutChangeRefused(changes)
    return unchecked


def deployed_registry(folder: Path) -> Registry | None:
    """The registry of the definitions installed in `folder`; None if none load."""
    files = existing_files(folder)
    if not files:
        return None
    try:
        return build_registry(
            [(str(f), parse_definitions_text(f.read_text(), str(f))) for f in files]
        )
    except DefinitionError:
        return None  # broken files are not served either: nothing to compare with


@dataclass(frozen=True)
class Validated:
    registry: Registry
    deployed: Registry | None  # the deployed definitions, to compare view layouts with
    beside: Path | None  # the deployed folder the file was checked with, if it was


def registry_to_validate(path: Path, definitions: Path, alone: bool = False) -> Validated:
    """What `validate PATH` checks: a folder (or `alone`) on its own; a file as `apply`
    would install it, together with the deployed `definitions` (a file of the same name
    there is replaced by it), so a file that only adds a view over a deployed source
    validates. Errors in the file name `path` itself.

    >>> registry_to_validate(Path("new_view.yaml"), Path("definitions")).beside  # doctest: +SKIP
    PosixPath('definitions')
    """
    from feature_service.definitions import load_definitions

    if alone or path.is_dir():
        return Validated(load_definitions(path), None, None)
    if not path.is_file():
        raise ValueError(f"{path}: no such file or folder")
    folder = definitions if definitions.is_dir() else definitions.parent
    try:
        deployed = existing_files(definitions)
    except DefinitionError:  # a folder without definitions files: nothing deployed
        deployed = []
    if not deployed:
        return Validated(load_definitions(path), None, None)
    others = existing_files(definitions, exclude=folder / path.name)
    registry = registry_with(path.read_text(), str(path), others)
    return Validated(registry, deployed_registry(definitions), definitions)


def apply_file(file: Path, settings: Settings, definitions: Path | None = None) -> Applied:
    """Validate `file` with the deployed definitions and install it among them;
    `LayoutChangeRefused` (nothing installed) if it changes a view with state."""
    folder = definitions or settings.definitions
    if folder.is_file():
        raise ValueError(
            f"{folder} is a single file; apply adds files to a definitions folder "
            "(set FS_DEFINITIONS or --definitions to a folder)"
        )
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    text = file.read_text()
    target = folder / file.name
    registry = registry_with(text, str(target), existing_files(folder, exclude=target))
    unchecked = refuse_layout_changes(registry, settings, deployed_registry(folder))
    parsed = parse_definitions_text(text, str(file))
    if target.resolve() != file.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")  # not *.yaml: never half-read
        partial.write_text(text)
        os.replace(partial, target)
    created: list[str] = []
    if settings.broker_url and parsed.sources:
        from feature_service.stream.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings.kafka, registry))
    own_sources = {s.name for s in parsed.sources}
    views = [v.name for v in parsed.feature_views]
    return Applied(
        target,
        registry,
        views,
        created,
        target.stat().st_mtime,
        [v.name for v in parsed.feature_views if v.source not in own_sources],
        unchecked,
    )


async def workers_run_since(
    redis: Any, topics: dict[str, int], since: float, now: float | None = None
) -> bool:
    """Whether every live worker holding a partition of `topics` (topic -> partitions)
    started after `since`, and together they hold every partition."""
    import orjson

    from feature_service.observability.pipeline import STALE_AFTER_S
    from feature_service.online.redis_layout import WORKERS_KEY

    now = time.time() if now is None else now
    held: set[str] = set()
    for raw in (await redis.hgetall(WORKERS_KEY)).values():
        try:
            beat = orjson.loads(raw)
            seen, started = float(beat["seen"]), float(beat["started"])
            partitions = [str(p) for p in beat.get("partitions", [])]
        except (ValueError, KeyError, TypeError):
            continue
        mine = [p for p in partitions if p.rsplit(":", 1)[0] in topics]
        if now - seen > STALE_AFTER_S or not mine:
            continue
        if started < since:
            return False
        held.update(mine)
    wanted = {f"{topic}:{p}" for topic, n in topics.items() for p in range(n)}
    return wanted <= held


def backfill_applied(
    applied: Applied, settings: Settings, wait_s: float, views: Sequence[str] | None = None
) -> list[Any] | None:
    """Backfill `views` (default: the applied file's views over existing sources) once
    the workers run the new definitions; None if they did not within `wait_s`."""
    from feature_service.offline.event_log import EventLog
    from feature_service.online.redis_client import connect
    from feature_service.stream.backfill import backfill_view

    names = list(applied.backfill_views if views is None else views)
    sources = [applied.registry.feature_views[v].source for v in names]
    topics = {source.topic: source.partitions for source in sources}
    assert settings.redis_url

    async def run() -> list[Any] | None:
        redis = connect(settings.redis_url or "", socket_connect_timeout=2.0, socket_timeout=30.0)
        try:
            deadline = time.monotonic() + wait_s
            while not await workers_run_since(redis, topics, applied.written_at):
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(0.5)  # polling the heartbeats the workers write
            log = EventLog(settings.offline_uri)
            return [await backfill_view(applied.registry, v, redis, log) for v in names]
        finally:
            await redis.aclose()

    return asyncio.run(run())


def apply_and_report(
    file: Path,
    definitions: Path | None,
    console: Console,
    backfill: bool = True,
    wait_s: float = 120.0,
) -> Applied:
    """`apply_file`, then backfill what needs it, saying what happens on `console`."""
    from feature_service.core.config import load_settings

    settings = load_settings()
    applied = apply_file(file, settings, definitions)
    views = ", ".join(applied.views) or "no feature views"
    say = functools.partial(console.print, highlight=False, soft_wrap=True)
    say(f"[green]applied[/green] {applied.target}: {views}")
    if applied.layouts_unchecked and settings.redis_url:
        say(
            "[yellow]note:[/yellow] view layouts checked against the deployed files only: "
            f"{applied.layouts_unchecked}"
        )
    if applied.topics_created:
        say(f"topics  {', '.join(applied.topics_created)}")
    say(
        "a running worker and API load it within "
        f"{settings.definitions_poll_s:g} s (the worker restarts to do so)"
    )
    if not applied.backfill_views:
        return applied
    reports = None
    if backfill and settings.redis_url:
        with console.status("waiting for the workers to run the new definitions, to backfill"):
            reports = backfill_applied(applied, settings, wait_s)
        if reports is None:
            say(f"[yellow]no worker ran the new definitions within {wait_s:g} s[/yellow]")
    for report in reports or []:
        say(
            f"backfilled {report.view}: {report.events} events from the offline log into "
            f"{report.entities} entities ({report.late} late left out)"
        )
    if reports is None:
        for view in applied.backfill_views:
            say(f"to fill {view} from the offline log: feature-service backfill --view {view}")
    return applied


def apply_command(
    file: Annotated[Path, typer.Argument(help="A definitions file (YAML) to register.")],
    definitions: Annotated[
        Path | None,
        definitions_option("The deployed definitions folder (default: FS_DEFINITIONS)."),
    ] = None,
    backfill: Annotated[
        bool,
        typer.Option(help="Backfill new views over existing sources from the offline log."),
    ] = True,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the workers to run the new definitions.")
    ] = 120.0,
) -> None:
    """Register a definitions file: check it with the deployed ones, then install it.

    The file is copied into the definitions folder; topics of new sources are created;
    a running worker and API pick it up within FS_DEFINITIONS_POLL_S seconds. New views
    over sources already flowing are then backfilled from the offline log. A file that
    changes the features, windows, hops or where of a view with state is refused (add
    the change as a new view, then `feature-service backfill --view NEW`).

    Example: feature-service apply /tmp/generated.yaml
    """
    apply_and_report(file, definitions, console, backfill, wait)
