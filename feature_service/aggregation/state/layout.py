"""What a view's online state stores of each event, and how its features read it:
`StateLayout`, built once per view, and its fingerprint (a state written by another
layout is refused)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from feature_service.aggregation.base import Aggregation
from feature_service.aggregation.spec import FeatureLike, aggregation_of, check_feature
from feature_service.aggregation.window_events import Float
from feature_service.aggregation.windows import (
    check_levels,
    default_hop,
    hop_start,
    hop_starts,
)

BINARY_KINDS = frozenset({"float", "timestamp"})
"""Schema types stored packed as float64 (NaN: null); others go to the JSON header."""

LIFETIME_ONLY_LEVELS: tuple[int, ...] = (60, 3600)


def _filter_key(feature: FeatureLike) -> Hashable | None:
    where = getattr(feature, "where", None)
    if where is None:
        return None
    return getattr(where, "text", where)


class StateLayout:
    """What a view's state stores and how it is evaluated: built once per view.

    `features` are `FeatureSpec`s or the registry's `Feature`s; `kinds` maps columns to
    their schema type (columns of type float/timestamp are packed as float64; others,
    and columns without a kind, are kept as JSON values). `retention_s` (default: the
    longest window) is how far behind the watermark events are kept.

    >>> from feature_service.aggregation.spec import FeatureSpec
    >>> layout = StateLayout([FeatureSpec("s", "sum", "x", 3600)], {"x": "float"})
    >>> layout.record.names, layout.coarsest, layout.retention_s
    (('ts', 'seq', 'witness', 'x'), 60, 3600)
    """

    def __init__(
        self,
        features: Sequence[FeatureLike],
        kinds: Mapping[str, str] | None = None,
        *,
        retention_s: int | None = None,
    ) -> None:
        if not features:
            raise ValueError("a layout needs at least one feature")
        self.features: tuple[FeatureLike, ...] = tuple(features)
        self.names: tuple[str, ...] = tuple(f.name for f in self.features)
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be unique within a view")
        for f in self.features:
            check_feature(f)
        self.aggs: tuple[Aggregation, ...] = tuple(aggregation_of(f) for f in features)
        self.windows: tuple[tuple[int, int] | None, ...] = tuple(
            None
            if f.window_s is None
            else (f.window_s, f.hop_s if f.hop_s is not None else default_hop(f.window_s))
            for f in self.features
        )
        hops = {w[1] for w in self.windows if w is not None}
        self.levels: tuple[int, ...] = check_levels(hops or LIFETIME_ONLY_LEVELS)
        self.coarsest = self.levels[-1]
        self.max_window: int = max((w[0] for w in self.windows if w is not None), default=0)
        retention = self.max_window if retention_s is None else retention_s
        if not isinstance(retention, int) or retention < self.max_window:
            raise ValueError(
                f"retention_s must be a whole number of seconds >= the longest window "
                f"({self.max_window}), not {retention!r}"
            )
        self.retention_s: int = retention
        self.lifetime: tuple[int, ...] = tuple(i for i, w in enumerate(self.windows) if w is None)
        self.witnessed: tuple[int, ...] = tuple(
            i for i in self.lifetime if self.aggs[i].keeps_witnesses
        )
        """Lifetime features whose compacted events are represented by witnesses."""
        self.based: tuple[int, ...] = tuple(i for i in self.lifetime if i not in self.witnessed)
        """Lifetime features whose compacted events are folded into the base IRs."""

        filters: list[Hashable] = []
        feature_filter: list[int | None] = []
        for f in self.features:
            key = _filter_key(f)
            if key is None:
                feature_filter.append(None)
                continue
            if key not in filters:
                filters.append(key)
            feature_filter.append(filters.index(key))
        self.feature_filter: tuple[int | None, ...] = tuple(feature_filter)
        """Index of each feature's `where` among the view's distinct filters (None: none)."""
        self.folds: tuple[_Fold, ...] = tuple(
            _Fold(
                f.name,
                self.aggs[i],
                self.windows[i],
                feature_filter[i],
                f.column,
                self.based.index(i) if i in self.based else -1,
            )
            for i, f in enumerate(self.features)
        )
        """What the one-entity evaluation reads of each feature, looked up once."""
        self.filter_feature: tuple[int, ...] = tuple(
            feature_filter.index(k) for k in range(len(filters))
        )
        """First feature of each filter: its column of `passes` is the filter's."""
        self.takes_all = any(k is None for k in feature_filter)
        """Some feature has no filter: every event is kept."""

        self.columns: tuple[str, ...] = tuple(
            sorted({f.column for f in self.features if f.column is not None})
        )
        given = dict(kinds or {})
        self.kinds: dict[str, str | None] = {c: given.get(c) for c in self.columns}
        self.binary: tuple[str, ...] = tuple(
            c for c in self.columns if given.get(c) in BINARY_KINDS
        )
        self.json_columns: tuple[str, ...] = tuple(c for c in self.columns if c not in self.binary)
        self.record = np.dtype(
            [
                ("ts", "<f8"),
                ("seq", "<i8"),
                ("witness", "u1"),
                *[(f"w{k}", "u1") for k in range(len(filters))],
                *[(c, "<f8") for c in self.binary],
                *[(f"d{j}", "<u4") for j in range(len(self.json_columns))],
            ]
        )
        self.filter_fields = tuple(f"w{k}" for k in range(len(filters)))
        self.code_fields = tuple(f"d{j}" for j in range(len(self.json_columns)))
        description = [
            [f.name, f.aggregation, f.column, *(w or (None, None)), k, *_params_of(f)]
            for f, w, k in zip(self.features, self.windows, feature_filter, strict=True)
        ]
        digest = hashlib.sha1(
            json.dumps(["F2", description, self.binary]).encode(), usedforsecurity=False
        )
        self.fingerprint: str = digest.hexdigest()[:16]

    @property
    def n_filters(self) -> int:
        return len(self.filter_feature)

    def cutoff(self, watermark: float) -> int:
        """Events below this time are folded into the base once the state is at `watermark`."""
        return hop_start(watermark - self.retention_s, self.coarsest)

    def cutoffs(self, watermarks: Float) -> Float:
        """`cutoff` of many watermarks (-inf for none)."""
        out = np.full(watermarks.shape, -np.inf)
        has = np.isfinite(watermarks)
        if has.any():
            out[has] = hop_starts(watermarks[has] - self.retention_s, self.coarsest)
        return out

    def is_late(self, ts: float, watermark: float | None) -> bool:
        """Whether an event at `ts` is refused by a state compacted at `watermark`."""
        return watermark is not None and ts < watermark - self.retention_s

    def filter_flags(self, passes: npt.ArrayLike | None, n: int) -> npt.NDArray[np.bool_]:
        """The ``(n, filters)`` pass flags from an ``(n, features)`` matrix of `where`
        results (None: every event passes)."""
        if passes is None:
            return np.ones((n, self.n_filters), dtype=np.bool_)
        per_feature = np.asarray(passes, dtype=np.bool_).reshape(n, len(self.features))
        return per_feature[:, list(self.filter_feature)]

    def member(self, feature: int, flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Which events (given their filter flags) feature number `feature` takes."""
        k = self.feature_filter[feature]
        if k is None:
            return np.ones(flags.shape[0], dtype=np.bool_)
        return flags[:, k]


def _params_of(feature: FeatureLike) -> list[Any]:
    """A feature's parameters as they enter the fingerprint (none: nothing, so the
    fingerprints of features without parameters are the ones they always were)."""
    params = getattr(feature, "params", ())
    return [[k, list(v) if isinstance(v, tuple) else v] for k, v in params] if params else []


class _Fold(NamedTuple):
    """What the one-entity evaluation reads of a feature (`StateLayout.folds`)."""

    name: str
    agg: Aggregation
    window: tuple[int, int] | None
    filter: int | None  # `StateLayout.feature_filter`
    column: str | None
    base_at: int  # its index in the base IRs (-1: not in `StateLayout.based`)


def column_kind(layout: StateLayout, column: str, values: npt.NDArray[Any]) -> str | None:
    kind = layout.kinds.get(column)
    if kind is not None:
        return kind
    if values.dtype.kind == "O" and any(isinstance(v, str) for v in values):
        return "string"
    return None
