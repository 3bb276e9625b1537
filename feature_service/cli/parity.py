"""`feature-service parity`: compare online and offline values at sampled points."""

from __future__ import annotations

from typing import Annotated

import typer

from feature_service.cli.console import console, err_console
from feature_service.cli.options import EngineOption, MasterOption, check_engine_options


def parity(
    sample: Annotated[int, typer.Option("--sample", "-n", min=1, help="Points to check.")] = 200,
    view: Annotated[
        list[str] | None, typer.Option("--view", help="Only this view (repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed, to repeat a sample.")] = None,
    show: Annotated[int, typer.Option(help="Mismatches to print.")] = 20,
    engine: EngineOption = "local",
    master: MasterOption = None,
) -> None:
    """Check online/offline parity: read sampled (entity, t) points from Redis with
    as_of=t and from the offline log, and report every value that differs.

    The offline values are a training set of the points, computed by --engine (as
    `training-set --engine` computes one). Points outside online retention are skipped
    (counted, not failures). Exit code 1 when anything differs.

    Example: feature-service parity --sample 500 --view customer_txn --engine spark
    """
    import asyncio

    from rich.progress import Progress, SpinnerColumn, TextColumn

    from feature_service.core.config import load_settings
    from feature_service.definitions import load_definitions
    from feature_service.offline.event_log import EventLog
    from feature_service.online.redis_client import connect
    from feature_service.parity import ParityReport, check_parity

    check_engine_options(engine, master)
    settings = load_settings()
    registry = load_definitions(settings.definitions)
    for name in view or []:
        if name not in registry.feature_views:
            known = ", ".join(sorted(registry.feature_views))
            raise ValueError(f"unknown feature view {name!r} (known: {known})")
    if not settings.redis_url:
        raise ValueError("no Redis: set FS_REDIS_URL or start `feature-service up`")
    redis_url = settings.redis_url

    async def run(spark: object) -> ParityReport:
        redis = connect(redis_url, socket_connect_timeout=2.0, socket_timeout=10.0)
        try:
            return await check_parity(
                registry, redis, EventLog(settings.offline_uri), sample, view or None, seed,
                engine=engine, spark=spark,
            )  # fmt: skip
        finally:
            await redis.aclose()

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console,
                  transient=True) as progress:  # fmt: skip
        spark = None
        if engine == "spark":
            from feature_service.offline.spark_engine import spark_session

            starting = progress.add_task("starting Spark", total=None)
            spark = spark_session(master, "feature-service parity")
            progress.remove_task(starting)
        progress.add_task(f"checking {sample} points ({engine} engine)", total=None)
        report = asyncio.run(run(spark))
    for mismatch in report.mismatches[:show]:
        console.print(f"[red]mismatch[/red] {mismatch}", highlight=False, soft_wrap=True)
    if len(report.mismatches) > show:
        console.print(f"... and {len(report.mismatches) - show} more", highlight=False)
    still = "" if report.still else " (the stream kept moving; mismatches may be in flight)"
    colour = "green" if report.ok else "red"
    console.print(
        f"[{colour}]{len(report.mismatches)} mismatches[/{colour}] in {report.checked_values} "
        f"values at {report.checked_points} points; {report.skipped} points outside online "
        f"retention skipped; offline by the {engine} engine{still}",
        highlight=False,
        soft_wrap=True,
    )
    if not report.ok:
        raise typer.Exit(1)
