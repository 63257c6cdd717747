"""`EmbeddingComputeEngine`: Feast's batch engine for embedding feature views.

Selected in `feature_store.yaml`::

    batch_engine:
      type: prodvec.core.feast_plugin.engine.EmbeddingComputeEngine
      batch_size: 10000          # rows per Arrow batch / online-store transaction
      overlap_writes: true       # send batch k while batch k+1 is read and encoded

(`prodvec` builds the same `RepoConfig` in code for any `--home`). Delete the
block, or write `batch_engine: local`, to go back to Feast's own engine.

An *embedding view* is a plain FeatureView, online, whose features are all
`Array(Float32)`, keyed by one STRING or INT64/INT32 join key, read from a
Parquet FileSource with no field mapping, served by Feast's SQLite or Redis
online store. Such a view is materialized by streaming: DuckDB picks the
latest row per entity within [start, end] from the key and time columns and
pyarrow streams those rows in Arrow batches (source.py), each batch is turned
into the store's own row bytes with numpy (encoding.py) and written in one
transaction / one request of Lua script calls (writers.py), from a writer
thread while the next batch is read and encoded. Peak memory is two batches
plus one small (key, timestamps) pass, whatever the table's size.

Every other view (transformations, aggregations, other stores, offline
writes) goes to Feast's `LocalComputeEngine` unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional, Sequence

from feast import FeatureView, FileSource
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.base import ComputeEngine
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.data_format import ParquetFormat
from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.repo_config import FeastConfigBaseModel
from feast.types import Array, Float32
from feast.value_type import ValueType
from pydantic import StrictBool, StrictInt, StrictStr

from prodvec.core.feast_plugin.source import LatestRows, latest_batches
from prodvec.core.feast_plugin.writers import RedisRows, SqliteRows, encode_batch

log = logging.getLogger(__name__)

ENGINE_TYPE = "prodvec.core.feast_plugin.engine.EmbeddingComputeEngine"
KEY_TYPES = (ValueType.STRING, ValueType.INT64, ValueType.INT32)


class EmbeddingComputeEngineConfig(FeastConfigBaseModel):
    """The `batch_engine:` block of feature_store.yaml."""

    type: StrictStr = ENGINE_TYPE
    batch_size: StrictInt = 10_000
    """Rows per Arrow batch, per SQLite transaction and per Redis pipeline: the memory bound."""
    duckdb_threads: StrictInt = 2
    duckdb_memory_limit: StrictStr = "1GB"
    overlap_writes: StrictBool = True
    """Send batch k to the store from a second thread while batch k+1 is read and encoded (two batches in
    memory); false: one after the other."""
    backend: Optional[StrictStr] = None
    """Passed to Feast's LocalComputeEngine for the views this engine hands over."""


@dataclass
class EmbeddingMaterializationJob(MaterializationJob):
    """What one view's materialization did: rows and batches written, or the error."""

    view: str
    rows_read: int = 0
    rows_written: int = 0
    batch_rows: list[int] = field(default_factory=list)
    _status: MaterializationJobStatus = MaterializationJobStatus.RUNNING
    _error: Optional[BaseException] = None

    @property
    def batches(self) -> int:
        return len(self.batch_rows)

    def status(self) -> MaterializationJobStatus:
        return self._status

    def error(self) -> Optional[BaseException]:
        return self._error

    def should_be_retried(self) -> bool:
        return False

    def job_id(self) -> str:
        return f"{self.view}-embedding"

    def url(self) -> Optional[str]:
        return None


