"""Bad definitions are refused with the file, the path inside it and the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from feature_service.aggregation.spec import FeatureSpec
from feature_service.definitions import DefinitionError, load_definitions

GOOD = {
    "entities": [{"name": "customer", "join_key": "customer_id"}],
    "sources": [
        {
            "name": "transactions",
            "topic": "transactions",
            "timestamp_field": "ts",
            "schema": {"customer_id": "string", "amount": "float", "category": "string"},
        }
    ],
    "feature_views": [
        {
            "name": "customer_txn",
            "source": "transactions",
            "entity": "customer",
            "ttl": "30d",
            "features": [
                {"name": "txn_count_1h", "aggregation": "count", "window": "1h"},
                {
                    "column": "amount",
                    "aggregations": ["sum", "mean", "max"],
                    "windows": ["1h", "1d", "7d"],
                },
                {"column": "category", "aggregation": "count_distinct", "window": "7d"},
                {"name": "last_amount", "column": "amount", "aggregation": "last"},
                {"name": "secs_since_last_txn", "aggregation": "time_since_last"},
                {
                    "name": "grocery_count_1d",
                    "aggregation": "count",
                    "window": "1d",
                    "where": "category == 'grocery'",
                },
            ],
        }
    ],
}


def write(tmp_path: Path, data: dict, name: str = "defs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def with_feature(feature: dict) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["feature_views"][0]["features"].append(feature)
    return data


def test_design_example_expands_shorthand_into_named_features(tmp_path: Path) -> None:
    registry = load_definitions(write(tmp_path, GOOD))
    view = registry.feature_views["customer_txn"]
    names = [f.name for f in view.features]
    assert names == [
        "txn_count_1h",
        "amount_sum_1h",
        "amount_sum_1d",
        "amount_sum_7d",
        "amount_mean_1h",
        "amount_mean_1d",
        "amount_mean_7d",
        "amount_max_1h",
        "amount_max_1d",
        "amount_max_7d",
        "category_count_distinct_7d",
        "last_amount",
        "secs_since_last_txn",
        "grocery_count_1d",
    ]
    assert view.feature("amount_sum_1h").hop_s == 60
    assert view.feature("amount_sum_1d").hop_s == 3600
    assert view.feature("last_amount").window_s is None
    assert view.ttl_s == 30 * 86400
    assert view.allowed_lateness_s == 14 * 86400
    assert view.source.key == "customer_id"
    assert view.source.dlq_topic == "transactions.dlq"


def test_definitions_may_span_files(tmp_path: Path) -> None:
    entities = {"entities": GOOD["entities"]}
    rest = {k: v for k, v in GOOD.items() if k != "entities"}
    write(tmp_path, entities, "a_entities.yaml")
    write(tmp_path, rest, "b_views.yml")
    assert "customer_txn" in load_definitions(tmp_path).feature_views


BAD_FEATURES = [
    (
        {"name": "x", "aggregation": "medain", "column": "amount"},
        "features[6].aggregation",
        "unknown aggregation 'medain'",
    ),
    (
        {"name": "x", "aggregation": "sum", "column": "amount", "window": "2x"},
        "features[6].window",
        "'2x' is not a duration",
    ),
    (
        {"column": "amount", "aggregations": ["sum"], "windows": ["1h", "soon"]},
        "features[6].windows[1]",
        "'soon' is not a duration",
    ),
    (
        {"name": "x", "aggregation": "sum", "column": "amnt", "window": "1h"},
        "features[6].column",
        "unknown column 'amnt'",
    ),
    (
        {"name": "x", "aggregation": "sum", "window": "1h"},
        "features[6].aggregation",
        "sum needs a `column`",
    ),
    (
        {"name": "x", "aggregation": "mean", "column": "category"},
        "features[6].aggregation",
        "mean needs a numeric column; 'category' is string",
    ),
    (
        {"name": "txn_count_1h", "aggregation": "count", "window": "1d"},
        "features[6]",
        "duplicate feature name 'txn_count_1h'",
    ),
    (
        {"name": "x", "aggregation": "count", "window": "90m", "hop": "1h"},
        "features[6].hop",
        "window 90m is not a multiple of its hop 1h",
    ),
    (
        {"name": "x", "aggregation": "count", "window": "90s"},
        "features[6].window",
        "window 90s is not a multiple of its hop 1m",
    ),
    (
        {"name": "x", "aggregation": "count", "window": "1h", "where": "category = 'a'"},
        "features[6].where",
        "does not parse",
    ),
    (
        {"name": "x", "aggregation": "count", "window": "1h", "where": "merchant == 'a'"},
        "features[6].where",
        "unknown column(s) merchant",
    ),
    ({"name": "x", "aggregation": "count", "windw": "1h"}, "features[6].windw", "unknown key"),
    (
        {"name": "x", "aggregations": ["sum", "max"], "column": "amount"},
        "features[6].name",
        "expands to 2 features",
    ),
    (
        {"name": "x", "aggregation": "count", "aggregations": ["sum"]},
        "features[6]",
        "exactly one of `aggregation` or `aggregations`",
    ),
    ({"name": "x", "aggregation": "count", "hop": "1m"}, "features[6].hop", "a hop needs a window"),
    (
        {"name": "x", "aggregation": "count", "window": "3h", "hop": "90m"},
        "features",
        "do not divide each other",
    ),
    # an aggregation's parameters: keys of the entry, each problem at its key
    (
        {"name": "x", "column": "amount", "aggregation": "last_k", "k": 0},
        "features[6].k",
        "k must lie in [1, 1000], not 0",
    ),
    (
        {"name": "x", "column": "amount", "aggregation": "last_k", "k": 2.5},
        "features[6].k",
        "k must be a whole number",
    ),
    (
        {"name": "x", "column": "amount", "aggregation": "last_k"},
        "features[6].aggregation",
        "last_k needs `k`",
    ),
    (
        {"name": "x", "column": "amount", "aggregation": "last_k", "k": 3, "kk": 1},
        "features[6].kk",
        "unknown key (last_k takes k)",
    ),
    (
        {"column": "amount", "aggregations": ["sum", "mean"], "k": 3},
        "features[6].k",
        "unknown key (a shorthand (`aggregations`) takes no parameters)",
    ),
    (
        {"name": "x", "column": "amount", "aggregation": "approx_percentile", "percentile": 1},
        "features[6].percentile",
        "percentile must lie in (0, 1), not 1",
    ),
    (
        {"name": "x", "column": "amount", "aggregation": "approx_percentile"},
        "features[6].aggregation",
        "approx_percentile needs one of `percentile` or `percentiles`",
    ),
    (
        {"name": "x", "aggregation": "decayed_count", "half_life": "1 day"},
        "features[6].half_life",
        "is not a duration",
    ),
]


def test_parameters_reach_the_feature_checked_with_defaults() -> None:
    """A feature carries its aggregation's parameters, checked and completed, and two
    features differing only in them get different state layouts."""
    from feature_service.aggregation.spec import aggregation_of
    from feature_service.aggregation.state import StateLayout
    from feature_service.definitions.loader import parse_definitions_text
    from feature_service.definitions.registry import build_registry

    data = yaml.safe_load(yaml.safe_dump(GOOD))
    features = data["feature_views"][0]["features"]
    features.append({"name": "p90", "column": "amount", "aggregation": "approx_percentile",
                     "percentile": 0.9})  # fmt: skip
    features.append(
        {"name": "n_approx", "column": "amount", "aggregation": "approx_count_distinct"}
    )
    registry = build_registry([("f.yaml", parse_definitions_text(yaml.safe_dump(data)))])
    view = next(iter(registry.feature_views.values()))
    assert view.feature("p90").params == (("percentile", 0.9),)
    assert view.feature("n_approx").params == (("precision", 12),)
    assert aggregation_of(view.feature("p90")).params == {"percentile": 0.9}
    one = StateLayout([FeatureSpec("l", "last_k", "x", params={"k": 2})])
    other = StateLayout([FeatureSpec("l", "last_k", "x", params={"k": 3})])
    assert one.fingerprint != other.fingerprint


@pytest.mark.parametrize(("feature", "path", "message"), BAD_FEATURES)
def test_bad_feature_is_refused_naming_file_path_and_reason(
    tmp_path: Path, feature: dict, path: str, message: str
) -> None:
    file = write(tmp_path, with_feature(feature))
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    text = str(caught.value)
    assert str(file) in text
    assert f"feature_views[0].{path}: " in text
    assert message in text


def test_unknown_source_and_entity_are_named(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["feature_views"][0]["source"] = "payments"
    data["feature_views"][0]["entity"] = "client"
    write(tmp_path, data)
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    paths = {(i.path, i.message) for i in caught.value.issues}
    assert ("feature_views[0].source", "unknown source 'payments' (known: transactions)") in paths
    assert ("feature_views[0].entity", "unknown entity 'client' (known: customer)") in paths


def test_entity_whose_join_key_is_not_in_the_source_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["entities"].append({"name": "merchant", "join_key": "merchant_id"})
    data["feature_views"][0]["entity"] = "merchant"
    data["sources"][0]["key"] = "customer_id"
    write(tmp_path, data)
    with pytest.raises(DefinitionError, match=r"feature_views\[0\]\.entity: .*'merchant_id'"):
        load_definitions(tmp_path)


def test_duplicate_view_across_files_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, {"feature_views": GOOD["feature_views"]}, "b.yaml")
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    text = str(caught.value)
    assert "b.yaml: feature_views[0].name: duplicate feature view 'customer_txn'" in text
    assert "a.yaml" in text


def test_feature_service_reference_to_unknown_feature_is_refused(tmp_path: Path) -> None:
    data = dict(GOOD, feature_services=[{"name": "m", "features": ["customer_txn:nope"]}])
    write(tmp_path, data)
    with pytest.raises(DefinitionError, match=r"feature_services\[0\]\.features\[0\]: .*'nope'"):
        load_definitions(tmp_path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("entities:\n  - name: [unclosed\n")
    with pytest.raises(DefinitionError, match=r"broken.yaml: line \d+: not valid YAML"):
        load_definitions(tmp_path)


def test_bad_ttl_and_unknown_section(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["feature_views"][0]["ttl"] = "forever"
    data["feature_vews"] = []
    write(tmp_path, data)
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    paths = {i.path for i in caught.value.issues}
    assert {"feature_views[0].ttl", "feature_vews"} <= paths


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="no definition files"):
        load_definitions(tmp_path)


def test_shipped_example_definitions_validate() -> None:
    root = Path(__file__).resolve().parents[2]
    registry = load_definitions(root / "definitions")
    assert sum(len(v.features) for v in registry.feature_views.values()) >= 25


@pytest.mark.parametrize(
    ("where", "limit"),
    [
        ("not " * 500 + "(amount > 1)", "nested more than 32 deep"),
        ("not " * 1_000 + "(amount > 1)", "longer than 4000 characters"),
        ("not " * 10_000 + "(amount > 1)", "longer than 4000 characters"),
        (" or ".join(["amount == 1"] * 20_000), "longer than 4000 characters"),
        (" or ".join(f"amount > {i}" for i in range(200)), "more than 500 terms"),
    ],
)
def test_an_oversized_where_is_refused_naming_file_path_and_limit(
    tmp_path: Path, where: str, limit: str
) -> None:
    file = write(tmp_path, with_feature({"name": "x", "aggregation": "count", "where": where}))
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    (issue,) = caught.value.issues
    assert (issue.file, issue.path) == (str(file), "feature_views[0].features[6].where")
    assert limit in issue.message


def test_yaml_booleans_in_a_where_load(tmp_path: Path) -> None:
    data = with_feature(
        {"name": "x", "aggregation": "count", "window": "1h", "where": "category != null"}
    )
    data["sources"][0]["schema"]["ok"] = "bool"
    data["feature_views"][0]["features"].append(
        {"name": "failed_1h", "aggregation": "count", "window": "1h", "where": "ok == false"}
    )
    write(tmp_path, data)
    view = load_definitions(tmp_path).feature_views["customer_txn"]
    where = view.feature("failed_1h").where
    assert where is not None and where.columns == {"ok"}
    assert where.evaluate_row({"ok": False}) and not where.evaluate_row({"ok": True})


HUGE = "99999999999999999999999d"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            lambda d: d["feature_views"][0]["features"].append(
                {"name": "x", "aggregation": "count", "window": HUGE}
            ),
            "features[6].window",
        ),
        (
            lambda d: d["feature_views"][0]["features"].append(
                {"column": "amount", "aggregations": ["sum"], "windows": ["1h", "3651d"]}
            ),
            "features[6].windows[1]",
        ),
        (
            lambda d: d["feature_views"][0]["features"].append(
                {"name": "x", "aggregation": "count", "window": "1d", "hop": "522w"}
            ),
            "features[6].hop",
        ),
        (lambda d: d["feature_views"][0].update(ttl=HUGE), "ttl"),
        (lambda d: d["feature_views"][0].update(allowed_lateness=10**20), "allowed_lateness"),
        (lambda d: d["feature_views"][0].update(hop="9" * 5000 + "s"), "hop"),
    ],
)
def test_durations_longer_than_ten_years_are_refused(
    tmp_path: Path, edit: Callable[[dict], object], path: str
) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    edit(data)
    file = write(tmp_path, data)
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    (issue,) = caught.value.issues
    assert (issue.file, issue.path) == (str(file), f"feature_views[0].{path}")
    assert "longer than the longest duration allowed, 3650d (10 years)" in issue.message
    assert len(issue.message) < 200


def test_max_future_is_bounded_too(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sources"][0]["max_future"] = HUGE
    write(tmp_path, data)
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    (issue,) = caught.value.issues
    assert issue.path == "sources[0].max_future"
    assert "3650d (10 years)" in issue.message


def test_the_longest_duration_allowed_loads(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["feature_views"][0]["ttl"] = "3650d"
    data["feature_views"][0]["features"].append(
        {"name": "x", "aggregation": "count", "window": "520w"}
    )
    write(tmp_path, data)
    view = load_definitions(tmp_path).feature_views["customer_txn"]
    assert view.ttl_s == 3650 * 86400 and view.feature("x").window_s == 520 * 604800


def test_yaml_nested_too_deeply_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("entities: " + "[" * 10_000 + "]" * 10_000)
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    (issue,) = caught.value.issues
    assert issue.file == str(tmp_path / "deep.yaml")
    assert "nested too deeply" in issue.message


def test_a_file_that_is_not_utf8_text_is_refused_naming_it(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DefinitionError) as caught:
        load_definitions(tmp_path)
    (issue,) = caught.value.issues
    assert issue.file == str(tmp_path / "binary.yaml")
    assert "not UTF-8 text" in issue.message
