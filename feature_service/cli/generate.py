"""`feature-service generate`: propose feature definitions from a sample of events.

The command body lives here; `cli/main.py` only registers it. The pipeline is in
`feature_service.autofe`; this module reads the options, prints the summary (rich
tables of columns and of kept and dropped features, with the reason), writes and
checks the file, and applies it with `--apply`.
"""

from __future__ import annotations

import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from feature_service.cli.console import console, err_console
from feature_service.cli.options import definitions_option
from feature_service.core.config import load_settings
from feature_service.core.kafka import KafkaConnection
from feature_service.definitions.loader import parse_definitions_text
from feature_service.definitions.registry import build_registry
from feature_service.durations import format_duration, parse_duration

if TYPE_CHECKING:  # the pipeline (pandas, featuretools) is imported when the command runs
    from feature_service.autofe.plan import Generated
    from feature_service.autofe.sampling import Sample

# Messages read from a topic when --limit is not given (as autofe.sampling).
DEFAULT_TOPIC_EVENTS = 10_000


def generate_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the definitions (YAML).")
    ],
    entity: Annotated[
        list[str],
        typer.Option("--entity", "-e", help="A join key column; repeat for several entities."),
    ],
    events: Annotated[Path | None, typer.Option(help="Sample file: JSONL, CSV or Parquet.")] = None,
    topic: Annotated[
        str | None, typer.Option(help="Sample the first messages of this topic instead.")
    ] = None,
    schema_registry: Annotated[
        str | None,
        typer.Option(
            help="The topic's messages are Avro, Protobuf or JSON Schema in the Confluent "
            "wire format, their schemas in this registry (its URL)."
        ),
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(help="The event time column (default: the one datetime-like column)."),
    ] = None,
    windows: Annotated[str, typer.Option(help="Windows, comma-separated.")] = "1h,1d,7d",
    max_features: Annotated[
        int | None, typer.Option(min=1, help="Keep at most this many features in all.")
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="A label column of the sample (e.g. is_fraud): keep the features that "
            "predict it best, measured point in time (never a feature itself)."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label rows instead (JSONL, CSV or Parquet): the --entity columns, "
            "event_timestamp (or the sample's timestamp column) and label."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Events to read (default: all of a file, {DEFAULT_TOPIC_EVENTS} of a topic).",
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name (default: the file stem or the topic).")
    ] = None,
    view_name: Annotated[
        str | None, typer.Option(help="View name with one --entity (default: <entity>_<source>).")
    ] = None,
    ttl: Annotated[str, typer.Option(help="The views' ttl.")] = "30d",
    definitions: Annotated[
        Path | None,
        definitions_option("Deployed definitions to fit in with (default: FS_DEFINITIONS)."),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Also register the file with the running worker and API (see apply)."
        ),
    ] = False,
) -> None:
    """Propose feature definitions from a sample of events, using featuretools' DFS.

    Reads the sample, infers column types, lets Deep Feature Synthesis and the
    aggregations' own proposals choose recency (time since the first and last events,
    gaps), frequency, amount (with percentiles), distinct-count, per-value and
    distribution features per window for each entity (and, for a device, IP or card
    column, the distinct entities per device), drops the ones that are constant or
    near-duplicates on the sample, and writes a commented definitions file that
    validates with the deployed ones. With
    --label (or --labels), the features kept are the ones whose value just before each
    label's time best predicts it (held-out AUC), up to --max-features.

    Example: feature-service generate --events definitions/sample/transactions.jsonl
             --entity customer_id --timestamp ts --windows 1h,1d,7d -o /tmp/generated.yaml
             --label is_fraud --max-features 8
    """
    from feature_service.autofe.plan import GenerateOptions, generate
    from feature_service.cli.apply import existing_files, registry_with

    if (events is None) == (topic is None):
        raise ValueError("give the sample as exactly one of --events FILE or --topic NAME")
    if output.suffix not in (".yaml", ".yml"):
        raise ValueError(f"{output}: the output must be a .yaml or .yml file")
    settings = load_settings()
    folder = definitions or settings.definitions
    deployed = existing_files(folder, exclude=output)
    existing = build_registry(
        [(str(f), parse_definitions_text(f.read_text(), str(f))) for f in deployed]
    )
    options = GenerateOptions(
        entities=entity,
        timestamp=timestamp,
        windows=_windows(windows),
        max_features=max_features,
        source=source,
        topic=topic,
        view_name=view_name,
        ttl_s=_duration("--ttl", ttl),
        label=label,
    )
    if label is not None and labels is not None:
        raise ValueError("give the label as one of --label COLUMN or --labels FILE")
    if schema_registry is not None and topic is None:
        raise ValueError("--schema-registry reads a --topic")
    broker = settings.kafka if settings.broker_url else None
    sample = _read(events, topic, limit, broker, schema_registry)
    label_rows = None
    if labels is not None:
        from feature_service.autofe.ranking import read_labels

        label_rows = read_labels(labels, entity, timestamp or "event_timestamp")
    with err_console.status("running Deep Feature Synthesis and measuring on the sample"):
        generated = generate(sample, options, existing, label_rows)
    if not generated.kept:
        raise ValueError("no feature survived pruning on this sample; is it too small?")
    from feature_service.autofe.render import render_definitions

    text = render_definitions(generated, _command_line())
    registry_with(text, str(output), deployed)  # the file must load with what is deployed
    _summary(generated)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    views = sorted(
        generated.naming.view_names[k] for k in generated.profile.keys if generated.kept_of(k)
    )
    against = f" (checked with {folder})" if deployed else ""
    console.print(
        f"[green]wrote[/green] {output}: {len(generated.kept)} features in "
        f"{', '.join(views)}{against}",
        highlight=False,
        soft_wrap=True,
    )
    if apply:
        from feature_service.cli.apply import apply_and_report

        apply_and_report(output, folder, console)
    else:
        console.print(f"next: feature-service apply {output}", highlight=False, soft_wrap=True)


