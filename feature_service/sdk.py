"""The Python SDK: `FeatureStore`, the same code paths as the lookup API, without HTTP.

Beside a running stack (not a doctest)::

    from feature_service import FeatureStore
    store = FeatureStore()               # FS_* settings, or the running `up` stack
    store.get_online_features(
        features=["customer_txn:amount_sum_1d"], entity_rows=[{"customer_id": "c001"}]
    ).to_dict()                          # {'customer_id': ['c001'], 'amount_sum_1d': [812.4]}
    store.push("transactions", df)       # validated against the schema, then produced
    store.get_historical_features(entity_df, features=[...])     # a pandas DataFrame
    store.close()                        # or: with FeatureStore() as store: ...

The store holds connections (Redis, the broker's producer) and a thread: `close()` them
when done, or use it as a context manager. A store never closed is closed when it is
garbage-collected or at interpreter exit, so no "Unclosed" warning is left either way.

The store talks to Redis, the broker and the offline store directly with the
service's own code (`online/service.py`), so an SDK read and an API read of the same
entity at the same `as_of` are the same numbers. Its methods are synchronous; the
async clients live on one private event loop thread per store, so the SDK also works
inside Jupyter or another running event loop. Errors: `RequestError` for a bad request
(unknown feature, wrong types, ...), `StoreUnavailable` for a dependency that is down,
`ViewUnavailable` for a view whose stored state another definition of it wrote.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import pandas as pd
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.asyncio import Redis

from feature_service.core.config import Settings, load_settings
from feature_service.definitions import Registry, load_definitions
from feature_service.online.redis_client import connect
from feature_service.online.service import OnlineColumn, ViewUnavailable, online_features
from feature_service.requests import RequestError, StoreUnavailable, query_time, resolve_features
from feature_service.stream.push import encode_pushed, produce, push_messages
from feature_service.times import datetime_seconds

__all__ = ["FeatureStore", "OnlineResponse", "RequestError", "StoreUnavailable", "ViewUnavailable"]

T = TypeVar("T")
EntityRows = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class OnlineResponse:
    """Online features of a request: one column per join key and feature, in order."""

    columns: list[OnlineColumn]

    def to_dict(self) -> dict[str, list[Any]]:
        """`{name: values}` as Feast's `OnlineResponse.to_dict()`."""
        return {c.name: c.values for c in self.columns}

    def to_df(self) -> pd.DataFrame:
        return pd.DataFrame(self.to_dict())

    def statuses(self) -> dict[str, list[str]]:
        """`{name: statuses}`: PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE."""
        return {c.name: c.statuses for c in self.columns}


