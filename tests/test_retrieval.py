"""Similar-product retrieval: the metric cores on data with known answers, then once through Feast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.core import columns as C
from prodvec.consumers.retrieval import (
    MOST_POPULAR,
    RetrievalConfig,
    evaluate_retrieval,
    intra_list_diversity,
    popular_top_k,
    rank_metrics,
    self_information,
    session_pairs,
)
from prodvec.core.neighbours import top_k_cosine

CUTOFF = pd.Timestamp("2025-04-01", tz="UTC")


def click_events(rows: list[tuple[str, str, int]], event_type: str = C.CLICK) -> pd.DataFrame:
    """(session, product, minutes after the cutoff) -> events rows."""
    return pd.DataFrame({
        C.SESSION_ID: [s for s, _, _ in rows], C.USER_ID: "u", C.PRODUCT_ID: [p for _, p, _ in rows],
        C.EVENT_TYPE: event_type, C.TS: [CUTOFF + pd.Timedelta(minutes=m) for _, _, m in rows],
    })


def test_pairs_are_each_click_and_the_next_different_click_of_its_session():
    events = pd.concat([
        click_events([("s1", "A", 1), ("s1", "A", 2), ("s1", "B", 3), ("s1", "A", 4), ("s1", "C", 5),
                      ("s2", "D", 1), ("s3", "E", -5), ("s3", "F", 6)]),
        click_events([("s1", "Z", 3), ("s2", "Y", 2)], event_type=C.IMPRESSION),
    ])
    pairs = session_pairs(events.sample(frac=1, random_state=0), CUTOFF)
    # s2 has one click; s3's first click is before the cutoff.
    assert list(zip(pairs["seed"], pairs["target"])) == [("A", "B"), ("B", "A"), ("A", "C")]
    assert (pairs["at"] > CUTOFF).all()


def neighbours_pairs(n: int = 200, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Rows 2i and 2i+1 nearly equal, pairs far apart: each even row's nearest neighbour is the next row."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 2, dim))
    return np.repeat(centres, 2, axis=0) + rng.normal(0, 1e-3, (n, dim))


def test_a_target_that_is_the_nearest_neighbour_scores_recall_and_ndcg_one():
    vectors = neighbours_pairs()
    seeds = np.arange(0, len(vectors), 2)
    top = top_k_cosine(vectors[seeds], vectors, 10, exclude=seeds)
    recall, ndcg = rank_metrics(top, seeds + 1, 10)
    assert recall.mean() == 1.0 and ndcg.mean() == pytest.approx(1.0)
    assert not (top == seeds[:, None]).any(), "a seed never retrieves itself"


def test_a_target_at_rank_three_scores_ndcg_one_half():
    angles = np.radians([0.0, 5.0, 10.0, 15.0, 90.0])  # seed, then ranks 1, 2, 3, and a far one
    vectors = np.c_[np.cos(angles), np.sin(angles)] * np.array([[1.0], [3.0], [0.5], [2.0], [1.0]])
    top = top_k_cosine(vectors[[0]], vectors, 10, exclude=np.array([0]))
    assert top[0, :4].tolist() == [1, 2, 3, 4] and (top[0, 4:] == -1).all()
    recall, ndcg = rank_metrics(top, np.array([3]), 10)
    assert recall[0] == 1.0 and ndcg[0] == pytest.approx(0.5)
    # Beyond k it is a miss.
    assert rank_metrics(top, np.array([3]), 2)[1][0] == 0.0


def test_random_vectors_find_the_target_about_k_over_n_of_the_time():
    n, queries = 1000, 3000
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, 32))
    seeds = rng.integers(0, n, queries)
    targets = (seeds + rng.integers(1, n, queries)) % n
    recall, _ = rank_metrics(top_k_cosine(vectors[seeds], vectors, 10, exclude=seeds), targets, 10)
    assert recall.mean() == pytest.approx(10 / (n - 1), abs=0.006)


def test_the_popular_list_is_the_same_for_every_seed_but_never_holds_the_seed():
    ranking = np.array([5, 3, 1, 0, 2, 4])
    top = popular_top_k(ranking, exclude=np.array([3, 9, 4]), k=3)
    assert top.tolist() == [[5, 1, 0], [5, 3, 1], [5, 3, 1]]
    short = popular_top_k(np.array([1, 0]), exclude=np.array([0]), k=3)
    assert short.tolist() == [[1, -1, -1]]


def test_diversity_is_the_share_of_pairs_in_different_categories():
    lists = np.array([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1], [0, 1, -1, -1], [2, -1, -1, -1]])
    diversity = intra_list_diversity(lists)
    assert diversity[:4].tolist() == pytest.approx([0.0, 1.0, 4 / 6, 1.0])
    assert np.isnan(diversity[4]), "one item has no pairs"


def test_self_information_ranks_rare_items_higher_and_stays_finite_for_unseen():
    info = self_information(np.array([0, 1, 8, 1]))
    assert np.isfinite(info).all()
    assert info[0] > info[1] == info[3] > info[2]
    assert info[2] == pytest.approx(-np.log2(9 / 14))


@pytest.mark.integration
def test_trained_families_retrieve_the_next_click_better_than_chance(served_home):
    from prodvec.core import feast_ops
    from prodvec.consumers.evaluation import RANDOM, EvalContext
    from prodvec.core.snapshots import latest_views
    from prodvec.core.snapshots import SnapshotStore

    shop = served_home.shop
    ctx = EvalContext(shop, feast_ops.open_store(served_home.home), latest_views(SnapshotStore(served_home.home)),
                      served_home.schedule.eval_cutoff(shop))
    result = evaluate_retrieval(ctx, RetrievalConfig(max_queries=1000))
    table = result.table
    assert set(table.index) == {*ctx.families, RANDOM, MOST_POPULAR}
    assert result.headline == "recall@10" and result.best("recall@10") in ctx.families
    for family in ("clicks_bpr", "unified"):
        assert table.loc[family, "recall@10"] > 3 * table.loc[RANDOM, "recall@10"], table
        assert table.loc[family, "ndcg@10"] > table.loc[RANDOM, "ndcg@10"], table
    # One list for everyone: at most 101 distinct products (the seed's own is replaced).
    assert table.loc[MOST_POPULAR, "catalog_coverage@100"] <= 101 / len(ctx.catalog_at(ctx.eval_cutoff)) + 1e-9
    assert ((table["seed_coverage"] > 0.5) & (table["seed_coverage"] <= 1)).all()
    assert table[["diversity@10", "novelty", "cold_recall@10"]].notna().all().all()
