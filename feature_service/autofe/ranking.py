"""Rank candidates by their point-in-time association with a label; keep the best.

`generate --label COLUMN` (a label on each event of the sample: a chargeback flag on a
transaction) or `--labels FILE` (rows of entity, time and label: a churn date) turns
the pruning's cut from "the simplest first" into "the most predictive first":

1. **Label rows**: one per labelled event (its entities, its time, its label), or one
   per row of the file. Events the worker would refuse give none.
2. **Point-in-time values**: every candidate that survived pruning is evaluated at each
   row with the project's own training-set code (`offline.historical`, over the sample
   held as an in-memory event log, `offline.buckets.TableLog`, with the watermarks the
   worker would have seen), *just before* the row's time (`BEFORE_S`, 1 µs): only
   events strictly earlier count, so neither the labelled event nor anything after it
   leaks into its own features (what a model scoring the event before ingesting it
   would be served).
3. **Score**: rows are split by time, the earlier `1 - HELD_OUT` (70%) to fit and the
   later 30% held out. A binary label is scored by a candidate's held-out ROC AUC,
   with its direction (and where its nulls go) chosen on the earlier part, so the
   score says how well the candidate alone would have ranked the future's positives
   (0.5 is no better than chance); a numeric label with more values by the held-out
   |Spearman correlation|. Univariate scores are cheap (one sort per candidate) and
   need no model. A value that is not a number (`frequent_k`'s map of the most
   frequent values) is scored by the label rate, on the earlier rows, of what it holds
   (the map's keys): how well the values it takes tell the later rows apart.
4. **Keep**: candidates in score order, skipping one whose values follow an already
   kept one too closely (|Spearman| above `REDUNDANT`, 0.9, on the earlier rows) so
   the kept set is not ten windows of the same count; up to `--max-features` (the
   skipped ones fill the remaining places if the others run out), a derived feature
   (a share) with the features it reads (`pruning.with_inputs`).

The same engine gives pruning its values (`plan.generate`, just before sampled events),
so every candidate, whatever its kind, is judged on the values it would be served.

>>> scores = np.array([0.1, 0.4, 0.35, 0.9])
>>> labels = np.array([0, 0, 1, 1])
>>> round(auc(scores, labels), 2)
0.75
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from feature_service.autofe.dfs import Candidate
from feature_service.autofe.pruning import Decision, comparable, with_inputs
from feature_service.autofe.types import (
    DOMINANT_SHARE,
    SampleProfile,
    accepted_events,
    event_times,
)

# Features are evaluated this long before a label's time: only earlier events count.
BEFORE_S = 1e-6
# The later share of label rows (by time) on which candidates are scored.
HELD_OUT = 0.3
# A candidate this rank-correlated with one kept before it adds nothing new.
REDUNDANT = 0.9
# Label rows to rank on at most (a seeded random subset beyond).
MAX_ROWS = 50_000
TIME_COLUMN = "event_timestamp"
LABEL_COLUMN = "label"
_SOURCE = "sample"


@dataclass(frozen=True)
class Ranking:
    """How candidates were ranked: the label, its rows, the metric and the split."""

    label: str
    rows: int
    positives: int | None  # binary labels: rows with the positive class
    metric: str  # "AUC" or "|Spearman|"
    held_out: int


def label_rows_from_column(
    frame: pd.DataFrame, profile: SampleProfile, column: str
) -> pd.DataFrame:
    """Label rows from a label column of the sample: the views' keys (entities and
    links), `event_timestamp` (epoch seconds) and `label` of every accepted event whose
    label is not null."""
    keep = accepted_events(frame, profile) & frame[column].notna().to_numpy()
    rows = frame.loc[keep, list(profile.keys)].reset_index(drop=True)
    rows[TIME_COLUMN] = profile.event_ts[keep]
    rows[LABEL_COLUMN] = frame.loc[keep, column].to_numpy()
    return rows


def read_labels(path: Path, entities: Sequence[str], timestamp: str) -> pd.DataFrame:
    """Label rows from a file (JSONL, CSV or Parquet): the `--entity` columns, a time
    column (`event_timestamp` or the sample's timestamp name) and a `label` column.

    ValueError names what is missing."""
    from feature_service.autofe.sampling import read_sample

    frame = read_sample(path).frame
    missing = [c for c in (*entities, LABEL_COLUMN) if c not in frame.columns]
    time = next((c for c in (TIME_COLUMN, timestamp) if c in frame.columns), None)
    if time is None:
        missing.append(f"{TIME_COLUMN} (or {timestamp})")
    if missing:
        raise ValueError(
            f"{path}: the labels need column(s) {', '.join(missing)} "
            f"(has {', '.join(map(str, frame.columns))})"
        )
    assert time is not None
    rows = frame[[*entities, LABEL_COLUMN]].copy()
    rows.insert(len(entities), TIME_COLUMN, event_times(frame[time], time))
    rows = rows[rows[LABEL_COLUMN].notna() & np.isfinite(rows[TIME_COLUMN])]
    return rows.dropna(subset=list(entities)).reset_index(drop=True)


def point_in_time_values(
    candidates: Sequence[Candidate],
    frame: pd.DataFrame,
    profile: SampleProfile,
    rows: pd.DataFrame,
) -> pd.DataFrame:
    """The candidates' values at each row, just before its time (`BEFORE_S`: only
    earlier events count), computed by `offline.historical` over the sample's accepted
    events: what pruning measures and ranking scores.

    `rows` has the key columns of the candidates' views and `event_timestamp` (epoch
    seconds). One column per candidate (named `<key column>:<name>` when they are of
    several views), rows in the order of `rows`.
    """
    from feature_service.offline.historical import get_historical_features

    registry, refs = _registry(candidates, profile)
    log = _sample_log(frame, profile, registry.sources[_SOURCE])
    keys = [k for k in profile.keys if any(c.entity_column == k for c in candidates)]
    entity_df = rows[keys].copy()
    entity_df[TIME_COLUMN] = rows[TIME_COLUMN].to_numpy(dtype=np.float64) - BEFORE_S
    wanted = [ref for ref, _ in refs]
    out = get_historical_features(registry, log, entity_df, wanted, full_feature_names=True)
    return pd.DataFrame({key: out[ref.replace(":", "__")].to_numpy() for ref, key in refs})


def rank(
    decisions: Sequence[Decision],
    frame: pd.DataFrame,
    profile: SampleProfile,
    rows: pd.DataFrame,
    label: str,
    max_features: int | None,
    seed: int = 0,
) -> tuple[list[Decision], Ranking]:
    """The decisions with the kept candidates re-cut by their score against the label.

    Candidates pruning dropped stay dropped; the rest get a score, and are kept in
    score order (non-redundant first) up to `max_features` (all of them without one).
    """
    if rows.empty:
        raise ValueError(f"no label rows: {label!r} is empty on every accepted event")
    if len(rows) > MAX_ROWS:
        rows = rows.sample(n=MAX_ROWS, random_state=seed)
    rows = _numeric_labels(rows).sort_values(TIME_COLUMN, kind="stable")
    rows = rows.reset_index(drop=True)
    target, metric, positives = _target(rows[LABEL_COLUMN], label)
    split = len(rows) - max(round(len(rows) * HELD_OUT), 1)
    if split < 1 or (metric == "AUC" and len(np.unique(target[split:])) < 2):
        raise ValueError(
            f"label {label!r}: too few rows to rank on ({len(rows)}; the later "
            f"{HELD_OUT:.0%} need both classes)"
        )
    out = list(decisions)
    alive = []
    for i, d in enumerate(decisions):
        if d.kept and d.candidate.entity_column not in rows.columns:
            # a link's view, ranked on label rows (a --labels file) without its key
            why = f"not ranked: the label rows have no {d.candidate.entity_column}"
            out[i] = replace(d, kept=False, reason=why)
        elif d.kept:
            alive.append(i)
    candidates = [decisions[i].candidate for i in alive]
    values = point_in_time_values(candidates, frame, profile, rows)
    matrix = [_scorable(values.iloc[:, j], target, split) for j in range(len(candidates))]
    scores = [_score(x, target, split, metric) for x in matrix]
    order = sorted(range(len(candidates)), key=lambda j: (-scores[j], j))
    chosen: list[int] = []
    redundant: dict[int, str] = {}
    early = [_ranks(x[:split]) for x in matrix]
    for j in order:
        twin = next((k for k in chosen if _redundant(early[j], early[k])), None)
        if twin is None:
            chosen.append(j)
        else:
            redundant[j] = candidates[twin].name
    preferred = chosen + [j for j in order if j in redundant]
    kept, read_by = with_inputs(preferred, candidates, max_features)
    word = metric if metric != "AUC" else "held-out AUC"
    for j, i in enumerate(alive):
        score = f"{word} {scores[j]:.3f}"
        if j in read_by:
            reason = f"kept (read by {read_by[j]}; {score})"
        elif j in kept:
            reason = f"kept ({score})"
        elif j in redundant:
            reason = f"redundant with {redundant[j]} ({score})"
        else:
            reason = f"over --max-features {max_features} ({score})"
        out[i] = replace(decisions[i], kept=j in kept, reason=reason, score=scores[j])
    ranking = Ranking(label, len(rows), positives, metric, len(rows) - split)
    return out, ranking


def auc(scores: npt.NDArray[np.float64], labels: npt.NDArray[Any]) -> float:
    """ROC AUC of `scores` for binary `labels` (1 = positive): the chance that a random
    positive scores above a random negative, ties counting half (Mann-Whitney U)."""
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


# ----------------------------------------------------------------------- scoring


def _target(label: pd.Series, name: str) -> tuple[npt.NDArray[np.float64], str, int | None]:
    """The label as numbers, the metric, and the positives of a binary label."""
    values = label.to_numpy()
    distinct = pd.unique(values)
    if len(distinct) < 2:
        raise ValueError(f"label {name!r} has one value ({distinct[0]!r}) on every row")
    if len(distinct) == 2:
        # the larger value is the positive class (True, 1, "yes" over "no")
        positive = max(distinct, key=lambda v: (str(type(v)), v))
        target = (values == positive).astype(np.float64)
        return target, "AUC", int(target.sum())
    numbers = pd.to_numeric(label, errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(numbers)):
        raise ValueError(
            f"label {name!r} must be binary (two values) or numeric; it has "
            f"{len(distinct)} values such as {distinct[0]!r}"
        )
    return numbers, "|Spearman|", None


def _numeric_labels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of a numeric label without the few whose label is not a number (as the
    worker refuses a few bad values of a column: `types.DOMINANT_SHARE`)."""
    label = rows[LABEL_COLUMN]
    if label.nunique() <= 2 or pd.api.types.is_numeric_dtype(label):
        return rows
    numbers = pd.to_numeric(label, errors="coerce")
    readable = numbers.notna() & np.isfinite(numbers.astype(np.float64))
    if readable.mean() < DOMINANT_SHARE:
        return rows  # not a numeric label: `_target` says so
    return rows[readable].assign(**{LABEL_COLUMN: numbers[readable].astype(np.float64)})