class EmbeddingComputeEngine(ComputeEngine):
    def __init__(self, *, repo_config, offline_store, online_store, batch_size: int = 10_000,
                 duckdb_threads: int = 2, duckdb_memory_limit: str = "1GB", overlap_writes: bool = True,
                 backend: Optional[str] = None, **kwargs):
        kwargs.pop("type", None)
        super().__init__(repo_config=repo_config, offline_store=offline_store, online_store=online_store)
        if batch_size < 1:
            raise ValueError(f"batch_engine.batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.duckdb_threads = duckdb_threads
        self.duckdb_memory_limit = duckdb_memory_limit
        self.overlap_writes = overlap_writes
        self.fallback = LocalComputeEngine(repo_config=repo_config, offline_store=offline_store,
                                           online_store=online_store, backend=backend)
        # Jobs this engine ran itself, newest last (tests and the benchmark read them).
        self.jobs: list[EmbeddingMaterializationJob] = []

    # Tables live in the online store, which Feast's provider updates itself.
    def update(self, project: str, views_to_delete: Sequence, views_to_keep: Sequence, entities_to_delete: Sequence,
               entities_to_keep: Sequence):
        pass

    def teardown_infra(self, project: str, fvs: Sequence, entities: Sequence):
        pass

    def handles(self, view, task: MaterializationTask | None = None) -> str | None:
        """None if this engine materializes `view`, else why Feast's engine gets it."""
        if type(view) is not FeatureView:
            return f"{type(view).__name__} (only plain FeatureViews)"
        if not view.online or getattr(view, "offline", False):
            return "not an online-only view"
        if not view.features or any(f.dtype != Array(Float32) for f in view.features):
            return "features are not all Array(Float32)"
        if len(view.entity_columns) != 1 or view.entity_columns[0].dtype.to_value_type() not in KEY_TYPES:
            return "not one STRING/INT64/INT32 join key"
        source = view.batch_source
        if type(source) is not FileSource or source.field_mapping:
            return "source is not a plain FileSource"
        if not (isinstance(source.file_format, ParquetFormat) or source.path.endswith(".parquet")):
            return "source is not Parquet"
        if task is not None and (not task.only_latest or task.disable_event_timestamp):
            return "task asks for all rows, not the latest"
        store, online = self.online_store, self.repo_config.online_store
        if type(store) is SqliteOnlineStore:
            if getattr(online, "vector_enabled", False) or getattr(online, "enable_openai_compatible_store", False):
                return "SQLite store with vector search / value_num columns"
            return None
        if type(store) is RedisOnlineStore:
            return None
        return f"online store {type(store).__name__}"

    def _materialize_one(self, registry, task: MaterializationTask, **kwargs) -> MaterializationJob:
        view = task.feature_view
        reason = self.handles(view, task)
        if reason is not None:
            log.info("%s: materialized by Feast's local engine (%s)", view.name, reason)
            return self.fallback._materialize_one(registry, task, **kwargs)
        job = EmbeddingMaterializationJob(view=view.name)
        self.jobs.append(job)
        try:
            self._stream(view, task, job)
            job._status = MaterializationJobStatus.SUCCEEDED
        except Exception as error:  # the provider re-raises it, as with Feast's engines
            job._status, job._error = MaterializationJobStatus.ERROR, error
        return job

    def _stream(self, view: FeatureView, task: MaterializationTask, job: EmbeddingMaterializationJob) -> None:
        config = self.repo_config
        versioning = config.registry.enable_online_feature_view_versioning
        if type(self.online_store) is SqliteOnlineStore:
            writer = SqliteRows(self.online_store, config, view, compute_table_id(config.project, view, versioning))
        else:
            writer = RedisRows(self.online_store, config, view, compute_versioned_name(view, versioning))
        key_column = view.entity_columns[0]
        source = view.batch_source
        features = [f.name for f in view.features]
        rows = LatestRows(path=LatestRows.resolve(source.path, config.repo_path), join_key=key_column.name,
                          features=tuple(features), timestamp=source.timestamp_field,
                          created=source.created_timestamp_column or None)
        # The store's side of a batch (SQLite's B-tree work, redis-server running the script) runs without the
        # GIL, in the writer thread, while this thread decodes and encodes the next batch: on two cores the
        # reading is hidden behind the writing. At most one batch is in flight, and a failed write stops the
        # load before the next batch is sent.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prodvec-write") if self.overlap_writes else None
        in_flight: Optional[Future] = None
        try:
            for batch in latest_batches(rows, task.start_time, task.end_time, self.batch_size,
                                        threads=self.duckdb_threads, memory_limit=self.duckdb_memory_limit):
                keys, values = encode_batch(batch, key_column.name, key_column.dtype.to_value_type(), features,
                                            writer.key_suffix(), where=f"{view.name} ({source.path})")
                prepared = writer.prepare(keys, values, batch.column(rows.timestamp),
                                          batch.column(rows.created) if rows.created else None)
                n = batch.num_rows
                del keys, values, batch
                if in_flight is not None:
                    job.rows_written += in_flight.result()
                    in_flight = None
                if pool is None:
                    job.rows_written += writer.send(prepared)
                else:
                    in_flight = pool.submit(writer.send, prepared)
                job.rows_read += n
                job.batch_rows.append(n)
                del prepared
            if in_flight is not None:
                job.rows_written += in_flight.result()
                in_flight = None
        finally:
            if pool is not None:
                pool.shutdown(wait=True)  # an error in this thread still waits for the batch being sent
        log.info("%s: %d rows written in %d batches by EmbeddingComputeEngine", view.name, job.rows_written,
                 job.batches)

    def get_historical_features(self, registry, task):
        return self.fallback.get_historical_features(registry, task)
