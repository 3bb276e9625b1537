"""The state layout each feature view's online state is written with, and the one rule
for changing a view: a change that alters the layout of a view with state is refused.

Why refuse. Every entity state of a view carries the layout that wrote it (its
fingerprint, `aggregation.state`): which features, in which order, over which windows and
filters. State of one layout cannot be merged with or read by another (it keeps other
columns and filter flags), so a view edited in place would make the worker's flushes fail
for good and every lookup of the view fail, old features included. Rebuilding a
view's state under its own name while it serves is not supported; a changed view is
rolled out under a new name, which starts empty and is filled from the offline log
by ``feature-service backfill --view NEW``. A changed `where` keeps the format but
not its meaning (the flags record the old filter), so it is refused too. Changes
that keep the layout (a description, the ttl, a feature service, a new view) are
allowed.

The record. ``fs:layouts:{<source>}`` (hash, in the source's slot, see
`online.redis_layout`): view -> JSON of its `ViewLayout` (the fingerprint and what it
is made of, so a refusal can say what changed). A worker records every view it is
about to serve before it consumes anything (`claim_layouts`: HSETNX, so the first
layout stays), hence a view with state has a record.

Who applies the rule, always through `refused_changes`:

- `validate` compares the files with the record (when Redis is reachable); `apply`
  also with the deployed definitions. A refusal is one line per view and exit code 1;
  `apply` then copies nothing.
- The worker, at start, refuses to run definitions that change a recorded layout: it
  exits with code 1 and that line (its supervisor restarts it, with backoff). A running
  worker that finds such definitions on disk keeps running the ones it has, logs the
  refusal once (ERROR) and shows it on its /health (`definitions`).
- The API keeps serving its registry when the definitions on disk are refused, and
  shows the refusal on /health. A lookup of state written by another layout (e.g. an
  API started on refused definitions) answers 503 with `stale_state_message`.

Upgrading from engine v1. A record without ``format`` (or format 1) is state of the
tile hashes before engine v2: every view that has one is refused with
`upgrade_message`, which says how to rebuild (README, "Upgrading"), and a lookup of a
v1 hash answers 503.

>>> from feature_service.aggregation.spec import FeatureSpec
>>> old = ViewLayout.of_features([FeatureSpec("n_1h", "count", window_s=3600)])
>>> new = ViewLayout.of_features(
...     [FeatureSpec("n_1h", "count", window_s=3600), FeatureSpec("n_1d", "count", window_s=86400)]
... )
>>> describe_change(old, new)
'features added: n_1d'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import RedisClusterException, RedisError

from feature_service.aggregation.state import LayoutMismatchError, StateLayout
from feature_service.definitions import FeatureView, Registry
from feature_service.online.redis_layout import layouts_key, view_layout

log = logging.getLogger(__name__)

STATE_FORMAT = 2
"""The format of entity states this version writes (`aggregation.state`)."""
ONLINE_STATE = "its online state was written with the current one"
DEPLOYED = "the deployed definitions run the current one"


@dataclass(frozen=True)
class FeatureLayout:
    """What of one feature shapes the stored state (not its description)."""

    name: str
    aggregation: str
    column: str | None
    window_s: int | None
    hop_s: int | None
    where: str | None
    params: str | None = None  # its aggregation's parameters as JSON (None: none)


@dataclass(frozen=True)
class ViewLayout:
    """A view's state layout as recorded: its fingerprint, features, hop levels and the
    state format (1: the tile hashes before engine v2, 2: `aggregation.state`)."""

    fingerprint: str
    features: tuple[FeatureLayout, ...]
    levels: tuple[int, ...]
    format: int = STATE_FORMAT

    @classmethod
    def of(cls, view: FeatureView) -> ViewLayout:
        """The layout `view` writes its state with."""
        return cls.of_layout(view_layout(view))

    @classmethod
    def of_features(cls, features: Sequence[Any]) -> ViewLayout:
        """The layout of a `StateLayout` built from `features`."""
        return cls.of_layout(StateLayout(list(features)))

    @classmethod
    def of_layout(cls, layout: StateLayout) -> ViewLayout:
        features = []
        for f, window in zip(layout.features, layout.windows, strict=True):
            where = getattr(f, "where", None)
            params = getattr(f, "params", ())
            features.append(
                FeatureLayout(
                    f.name,
                    f.aggregation,
                    f.column,
                    None if window is None else window[0],
                    None if window is None else window[1],  # the default hop, resolved
                    None if where is None else str(getattr(where, "text", where)),
                    orjson.dumps(dict(params)).decode() if params else None,
                )
            )
        return cls(layout.fingerprint, tuple(features), layout.levels)

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "v": self.fingerprint,
                "format": self.format,
                "levels": list(self.levels),
                "features": [
                    [f.name, f.aggregation, f.column, f.window_s, f.hop_s, f.where]
                    + ([f.params] if f.params is not None else [])
                    for f in self.features
                ],
            }
        ).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> ViewLayout:
        """The layout of a record; ValueError if it is not one."""
        try:
            data = orjson.loads(raw)
            features = tuple(FeatureLayout(*f) for f in data["features"])
            levels = tuple(int(x) for x in data["levels"])
            return cls(str(data["v"]), features, levels, int(data.get("format", 1)))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a view layout record: {exc}") from None


def describe_change(old: ViewLayout, new: ViewLayout) -> str:
    """What differs between two layouts, for a person: features added, removed, changed.

    >>> from feature_service.aggregation.spec import FeatureSpec
    >>> one = ViewLayout.of_features([FeatureSpec("s", "sum", "x", 3600)])
    >>> describe_change(one, ViewLayout.of_features([FeatureSpec("s", "sum", "x", 7200)]))
    's: window 3600 s -> 7200 s, hop 60 s -> 300 s'
    """
    before = {f.name: f for f in old.features}
    after = {f.name: f for f in new.features}
    parts = []
    added = [name for name in after if name not in before]
    removed = [name for name in before if name not in after]
    if added:
        parts.append(f"features added: {', '.join(added)}")
    if removed:
        parts.append(f"features removed: {', '.join(removed)}")
    for name, was in before.items():
        now = after.get(name)
        if now is None or now == was:
            continue
        changes = []
        for label, attr, unit in (
            ("aggregation", "aggregation", ""),
            ("column", "column", ""),
            ("window", "window_s", " s"),
            ("hop", "hop_s", " s"),
            ("where", "where", ""),
            ("parameters", "params", ""),
        ):
            a, b = getattr(was, attr), getattr(now, attr)
            if a != b:
                changes.append(f"{label} {_shown(a, unit)} -> {_shown(b, unit)}")
        parts.append(f"{name}: {', '.join(changes)}")
    if not parts and [f.name for f in old.features] != [f.name for f in new.features]:
        parts.append("features reordered")
    if not parts:
        parts.append(f"hop levels {list(old.levels)} -> {list(new.levels)}")
    return "; ".join(parts)


def _shown(value: object, unit: str) -> str:
    return "none" if value is None else f"{value}{unit}"


@dataclass(frozen=True)
class LayoutChange:
    """A refused change: `view`'s layout would become `new`, its state has `old`."""

    view: str
    old: ViewLayout
    new: ViewLayout
    against: str  # a clause saying what holds `old` (the online state, the deployed file)

    @property
    def message(self) -> str:
        """One line: the view, what changed, and how to roll it out instead."""
        v = self.view
        if self.old.format != self.new.format:
            return upgrade_message(v)
        return (
            f"feature view {v!r}: change refused, it alters the view's state layout "
            f"({describe_change(self.old, self.new)}) and {self.against}. Keep {v!r} as it "
            f"is and add the change as a new view (e.g. {v + '_v2'!r}), then run "
            f"`feature-service backfill --view {v}_v2`; remove {v!r} once clients use the new one"
        )