def _scorable(
    column: pd.Series, target: npt.NDArray[np.float64], split: int
) -> npt.NDArray[np.float64]:
    """A candidate's values as numbers to score: numbers as they are; other values (a
    map of the most frequent values, a list) by what they hold (a map's keys, a list's
    items), each replaced by the mean label of the earlier rows holding the same (the
    earlier rows' mean where none did), so that its score says how well the label
    rates of the earlier rows rank the later ones."""
    numbers = comparable(column)
    if numbers.dtype != object:
        return numbers.to_numpy(np.float64)
    held = [None if v is None else _held(v) for v in column.to_numpy()]
    codes, _ = pd.factorize(pd.Series(held, dtype=object), use_na_sentinel=True)
    early = pd.DataFrame({"code": codes[:split], "y": target[:split]})
    rates = early[early["code"] >= 0].groupby("code")["y"].mean()
    base = float(target[:split].mean()) if split else 0.0
    out = pd.Series(codes).map(rates).to_numpy(np.float64)
    out[np.isnan(out) & (codes >= 0)] = base
    return out


def _held(value: Any) -> str:
    """What a non-numeric value holds, as text: a map's keys, a list's items, in order."""
    if isinstance(value, dict):
        value = list(value)
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, default=str)


def _score(
    x: npt.NDArray[np.float64], target: npt.NDArray[np.float64], split: int, metric: str
) -> float:
    """The held-out score of one candidate (rows `split:`), its direction and the place
    of its nulls (lowest or highest) chosen on the earlier rows."""
    if metric == "AUC":
        best, best_fit = 0.5, -1.0
        for nulls in (-np.inf, np.inf):
            filled = np.where(np.isnan(x), nulls, x)
            fit = auc(filled[:split], target[:split])
            for sign in (1.0, -1.0):
                if sign * (fit - 0.5) > best_fit:
                    best_fit = sign * (fit - 0.5)
                    held = auc(sign * filled[split:], target[split:])
                    best = held
        return best
    later = x[split:]
    present = np.isfinite(later)
    if present.sum() < 3 or np.nanstd(later) == 0:
        return 0.0
    a = pd.Series(later[present]).rank().to_numpy()
    b = pd.Series(target[split:][present]).rank().to_numpy()
    corr = float(np.corrcoef(a, b)[0, 1]) if b.std() > 0 else 0.0
    return abs(corr) if math.isfinite(corr) else 0.0


