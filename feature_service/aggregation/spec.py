"""What the online state and the training sets need to know about a feature.

The registry's `Feature` (``feature_service.definitions.registry``) already has this
shape; `FeatureSpec` is a small stand-alone version for tests and tools. The state never
calls `where`: the caller evaluates it and passes one boolean per feature with each event.

>>> FeatureSpec("amount_sum_1h", "sum", "amount", 3600).resolved_hop
60
>>> FeatureSpec("n", "count").is_lifetime
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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

    def __post_init__(self) -> None:
        check_feature(self)

    @property
    def is_lifetime(self) -> bool:
        return self.window_s is None

    @property
    def resolved_hop(self) -> int | None:
        """The hop in force: `hop_s`, or the default hop of the window."""
        return None if self.window_s is None else resolve_hop(self.window_s, self.hop_s)


def check_feature(feature: FeatureLike) -> None:
    """ValueError unless `feature` is well formed (known aggregation, column, hop)."""
    agg = AGGREGATIONS.get(feature.aggregation)
    if agg is None:
        raise ValueError(f"{feature.name}: unknown aggregation {feature.aggregation!r}")
    if agg.needs_column and feature.column is None:
        raise ValueError(f"{feature.name}: {feature.aggregation} needs a column")
    if feature.window_s is None:
        if feature.hop_s is not None:
            raise ValueError(f"{feature.name}: a hop needs a window")
    else:
        resolve_hop(feature.window_s, feature.hop_s)
