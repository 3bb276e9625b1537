"""Training sets in buckets of entities: the local engine's processes and Apache Spark
(local[2], a real JVM) give the same values as the evaluator over the whole log, and
through Spark the values online state served (`parity --engine spark` among them)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_service.definitions import Registry, load_definitions
from feature_service.embedded import EmbeddedStack
from feature_service.offline.buckets import bucketed_historical_features
from feature_service.offline.historical import get_historical_features

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from pit import generate

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Registry, pd.DataFrame]:
    work = tmp_path_factory.mktemp("buckets")
    generate(work, events=30_000, entities=300, days=10, rows=3_000, seed=3)
    registry = load_definitions(work / "defs.yaml")
    rows = pd.read_parquet(work / "entity_df.parquet")
    rows["customer_id"] = rows["customer_id"].astype(object)
    rows.loc[5, "customer_id"] = "never-seen"  # an entity without events
    return work, registry, rows


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from feature_service.offline.spark_engine import spark_session

    session = spark_session("local[2]", "test-training-sets")
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session
    session.stop()


FEATURES = ["windowed:count_1h", "windowed:amount_sum_1d", "windowed:amount_std_7d",
            "windowed:amount_max_30d", "latest:v0", "latest:v3"]  # fmt: skip


def _same(a: pd.DataFrame, b: pd.DataFrame, exact: bool) -> None:
    assert list(a.columns) == list(b.columns)
    assert a["row_id"].tolist() == b["row_id"].tolist()
    for name in a.columns:
        x, y = a[name].to_numpy(), b[name].to_numpy()
        if x.dtype.kind == "f" and not exact:
            assert np.allclose(x, y, rtol=1e-9, atol=0, equal_nan=True), name
        elif x.dtype.kind == "f":
            assert ((x == y) | (np.isnan(x) & np.isnan(y))).all(), name
        else:
            assert (a[name] == b[name]).all(), name


def test_buckets_in_processes_give_the_whole_log_values_in_row_order(log) -> None:  # type: ignore[no-untyped-def]
    work, registry, rows = log
    whole = get_historical_features(registry, str(work / "offline"), rows, FEATURES)
    bucketed = bucketed_historical_features(
        registry, str(work / "offline"), rows, FEATURES, workers=2, buckets=5
    )
    _same(whole, bucketed, exact=False)
    assert bucketed.loc[5, "count_1h"] == 0 and np.isnan(bucketed.loc[5, "v0"])
    assert whole["count_1h"].sum() > 0


@pytest.mark.parametrize("buckets", [1, 4])
def test_training_set_command_writes_the_engines_frame_a_slice_of_rows_at_a_time(  # type: ignore[no-untyped-def]
    log, tmp_path, monkeypatch, buckets
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from feature_service.cli.main import app
    from feature_service.offline import buckets as bucketing

    work, registry, rows = log
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    monkeypatch.setenv("FS_OFFLINE_URI", str(work / "offline"))
    monkeypatch.setattr(bucketing, "ROWS_PER_SLICE", 700)  # 3000 rows: 5 slices
    out = tmp_path / "train.parquet"
    result = CliRunner().invoke(
        app,
        ["training-set", "--buckets", str(buckets), "-e", str(tmp_path / "rows.parquet"),
         "-f", ",".join(FEATURES), "-o", str(out), "--definitions", str(work / "defs.yaml")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3000 rows x 6 features" in result.output
    frame = bucketed_historical_features(
        registry, str(work / "offline"), pd.read_parquet(tmp_path / "rows.parquet"), FEATURES,
        workers=2, buckets=buckets,
    )  # fmt: skip
    written = pq.read_table(out)
    assert pq.ParquetFile(out).metadata.num_row_groups == 5
    assert written.equals(pa.Table.from_pandas(frame, preserve_index=False))
    assert written.schema.equals(
        pa.Schema.from_pandas(frame, preserve_index=False), check_metadata=True
    )


def test_spark_gives_the_local_engines_values(log, spark) -> None:  # type: ignore[no-untyped-def]
    from feature_service.offline.spark_engine import (
        spark_historical_features,
        spark_historical_frame,
    )

    work, registry, rows = log
    local = bucketed_historical_features(
        registry, str(work / "offline"), rows, FEATURES, workers=2, buckets=4
    )
    frame = spark_historical_frame(
        spark, registry, str(work / "offline"), rows, FEATURES, buckets=4
    )  # type: ignore[arg-type]
    _same(local, frame, exact=True)  # the same buckets: the same sums, bit for bit
    as_spark = spark_historical_features(
        spark,
        registry,
        str(work / "offline"),
        rows,
        FEATURES,
        buckets=4,  # type: ignore[arg-type]
    ).toPandas()
    assert as_spark["row_id"].tolist() == rows["row_id"].tolist()
    _same(
        local.drop(columns="event_timestamp"), as_spark.drop(columns="event_timestamp"), exact=True
    )


def test_training_set_command_with_spark_writes_the_rows_in_order(
    log, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from feature_service.cli.main import app

    work, registry, rows = log
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    monkeypatch.setenv("FS_OFFLINE_URI", str(work / "offline"))
    out = tmp_path / "train.parquet"
    result = CliRunner().invoke(
        app,
        ["training-set", "--engine", "spark", "--master", "local[2]", "--buckets", "4",
         "-e", str(tmp_path / "rows.parquet"), "-f", ",".join(FEATURES), "-o", str(out),
         "--definitions", str(work / "defs.yaml")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3000 rows x 6 features" in result.output
    written = pd.read_parquet(out)
    local = bucketed_historical_features(
        registry, str(work / "offline"), rows, FEATURES, workers=2, buckets=4
    )
    assert written["row_id"].tolist() == rows["row_id"].tolist()
    _same(
        local.drop(columns="event_timestamp"), written.drop(columns="event_timestamp"), exact=True
    )


@dataclass(frozen=True)
class Served:
    """Events a real worker took in: online state in the stack's Redis, the offline log."""

    stack: EmbeddedStack
    definitions: Path
    registry: Registry
    offline: Path

    def env(self) -> dict[str, str]:
        return {
            **self.stack.env(),
            "FS_DEFINITIONS": str(self.definitions),
            "FS_OFFLINE_URI": str(self.offline),
        }


