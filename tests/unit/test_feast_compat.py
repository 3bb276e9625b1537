"""`feature-service export feast` without Feast: its files, types and one-line errors.

Feast itself reads the exported repository and our API in
`tests/integration/test_feast_client.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path

from feature_service.cli.export import feast_dtype, render_features_py
from feature_service.definitions import load_definitions
from tests.conftest import ROOT
from tests.integration.running_up import error_line, run_cli

SAMPLE = ROOT / "definitions"


def test_export_writes_a_repository_feast_can_load(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    run = run_cli(
        "export", "feast", "-d", str(SAMPLE), "--api", "http://10.0.0.5:8000/", "-o", str(out)
    )
    assert run.returncode == 0, run.stderr
    assert "3 feature views, 45 features, 2 feature services" in run.stdout
    assert "feast apply" in run.stdout
    store = (out / "feature_store.yaml").read_text()
    assert "type: remote\n  path: http://10.0.0.5:8000\n" in store
    assert "registry: data/registry.db" in store and "auth:" not in store
    assert (out / "data").is_dir()
    tree = ast.parse((out / "features.py").read_text())  # valid Python
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert {"entity_customer", "entity_merchant", "source_transactions"} <= assigned
    assert {"view_customer_txn", "view_merchant_txn", "service_fraud_model_v1"} <= assigned
    keyed = run_cli("export", "feast", "-d", str(SAMPLE), "--api-key-env", "MY_KEY", "-o", str(out))
    assert keyed.returncode == 0, keyed.stderr
    assert (
        "auth:\n  type: oidc\n  token_env_var: MY_KEY\n" in (out / "feature_store.yaml").read_text()
    )


def test_types_follow_the_values_the_api_returns() -> None:
    registry = load_definitions(SAMPLE)
    view = registry.feature_views["customer_txn"]
    types = {f.name: feast_dtype(view, f) for f in view.features}
    assert types["txn_count_1h"] == types["distinct_merchants_7d"] == "Int64"
    assert types["amount_mean_1d"] == types["secs_since_last_txn"] == "Float64"
    assert types["last_amount"] == "Float64"  # last of a float column
    assert types["last_5_amounts"] == "Array(Float64)"  # a list of a float column's values
    assert types["top_categories_7d"] == "Map"  # category -> count, a JSON object
    text = render_features_py(registry, "definitions")
    assert "join_keys=['customer_id'],\n    value_type=ValueType.STRING" in text
    # a service lists its features per view, in the order of the definitions
    assert "view_merchant_txn[['txn_count_1h', 'amount_mean_1d', 'distinct_customers_1d']]" in (
        text
    )


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    bad_api = run_cli("export", "feast", "-d", str(SAMPLE), "--api", "10.0.0.5", "-o", "x")
    assert "--api '10.0.0.5': give the API's base URL" in error_line(bad_api)
    missing = run_cli("export", "feast", "-d", str(tmp_path / "nope"), "-o", str(tmp_path))
    assert "nope" in error_line(missing)
    floats = tmp_path / "defs.yaml"
    floats.write_text(
        "entities: [{name: sensor, join_key: sensor_id}]\n"
        "sources: [{name: s, topic: s, timestamp_field: ts, "
        "schema: {sensor_id: float, ts: timestamp}}]\n"
        "feature_views: [{name: v, source: s, entity: sensor, "
        "features: [{name: n, aggregation: count}]}]\n"
    )
    refused = run_cli("export", "feast", "-d", str(floats), "-o", str(tmp_path / "out"))
    assert "joins on 'sensor_id' of type float" in error_line(refused)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(
        "entities: [{name: shop, join_key: shop_id}]\n"
        "sources:\n"
        "  - {name: a, topic: a, timestamp_field: ts, schema: {shop_id: string, ts: timestamp}}\n"
        "  - {name: b, topic: b, timestamp_field: ts, schema: {shop_id: int, ts: timestamp}}\n"
        "feature_views:\n"
        "  - {name: va, source: a, entity: shop, features: [{name: n, aggregation: count}]}\n"
        "  - {name: vb, source: b, entity: shop, features: [{name: n, aggregation: count}]}\n"
    )
    refused = run_cli("export", "feast", "-d", str(mixed), "-o", str(tmp_path / "out"))
    assert "of type string in source 'a' but int in 'b'" in error_line(refused)
