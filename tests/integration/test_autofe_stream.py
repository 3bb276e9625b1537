"""Generated definitions, run through the real broker and worker, equal featuretools.

featuretools' mock customer data (a few thousand transactions, a flag added) is written
to a Parquet sample; `generate` proposes features for customers and products; the sample
is produced to the embedded broker and the real worker runs the generated definitions;
the values read back through the online service at hourly cutoffs (on every hop
boundary, so hop rounding cannot matter), and the training set of the same rows from
the worker's offline log, equal `calculate_feature_matrix` of the same features'
featuretools twins with `use_previous` windows. The features featuretools has no
primitive for (gap spreads, percentiles, most frequent values, the derived shares) are
held to the service's own promise instead: online equals the training set.
"""

from __future__ import annotations

import asyncio
import math
import sys
import uuid
from pathlib import Path

import featuretools as ft
import numpy as np
import pandas as pd
import pytest
import redis
from redis.asyncio import Redis
from typer.testing import CliRunner

from feature_service.aggregation.reference import matches
from feature_service.autofe.dfs import Candidate, feature_matrix
from feature_service.autofe.plan import GenerateOptions, generate
from feature_service.autofe.render import render_definitions
from feature_service.autofe.sampling import read_sample
from feature_service.cli.apply import apply_file, backfill_applied
from feature_service.cli.main import app
from feature_service.core.config import Settings
from feature_service.definitions import FeatureView, Registry, load_definitions
from feature_service.embedded import EmbeddedStack, ManagedProcess
from feature_service.offline.historical import get_historical_features
from feature_service.online.service import online_features
from feature_service.requests import resolve_features
from feature_service.stream.event_files import read_event_messages
from feature_service.stream.producer import produce_messages
from feature_service.stream.topics import ensure_topics
from tests.conditions import wait_for
from tests.integration.streaming import (
    assert_online_equals_brute_force,
    expected_events,
    make_events,
    offline_events,
    produce,
    stats,
    write_definitions,
)

pytestmark = pytest.mark.integration

WINDOWS = [3600, 6 * 3600, 86400]


def mock_customer_sample(path: Path) -> pd.DataFrame:
    """featuretools' own demo data as one table of events, plus a true/false column."""
    frame = ft.demo.load_mock_customer(
        n_customers=12,
        n_products=6,
        n_sessions=150,
        n_transactions=2500,
        random_seed=3,
        return_single_table=True,
    )
    rng = np.random.default_rng(3)
    frame["returned"] = rng.random(len(frame)) < 0.15
    frame.to_parquet(path)
    return frame


