"""Feast's own client, driven one lookup at a time: run by Feast's interpreter (its own
venv, `benchmarks/feast_env.py`), never imported by the tests.

`python feast_driver.py REPO` opens `FeatureStore(repo_path=REPO)`, prints `{"ready":
true}`, then answers each JSON line on stdin with one JSON line on stdout:

- `{"call": "get_online_features", "features": [...] | "feature_service": NAME,
  "entity_rows": [...], "full_feature_names": bool}`: `FeatureStore.get_online_features`
  (a feature service is looked up in the registry by name, as a user does);
- `{"call": "online_read", "view": NAME, "join_key": KEY, "values": [...],
  "features": [...]}`: the remote online store's `online_read`, Feast's other request
  to `/get-online-features` (features and entities only); `"join_keys": [A, B]` with
  `"values": [[a, b], ...]` for a view of several join keys;
- `"api_key"` in a line sets the environment variable of feature_store.yaml's
  `token_env_var` for that call (a wrong key: the API's 401).

Answers: `{"columns": {name: values}, "statuses": {name: [status names]}}`, or
`{"error": TYPE, "message": TEXT}` when Feast raised.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type


def get_online_features(store: FeatureStore, request: dict[str, Any]) -> dict[str, Any]:
    if "feature_service" in request:
        features: Any = store.get_feature_service(request["feature_service"])
    else:
        features = request["features"]
    response = store.get_online_features(
        features=features,
        entity_rows=request["entity_rows"],
        full_feature_names=request["full_feature_names"],
    )
    names = list(response.proto.metadata.feature_names.val)
    statuses = {
        name: [FieldStatus.Name(s) for s in vector.statuses]
        for name, vector in zip(names, response.proto.results, strict=True)
    }
    return {"columns": response.to_dict(), "statuses": statuses}


def online_read(store: FeatureStore, request: dict[str, Any]) -> dict[str, Any]:
    view = store.get_feature_view(request["view"])
    keys = []
    join_keys = request.get("join_keys") or [request["join_key"]]
    for value in request["values"]:
        row = value if "join_keys" in request else [value]
        protos = [Value(int64_val=v) if isinstance(v, int) else Value(string_val=v) for v in row]
        keys.append(EntityKey(join_keys=join_keys, entity_values=protos))
    rows = store._get_provider().online_read(store.config, view, keys, request["features"])
    columns: dict[str, list[Any]] = {name: [] for name in request["features"]}
    for _, values in rows:
        for name in request["features"]:
            proto = (values or {}).get(name)
            columns[name].append(None if proto is None else feast_value_type_to_python_type(proto))
    return {"columns": columns}


def main() -> None:
    store = FeatureStore(repo_path=sys.argv[1])
    auth = store.config.auth
    key_env = auth.get("token_env_var") if isinstance(auth, dict) else None
    right_key = os.environ.get(key_env) if key_env else None
    store.list_feature_views()  # load the registry before the first timed lookup
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if key_env and right_key is not None:
            os.environ[key_env] = request.get("api_key", right_key)
        try:
            call = online_read if request["call"] == "online_read" else get_online_features
            answer = call(store, request)
        except Exception as exc:  # what Feast raised is the answer
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
