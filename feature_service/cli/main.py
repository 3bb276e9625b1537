"""The `feature-service` command line (typer). Each command's docstring is its --help."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from aiokafka.errors import KafkaError
from rich.markup import escape

from feature_service.cli.console import console, err_console
from feature_service.cli.options import DefinitionsOption, definitions_option
from feature_service.core.config import load_settings
from feature_service.definitions import DefinitionError, load_definitions
from feature_service.embedded.processes import StackError

app = typer.Typer(
    name="feature-service",
    help="Streaming feature store: define features in YAML, serve them online, train offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

# Errors a user can act on: shown as red lines and exit code 1, never a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    DefinitionError,
    StackError,
    OSError,
    ValueError,
    KafkaError,
)


def user_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def validate(
    path: Annotated[Path | None, typer.Argument(help="A YAML file or folder.")] = None,
    definitions: Annotated[
        Path | None,
        definitions_option(
            "The deployed definitions a FILE is checked with (default: FS_DEFINITIONS, "
            "or those of a running `up`)."
        ),
    ] = None,
    alone: Annotated[
        bool, typer.Option("--alone", help="Check FILE on its own, not with the deployed ones.")
    ] = False,
) -> None:
    """Check feature definitions without running anything.

    A folder is checked on its own. A FILE is checked as `apply` would install it:
    together with the deployed definitions (a deployed file of its name is replaced by
    it), so a file that only adds a view over a deployed source validates.
    Also refuses a change to the features, windows, hops or where of a view that has online
    state (compared with the layouts recorded in Redis, when reachable).

    Example: feature-service validate definitions/ ; feature-service validate new_view.yaml
    """
    from feature_service.cli.apply import refuse_layout_changes, registry_to_validate

    settings = load_settings()
    if path is None:
        path, alone = settings.definitions, True
    validated = registry_to_validate(path, definitions or settings.definitions, alone)
    registry = validated.registry
    unchecked = refuse_layout_changes(registry, settings, validated.deployed)
    if unchecked and settings.redis_url:
        err_console.print(
            f"[yellow]note:[/yellow] view layouts not checked against the online state: "
            f"{unchecked}",
            highlight=False,
            soft_wrap=True,
        )
    n_features = sum(len(v.feature_names) for v in registry.feature_views.values())
    beside = f" (with the deployed {validated.beside})" if validated.beside else ""
    console.print(
        f"[green]ok[/green]: {len(registry.entities)} entities, {len(registry.sources)} sources, "
        f"{len(registry.feature_views)} feature views, {n_features} features{beside}",
        highlight=False,
        soft_wrap=True,
    )


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX, cores: int | None = None) -> int:
    """The CPU cores this process can use: `serve`'s default number of processes.

    The cores it may run on (`cores`, by default `len(os.sched_getaffinity(0))`, as
    `taskset` or a cpuset restricts them), capped by the cgroup v2 CPU quota in `cpu_max`
    when it sets one: "<quota> <period>" in microseconds, quota / period rounded up (a
    Kubernetes limit of 500m gives 1, of 1.5 gives 2). "max <period>" (no quota), no file
    (cgroup v1, or outside a container) or an unreadable one leave the cores. Always at
    least 1. Only this cgroup's own file is read, not its parents'.

    >>> available_cpus(Path("/nonexistent"), cores=4)
    4
    """
    if cores is None:
        affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere all cores
        cores = len(affinity(0)) if affinity else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, -(-int(quota) // int(period)))  # rounded up
    except (OSError, ValueError):
        pass
    return max(1, cores)


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    definitions: DefinitionsOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default=False,
            help="Processes serving the port (the API is stateless). Default: the CPU cores "
            "available to this process (its CPU affinity, capped by a cgroup v2 CPU quota, "
            "e.g. a Kubernetes CPU limit, rounded up). Prometheus counters are per process.",
        ),
    ] = None,
) -> None:
    """Run the lookup API under uvicorn, one process per available CPU core by default.

    Started while the definitions do not load, it serves the last definitions a worker
    accepted (kept in Redis) and says so on /health (`definitions: refused`).

    Example: FS_REDIS_URL=redis://127.0.0.1:6379/0 feature-service serve --port 8000
    """
    import uvicorn

    from feature_service.api.app import create_app
    from feature_service.observability.logs import configure_logging

    overrides = {"definitions": definitions} if definitions else {}
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)  # JSON lines with request ids; uvicorn's too
    workers = workers or available_cpus()
    if workers > 1:  # each process builds the app from the same settings
        if definitions:
            os.environ["FS_DEFINITIONS"] = str(definitions)
        uvicorn.run(
            "feature_service.api.app:create_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )
        return
    api = create_app(settings)
    uvicorn.run(api, host=host, port=port, log_config=None, access_log=False)


@app.command()
@user_errors
def worker(definitions: DefinitionsOption = None) -> None:
    """Run the stream worker: consume source topics, write online and offline stores.

    Start several with the same settings to share the partitions of a topic. When the
    definitions change (and load), the worker stops with code 0 for its supervisor to
    restart it with them (`feature-service up` does). Started while they do not load, it
    runs the last definitions a worker accepted (kept in Redis) and says so on /health.

    Example: FS_BROKER_URL=127.0.0.1:9092 FS_REDIS_URL=redis://127.0.0.1:6379/0 \\
             feature-service worker
    """
    from feature_service.definitions.watch import DefinitionsWatcher
    from feature_service.online.accepted_definitions import load_or_last_accepted
    from feature_service.stream.topics import ensure_topics
    from feature_service.stream.worker import run_worker

    settings = load_settings()
    path = definitions or settings.definitions
    watcher = DefinitionsWatcher(path)  # before loading: a change meanwhile is not missed
    registry = load_or_last_accepted(settings, path, watcher)
    asyncio.run(ensure_topics(settings.kafka, registry))
    run_worker(settings, registry, watcher)


def _replay_files(definitions: Path, replay: Path | None, registry: Any) -> list[tuple[str, Path]]:
    """(source, file) pairs to replay: the given file, else each source's bundled sample."""
    sources = list(registry.sources)
    if replay is not None:
        source = replay.stem if replay.stem in sources else sources[0]
        return [(source, replay)]
    folder = definitions if definitions.is_dir() else definitions.parent
    found = []
    for source in sources:
        for suffix in (".jsonl", ".csv", ".parquet"):
            candidate = folder / "sample" / f"{source}{suffix}"
            if candidate.is_file():
                found.append((source, candidate))
                break
    return found


