"""unified_proj: one frozen projection of the concatenated modalities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.jobs import produce
from tests.producer_data import fused_modality_store, quiet, same_category_share

SETTINGS = {"dim": 16, "steps": 150, "modalities": "text_dae,clicks_bpr"}


@pytest.fixture(scope="module")
def store_and_shop(tmp_path_factory):
    return fused_modality_store(tmp_path_factory.mktemp("home"))


def test_projection_covers_every_product_and_separates_categories(store_and_shop):
    store, shop, truth = store_and_shop
    run = produce(shop, "unified_proj", [shop.end], store, overrides=SETTINGS, progress=False, log=quiet)[0]
    assert run.validation["success"], run.validation["summary"]
    emb = store.read(run.ref)
    assert set(emb.ids) == set(shop.products["product_id"])
    vectors, _ = emb.lookup(shop.products["product_id"])
    cold = ~shop.products["product_id"].isin(set(shop.events["product_id"])).to_numpy()
    assert same_category_share(vectors, truth) > 0.7
    assert same_category_share(vectors[cold], truth[cold]) > 0.5, "products nobody clicked are placed by content"


def test_the_projection_is_learned_once_and_reused(store_and_shop):
    store, shop, _ = store_and_shop
    later = shop.end + pd.Timedelta(days=7)
    run = produce(shop, "unified_proj", [later], store, overrides=SETTINGS, progress=False, log=quiet)[0]
    first = [r for r in store.snapshots("unified_proj") if r.cutoff < later][-1]
    assert not first.card()["fusion"]["frozen"] and run.ref.card()["fusion"]["frozen"]
    np.testing.assert_array_equal(store.artifacts(first)["projection"], store.artifacts(run.ref)["projection"])
