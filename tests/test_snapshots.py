"""The snapshot store: versions, atomic writes, and what is served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import TMP_PREFIX, SnapshotError, SnapshotStore

CUT1 = pd.Timestamp("2025-02-01", tz="UTC")
CUT2 = pd.Timestamp("2025-03-01", tz="UTC")


def table(n: int, value: float, dim: int = 8) -> Embeddings:
    return Embeddings(np.array([f"P{i:04d}" for i in range(n)]), np.full((n, dim), value, np.float32))


def passed(store: SnapshotStore, ref, success: bool = True):
    store.update_card(ref, validation={"success": success, "summary": "test verdict"})
    return ref


def served_values(store: SnapshotStore, family: str, version: int) -> np.ndarray:
    data = pq.read_table(store.served_table(family, version)).to_pandas()
    return np.unique(np.stack(data["embedding"].to_numpy())[:, 0])


def test_write_then_read_round_trips(tmp_path):
    store = SnapshotStore(tmp_path)
    rng = np.random.default_rng(0)
    emb = Embeddings(np.array(["a", "b", "c"]), rng.normal(size=(3, 5)))
    ref = store.write("fam", 1, CUT1, emb, {"producer": "fam"})
    back = store.read(ref)
    assert list(back.ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(back.vectors, emb.vectors.astype(np.float32))
    card = ref.card()
    assert card["rows"] == 3 and card["dim"] == 5 and card["cutoff"].startswith("2025-02-01")
    assert [r.id for r in store.snapshots("fam")] == ["fam/v1/20250201T000000Z"]


def test_a_new_schema_gets_a_new_version_never_an_overwrite(tmp_path):
    store = SnapshotStore(tmp_path)
    assert store.version_of("fam", {"dim": 8}) is None, "looking a version up registers nothing"
    assert store.register_version("fam", {"dim": 8}) == 1
    assert store.register_version("fam", {"dim": 8}) == 1
    assert store.register_version("fam", {"dim": 16}) == 2
    assert store.version_of("fam", {"dim": 8}) == 1 and store.version_of("fam", {"dim": 16}) == 2


def test_existing_snapshot_is_not_overwritten_without_replace(tmp_path):
    store = SnapshotStore(tmp_path)
    store.write("fam", 1, CUT1, table(4, 1.0), {})
    with pytest.raises(SnapshotError, match="exists"):
        store.write("fam", 1, CUT1, table(4, 2.0), {})
    ref = store.write("fam", 1, CUT1, table(4, 2.0), {}, replace=True)
    assert store.read(ref).vectors[0, 0] == 2.0


def test_only_validated_snapshots_are_promoted(tmp_path):
    store = SnapshotStore(tmp_path)
    ref = store.write("fam", 1, CUT1, table(4, 1.0), {})
    with pytest.raises(SnapshotError, match="not been validated"):
        store.promote(ref)
    passed(store, ref, success=False)
    with pytest.raises(SnapshotError, match="failed validation"):
        store.promote(ref)
    assert store.served_versions() == []
    assert ref.path.exists(), "a failed snapshot is kept for inspection"


def test_served_table_holds_promoted_snapshots_and_rollback_restores_the_previous(tmp_path):
    store = SnapshotStore(tmp_path)
    first = passed(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))
    second = passed(store, store.write("fam", 1, CUT2, table(4, 2.0), {}))
    store.promote(first)
    store.promote(second)
    assert store.served_versions() == [("fam", 1, 8)]
    assert list(served_values(store, "fam", 1)) == [1.0, 2.0]
    assert store.rollback("fam", 1) == second.tag
    assert list(served_values(store, "fam", 1)) == [1.0]
    assert store.promoted("fam", 1) == [first.tag]


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pandas as pd
    import pyarrow.parquet as pq
    from prodvec.core.embeddings import Embeddings
    from prodvec.core.snapshots import SnapshotStore

    # Slow every batch down so the parent can kill us in the middle of the file.
    original = pq.ParquetWriter.write_batch
    def slow(self, *args, **kwargs):
        original(self, *args, **kwargs)
        print("batch", flush=True)
        time.sleep(0.5)
    pq.ParquetWriter.write_batch = slow

    n = 200_000
    emb = Embeddings(np.array([f"P{i:06d}" for i in range(n)]), np.full((n, 8), 9.0, np.float32))
    SnapshotStore(sys.argv[1]).write("fam", 1, pd.Timestamp("2025-03-01", tz="UTC"), emb, {})
    print("finished", flush=True)
    """
)


def test_a_producer_killed_mid_write_leaves_no_snapshot_and_the_previous_one_served(tmp_path):
    store = SnapshotStore(tmp_path)
    first = passed(store, store.write("fam", 1, CUT1, table(4, 1.0), {}))
    store.promote(first)

    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "batch", "writer never started writing"
    leftovers = list((tmp_path / "snapshots" / "fam" / "v1").glob(f"{TMP_PREFIX}*"))
    assert leftovers, "the write should be in progress in a temporary directory"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    assert [r.id for r in store.snapshots("fam")] == [first.id], "a half snapshot must not be listed"
    assert not (tmp_path / "snapshots" / "fam" / "v1" / "20250301T000000Z").exists()
    assert store.promoted("fam", 1) == [first.tag]
    assert list(served_values(store, "fam", 1)) == [1.0]
    removed = store.clean_temporary()
    assert removed and not any(p.exists() for p in removed)


def test_writes_stream_in_batches_not_one_table(tmp_path, monkeypatch):
    """Memory is bounded by the batch size: a large table is written batch by batch."""
    import prodvec.core.snapshots as snapshots

    monkeypatch.setattr(snapshots, "WRITE_BATCH_ROWS", 1000)
    ref = SnapshotStore(tmp_path).write("fam", 1, CUT1, table(4500, 3.0), {})
    assert pq.ParquetFile(ref.data_file).metadata.num_row_groups == 5
