"""Options several commands share, declared once so they read and behave alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DEFINITIONS_HELP = "A YAML file or folder (default: FS_DEFINITIONS)."


def definitions_option(help: str = DEFINITIONS_HELP) -> Any:
    """The ``--definitions``/``-d`` option: which definitions a command reads."""
    return typer.Option("--definitions", "-d", help=help)


DefinitionsOption = Annotated[Path | None, definitions_option()]
"""``--definitions PATH`` (None: FS_DEFINITIONS, or those of a running `up`)."""
