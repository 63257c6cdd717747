"""Neighbours served per snapshot: the index follows promote/rollback, answers agree with exact cosine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from prodvec.cli import main
from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.neighbours import INDEX_DIR, NeighbourIndex, served_index, served_ref, similar, top_k_cosine, unit
from prodvec.core.snapshots import SnapshotError, SnapshotStore

CUT1 = pd.Timestamp("2025-02-01", tz="UTC")
CUT2 = pd.Timestamp("2025-03-01", tz="UTC")


def vectors(n: int, dim: int = 16, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    return Embeddings(np.array([f"P{i:05d}" for i in range(n)]), rng.standard_normal((n, dim)).astype(np.float32))


def exact(emb: Embeddings, query: np.ndarray, k: int, exclude=()) -> list[str]:
    unit = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    scores[list(exclude)] = -np.inf
    return emb.ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def promote(store: SnapshotStore, cutoff, emb: Embeddings, success: bool = True):
    ref = store.write("fam", 1, cutoff, emb, {})
    store.update_card(ref, validation={"success": success, "summary": "test verdict"})
    store.promote(ref)
    return ref


def test_a_product_is_its_own_nearest_and_neighbours_match_exact_cosine(tmp_path):
    emb = vectors(500)
    ref = promote(SnapshotStore(tmp_path), CUT1, emb)
    index = served_index(tmp_path, "fam")
    positions, scores = index.search(emb.vectors[:50], 1)
    assert (index.ids[positions[:, 0]] == emb.ids[:50]).all() and np.allclose(scores, 1.0, atol=1e-5)
    hits = similar(tmp_path, "fam", "P00007", k=10)
    assert hits.snapshot == ref.id
    assert hits.ids == exact(emb, emb.vectors[7], 10, exclude=[7]), "the product itself is never its own answer"
    assert hits.scores == sorted(hits.scores, reverse=True)


def test_a_session_query_excludes_its_products_and_a_vector_query_needs_the_right_dimension(tmp_path):
    emb = vectors(300)
    promote(SnapshotStore(tmp_path), CUT1, emb)
    session = ["P00001", "P00002", "P00003"]
    unit = emb.vectors[1:4] / np.linalg.norm(emb.vectors[1:4], axis=1, keepdims=True)
    hits = similar(tmp_path, "fam", products=session, k=5)
    assert hits.ids == exact(emb, unit.mean(axis=0), 5, exclude=[1, 2, 3])
    assert similar(tmp_path, "fam", vector=emb.vectors[9], k=1).ids == ["P00009"]
    with pytest.raises(ValueError, match="16"):
        similar(tmp_path, "fam", vector=[1.0, 2.0], k=1)


def test_the_index_switches_with_promote_and_rollback_and_a_failed_snapshot_gets_none(tmp_path):
    store = SnapshotStore(tmp_path)
    first = promote(store, CUT1, vectors(200, seed=1))
    second = promote(store, CUT2, vectors(200, seed=2))
    assert (first.path / INDEX_DIR).is_dir() and (second.path / INDEX_DIR).is_dir()
    assert served_index(tmp_path, "fam").snapshot == second.id
    store.rollback("fam", 1)
    assert served_index(tmp_path, "fam").snapshot == first.id
    assert similar(tmp_path, "fam", "P00000", k=3).ids == exact(vectors(200, seed=1), vectors(200, seed=1).vectors[0],
                                                                 3, exclude=[0])
    failed = store.write("fam", 1, pd.Timestamp("2025-04-01", tz="UTC"), vectors(200, seed=3), {})
    store.update_card(failed, validation={"success": False, "summary": "collapsed"})
    with pytest.raises(SnapshotError):
        store.promote(failed)
    assert not (failed.path / INDEX_DIR).exists()
    assert served_index(tmp_path, "fam").snapshot == first.id


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_approximate_indexes_agree_with_the_exact_one(kind, tmp_path):
    rng = np.random.default_rng(4)
    # Clustered, like trained embeddings (uniform noise in 32-d is the worst case for any ANN index).
    centres = rng.standard_normal((40, 32))
    emb = Embeddings(np.array([f"P{i:05d}" for i in range(4000)]),
                     (centres[rng.integers(0, 40, 4000)] + 0.3 * rng.standard_normal((4000, 32))).astype(np.float32))
    queries = np.arange(0, 4000, 20)
    flat = top_k_cosine(emb.vectors[queries], emb.vectors, 10, exclude=queries, kind="flat")
    index = NeighbourIndex.from_vectors(emb.ids, emb.vectors, kind)
    index.save(tmp_path)
    approx = NeighbourIndex.load(tmp_path, emb.ids).search(emb.vectors[queries], 10, exclude=queries)[0]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(flat, approx)])
    assert recall >= 0.95
    assert not (approx == queries[:, None]).any()
    np.testing.assert_allclose(index.vectors(queries[:3]), unit(emb.vectors[queries[:3]]), atol=1e-6)


def test_an_unknown_product_says_which_families_cover_new_products(tmp_path):
    promote(SnapshotStore(tmp_path), CUT1, vectors(50))
    with pytest.raises(SnapshotError, match="content or fused family"):
        similar(tmp_path, "fam", "NOPE", k=3)
    with pytest.raises(SnapshotError, match="serves nothing"):
        similar(tmp_path, "other", "P00001", k=3)


def test_exclusions_and_short_indexes_leave_empty_slots():
    index = NeighbourIndex.from_vectors(["a", "b", "c"], np.eye(3, 4))
    positions, scores = index.search(np.eye(3, 4)[:1], 5, exclude=np.array([0]))
    assert positions.shape == (1, 3) and positions[0, 2] == -1 and scores[0, 2] == -np.inf


def test_prodvec_similar_on_a_served_shop_answers_for_a_product_the_clicks_never_saw(served_home):
    """The click family has no vector for a product nobody clicked before its cutoff; the fusion does."""
    store = SnapshotStore(served_home.home)
    clicks_ids = set(store.read(served_ref(store, "clicks_bpr")).ids)
    unified = served_ref(store, "unified")
    unified_ids = store.read(unified).ids
    cold = [p for p in unified_ids if p not in clicks_ids]
    assert cold, "the served shop has products listed after the last click the click family saw"
    runner = CliRunner()
    result = runner.invoke(main, ["similar", cold[0], "--family", "unified", "-k", "5", "--home", str(served_home.home)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"snapshot: {unified.id}"
    answered = [line.split()[1] for line in lines[1:]]
    assert len(answered) == 5 and cold[0] not in answered
    refused = runner.invoke(main, ["similar", cold[0], "--family", "clicks_bpr", "--home", str(served_home.home)])
    assert refused.exit_code != 0 and "content or fused family" in refused.output
    session = runner.invoke(main, ["similar", "--session", ",".join(unified_ids[:3]), "-k", "3",
                                   "--home", str(served_home.home)])
    assert session.exit_code == 0 and not set(unified_ids[:3]) & {l.split()[1] for l in session.output.splitlines()[1:]}
    assert set(answered) <= set(served_home.shop.products[C.PRODUCT_ID])
