"""Talking to Feast: open the store for a home, apply, materialize, read features back.

The CLI builds the `RepoConfig` in code from `--home`, mirroring
`feature_repo/feature_store.yaml` (which describes the default home), so tests
and other shops get their own registry and online store.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.feast_defs import PROJECT, definitions
from prodvec.core.snapshots import SnapshotStore, view_name

REPO_DIR = Path(__file__).resolve().parent.parent / "feature_repo"


@contextlib.contextmanager
def quiet_feast() -> Iterator[None]:
    """Around a call into Feast: its and ibis' warnings about alpha features and deprecations users cannot act
    on are silenced inside the block only; the process's warning filters and the `feast` logger's level are
    as they were afterwards, so a caller's own warnings still reach it."""
    logger = logging.getLogger("feast")
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="feast")
        warnings.filterwarnings("ignore", message=".*is an experimental feature.*")
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def open_store(home: str | Path, online: str = "sqlite", plugin: bool = True):
    """A FeatureStore whose registry and online store live under `home`/feast.

    `online` is "sqlite", a Redis connection string such as "redis://localhost:6379",
    or "milvus:PATH" (Milvus Lite in a local file: vector search through
    `retrieve_online_documents_v2`, see `milvus_config`).
    `plugin=False` uses Feast's own batch engine and DuckDB offline store
    instead of prodvec's (prodvec.core.feast_plugin), as `batch_engine: local`
    and `offline_store: type: duckdb` do in feature_store.yaml.
    """
    with quiet_feast():
        from feast import FeatureStore
        from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
        from feast.repo_config import RegistryConfig, RepoConfig

    feast_dir = Path(home).resolve() / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    if online == "sqlite":
        online_config = SqliteOnlineStoreConfig(path=str(feast_dir / "online_store.db"))
    elif online.startswith("redis://"):
        online_config = RedisOnlineStoreConfig(connection_string=online.removeprefix("redis://"))
    elif online.startswith("milvus:"):
        online_config = milvus_config(home, online.removeprefix("milvus:"))
    else:
        raise ValueError(f"online store {online!r}: use 'sqlite', 'redis://HOST:PORT' or 'milvus:PATH'")
    if plugin:
        from prodvec.core.feast_plugin.engine import ENGINE_TYPE
        from prodvec.core.feast_plugin.offline_store import EmbeddingOfflineStoreConfig

        plugin_settings = {"offline_store": EmbeddingOfflineStoreConfig(), "batch_engine": {"type": ENGINE_TYPE}}
    else:
        plugin_settings = {"offline_store": DuckDBOfflineStoreConfig(), "batch_engine": "local"}
    config = RepoConfig(
        project=PROJECT,
        provider="local",
        # Atomic registry writes, and views keep serving while a new snapshot is materialized:
        # without both, readers failed during materialization (prodvec.consumers.online_load).
        registry=RegistryConfig(path=str(feast_dir / "registry.db"), cache_ttl_seconds=0,
                                registry_store_type="prodvec.core.feast_registry.AtomicFileRegistryStore",
                                serve_features_while_materializing=True),
        **plugin_settings,
        online_store=online_config,
        entity_key_serialization_version=3,
        repo_path=str(REPO_DIR),
    )
    with quiet_feast():
        return FeatureStore(config=config)


def milvus_config(home: str | Path, path: str):
    """Feast's Milvus online store on Milvus Lite (a local file, no server), cosine over a FLAT index.

    Milvus gives every float-array feature one vector width (`embedding_dim`),
    so the store holds the views of the commonest served dimension;
    `materialize` skips the others and says so.
    """
    from collections import Counter

    from feast.infra.online_stores.milvus_online_store.milvus import MilvusOnlineStoreConfig

    dims = Counter(dim for _, _, dim in SnapshotStore(home).served_versions())
    dim = min(dims, key=lambda d: (-dims[d], d)) if dims else 64
    return MilvusOnlineStoreConfig(path=str(Path(path).resolve()), embedding_dim=dim, index_type="FLAT",
                                   metric_type="COSINE", vector_enabled=True)


def apply(fs, home: str | Path) -> list[str]:
    """Register the views of every served version; drop views that serve nothing now."""
    from feast import FeatureView

    objects = definitions(home, spark=fs.config.offline_store.type == "spark")
    wanted = {name for name, obj in objects.items() if isinstance(obj, FeatureView)}
    with quiet_feast():
        stale = [fv for fv in fs.list_feature_views() if fv.name not in wanted and fv.name.startswith("product_")]
        stale_services = [s for s in fs.list_feature_services() if s.name not in objects]
        fs.apply(list(objects.values()), objects_to_delete=stale + stale_services, partial=False)
    return sorted(wanted)


