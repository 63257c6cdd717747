"""Writing a batch of embedding rows in the exact layout Feast's online stores read.

Each writer mirrors one store's `online_write_batch` (feast 0.67) row for row,
so `get_online_features`, `feast serve` and the stores' own readers see no
difference; only the construction of the bytes changes (see encoding.py).
The connection is the store's own (its cached `_get_conn` / `_get_client`),
so paths, connection strings, clusters and sentinels resolve as Feast
resolves them.

* SQLite (`SqliteOnlineStore`): table `<project>_<view>`, one row per
  (entity_key, feature_name) with the serialized ValueProto in `value`,
  `value_text` NULL for lists, and `event_ts` / `created_ts` written through
  the `datetime` adapter Feast registers with sqlite3; one upsert, one
  transaction per batch.
* Redis (`RedisOnlineStore`): one hash per entity at
  `serialize_entity_key(key) + project`, field `mmh3("<view>:<feature>")`
  holds the ValueProto, field `_ts:<view>` the event time as a protobuf
  Timestamp; like Feast, a row whose stored event time is the same or newer
  is left alone (unless `skip_dedup`), and `key_ttl_seconds` sets an expiry.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from itertools import repeat
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.timestamp_pb2 import Timestamp

from prodvec.core.feast_plugin.encoding import entity_keys, float_list_values

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _micros(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps as int64 microseconds since the epoch (UTC) and a validity mask."""
    column = pc.cast(column, pa.timestamp("us", tz="UTC"))
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), valid


def per_timestamp(column: pa.Array, convert: Callable[[datetime], object]) -> list:
    """`convert(datetime)` for every row, computed once per distinct time.

    A snapshot stamps all its rows with one cutoff, so a batch holds a handful
    of distinct times: the exact Python conversion Feast applies costs nothing.
    """
    micros, valid = _micros(column)
    distinct, inverse = np.unique(micros, return_inverse=True)
    converted = np.empty(len(distinct), dtype=object)
    converted[:] = [convert(EPOCH + timedelta(microseconds=int(u))) for u in distinct]
    out = converted[inverse]
    out[~valid] = None
    return out.tolist()


class SqliteRows:
    """Upserts into the table `SqliteOnlineStore.update` created for the view."""

    def __init__(self, store, config, view, table_name: str):
        self.conn = store._get_conn(config)
        # The adapter feast.infra.online_stores.sqlite registers for datetime (epoch seconds of naive UTC).
        self.adapt = sqlite3.adapters[(datetime, sqlite3.PrepareProtocol)]
        quoted = '"' + table_name.replace('"', '""') + '"'
        self.sql = (f"INSERT INTO {quoted} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                    "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
                    "created_ts = excluded.created_ts;")
        self.project = config.project

    def _times(self, column: pa.Array | None, n: int) -> list:
        if column is None:
            return [None] * n
        return per_timestamp(column, lambda t: self.adapt(t.replace(tzinfo=None)))

    def write(self, keys: list, values: dict[str, list], event: pa.Array, created: pa.Array | None) -> int:
        n = len(keys)
        event_ts, created_ts = self._times(event, n), self._times(created, n)
        with self.conn:
            for feature, encoded in values.items():
                self.conn.executemany(self.sql, zip(keys, repeat(feature), encoded, repeat(None), event_ts,
                                                    created_ts))
        return n

    def key_suffix(self) -> bytes:
        return b""


class RedisRows:
    """HSETs through one pipeline per batch, after one pipelined read of the stored event times."""

    def __init__(self, store, config, view, view_name: str):
        from feast.infra.online_stores.helpers import _mmh3

        self.client = store._get_client(config.online_store)
        self.ts_field = f"_ts:{view_name}".encode()
        self.fields = {f.name: _mmh3(f"{view_name}:{f.name}") for f in view.features}
        self.skip_dedup = config.online_store.skip_dedup
        self.ttl = config.online_store.key_ttl_seconds
        self.project = config.project

    def key_suffix(self) -> bytes:
        return self.project.encode("utf-8")

    @staticmethod
    def _stamp(t: datetime) -> bytes:
        ts = Timestamp()
        ts.FromDatetime(t)
        return ts.SerializeToString()

    def write(self, keys: list, values: dict[str, list], event: pa.Array, created: pa.Array | None) -> int:
        stamps = per_timestamp(event, self._stamp)
        keep = np.ones(len(keys), dtype=bool)
        if not self.skip_dedup:
            micros, _ = _micros(event)
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, self.ts_field)
                previous = pipe.execute()
            known: dict[bytes, int] = {}
            stored = np.zeros(len(keys), dtype=np.int64)
            for i, raw in enumerate(previous):
                if raw:
                    if raw not in known:
                        ts = Timestamp()
                        ts.ParseFromString(raw)
                        known[raw] = ts.seconds * 1_000_000_000 + ts.nanos
                    stored[i] = known[raw]
            # Feast skips a row whose stored time is the same or newer (nanosecond comparison).
            keep = (stored == 0) | (micros * 1000 > stored)
        fields = [(self.fields[name], encoded) for name, encoded in values.items()]
        written = 0
        with self.client.pipeline(transaction=False) as pipe:
            for i in np.flatnonzero(keep).tolist():
                args = [self.ts_field, stamps[i]]
                for field, encoded in fields:
                    args += (field, encoded[i])
                pipe.execute_command("HSET", keys[i], *args)
                if self.ttl:
                    pipe.expire(keys[i], self.ttl)
                written += 1
            pipe.execute()
        return written


def encode_batch(batch: pa.RecordBatch, join_key: str, key_type, features: list[str], suffix: bytes,
                 where: str) -> tuple[list, dict[str, list]]:
    """Entity keys and serialized values of one batch."""
    keys = entity_keys(join_key, batch.column(join_key), key_type, suffix, where=where)
    values = {f: float_list_values(batch.column(f), where=f"{where}, column {f!r}") for f in features}
    return keys, values