def _read(
    events: Path | None,
    topic: str | None,
    limit: int | None,
    broker: KafkaConnection | None,
    schema_registry: str | None = None,
) -> Sample:
    from feature_service.autofe.sampling import read_sample, read_topic_sample

    if events is not None:
        return read_sample(events, limit)
    assert topic is not None
    if not broker:
        raise ValueError("no broker to sample --topic from: set FS_BROKER_URL or start `up`")
    return read_topic_sample(
        broker, topic, limit or DEFAULT_TOPIC_EVENTS, schema_registry=schema_registry
    )


def _windows(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("--windows: give at least one window, e.g. 1h,1d,7d")
    from feature_service.aggregation.windows import default_hop

    windows = [_duration("--windows", p) for p in parts]
    for text, window in zip(parts, windows, strict=True):
        hop = default_hop(window)
        if window % hop:
            raise ValueError(
                f"--windows: {text} is not a multiple of its hop {format_duration(hop)}; "
                "use a window that is"
            )
    return windows


def _duration(option: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def _command_line() -> str:
    args = [Path(sys.argv[0]).name if sys.argv else "feature-service", *sys.argv[1:]]
    if args[0] in ("main.py", "__main__.py"):
        args[0] = "feature-service"
    return shlex.join(args)


def _summary(g: Generated) -> None:
    columns = Table(title=f"Columns of {g.sample.origin}", title_justify="left")
    for heading in ("column", "read as", "type", "why"):
        columns.add_column(heading)
    for col in g.profile.columns:
        columns.add_row(col.name, col.kind, col.wire_type or "", col.reason)
    console.print(columns)
    if g.sample.skipped:
        console.print(f"skipped {g.sample.skipped} records that are not JSON objects")
    for entity in g.profile.keys:
        view = g.naming.view_names[entity]
        table = Table(title=f"Features of {view}", title_justify="left")
        table.add_column("feature", no_wrap=True)
        table.add_column("decision")
        for d in g.decisions:
            if d.candidate.entity_column == entity:
                if d.kept:  # a ranked one says its score: "kept (held-out AUC 0.79)"
                    verdict = "[green]kept[/green]" + d.reason.removeprefix("kept")
                else:
                    verdict = f"[yellow]dropped[/yellow]: {d.reason}"
                table.add_row(d.candidate.name, verdict)
        console.print(table)
    reasons = Counter(
        d.reason.split(" (")[0].split(" of ")[0].split(" with ")[0]
        for d in g.decisions
        if not d.kept
    )
    dropped = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    console.print(
        f"kept {len(g.kept)} of {len(g.decisions)} candidates"
        + (f"; dropped {dropped}" if dropped else ""),
        highlight=False,
        soft_wrap=True,
    )
    if g.ranking is not None:
        r = g.ranking
        console.print(
            f"ranked by {r.metric} against {r.label!r} on the later {r.held_out} of "
            f"{r.rows} label rows" + (f" ({r.positives} positive)" if r.positives else ""),
            highlight=False,
            soft_wrap=True,
        )
    longest = max(g.options.windows)
    if g.span_s < longest:
        console.print(
            f"[yellow]note[/yellow]: the sample spans {g.span_s / 3600:.1f} h; windows longer "
            "than that cannot be told apart on it",
            highlight=False,
            soft_wrap=True,
        )
