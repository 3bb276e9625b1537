"""The lookup fast path decodes only bodies the route's pydantic model takes.

`api.lookup_path` answers a lookup itself only when msgspec's `LookupBody` decodes it;
anything it refuses goes to the FastAPI route. So a body msgspec takes and pydantic
refuses would be answered where the API promises a 422: that must never happen, and the
values both give must be the same. The other way is allowed where listed
(`ROUTE_ONLY`): the route answers it, a little slower.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from pydantic import ValidationError

from feature_service.api.lookup_path import LookupBody, _decoder, _refs_as_the_route_takes
from feature_service.api.routes.online import OnlineFeaturesRequest

BODIES = [
    {"features": ["v:a"], "entities": {"customer_id": ["c1", 2]}},
    {"features": ["v:a"], "entities": {"customer_id": ["c1"]}, "as_of": 1_793_491_200},
    {"features": ["v:a"], "entities": {"customer_id": ["c1"]}, "as_of": 1.5e9},
    {"features": ["v:a"], "entities": {"customer_id": ["c1"]}, "as_of": "2026-11-03"},
    {"features": ["v:a"], "entities": {"customer_id": ["c1"]}, "as_of": None},
    {"features": [], "feature_service": "s", "entities": {"k": [1]}},
    {"feature_service": "s", "entities": {"k": [1]}, "full_feature_names": True},
    {"features": ["v:a"], "entities": {"k": [1]}, "include_feature_view_version_metadata": True},
    # values of request fields beside the ids (issue 25), taken by both; as a join key
    # such a value is a 422 from the lookup (`requests.entity_rows`), on both paths
    {"features": ["v:a"], "entities": {"customer_id": [True]}},
    {"features": ["v:a"], "entities": {"customer_id": [1.5]}},
    {"features": ["v:a"], "entities": {"customer_id": [None]}},
    {"features": ["v:a"], "entities": {"customer_id": ["c1", 2], "amount": [12.5, None]}},
    {"features": ["v:a"], "entities": {"k": ["c1"], "ok": [True], "note": ["x"], "n": [1e300]}},
    # refused by the route: the fast path must refuse them too
    {"features": ["v:a"], "entities": {"customer_id": "c1"}},
    {"features": ["v:a"], "entities": {}},
    {"features": ["v:a"]},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "as_of": False},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "as_of": [1]},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "full_feature_names": "yes"},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "full_feature_names": 1},
    {"features": "v:a", "entities": {"k": ["c1"]}},
    {"features": [1], "entities": {"k": ["c1"]}},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "extra": 1},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "feature_service": 3},
    [],
    "x",
    # the constraints /openapi.json states (api.request_fields), on both paths alike
    {"features": ["v:a"], "entities": {"k": [2**63 - 1, -(2**63), 2**53 + 1]}},
    {"features": ["v:a"], "entities": {"k": [2**63]}},
    {"features": ["v:a"], "entities": {"k": [-(2**63) - 1]}},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "as_of": ""},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "as_of": -2_208_988_800},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "as_of": 7_258_118_400},
    {"features": ["v:a"], "entities": {"k": ["c1"]}, "as_of": 1e308},
    {"features": ["v:a\n"], "entities": {"k": ["c1"]}},
    {"features": ["a_b"], "entities": {"k": ["c1"]}},
    {"features": ["v:a:b"], "entities": {"k": ["c1"]}},
    {"feature_service": "a b", "entities": {"k": ["c1"]}},
    {"feature_service": "s\n", "entities": {"k": ["c1"]}},
    {"features": ["v:a"], "entities": {"a b": ["c1"]}},
    {"features": ["v:a"], "entities": {"k" * 129: ["c1"]}},
    # JSON does not tell 5.0 from 5: the route takes an integral float as an integer id
    {"features": ["v:a"], "entities": {"k": [5.0, -203687130.0]}},
]
ROUTE_ONLY = {len(BODIES) - 1}


def _fast_path_takes(raw: bytes) -> LookupBody | None:
    """The body as the fast path takes it: msgspec's decoding, then the form of the
    feature references (checked once per list); None when it leaves it to the route."""
    try:
        body: LookupBody = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return body if _refs_as_the_route_takes(body.features) else None


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_fast_path_takes_a_body_only_as_the_route_does(body: object) -> None:
    raw = json.dumps(body).encode()
    fast = _fast_path_takes(raw)
    try:
        route: OnlineFeaturesRequest | None = OnlineFeaturesRequest.model_validate_json(raw)
    except ValidationError:
        route = None
    if fast is not None:
        assert route is not None, (fast, "the route refuses it")
        assert msgspec.structs.asdict(fast) == route.model_dump()
    elif BODIES.index(body) not in ROUTE_ONLY:
        assert route is None, (route, "the fast path refuses it")


def test_a_body_that_is_not_json_goes_to_the_route() -> None:
    with pytest.raises(msgspec.DecodeError):
        _decoder.decode(b"{not json")
