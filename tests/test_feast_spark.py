"""The Spark profile: Feast's Spark offline store and Spark materialization agree with the DuckDB profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.core import feast_ops
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore

pytestmark = pytest.mark.integration

pytest.importorskip("pyspark", reason="pyspark is a project dependency (feast[spark]): reinstall the project")

CUTS = [pd.Timestamp("2025-02-01", tz="UTC"), pd.Timestamp("2025-03-01", tz="UTC")]
IDS = np.array(["P1", "P2", "P3", "P4"])


def test_spark_profile_returns_the_same_rows_as_duckdb_and_materializes_the_served_snapshot(tmp_path):
    from prodvec.core.feast_spark import java_problem, open_spark_store

    problem = java_problem()
    if problem:
        pytest.skip(f"Spark needs a JVM: {problem}")
    store = SnapshotStore(tmp_path)
    for cut, seed in zip(CUTS, (1, 2)):
        vectors = np.random.default_rng(seed).standard_normal((len(IDS), 4)).astype(np.float32)
        ref = store.write("fam", 1, cut, Embeddings(IDS, vectors), {})
        store.update_card(ref, validation={"success": True, "summary": "ok"})
        store.promote(ref)
    rows = pd.DataFrame({
        "product_id": ["P1", "P2", "P3", "P4", "P1", "P9"],
        "event_timestamp": [CUTS[0] - pd.Timedelta(days=1), CUTS[0], CUTS[1] - pd.Timedelta(seconds=1), CUTS[1],
                            CUTS[1] + pd.Timedelta(days=30), CUTS[1]],
        "row": range(6),
    })
    features = ["product_fam_v1:embedding"]

    def historical(fs) -> pd.DataFrame:
        feast_ops.apply(fs, tmp_path)
        out = fs.get_historical_features(entity_df=rows, features=features).to_df()
        return out.sort_values("row").reset_index(drop=True)[["row", "product_id", "embedding"]]

    duck = historical(feast_ops.open_store(tmp_path))
    spark_fs = open_spark_store(tmp_path)
    spark = historical(spark_fs)
    assert spark["product_id"].tolist() == duck["product_id"].tolist()
    for a, b in zip(duck["embedding"], spark["embedding"]):
        if a is None or (np.ndim(a) == 0 and pd.isna(a)):
            assert b is None or (np.ndim(b) == 0 and pd.isna(b))
        else:
            assert np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    # Point-in-time: the row before the first cutoff has nothing, the unknown product nothing.
    known = [not (v is None or (np.ndim(v) == 0 and pd.isna(v))) for v in spark["embedding"]]
    assert known == [False, True, True, True, True, False]

    # Spark materialization loads the newest served snapshot into the online store.
    served = feast_ops.materialize(spark_fs, tmp_path)
    assert served == {"product_fam_v1": len(IDS)}
    online = spark_fs.get_online_features(features=features, entity_rows=[{"product_id": "P3"}]).to_dict()
    newest = store.read(store.get("fam/v1/20250301T000000Z")).vectors[2]
    assert np.array_equal(np.asarray(online["embedding"][0], np.float32), newest)
