"""`EmbeddingOfflineStore`: Feast's DuckDB offline store with a one-query point-in-time join.

Selected in `feature_store.yaml`::

    offline_store:
      type: prodvec.core.feast_plugin.offline_store.EmbeddingOfflineStore

(`type: duckdb` goes back to Feast's own store.) For feature views read from
Parquet FileSources, `get_historical_features` becomes one DuckDB `ASOF LEFT
JOIN` per view from the entity rows to the Parquet, which is how DuckDB
answers "the newest row at or before t" without materialising the
(entity x snapshot) pairs that Feast's generic ibis plan joins, ranks and
filters. The semantics are Feast's (ibis.point_in_time_join): the same join
keys (honouring the projection's join-key map), feature time <= entity time,
newest by event time then created time (a missing created time ranks last, as
in DuckDB's ORDER BY ... DESC), a TTL window of `feature time + ttl >= entity
time`, one output row per entity row, entity columns first then the features
(`view__feature` with full_feature_names).

Anything else (on-demand views, `filter_by_created_timestamp`, a SQL entity
query, non-file sources) is handed to DuckDBOfflineStore unchanged.
"""

from __future__ import annotations

from typing import List, Optional, Union

import duckdb
import pandas as pd
import pyarrow
from feast import FeatureView, FileSource
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig, _write_data_source
from feast.data_format import ParquetFormat
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import infer_event_timestamp_from_entity_df
from feast.on_demand_feature_view import OnDemandFeatureView
from pydantic import StrictInt, StrictStr

from prodvec.core.feast_plugin.source import LatestRows

STORE_TYPE = "prodvec.core.feast_plugin.offline_store.EmbeddingOfflineStore"


class EmbeddingOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """The `offline_store:` block of feature_store.yaml."""

    type: StrictStr = STORE_TYPE
    duckdb_threads: StrictInt = 2
    duckdb_memory_limit: StrictStr = "2GB"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _asof_view(view: FeatureView) -> bool:
    source = view.batch_source
    return (type(source) is FileSource and not source.field_mapping
            and (isinstance(source.file_format, ParquetFormat) or source.path.endswith(".parquet")))


