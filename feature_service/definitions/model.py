"""The definitions files as written: strict pydantic models of the YAML.

These models check each file on its own (shape, types, durations, aggregation names);
`registry.py` resolves names across files and checks the rest. Unknown keys are
errors, so a typo such as `windws:` is refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from feature_service.aggregation.registry import aggregation
from feature_service.durations import parse_duration

Duration = Annotated[int, BeforeValidator(parse_duration)]


def _duration_or_none(value: object) -> object:
    if value == "none":
        return value
    return parse_duration(value if isinstance(value, int) else str(value))


# One validator, so an error names `max_future` itself, not each member of a union.
DurationOrNone = Annotated[int | Literal["none"], BeforeValidator(_duration_or_none)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
ColumnType = Literal["string", "int", "float", "bool", "timestamp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EntityDef(_Strict):
    """A thing features describe, identified by one join key column (`join_key`) or by
    the tuple of several (`join_keys: [customer_id, merchant_id]`, a composite key)."""

    name: Identifier
    join_key: Identifier | None = None
    join_keys: list[Identifier] | None = Field(default=None, min_length=1, max_length=8)
    description: str = ""

    @model_validator(mode="after")
    def _one_way_to_key(self) -> EntityDef:
        if (self.join_key is None) == (self.join_keys is None):
            raise ValueError("give exactly one of `join_key` or `join_keys`")
        if self.join_keys is not None and len(set(self.join_keys)) < len(self.join_keys):
            raise ValueError(f"`join_keys` names a column twice: {self.join_keys}")
        return self

    @property
    def keys(self) -> tuple[str, ...]:
        """The join key columns, in order."""
        return (self.join_key,) if self.join_key is not None else tuple(self.join_keys or ())


class SchemaRegistryDef(_Strict):
    """Where a source's schema is registered (a Confluent Schema Registry REST API)."""

    url: Annotated[str, Field(pattern=r"^https?://", max_length=2000)] | None = Field(
        default=None,
        description="The registry's base URL; omitted: FS_SCHEMA_REGISTRY_URL, which "
        "`feature-service up` sets to an embedded registry it starts.",
    )
    subject: Annotated[str, Field(min_length=1, max_length=500)]


class SourceDef(_Strict):
    """A Kafka topic of raw events and their schema."""

    name: Identifier
    topic: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$", max_length=200)]
    timestamp_field: Identifier
    schema_: dict[Identifier, ColumnType] | None = Field(
        default=None,
        alias="schema",
        min_length=1,
        description="Column types; derived from the format's schema when omitted.",
    )
    format: Literal["json", "avro", "protobuf", "jsonschema"] = "json"
    schema_file: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="The format's schema (.avsc, .proto or a descriptor set, .json), "
        "relative to the definitions file: payloads are bare, without a registry frame.",
    )
    schema_registry: SchemaRegistryDef | None = None
    message: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")] | None = Field(
        default=None, description="Protobuf: the message type (default: the file's first)."
    )
    key: Identifier | None = Field(
        default=None,
        description="The join key the topic is keyed by; default: the entity of its first view.",
    )
    columns: dict[Identifier, Annotated[str, Field(min_length=1, max_length=4000)]] | None = Field(
        default=None,
        description="Computed columns, name -> expression over the source's columns "
        "(`feature_service.expressions`), evaluated per event before aggregation: "
        "usable as aggregation columns and in `where`.",
    )
    partitions: int = Field(default=3, ge=1, le=10_000)
    max_future: DurationOrNone = Field(
        default=86400,
        description="Events whose time is further ahead than this of the time their "
        "record was written to the topic go to the dead-letter topic (default 1d; "
        "`none` turns the guard off).",
    )
    description: str = ""

    @model_validator(mode="after")
    def _schema_where_the_format_says(self) -> SourceDef:
        if self.format == "json":
            if self.schema_file is not None or self.schema_registry is not None:
                raise ValueError(
                    "`schema_file` and `schema_registry` need a `format` (avro, protobuf, "
                    "jsonschema)"
                )
            if self.schema_ is None:
                raise ValueError("a json source needs a `schema`")
        elif self.schema_file is None and self.schema_registry is None:
            raise ValueError(f"format {self.format} needs a `schema_file` or a `schema_registry`")
        if self.message is not None and self.format != "protobuf":
            raise ValueError("`message` is for format protobuf only")
        return self


