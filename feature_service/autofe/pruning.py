"""Drop candidates the sample shows to be useless, and cut to --max-features.

Measured on featuretools' values of the candidates at sampled cutoff times (rows):

1. always null on the sample (e.g. a std over windows that never hold two events);
2. constant: one distinct value (e.g. the distinct zip codes of a customer, always 1);
3. near-duplicate: |Pearson correlation| above `threshold` (0.99) with a candidate of
   the same view kept before it, over the rows where both have a value (e.g. a 7d count
   on a sample that spans two days equals the 1d count);
4. over the limit: `max_features` in priority order (recency, frequency, amounts,
   breadth, flags, per-value counts; shorter windows first), round-robin over views
   so that every entity keeps its most basic features.

Candidates are judged in priority order, so of two duplicates the simpler one stays.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
        values = {
            i: pd.to_numeric(
                pd.Series(matrix[candidates[i].name].to_numpy()).astype(float), errors="coerce"
            )
            for i in indices
        }
        kept: list[int] = []
        for i in indices:
            reason = _useless(values[i])
            if reason is None:
                reason = _duplicate(i, values, kept, candidates, threshold)
            if reason is None:
                kept.append(i)
            else:
                verdicts[i] = reason
        survivors[entity] = kept
    if max_features is not None:
        ordered = _round_robin(list(survivors.values()))
        for i in ordered[max_features:]:
            verdicts[i] = f"over --max-features {max_features}"
    return [
        Decision(c, i not in verdicts, verdicts.get(i, "kept")) for i, c in enumerate(candidates)
    ]


def _useless(values: pd.Series) -> str | None:
    present = values.dropna()
    if present.empty:
        return "always null on the sample"
    if present.nunique() == 1:
        return f"constant ({_short(present.iloc[0])}) on the sample"
    return None


def _duplicate(
    i: int,
    values: Mapping[int, pd.Series],
    kept: list[int],
    candidates: Sequence[Candidate],
    threshold: float,
) -> str | None:
    x = values[i]
    for j in kept:
        y = values[j]
        both = x.notna() & y.notna()
        if both.sum() < _MIN_OVERLAP:
            continue
        a, b = x[both].to_numpy(), y[both].to_numpy()
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
