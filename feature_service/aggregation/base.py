"""The `Aggregation` base class: everything about one aggregation, declared by its class.

An aggregation (a YAML name of DESIGN.md) is a subclass in `aggregation/kinds/`, one per
file, registered in `aggregation.registry` (the only table from name to class). It has
Chronon's prepare/update/merge/finalize shape over an intermediate representation
(IR), in the spirit of river's ``river/stats``:

- ``empty()`` is the IR of no events;
- ``update(ir, ts, seq, value)`` folds in one event (a null value, None or NaN, is
  ignored, so callers pass `PRESENT` for aggregations without a column);
- ``merge(a, b)`` combines the IRs of two disjoint sets of events; it is commutative
  (bit for bit) and associative (exactly, except for the floating point sums, which
  agree to their declared tolerance `rel_tol`), so IRs merge in any order;
- ``finalize(ir, t)`` is the feature value at query time `t`.

Everything else is derived from these four (the plain path): `fold` (update over many
events), `grouped` (the IR of each group of events), `over_windows` (the value of many
windows of sorted events). A kind may override them with a faster path computing the
same value; tests/unit/test_aggregation_kinds.py holds every override of every
registered kind equal to the plain path (bit for bit, floating sums to `rel_tol`).

What a kind declares besides: the columns it takes (`needs_column`, `numeric_only`),
its parameters (`parameters`), the type of its value (`output`, `value_type`: schema
kind, Arrow and Feast types), its parity tolerance (`rel_tol`, `matches`), how the
online state's compaction keeps its lifetime value (`keeps_witnesses`, `witnesses`),
its IR's stored form (`ir_to_json`), and its value straight from the contract
(`oracle`, for tests).

IRs are plain JSON data (ints, floats, strings, None and lists of them) so they can be
stored in Redis and survive ``json.loads(json.dumps(ir))``; kinds accept tuples or lists
alike and never mutate an IR they are given.

>>> from feature_service.aggregation.registry import aggregation
>>> mean = aggregation("mean")
>>> left, right = mean.fold([1.0, 2.0], [0, 1], [10.0, 20.0]), mean.fold([3.0], [2], [60.0])
>>> mean.finalize(mean.merge(left, right), 3.0)
30.0
>>> mean.value_type("int").feast, mean.rel_tol
('Float64', 1e-09)
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from feature_service.aggregation.values import as_float_array, non_null_mask, numbers_in
from feature_service.aggregation.window_events import Float, Int, WindowEvents, pick_values
from feature_service.durations import parse_duration

IR: TypeAlias = Any
"""An intermediate representation: JSON-able data, specific to each aggregation."""

PRESENT: Final[int] = 1
"""The value to pass for an aggregation without a column (every event counts)."""


@dataclass(frozen=True)
class ValueType:
    """The type of a feature's values: its schema kind, Arrow type and `feast.types` name."""

    kind: str
    arrow: pa.DataType
    feast: str


VALUE_TYPES: Final[Mapping[str, ValueType]] = {
    "int": ValueType("int", pa.int64(), "Int64"),
    "float": ValueType("float", pa.float64(), "Float64"),
    "string": ValueType("string", pa.string(), "String"),
    "bool": ValueType("bool", pa.bool_(), "Bool"),
    "timestamp": ValueType("timestamp", pa.float64(), "Float64"),  # epoch seconds
    # a map of value -> count: keys as text (`values.value_label`), as a JSON object
    # needs; Feast's `Map` (string keys) holds it, Arrow as map<string, int64>
    "map": ValueType("map", pa.map_(pa.string(), pa.int64()), "Map"),
}
"""Value types by schema kind (the API returns timestamps as epoch seconds); a list
of one of them is `list_type`'s."""

LIST_PREFIX: Final[str] = "list:"
"""A value kind ``list:<item kind>`` is a list of values of the item kind."""