class _LoopThread:
    """An event loop on a daemon thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="feature-store", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("this FeatureStore is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    @property
    def current(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class _Clients:
    """A store's event loop thread and the clients that live on it; closed once.

    Kept apart from the store so that a finalizer can close them without keeping the
    store alive (`weakref.finalize` must not hold a reference to it).
    """

    def __init__(self) -> None:
        self.loop = _LoopThread()
        self.redis: Redis | None = None
        self.producer: AIOKafkaProducer | None = None
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.loop.current:  # collected on the loop's own thread: it cannot wait on itself
            self.loop.loop.create_task(self._aclose())
            return
        try:
            self.loop.run(self._aclose())
        finally:
            self.loop.stop()

    async def _aclose(self) -> None:
        producer, self.producer = self.producer, None
        redis, self.redis = self.redis, None
        if producer is not None:
            await producer.stop()
        if isinstance(redis, Redis):  # its pool too: `connect` made the pool, not the client
            await redis.aclose(close_connection_pool=True)
        elif redis is not None:  # a cluster client closes its nodes' connections
            await redis.aclose()


class FeatureStore:
    """Online features, pushes and training sets, configured like the services.

    Holds connections and a thread: `close()` it, or use it as a context manager::

        with FeatureStore() as store:
            store.push("transactions", df)
    """

    def __init__(self, settings: Settings | None = None, registry: Registry | None = None):
        self.settings = settings or load_settings()
        self.registry = registry or load_definitions(self.settings.definitions)
        self._clients = _Clients()
        self._loop = self._clients.loop
        # A store nobody closed is closed when collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._clients.close)

    # -- online ---------------------------------------------------------------------------

    def get_online_features(
        self,
        features: Sequence[str] | None = None,
        entity_rows: EntityRows | None = None,
        *,
        feature_service: str | None = None,
        full_feature_names: bool = False,
        as_of: float | str | None = None,
    ) -> OnlineResponse:
        """Features of entities at `as_of` (default now), as `POST /get-online-features`.

        `entity_rows` is Feast's list of `{join_key: value}` dicts, or `{join_key: [...]}`;
        a view of several join keys needs each of them in every row
        (`{"customer_id": "c001", "merchant_id": "m083"}`), and a row with one null or
        empty is NOT_FOUND.
        """
        refs = resolve_features(self.registry, features, feature_service, full_feature_names)
        entities = _entity_columns(entity_rows or [])
        t = query_time(as_of)
        limit = max(1, len(next(iter(entities.values()), [])))
        columns = self._loop.run(self._online(refs, entities, t, limit))
        return OnlineResponse(columns)

    async def _online(self, *args: Any) -> list[OnlineColumn]:
        clients = self._clients
        if clients.redis is None:
            redis_url = self.settings.redis_url or "redis://127.0.0.1:6379/0"
            clients.redis = connect(
                redis_url,
                cluster=self.settings.redis_cluster,
                max_connections=self.settings.redis_max_connections,
                pool_timeout_s=self.settings.redis_pool_timeout_s,
                socket_connect_timeout=1.0,
                socket_timeout=5.0,
            )
        return await online_features(clients.redis, *args)

    # -- push -----------------------------------------------------------------------------

    def push(self, source_name: str, df: pd.DataFrame | Mapping[str, Sequence[Any]]) -> int:
        """Validate rows against the source's schema, produce them to its topic, wait for
        the broker's acknowledgement; all rows or none. Returns the number pushed."""
        columns = _columns(df)
        n_rows = max((len(v) for v in columns.values()), default=0)
        source, messages = push_messages(self.registry, source_name, columns, max(n_rows, 1))
        messages = self._loop.run(encode_pushed(source, messages))  # Avro, Protobuf, ...
        self._loop.run(self._produce(source.topic, messages))
        return len(messages)

    async def _produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        clients = self._clients
        if clients.producer is None:
            if not self.settings.broker_url:
                raise StoreUnavailable("no broker configured (FS_BROKER_URL)")
            producer = AIOKafkaProducer(
                **self.settings.kafka.aiokafka_kwargs(),
                acks="all",
                linger_ms=5,
                max_batch_size=256 * 1024,
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                raise StoreUnavailable(f"broker unavailable: {type(exc).__name__}") from None
            clients.producer = producer
        await produce(clients.producer, topic, messages)

    # -- offline ----------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: pd.DataFrame,
        features: Sequence[str] | None = None,
        *,
        feature_service: str | None = None,
        full_feature_names: bool = False,
        engine: str = "local",
        spark: Any = None,
        as_spark: bool = False,
    ) -> Any:
        """A point-in-time training set: `entity_df` (join keys, `event_timestamp`, any
        labels; rows in order) plus each feature as served online at each row's time.

        Reads the offline store (`FS_OFFLINE_URI`) directly. `engine="local"`: in
        buckets of entities, one process per core (`offline.buckets`; a small log in
        this process); `engine="spark"`: the same buckets inside Spark (`spark`: a
        SparkSession, default a local one), returning a pandas DataFrame, or with
        `as_spark=True` a Spark DataFrame (`entity_df` may then be one too).
        """
        from feature_service.offline.engines import check_engine, historical_frame

        if check_engine(engine) != "spark" and as_spark:
            raise RequestError("as_spark=True needs engine='spark'")
        try:
            if as_spark:
                from feature_service.offline import spark_engine

                return spark_engine.spark_historical_features(
                    spark or spark_engine.spark_session(), self.registry,
                    self.settings.offline_uri, entity_df, features, feature_service,
                    full_feature_names,
                )  # fmt: skip
            return historical_frame(
                self.registry, self.settings.offline_uri, entity_df, features,
                feature_service, full_feature_names, engine=engine, spark=spark,
            )  # fmt: skip
        except OSError as exc:
            raise StoreUnavailable(f"offline store unavailable: {exc}") from None

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients (Redis, the producer) and stop the store's event loop thread.
        Idempotent; the store cannot be used afterwards."""
        self._finalizer()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _entity_columns(rows: EntityRows) -> dict[str, list[Any]]:
    if isinstance(rows, Mapping):
        return {key: list(values) for key, values in rows.items()}
    keys = list(dict.fromkeys(key for row in rows for key in row))
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise RequestError(f"entity_rows[{i}] has no {missing[0]!r}")
    return {key: [row[key] for row in rows] for key in keys}


def _columns(df: pd.DataFrame | Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Rows as JSON-ready columns: datetimes become epoch seconds, NaN/NaT null."""
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame({k: list(v) for k, v in df.items()})
    out: dict[str, list[Any]] = {}
    for name in df.columns:
        column = df[name]
        if pd.api.types.is_datetime64_any_dtype(column):  # exact to the µs: `times`
            seconds = datetime_seconds(column)
            out[str(name)] = [None if math.isnan(s) else s for s in seconds.tolist()]
        else:
            out[str(name)] = [None if _is_na(v) else _plain(v) for v in column.tolist()]
    return out


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and other containers
        return False


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, pd.Timestamp) else value
