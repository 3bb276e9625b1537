"""The one compatibility rule for editing a view: what alters its state layout is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import yaml

from feature_service.definitions import Registry, load_definitions
from feature_service.online.redis_layout import view_layout
from feature_service.online.view_layouts import (
    DEPLOYED,
    LayoutChangeRefused,
    ViewLayout,
    refused_changes,
)

BASE: dict[str, Any] = {
    "entities": [{"name": "customer", "join_key": "customer_id"}],
    "sources": [
        {
            "name": "tx",
            "topic": "tx",
            "timestamp_field": "ts",
            "schema": {"customer_id": "string", "amount": "float", "category": "string"},
        }
    ],
    "feature_views": [
        {
            "name": "cust",
            "source": "tx",
            "entity": "customer",
            "features": [
                {"name": "n_1h", "aggregation": "count", "window": "1h"},
                {"column": "amount", "aggregations": ["sum", "max"], "windows": ["1h", "1d"]},
                {"name": "fuel_1d", "aggregation": "count", "window": "1d",
                 "where": "category == 'fuel'"},
            ],
        }
    ],
}  # fmt: skip


def registry(tmp_path: Path, data: dict[str, Any], name: str = "a") -> Registry:
    path = tmp_path / name / "defs.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_definitions(path.parent)


def edited(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data["feature_views"][0])
    return data


def recorded(reg: Registry) -> dict[str, ViewLayout]:
    return {name: ViewLayout.of(view) for name, view in reg.feature_views.items()}


def messages(tmp_path: Path, change: Any) -> list[str]:
    old = registry(tmp_path, BASE, "old")
    new = registry(tmp_path, edited(change), "new")
    return [c.message for c in refused_changes(new, recorded(old))]


def test_two_features_added_are_refused_naming_them_and_the_roll_out(tmp_path: Path) -> None:
    def add_two(view: dict[str, Any]) -> None:
        view["features"] += [
            {"name": "n_6h", "aggregation": "count", "window": "6h"},
            {"name": "top", "column": "amount", "aggregation": "max"},
        ]

    [message] = messages(tmp_path, add_two)
    assert message.startswith("feature view 'cust': change refused, it alters the view's state")
    assert "(features added: n_6h, top)" in message
    assert "`feature-service backfill --view cust_v2`" in message
    assert "\n" not in message


def test_removed_features_and_changed_windows_hops_and_where_are_named(tmp_path: Path) -> None:
    def remove(view: dict[str, Any]) -> None:
        view["features"] = view["features"][:1]

    def window(view: dict[str, Any]) -> None:
        view["features"][0]["window"] = "2h"

    def hop(view: dict[str, Any]) -> None:
        view["features"][0]["hop"] = "5m"

    def where(view: dict[str, Any]) -> None:
        view["features"][2]["where"] = "category == 'travel'"

    assert "features removed: amount_sum_1h, amount_sum_1d" in messages(tmp_path, remove)[0]
    assert "n_1h: window 3600 s -> 7200 s, hop 60 s -> 300 s" in messages(tmp_path, window)[0]
    assert "n_1h: hop 60 s -> 300 s" in messages(tmp_path, hop)[0]
    assert "fuel_1d: where" in messages(tmp_path, where)[0]


def test_changes_that_keep_the_layout_are_allowed(tmp_path: Path) -> None:
    def describe(view: dict[str, Any]) -> None:
        view["description"] = "new words"
        view["ttl"] = "7d"
        view["features"][0]["description"] = "events in the last hour"

    def default_hop_spelled_out(view: dict[str, Any]) -> None:
        view["features"][0]["hop"] = "1m"

    assert messages(tmp_path, describe) == []
    assert messages(tmp_path, default_hop_spelled_out) == []


def test_a_new_view_is_allowed_and_the_record_wins_over_the_deployed_files(
    tmp_path: Path,
) -> None:
    old = registry(tmp_path, BASE, "old")
    data = edited(lambda view: view["features"].pop())
    data["feature_views"].append({**copy.deepcopy(BASE["feature_views"][0]), "name": "cust_v2"})
    changed = registry(tmp_path, data, "changed")
    # the new view has no record: fine; the changed one is refused against the record
    assert [c.view for c in refused_changes(changed, recorded(old))] == ["cust"]
    # without Redis, against the deployed definition
    [change] = refused_changes(changed, {}, deployed=old)
    assert change.against == DEPLOYED
    # a file restoring the recorded layout is allowed, whatever is deployed now
    assert refused_changes(old, recorded(old), deployed=changed) == []
    error = LayoutChangeRefused(refused_changes(changed, recorded(old)))
    assert str(error).count("\n") == 0 and "features removed: fuel_1d" in str(error)


def test_a_record_reads_back_as_the_same_layout(tmp_path: Path) -> None:
    view = registry(tmp_path, BASE).feature_views["cust"]
    layout = ViewLayout.of(view)
    assert ViewLayout.from_json(layout.to_json()) == layout
    assert layout.fingerprint == view_layout(view).fingerprint  # the entity hashes' `v`


def test_a_record_of_engine_v1_is_refused_with_the_upgrade_steps(tmp_path: Path) -> None:
    reg = registry(tmp_path, BASE)
    current = ViewLayout.of(reg.feature_views["cust"])
    # the record an engine v1 worker left: its tile fingerprint, no format
    v1 = orjson.loads(current.to_json())
    del v1["format"]
    v1["v"] = "0123456789abcdef"
    [change] = refused_changes(reg, {"cust": ViewLayout.from_json(orjson.dumps(v1))})
    assert change.old.format == 1 and change.new.format == 2
    assert "earlier version" in change.message
    assert "FLUSHDB" in change.message and "feature-service backfill --view cust" in change.message
