"""The stored form of an entity's state: one Redis string per (view, entity), the
format described in `aggregation.state`; `decode` many at once, `encode_all`."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from feature_service.aggregation.state.events import Events, Meta, States, empty_events
from feature_service.aggregation.state.layout import StateLayout
from feature_service.aggregation.window_events import Int

MAGIC = b"F2"
"""An uncompacted state (the format of engine v2 before bounded state, unchanged)."""
MAGIC_COMPACTED = b"F3"
"""A compacted state: F2 plus the horizon ``h`` in the header and the summary after the
records."""

VERSION_DIGITS = 20

_COUNTS = struct.Struct("<II")

_HEAD = VERSION_DIGITS + len(MAGIC) + _COUNTS.size

NULL_CODE = 0xFFFFFFFF
"""The dictionary index of a null value."""


class LayoutMismatchError(ValueError):
    """A state was written by another layout of the view (features, filters, order)."""


class StaleFormatError(ValueError):
    """A stored value is not in this format (e.g. written before engine v2)."""


def decode(layout: StateLayout, blobs: Sequence[bytes | None], coded: bool = False) -> States:
    """The states of many entities from their stored values (None: no state).

    `coded` (the writer's way): the values of JSON columns are not built; each event
    holds its value's index into `States.words` instead."""
    metas: list[Meta | None] = []
    records: list[bytes] = []
    counts: list[int] = []
    dictionaries: list[list[Any]] = [[] for _ in layout.json_columns]
    offsets: list[list[int]] = [[] for _ in layout.json_columns]
    size = layout.record.itemsize
    magic_at = slice(VERSION_DIGITS, VERSION_DIGITS + len(MAGIC))
    for blob in blobs:
        if blob is None:
            metas.append(None)
            counts.append(0)
            continue
        magic = blob[magic_at]
        if magic != MAGIC and magic != MAGIC_COMPACTED:
            raise StaleFormatError(
                "the stored state is not in a format of engine v2 (F2, F3); states of "
                "engine v1 are rebuilt by replaying the topic into a fresh store "
                "(feature-service backfill), a newer format needs this service upgraded"
            )
        n, m = _COUNTS.unpack_from(blob, VERSION_DIGITS + len(MAGIC))
        header = orjson.loads(blob[_HEAD : _HEAD + m])
        if header["v"] != layout.fingerprint:
            raise LayoutMismatchError(
                f"state written by layout {header['v']}, this layout is {layout.fingerprint}"
            )
        metas.append(
            Meta(
                int(blob[:VERSION_DIGITS]),
                header.get("w"),
                header.get("l"),
                header.get("b"),
                header.get("bh"),
                header.get("o", {}),
                bool(header.get("bf")),
                header.get("h"),
                blob[_HEAD + m + n * size :] if magic == MAGIC_COMPACTED else None,
            )
        )
        counts.append(n)
        if n:
            records.append(blob[_HEAD + m : _HEAD + m + n * size])
            for j, words in enumerate(header["c"]):
                offsets[j].append(len(dictionaries[j]))
                dictionaries[j].extend(words)
    if not records:
        empty = empty_events(layout)
        if coded:
            for c in layout.json_columns:
                empty.columns[c] = np.zeros(0, dtype=np.int64)
            words = {c: np.full(1, None, dtype=object) for c in layout.json_columns}
            return States(metas, empty, words)
        return States(metas, empty)
    rec = np.frombuffer(b"".join(records), dtype=layout.record)  # one pass for all
    code = np.repeat(np.arange(len(metas), dtype=np.int64), counts)
    flags = (
        np.stack([rec[f] for f in layout.filter_fields], axis=1).astype(np.bool_)
        if layout.filter_fields
        else np.ones((rec.size, 0), dtype=np.bool_)
    )
    columns: dict[str, npt.NDArray[Any]] = {c: rec[c].copy() for c in layout.binary}
    nonzero = [k for k in counts if k]
    all_words: dict[str, npt.NDArray[Any]] = {}
    for j, c in enumerate(layout.json_columns):
        words = np.empty(len(dictionaries[j]) + 1, dtype=object)  # last: null
        words[:-1] = dictionaries[j]
        base = np.repeat(np.asarray(offsets[j], dtype=np.int64), nonzero)
        local = rec[layout.code_fields[j]].astype(np.int64)
        index = np.where(local == NULL_CODE, words.size - 1, base + local)
        all_words[c] = words
        columns[c] = index if coded else words[index]
    witness = rec["witness"].astype(np.bool_)
    events = Events(code, rec["ts"].copy(), rec["seq"].copy(), flags, columns, witness)
    return States(metas, events, all_words if coded else None)


def encode_all(
    layout: StateLayout,
    metas: Sequence[Meta],
    events: Events,
    uniques: Mapping[str, npt.NDArray[Any]],
) -> list[bytes]:
    """Blobs of entities 0..len(metas)-1 (`events` sorted by code, ts, seq; JSON
    columns as codes of `uniques`, -1 null)."""
    n = len(events)
    rec = np.empty(n, dtype=layout.record)
    rec["ts"] = events.ts
    rec["seq"] = events.seq
    rec["witness"] = events.witnesses
    for k, name in enumerate(layout.filter_fields):
        rec[name] = events.flags[:, k]
    for c in layout.binary:
        rec[c] = events.columns[c]
    size = layout.record.itemsize
    bounds_a = np.searchsorted(events.code, np.arange(len(metas) + 1))
    words_of: list[tuple[list[Any], list[int]]] = []
    for j, c in enumerate(layout.json_columns):
        local, words, starts = _dictionary(events.code, events.columns[c], uniques[c], len(metas))
        rec[layout.code_fields[j]] = local
        words_of.append((words, starts))
    raw = rec.tobytes()
    bounds = bounds_a.tolist()
    out = []
    for i, meta in enumerate(metas):
        a, b = bounds[i], bounds[i + 1]
        header: dict[str, Any] = {"v": layout.fingerprint, "l": meta.last}
        if meta.w is not None:
            header["w"] = meta.w
        if meta.base is not None:
            header["b"] = meta.base
        if meta.base_hi is not None:
            header["bh"] = meta.base_hi
        if meta.applied:
            header["o"] = meta.applied
        if meta.backfilled:
            header["bf"] = 1
        if meta.horizon is not None:
            header["h"] = meta.horizon
        header["c"] = [words[starts[i] : starts[i + 1]] for words, starts in words_of]
        head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
        compacted = meta.horizon is not None
        out.append(
            b"%020d" % meta.version
            + (MAGIC_COMPACTED if compacted else MAGIC)
            + _COUNTS.pack(b - a, len(head))
            + head
            + raw[a * size : b * size]
            + (meta.summary or b"" if compacted else b"")
        )
    return out


def _dictionary(
    code: Int, gv: Int, uniques: npt.NDArray[Any], m: int
) -> tuple[npt.NDArray[np.uint32], list[Any], list[int]]:
    """Per entity, the distinct values of a JSON column (its dictionary) and each
    event's index in its entity's dictionary (`NULL_CODE`: null): the distinct values
    of all entities, end to end, and where each entity's begin. `gv`: each event's
    value as a code of `uniques` (-1: null)."""
    local = np.full(gv.size, NULL_CODE, dtype=np.uint32)
    present = gv >= 0
    g = len(uniques) + 1
    key = code[present] * g + gv[present]
    pairs, inverse = np.unique(key, return_inverse=True)
    pair_code = pairs // g
    starts = np.searchsorted(pair_code, np.arange(m + 1))
    local[present] = (inverse.reshape(-1) - starts[code[present]]).astype(np.uint32)
    words = uniques[pairs % g].tolist()
    return local, words, starts.tolist()


def version_of(blob: bytes | None) -> str:
    """The version prefix of a stored state ('' for none), as writers compare it."""
    return "" if blob is None else blob[:VERSION_DIGITS].decode()