@app.command()
@user_errors
def up(
    definitions: DefinitionsOption = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Events to send once ready (default: definitions/sample/<source>.*)."),
    ] = None,
    no_replay: Annotated[bool, typer.Option("--no-replay", help="Send no sample events.")] = False,
    api_port: Annotated[
        int | None, typer.Option(help="API port (default: 8000 if free, else any free port).")
    ] = None,
    stores: Annotated[Path, typer.Option(help="Where data and logs go.")] = Path("stores"),
    broker: Annotated[
        str | None,
        typer.Option(
            help="Embedded broker: `tansu` (memory-only, the default) or `kafka` (Apache "
            "Kafka 4, data on disk under stores/kafka; needs Java 17+ and Maven on first "
            "use). Default: FS_EMBEDDED_BROKER."
        ),
    ] = None,
) -> None:
    """Run the embedded stack in the foreground: broker, Redis, the worker and the API.

    Definitions are checked first; source topics are created; the sample events are
    replayed; the API address is printed when ready. The broker and Redis keep their data
    in memory, so the previous run's offline log is moved aside (stores/offline.previous).
    A worker or API that dies, or an API that stops answering /health/live, is restarted
    with a backoff (1 s doubling to 30 s); Redis or the broker that exits is restarted,
    saying what was lost. Ctrl-C or SIGTERM stops everything. One `up` per stores
    folder: a second one in the same folder refuses, naming the running one, and changes
    nothing. Without --api-port it takes 8000, or says which port it took instead.

    With `--broker kafka` the broker and Redis keep their data under the stores folder,
    so stopping and starting `up` again keeps topics, offsets, online state and the
    offline log.

    Example: feature-service up --definitions definitions/ --api-port 8000 --broker kafka
    """
    from feature_service.embedded.processes import free_port, port_open
    from feature_service.embedded.stack import EmbeddedStack
    from feature_service.embedded.supervisor import Supervisor
    from feature_service.stream.topics import ensure_topics

    settings = load_settings()
    definitions = definitions or settings.definitions
    registry = load_definitions(definitions)  # refuse bad definitions before starting
    kind = broker or settings.embedded_broker
    if kind not in ("tansu", "kafka"):
        raise ValueError(f"--broker must be tansu or kafka, not {kind!r}")
    stack = EmbeddedStack(
        stores,
        write_stack_file=True,
        definitions=definitions,
        broker=kind,  # type: ignore[arg-type]
    )
    stack.claim()  # another `up` in this folder: refuse before anything is changed
    if api_port is None:
        api_port = 8000
        if port_open("127.0.0.1", 8000):  # e.g. another stack: `curl :8000` would reach it
            api_port = free_port()
            _warn(f"port 8000 is taken: API on {api_port} (use --api-port)")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        with console.status("starting broker and Redis"):
            stack.start()
        console.print(f"broker  {stack.broker.bootstrap}", highlight=False)
        console.print(f"redis   {stack.redis.url}", highlight=False)
        cleaned = stack.start_clean()
        kept = stack.broker.keeps_topics
        if cleaned and kind == "kafka":
            _say(f"clean start: {cleaned} (a new Kafka data folder: its topics start empty)")
        elif cleaned:
            _say(f"clean start: {cleaned} (the broker and Redis keep data in memory only)")
        elif kept:
            _say(
                "kept    topics, offsets, online state and the offline log of the last run "
                f"(Kafka data in {stores / 'kafka'})"
            )
        created = asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
        if created:
            console.print(f"topics  {', '.join(created)}", highlight=False)
        stack.worker = stack.worker_process(definitions).start()
        with console.status("starting the API"):
            stack.start_api(api_port, definitions)
        if kept and replay is None and not no_replay:
            # the sample was sent on the first start and is still in the topics
            _say("replay  skipped: the topics kept the last run's events (--replay FILE sends)")
        elif not no_replay:
            _replay(stack.broker.bootstrap, registry, _replay_files(definitions, replay, registry))
        console.print(
            f"[bold green]API ready[/bold green] {stack.api_url}  (docs: {stack.api_url}/docs)"
        )
        console.print(f"UI        {stack.api_url}/", highlight=False)
        console.print("Ctrl-C to stop.")
        Supervisor(stack, registry, definitions, say=_say, warn=_warn).run()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        stack.stop()
    console.print("stopped")


