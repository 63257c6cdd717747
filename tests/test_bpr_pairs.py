"""clicks_bpr's training pairs (producers/bpr.py `interaction_pairs`): one per user and product with a positive
event, weighted by its strongest event, in the order the events first meet it, users and products indexed in
sorted id order. Checked against the pandas groupby that stated this before the integer version replaced it."""

import numpy as np
import pandas as pd
import pytest

from prodvec.core import columns as C
from prodvec.core.shop.model import Shop
from prodvec.producers.bpr import EVENT_WEIGHTS, interaction_pairs


def groupby_pairs(events: pd.DataFrame, min_interactions: int):
    positive = events[events[C.EVENT_TYPE].isin(list(EVENT_WEIGHTS))]
    pairs = pd.DataFrame({"u": positive[C.USER_ID].to_numpy(), "p": positive[C.PRODUCT_ID].to_numpy(),
                          "w": positive[C.EVENT_TYPE].map(EVENT_WEIGHTS).to_numpy()})
    pairs = pairs.groupby(["u", "p"], sort=False)["w"].max().reset_index()
    counts = pairs["p"].value_counts()
    pairs = pairs[pairs["p"].isin(counts.index[counts >= min_interactions])]
    users, _ = pd.factorize(pairs["u"], sort=True)
    products, ids = pd.factorize(pairs["p"], sort=True)
    return users, products, pairs["w"].to_numpy(np.float32), np.asarray(ids, dtype=str)


def events_of(rng, n=5000):
    # Few users and products, so pairs repeat with different kinds; ids unsorted, some products rare.
    kinds = np.array([C.CLICK, C.ADD_TO_CART, C.PURCHASE, "impression"])
    return pd.DataFrame({
        C.SESSION_ID: "s",
        C.USER_ID: [f"U{u:03d}" for u in rng.permutation(300)[rng.integers(0, 300, n)]],
        C.PRODUCT_ID: [f"P{p:03d}" for p in np.minimum(rng.zipf(1.5, n), 400)],
        C.EVENT_TYPE: kinds[rng.integers(0, 4, n)],
        C.TS: pd.Timestamp("2026-01-01", tz="UTC"),
    })


@pytest.mark.parametrize("min_interactions", [1, 3])
def test_pairs_are_those_of_a_groupby_on_the_ids(min_interactions):
    events = events_of(np.random.default_rng(0))
    got = interaction_pairs(Shop(root=".", products=pd.DataFrame(), events=events), min_interactions)
    want = groupby_pairs(events, min_interactions)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert len(want[3]) < events[C.PRODUCT_ID].nunique()  # impressions alone, or too few pairs, make no product
    assert set(np.unique(got[2])) == {1, 2, 3}


def test_a_pair_is_weighted_by_its_strongest_event():
    events = pd.DataFrame({C.USER_ID: ["b", "a", "b", "a", "b"], C.PRODUCT_ID: ["y", "x", "y", "y", "x"],
                           C.EVENT_TYPE: [C.CLICK, C.CLICK, C.PURCHASE, "impression", C.ADD_TO_CART]})
    users, products, weights, ids = interaction_pairs(Shop(root=".", products=pd.DataFrame(), events=events), 1)
    assert list(ids) == ["x", "y"]
    # (b, y) first met at row 0, its purchase counts; (a, x); (b, x); (a, y) was only an impression.
    assert list(zip(users, products, weights)) == [(1, 1, 3.0), (0, 0, 1.0), (1, 0, 2.0)]
