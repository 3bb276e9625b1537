"""What a request for features is, wherever it arrives: the lookup API, the SDK, the
training sets. Resolving `view:feature` references, the entity columns and the times
asked about, and `RequestError`, the 4xx that names what is wrong.

Both the online service and the offline (training-set) path import this module, so
neither reaches into the other for its request rules.

>>> RequestError("unknown feature 'x:y'").status
422
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feature_service.definitions import FeatureView, Registry, ServiceExpression
from feature_service.times import InvalidTime, check_in_range, parse_time


class RequestError(ValueError):
    """The request is wrong; `status` is the HTTP status that says how (422, 413)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class StoreUnavailable(RuntimeError):
    """A dependency (Redis, the broker) did not answer; retry later (HTTP 503)."""


@dataclass(frozen=True)
class FeatureRef:
    """One requested feature and the column name it is returned under. A feature
    service's expression (`service_expression`) is computed from the features `inputs`
    (read, not returned); its `view` is its first input's."""

    view: FeatureView
    feature: str
    output_name: str
    service_expression: ServiceExpression | None = None
    inputs: tuple[FeatureRef, ...] = ()

    @property
    def reads(self) -> tuple[FeatureRef, ...]:
        """The view features it takes to answer it: itself, or its inputs."""
        return self.inputs if self.service_expression is not None else (self,)


def resolve_features(
    registry: Registry,
    features: Sequence[str] | None,
    feature_service: str | None = None,
    full_feature_names: bool = False,
) -> list[FeatureRef]:
    """`view:feature` references (or a feature service) -> `FeatureRef`s in request order.

    Output names are the feature names, or `view__feature` with `full_feature_names`;
    names that would collide are refused rather than silently overwritten.
    """
    if (features is None) == (feature_service is None):
        raise RequestError("give exactly one of `features` or `feature_service`")
    service = None
    if feature_service is not None:
        service = registry.feature_services.get(feature_service)
        if service is None:
            raise RequestError(f"unknown feature service {feature_service!r}")
        names = list(service.features)
    else:
        names = list(features or [])
    if not names and not (service is not None and service.derived):
        raise RequestError("no features requested")
    refs = []
    known: dict[str, set[str]] = {}  # view -> its feature names
    for name in names:
        view_name, sep, feature = name.partition(":")
        view = registry.feature_views.get(view_name)
        if not sep:
            raise RequestError(f"unknown feature {name!r}: use view:feature")
        if view is None:
            raise RequestError(
                f"unknown feature {name!r}: unknown view {view_name!r} "
                f"(known: {_listed(registry.feature_views)})"
            )
        features_of = known.get(view_name)
        if features_of is None:
            features_of = known[view_name] = set(view.feature_names)
        if feature not in features_of:
            raise RequestError(f"unknown feature {name!r}: view {view_name!r} has no {feature!r}")
        output = f"{view_name}__{feature}" if full_feature_names else feature
        refs.append(FeatureRef(view, feature, output))
    for derived in service.derived if service is not None else ():
        assert service is not None
        inputs = []
        for name, ref in derived.inputs:
            view_name, _, feature = ref.partition(":")
            inputs.append(FeatureRef(registry.feature_views[view_name], feature, name))
        output = f"{service.name}__{derived.name}" if full_feature_names else derived.name
        refs.append(FeatureRef(inputs[0].view, derived.name, output, derived, tuple(inputs)))
    seen = Counter(ref.output_name for ref in refs)
    clashes = sorted(o for o, n in seen.items() if n > 1)
    if clashes:
        hint = "" if full_feature_names else "; set full_feature_names: true"
        raise RequestError(f"feature names collide ({', '.join(clashes)}){hint}")
    return refs


def _listed(names: Iterable[str], most: int = 20) -> str:
    """Names for a message, sorted, at most `most` of them."""
    ordered = sorted(names)
    shown = ", ".join(ordered[:most])
    return shown + (f", ... ({len(ordered)} in all)" if len(ordered) > most else "") or "none"


def join_keys(refs: Sequence[FeatureRef]) -> list[str]:
    """The entity key columns the features need, in order of first use (each join key
    of a composite key, in its order)."""
    columns = (c for ref in refs for r in ref.reads for c in r.view.entity.join_keys)
    return list(dict.fromkeys(columns))


def check_query_time(t: float, what: str) -> float:
    """`t` if it lies in the years events may have (`windows.TIME_RANGE`), else a 422
    naming `what` (`times.check_in_range`).

    Windows over times such as 1e308 would take hop arithmetic far outside ordinary
    epoch seconds, and no event can be there; refusing them here keeps every reader
    on the same range as the stream.

    >>> check_query_time(1e308, "as_of")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    feature_service.requests.RequestError: as_of 1e+308 is outside 1900-01-01..2199-12-31 ...
    """
    try:
        check_in_range(t, what)
    except InvalidTime as exc:
        raise RequestError(str(exc)) from None
    return t


def query_time(as_of: float | str | None) -> float:
    """`as_of` as epoch seconds (years 1900..2199, `check_query_time`); now when absent.

    An ISO-8601 string becomes exactly the float an event at that time has
    (`times.parse_time`), so an `as_of` at an event's time includes that event.
    """
    if as_of is None:
        return time.time()
    if isinstance(as_of, (int, float)) and not isinstance(as_of, bool):
        check_query_time(as_of, "as_of")  # an integer compared as is: no OverflowError
        return float(as_of)
    try:
        return parse_time(as_of)
    except InvalidTime as exc:
        raise RequestError(f"as_of: {exc}") from None


def entity_rows(
    refs: Sequence[FeatureRef], entities: Mapping[str, Sequence[Any]], limit: int
) -> int:
    """Check the entity columns of a request; return the number of rows."""
    lengths = {len(values) for values in entities.values()}
    if len(lengths) > 1:
        raise RequestError("every entity key needs the same number of values")
    n_rows = lengths.pop() if lengths else 0
    if n_rows > limit:
        raise RequestError(f"{n_rows} entities; at most {limit} per request", status=413)
    for key in join_keys(refs):
        if key not in entities:
            views = sorted(
                {r.view.name for ref in refs for r in ref.reads if key in r.view.entity.join_keys}
            )
            raise RequestError(f"feature view {views[0]!r} needs entity key {key!r}")
        for value in entities[key]:
            if not _is_id(value):
                raise RequestError(
                    f"entity key {key!r}: an id is a string or an integer, got {value!r:.40}"
                )
    return n_rows


def _is_id(value: Any) -> bool:
    """A join-key value a lookup takes: a string, an integer, or a float that is one
    (JSON's 5.0, up to 2**53: `key_values` makes it the integer); or null, a row that
    names no entity (NOT_FOUND)."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer() and abs(value) <= 2**53


def key_values(values: Sequence[Any]) -> list[Any]:
    """A join-key column as ids: an integral float (JSON's 5.0) as the integer it is.

    >>> key_values(["c1", 5.0, 7])
    ['c1', 5, 7]
    """
    return [int(v) if isinstance(v, float) else v for v in values]
