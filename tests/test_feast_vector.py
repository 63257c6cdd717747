"""Vector search through Feast: the served snapshot in Feast's Milvus online store (Milvus Lite, a local file)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.core import feast_ops
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore

pytestmark = pytest.mark.integration

pytest.importorskip("pymilvus", reason="pymilvus/milvus-lite are project dependencies: reinstall the project")

IDS = np.array([f"P{i:04d}" for i in range(300)])
CUTS = [pd.Timestamp("2025-02-01", tz="UTC"), pd.Timestamp("2025-03-01", tz="UTC")]


def snapshot_vectors(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(IDS), 16)).astype(np.float32)


def test_retrieve_online_documents_v2_returns_the_served_snapshots_exact_neighbours(tmp_path):
    store = SnapshotStore(tmp_path)
    for cut, seed in zip(CUTS, (1, 2)):
        ref = store.write("fam", 1, cut, Embeddings(IDS, snapshot_vectors(seed)), {})
        store.update_card(ref, validation={"success": True, "summary": "ok"})
        store.promote(ref)
    fs = feast_ops.open_store(tmp_path, f"milvus:{tmp_path / 'milvus.db'}")
    feast_ops.apply(fs, tmp_path)
    assert feast_ops.materialize(fs, tmp_path) == {"product_fam_v1": len(IDS)}

    served = snapshot_vectors(2)  # the newest promoted snapshot; the older one must not answer
    unit = served / np.linalg.norm(served, axis=1, keepdims=True)
    for row in (0, 17, 123):
        found = fs.retrieve_online_documents_v2(features=["product_fam_v1:embedding"], query=served[row].tolist(),
                                                top_k=10).to_df()
        exact = IDS[np.argsort(-(unit @ unit[row]), kind="stable")[:10]]
        assert found["product_id"].iloc[0] == IDS[row], "a product's own vector finds the product first"
        assert found["product_id"].tolist() == exact.tolist()

    # Rolled back, the previous snapshot's neighbours are served.
    store.rollback("fam", 1)
    feast_ops.reset_online_view(fs, "product_fam_v1")
    feast_ops.materialize(fs, tmp_path)
    older = snapshot_vectors(1)
    unit = older / np.linalg.norm(older, axis=1, keepdims=True)
    found = fs.retrieve_online_documents_v2(features=["product_fam_v1:embedding"], query=older[5].tolist(),
                                            top_k=5).to_df()
    assert found["product_id"].tolist() == IDS[np.argsort(-(unit @ unit[5]), kind="stable")[:5]].tolist()