def list_type(item: str) -> ValueType:
    """The type of a list of `item` values: a JSON array in the API, an Arrow list in
    training sets, a Feast ``Array``.

    >>> vt = list_type("float")
    >>> vt.kind, str(vt.arrow), vt.feast
    ('list:float', 'list<item: double>', 'Array(Float64)')
    """
    inner = VALUE_TYPES[item]
    return ValueType(LIST_PREFIX + item, pa.list_(inner.arrow), f"Array({inner.feast})")


def value_type_of(kind: str) -> ValueType:
    """The `ValueType` of a value kind (a schema kind, ``map``, or ``list:<kind>``)."""
    if kind.startswith(LIST_PREFIX):
        return list_type(kind.removeprefix(LIST_PREFIX))
    return VALUE_TYPES[kind]


ROLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "events": "no column: the events themselves (how many, how recent, how spaced)",
        "measure": "a quantity (an amount, a duration): sums and means mean something",
        "flag": "true/false",
        "category": "a label with few enough values to count each one",
        "identifier": "a label with too many values for that (an id, a code)",
        "many_values": "an identifier with so many values that an exact count of the "
        "distinct ones would keep each of them",
    }
)
"""What a column of a sample is to `generate` (`autofe.types` gives each column its
role), and what `Proposal.roles` names: the columns an aggregation is proposed for."""


@dataclass(frozen=True)
class Proposal:
    """A feature `generate` proposes of an aggregation, for each column of one of
    `roles` (``events``: once, without a column) and each window (once, without one,
    when `lifetime`).

    `params` are the aggregation's parameters; `name` the feature name's middle part
    (``amount_<name>_1d``; default the aggregation's name; a lifetime feature is named
    `name` alone); `text` its description, a template of ``{column}``, ``{entity}``,
    ``{span}`` (``day``, ``7 days``) and the parameters; `group` the heading it is
    listed under (`autofe.dfs.GROUPS`); `tier` its priority when there are too many
    (0: the core of recency, frequency and amounts; 2: the rest).

    >>> p = Proposal(frozenset({"category"}), "distribution",
    ...              "The {entity}'s {k} most frequent {column} values.", {"k": 3}, "top3")
    >>> p.describe("category", "customer", "day")
    "The customer's 3 most frequent category values."
    """

    roles: frozenset[str]
    group: str
    text: str
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    lifetime: bool = False
    tier: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(self.roles - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")

    def describe(self, column: str | None, entity: str, span: str) -> str:
        """Its description for a column (None: ``events``), entity and window span."""
        return self.text.format(column=column, entity=entity, span=span, **self.params)


class GroupedEvents(NamedTuple):
    """Events of many groups, nulls left out (`Aggregation.grouped`)."""

    ts: npt.NDArray[np.float64]
    seq: npt.NDArray[np.int64]
    values: npt.NDArray[Any] | None  # numeric kinds: float64; None: no column
    group_ids: npt.NDArray[np.int64]
    n_groups: int


ParameterKind: TypeAlias = Literal["int", "float", "duration", "floats"]


@dataclass(frozen=True)
class Parameter:
    """A parameter of an aggregation, a key of its feature entry (e.g. ``k: 5``).

    `kind`: ``int``, ``float``, ``duration`` (``1d`` or seconds, as windows are
    written: whole seconds) or ``floats`` (a non-empty list of floats, as a tuple);
    numbers (each one, for ``floats``) lie in ``[low, high]``, or ``(low, high)`` when
    `open`. `default` None: required. `example`: a value for docs and tests.

    >>> Parameter("int", 1, 1000, example=5).check("k", 5.0)
    5
    >>> Parameter("float", 0, 1, open=True, example=0.5).check("percentile", 1)
    Traceback (most recent call last):
    ...
    ValueError: percentile must lie in (0, 1), not 1
    >>> Parameter("duration", 1, 10 * 365 * 86400, example="1d").check("half_life", "1h")
    3600
    """

    kind: ParameterKind
    low: float
    high: float
    default: Any = None
    open: bool = False
    example: Any = None
    optional: bool = False
    """Without a default, it may be left out (the kind checks what it needs instead)."""

    def check(self, name: str, value: Any) -> Any:
        """`value` checked and converted (a tuple for ``floats``); ValueError naming it."""
        if self.kind == "floats":
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{name} must be a non-empty list of numbers, not {value!r}")
            return tuple(self._number(f"{name}[{i}]", v, float) for i, v in enumerate(value))
        if self.kind == "duration":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int | str) or isinstance(value, bool):
                raise ValueError(f"{name} must be a duration such as 1h or 7d, not {value!r}")
            value = parse_duration(value)
            return self._number(name, value, int)
        return self._number(name, value, int if self.kind == "int" else float)

    def _number(self, name: str, value: Any, kind: type[int] | type[float]) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, not {value!r}")
        if kind is int and not float(value).is_integer():
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        inside = self.low < value < self.high if self.open else self.low <= value <= self.high
        if not inside:
            bounds = (
                f"({_num(self.low)}, {_num(self.high)})"
                if self.open
                else (f"[{_num(self.low)}, {_num(self.high)}]")
            )
            raise ValueError(f"{name} must lie in {bounds}, not {value!r}")
        return kind(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


Params: TypeAlias = tuple[tuple[str, Any], ...]
"""Checked parameters as sorted ``(name, value)`` pairs: hashable, so a feature and its
bound aggregation can be cached and compared."""


def as_params(given: Mapping[str, Any] | Params | None) -> Params:
    """Parameters as sorted ``(name, value)`` pairs (lists as tuples)."""
    items = dict(given or ()).items()
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in items))


