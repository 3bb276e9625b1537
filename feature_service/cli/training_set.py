"""`feature-service training-set`: a point-in-time training set from the offline store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feature_service.cli.console import console
from feature_service.cli.options import (
    DefinitionsOption,
    EngineOption,
    MasterOption,
    check_engine_options,
)


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
    definitions: DefinitionsOption = None,
    engine: EngineOption = "local",
    master: MasterOption = None,
    buckets: Annotated[
        int | None,
        typer.Option("--buckets", min=1, help="Buckets of entities (default: by log size)."),
    ] = None,
) -> None:
    """Write a point-in-time training set: each row's features at its event_timestamp,
    the values the online store served (or would have served) then.

    Reads the offline store (FS_OFFLINE_URI). Rows keep their order and extra columns.
    With --engine spark, Spark reads the log and the entity rows where they are and
    writes OUT as a Parquet dataset (a folder of part files, in row order).

    Example: feature-service training-set --entities rows.parquet \\
             --features customer_txn:amount_sum_1d,customer_txn:txn_count_1h -o train.parquet
    """
    import pandas as pd

    from feature_service.cli.progress import progress_bar
    from feature_service.core.config import load_settings
    from feature_service.definitions import load_definitions
    from feature_service.offline.buckets import write_training_set

    check_engine_options(engine, master)
    settings = load_settings()
    registry = load_definitions(definitions or settings.definitions)
    refs = None if features is None else [f.strip() for f in features.split(",") if f.strip()]
    if engine == "spark":
        spark_training_set(
            registry, settings.offline_uri, entities, output, refs, feature_service,
            full_feature_names, master, buckets,
        )  # fmt: skip
        return
    entity_df = read_table(entities)
    assert isinstance(entity_df, pd.DataFrame)
    output.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar("features") as advance:
        # written a slice of rows at a time: all the rows' features are never held at once
        written = write_training_set(
            registry,
            settings.offline_uri,
            entity_df,
            output,
            refs,
            feature_service,
            full_feature_names,
            progress=advance,
            buckets=buckets,
        )
    console.print(
        f"wrote {len(entity_df)} rows x {len(written)} features to {output}", highlight=False
    )


def spark_training_set(
    registry: object,
    offline_uri: str,
    entities: Path,
    output: Path,
    features: list[str] | None,
    feature_service: str | None,
    full_feature_names: bool,
    master: str | None,
    buckets: int | None,
) -> None:
    """The training set computed and written by Spark (the entity rows read on the
    driver, the log by the executors)."""
    import pandas as pd

    from feature_service.definitions import Registry
    from feature_service.offline.spark_engine import spark_historical_features, spark_session

    assert isinstance(registry, Registry)
    # The rows through the driver: pandas writes nanosecond timestamps Spark cannot read.
    rows = read_table(entities)
    assert isinstance(rows, pd.DataFrame)
    spark = spark_session(master, "feature-service training-set")
    with console.status("computing with Spark"):
        out = spark_historical_features(
            spark, registry, offline_uri, rows, features, feature_service,
            full_feature_names, buckets=buckets,
        )  # fmt: skip
        out.write.mode("overwrite").parquet(str(output.resolve()))
    written = spark.read.parquet(str(output.resolve()))
    n_features = len(written.columns) - len(rows.columns)
    console.print(
        f"wrote {written.count()} rows x {n_features} features to {output} (Parquet dataset)",
        highlight=False,
    )
