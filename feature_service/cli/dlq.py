"""`feature-service dlq`: the dead letters of sources, why each event was refused.

One line per refused event, oldest first: `<source> p<partition> o<offset>  <reason>  <raw
value>` (the value cut at 300 characters; `--json` prints each letter whole as a JSON line).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from feature_service.cli.console import console
from feature_service.cli.options import DefinitionsOption

if TYPE_CHECKING:  # imported when run: the command line starts without the Kafka client
    from feature_service.definitions import Source
    from feature_service.stream.dead_letters import DeadLetter

VALUE_CHARS = 300


def dlq_command(
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Only this source (default: every source)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="The newest this many per source.")
    ] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new ones as they come, until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    definitions: DefinitionsOption = None,
) -> None:
    """Show dead-lettered events (read from `<topic>.dlq`): where, why, the raw value.

    Example: feature-service dlq --source transactions --limit 5 --follow
    """
    from feature_service.core.config import load_settings
    from feature_service.definitions import load_definitions
    from feature_service.stream.dead_letters import DeadLetterReader

    settings = load_settings()
    registry = load_definitions(definitions or settings.definitions)
    if source is not None and source not in registry.sources:
        raise ValueError(f"unknown source {source!r} (known: {', '.join(registry.sources)})")
    sources = [registry.sources[source]] if source else list(registry.sources.values())
    reader = DeadLetterReader(settings.kafka)

    def show(letter: DeadLetter) -> None:
        if as_json:
            print(json.dumps(letter.as_dict()), flush=True)
            return
        print(format_letter(letter), flush=True)

    if not follow:
        for src in sources:
            for letter in asyncio.run(reader.latest(src, limit)):
                show(letter)
        return

    async def follow_all() -> None:
        async def one(src: Source) -> None:
            async for letter in reader.follow(src, limit):
                show(letter)

        await asyncio.gather(*(one(src) for src in sources))

    try:
        asyncio.run(follow_all())
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)


def format_letter(letter: DeadLetter) -> str:
    """`transactions p1 o17  missing field 'customer_id'  {"amount": 3}`."""
    where = (
        f"p{letter.partition} o{letter.offset}"
        if letter.partition is not None
        else f"dlq offset {letter.dlq_offset}"
    )
    value = "(no value)" if letter.value is None else letter.value.replace("\n", "\\n")
    if len(value) > VALUE_CHARS:
        value = f"{value[:VALUE_CHARS]}... ({len(value)} characters)"
    return f"{letter.source} {where}  {letter.reason}  {value}"
