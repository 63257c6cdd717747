"""unified_concat: modalities side by side, each weighing the same, layout and PCA frozen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.producers.fusion import normalise
from tests.producer_data import (assert_placed_by_category, prepared_modalities, produce_validated,  # noqa: F401
                                 same_category_share, store_and_shop)

WHOLE = {"modalities": "text_dae,clicks_bpr"}
REDUCED = {**WHOLE, "dim": 8}


def test_cosine_is_the_mean_of_the_modalities_cosines_and_cold_products_are_placed_by_content(store_and_shop):
    store, shop, truth = store_and_shop
    _, emb = produce_validated(store, shop, "unified_concat", WHOLE)
    assert emb.dim == 32 and set(emb.ids) == set(shop.products["product_id"])
    ids = shop.products["product_id"]
    fused, _ = emb.lookup(ids)
    text, _ = store.read(store.snapshots("text_dae")[-1]).lookup(ids)
    clicks_emb = store.read(store.snapshots("clicks_bpr")[-1])
    clicks, clicked = clicks_emb.lookup(ids)
    both = np.flatnonzero(clicked)[:2]
    t, c = normalise(text), np.zeros_like(clicks)
    c[clicked] = normalise(clicks_emb.vectors)[pd.Index(clicks_emb.ids).get_indexer(ids[clicked])]
    expected = ((t[both[0]] @ t[both[1]]) + (c[both[0]] @ c[both[1]])) / 2
    assert fused[both[0]] @ fused[both[1]] == pytest.approx(expected, abs=1e-5)
    # Blocks in name order (clicks_bpr, text_dae): a product nobody clicked keeps its text block at the
    # same scale as everyone else, beside a zero clicks block.
    np.testing.assert_allclose(np.linalg.norm(fused[~clicked][:, 16:], axis=1), 1 / np.sqrt(2), rtol=1e-4)
    assert_placed_by_category(fused, truth, cold=~clicked)


def test_the_pca_basis_and_layout_are_learned_once_and_reused(store_and_shop):
    store, shop, truth = store_and_shop
    first_run, _ = produce_validated(store, shop, "unified_concat", REDUCED)
    run, _ = produce_validated(store, shop, "unified_concat", REDUCED, shop.end + pd.Timedelta(days=7))
    assert run.ref.version == first_run.ref.version and store.read(run.ref).dim == 8
    assert not first_run.ref.card()["fusion"]["frozen"] and run.ref.card()["fusion"]["frozen"]
    np.testing.assert_array_equal(store.artifacts(first_run.ref)["basis"], store.artifacts(run.ref)["basis"])
    vectors, _ = store.read(run.ref).lookup(shop.products["product_id"])
    assert same_category_share(vectors, truth) > 0.7, "8 principal directions keep the categories apart"
