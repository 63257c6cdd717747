"""unified_proj: one frozen projection of the concatenated modalities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.producer_data import (assert_placed_by_category, prepared_modalities, produce_validated,  # noqa: F401
                                 store_and_shop)

SETTINGS = {"dim": 16, "steps": 150, "modalities": "text_dae,clicks_bpr"}


def test_projection_covers_every_product_and_separates_categories(store_and_shop):
    store, shop, truth = store_and_shop
    _, emb = produce_validated(store, shop, "unified_proj", SETTINGS)
    assert set(emb.ids) == set(shop.products["product_id"])
    vectors, _ = emb.lookup(shop.products["product_id"])
    cold = ~shop.products["product_id"].isin(set(shop.events["product_id"])).to_numpy()
    assert_placed_by_category(vectors, truth, cold)


def test_the_projection_is_learned_once_and_reused(store_and_shop):
    store, shop, _ = store_and_shop
    first, _ = produce_validated(store, shop, "unified_proj", SETTINGS)
    run, _ = produce_validated(store, shop, "unified_proj", SETTINGS, shop.end + pd.Timedelta(days=7))
    assert run.ref.version == first.ref.version
    assert not first.ref.card()["fusion"]["frozen"] and run.ref.card()["fusion"]["frozen"]
    np.testing.assert_array_equal(store.artifacts(first.ref)["projection"], store.artifacts(run.ref)["projection"])
