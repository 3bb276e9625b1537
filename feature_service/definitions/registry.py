"""Resolved definitions: the registry every other part of the service reads.

`build_registry` takes the parsed files, resolves names across them (a view in one
file may use an entity from another), expands shorthand features, and checks what a
single file cannot: unknown sources, entities and columns, duplicate names, windows
that are not a multiple of their hop, `where` filters. Every problem becomes a
`DefinitionIssue` naming the file, the path inside it and what is wrong; all of them
are reported at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from feature_service.aggregation.base import Aggregation, Params, as_params
from feature_service.aggregation.registry import aggregation as aggregation_named
from feature_service.aggregation.spec import aggregation_of
from feature_service.aggregation.windows import default_hop
from feature_service.definitions.model import (
    DefinitionsFile,
    FeatureDef,
    FeatureViewDef,
    ServiceExpressionDef,
    SourceDef,
)
from feature_service.definitions.source_formats import source_format
from feature_service.definitions.where import WhereError, WhereExpr, parse_where
from feature_service.durations import format_duration
from feature_service.expressions import (
    ANY,
    Expression,
    ExpressionError,
    evaluation_order,
    kind_of_type,
    parse_expression,
)
from feature_service.formats import SourceFormat
from feature_service.keys import EntityKey

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class DefinitionIssue:
    """One problem in one definitions file."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class DefinitionError(ValueError):
    """Definitions that cannot run; `issues` lists every problem found."""

    def __init__(self, issues: list[DefinitionIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass(frozen=True)
class Entity:
    """What a view's features describe, named by the values of its join key columns
    (several for a composite key, in order)."""

    name: str
    join_keys: tuple[str, ...]
    description: str = ""

    @property
    def key(self) -> EntityKey:
        """How its join-key values become its id (`feature_service.keys`)."""
        return EntityKey(self.join_keys)

    @property
    def keys_text(self) -> str:
        """The join keys for a message: `customer_id`, `customer_id, merchant_id`."""
        return ", ".join(self.join_keys)


@dataclass(frozen=True)
class Source:
    name: str
    topic: str
    timestamp_field: str
    schema: dict[str, str]
    key: str | None  # None only for a source no view uses yet: messages go unkeyed
    partitions: int
    description: str = ""
    # Columns every event must carry, not null and not empty: the join keys of the
    # views reading this source (the topic key among them).
    join_keys: tuple[str, ...] = ()
    # An event further ahead than this of its record's time is refused (None: no guard).
    max_future_s: int | None = 86400
    # How events are written when not as JSON objects (Avro, Protobuf, JSON Schema).
    format: SourceFormat | None = None
    # Computed columns (`columns:`), in an order where each comes after those it reads.
    computed: tuple[tuple[str, Expression], ...] = ()

    @property
    def column_kinds(self) -> dict[str, str]:
        """Every column a view may read: the schema's, then the computed ones (their
        kind from their expression's type: float, bool or string)."""
        kinds = dict(self.schema)
        kinds.update((name, kind_of_type(expr.type)) for name, expr in self.computed)
        return kinds

    def raw_columns(self, columns: Iterable[str]) -> list[str]:
        """The schema columns `columns` need: themselves, or what computed ones read."""
        computed = dict(self.computed)
        out: dict[str, None] = {}
        stack = list(columns)
        while stack:
            c = stack.pop()
            if c in computed:
                stack.extend(computed[c].names)
            else:
                out[c] = None
        return sorted(out)

    @property
    def dlq_topic(self) -> str:
        """Where events of this source that cannot be accepted go, with the reason."""
        return self.topic + DLQ_SUFFIX


@dataclass(frozen=True)
class Feature:
    """One output feature. `window_s` None is a lifetime aggregate (then `hop_s` is None);
    `params` its aggregation's parameters, checked, defaults filled in (sorted pairs;
    `aggregation.spec.aggregation_of` binds them)."""

    name: str
    aggregation: str
    column: str | None
    window_s: int | None
    hop_s: int | None
    where: WhereExpr | None = None
    description: str = ""
    params: Params = ()


@dataclass(frozen=True)
class DerivedFeature:
    """A feature computed from the view's features (and request fields) by an expression,
    after the aggregations, online and in training sets alike."""

    name: str
    expression: Expression
    description: str = ""

    @property
    def kind(self) -> str:
        """The schema kind of its values: float, bool or string."""
        return kind_of_type(self.expression.type)


@dataclass(frozen=True, eq=False)  # hashed by identity: views key caches
class FeatureView:
    name: str
    source: Source
    entity: Entity
    features: tuple[Feature, ...]
    ttl_s: int | None
    allowed_lateness_s: int
    description: str = ""
    file: str = ""
    # Derived features, in evaluation order (each after the derived ones it reads).
    derived: tuple[DerivedFeature, ...] = ()
    # Request fields (name -> schema kind) the derived features may read.
    request: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Every feature it serves: the aggregations, then the derived ones."""
        return [f.name for f in self.features] + [d.name for d in self.derived]

    def derived_feature(self, name: str) -> DerivedFeature | None:
        for derived in self.derived:
            if derived.name == name:
                return derived
        return None

    @property
    def longest_window_s(self) -> int | None:
        windows = [f.window_s for f in self.features if f.window_s is not None]
        return max(windows) if windows else None

    @property
    def retention_s(self) -> int:
        """How far behind the watermark online state must reach (see DESIGN.md).

        Queries may reach one longest window back (`as_of`), whose window reaches one
        more; an event up to `allowed_lateness_s` late must still find its window in state.
        """
        longest = self.longest_window_s or 0
        return max(2 * longest, self.allowed_lateness_s)

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)


@dataclass(frozen=True)
class ServiceExpression:
    """A feature service's feature computed from features of its views: `inputs` maps
    each name the expression reads (`view__feature`) to its `view:feature`."""

    name: str
    expression: Expression
    inputs: tuple[tuple[str, str], ...]
    description: str = ""
    request: tuple[tuple[str, str], ...] = ()  # the service's request fields and kinds


@dataclass(frozen=True)
class FeatureService:
    name: str
    features: tuple[str, ...]  # `view:feature` references, in order
    description: str = ""
    # computed across its views, served after `features`, in order
    derived: tuple[ServiceExpression, ...] = ()
    request: dict[str, str] = field(default_factory=dict)


@dataclass
class Registry:
    """Every definition, resolved and checked."""

    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    feature_views: dict[str, FeatureView] = field(default_factory=dict)
    feature_services: dict[str, FeatureService] = field(default_factory=dict)
    # The YAML text of each file loaded, by its path relative to the definitions path
    # (the file's name for a single file): what `online.accepted_definitions` records.
    texts: dict[str, str] = field(default_factory=dict)

    def views_of_source(self, source: str) -> list[FeatureView]:
        return [v for v in self.feature_views.values() if v.source.name == source]


# Lateness when a view does not set it: two longest windows, as DESIGN.md fixes; a view of
# lifetime aggregates only keeps a day.
_LIFETIME_ONLY_LATENESS_S = 86400


def build_registry(files: Iterable[tuple[str, DefinitionsFile]]) -> Registry:
    """Resolve and check parsed files; raise DefinitionError listing every problem."""
    issues: list[DefinitionIssue] = []
    registry = Registry()
    origin: dict[tuple[str, str], str] = {}
    files = list(files)

    def claim(kind: str, name: str, file: str, path: str) -> bool:
        if (kind, name) in origin:
            issues.append(
                DefinitionIssue(
                    file, path, f"duplicate {kind} {name!r} (first defined in {origin[kind, name]})"
                )
            )
            return False
        origin[kind, name] = file
        return True

    for file, parsed in files:
        for i, e in enumerate(parsed.entities):
            if claim("entity", e.name, file, f"entities[{i}].name"):
                registry.entities[e.name] = Entity(e.name, e.keys, e.description)

    source_defs: dict[str, tuple[str, int, SourceDef]] = {}
    for file, parsed in files:
        for i, s in enumerate(parsed.sources):
            if claim("source", s.name, file, f"sources[{i}].name"):
                source_defs[s.name] = (file, i, s)
            claim("topic", s.topic, file, f"sources[{i}].topic")

    view_defs = [(file, i, v) for file, parsed in files for i, v in enumerate(parsed.feature_views)]
    for name, (file, i, s) in source_defs.items():
        source = _resolve_source(file, i, s, view_defs, registry, issues)
        if source is not None:
            registry.sources[name] = source

    for file, i, v in view_defs:
        if not claim("feature view", v.name, file, f"feature_views[{i}].name"):
            continue
        view = _resolve_view(file, i, v, registry, issues)
        if view is not None:
            registry.feature_views[v.name] = view

    for file, parsed in files:
        for i, fs in enumerate(parsed.feature_services):
            if not claim("feature service", fs.name, file, f"feature_services[{i}].name"):
                continue
            refs: list[str] = []
            derived: list[ServiceExpression] = []
            for j, ref in enumerate(fs.features):
                fpath = f"feature_services[{i}].features[{j}]"
                if not isinstance(ref, str):
                    expr = _service_expression(file, fpath, ref, fs.request or {}, registry, issues)
                    if expr is not None:
                        derived.append(expr)
                    continue
                problem = _check_reference(ref, registry)
                if problem:
                    issues.append(DefinitionIssue(file, fpath, problem))
                refs.append(ref)
            registry.feature_services[fs.name] = FeatureService(
                fs.name, tuple(refs), fs.description, tuple(derived), dict(fs.request or {})
            )

    if issues:
        raise DefinitionError(issues)
    return registry


def _resolve_source(
    file: str,
    i: int,
    s: SourceDef,
    view_defs: list[tuple[str, int, FeatureViewDef]],
    registry: Registry,
    issues: list[DefinitionIssue],
) -> Source | None:
    path = f"sources[{i}]"
    ok = True
    problems: list[tuple[str, str]] = []
    schema, event_format = source_format(file, path, s, problems)
    issues.extend(DefinitionIssue(file, where, message) for where, message in problems)
    if schema is None:
        return None
    ts_type = schema.get(s.timestamp_field)
    if ts_type is not None and ts_type not in ("timestamp", "float", "int"):
        issues.append(
            DefinitionIssue(
                file,
                f"{path}.schema.{s.timestamp_field}",
                f"the timestamp field must be of type timestamp, float or int, not {ts_type}",
            )
        )
        ok = False
    key = s.key
    if key is None:
        for _, _, v in view_defs:
            entity = registry.entities.get(v.entity)
            if v.source == s.name and entity is not None:
                key = entity.join_keys[0]  # the topic is keyed by one column
                break
    if key is not None and key not in schema:
        issues.append(
            DefinitionIssue(
                file,
                f"{path}.key",
                f"key column {key!r} is not in the schema ({', '.join(schema)})",
            )
        )
        ok = False
    computed = _computed_columns(file, path, s, schema, issues)
    if computed is None:
        ok = False
    if not ok:
        return None
    join_keys = [key] if key is not None else []
    for _, _, v in view_defs:
        entity = registry.entities.get(v.entity)
        columns = entity.join_keys if entity is not None and v.source == s.name else ()
        for column in columns:
            if column in schema and column not in join_keys:
                join_keys.append(column)
    return Source(
        name=s.name,
        topic=s.topic,
        timestamp_field=s.timestamp_field,
        schema=schema,
        key=key,
        partitions=s.partitions,
        description=s.description,
        join_keys=tuple(join_keys),
        max_future_s=None if s.max_future == "none" else s.max_future,
        format=event_format,
        computed=computed or (),
    )


def _computed_columns(
    file: str, path: str, s: SourceDef, schema: Mapping[str, str], issues: list[DefinitionIssue]
) -> tuple[tuple[str, Expression], ...] | None:
    """A source's `columns:` parsed and checked, in evaluation order (None: a problem,
    reported in `issues`)."""
    if not s.columns:
        return ()
    before = len(issues)
    for name in s.columns:
        if name in schema or name == s.timestamp_field:
            issues.append(
                DefinitionIssue(
                    file, f"{path}.columns.{name}", f"{name!r} is already a column of the schema"
                )
            )
    if len(issues) > before:
        return None
    exprs = _typed_in_order(
        file,
        f"{path}.columns",
        dict(s.columns),
        dict(schema),
        None,
        "column",
        issues,
    )
    if exprs is None:
        return None
    return tuple(exprs.items())


def _typed_in_order(
    file: str,
    path: str,
    texts: Mapping[str, str],
    inputs: dict[str, str],
    request: Mapping[str, str] | None,
    noun: str,
    issues: list[DefinitionIssue],
) -> dict[str, Expression] | None:
    """Expressions `texts` (name -> text) over `inputs` (name -> kind) and each other,
    parsed in an order where each comes after those it reads (so each knows their
    types); None when one is wrong or they form a cycle, reported in `issues`."""
    before = len(issues)
    names = {**inputs, **dict.fromkeys(texts, ANY)}
    first: dict[str, Expression | None] = dict.fromkeys(inputs)
    for name, text in texts.items():
        try:
            first[name] = parse_expression(text, names, request, noun=noun)
        except ExpressionError as exc:
            issues.append(DefinitionIssue(file, f"{path}.{name}", str(exc)))
    if len(issues) > before:
        return None
    try:
        order = evaluation_order(first)
    except ExpressionError as exc:
        issues.append(DefinitionIssue(file, path, str(exc)))
        return None
    typed = dict(inputs)
    out: dict[str, Expression] = {}
    for name in order:
        try:
            expr = parse_expression(texts[name], typed, request, noun=noun)
        except ExpressionError as exc:
            issues.append(DefinitionIssue(file, f"{path}.{name}", str(exc)))
            return None
        out[name] = expr
        typed[name] = kind_of_type(expr.type)
    return out


def _resolve_view(
    file: str, i: int, v: FeatureViewDef, registry: Registry, issues: list[DefinitionIssue]
) -> FeatureView | None:
    path = f"feature_views[{i}]"
    before = len(issues)
    source = registry.sources.get(v.source)
    entity = registry.entities.get(v.entity)
    if source is None:
        issues.append(
            DefinitionIssue(file, f"{path}.source", _unknown("source", v.source, registry.sources))
        )
    if entity is None:
        issues.append(
            DefinitionIssue(file, f"{path}.entity", _unknown("entity", v.entity, registry.entities))
        )
    if source is None or entity is None:
        return None
    for key in entity.join_keys:
        if key not in source.schema:
            issues.append(
                DefinitionIssue(
                    file,
                    f"{path}.entity",
                    f"entity {entity.name!r} joins on {key!r}, "
                    f"which source {source.name!r} does not have",
                )
            )
    features: list[Feature] = []
    seen: dict[str, str] = {}
    expressions: dict[str, tuple[str, FeatureDef]] = {}
    for j, fdef in enumerate(v.features):
        fpath = f"{path}.features[{j}]"
        if fdef.expression is not None:
            assert fdef.name is not None
            if fdef.name in seen:
                issues.append(
                    DefinitionIssue(
                        file,
                        fpath,
                        f"duplicate feature name {fdef.name!r} (also at {seen[fdef.name]})",
                    )
                )
            seen[fdef.name] = fpath
            expressions[fdef.name] = (fpath, fdef)
            continue
        for feature in _expand(file, fpath, fdef, v, source, issues):
            if feature.name in seen:
                issues.append(
                    DefinitionIssue(
                        file,
                        f"{fpath}",
                        f"duplicate feature name {feature.name!r} (also at {seen[feature.name]})",
                    )
                )
                continue
            seen[feature.name] = fpath
            features.append(feature)
    hops = sorted({f.hop_s for f in features if f.hop_s is not None})
    for finer, coarser in itertools.pairwise(hops):
        if coarser % finer:
            issues.append(
                DefinitionIssue(
                    file,
                    f"{path}.features",
                    f"hops {format_duration(finer)} and {format_duration(coarser)} do not divide "
                    "each other; each hop of a view must be a multiple of the next smaller one",
                )
            )
    if len(issues) > before:
        return None
    derived = _derived_features(file, path, v, source, features, expressions, issues)
    if derived is None:
        return None
    longest = max((f.window_s for f in features if f.window_s is not None), default=None)
    lateness = v.allowed_lateness
    if lateness is None:
        lateness = 2 * longest if longest is not None else _LIFETIME_ONLY_LATENESS_S
    return FeatureView(
        name=v.name,
        source=source,
        entity=entity,
        features=tuple(features),
        ttl_s=v.ttl,
        allowed_lateness_s=lateness,
        description=v.description,
        file=file,
        derived=derived,
        request=dict(v.request or {}),
    )


def _derived_features(
    file: str,
    path: str,
    v: FeatureViewDef,
    source: Source,
    features: list[Feature],
    expressions: Mapping[str, tuple[str, FeatureDef]],
    issues: list[DefinitionIssue],
) -> tuple[DerivedFeature, ...] | None:
    """The view's derived features, checked (names, types, cycles) and in evaluation
    order; None when one is wrong (reported in `issues`, at its feature's path)."""
    if not expressions:
        return ()
    kinds = source.column_kinds
    inputs = {
        f.name: aggregation_of(f).value_kind(kinds.get(f.column) if f.column else None)
        for f in features
    }
    before = len(issues)
    clash = sorted(set(v.request or {}) & {*inputs, *expressions})
    if clash:
        issues.append(
            DefinitionIssue(
                file,
                f"{path}.request",
                f"request field(s) {', '.join(clash)} have the name of a feature of the view",
            )
        )
        return None
    local: list[DefinitionIssue] = []
    exprs = _typed_in_order(
        file,
        f"{path}.features",
        {name: fdef.expression or "" for name, (_, fdef) in expressions.items()},
        inputs,
        dict(v.request or {}),
        "feature",
        local,
    )
    for issue in local:  # at the feature's own path: features[j].expression
        name = issue.path.rpartition(".")[2]
        if name in expressions:
            issue = DefinitionIssue(file, f"{expressions[name][0]}.expression", issue.message)
        issues.append(issue)
    if exprs is None or len(issues) > before:
        return None
    return tuple(
        DerivedFeature(name, expr, expressions[name][1].description) for name, expr in exprs.items()
    )


def _expand(
    file: str,
    path: str,
    f: FeatureDef,
    view: FeatureViewDef,
    source: Source,
    issues: list[DefinitionIssue],
) -> Iterator[Feature]:
    aggregations = f.aggregations or [f.aggregation or ""]
    windows: list[int | None] = list(f.windows) if f.windows else [f.window]
    agg_key = "aggregations" if f.aggregations else "aggregation"
    win_key = "windows" if f.windows else "window"
    if f.name is not None and len(aggregations) * len(windows) > 1:
        issues.append(
            DefinitionIssue(
                file,
                f"{path}.name",
                f"a name is given but the entry expands to {len(aggregations) * len(windows)} "
                "features; drop the name to get generated ones",
            )
        )
        return
    column_type = None
    kinds = source.column_kinds
    if f.column is not None:
        column_type = kinds.get(f.column)
        if column_type is None:
            issues.append(
                DefinitionIssue(
                    file,
                    f"{path}.column",
                    f"unknown column {f.column!r}; source {source.name!r} has {', '.join(kinds)}",
                )
            )
            return
    where: WhereExpr | None = None
    if f.where is not None:
        try:
            where = parse_where(f.where, kinds)
        except WhereError as exc:
            issues.append(DefinitionIssue(file, f"{path}.where", str(exc)))
            return
    for a, aggregation in enumerate(aggregations):
        apath = f"{path}.{agg_key}" + (f"[{a}]" if f.aggregations else "")
        agg = _bound(file, path, apath, f, aggregation, issues)
        if agg is None:
            continue
        problem = agg.column_problem(f.column, column_type)
        if problem is not None:
            issues.append(DefinitionIssue(file, apath, problem))
            continue
        for w, window in enumerate(windows):
            wpath = f"{path}.{win_key}" + (f"[{w}]" if f.windows else "")
            hop = None
            if window is not None:
                hop = f.hop or view.hop or default_hop(window)
                if hop > window or window % hop:
                    hop_path = f"{path}.hop" if f.hop else wpath
                    issues.append(
                        DefinitionIssue(
                            file,
                            hop_path,
                            f"window {format_duration(window)} is not a multiple of its hop "
                            f"{format_duration(hop)}; set `hop` to a divisor of the window",
                        )
                    )
                    continue
            elif f.hop is not None:
                issues.append(DefinitionIssue(file, f"{path}.hop", "a hop needs a window"))
                continue
            name = f.name or agg.feature_name(
                f.column, None if window is None else format_duration(window)
            )
            yield Feature(
                name=name,
                aggregation=aggregation,
                column=f.column,
                window_s=window,
                hop_s=hop,
                where=where,
                description=f.description,
                params=as_params(agg.params),
            )


def _service_expression(
    file: str,
    path: str,
    d: ServiceExpressionDef,
    request: Mapping[str, str],
    registry: Registry,
    issues: list[DefinitionIssue],
) -> ServiceExpression | None:
    """A feature service's expression over `view__feature` names (any view's feature,
    listed in the service or not) and its request fields; None when wrong (in `issues`)."""
    kinds: dict[str, str] = {}
    refs: dict[str, tuple[str, str]] = {}
    for view in registry.feature_views.values():
        kinds_of = view.source.column_kinds
        for f in view.features:
            column_kind = kinds_of.get(f.column) if f.column else None
            kinds[f"{view.name}__{f.name}"] = aggregation_of(f).value_kind(column_kind)
            refs[f"{view.name}__{f.name}"] = (view.name, f.name)
        for derived in view.derived:
            kinds[f"{view.name}__{derived.name}"] = derived.kind
            refs[f"{view.name}__{derived.name}"] = (view.name, derived.name)
    try:
        expr = parse_expression(d.expression, kinds, request, noun="feature (view__feature)")
    except ExpressionError as exc:
        message = str(exc)
        if "; known:" in message:  # every feature of every view: too many to list
            message = message.split("; known:")[0] + "; write a view's feature as view__feature"
        issues.append(DefinitionIssue(file, f"{path}.expression", message))
        return None
    if not expr.names:
        issues.append(
            DefinitionIssue(file, f"{path}.expression", "reads no feature (write view__feature)")
        )
        return None
    inputs = tuple((name, f"{refs[name][0]}:{refs[name][1]}") for name in sorted(expr.names))
    return ServiceExpression(d.name, expr, inputs, d.description, tuple(request.items()))


def _bound(
    file: str, path: str, apath: str, f: FeatureDef, name: str, issues: list[DefinitionIssue]
) -> Aggregation | None:
    """Aggregation `name` of entry `f` bound to the entry's parameters (its keys that are
    not fields), each problem an issue at its key's path; None if there is one."""
    agg = aggregation_named(name)
    given = f.params
    bad = False
    for key, value in given.items():
        param = agg.parameters.get(key) if f.aggregations is None else None
        if param is None:
            takes = (
                "a shorthand (`aggregations`) takes no parameters"
                if f.aggregations is not None
                else f"{name} takes {', '.join(agg.parameters)}"
                if agg.parameters
                else ""
            )
            issue = DefinitionIssue(
                file, f"{path}.{key}", "unknown key" + (f" ({takes})" if takes else "")
            )
            if issue not in issues:  # a shorthand's: once, not per aggregation
                issues.append(issue)
            bad = True
            continue
        try:
            param.check(key, value)
        except ValueError as exc:
            issues.append(DefinitionIssue(file, f"{path}.{key}", str(exc)))
            bad = True
    if bad:
        return None
    try:
        return agg.bind(given)
    except ValueError as exc:  # a missing one, or a combination the kind refuses
        issues.append(DefinitionIssue(file, apath, str(exc)))
        return None


def _unknown(kind: str, name: str, known: Mapping[str, object]) -> str:
    options = ", ".join(sorted(known)) or "none defined"
    return f"unknown {kind} {name!r} (known: {options})"


def _check_reference(ref: str, registry: Registry) -> str | None:
    view_name, sep, feature_name = ref.partition(":")
    if not sep:
        return f"{ref!r} is not of the form view:feature"
    view = registry.feature_views.get(view_name)
    if view is None:
        return _unknown("feature view", view_name, registry.feature_views)
    if feature_name not in view.feature_names:
        return f"feature view {view_name!r} has no feature {feature_name!r}"
    return None
