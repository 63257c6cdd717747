"""Feast objects generated from the snapshots on disk.

`feature_repo/repo.py` calls `definitions()` so that a freshly promoted
version shows up on the next `feast apply` with no hand edits. Every served
(family, version) becomes one feature view `product_<family>_v<N>` whose rows
are that version's promoted snapshots, each stamped with its cutoff.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float32
import pyarrow.parquet as pq

from prodvec.core import columns as C
from prodvec.core.snapshots import USER_DIR, SnapshotStore, default_home, view_name

PROJECT = "prodvec"
# A snapshot stays valid until a newer one supersedes it; the ttl only bounds
# how far back `feast materialize-incremental` looks on a view's first run,
# so it must reach the oldest cutoff a shop may have.
EMBEDDING_TTL = timedelta(days=5 * 365)
LATEST_SERVICE = "product_embeddings_latest"

# The join key every product feature view hangs on.
product = Entity(
    name="product",
    join_keys=[C.PRODUCT_ID],
    value_type=ValueType.STRING,
    description="A catalogue product (products.parquet product_id)",
)


# User profiles in product space (consumers/user_profiles.py writes them here, one table per product view).
user = Entity(name="user", join_keys=[C.USER_ID], value_type=ValueType.STRING,
              description="A shopper (orders.parquet user_id)")


def user_view(path: Path) -> FeatureView:
    """The point-in-time user profile view of one table written by consumers/user_profiles.py."""
    meta = pq.read_schema(path).metadata or {}
    dim, product_view = int(meta[b"dim"]), meta[b"product_view"].decode()
    source = FileSource(name=f"{path.stem}_source", path=str(path.resolve()), timestamp_field=C.EVENT_TIMESTAMP,
                        created_timestamp_column=C.CREATED_TIMESTAMP)
    return FeatureView(
        name=path.stem, entities=[user], ttl=EMBEDDING_TTL, source=source, online=True,
        schema=[Field(name="kept", dtype=Array(Float32), vector_length=dim),
                Field(name="returned", dtype=Array(Float32), vector_length=dim),
                Field(name="n_bought", dtype=Float32), Field(name="n_returned", dtype=Float32)],
        description=f"User profile in the space of {product_view}: mean kept and returned product vectors",
        tags={"product_view": product_view, "dim": str(dim)})


def feature_view(family: str, version: int, dim: int, source_path: Path, spark: bool = False) -> FeatureView:
    name = view_name(family, version)
    # The same served Parquet; Feast's Spark offline store reads only SparkSources.
    source_class = _spark_source if spark else FileSource
    source = source_class(
        name=f"{name}_source",
        path=str(source_path.resolve()),
        timestamp_field=C.EVENT_TIMESTAMP,
        created_timestamp_column=C.CREATED_TIMESTAMP,
    )
    return FeatureView(
        name=name,
        entities=[product],
        ttl=EMBEDDING_TTL,
        # Marked for vector search: a vector-capable online store (Milvus) indexes it for
        # `retrieve_online_documents_v2`; SQLite and Redis store it as before.
        schema=[Field(name=C.EMBEDDING, dtype=Array(Float32), vector_length=dim, vector_index=True,
                      vector_search_metric="COSINE")],
        source=source,
        online=True,
        description=f"{family} product embedding, version {version} ({dim} floats); one row per product per snapshot",
        tags={"family": family, "version": str(version), "dim": str(dim)},
    )


def _spark_source(**kwargs):
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    return SparkSource(file_format="parquet", **kwargs)


def definitions(home: str | Path | None = None, spark: bool = False) -> dict[str, object]:
    """Every Feast object for the served versions under `home`, keyed by name (Spark sources if `spark`)."""
    store = SnapshotStore(home if home is not None else default_home())
    objects: dict[str, object] = {"product": product}
    latest: dict[str, FeatureView] = {}
    for family, version, dim in store.served_versions():
        view = feature_view(family, version, dim, store.served_table(family, version), spark)
        objects[view.name] = view
        latest[family] = view  # served_versions is sorted, so the last one wins
    # Profiles of a product view no longer served are left out with it.
    users = [p for p in sorted((store.home / USER_DIR).glob("user_*.parquet"))
             if p.stem.replace("user_", "product_", 1) in objects]
    if users:
        objects["user"] = user
        objects.update({path.stem: user_view(path) for path in users})
    if latest:
        # What a consumer asks for when it wants "the current embedding of every family".
        objects[LATEST_SERVICE] = FeatureService(
            name=LATEST_SERVICE,
            features=list(latest.values()),
            description="Newest served version of every embedding family",
        )
    return objects