def featuretools_value(candidate: Candidate, value: object) -> object:
    """featuretools' value in our conventions (DESIGN.md: only counts are 0 when empty)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if candidate.aggregation == "count_distinct":
        return 0 if missing else int(value)  # type: ignore[call-overload]
    if candidate.aggregation == "count":
        return int(value)  # type: ignore[call-overload]
    return None if missing else float(value)  # type: ignore[arg-type]


def test_generated_features_through_the_stream_equal_featuretools(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    sample_path = tmp_path / "mock_customers.parquet"
    frame = mock_customer_sample(sample_path)
    tag = uuid.uuid4().hex[:8]
    options = GenerateOptions(
        entities=["customer_id", "product_id"],
        timestamp="transaction_time",
        windows=WINDOWS,
        source=f"mock_{tag}",
        cutoff_rows=0,  # no pruning: every candidate proposed is compared
    )
    generated = generate(read_sample(sample_path), options)
    definitions = tmp_path / "defs"
    definitions.mkdir()
    (definitions / "generated.yaml").write_text(render_definitions(generated, "test"))
    registry = load_definitions(definitions)
    source = registry.sources[f"mock_{tag}"]
    twinned = {c.aggregation for c in generated.kept if c.ft_feature is not None}
    assert twinned == {
        "time_since_last", "time_since_first", "mean_gap", "count", "sum", "mean", "min",
        "max", "std", "count_distinct",
    }  # fmt: skip
    ours = {c.aggregation for c in generated.kept if c.ft_feature is None}
    assert ours == {"std_gap", "approx_percentile", "frequent_k", None}  # None: shares
    assert any(c.where and c.where.startswith("device ==") for c in generated.kept)
    assert any(c.where == "returned == True" for c in generated.kept)

    asyncio.run(ensure_topics(stack.broker.bootstrap, registry))
    messages = list(read_event_messages(sample_path, source.key))
    asyncio.run(produce_messages(stack.broker.bootstrap, source, messages))
    client = redis.Redis.from_url(stack.redis.url)
    worker = _worker(stack, definitions, tmp_path)
    try:
        wait_for(
            lambda: stats(client, registry).get("events", 0) >= len(frame), 120, "events", worker
        )
    finally:
        worker.stop()
    assert stats(client, registry).get("late", 0) == 0

    newest = frame["transaction_time"].max()
    # every 2 h over the last day: on every hop boundary (1 min, 5 min, 1 h)
    cutoffs = pd.date_range(newest.ceil("h") - pd.Timedelta(hours=22), newest.ceil("h"), freq="2h")
    checked = 0
    parity = 0
    for entity in options.entities:
        view = registry.feature_views[generated.naming.view_names[entity]]
        kept = generated.kept_of(entity)
        assert sorted(view.feature_names) == sorted(c.name for c in kept)
        twins = [c for c in kept if c.ft_feature is not None]
        ids = [int(i) for i in sorted(frame[entity].astype(int).unique())]
        rows = pd.DataFrame([(i, t) for t in cutoffs for i in ids], columns=[entity, "time"])
        want = feature_matrix(generated.entityset, twins, rows)
        got = asyncio.run(_online(stack, registry, view, ids, list(cutoffs)))
        training = get_historical_features(
            registry,
            str(tmp_path / "offline"),
            rows.rename(columns={"time": "event_timestamp"}),
            features=[f"{view.name}:{c.name}" for c in kept],
        )
        features = {f.name: f for f in view.features}
        for r, (i, t) in enumerate(rows.itertuples(index=False)):
            online = got[(i, t)]
            for candidate in kept:
                served = _plain(training.at[r, candidate.name])
                if candidate.ft_feature is None:  # ours alone: online == training set
                    feature = features.get(candidate.name)
                    same = (
                        online[candidate.name] == served
                        if feature is None  # a derived share: the one evaluator
                        else matches(feature, online[candidate.name], served)
                    )
                    assert same, (
                        f"{view.name} {entity}={i} {candidate.name} at {t}: "
                        f"online {online[candidate.name]!r} != training set {served!r}"
                    )
                    parity += 1
                    continue
                expected = featuretools_value(candidate, want.at[r, candidate.name])
                for path, actual in (("online", online[candidate.name]), ("training set", served)):
                    if candidate.aggregation == "sum" and actual is None:
                        actual = 0.0  # featuretools sums an empty window to 0
                    assert agrees(candidate, actual, expected), (
                        f"{view.name} {entity}={i} {candidate.name} at {t}: "
                        f"{path} {actual!r} != featuretools {expected!r}"
                    )
                    checked += 1
    assert checked > 10_000
    assert parity > 2_000

    # The same topic, sampled by the CLI, gives the same columns
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--topic",
            source.topic,
            "--entity",
            "customer_id",
            "--timestamp",
            "transaction_time",
            "--windows",
            "1h",
            "--limit",
            "500",
            "-o",
            str(tmp_path / "from_topic.yaml"),
            "-d",
            str(tmp_path / "none"),
        ],
        env={"FS_BROKER_URL": stack.broker.bootstrap, "FS_STORES_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    topic_registry = load_definitions(tmp_path / "from_topic.yaml")
    topic_source = next(iter(topic_registry.sources.values()))
    assert topic_source.timestamp_field == "transaction_time"
    assert topic_source.schema["customer_id"] == "int"
    assert topic_source.schema["returned"] == "bool"


def agrees(candidate: Candidate, actual: object, expected: object) -> bool:
    """Our value equals featuretools': as the reference holds it, or, for the values of
    event times (featuretools computes them from nanosecond datetimes), to 1e-9."""
    on_times = candidate.aggregation in ("mean_gap", "time_since_first", "time_since_last")
    if on_times and isinstance(actual, float) and isinstance(expected, float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-6)
    return matches(candidate.aggregation or "", actual, expected)


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, list) and all(isinstance(v, tuple) for v in value):
        return dict(value)  # a map as Arrow gives it to pandas: (key, value) pairs
    return value.item() if isinstance(value, np.generic) else value


async def _online(
    stack: EmbeddedStack,
    registry: Registry,
    view: FeatureView,
    entities: list[int],
    times: list[pd.Timestamp],
) -> dict[tuple[int, pd.Timestamp], dict[str, object]]:
    """Every feature of `view`, derived ones included, as the online service serves them."""
    refs = resolve_features(registry, [f"{view.name}:{n}" for n in view.feature_names])
    (key,) = view.entity.join_keys
    out = {}
    client = Redis.from_url(stack.redis.url)
    try:
        for t in times:
            epoch = t.tz_localize("UTC").timestamp()
            columns = await online_features(client, refs, {key: entities}, epoch, len(entities))
            values = {c.name: c.values for c in columns}
            for n, entity in enumerate(entities):
                out[entity, t] = {name: values[name][n] for name in view.feature_names}
    finally:
        await client.aclose()
    return out


def _worker(stack: EmbeddedStack, definitions: Path, tmp_path: Path, **env: str) -> ManagedProcess:
    environment = stack.env()
    environment.update(
        FS_DEFINITIONS=str(definitions), FS_OFFLINE_URI=str(tmp_path / "offline"), **env
    )
    return ManagedProcess(
        "worker",
        [sys.executable, "-m", "feature_service.cli.main", "worker"],
        log_path=tmp_path / "worker.log",
        env=environment,
    ).start()


def test_applied_view_is_served_and_backfilled_after_the_worker_restarts(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from feature_service.api.app import create_app

    definitions, registry = write_definitions(tmp_path)
    env = {"FS_DEFINITIONS_POLL_S": "0.5", "FS_LOG_LEVEL": "info"}
    worker = _worker(stack, definitions, tmp_path, **env)
    client = redis.Redis.from_url(stack.redis.url)
    produce(stack, registry, make_events(1500, seed=21, customers=30))
    wait_for(lambda: stats(client, registry).get("events", 0) >= 1500, 120, "events", worker)
    source = next(iter(registry.sources.values()))
    settings = Settings(
        redis_url=stack.redis.url,
        broker_url=stack.broker.bootstrap,
        definitions=definitions,
        offline_uri=str(tmp_path / "offline"),
        definitions_poll_s=0.2,
    )
    new_view = f"extra_{uuid.uuid4().hex[:8]}"
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        f"feature_views:\n  - name: {new_view}\n    source: {source.name}\n"
        "    entity: customer\n    features:\n"
        "      - {name: n_1d, aggregation: count, window: 1d}\n"
        "      - {column: amount, aggregations: [sum, max], windows: [1h, 1d]}\n"
    )
    try:
        with TestClient(create_app(settings)) as api:
            assert api.get(f"/feature-views/{new_view}").status_code == 404
            applied = apply_file(extra, settings)
            assert applied.target == definitions / "extra.yaml"
            assert applied.views == applied.backfill_views == [new_view]
            wait_for(lambda: not worker.alive(), 60, "the worker to stop for new definitions")
            assert worker.returncode() == 0, worker.log_tail(40)
            wait_for(
                lambda: api.get(f"/feature-views/{new_view}").status_code == 200,
                30,
                "the API to serve the new view",
            )
            worker = _worker(stack, definitions, tmp_path, **env)  # what `up` does
            [report] = backfill_applied(applied, settings, wait_s=90) or []
            assert (report.view, report.events) == (new_view, 1500)
    finally:
        worker.stop()
    view = applied.registry.feature_views[new_view]
    expected = expected_events(view, offline_events(applied.registry, tmp_path / "offline"))
    newest = max(e.ts for events in expected.values() for e in events)
    checked = assert_online_equals_brute_force(client, view, expected, [newest, newest - 1800.5])
    assert checked == len(expected) * 2 * len(view.features)
