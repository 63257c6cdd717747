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
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.feast_defs import PROJECT, definitions
from prodvec.core.snapshots import SnapshotStore, view_name

REPO_DIR = Path(__file__).resolve().parent.parent / "feature_repo"


def quiet_feast() -> None:
    """Feast and ibis warn loudly about alpha features and deprecations users cannot act on."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="feast")
    warnings.filterwarnings("ignore", message=".*is an experimental feature.*")
    logging.getLogger("feast").setLevel(logging.ERROR)


def open_store(home: str | Path, online: str = "sqlite", plugin: bool = True):
    """A FeatureStore whose registry and online store live under `home`/feast.

    `online` is "sqlite" or a Redis connection string such as "redis://localhost:6379".
    `plugin=False` uses Feast's own batch engine and DuckDB offline store
    instead of prodvec's (prodvec.core.feast_plugin), as `batch_engine: local`
    and `offline_store: type: duckdb` do in feature_store.yaml.
    """
    from feast import FeatureStore
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RegistryConfig, RepoConfig

    quiet_feast()
    feast_dir = Path(home).resolve() / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    if online == "sqlite":
        online_config = SqliteOnlineStoreConfig(path=str(feast_dir / "online_store.db"))
    elif online.startswith("redis://"):
        online_config = RedisOnlineStoreConfig(connection_string=online.removeprefix("redis://"))
    else:
        raise ValueError(f"online store {online!r}: use 'sqlite' or 'redis://HOST:PORT'")
    if plugin:
        from prodvec.core.feast_plugin.engine import ENGINE_TYPE
        from prodvec.core.feast_plugin.offline_store import EmbeddingOfflineStoreConfig

        plugin_settings = {"offline_store": EmbeddingOfflineStoreConfig(), "batch_engine": {"type": ENGINE_TYPE}}
    else:
        plugin_settings = {"offline_store": DuckDBOfflineStoreConfig(), "batch_engine": "local"}
    config = RepoConfig(
        project=PROJECT,
        provider="local",
        registry=RegistryConfig(path=str(feast_dir / "registry.db"), cache_ttl_seconds=0),
        **plugin_settings,
        online_store=online_config,
        entity_key_serialization_version=3,
        repo_path=str(REPO_DIR),
    )
    return FeatureStore(config=config)


def apply(fs, home: str | Path) -> list[str]:
    """Register the views of every served version; drop views that serve nothing now."""
    from feast import FeatureView

    objects = definitions(home)
    wanted = {name for name, obj in objects.items() if isinstance(obj, FeatureView)}
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
    end = pd.Timestamp.now(tz="UTC") if end is None else pd.Timestamp(end)
    served = {}
    for family, version, _ in store.served_versions():
        name = view_name(family, version)
        if views is not None and name not in views:
            continue
        cutoffs = [t for t in store.promoted(family, version)]
        start = pd.to_datetime(cutoffs[0], format="%Y%m%dT%H%M%SZ", utc=True) - pd.Timedelta(seconds=1)
        # Feast prints a banner per view; the caller reports one line instead.
        with contextlib.redirect_stdout(io.StringIO()):
            fs.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime(), feature_views=[name])
        served[name] = store.get(f"{family}/v{version}/{cutoffs[-1]}").card()["rows"]
    return served


def reset_online_view(fs, name: str) -> None:
    """Empty one view's online table, so a rollback can serve an older snapshot again.

    Redis keeps the newest event time per key and would ignore the older rows.
    """
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
