"""A source's `format:` resolved at load: its schema read, its column types derived
from it (when `schema:` is omitted) or checked against it (when given).

Problems are (path inside the file, message) pairs, which the registry turns into
`DefinitionIssue`s naming the file, like every other refusal of definitions: a schema
file that cannot be read or compiled, a registry that cannot be reached or lacks the
subject, a declared column the schema does not have with that type.
"""

from __future__ import annotations

import os
from pathlib import Path

from feature_service.definitions.model import SourceDef
from feature_service.formats import (
    REGISTRY_URL_VARIABLE,
    CodecError,
    SourceFormat,
    codec_of,
    schema_mismatches,
)


def source_format(
    file: str, path: str, s: SourceDef, issues: list[tuple[str, str]]
) -> tuple[dict[str, str] | None, SourceFormat | None]:
    """(the source's column types, its format), or (None, None) after adding `issues`.
    `file`: the definitions file, which a `schema_file` is relative to."""
    if s.format == "json":
        return dict(s.schema_ or {}), None
    schema_file = (
        str((Path(file).parent / s.schema_file).resolve()) if s.schema_file is not None else None
    )
    registry = s.schema_registry
    url = (registry.url or os.environ.get(REGISTRY_URL_VARIABLE)) if registry else None
    if registry is not None and url is None and schema_file is None:
        issues.append(
            (
                f"{path}.schema_registry.url",
                f"no url, and {REGISTRY_URL_VARIABLE} is not set (give a `schema_file` too "
                "for `feature-service up` to start a registry for it)",
            )
        )
        return None, None
    fmt = SourceFormat(
        s.format,
        schema_file=schema_file,
        registry_url=url.rstrip("/") if url else None,
        subject=registry.subject if registry else None,
        message=s.message,
    )
    where = f"{path}.schema_file" if schema_file else f"{path}.schema_registry"
    try:
        codec = codec_of(fmt)
    except CodecError as exc:
        issues.append((where, str(exc)))
        return None, None
    except ImportError as exc:
        issues.append(
            (
                f"{path}.format",
                f"format {s.format} needs the `formats` extra (pip install "
                f"'feature-service[formats]'): {exc}",
            )
        )
        return None, None
    if s.schema_ is None:
        schema = dict(codec.column_types)
    else:
        schema = dict(s.schema_)
        problems = schema_mismatches(codec, schema)
        for column, problem in problems:
            issues.append((f"{path}.schema.{column}", f"{column!r} {problem}"))
        if problems:
            return None, None
    if s.timestamp_field not in schema:
        issues.append(
            (
                f"{path}.timestamp_field",
                f"{s.timestamp_field!r} is not a column of the {s.format} schema "
                f"({', '.join(schema) or 'none'})",
            )
        )
        return None, None
    return schema, fmt