@pytest.fixture(scope="module")
def served(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Served:
    import redis

    from tests.conditions import wait_for
    from tests.integration.streaming import (
        make_events,
        offline_events,
        produce,
        start_worker,
        stats,
        write_definitions,
    )

    work = tmp_path_factory.mktemp("served")
    definitions, registry = write_definitions(work)
    offline = work / "offline"
    events = make_events(1500, seed=26, customers=60)
    worker = start_worker(stack, definitions, offline)
    client = redis.Redis.from_url(stack.redis.url)
    try:
        produce(stack, registry, events)
        wait_for(
            lambda: stats(client, registry).get("events", 0) >= len(events), 120, "events", worker
        )
        wait_for(
            lambda: len(offline_events(registry, offline)) >= len(events), 60, "offline", worker
        )
    finally:
        worker.stop()
        client.close()
    return Served(stack, definitions, registry, offline)


@pytest.mark.timeout(600)
def test_spark_training_set_equals_the_values_served_online(served, spark) -> None:  # type: ignore[no-untyped-def]
    from feature_service import FeatureStore
    from feature_service.core.config import Settings
    from feature_service.parity import same_value
    from tests.integration.streaming import offline_events

    registry, offline = served.registry, served.offline
    view = next(iter(registry.feature_views.values()))
    log = offline_events(registry, offline)
    end = float(log["event_ts"].max())
    rng = np.random.default_rng(5)
    entities = [*sorted(set(log["customer_id"]))[:40], "nobody"]
    # times near the end of the stream (within online retention), some at events' own times
    times = [end - float(rng.uniform(0, 3 * 3600)) for _ in entities[:20]] + [
        float(t) for t in log["event_ts"].sort_values().to_numpy()[-(len(entities) - 20) :]
    ]
    rows = pd.DataFrame({"customer_id": entities, "event_timestamp": times})
    features = [f"{view.name}:{f.name}" for f in view.features]
    settings = Settings(
        redis_url=served.stack.redis.url, broker_url=served.stack.broker.bootstrap,
        offline_uri=str(offline), definitions=served.definitions,
    )  # fmt: skip
    with FeatureStore(settings, registry) as store:
        train = store.get_historical_features(rows, features, engine="spark", spark=spark)
        compared = 0
        for i, (entity, t) in enumerate(zip(entities, times, strict=True)):
            online = store.get_online_features(features, [{"customer_id": entity}], as_of=t)
            answered = online.to_dict()
            for feature in view.features:
                on, off = answered[feature.name][0], train[feature.name].iloc[i]
                assert same_value(feature, on, off), (entity, t, feature.name, on, off)
                compared += 1
    assert compared == len(entities) * len(view.features)
    assert train["n_1h"].sum() > 0


@pytest.mark.timeout(600)
def test_parity_command_with_the_spark_engine_agrees_with_online_values(  # type: ignore[no-untyped-def]
    served, spark, monkeypatch
) -> None:
    import redis
    from typer.testing import CliRunner

    from feature_service.cli.main import app
    from feature_service.offline.event_log import EventLog
    from feature_service.online.redis_client import connect
    from feature_service.online.redis_layout import entity_key
    from feature_service.parity import ParityReport, check_parity

    for name, value in served.env().items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(
        app, ["parity", "--engine", "spark", "--master", "local[2]", "--sample", "150",
              "--seed", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = re.search(r"(\d+) mismatches in (\d+) values at (\d+) points", result.output)
    assert found, result.output
    mismatches, values, points = map(int, found.groups())
    view = next(iter(served.registry.feature_views.values()))
    assert mismatches == 0 and points >= 20 and values == points * len(view.features)
    assert "offline by the spark engine" in result.output

    # It can fail: the busiest customer served another's state gives mismatches, its own.
    async def check() -> ParityReport:
        client = connect(served.stack.redis.url)
        try:
            return await check_parity(
                served.registry, client, EventLog(str(served.offline)), 150, seed=4,
                engine="spark", spark=spark,
            )  # fmt: skip
        finally:
            await client.aclose()

    client = redis.Redis.from_url(served.stack.redis.url)
    busiest, other = entity_key(view.name, "c0"), entity_key(view.name, "c1")
    kept = client.dump(busiest)
    try:
        client.restore(busiest, 0, client.dump(other), replace=True)
        report = asyncio.run(check())
    finally:
        client.restore(busiest, 0, kept, replace=True)
        client.close()
    assert report.mismatches and {m.entity for m in report.mismatches} == {"c0"}


def test_spark_joins_a_composite_key_on_every_column(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A view of `join_keys: [customer_id, merchant_id]`: Spark buckets and joins on the
    pair as the local engines do (rows with a null key column get no events' values)."""
    from feature_service.offline.spark_engine import spark_historical_frame
    from tests.unit.test_composite_keys import DEFS, write_log

    (tmp_path / "defs.yaml").write_text(DEFS)
    registry = load_definitions(tmp_path / "defs.yaml")
    rng = np.random.default_rng(25)
    events = [
        {
            "customer_id": f"c{rng.integers(0, 20)}",
            "merchant_id": None if rng.random() < 0.05 else int(rng.integers(0, 5)),
            "amount": round(float(rng.lognormal(3, 1)), 2),
            "ts": 1_790_000_000.0 + i * 30.0,
        }
        for i in range(2_000)
    ]
    log = write_log(tmp_path, registry, events)
    rows = pd.DataFrame(
        {
            "row_id": np.arange(300),
            "customer_id": [f"c{i % 21}" for i in range(300)],
            "merchant_id": pd.array([None if i % 17 == 0 else i % 6 for i in range(300)], "Int64"),
            "event_timestamp": 1_790_000_000.0 + rng.uniform(0, 70_000, 300),
        }
    )
    features = ["by_pair:n", "by_pair:total", "by_pair:n_1d"]
    whole = get_historical_features(registry, log, rows, features)
    assert (whole["n"] > 0).sum() > 100 and (whole["n"][rows["merchant_id"].isna()] == 0).all()
    local = bucketed_historical_features(registry, log, rows, features, workers=2, buckets=4)
    _same(whole, local, exact=False)
    frame = spark_historical_frame(spark, registry, log.uri, rows, features, buckets=4)  # type: ignore[arg-type]
    _same(local, frame, exact=True)
