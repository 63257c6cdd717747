"""mrnet learns categories from titles, and its tasks come from the shop's own columns."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodvec.core.producer import TrainContext
from prodvec.producers.mrnet import linear_r2
from prodvec.producers.mrnet_tasks import CLASSIFY, build_tasks
from prodvec.producers import make_producer, producer_class
from tests.producer_data import known_answer_shop, same_category_share

FAST = producer_class("mrnet").smoke_settings


@pytest.fixture(scope="module")
def shop_and_truth():
    return known_answer_shop()


def train(shop, **overrides):
    producer = make_producer("mrnet", {**FAST, **overrides})
    return producer.train(shop, TrainContext(cutoff=shop.end, progress=False))


@pytest.fixture(scope="module")
def embedded(shop_and_truth):
    """Rows in catalogue order: every product has a title, so every one is embedded."""
    shop, _ = shop_and_truth
    producer = make_producer("mrnet", FAST)
    emb = producer.train(shop, TrainContext(cutoff=shop.end, progress=False))
    vectors, found = emb.lookup(shop.products["product_id"])
    assert found.all()
    # The served vectors are the product-group code, which keeps what z learned.
    assert producer.card_extras_["mrnet"]["output"] == "sparse code", producer.card_extras_
    return vectors


def test_neighbours_share_the_true_category_even_without_a_category_label(shop_and_truth, embedded):
    shop, truth = shop_and_truth
    unlabelled = shop.products["category"].isna().to_numpy()
    share = same_category_share(embedded, truth)
    # The neighbours of products whose record lacks a category: only the title places them.
    unit = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)
    sims = unit[unlabelled] @ unit.T
    sims[np.arange(unlabelled.sum()), np.flatnonzero(unlabelled)] = -np.inf
    neighbours = np.argsort(-sims, axis=1)[:, :10]
    share_unlabelled = float((truth[neighbours] == truth[unlabelled][:, None]).mean())
    assert share > 0.8 and share_unlabelled > 0.8, f"{share:.2f}, {share_unlabelled:.2f}; chance is 0.25"


def test_a_linear_probe_reads_the_held_out_category(shop_and_truth, embedded):
    """Fit on products with a category, score on the quarter whose category the shop never showed."""
    shop, truth = shop_and_truth
    held_out = shop.products["category"].isna().to_numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(embedded[~held_out], truth[~held_out])
    accuracy = probe.score(embedded[held_out], truth[held_out])
    assert accuracy > 0.7, f"probe accuracy {accuracy:.2f}; chance is 0.25"


def test_without_product_groups_the_shared_model_alone_learns_too(shop_and_truth):
    shop, truth = shop_and_truth
    emb = train(shop, product_groups=False)
    vectors, _ = emb.lookup(shop.products["product_id"])
    assert same_category_share(vectors, truth) > 0.8


def test_tasks_follow_the_shops_columns(shop_and_truth):
    shop, _ = shop_and_truth
    products = shop.products.copy()
    n = len(products)
    products["material"] = np.array(["wool", "silk", "linen"])[np.arange(n) % 3]
    products["season"] = "all"  # one class: nothing to learn
    products["fit"] = np.where(np.arange(n) < n // 10, "slim", None)  # mostly null
    names = {t.name: t for t in build_tasks(replace(shop, products=products))}
    assert names["material"].kind == CLASSIFY and names["material"].width == 3
    assert "season" not in names and "fit" not in names
    assert {"category", "synonym", "log_price", "log_views", "title_tfidf"} <= set(names)
    # Unlabelled products are marked so, not given a class.
    assert not names["category"].labelled[shop.products["category"].isna().to_numpy()].any()
    without_events = {t.name for t in build_tasks(replace(shop, events=None))}
    assert "log_views" not in without_events


def test_retraining_from_the_previous_snapshot_stays_near_it(shop_and_truth):
    shop, _ = shop_and_truth
    first = train(shop)
    producer = make_producer("mrnet", {**FAST, "seed": 1})
    cold = producer.train(shop, TrainContext(cutoff=shop.end, progress=False))
    warm = producer.train(shop, TrainContext(cutoff=shop.end, progress=False, previous=first))

    def distance(emb):
        # Rotation-free comparison: the framework rotates each snapshot onto the previous one anyway.
        a, b = emb.vectors.astype(np.float64), first.vectors.astype(np.float64)
        u, _, vt = np.linalg.svd(a.T @ b)
        return np.linalg.norm(a @ u @ vt - b) / np.linalg.norm(b)

    assert distance(warm) < 0.8 * distance(cold), (distance(warm), distance(cold))


def test_linear_r2_reads_back_a_linear_map_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    assert linear_r2(x, x @ rng.normal(size=(8, 4)) + 3.0) > 0.999
    assert linear_r2(x, rng.normal(size=(500, 4))) < 0.05


def test_a_code_that_loses_z_is_not_served_and_z_still_learns(shop_and_truth):
    """With a read-back bar no code can meet, the shared z is served: the card says so and z knows the categories."""
    shop, truth = shop_and_truth
    producer = make_producer("mrnet", {**FAST, "sae_min_r2": 1.01})
    emb = producer.train(shop, TrainContext(cutoff=shop.end, progress=False))
    card = producer.card_extras_["mrnet"]
    assert card["output"] == "shared z" and 0 < card["code_r2"] < 1.01
    vectors, _ = emb.lookup(shop.products["product_id"])
    assert same_category_share(vectors, truth) > 0.8
