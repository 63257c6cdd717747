"""Families trained side by side in worker processes give what one process gives, in the right order."""

from __future__ import annotations

import numpy as np
import pytest

from prodvec.core.snapshots import SnapshotStore
from prodvec.family_pool import run_families, stages

pytestmark = pytest.mark.integration


def test_fusions_wait_for_every_family_they_read_and_the_longest_start_first():
    assert stages(["unified", "clicks_bpr", "unified_concat", "text_dae", "clicks_bpr"]) == \
        [["text_dae", "clicks_bpr"], ["unified", "unified_concat"]]
    assert stages(["unified"]) == [["unified"]]
    assert stages(["prod2vec", "mrnet", "sasrec"]) == [["mrnet", "sasrec", "prod2vec"]]


@pytest.fixture(scope="module")
def pooled(served_home, tmp_path_factory):
    """clicks_bpr, text_dae and unified trained by two workers on the served shop, at its first two cutoffs
    (the second warm-starts from the first)."""
    home = tmp_path_factory.mktemp("pooled")
    cutoffs = served_home.schedule.cutoffs(served_home.shop)[:2]
    lines: list[str] = []
    finished: list[str] = []
    produced = run_families(served_home.shop, ["unified", "clicks_bpr", "text_dae"], cutoffs, home, jobs=2,
                            overrides={"text_dae": {"epochs": 10}}, log=lines.append,
                            on_done=lambda family, runs: finished.append(family))
    return home, cutoffs, dict(produced), lines, finished


def test_every_family_writes_a_validated_snapshot_per_cutoff(pooled):
    home, cutoffs, produced, _, finished = pooled
    assert list(produced) == ["unified", "clicks_bpr", "text_dae"]  # the caller's order, whatever ran first
    assert finished[-1] == "unified" and set(finished) == set(produced)
    store = SnapshotStore(home)
    for family in produced:
        refs = store.snapshots(family)
        assert [r.cutoff for r in refs] == sorted(cutoffs)
        # Both workers validated into one Great Expectations root without tripping over each other.
        assert all(r.card()["validation"]["success"] for r in refs), family


def test_the_fusion_reads_the_backbones_of_its_own_cutoff(pooled):
    home, _, _, _, _ = pooled
    store = SnapshotStore(home)
    for ref in store.snapshots("unified"):
        sources = ref.card()["fusion"]["sources"]
        assert set(sources) == {"text_dae", "clicks_bpr"}
        assert all(store.get(source).cutoff == ref.cutoff for source in sources.values())


def neighbours(vectors: np.ndarray, k: int = 10) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    return np.argsort(-cosine, axis=1)[:, :k]


def test_a_worker_gives_the_family_one_process_gives(pooled, served_home, tmp_path):
    # clicks_bpr's loop is seeded and gives the same vectors on any number of threads (the worker has one, this
    # process may have more). Run alone, a worker reproduces the in-process run bit for bit; inside the whole
    # suite the in-process vectors once differed from the worker's. The likely cause, since removed: the loop
    # freshly compiled in one process and loaded from numba's cache in the other differed at rounding level
    # under fastmath's "nsz" (bpr_kernel.FAST). This asserts what a user sees: the same products and the same
    # neighbours.
    home, cutoffs, _, _, _ = pooled
    run_families(served_home.shop, ["clicks_bpr"], cutoffs, tmp_path, jobs=1, progress=False, log=lambda *_: None)
    here, there = SnapshotStore(tmp_path), SnapshotStore(home)
    for a, b in zip(here.snapshots("clicks_bpr"), there.snapshots("clicks_bpr"), strict=True):
        assert a.cutoff == b.cutoff
        ea, eb = here.read(a), there.read(b)
        assert (ea.ids == eb.ids).all()
        na, nb = neighbours(ea.vectors), neighbours(eb.vectors)
        overlap = np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(na, nb)])
        assert overlap >= 0.9, (a.cutoff, overlap)


def test_the_workers_lines_reach_the_callers_log(pooled):
    _, cutoffs, _, lines, _ = pooled
    for family in ("text_dae", "clicks_bpr", "unified"):
        assert sum(line.startswith(f"{family}/v1/") and "rows in" in line for line in lines) == len(cutoffs)


def test_a_mistyped_parameter_fails_before_anything_trains(served_home, tmp_path):
    with pytest.raises(ValueError, match="unknown parameter"):
        run_families(served_home.shop, ["clicks_bpr", "text_dae"], served_home.schedule.cutoffs(served_home.shop),
                     tmp_path, jobs=2, overrides={"text_dae": {"epoch": 3}})
    assert not (tmp_path / "snapshots").exists()


def test_a_failing_family_stops_the_run_with_its_own_error(served_home, tmp_path):
    # unified refuses to average 64-dimensional modalities into 32 dimensions: raised in a worker, seen here,
    # after the families of the first stage finished (and were handed to on_done).
    finished = []
    with pytest.raises(ValueError, match="one dimension"):
        run_families(served_home.shop, ["clicks_bpr", "unified"], served_home.schedule.cutoffs(served_home.shop)[:1],
                     tmp_path, jobs=2, overrides={"unified": {"dim": 32}}, log=lambda *_: None,
                     on_done=lambda family, runs: finished.append(family))
    assert finished == ["clicks_bpr"]
