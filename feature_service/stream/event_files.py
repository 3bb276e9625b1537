"""Read event files (JSONL, CSV, Parquet) as the raw messages to send to a topic.

JSONL lines are sent exactly as written, malformed ones included: deciding what is a
bad event is the worker's job (it dead-letters them with the reason), so a replay of a
sample exercises that path too. CSV and Parquet rows are encoded as JSON objects. For a
source with a `format` (Avro, Protobuf, JSON Schema), `encode_event_messages` writes
each event in it.

>>> sample = Path("definitions/sample/transactions.jsonl")
>>> next(read_event_messages(sample, "customer_id")).key  # doctest: +SKIP
b'c0042'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feature_service.definitions import Source

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


@dataclass(frozen=True)
class EventMessage:
    """One message to produce: its key (the entity id, if found) and its value bytes."""

    key: bytes | None
    value: bytes


def read_event_messages(
    path: Path,
    key_field: str | None,
    unreadable: Callable[[int, str], None] | None = None,
) -> Iterator[EventMessage]:
    """The messages of an event file, in file order, keyed by `key_field` when present.

    JSONL lines are sent as written: deciding what is a bad event is the worker's, which
    dead-letters it with the reason. A line nested deeper than Python's recursion limit
    (e.g. 10,000 `[`) cannot even be read for its key; it is sent unkeyed, like any
    other malformed line, and `unreadable(line_number, why)` is told, so one bad line
    never stops the others.
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported event file type {suffix or '(none)'}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if suffix in (".jsonl", ".ndjson", ".json"):
        yield from _jsonl(path, key_field, unreadable)
    else:
        yield from _table(path, key_field)


def _key(value: Any) -> bytes | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).encode()


def _jsonl(
    path: Path, key_field: str | None, unreadable: Callable[[int, str], None] | None
) -> Iterator[EventMessage]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except ValueError:
                document = None  # malformed: the worker dead-letters it
            except RecursionError:
                if unreadable is not None:
                    unreadable(number, "nested too deeply to read its key; sent as written")
                document = None
            key = _key(document.get(key_field)) if isinstance(document, dict) else None
            yield EventMessage(key, line)


def _table(path: Path, key_field: str | None) -> Iterator[EventMessage]:
    import pandas as pd

    frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    for record in frame.to_dict(orient="records"):
        clean = {k: _plain(v) for k, v in record.items()}
        yield EventMessage(_key(clean.get(key_field)), json.dumps(clean).encode())


def _plain(value: Any) -> Any:
    """JSON-able form of a pandas cell: NaN/NaT -> null, timestamps -> ISO-8601."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        try:
            import pandas as pd

            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


async def encode_event_messages(
    source: Source, messages: list[EventMessage]
) -> tuple[list[EventMessage], set[int]]:
    """The messages written in `source`'s format (Avro, Protobuf, JSON Schema;
    `stream.event_encoder`), and the positions of those that could not be: they are
    sent as written, for the worker to dead-letter with the reason, like any malformed
    line of a JSON source."""
    from feature_service.formats import CodecError
    from feature_service.stream.event_encoder import EventEncoder

    values = await EventEncoder(source).encode_json([m.value for m in messages])
    out = []
    failed = set()
    for i, (message, value) in enumerate(zip(messages, values, strict=True)):
        if isinstance(value, CodecError):
            failed.add(i)
            out.append(message)
        else:
            out.append(EventMessage(message.key, value))
    return out, failed
