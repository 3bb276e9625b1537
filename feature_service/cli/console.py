"""The consoles every CLI command prints on: results to stdout, errors and progress to
stderr (so `feature-service status --json > out.json` stays clean)."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
