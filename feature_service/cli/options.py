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


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Training-set engine: local (buckets of entities, one process per core) or "
        "spark (the same buckets inside Apache Spark; needs the `spark` extra).",
    ),
]
"""``--engine local|spark``: which engine computes training sets (`offline.engines`)."""

MasterOption = Annotated[
    str | None,
    typer.Option(
        "--master",
        help="Spark master with --engine spark: local[N], spark://HOST:7077, yarn, "
        "k8s://..., or Spark Connect sc://HOST:15002 (default local[*]).",
    ),
]
"""``--master URL``: where the Spark engine runs (`spark_engine.spark_session`)."""


def check_engine_options(engine: str, master: str | None) -> None:
    """The engine named exists, and `--master` comes with the Spark engine only."""
    from feature_service.offline.engines import check_engine

    if check_engine(engine) != "spark" and master is not None:
        raise ValueError("--master is for --engine spark")