class StaleStateError(LayoutMismatchError):
    """A view's stored state was written by another layout than the view's; the message
    (`stale_state_message`) names the view and the fix."""

    def __init__(self, view: str) -> None:
        self.view = view
        super().__init__(stale_state_message(view))


class LayoutChangeRefused(ValueError):
    """Definitions that change the layout of a view with state; one line per view."""

    def __init__(self, changes: Sequence[LayoutChange]) -> None:
        self.changes = list(changes)
        super().__init__("\n".join(c.message for c in self.changes))


def refused_changes(
    new: Registry,
    recorded: Mapping[str, ViewLayout],
    deployed: Registry | None = None,
    against: str = ONLINE_STATE,
) -> list[LayoutChange]:
    """The views of `new` whose layout differs from the one their state has: the record
    of the view (`recorded`, from Redis) if any, else its definition in `deployed` (the
    definitions running or installed now). This is the compatibility rule; validate,
    apply, the worker and the API all call it.

    The record wins over `deployed`: it is what the state was written with, so a file
    that restores a view's recorded layout is allowed even if `deployed` differs.
    """
    out = []
    for name, view in new.feature_views.items():
        layout = ViewLayout.of(view)
        baseline = recorded.get(name)
        source = against
        if baseline is None and deployed is not None and name in deployed.feature_views:
            baseline = ViewLayout.of(deployed.feature_views[name])
            source = DEPLOYED
        if baseline is not None and baseline != layout:
            out.append(LayoutChange(name, baseline, layout, source))
    return out