def materialize(fs, home: str | Path, end: pd.Timestamp | None = None, views: list[str] | None = None) -> dict[str, int]:
    """Load the newest served snapshot of each view into the online store.

    A full-range materialization per view (from its oldest served cutoff) so
    that a backfilled snapshot older than the last run is not skipped, which
    `materialize_incremental` would do. Returns rows served per view.
    """
    store = SnapshotStore(home)
    store.reconcile_served()  # never load a snapshot whose verdict is no longer a pass
    end = pd.Timestamp.now(tz="UTC") if end is None else pd.Timestamp(end)
    served, skipped = {}, []
    for family, version, dim in store.served_versions():
        name = view_name(family, version)
        if views is not None and name not in views:
            continue
        if getattr(fs.config.online_store, "type", "") == "milvus" and dim != fs.config.online_store.embedding_dim:
            skipped.append(f"{name} ({dim} floats)")
            continue
        cutoffs = [t for t in store.promoted(family, version)]
        start = pd.to_datetime(cutoffs[0], format="%Y%m%dT%H%M%SZ", utc=True) - pd.Timedelta(seconds=1)
        # Something stopped being served (rollback, failed re-validation): its newer rows would win.
        # The flag is cleared only after the load, so a run killed in between resets again.
        stale = store.online_stale(family, version)
        if stale:
            reset_online_view(fs, name)
        # Feast prints a banner per view; the caller reports one line instead.
        with contextlib.redirect_stdout(io.StringIO()), quiet_feast():
            fs.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime(), feature_views=[name])
        newest = store.get(f"{family}/v{version}/{cutoffs[-1]}")
        if newest.cutoff <= end:  # a snapshot stamped after `end` is not loaded yet, by design
            check_loaded(fs, name, spread_sample(newest))
        if stale:
            store.mark_online_fresh(family, version)
        served[name] = newest.card()["rows"]
    if skipped:
        logging.getLogger(__name__).warning("Milvus holds %s-float vectors only; not materialized: %s",
                                            fs.config.online_store.embedding_dim, ", ".join(skipped))
    return served


class OnlineLoadError(RuntimeError):
    """The online store does not hold what was just loaded into it (it restarted or dropped keys)."""


def spread_rows(n: int, sample: int) -> np.ndarray:
    """At most `sample` row positions spread evenly over `n` rows."""
    return np.unique(np.linspace(0, n - 1, min(sample, n)).astype(np.int64)) if n else np.empty(0, np.int64)


def spread_sample(ref, sample: int = 256):
    """`sample` products spread evenly over a snapshot (the rows check_loaded reads back), read from its
    Parquet without decoding the other vectors: reading all of them cost as much as the load itself
    (0.8 s of a 2.8 s materialization of 100k x 256)."""
    import duckdb
    import pyarrow.parquet as pq

    from prodvec.core.embeddings import Embeddings

    rows = spread_rows(pq.ParquetFile(ref.data_file).metadata.num_rows, sample)
    with duckdb.connect(config={"threads": 1}) as con:
        table = con.execute(f"SELECT {C.PRODUCT_ID}, {C.EMBEDDING} FROM read_parquet(?, file_row_number = true) "
                            "WHERE file_row_number IN (SELECT unnest(?::BIGINT[])) ORDER BY file_row_number",
                            [str(ref.data_file), rows.tolist()]).to_arrow_table()
    vectors = table.column(C.EMBEDDING).combine_chunks()
    dim = getattr(vectors.type, "list_size", None) or (len(vectors.flatten()) // max(len(table), 1))
    return Embeddings(table.column(C.PRODUCT_ID).to_numpy(zero_copy_only=False),
                      vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(table), dim))


def read_back(fs, name: str, ids) -> list:
    """The embeddings the online store holds for `ids` (None where missing).

    SQLite and Redis are read with the store's own `online_read`, the call
    get_online_features makes per view: get_online_features first imports
    every online-store module Feast knows to check version support (pymilvus
    and grpc, 0.27 s: longer than loading 10k rows).
    """
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    provider = fs._get_provider()
    if type(provider.online_store) not in (SqliteOnlineStore, RedisOnlineStore):
        return fs.get_online_features(features=[f"{name}:{C.EMBEDDING}"],
                                      entity_rows=[{C.PRODUCT_ID: p} for p in ids]).to_dict()[C.EMBEDDING]
    keys = [EntityKey(join_keys=[C.PRODUCT_ID], entity_values=[Value(string_val=str(p))]) for p in ids]
    rows = provider.online_read(fs.config, fs.get_feature_view(name), keys, [C.EMBEDDING])
    return [None if not values or C.EMBEDDING not in values else list(values[C.EMBEDDING].float_list_val.val)
            for _, values in rows]


def check_loaded(fs, name: str, newest, sample: int = 256) -> None:
    """Read back products spread over the newest snapshot: a Redis that restarted mid-load lost the
    rows written before, and Feast's client reconnects silently, so the load alone looks successful."""
    if len(newest) == 0:
        return
    rows = spread_rows(len(newest), sample)
    got = read_back(fs, name, newest.ids[rows])
    wrong = [str(newest.ids[r]) for r, v in zip(rows, got)
             if v is None or not np.array_equal(np.asarray(v, np.float32), newest.vectors[r], equal_nan=True)]
    if wrong:
        raise OnlineLoadError(f"{name}: {len(wrong)} of {len(rows)} products read back after the load are missing "
                              f"or differ online (e.g. {wrong[0]}): the online store lost data during the load")


def reset_online_view(fs, name: str) -> None:
    """Empty one view's online table, so a rollback can serve an older snapshot again.

    Redis keeps the newest event time per key and would ignore the older rows.
    """
    with quiet_feast():
        provider = fs._get_provider()
        view = fs.get_feature_view(name)
        provider.update_infra(project=fs.project, tables_to_delete=[view], tables_to_keep=[],
                              entities_to_delete=[], entities_to_keep=[], partial=True)
        provider.update_infra(project=fs.project, tables_to_delete=[], tables_to_keep=[view],
                              entities_to_delete=[], entities_to_keep=[], partial=True)


def embedding_columns(frame: pd.DataFrame) -> dict[str, str]:
    """Map view name -> column of a `full_feature_names` retrieval."""
    suffix = f"__{C.EMBEDDING}"
    return {c[: -len(suffix)]: c for c in frame.columns if c.endswith(suffix)}


def stack(column: pd.Series, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A column of embedding lists (None where missing) as a matrix and a found-mask."""
    found = column.notna().to_numpy()
    matrix = np.zeros((len(column), dim), dtype=np.float32)
    if found.any():
        matrix[found] = np.stack(column[found].to_numpy()).astype(np.float32)
    return matrix, found
