"""The Word2Vec clickstream family (prod2vec, prodsi2vec and their DeepWalk variants) learned something."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from prodvec.core.embeddings import InsufficientData
from prodvec.core.producer import TrainContext
from prodvec.producers.prodsi2vec import SideInfoCorpus, side_info_tokens
from prodvec.producers import make_producer
from prodvec.producers.walks import cooccurrence_graph, random_walks
from tests.producer_data import known_answer_shop, same_category_share

FAST = {"dim": 16}


@pytest.fixture(scope="module")
def shop_and_truth():
    return known_answer_shop()


def train(name: str, shop, previous=None, seed: int = 0):
    producer = make_producer(name, {**FAST, "seed": seed})
    return producer.train(shop, TrainContext(cutoff=shop.end, previous=previous, progress=False))


def labels_of(shop, truth, ids) -> np.ndarray:
    return pd.Series(truth, index=shop.products["product_id"]).loc[ids].to_numpy()


@pytest.mark.parametrize("name", ["prod2vec", "deepwalk_prod2vec", "prodsi2vec", "deepwalk_prodsi2vec"])
def test_clicked_products_of_one_taste_are_neighbours(name, shop_and_truth):
    shop, truth = shop_and_truth
    emb = train(name, shop)
    clicked = np.isin(emb.ids, shop.events["product_id"].unique())
    share = same_category_share(emb.vectors[clicked], labels_of(shop, truth, emb.ids[clicked]))
    assert share > 0.8, f"neighbours share category {share:.2f}; chance is 0.25"
    if name.endswith("prod2vec"):
        assert clicked.all() and len(emb) < len(shop.products), "without side info only clicked products get a vector"


@pytest.mark.parametrize("name", ["prodsi2vec", "deepwalk_prodsi2vec"])
def test_side_info_places_never_clicked_products(name, shop_and_truth):
    shop, truth = shop_and_truth
    emb = train(name, shop)
    clicked_share = shop.products["product_id"].isin(shop.events["product_id"]).mean()
    assert len(emb) / len(shop.products) > clicked_share, "never-clicked products with side info get a vector"
    # Cold products whose record names the category: their neighbours among all products share it.
    labels = labels_of(shop, truth, emb.ids)
    category = shop.products.set_index("product_id")["category"].loc[emb.ids].to_numpy()
    cold = ~np.isin(emb.ids, shop.events["product_id"].unique()) & pd.notna(category)
    assert cold.sum() > 50
    unit = emb.vectors / np.linalg.norm(emb.vectors, axis=1, keepdims=True)
    sims = unit[cold] @ unit.T
    sims[np.arange(cold.sum()), np.flatnonzero(cold)] = -np.inf
    neighbours = np.argsort(-sims, axis=1)[:, :10]
    share = (labels[neighbours] == labels[cold][:, None]).mean()
    assert share > 0.8, f"cold products' neighbours share category {share:.2f}; chance is 0.25"


def test_warm_start_keeps_the_previous_space(shop_and_truth):
    shop, _ = shop_and_truth
    previous = train("prod2vec", shop, seed=0)

    def agreement(emb) -> float:
        rows, _ = previous.lookup(emb.ids)
        cos = (rows * emb.vectors).sum(1) / np.linalg.norm(rows, axis=1) / np.linalg.norm(emb.vectors, axis=1)
        return float(cos.mean())

    cold, warm = train("prod2vec", shop, seed=1), train("prod2vec", shop, previous=previous, seed=1)
    # Without a rotation, an independent run agrees with the old vectors by chance only.
    assert agreement(warm) > 0.5 > agreement(cold) + 0.3, (agreement(warm), agreement(cold))


def test_no_sequence_before_the_first_click_says_why(shop_and_truth):
    shop, _ = shop_and_truth
    early = shop.until(shop.events["ts"].min() - pd.Timedelta(seconds=1))
    for name in ("prod2vec", "deepwalk_prodsi2vec"):
        with pytest.raises(InsufficientData):
            train(name, early)


def test_walks_follow_weighted_edges_and_stay_in_their_component():
    # Two components: a-b-c-d (a path with a heavy a-b edge) and x-y-z; sequences repeat a-b.
    items = np.array(list("abcd") + list("ab") + list("ab") + list("xyz"))
    offsets = np.array([0, 4, 6, 8, 11])
    graph, nodes = cooccurrence_graph(items, offsets, window=1)
    walks = random_walks(graph, walks_per_node=50, walk_length=12, rng=np.random.default_rng(0))
    assert walks.shape == (50 * len(nodes), 12)
    dense = graph.toarray()
    assert (dense[walks[:, :-1], walks[:, 1:]] > 0).all(), "every step follows an edge"
    _, component = sparse.csgraph.connected_components(graph, directed=False)
    assert (component[walks] == component[walks[:, :1]]).all(), "a walk never leaves its component"
    # From b, a (weight 3) is three times as likely as c (weight 1).
    b, a = np.flatnonzero(nodes == "b")[0], np.flatnonzero(nodes == "a")[0]
    after_b = walks[:, 1:][walks[:, :-1] == b]
    assert 0.68 < (after_b == a).mean() < 0.82


def test_side_info_corpus_interleaves_each_product_with_its_own_side_info(shop_and_truth):
    shop, _ = shop_and_truth
    ids, tokens, counts = side_info_tokens(shop)
    own = {pid: set(row[:n]) for pid, row, n in zip(ids, tokens, counts)}
    items = shop.events["product_id"].to_numpy()[:50].astype(str)
    corpus = SideInfoCorpus(items, np.array([0, 20, 50]), ids, tokens, counts, seed=0)
    first, second = list(corpus), list(corpus)
    interleaved = first[:2]
    assert [len(s) for s in interleaved] == [40, 60]
    for sentence in interleaved:
        for product, side in zip(sentence[0::2], sentence[1::2]):
            assert side in own[product]
    assert all(len(s) == n for s, n in zip(first[2:], counts[counts >= 2])), "one catalogue sentence per product"
    assert first != second, "side info is redrawn at every pass"
    assert first == list(SideInfoCorpus(items, np.array([0, 20, 50]), ids, tokens, counts, seed=0)), "seeded"