async def recorded_layouts(redis: Any, registry: Registry) -> dict[str, ViewLayout]:
    """The recorded layout of each view of `registry` that has one.

    Records are read under every source of `registry`; a view's record under its own
    source wins over one under another (a view moved from one source to another keeps
    its entity keys, so the old record still describes its state).
    """
    sources = sorted(registry.sources)
    async with redis.pipeline(transaction=False) as pipe:
        for source in sources:
            pipe.hgetall(layouts_key(source))
        replies = await pipe.execute()
    by_source: dict[str, dict[str, ViewLayout]] = {}
    for source, raw in zip(sources, replies, strict=True):
        records = by_source[source] = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            try:
                records[name] = ViewLayout.from_json(value)
            except ValueError as exc:
                log.warning("ignoring the layout record of %s under %s: %s", name, source, exc)
    out: dict[str, ViewLayout] = {}
    for name, view in registry.feature_views.items():
        own = by_source.get(view.source.name, {}).get(name)
        if own is None:
            own = next((r[name] for r in by_source.values() if name in r), None)
        if own is not None:
            out[name] = own
    return out


async def claim_layouts(redis: Any, registry: Registry) -> list[LayoutChange]:
    """Record the layout of every view of `registry` that has none, unless a view would
    change a recorded one: then return those changes and record nothing.

    Called by a worker before it serves the views. Each record is set with HSETNX and
    read back, so of two workers starting at once with different layouts for a new
    view, one wins and the other is refused.
    """
    refused = refused_changes(registry, await recorded_layouts(redis, registry))
    if refused:
        return refused
    async with redis.pipeline(transaction=False) as pipe:
        for name, view in registry.feature_views.items():
            pipe.hsetnx(layouts_key(view.source.name), name, ViewLayout.of(view).to_json())
        await pipe.execute()
    return refused_changes(registry, await recorded_layouts(redis, registry))


@dataclass(frozen=True)
class LayoutCheck:
    """The result of `check_definitions`: the refused changes, and why Redis was not
    consulted if it was not (`unchecked`: None when the records were read)."""

    changes: list[LayoutChange]
    unchecked: str | None = None

    @property
    def refusal(self) -> str:
        """The refusal as one line per view ("" when nothing is refused)."""
        return "\n".join(c.message for c in self.changes)

    @property
    def log_line(self) -> str:
        """The refusal on one line, for a log record."""
        return " | ".join(c.message for c in self.changes)


READ_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


async def check_definitions(
    redis: Any, new: Registry, deployed: Registry | None = None
) -> LayoutCheck:
    """`refused_changes` of `new` against the layouts recorded in Redis and `deployed`.

    With `redis` None or unreachable only `deployed` is compared, and `unchecked` says
    why: a check must never stop a service or a command because Redis is away.
    """
    recorded: dict[str, ViewLayout] = {}
    unchecked = None if redis is not None else "no Redis"
    if redis is not None:
        try:
            recorded = await recorded_layouts(redis, new)
        except READ_ERRORS as exc:
            unchecked = f"Redis unreachable ({type(exc).__name__}: {exc})"
    return LayoutCheck(refused_changes(new, recorded, deployed), unchecked)


def upgrade_message(view: str) -> str:
    """Why state of an earlier engine cannot be used, and the way forward (README,
    "Upgrading")."""
    return (
        f"feature view {view!r}: its online state was written by an earlier version "
        "(engine v1 tile hashes), which this version cannot read. To upgrade: stop the "
        "workers, empty the online store (`redis-cli -u $FS_REDIS_URL FLUSHDB`), start the "
        "new workers (they rebuild the state from the topic), then run "
        f"`feature-service backfill --view {view}` for events no longer on the topic"
    )


def stale_state_message(view: str) -> str:
    """Why a lookup of `view` cannot be answered: its state has another layout."""
    return (
        f"feature view {view!r} is unavailable: its online state was written by another "
        "definition of the view (features, windows or hops changed under the same name). "
        "Restore its previous definition, or deploy the change as a new view and run "
        "`feature-service backfill --view NEW`"
    )