class AsofRetrievalJob(RetrievalJob):
    """Runs the ASOF query when the result is asked for (to_arrow / to_df), like Feast's lazy jobs."""

    def __init__(self, query: str, entity: pyarrow.Table, full_feature_names: bool, metadata: RetrievalMetadata,
                 repo_path: str, threads: int, memory_limit: str):
        super().__init__()
        self.query, self.entity = query, entity
        self._full_feature_names, self._metadata = full_feature_names, metadata
        self.repo_path, self.threads, self.memory_limit = repo_path, threads, memory_limit

    def _to_arrow_internal(self, timeout: Optional[int] = None) -> pyarrow.Table:
        con = duckdb.connect(config={"threads": self.threads, "memory_limit": self.memory_limit})
        # DuckDB estimates a registered Arrow table at ~1 row and would then plan each ASOF as a
        # nested-loop join (quadratic in the entity rows); 0 keeps its sort-merge ASOF operator.
        con.execute("SET asof_loop_join_threshold = 0")
        try:
            con.register("entity_rows", self.entity)
            return con.execute(self.query).to_arrow_table()
        finally:
            con.close()

    def _to_df_internal(self, timeout: Optional[int] = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> List[OnDemandFeatureView]:
        return []

    @property
    def metadata(self) -> Optional[RetrievalMetadata]:
        return self._metadata

    def persist(self, storage, allow_overwrite: bool = False, timeout: Optional[int] = None):
        import ibis

        _write_data_source(ibis.memtable(self.to_arrow()), storage.to_data_source(), self.repo_path, "overwrite",
                           allow_overwrite)


def _utc_entity(entity_df: pd.DataFrame, ts_col: str) -> pd.DataFrame:
    """Entity times as tz-aware UTC, as Feast's `_to_utc` makes them (naive times are read as UTC)."""
    frame = entity_df.copy(deep=False)
    column = frame[ts_col]
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        column = pd.to_datetime(column, utc=True)
    frame[ts_col] = column.dt.tz_convert("UTC")
    return frame


def asof_query(config, feature_views: List[FeatureView], feature_refs: List[str], entity_columns: List[str],
               ts_col: str, full_feature_names: bool) -> str:
    """One SELECT with an ASOF LEFT JOIN per view, Feast's point-in-time rule in each."""
    e_ts = f"e.{_quote(ts_col)}"
    selects = [f"e.{_quote(c)}" for c in entity_columns]
    joins = []
    for i, view in enumerate(feature_views):
        prefix = view.projection.name_to_use()
        features = [ref.split(":", 1)[1] for ref in feature_refs if ref.startswith(f"{prefix}:")]
        base = view.projection.name_alias or view.name
        source = view.batch_source
        path = LatestRows.resolve(source.path, config.repo_path).replace("'", "''")
        key_map = view.projection.join_key_map or {c.name: c.name for c in view.entity_columns}
        alias, ts = f"f{i}", _quote(source.timestamp_field)
        created = (f"coalesce(CAST({_quote(source.created_timestamp_column)} AS TIMESTAMPTZ), "
                   f"'-infinity'::TIMESTAMPTZ)" if source.created_timestamp_column else "'-infinity'::TIMESTAMPTZ")
        keys = ", ".join(_quote(k) for k in key_map)
        columns = ", ".join(_quote(f) for f in features)
        # Ordering rows by (event time, created time) in one ASOF key breaks ties the way Feast's dedup does.
        joins.append(
            f"ASOF LEFT JOIN (SELECT {keys}, {columns}, CAST({ts} AS TIMESTAMPTZ) AS __ts, "
            f"{{'t': CAST({ts} AS TIMESTAMPTZ), 'c': {created}}} AS __order "
            f"FROM read_parquet('{path}')) {alias} ON "
            + " AND ".join(f"{alias}.{_quote(k)} = e.{_quote(v)}" for k, v in key_map.items())
            + f" AND {{'t': {e_ts}, 'c': 'infinity'::TIMESTAMPTZ}} >= {alias}.__order")
        live = f"{alias}.__ts IS NOT NULL"
        if view.ttl and view.ttl.total_seconds() > 0:
            micros = int(view.ttl.total_seconds() * 1_000_000)
            live += f" AND {alias}.__ts + to_microseconds({micros}) >= {e_ts}"
        for feature in features:
            name = f"{base}__{feature}" if full_feature_names else feature
            selects.append(f"CASE WHEN {live} THEN {alias}.{_quote(feature)} END AS {_quote(name)}")
    return f"SELECT {', '.join(selects)} FROM entity_rows e " + " ".join(joins)


class EmbeddingOfflineStore(DuckDBOfflineStore):
    @staticmethod
    def get_historical_features(config, feature_views: List[FeatureView], feature_refs: List[str],
                                entity_df: Union[pd.DataFrame, str], registry, project: str,
                                full_feature_names: bool = False,
                                filter_by_created_timestamp: bool = False) -> RetrievalJob:
        views = {v.projection.name_to_use() for v in feature_views}
        plain = (isinstance(entity_df, pd.DataFrame) and not filter_by_created_timestamp
                 and all(type(v) is FeatureView and _asof_view(v) for v in feature_views)
                 and all(ref.split(":", 1)[0] in views for ref in feature_refs))
        if plain:
            key_columns = {c for v in feature_views
                           for c in (v.projection.join_key_map or {e.name: e.name for e in v.entity_columns}).values()}
            plain = key_columns <= set(entity_df.columns)
        if not plain:
            return DuckDBOfflineStore.get_historical_features(
                config=config, feature_views=feature_views, feature_refs=feature_refs, entity_df=entity_df,
                registry=registry, project=project, full_feature_names=full_feature_names,
                filter_by_created_timestamp=filter_by_created_timestamp)
        ts_col = infer_event_timestamp_from_entity_df(dict(zip(entity_df.columns, entity_df.dtypes)))
        entity = _utc_entity(entity_df, ts_col)
        query = asof_query(config, feature_views, feature_refs, list(entity.columns), ts_col, full_feature_names)
        times = entity[ts_col]
        metadata = RetrievalMetadata(features=feature_refs, keys=list(set(entity.columns) - {ts_col}),
                                     min_event_timestamp=times.min().to_pydatetime() if len(times) else None,
                                     max_event_timestamp=times.max().to_pydatetime() if len(times) else None)
        store = config.offline_store
        return AsofRetrievalJob(query, pyarrow.Table.from_pandas(entity, preserve_index=False), full_feature_names,
                                metadata, str(config.repo_path), getattr(store, "duckdb_threads", 2),
                                getattr(store, "duckdb_memory_limit", "2GB"))