def _ranks(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Ranks with nulls lowest, for rank correlations between candidates."""
    return pd.Series(np.where(np.isnan(x), -np.inf, x)).rank().to_numpy()


def _redundant(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> bool:
    if a.std() == 0 or b.std() == 0:
        return False
    corr = float(np.corrcoef(a, b)[0, 1])
    return math.isfinite(corr) and abs(corr) > REDUNDANT


# -------------------------------------------------------- the sample as a store


def _registry(
    candidates: Sequence[Candidate], profile: SampleProfile
) -> tuple[Any, list[tuple[str, str]]]:
    """A registry of the candidates alone (one view per key column, entity or link,
    over a source of the sample's schema; a derived feature's inputs with it), and the
    (`view:feature` reference, column key) of each."""
    from feature_service.definitions.model import DefinitionsFile
    from feature_service.definitions.registry import build_registry

    several = len({c.entity_column for c in candidates}) > 1
    entities, views = [], []
    refs: list[tuple[str, str]] = []
    for n, column in enumerate(profile.keys):
        mine = [c for c in candidates if c.entity_column == column]
        features = {c.name: c for c in mine}
        for c in mine:
            features.update((i.name, i) for i in c.inputs if i.name not in features)
        entity, view = f"entity_{n}", f"view_{n}"
        entities.append({"name": entity, "join_key": column})
        if mine:
            views.append(
                {
                    "name": view,
                    "source": _SOURCE,
                    "entity": entity,
                    "features": [c.definition() for c in features.values()],
                }
            )
        refs += [(f"{view}:{c.name}", f"{column}:{c.name}" if several else c.name) for c in mine]
    source = {
        "name": _SOURCE,
        "topic": _SOURCE,
        "timestamp_field": profile.timestamp,
        "schema": profile.schema,
        "max_future": "none",
    }
    file = DefinitionsFile.model_validate(
        {"entities": entities, "sources": [source], "feature_views": views}
    )
    return build_registry([("<candidates>", file)]), refs


def _sample_log(frame: pd.DataFrame, profile: SampleProfile, source: Any) -> Any:
    """The sample's accepted events as an in-memory offline log of source `sample`: one
    partition in sample (arrival) order, with the watermark before each event, so late
    events are left out as the worker leaves them out."""
    from feature_service.offline.buckets import TableLog
    from feature_service.offline.event_log import arrow_schema
    from feature_service.stream.source_processor import watermarks_before

    keep = accepted_events(frame, profile)
    ts = profile.event_ts[keep]
    schema = arrow_schema(source)
    arrays = []
    for field in schema:
        if field.name == "event_ts" or field.name == profile.timestamp:
            arrays.append(pa.array(ts, type=field.type))
        elif field.name == "_partition":
            arrays.append(pa.array(np.zeros(ts.size, dtype=np.int32)))
        elif field.name == "_offset":
            arrays.append(pa.array(np.arange(ts.size, dtype=np.int64)))
        elif field.name == "_watermark":
            arrays.append(pa.array(watermarks_before(ts, float("-inf"))))
        else:
            arrays.append(_arrow_column(frame[field.name].to_numpy()[keep], field.type))
    return TableLog({_SOURCE: pa.Table.from_arrays(arrays, schema=schema)})


def _arrow_column(values: npt.NDArray[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_string(kind):
        values = np.asarray(
            [v if v is None or isinstance(v, str) else str(v) for v in values], dtype=object
        )
    elif pa.types.is_floating(kind) or pa.types.is_integer(kind):
        values = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
    elif pa.types.is_boolean(kind):
        values = pd.Series(values, dtype="boolean").to_numpy(dtype=object, na_value=None)
    return pa.array(values, type=kind, from_pandas=True)
