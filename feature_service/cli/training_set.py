"""`feature-service training-set`: a point-in-time training set from the offline store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feature_service.cli.console import console


def read_table(path: Path) -> object:
    """A Parquet, CSV or JSONL file as a pandas DataFrame (by its suffix)."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pd.read_json(path, lines=True)
    raise ValueError(f"{path}: unknown format {suffix!r}; use .parquet, .csv or .jsonl")


def training_set(
    entities: Annotated[
        Path,
        typer.Option(
            "--entities",
            "-e",
            help="Rows: join key(s), event_timestamp, any labels (Parquet, CSV or JSONL).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write (Parquet).")],
    features: Annotated[
        str | None, typer.Option("--features", "-f", help="VIEW:FEATURE,... to compute.")
    ] = None,
    feature_service: Annotated[
        str | None, typer.Option("--feature-service", help="Or every feature of a service.")
    ] = None,
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name columns view__feature.")
    ] = False,
    definitions: Annotated[
        Path | None,
        typer.Option(
            "--definitions", "-d", help="A YAML file or folder (default: FS_DEFINITIONS)."
        ),
    ] = None,
) -> None:
    """Write a point-in-time training set: each row's features at its event_timestamp,
    the values the online store served (or would have served) then.

    Reads the offline store (FS_OFFLINE_URI). Rows keep their order and extra columns.

    Example: feature-service training-set --entities rows.parquet \\
             --features customer_txn:amount_sum_1d,customer_txn:txn_count_1h -o train.parquet
    """
    import pandas as pd

    from feature_service.cli.progress import progress_bar
    from feature_service.core.config import load_settings
    from feature_service.definitions import load_definitions
    from feature_service.offline.historical import get_historical_features

    settings = load_settings()
    registry = load_definitions(definitions or settings.definitions)
    refs = None if features is None else [f.strip() for f in features.split(",") if f.strip()]
    entity_df = read_table(entities)
    assert isinstance(entity_df, pd.DataFrame)
    with progress_bar("features") as advance:
        out = get_historical_features(
            registry,
            settings.offline_uri,
            entity_df,
            refs,
            feature_service,
            full_feature_names,
            progress=advance,
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(output, index=False)
    n_features = len(out.columns) - len(entity_df.columns)
    console.print(f"wrote {len(out)} rows x {n_features} features to {output}", highlight=False)
