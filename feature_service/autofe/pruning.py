"""Drop candidates the sample shows to be useless, and cut to --max-features.

Measured on the candidates' values just before sampled events (rows,
`plan.sample_cutoffs`), computed by our own engine (`ranking.point_in_time_values`):

1. always null on the sample (e.g. a std over windows that never hold two events);
2. constant: one distinct value (e.g. the distinct zip codes of a customer, always 1;
   a map of the most frequent values counts as one value); for a candidate of a
   column, leaving out the value of a window without values of it
   (`Aggregation.empty_value`: 0 for a distinct count), which the window's count
   tells already (a count of events, filtered or not, keeps its zeros: they are news);
3. near-duplicate: |Pearson correlation| above `threshold` (0.99) with a candidate of
   the same view kept before it, over the rows where both have a value (e.g. a 7d count
   on a sample that spans two days equals the 1d count); numbers only;
4. over the limit: `max_features` in priority order (recency, frequency, amounts,
   breadth, flags, per-value counts, distribution; shorter windows first), round-robin
   over views so that every entity keeps its most basic features.

Candidates are judged in priority order, so of two duplicates the simpler one stays. A
derived feature (a share) is kept with the features it reads (`Candidate.inputs`),
even one that the rules above dropped, and counts them against the limit
(`with_inputs`).

>>> import pandas as pd
>>> from feature_service.autofe.dfs import Candidate
>>> c = [Candidate(n, "user", "count", None, 3600, None, "frequency", "", None)
...      for n in ("a", "b", "c")]
>>> m = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 4, 6, 8, 11], "c": [5] * 5})
>>> for d in prune(c, {"user": m}):
...     print(d.candidate.name, d.kept, d.reason)
a True kept
b False near-duplicate of a (|corr| 0.996)
c False constant (5) on the sample
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from feature_service.aggregation.registry import aggregation
from feature_service.autofe.dfs import Candidate

DEFAULT_THRESHOLD = 0.99
# Correlations over fewer rows than this prove nothing: the pair is kept.
_MIN_OVERLAP = 5


@dataclass(frozen=True)
class Decision:
    candidate: Candidate
    kept: bool
    reason: str
    score: float | None = None  # the association with --label (`ranking`), if ranked


def prune(
    candidates: Sequence[Candidate],
    matrices: Mapping[str, pd.DataFrame] | None,
    max_features: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Decision]:
    """One decision per candidate, in the order of `candidates`.

    `matrices` maps an entity column to the candidates' values (one column per name);
    None skips the measured rules (only `max_features` applies).
    """
    verdicts: dict[int, str] = {}
    survivors: dict[str, list[int]] = {}
    for entity in dict.fromkeys(c.entity_column for c in candidates):
        indices = [i for i, c in enumerate(candidates) if c.entity_column == entity]
        if matrices is None:
            survivors[entity] = indices
            continue
        matrix = matrices[entity]
        values = {i: comparable(matrix[candidates[i].name]) for i in indices}
        kept: list[int] = []
        for i in indices:
            reason = _useless(values[i], _empty_value(candidates[i]))
            if reason is None:
                reason = _duplicate(i, values, kept, candidates, threshold)
            if reason is None:
                kept.append(i)
            else:
                verdicts[i] = reason
        survivors[entity] = kept
    chosen, read_by = with_inputs(_round_robin(list(survivors.values())), candidates, max_features)
    out = []
    for i, c in enumerate(candidates):
        if i in read_by:
            alone = f"; else {verdicts[i]}" if i in verdicts else ""
            out.append(Decision(c, True, f"kept (read by {read_by[i]}{alone})"))
        elif i in chosen:
            out.append(Decision(c, True, "kept"))
        else:
            out.append(Decision(c, False, verdicts.get(i, f"over --max-features {max_features}")))
    return out


def with_inputs(
    order: Sequence[int], candidates: Sequence[Candidate], limit: int | None
) -> tuple[set[int], dict[int, str]]:
    """The candidates (indices) kept when taken in `order` up to `limit`, each with the
    inputs it reads (a derived feature's); one that does not fit with its inputs is
    passed over for the next. Also: the inputs kept only for a derived feature, with
    its name.

    >>> count = Candidate("n", "user", "count", None, 3600, None, "frequency", "")
    >>> view = Candidate("n_home", "user", "count", None, 3600, "page == 'home'", "per-value", "")
    >>> share = Candidate("home_share", "user", None, None, 3600, None, "distribution", "",
    ...                   expression="n_home / n", inputs=(view, count))
    >>> with_inputs([2, 0], [count, view, share], 3)
    ({0, 1, 2}, {1: 'home_share', 0: 'home_share'})
    >>> with_inputs([2, 0], [count, view, share], 2)
    ({0}, {})
    """
    index = {(c.entity_column, c.name): i for i, c in enumerate(candidates)}
    taken: set[int] = set()
    read_by: dict[int, str] = {}
    for i in order:
        if i in taken:
            continue
        reads = [index[c.entity_column, c.name] for c in candidates[i].inputs]
        needed = [i, *(j for j in reads if j not in taken)]
        if limit is not None and len(taken) + len(needed) > limit:
            continue
        taken.update(needed)
        read_by.update((j, candidates[i].name) for j in needed[1:])
    return taken, read_by


def comparable(column: pd.Series) -> pd.Series:
    """A candidate's values as numbers (NaN for null), or, for values that are not
    numbers (a map, a list), as their JSON text (None for null)."""
    values = column.to_numpy()
    if any(isinstance(v, dict | list | tuple | np.ndarray) for v in values):
        return pd.Series([_text(v) for v in values], dtype=object)
    return pd.to_numeric(pd.Series(values).astype(float), errors="coerce")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, sort_keys=True, default=str)


def _empty_value(candidate: Candidate) -> Any:
    """The value of a candidate of a column over a window without values of it (None:
    null, or not a candidate of a column)."""
    if candidate.aggregation is None or candidate.column is None:
        return None
    return aggregation(candidate.aggregation).bind(candidate.params).empty_value(0.0)


def _useless(values: pd.Series, empty: Any = None) -> str | None:
    present = values.dropna()
    if present.empty:
        return "always null on the sample"
    if empty is not None and present.dtype != object and bool((present != empty).any()):
        present = present[present != empty]
    if present.nunique() == 1:
        first = present.iloc[0]
        shown = _short(float(first)) if isinstance(first, float | int | np.number) else first
        return f"constant ({shown}) on the sample"
    return None


def _duplicate(
    i: int,
    values: Mapping[int, pd.Series],
    kept: list[int],
    candidates: Sequence[Candidate],
    threshold: float,
) -> str | None:
    if values[i].dtype == object:
        return None  # maps and lists: no correlation
    x = values[i].to_numpy(np.float64)
    for j in kept:
        if values[j].dtype == object:
            continue
        y = values[j].to_numpy(np.float64)
        both = ~(np.isnan(x) | np.isnan(y))
        if both.sum() < _MIN_OVERLAP:
            continue
        a, b = x[both], y[both]
        if np.std(a) == 0 or np.std(b) == 0:
            continue
        corr = float(np.corrcoef(a, b)[0, 1])
        if math.isfinite(corr) and abs(corr) > threshold:
            return f"near-duplicate of {candidates[j].name} (|corr| {abs(corr):.3f})"
    return None


def _round_robin(groups: list[list[int]]) -> list[int]:
    out: list[int] = []
    for position in range(max((len(g) for g in groups), default=0)):
        out.extend(g[position] for g in groups if position < len(g))
    return out


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
