"""`feature-service export feast`: a Feast repository whose client reads from our API.

Feast's Python SDK reads online features through its remote online store
(`online_store: {type: remote, path: URL}`), which posts to our
`POST /get-online-features`. The SDK also needs a registry describing the entities,
feature views and feature services (a feature service is looked up there by name, and
`feast feature-views list` and the Feast UI read it). This command writes both from
our definitions:

- `feature_store.yaml`: the remote online store pointing at our API, a local file
  registry (`data/registry.db`), the API key as a bearer token read from an
  environment variable when `--api-key-env` is given;
- `features.py`: Feast's own Python definitions (entities, feature views with typed
  fields, feature services), which `feast apply` turns into the registry. Plain
  Python, readable and diffable; regenerate it when the definitions change. Feast
  gives an entity one join key, so a view of a composite key (`join_keys: [customer_id,
  merchant_id]`) lists one Feast entity per column, as Feast models such a view.

The sources in `features.py` are placeholders: feature-service computes the features
from Kafka and serves them, so Feast's materialisation, offline store and push do
not apply (README "Feast compatibility").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from feature_service import __version__
from feature_service.aggregation.base import VALUE_TYPES
from feature_service.aggregation.spec import aggregation_of
from feature_service.cli.console import console
from feature_service.cli.options import DefinitionsOption
from feature_service.core.config import load_settings
from feature_service.definitions import Feature, FeatureView, Registry, load_definitions
from feature_service.durations import format_duration

DEFAULT_API = "http://127.0.0.1:8000"

# The join key types a lookup accepts (`entities` values are strings or integers).
_JOIN_KEY_TYPES = {"string": "STRING", "int": "INT64"}


def feast_dtype(view: FeatureView, feature: Feature) -> str:
    """The name of the `feast.types` type of a feature's values, as our API returns
    them (its aggregation's `value_type`)."""
    column_kind = None if feature.column is None else view.source.column_kinds[feature.column]
    return aggregation_of(feature).value_type(column_kind).feast


def _feature_tags(feature: Feature) -> dict[str, str]:
    tags = {"aggregation": feature.aggregation}
    if feature.column is not None:
        tags["column"] = feature.column
    tags["window"] = format_duration(feature.window_s) if feature.window_s else "lifetime"
    if feature.where is not None:
        tags["where"] = feature.where.text
    return tags


def _check_exportable(registry: Registry) -> None:
    key_types: dict[str, tuple[str, str]] = {}  # join key column -> (type, source)
    for view in registry.feature_views.values():
        for key in view.entity.join_keys:
            kind = view.source.schema[key]
            if kind not in _JOIN_KEY_TYPES:
                raise ValueError(
                    f"feature view {view.name!r} joins on {key!r} of type {kind}; lookups "
                    "(and so Feast's client) take string or int join keys only"
                )
            first = key_types.setdefault(key, (kind, view.source.name))
            if first[0] != kind:
                raise ValueError(
                    f"join key {key!r} is of type {first[0]} in source {first[1]!r} but {kind} "
                    f"in {view.source.name!r}; Feast gives an entity one type"
                )


@dataclass(frozen=True)
class _FeastEntity:
    """One Feast entity: Feast gives an entity one join key, so an entity of ours with
    several (a composite key) is a view over several Feast entities, one per column."""

    name: str
    join_key: str
    value_type: str
    description: str

    @property
    def variable(self) -> str:
        return f"entity_{self.name}"


def _feast_entities(registry: Registry) -> dict[str, _FeastEntity]:
    """Join key column -> the Feast entity of it: our entity of that one key where there
    is one (`customer` for `customer_id`), else one named `<entity>_<column>` after the
    first composite entity using the column."""
    views = list(registry.feature_views.values())
    kind_of = {k: v.source.schema[k] for v in views for k in v.entity.join_keys}
    used = {k for v in views for k in v.entity.join_keys}
    out: dict[str, _FeastEntity] = {}
    for entity in registry.entities.values():  # single keys first: they keep their names
        (key, *more) = entity.join_keys
        if not more and key in used and key not in out:
            out[key] = _FeastEntity(
                entity.name, key, _JOIN_KEY_TYPES[kind_of[key]], entity.description
            )
    names = {e.name for e in out.values()} | set(registry.entities)
    for view in views:
        for key in view.entity.join_keys:
            if key not in out:
                name = f"{view.entity.name}_{key}"
                while name in names:
                    name += "_"
                names.add(name)
                out[key] = _FeastEntity(
                    name,
                    key,
                    _JOIN_KEY_TYPES[kind_of[key]],
                    f"{key}, a join key of {view.entity.name} "
                    f"({view.entity.keys_text}). {view.entity.description}".strip(),
                )
    return out


def render_features_py(registry: Registry, definitions: str) -> str:
    """Feast definitions of every entity, view and feature service, as Python source."""
    _check_exportable(registry)
    entities = _feast_entities(registry)
    sources = {v.source.name: v.source for v in registry.feature_views.values()}
    views = list(registry.feature_views.values())
    # names to import: `Array(Float64)` is two (`Array`, `Float64`)
    dtypes = sorted(
        {
            name
            for dtype in {feast_dtype(v, f) for v in views for f in v.features}
            | {VALUE_TYPES[d.kind].feast for v in views for d in v.derived}
            | {VALUE_TYPES[v.source.schema[k]].feast for v in views for k in v.entity.join_keys}
            for name in dtype.replace(")", "").split("(")
        }
    )
    out = [
        f'"""Feast definitions of the features feature-service {__version__} serves.',
        "",
        f"Written by `feature-service export feast` from {definitions}; regenerate it",
        "rather than edit it. Apply it with `feast apply --skip-source-validation` in this",
        "folder. feature-service computes the values from Kafka and serves them; Feast's",
        "client reads them through the remote online store of feature_store.yaml. The",
        "FileSources below only name the event sources (there is no file): Feast's",
        "materialisation, offline store and push do not apply.",
        '"""',
        "",
        "from datetime import timedelta",
        "",
        "from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType",
        f"from feast.types import {', '.join(dtypes)}",
        "",
    ]
    for entity in entities.values():
        out += [
            f"{entity.variable} = Entity(",
            f"    name={entity.name!r},",
            f"    join_keys=[{entity.join_key!r}],",
            f"    value_type=ValueType.{entity.value_type},",
            f"    description={entity.description!r},",
            ")",
            "",
        ]
    for source in sources.values():
        out += [
            f"source_{source.name} = FileSource(",
            f"    name={source.name!r},",
            f"    path={'feature-service/' + source.name!r},  # placeholder: events are on Kafka",
            f"    timestamp_field={source.timestamp_field!r},",
            f"    description={f'Kafka topic {source.topic}. ' + source.description!r},",
            f"    tags={{'topic': {source.topic!r}}},",
            ")",
            "",
        ]
    for view in registry.feature_views.values():
        keys = view.entity.join_keys
        ttl = f"timedelta(seconds={view.ttl_s})" if view.ttl_s else "timedelta(0)"
        out += [
            f"view_{view.name} = FeatureView(",
            f"    name={view.name!r},",
            f"    entities=[{', '.join(entities[k].variable for k in keys)}],",
            f"    ttl={ttl},",
            "    schema=[",
            *(
                f"        Field(name={k!r}, dtype={VALUE_TYPES[view.source.schema[k]].feast}),"
                for k in keys
            ),
        ]
        for feature in view.features:
            out += [
                "        Field(",
                f"            name={feature.name!r},",
                f"            dtype={feast_dtype(view, feature)},",
                f"            description={feature.description!r},",
                f"            tags={_feature_tags(feature)!r},",
                "        ),",
            ]
        for derived in view.derived:  # computed by the API when Feast asks for them
            out += [
                "        Field(",
                f"            name={derived.name!r},",
                f"            dtype={VALUE_TYPES[derived.kind].feast},",
                f"            description={derived.description!r},",
                f"            tags={ {'expression': derived.expression.text}!r},",
                "        ),",
            ]
        out += [
            "    ],",
            f"    source=source_{view.source.name},",
            "    online=True,",
            f"    description={view.description!r},",
            "    tags={'served_by': 'feature-service'},",
            ")",
            "",
        ]
    for service in registry.feature_services.values():
        by_view: dict[str, list[str]] = {}
        for ref in service.features:
            view_name, _, feature_name = ref.partition(":")
            by_view.setdefault(view_name, []).append(feature_name)
        out += [
            f"service_{service.name} = FeatureService(",
            f"    name={service.name!r},",
            "    features=[",
            *(f"        view_{name}[{features!r}]," for name, features in by_view.items()),
            "    ],",
            f"    description={service.description!r},",
            ")",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def render_feature_store_yaml(project: str, api: str, api_key_env: str | None) -> str:
    """Feast's configuration: the remote online store at `api`, a local file registry."""
    lines = [
        "# Feast's client reading from feature-service (written by `feature-service export",
        "# feast`). Run `feast apply` here once to build data/registry.db from features.py.",
        f"project: {project}",
        "provider: local",
        "registry: data/registry.db",
        "online_store:",
        "  type: remote",
        f"  path: {api}",
        "entity_key_serialization_version: 3",
    ]
    if api_key_env:
        lines += [
            f"# The API key, sent as `Authorization: Bearer <key>`, read from ${api_key_env}.",
            "auth:",
            "  type: oidc",
            f"  token_env_var: {api_key_env}",
        ]
    return "\n".join(lines) + "\n"


def _check_options(project: str, api: str, api_key_env: str | None) -> str:
    if not project.isidentifier() or not project.isascii():
        raise ValueError(f"--project {project!r}: use letters, digits and underscores")
    if not api.startswith(("http://", "https://")):
        raise ValueError(f"--api {api!r}: give the API's base URL, e.g. {DEFAULT_API}")
    if api_key_env is not None and not (api_key_env.isidentifier() and api_key_env.isascii()):
        raise ValueError(f"--api-key-env {api_key_env!r}: give an environment variable name")
    return api.rstrip("/")


def export_feast(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The Feast repository folder to write.")
    ],
    definitions: DefinitionsOption = None,
    api: Annotated[
        str | None,
        typer.Option(help=f"Base URL of our lookup API (default: FS_API_URL, else {DEFAULT_API})."),
    ] = None,
    project: Annotated[str, typer.Option(help="The Feast project name.")] = "feature_service",
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="When the API needs a key (FS_API_KEYS): the environment variable Feast's "
            "client reads it from, sent as a bearer token."
        ),
    ] = None,
) -> None:
    """Write a Feast repository (feature_store.yaml, features.py) reading from our API.

    Feast's client (`FeatureStore.get_online_features`) then reads our features through
    its remote online store. Run `feast apply` in the folder, where Feast is installed,
    to build its registry (data/registry.db) from features.py.

    Example: feature-service export feast -d definitions/ --api http://127.0.0.1:8000 \\
             -o feast_repo && cd feast_repo && feast apply
    """
    settings = load_settings()
    path = definitions or settings.definitions
    base = _check_options(project, api or settings.api_url or DEFAULT_API, api_key_env)
    registry = load_definitions(path)
    if not registry.feature_views:
        raise ValueError(f"{path}: no feature views to export")
    features_py = render_features_py(registry, str(path))
    store_yaml = render_feature_store_yaml(project, base, api_key_env)
    output.mkdir(parents=True, exist_ok=True)
    (output / "data").mkdir(exist_ok=True)
    (output / "feature_store.yaml").write_text(store_yaml, encoding="utf-8")
    (output / "features.py").write_text(features_py, encoding="utf-8")
    n_features = sum(len(v.feature_names) for v in registry.feature_views.values())
    counts = ", ".join(
        _count(n, what)
        for n, what in (
            (len(registry.feature_views), "feature view"),
            (n_features, "feature"),
            (len(registry.feature_services), "feature service"),
        )
    )
    console.print(
        f"wrote {output / 'feature_store.yaml'} (online store: {base}) and "
        f"{output / 'features.py'}: {counts}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"next: cd {output} && feast apply --skip-source-validation  (where Feast is "
        "installed; the FileSources are placeholders, so there is nothing to validate)",
        highlight=False,
        soft_wrap=True,
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")
