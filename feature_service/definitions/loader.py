"""Load a YAML file or a folder of them into a checked `Registry`.

>>> from pathlib import Path
>>> registry = load_definitions(Path("definitions"))  # doctest: +SKIP
>>> sorted(registry.feature_views)  # doctest: +SKIP
['customer_txn', 'merchant_txn']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from feature_service.definitions.model import DefinitionsFile
from feature_service.definitions.registry import (
    DefinitionError,
    DefinitionIssue,
    Registry,
    build_registry,
)

YAML_SUFFIXES = (".yaml", ".yml")


def definition_files(path: Path) -> list[Path]:
    """The YAML files under `path` (a file, or a folder searched recursively), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DefinitionError([DefinitionIssue(str(path), "", "no such file or folder")])
    files = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
    if not files:
        raise DefinitionError(
            [DefinitionIssue(str(path), "", "no definition files (*.yaml, *.yml) found")]
        )
    return files


def load_definitions(path: Path | str) -> Registry:
    """Parse, resolve and check every definitions file under `path`.

    Raises DefinitionError listing every problem with its file and path inside it.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    unreadable: list[DefinitionIssue] = []
    for file in definition_files(path):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            unreadable.append(DefinitionIssue(str(file), "", f"not UTF-8 text ({exc.reason})"))
            continue
        except OSError as exc:  # e.g. removed or unreadable since the folder was listed
            unreadable.append(DefinitionIssue(str(file), "", f"cannot be read ({exc.strerror})"))
            continue
        texts[file.name if file == path else str(file.relative_to(path))] = text
    if unreadable:
        raise DefinitionError(unreadable)
    return load_definitions_texts(texts, path)


def load_definitions_texts(texts: Mapping[str, str], path: Path | str) -> Registry:
    """The registry of files given by their texts, by path relative to `path` (the
    folder they belong in, or the single file), as `Registry.texts` holds them: how
    definitions recorded elsewhere (`online.accepted_definitions`) are run. Problems are
    named with the file's path under `path`.
    """
    path = Path(path)
    issues: list[DefinitionIssue] = []
    parsed: list[tuple[str, DefinitionsFile]] = []
    for relative, text in texts.items():
        name = str(path) if path.name == relative and not path.is_dir() else str(path / relative)
        try:
            parsed.append((name, parse_definitions_text(text, name)))
        except DefinitionError as exc:
            issues.extend(exc.issues)
    if issues:
        raise DefinitionError(issues)
    registry = build_registry(parsed)
    registry.texts = dict(texts)
    return registry


def parse_definitions_text(text: str, name: str = "<string>") -> DefinitionsFile:
    """Parse one file's text; raise DefinitionError naming `name` and the path."""
    try:
        return _parse(text, name)
    except (RecursionError, MemoryError):  # YAML nested thousands deep: a clear refusal
        raise DefinitionError(
            [DefinitionIssue(name, "", "nested too deeply to read (lists or mappings in a row)")]
        ) from None


def _parse(text: str, name: str) -> DefinitionsFile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(
            [DefinitionIssue(name, where, f"not valid YAML: {problem}")]
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(
            [DefinitionIssue(name, "", "the top level must be a mapping of sections")]
        )
    try:
        return DefinitionsFile.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(
            [DefinitionIssue(name, _format_loc(err["loc"]), _message(err)) for err in exc.errors()]
        ) from None


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("schema" if part == "schema_" else part)
    return out


def _message(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if err["type"] in ("string_pattern_mismatch",):
        message = f"{err['input']!r} is not a valid name (letters, digits and _)"
    return message