class FeatureDef(_Strict):
    """One feature, or a shorthand expanding to aggregations x windows.

    Keys beyond the fields below are its aggregation's parameters (``k: 5``,
    ``percentile: 0.9``), checked against the aggregation's own `parameters` when the
    registry is built (`registry.build_registry`: each key's path named); a shorthand
    (`aggregations`) takes none, so any other key there is an unknown one.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    name: Identifier | None = None
    column: Identifier | None = None
    aggregation: str | None = None
    aggregations: list[str] | None = Field(default=None, min_length=1)
    window: Duration | None = None
    windows: list[Duration] | None = Field(default=None, min_length=1)
    hop: Duration | None = None
    where: str | None = None
    expression: Annotated[str, Field(min_length=1, max_length=4000)] | None = Field(
        default=None,
        description="A derived feature: an expression over the view's features and "
        "`request.<field>`, evaluated after the aggregations.",
    )
    description: str = ""

    @field_validator("aggregation")
    @classmethod
    def _known_aggregation(cls, value: str | None) -> str | None:
        if value is not None:
            _check_aggregation(value)
        return value

    @field_validator("aggregations")
    @classmethod
    def _known_aggregations(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            _check_aggregation(name)
        return value

    @model_validator(mode="after")
    def _one_way_to_say_it(self) -> FeatureDef:
        if self.expression is not None:
            given = [
                k
                for k in ("column", "aggregation", "aggregations", "window", "windows", "hop",
                          "where")
                if getattr(self, k) is not None
            ]  # fmt: skip
            if given:
                raise ValueError(
                    f"a derived feature (`expression`) takes no {', '.join(given)}: it reads "
                    "the view's features"
                )
            if self.name is None:
                raise ValueError("a derived feature (`expression`) needs a `name`")
            return self
        if (self.aggregation is None) == (self.aggregations is None):
            raise ValueError("give exactly one of `aggregation` or `aggregations`")
        if self.window is not None and self.windows is not None:
            raise ValueError("give at most one of `window` or `windows`")
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The aggregation's parameters given (the keys that are not fields)."""
        return dict(self.model_extra or {})


class FeatureViewDef(_Strict):
    """Features of one entity computed from one source."""

    name: Identifier
    source: Identifier
    entity: Identifier
    ttl: Duration | None = None
    hop: Duration | None = None
    allowed_lateness: Duration | None = None
    description: str = ""
    request: dict[Identifier, ColumnType] | None = Field(
        default=None,
        description="Fields passed at lookup beside the join keys (and taken from the "
        "entity rows' columns in training sets), read as `request.<field>` by derived "
        "features.",
    )
    features: list[FeatureDef] = Field(min_length=1)


class ServiceExpressionDef(_Strict):
    """A feature of a feature service computed from features of its views: names are
    written `view__feature` (the full feature name), request fields `request.<field>`."""

    name: Identifier
    expression: Annotated[str, Field(min_length=1, max_length=4000)]
    description: str = ""


class FeatureServiceDef(_Strict):
    """A named list of `view:feature` references a model reads together, and features
    computed across its views (`{name, expression}`)."""

    name: Identifier
    features: list[str | ServiceExpressionDef] = Field(min_length=1)
    request: dict[Identifier, ColumnType] | None = Field(
        default=None,
        description="Fields passed at lookup beside the join keys, read as "
        "`request.<field>` by the service's expressions.",
    )
    description: str = ""


class DefinitionsFile(_Strict):
    """One YAML file; every section is optional so definitions can span files."""

    entities: list[EntityDef] = Field(default_factory=list)
    sources: list[SourceDef] = Field(default_factory=list)
    feature_views: list[FeatureViewDef] = Field(default_factory=list)
    feature_services: list[FeatureServiceDef] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ([] if v is None else v) for k, v in data.items()}
        return data


def _check_aggregation(name: str) -> None:
    aggregation(name)  # ValueError naming the known ones
