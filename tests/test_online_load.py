"""Redis under load while a new snapshot is materialized: no failed request, no product mixed from two snapshots.

Short and bounded here (16 clients x 6 requests, at most 60 s); `make bench`
runs the long version and reports the latencies. Nothing here asserts a timing.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from prodvec.consumers.online_load import redis_server, run_load
from prodvec.core import feast_ops
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore

pytestmark = pytest.mark.integration


def two_snapshots(home, n: int = 400, dim: int = 64):
    store = SnapshotStore(home)
    ids = np.array([f"P{i:05d}" for i in range(n)])
    refs = []
    for cutoff, seed in (("2025-02-01", 1), ("2025-03-01", 2)):
        vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
        ref = store.write("fam", 1, pd.Timestamp(cutoff, tz="UTC"), Embeddings(ids, vectors), {})
        store.update_card(ref, validation={"success": True, "summary": "ok"})
        refs.append(ref)
    store.promote(refs[0])
    return refs


def test_sixteen_clients_never_fail_nor_see_a_mixed_product_while_a_snapshot_is_materialized(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it with apt-get)")
    old, new = two_snapshots(tmp_path)
    with redis_server() as url:
        fs = feast_ops.open_store(tmp_path, url)
        feast_ops.apply(fs, tmp_path)
        feast_ops.materialize(fs, tmp_path)
        result = run_load(tmp_path, url, "product_fam_v1", old, new, clients=16, requests_per_client=6,
                          max_seconds=60)
        print("\n".join(result.lines()))
        assert result.requests == 16 * 6 and not result.failures, result.failures[:5]
        assert not result.mixes, result.mixes[:5]
        assert result.products_from[old.tag] > 0 and result.products_from[new.tag] > 0, "both snapshots were read"
        # After the switch every product is the new snapshot's.
        after = fs.get_online_features(features=["product_fam_v1:embedding"],
                                       entity_rows=[{"product_id": "P00007"}]).to_dict()["embedding"][0]
        assert np.array_equal(np.asarray(after, np.float32), SnapshotStore(tmp_path).read(new).vectors[7])
