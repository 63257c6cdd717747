"""unified_blend: weights for cosine chosen on sessions no input saw, gaps imputed, per-modality axes frozen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodvec.producers.fusion import block_scores, choose_weights, impute_blocks, normalise, session_auc
from prodvec.producers.unified_blend import probe_scale, two_part_basis


def test_choose_weights_puts_the_weight_on_the_block_whose_cosine_finds_the_purchase():
    rng = np.random.default_rng(0)
    n_sessions, per = 300, 6
    session = np.repeat(np.arange(n_sessions), per)
    # Block 0: the purchased product (last of each session) points where the clicks point; block 1: noise.
    centre = normalise(rng.normal(size=(n_sessions, 8)))
    informative = normalise(centre[session] + rng.normal(scale=1.5, size=(len(session), 8)))
    purchased = np.tile(np.arange(per) == per - 1, n_sessions)
    informative[purchased] = normalise(centre[session[purchased]] + rng.normal(scale=0.3, size=(n_sessions, 8)))
    noise = normalise(rng.normal(size=(len(session), 8)))
    clicked = ~purchased
    scores = block_scores([informative, noise], np.arange(len(session)), session, clicked)
    weights, auc, _ = choose_weights(scores, session, purchased, passes=3, floor=0.1)
    assert weights[0] > 0.8 and weights[1] >= 0.1 / 2 - 1e-9  # the floor keeps some weight on the other block
    assert auc > session_auc(scores.mean(1), session, purchased) + 0.05


def test_the_two_part_basis_puts_cosine_on_the_weighted_block_and_keeps_the_light_one_for_probes():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 600)
    # Block a knows the label; block b is what the (validation) sessions favoured.
    a = normalise(np.eye(3)[labels] @ rng.normal(size=(3, 6)) + rng.normal(scale=0.5, size=(600, 6)))
    b = normalise(rng.normal(size=(600, 6)))
    x = np.hstack([a, b])
    centred = x - x.mean(0)
    basis = two_part_basis(centred, [6, 6], [0.0, 1.0], content_weight=0.02, cosine_dims=4, content_dims=4,
                           complete=[True, True])
    y = centred @ basis
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    assert cross_val_score(probe, y, labels, cv=3).mean() > 0.8  # the content part still carries block a
    # ... while cosines follow block b: they correlate with b's cosines, hardly with a's.
    unit, ub, ua = normalise(y), normalise(centred[:, 6:]), normalise(centred[:, :6])
    cos = (unit[:300] * unit[300:]).sum(1)
    assert np.corrcoef(cos, (ub[:300] * ub[300:]).sum(1))[0, 1] > 0.8
    assert abs(np.corrcoef(cos, (ua[:300] * ua[300:]).sum(1))[0, 1]) < 0.3


def test_a_probe_trained_on_clicked_products_reads_the_content_part_of_cold_ones_the_same_way():
    rng = np.random.default_rng(5)
    n, classes = 1200, 4
    labels = rng.integers(0, classes, n)
    signal = np.eye(classes)[labels]
    # Text knows the label for every product; clicks know it too, but a third of the products (cold) have none.
    text = normalise(signal @ rng.normal(size=(classes, 8)) + rng.normal(scale=1.5, size=(n, 8)))
    clicks = normalise(signal @ rng.normal(size=(classes, 8)) + rng.normal(scale=0.3, size=(n, 8)))
    cold = rng.random(n) < 1 / 3
    x = np.hstack([text, np.where(cold[:, None], 0.0, clicks)])
    centred = x - x.mean(0)
    basis = two_part_basis(centred, [8, 8], [0.0, 1.0], content_weight=0.02, cosine_dims=2, content_dims=10,
                           complete=[True, False])
    # The content part reads the text block only: a cold product's content coordinates are what its text says.
    np.testing.assert_array_equal(basis[8:, 2:], 0.0)
    content = centred @ basis[:, 2:]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(content[~cold], labels[~cold])
    mixed = centred @ two_part_basis(centred, [8, 8], [0.0, 1.0], content_weight=0.02, cosine_dims=2, content_dims=10,
                                     complete=[True, True])[:, 2:]
    probe_mixed = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(mixed[~cold], labels[~cold])
    # With clicks mixed into the content axes, a probe leans on them and misreads the cold products.
    assert probe.score(content[cold], labels[cold]) > probe_mixed.score(mixed[cold], labels[cold]) + 0.15


def test_the_content_part_leaves_out_the_directions_that_hold_almost_nothing():
    rng = np.random.default_rng(6)
    n = 800
    # A 12-dimensional block whose variance lives in 4 directions (the rest ~1e-4 of it), as text_dae's does.
    strong = rng.normal(size=(n, 4)) @ np.linalg.qr(rng.normal(size=(12, 12)))[0][:4]
    block = normalise(strong + rng.normal(scale=1e-3, size=(n, 12)))
    other = normalise(rng.normal(size=(n, 4)))
    x = np.hstack([block, other])
    centred = x - x.mean(0)
    basis = two_part_basis(centred, [12, 4], [0.0, 1.0], content_weight=0.02, cosine_dims=4, content_dims=12,
                           complete=[True, True])
    # 4 cosine axes (all of the other block), then the strong block's 4 directions and none of its near-empty 8.
    assert basis.shape[1] == 4 + 4
    # Without the variance rule (a later snapshot keeping the version's dimension) the count is the one asked.
    assert two_part_basis(centred, [12, 4], [0.0, 1.0], 0.02, 4, 12, [True, True], kept_variance=None).shape[1] == 16


def test_probe_scale_lets_a_probe_that_does_not_standardise_read_the_content_part():
    rng = np.random.default_rng(3)
    n, classes, d = 900, 8, 16
    labels = rng.integers(0, classes, n)
    # Block a knows the label but gets no cosine weight: it lives in the content part, scaled down by √β.
    a = normalise(np.eye(classes)[labels] @ rng.normal(size=(classes, d)) + rng.normal(size=(n, d)))
    b = normalise(rng.normal(size=(n, d)))
    x = np.hstack([a, b])
    centred = x - x.mean(0)
    y = centred @ two_part_basis(centred, [d, d], [0.0, 1.0], content_weight=0.02, cosine_dims=12, content_dims=12,
                                 complete=[True, True])
    scaled = y * probe_scale(y)
    assert scaled.std(0).min() == pytest.approx(1.0)
    plain = LogisticRegression(max_iter=1000)  # L2 at C=1 and no StandardScaler, as a simple downstream probe
    unscaled_accuracy = cross_val_score(plain, y, labels, cv=3).mean()
    scaled_accuracy = cross_val_score(plain, scaled, labels, cv=3).mean()
    assert scaled_accuracy > 0.8 and scaled_accuracy > unscaled_accuracy + 0.15
    # One common factor: every cosine is what it was.
    np.testing.assert_allclose(normalise(scaled), normalise(y), atol=1e-9)


def test_probe_scale_refuses_vectors_with_no_spread():
    from prodvec.core.embeddings import InsufficientData

    with pytest.raises(InsufficientData, match="constant"):
        probe_scale(np.ones((10, 4)))


def test_impute_blocks_places_a_product_without_clicks_where_its_content_says():
    rng = np.random.default_rng(2)
    content = normalise(rng.normal(size=(500, 8)))
    behaviour = normalise(content @ rng.normal(size=(8, 6)))
    has = rng.random(500) < 0.7
    blocks = impute_blocks([content, np.where(has[:, None], behaviour, 0.0)], [np.ones(500, bool), has])
    cosine = (blocks[1][~has] * behaviour[~has]).sum(1)
    assert cosine.mean() > 0.95
    np.testing.assert_allclose(blocks[1][has], behaviour[has])  # observed rows untouched


def test_first_snapshot_is_provisional_and_the_next_freezes_weights_chosen_on_sessions_after_an_earlier_cutoff(
        tmp_path):
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.jobs import produce
    from tests.producer_data import FUSED_MODALITIES, known_answer_shop, quiet, same_category_share

    shop, truth = known_answer_shop()
    store = SnapshotStore(tmp_path)
    middle = shop.products["created_at"].min() + pd.Timedelta(days=22)
    cutoffs = [middle, shop.end]
    for family, settings in FUSED_MODALITIES.items():
        produce(shop, family, cutoffs, store, overrides=settings, progress=False, log=quiet)
    settings = {"modalities": "text_dae,clicks_bpr", "dim": 16}
    first, second = produce(shop, "unified_blend", cutoffs, store, overrides=settings, progress=False, log=quiet)
    assert first.validation["success"], first.validation["summary"]
    assert second.validation["success"], second.validation["summary"]
    card1, card2 = first.ref.card()["fusion"], second.ref.card()["fusion"]
    assert not card1["frozen"] and "provisional" in card1["selection"]["objective"]
    assert card2["frozen"] and str(middle.date()) in card2["selection"]["protocol"]
    chosen = card2["selection"]
    assert chosen["validation_auc"] >= chosen["equal_weights_auc"] > 0.5
    emb = store.read(second.ref)
    # At most `dim`, the same for every snapshot of the version (the first one's: its content part stops at the
    # axes holding 99.9% of the variance), and every product, cold ones included.
    assert emb.dim == card2["dim"] == card1["dim"] == store.read(first.ref).dim <= 16
    assert set(emb.ids) == set(shop.products["product_id"])
    vectors, _ = emb.lookup(shop.products["product_id"])
    assert same_category_share(vectors, truth) > 0.7
    # A later snapshot reuses the frozen axes.
    later = produce(shop, "unified_blend", [shop.end + pd.Timedelta(days=7)], store, overrides=settings,
                    progress=False, log=quiet)[0]
    np.testing.assert_array_equal(store.artifacts(later.ref)["basis"], store.artifacts(second.ref)["basis"])
    # The probe scale is set by the version's first snapshot (its weakest coordinate has std 1, no rotation
    # undoes that) and kept by every later one, so the gate compares snapshots of one scale.
    provisional = store.read(first.ref).vectors.astype(np.float64)
    assert provisional.std(0).min() == pytest.approx(1.0, rel=1e-3)
    scales = [store.artifacts(r.ref)["scale"][0] for r in (first, second, later)]
    assert scales[0] > 1 and scales[0] == scales[1] == scales[2]
