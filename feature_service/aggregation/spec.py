"""What the online state and the training sets need to know about a feature.

The registry's `Feature` (``feature_service.definitions.registry``) already has this
shape; `FeatureSpec` is a small stand-alone version for tests and tools. The state never
calls `where`: the caller evaluates it and passes one boolean per feature with each event.

>>> FeatureSpec("amount_sum_1h", "sum", "amount", 3600).resolved_hop
60
>>> FeatureSpec("n", "count").is_lifetime
True
>>> aggregation_of(FeatureSpec("last_3", "last_k", "amount", params={"k": 3})).params["k"]
3
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from feature_service.aggregation.base import Aggregation, Params, as_params
from feature_service.aggregation.registry import AGGREGATIONS
from feature_service.aggregation.windows import resolve_hop


class FeatureLike(Protocol):
    """The attributes of a feature that aggregation reads."""

    @property
    def name(self) -> str: ...

    @property
    def aggregation(self) -> str: ...

    @property
    def column(self) -> str | None: ...

    @property
    def window_s(self) -> int | None: ...

    @property
    def hop_s(self) -> int | None: ...

    @property
    def params(self) -> Params: ...


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: an aggregation of a column over a window (None: lifetime).

    `hop_s` None takes the default hop of the window. The online state never calls
    `where`; it only compares it (or its ``text``) to let features with the same filter
    share aggregation state, and takes each event's per-feature results as `passes`.

    >>> FeatureSpec("amount_max_1d", "max", "amount", window_s=86400).resolved_hop
    3600
    >>> FeatureSpec("bad", "sum")
    Traceback (most recent call last):
    ...
    ValueError: bad: sum needs a column
    """

    name: str
    aggregation: str
    column: str | None = None
    window_s: int | None = None
    hop_s: int | None = None
    where: Callable[..., Any] | None = None
    params: Params = ()
    """Its aggregation's parameters (a mapping is accepted, kept as sorted pairs)."""

    def __post_init__(self) -> None:
        given: Mapping[str, Any] | Params = self.params
        object.__setattr__(self, "params", as_params(given))
        check_feature(self)

    @property
    def is_lifetime(self) -> bool:
        return self.window_s is None

    @property
    def resolved_hop(self) -> int | None:
        """The hop in force: `hop_s`, or the default hop of the window."""
        return None if self.window_s is None else resolve_hop(self.window_s, self.hop_s)


def aggregation_of(feature: FeatureLike) -> Aggregation:
    """The aggregation of `feature`, bound to its parameters (`Aggregation.bind`,
    cached): what every evaluation of the feature (online state, training sets,
    parity, export) uses. ValueError for an unknown one or bad parameters."""
    agg = AGGREGATIONS.get(feature.aggregation)
    if agg is None:
        raise ValueError(f"{feature.name}: unknown aggregation {feature.aggregation!r}")
    return agg.bind(getattr(feature, "params", ()))


def check_feature(feature: FeatureLike) -> None:
    """ValueError unless `feature` is well formed (known aggregation and parameters,
    column, hop)."""
    try:
        agg = aggregation_of(feature)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(
            message if message.startswith(f"{feature.name}:") else f"{feature.name}: {message}"
        ) from None
    if agg.needs_column and feature.column is None:
        raise ValueError(f"{feature.name}: {feature.aggregation} needs a column")
    if feature.window_s is None:
        if feature.hop_s is not None:
            raise ValueError(f"{feature.name}: a hop needs a window")
    else:
        resolve_hop(feature.window_s, feature.hop_s)
