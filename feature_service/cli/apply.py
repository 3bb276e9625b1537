"""`feature-service apply FILE`: register a definitions file with the running services.

The file is checked together with the definitions already deployed (the folder
`FS_DEFINITIONS`), copied into that folder, the topics of new sources are created when a
broker is known, and the running worker and API notice the change on their next poll
(`FS_DEFINITIONS_POLL_S`): the worker restarts with the new views, the API serves them.
A new view over an existing source starts empty from the events that arrive next;
`feature-service backfill --view NAME` fills it from the offline log.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from feature_service.core.config import Settings
from feature_service.definitions import Registry
from feature_service.definitions.loader import definition_files, parse_definitions_text
from feature_service.definitions.model import DefinitionsFile
from feature_service.definitions.registry import build_registry


@dataclass(frozen=True)
class Applied:
    target: Path
    registry: Registry
    views: list[str]  # the views the applied file defines
    topics_created: list[str]


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


def apply_file(file: Path, settings: Settings, definitions: Path | None = None) -> Applied:
    """Validate `file` with the deployed definitions and install it among them."""
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
    parsed = parse_definitions_text(text, str(file))
    if target.resolve() != file.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")  # not *.yaml: never half-read
        partial.write_text(text)
        os.replace(partial, target)
    created: list[str] = []
    if settings.broker_url and parsed.sources:
        from feature_service.stream.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings.broker_url, registry))
    return Applied(target, registry, [v.name for v in parsed.feature_views], created)


def apply_and_report(file: Path, definitions: Path | None, console: Console) -> Applied:
    """`apply_file`, then say what happens next (reload, backfill) on `console`."""
    from feature_service.core.config import load_settings

    settings = load_settings()
    applied = apply_file(file, settings, definitions)
    views = ", ".join(applied.views) or "no feature views"
    console.print(
        f"[green]applied[/green] {applied.target}: {views}", highlight=False, soft_wrap=True
    )
    if applied.topics_created:
        console.print(
            f"topics  {', '.join(applied.topics_created)}", highlight=False, soft_wrap=True
        )
    console.print(
        "a running worker and API load it within "
        f"{settings.definitions_poll_s:g} s (the worker restarts to do so)",
        highlight=False,
        soft_wrap=True,
    )
    for view in applied.views:
        console.print(
            f"to fill {view} from the offline log: feature-service backfill --view {view}",
            highlight=False,
            soft_wrap=True,
        )
    return applied


def apply_command(
    file: Annotated[Path, typer.Argument(help="A definitions file (YAML) to register.")],
    definitions: Annotated[
        Path | None,
        typer.Option(
            "--definitions", "-d", help="The deployed definitions folder (default: FS_DEFINITIONS)."
        ),
    ] = None,
) -> None:
    """Register a definitions file: check it with the deployed ones, then install it.

    The file is copied into the definitions folder; topics of new sources are created;
    a running worker and API pick it up within FS_DEFINITIONS_POLL_S seconds.

    Example: feature-service apply /tmp/generated.yaml
    """
    apply_and_report(file, definitions, Console())
