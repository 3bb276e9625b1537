"""Feature references (`view:feature`) that do not resolve say which part is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_service.definitions import Registry, load_definitions
from feature_service.requests import RequestError, resolve_features

DEFS = """
entities:
  - {name: customer, join_key: customer_id}
sources:
  - name: tx
    topic: tx
    timestamp_field: ts
    schema: {customer_id: string, amount: float}
feature_views:
  - name: customer_txn
    source: tx
    entity: customer
    features:
      - {name: n_1h, aggregation: count, window: 1h}
  - name: customer_spend
    source: tx
    entity: customer
    features:
      - {name: total, column: amount, aggregation: sum}
"""


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    path = tmp_path / "defs.yaml"
    path.write_text(DEFS)
    return load_definitions(path)


def test_an_unknown_view_is_named_with_the_known_ones(registry: Registry) -> None:
    with pytest.raises(RequestError) as caught:
        resolve_features(registry, ["custmer_txn:n_1h"])
    assert str(caught.value) == (
        "unknown feature 'custmer_txn:n_1h': unknown view 'custmer_txn' "
        "(known: customer_spend, customer_txn)"
    )
    assert caught.value.status == 422


def test_a_reference_without_a_view_asks_for_view_colon_feature(registry: Registry) -> None:
    with pytest.raises(RequestError, match=r"unknown feature 'n_1h': use view:feature"):
        resolve_features(registry, ["n_1h"])


def test_an_unknown_feature_of_a_known_view_names_the_view(registry: Registry) -> None:
    with pytest.raises(RequestError, match="view 'customer_txn' has no 'n_2h'"):
        resolve_features(registry, ["customer_txn:n_2h"])
