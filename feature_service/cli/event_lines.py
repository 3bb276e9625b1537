"""The messages `produce` (and `up`'s replay) send: every line of an event file.

`stream.event_files` sends JSONL lines as written and leaves deciding what is a bad
event to the worker, which dead-letters it with the reason. Reading a line's key with
the standard `json` module raises `RecursionError`, not `ValueError`, on a line nested
deeper than Python's recursion limit (e.g. 10,000 `[`), and that would end the reading
of the whole file. Here such a line is sent as written without a key, like any other
malformed line, and reported with its line number through `unreadable`; one bad line
never stops the others.

>>> for message in read_messages(Path("events.jsonl"), "customer_id", print):  # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from feature_service.stream.event_files import EventMessage, read_event_messages

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")


def read_messages(
    path: Path, key_field: str | None, unreadable: Callable[[int, str], None]
) -> Iterator[EventMessage]:
    """The messages of an event file in file order; `unreadable(line_number, why)` for a
    JSONL line whose key cannot be read at all (it is still sent, unkeyed)."""
    if path.suffix.lower() not in JSON_LINES_SUFFIXES or not path.is_file():
        yield from read_event_messages(path, key_field)  # its checks and its errors
        return
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
                unreadable(number, "nested too deeply to read its key; sent as written")
                document = None
            key = _key(document.get(key_field)) if isinstance(document, dict) else None
            yield EventMessage(key, line)


def _key(value: Any) -> bytes | None:
    """As `stream.event_files` keys a message: the entity id's text, none for null/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).encode()