class Aggregation(ABC):
    """One aggregation: a monoid over JSON-able IRs plus a finalizer (module doc).

    >>> from feature_service.aggregation.registry import aggregation
    >>> agg = aggregation("max")
    >>> agg.name, agg.needs_column, agg.numeric_only
    ('max', True, True)
    >>> agg.grouped([1.0, 2.0, 3.0], [0, 1, 2], np.array([5.0, np.nan, 7.0]), [0, 0, 2])
    [5.0, None, 7.0]
    """

    name: ClassVar[str]
    needs_column: ClassVar[bool] = True
    """False: without a column it counts every event (with one, its non-null values)."""
    numeric_only: ClassVar[bool] = False
    """It takes numeric columns only (int, float, bool)."""
    parameters: ClassVar[Mapping[str, Parameter]] = {}
    """Its parameters by name (keys of the feature entry)."""
    params: Mapping[str, Any] = MappingProxyType({})
    """The values of its parameters (`bind`); empty for the registry's unbound one."""
    output: ClassVar[str] = "float"
    """The kind of its value: "int", "float", "map", "column" (the column's own type),
    or "list" (a list of the column's values)."""
    rel_tol: ClassVar[float] = 0.0
    """0: its value is exact, the same from any evaluation order; else a floating point
    sum, equal across orders to this relative tolerance (DESIGN.md: 1e-9)."""
    featuretools: ClassVar[str | None] = None
    """The featuretools aggregation primitive that computes its value over a window
    (`generate` maps Deep Feature Synthesis' candidates onto ours with it, and uses
    featuretools' values as an independent oracle); None: none does."""
    proposals: ClassVar[tuple[Proposal, ...]] = ()
    """The features `generate` proposes of it (`registry.proposed`); none: never."""
    keeps_witnesses: ClassVar[bool] = False
    """Lifetime values over compacted events are kept by keeping a few of those events
    (`witnesses`: the first, the last, the extreme, one per distinct value) rather than
    by folding them into a stored IR."""
    compacted: ClassVar[str] = "suffix"
    """How a busy entity's compacted events keep its windowed values (`aggregation.state`,
    per hop behind the horizon): "suffix" the merge of every suffix of hops (a read
    merges one IR: for IRs of bounded size), "hops" each hop's IR (a read merges the
    window's hops: for IRs that grow with the events), "distinct" each distinct value's
    newest hop (its value depends only on which values occur: `of_distinct`)."""

    # ------------------------------------------------------------------ the algebra

    @abstractmethod
    def empty(self) -> IR:
        """The IR of no events."""

    @abstractmethod
    def update(self, ir: IR, ts: float, seq: int, value: Any) -> IR:
        """`ir` with one more event; a null `value` leaves it unchanged."""

    @abstractmethod
    def merge(self, a: IR, b: IR) -> IR:
        """The IR of the union of the (disjoint) events of `a` and `b`."""

    @abstractmethod
    def finalize(self, ir: IR, t: float) -> Any:
        """The feature value of `ir` evaluated at time `t`."""

    @abstractmethod
    def oracle(self, events: Sequence[tuple[float, int, Any]], t: float) -> Any:
        """The value at `t` of the non-null events ``(ts, seq, value)`` (value `PRESENT`
        without a column), computed straight from the contract, as plainly as possible
        (`aggregation.reference`, for tests)."""

    # ------------------------------------------------------------------ parameters

    def bind(self, given: Mapping[str, Any] | Params | None = None) -> Aggregation:
        """This aggregation with its parameters set from `given` (checked, defaults
        filled in; `check_parameters`): the one object a feature is evaluated with.
        Cached: the same parameters give the same object.

        >>> from feature_service.aggregation.registry import aggregation
        >>> agg = aggregation("last_k").bind({"k": 2})
        >>> agg.params["k"], agg is aggregation("last_k").bind({"k": 2.0})
        (2, True)
        """
        checked = self.check_parameters(dict(given or ()))
        return _bound(type(self), as_params(checked))

    def example_params(self) -> dict[str, Any]:
        """Values for its required parameters (each `Parameter.example`): for docs and
        for tests over every registered kind.

        >>> from feature_service.aggregation.registry import aggregation
        >>> aggregation("last_k").example_params(), aggregation("sum").example_params()
        ({'k': 3}, {})
        """
        return {
            key: p.example
            for key, p in self.parameters.items()
            if p.example is not None and p.default is None
        }

    def param(self, name: str) -> Any:
        """The value of parameter `name`; an unbound aggregation has none (`bind`)."""
        try:
            return self.params[name]
        except KeyError:
            raise TypeError(
                f"{self.name} is not bound to its parameters: use Aggregation.bind"
            ) from None

    # ------------------------------------------------------------------ derived

    @property
    def rounded(self) -> bool:
        """Its value is a floating point sum, equal across evaluation orders to rounding."""
        return self.rel_tol > 0

    def empty_value(self, t: float) -> Any:
        """The feature value of no events at `t`: an empty window's, an entity never seen's
        (online `NOT_FOUND` serves it, as training sets give it).

        >>> from feature_service.aggregation.registry import aggregation
        >>> aggregation("count").empty_value(5.0), aggregation("sum").empty_value(5.0)
        (0, None)
        """
        return self.finalize(self.empty(), t)

    def fold(self, ts: Sequence[float], seq: Sequence[int], values: Sequence[Any] | None) -> IR:
        """Fold `update` over events given as parallel sequences (None: no column).

        A kind may compute the same IR, bit for bit, in one tight loop."""
        ir = self.empty()
        if values is None:
            for t_, s_ in zip(ts, seq, strict=True):
                ir = self.update(ir, t_, s_, PRESENT)
        else:
            for t_, s_, v_ in zip(ts, seq, values, strict=True):
                ir = self.update(ir, t_, s_, v_)
        return ir

    def merge_all(self, irs: Iterable[IR]) -> IR:
        """Merge many IRs (folding `merge`)."""
        out = self.empty()
        for ir in irs:
            out = self.merge(out, ir)
        return out

    def grouped(
        self,
        ts: npt.ArrayLike,
        seq: npt.ArrayLike,
        values: npt.ArrayLike | None,
        group_ids: npt.ArrayLike,
        n_groups: int | None = None,
    ) -> list[IR]:
        """The IR of each group of events.

        `group_ids` are ints in ``[0, n_groups)`` (default: ``max + 1``); the result has
        one IR per group (`empty()` for groups without non-null events) and equals
        folding `update` over each group's events. `values` None means no column.
        """
        ts_a = np.asarray(ts, dtype=np.float64)
        seq_a = np.asarray(seq, dtype=np.int64)
        gid = np.asarray(group_ids, dtype=np.int64)
        if not ts_a.shape == seq_a.shape == gid.shape or ts_a.ndim != 1:
            raise ValueError("ts, seq and group_ids must be 1-d arrays of one length")
        n = int(gid.max()) + 1 if n_groups is None and gid.size else (n_groups or 0)
        if gid.size and (gid.min() < 0 or gid.max() >= n):
            raise ValueError(f"group ids must lie in [0, {n})")
        vals: npt.NDArray[Any] | None = None
        if values is not None:
            raw = np.asarray(values)
            if raw.shape != ts_a.shape:
                raise ValueError("values must have the length of ts")
            if self.numeric_only:
                vals = as_float_array(raw)
                keep = ~np.isnan(vals)
            else:
                vals = raw
                keep = non_null_mask(raw)
            if not keep.all():
                ts_a, seq_a, gid, vals = ts_a[keep], seq_a[keep], gid[keep], vals[keep]
        return self._grouped(GroupedEvents(ts_a, seq_a, vals, gid, n))

    def _grouped(self, events: GroupedEvents) -> list[IR]:
        """`grouped` over non-null events (numeric kinds get float64 values): the plain
        path, `fold` per group; a kind may override it with a vectorised one."""
        ts, seq, values, group_ids, n_groups = (
            events.ts,
            events.seq,
            events.values,
            events.group_ids,
            events.n_groups,
        )
        members: list[list[int]] = [[] for _ in range(n_groups)]
        for i, g in enumerate(group_ids.tolist()):
            members[g].append(i)
        ts_l, seq_l = ts.tolist(), seq.tolist()
        vals = None if values is None else values.tolist()
        return [
            self.fold(
                [ts_l[i] for i in m],
                [seq_l[i] for i in m],
                None if vals is None else [vals[i] for i in m],
            )
            for m in members
        ]

    def over_windows(self, events: WindowEvents, lo: Int, hi: Int, t: Float, lifetime: bool) -> Any:
        """The feature value of each window ``events[lo[i]:hi[i]]`` (positions in the
        sorted events), evaluated at ``t[i]``, as an array (`window_column`): what
        `finalize` of the window's folded IR gives. `lifetime`: every window starts at
        its entity's first event. The plain path folds each window; a kind may override
        it with numpy passes over all windows at once (training sets)."""
        ts = events.ts.tolist()
        values = None if events.values is None else events.values.tolist()
        out = []
        for a, b, t_ in zip(lo.tolist(), hi.tolist(), t.tolist(), strict=True):
            seq = list(range(a, b))  # events are in (ts, seq) order: positions keep it
            ir = self.fold(ts[a:b], seq, None if values is None else values[a:b])
            out.append(self.finalize(ir, t_))
        return self.window_column(out, events.kind)

    def window_column(self, values: list[Any], column_kind: str | None) -> Any:
        """Window values as a column of their type: float64 with NaN, nullable Int64 or
        boolean, objects (None: null; lists and maps as Python lists and dicts)."""
        has = np.array([v is not None for v in values], dtype=np.bool_)
        arr = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):  # one by one: a list value is one element
            arr[i] = v
        kind = self.value_kind(column_kind)
        if kind == "map" or kind.startswith(LIST_PREFIX):
            return arr
        if kind == "int" and has.all():
            return np.asarray(arr[has].tolist() if values else [], dtype=np.int64)
        return pick_values(arr, np.arange(len(values), dtype=np.int64), has, kind)

    # ------------------------------------------------------------------ declarations

    def value_kind(self, column_kind: str | None) -> str:
        """The schema kind of its values for a column of `column_kind` (None: none)."""
        if self.output == "column":
            return column_kind or "float"
        if self.output == "list":
            return LIST_PREFIX + (column_kind or "float")
        return self.output

    def value_type(self, column_kind: str | None) -> ValueType:
        """The `ValueType` of its values for a column of `column_kind`."""
        return value_type_of(self.value_kind(column_kind))

    def column_problem(self, column: str | None, column_kind: str | None) -> str | None:
        """Why it cannot aggregate `column` of `column_kind` (None: it can)."""
        if self.needs_column and column is None:
            return f"{self.name} needs a `column`"
        if self.numeric_only and column_kind not in NUMERIC_KINDS:
            return f"{self.name} needs a numeric column; {column!r} is {column_kind}"
        return None

    def check_parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Its parameters from `given` (defaults filled in); ValueError naming a missing,
        unknown or out of range one."""
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            takes = f"it takes {', '.join(self.parameters)}" if self.parameters else "it takes none"
            raise ValueError(f"{self.name} takes no parameter {', '.join(unknown)} ({takes})")
        out = {}
        for key, param in self.parameters.items():
            if key in given:
                out[key] = param.check(key, given[key])
            elif param.optional:
                continue
            elif param.default is None:
                raise ValueError(f"{self.name} needs `{key}`")
            else:
                out[key] = param.default
        return out

    def feature_name(self, column: str | None, window: str | None) -> str:
        """The generated name of a feature of it (``amount_sum_1h``; None: lifetime)."""
        return "_".join([*([column] if column else []), self.name, *([window] if window else [])])

    def matches(self, actual: Any, expected: Any, magnitude: float = 1.0) -> bool:
        """Whether two values of it agree: equal, or within `rel_tol` for floating sums;
        `magnitude` (`magnitude` of the values aggregated) scales an absolute floor of
        1e-12 for results that are nearly zero by cancellation."""
        if actual is None or expected is None:
            return actual is None and expected is None
        if not self.rounded:
            return bool(actual == expected)
        return math.isclose(actual, expected, rel_tol=self.rel_tol, abs_tol=1e-12 * magnitude)

    def matches_exact(self, actual: Any, exact: Any, magnitude: float = 1.0) -> bool:
        """Whether its value agrees with the exact value of the contract (`oracle`): as
        `matches`; an approximation (a sketch) overrides it with its documented bound."""
        return self.matches(actual, exact, magnitude)

    def magnitude(self, values: Sequence[Any]) -> float:
        """The scale of the result of aggregating `values` (for `matches`)."""
        return max((abs(float(v)) for v in numbers_in(values)), default=0.0)

    def witnesses(
        self, code: Int, values: npt.NDArray[Any] | None, column_kind: str | None
    ) -> npt.NDArray[np.bool_]:
        """Of compacted events (non-null, sorted by entity `code`, ts, seq), those whose
        value alone gives its value over all of them, per entity (`keeps_witnesses`)."""
        raise NotImplementedError(f"{self.name} folds compacted events, it keeps no witnesses")

    def of_distinct(self, values: Sequence[Any], t: float) -> Any:
        """Its value at `t` over events whose distinct values (`values.distinct_value`)
        are `values` (kinds with ``compacted = "distinct"``)."""
        zeros = [0.0] * len(values)
        return self.finalize(self.fold(zeros, [0] * len(values), list(values)), t)

    def ir_to_json(self, ir: IR) -> Any:
        """Its IR as stored in the online state's JSON header (the same data)."""
        return ir

    def ir_from_json(self, data: Any) -> IR:
        """The IR `ir_to_json` stored."""
        return data

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({given})"


@functools.lru_cache(maxsize=4096)
def _bound(cls: type[Aggregation], params: Params) -> Aggregation:
    agg = cls()
    agg.params = MappingProxyType(dict(params))
    return agg


NUMERIC_KINDS: Final[frozenset[str]] = frozenset({"int", "float", "bool"})
"""Schema kinds a numeric aggregation takes."""