@app.command()
@user_errors
def produce(
    source: Annotated[str, typer.Argument(help="The source to send to (its topic).")],
    file: Annotated[Path, typer.Argument(help="Events: JSONL, CSV or Parquet.")],
    definitions: DefinitionsOption = None,
) -> None:
    """Send the events of a file to a source's topic, in file order, keyed by its entity key.

    Every line is sent as written, malformed ones included (the worker dead-letters them
    with the reason, shown by `feature-service dlq`; their number is said); a line whose
    key cannot be read at all is sent unkeyed and named.

    Example: feature-service produce transactions definitions/sample/transactions.jsonl
    """
    from rich.progress import Progress

    from feature_service.plan import source_plan
    from feature_service.stream.event_files import encode_event_messages, read_event_messages
    from feature_service.stream.producer import produce_messages

    settings = load_settings()
    registry = load_definitions(definitions or settings.definitions)
    if source not in registry.sources:
        raise ValueError(f"unknown source {source!r} (known: {', '.join(registry.sources)})")
    kafka = settings.kafka
    src = registry.sources[source]
    messages = lines = list(
        read_event_messages(file, src.key, functools.partial(_unreadable, file))
    )
    unfit: set[int] = set()  # not writable in the source's format: sent as written
    if src.format is not None:
        messages, unfit = asyncio.run(encode_event_messages(src, lines))
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task(f"producing to {src.topic}", total=len(messages))
        sent = asyncio.run(
            produce_messages(kafka, src, messages, lambda n: progress.advance(task, n))
        )
    # The worker's own check (schema, then keys), to say how many it will dead-letter.
    plan = source_plan(registry, source)
    refused = {r.offset for r in plan.parse([(i, m.value) for i, m in enumerate(lines)]).rejected}
    refused |= unfit
    console.print(
        f"sent {sent} events to {src.topic}"
        + (
            f"; {len(refused)} of them malformed, dead-lettered by the worker "
            f"(why: feature-service dlq --source {source})"
            if refused
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@user_errors
def status(
    definitions: DefinitionsOption = None,
    watch: Annotated[
        float | None, typer.Option(help="Refresh every this many seconds until Ctrl-C.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what GET /status answers, as JSON.")
    ] = False,
) -> None:
    """Show the pipeline per feature view: newest event, last commit, events/s, events,
    skipped (no join key for the view), DLQ, late, lag, workers.

    The same numbers as the UI and `GET /status`, read from Redis and the broker.

    Example: feature-service status --watch 2
    """
    from feature_service.cli.status import read_status, show_status, status_json

    settings = load_settings()
    registry = load_definitions(definitions or settings.definitions)
    if as_json:  # the body of GET /status
        print(status_json(asyncio.run(read_status(settings, registry))))
        return
    show_status(settings, registry, watch)


def _say(message: str) -> None:
    console.print(escape(message), highlight=False, soft_wrap=True)


def _warn(message: str) -> None:
    err_console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)


def _unreadable(path: Path, line: int, why: str) -> None:
    _warn(f"warning: {path} line {line}: {why}")


def _replay(bootstrap: str, registry: Any, files: list[tuple[str, Path]]) -> None:
    from feature_service.stream.event_files import read_event_messages
    from feature_service.stream.producer import produce_messages

    for source_name, path in files:
        source = registry.sources[source_name]
        messages = list(read_event_messages(path, source.key, functools.partial(_unreadable, path)))
        sent = asyncio.run(produce_messages(bootstrap, source, messages))
        console.print(f"replay  {sent} events from {path} to {source.topic}", highlight=False)


from feature_service.cli.apply import apply_command  # noqa: E402 (registered here)
from feature_service.cli.backfill import backfill  # noqa: E402
from feature_service.cli.dlq import dlq_command  # noqa: E402
from feature_service.cli.export import export_feast  # noqa: E402
from feature_service.cli.feature_log import feature_log_command  # noqa: E402
from feature_service.cli.generate import generate_command  # noqa: E402
from feature_service.cli.offline import offline_app, offline_check, offline_quarantine  # noqa: E402
from feature_service.cli.parity import parity  # noqa: E402
from feature_service.cli.training_set import training_set  # noqa: E402

app.command(name="generate")(user_errors(generate_command))
app.command(name="apply")(user_errors(apply_command))
app.command(name="training-set")(user_errors(training_set))
app.command(name="parity")(user_errors(parity))
app.command(name="backfill")(user_errors(backfill))
app.command(name="feature-log")(user_errors(feature_log_command))
app.command(name="dlq")(user_errors(dlq_command))
export_app = typer.Typer(help="Write the definitions for another tool.", no_args_is_help=True)
export_app.command(name="feast")(user_errors(export_feast))
app.add_typer(export_app, name="export")
offline_app.command(name="check")(user_errors(offline_check))
offline_app.command(name="quarantine")(user_errors(offline_quarantine))
app.add_typer(offline_app, name="offline")


if __name__ == "__main__":
    app()
