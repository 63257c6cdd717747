"""mrnet learns categories from titles, and its tasks come from the shop's own columns."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodvec.core.producer import TrainContext
from prodvec.producers.mrnet import autoencoder_init, carry_word_vectors, linear_r2
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


# -- continuing from the previous snapshot's network ------------------------------------------------


def test_word_vectors_carry_over_by_word_and_new_words_are_translated():
    """Known words keep the previous fine-tuned vectors; a new word goes through the linear map
    the shared words define (here an exact one, so the new word lands exactly where it should)."""
    rng = np.random.default_rng(0)
    dim = 4
    translation, shift = rng.normal(size=(dim, dim)), rng.normal(size=dim)
    words = ["red", "shirt", "cotton", "silk", "linen", "wool", "denim", "scarf"]  # this run's rows 1..
    vectors = np.vstack([np.zeros(dim), rng.normal(size=(len(words), dim))]).astype(np.float32)
    old_words = ["shirt", "red", "cotton", "silk", "linen", "wool", "denim", "velvet"]  # "scarf" is new
    old_matrix = np.zeros((len(old_words) + 1, dim), dtype=np.float32)
    for i, w in enumerate(old_words):
        old_matrix[i + 1] = vectors[words.index(w) + 1] @ translation + shift if w in words else 9.0
    out = carry_word_vectors(np.array(["", *old_words]), old_matrix, words, vectors)
    assert (out[0] == 0).all()
    for i, w in enumerate(words[:-1]):
        np.testing.assert_array_equal(out[i + 1], old_matrix[old_words.index(w) + 1])
    np.testing.assert_allclose(out[-1], vectors[-1] @ translation + shift, rtol=1e-4, atol=1e-4)
    # Nothing shared, or another word dimension: no carry-over (a cold start).
    assert carry_word_vectors(np.array(["", "velvet"]), old_matrix[:2], words, vectors) is None
    assert carry_word_vectors(np.array(["", *old_words]), old_matrix[:, :2], words, vectors) is None


def test_heads_carry_over_by_unit_and_a_new_class_keeps_its_fresh_weights():
    import torch

    from prodvec.producers.mrnet import build_encoder, load_network, network_state
    from prodvec.producers.mrnet_tasks import Task

    torch.manual_seed(0)
    words = ["a", "b", "c"]
    vectors = np.vstack([np.zeros(3), np.eye(3)]).astype(np.float32)
    labelled = np.ones(2, dtype=bool)
    before = [Task("colour", CLASSIFY, 2, np.zeros(2, np.int64), labelled, ("blue", "red"))]
    encoder = build_encoder(vectors, hidden=4, dim=8, freeze=False)
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 2)])
    state = network_state(encoder, heads, before, words)

    after = [Task("colour", CLASSIFY, 3, np.zeros(2, np.int64), labelled, ("green", "red", "blue")),
             Task("size", CLASSIFY, 2, np.zeros(2, np.int64), labelled, ("s", "m"))]
    fresh_encoder = build_encoder(vectors, hidden=4, dim=8, freeze=False)
    fresh_heads = torch.nn.ModuleList([torch.nn.Linear(8, 3), torch.nn.Linear(8, 2)])
    green, size = fresh_heads[0].weight[0].detach().clone(), fresh_heads[1].weight.detach().clone()
    assert load_network(state, words, vectors, fresh_encoder, fresh_heads, after)
    old = heads[0].weight.detach()
    new = fresh_heads[0].weight.detach()
    torch.testing.assert_close(new[1], old[1])  # red
    torch.testing.assert_close(new[2], old[0])  # blue
    torch.testing.assert_close(new[0], green)  # green: new since then
    torch.testing.assert_close(fresh_heads[1].weight.detach(), size)  # a new task
    torch.testing.assert_close(fresh_encoder.lstm.weight_hh_l0, encoder.lstm.weight_hh_l0)
    # A network of another shape is not loaded.
    other = build_encoder(vectors, hidden=5, dim=8, freeze=False)
    assert not load_network(state, words, vectors, other, fresh_heads, after)
    assert not load_network({}, words, vectors, fresh_encoder, fresh_heads, after)


def test_autoencoder_blocks_follow_their_category():
    """Group blocks are matched by name: a group that moved keeps its blocks, a new one starts at zero."""
    from prodvec.producers.sparse_autoencoder import SparseAutoencoderConfig, fit_sparse_autoencoder

    rng = np.random.default_rng(0)
    d = 4
    z = rng.normal(size=(60, d)).astype(np.float32)
    cfg = SparseAutoencoderConfig(code=3, epochs=2, batch_size=32)
    _, state = fit_sparse_autoencoder(z, np.arange(60) % 2, 2, cfg, rng, "cpu")  # groups "bags", "tops"
    init = autoencoder_init({f"sae.{k}": v for k, v in {**state, "groups": np.array(["bags", "tops"])}.items()},
                            np.array(["hats", "tops", "bags"]))
    np.testing.assert_array_equal(init["groups"], [-1, 1, 0])
    _, after = fit_sparse_autoencoder(z, np.arange(60) % 3, 3, replace(cfg, epochs=0), rng, "cpu", init=init)
    block = lambda w, b: w[..., d * b : d * (b + 1)]  # noqa: E731
    for new, old in ((0, 0), (2, 2), (3, 1)):  # shared, tops, bags
        np.testing.assert_array_equal(block(after["encoder_weight"], new), block(state["encoder_weight"], old))
        np.testing.assert_array_equal(block(after["decoder"].T, new), block(state["decoder"].T, old))
    assert (block(after["encoder_weight"], 1) == 0).all()  # hats: the shared encoding to start with


def test_a_retrain_continues_the_stored_network_with_fewer_passes(shop_and_truth, tmp_path):
    """Through the framework: the second cutoff loads the first snapshot's network (its artifacts) and makes
    warm_epochs passes; without warm start it trains from scratch. Both still learn the categories."""
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.core.training import train_snapshots

    shop, truth = shop_and_truth
    cutoffs = [shop.products["created_at"].sort_values().iloc[len(shop.products) // 2], shop.end]
    settings = {**FAST, "epochs": 3, "warm_epochs": 1}
    for warm_start in (True, False):
        store = SnapshotStore(tmp_path / str(warm_start))
        results = train_snapshots(shop, make_producer("mrnet", settings), cutoffs, store, warm_start=warm_start,
                                  progress=False, log=lambda _: None)
        cards = [r.ref.card()["mrnet"] for r in results]
        assert not cards[0]["continued_previous_network"] and cards[0]["passes_per_task"] == 3
        assert cards[1]["continued_previous_network"] == warm_start
        assert cards[1]["passes_per_task"] == (1 if warm_start else 3)
        assert "encoder.lstm.weight_hh_l0" in store.artifacts(results[0].ref)
        vectors, found = store.read(results[1].ref).lookup(shop.products["product_id"])
        assert found.all() and same_category_share(vectors, truth) > 0.8


def test_warm_epochs_must_be_positive():
    with pytest.raises(ValueError, match="warm_epochs"):
        make_producer("mrnet", {"warm_epochs": 0})
