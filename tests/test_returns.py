"""The return recipe's parts on cases with a known answer: size-fit and rate features, user profiles
(also read back through Feast point-in-time), the oracle row, and the driver probes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodvec.core import columns as C

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def _day(d: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=d)


def test_size_ranks_order_letters_and_numbers_in_their_own_systems():
    from prodvec.consumers.return_features import size_ranks

    rank, system = size_ranks(pd.Series(["M", "xl", "42", "38", None, "one size"]))
    assert list(system) == [0, 0, 1, 1, -1, -1]
    assert rank[1] - rank[0] == 2  # M -> L -> XL
    assert rank[2] - rank[3] == 1  # 38 < 42: adjacent numeric sizes one step apart
    assert np.isnan(rank[4]) and np.isnan(rank[5])


def _orders(rows):
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.PRODUCT_ID, C.ORDERED_AT, C.SIZE, C.RETURNED, C.RETURNED_AT])
    frame[C.ORDERED_AT] = pd.to_datetime(frame[C.ORDERED_AT], utc=True)
    frame[C.RETURNED_AT] = pd.to_datetime(frame[C.RETURNED_AT], utc=True)
    frame[C.RETURNED] = frame[C.RETURNED].astype(bool)
    return frame


def test_a_brand_that_runs_small_shows_in_its_earlier_returns_at_the_usual_size_and_nothing_later_counts():
    from prodvec.consumers.return_features import return_features

    products = pd.DataFrame({C.PRODUCT_ID: ["small1", "small2", "true1"], "brand": ["Tiny", "Tiny", "Exact"]})
    rows = []
    # Ten users wear M; their M orders of the small brand come back, their L orders of it and all of Exact do not.
    for u in range(10):
        rows.append((f"u{u}", "true1", _day(1 + u), "M", False, None))
        rows.append((f"u{u}", "small1", _day(20 + u), "M", True, _day(25 + u)))
        rows.append((f"u{u}", "small2", _day(40 + u), "L", False, None))
    rows.append(("new", "true1", _day(60), "S", False, None))
    rows.append(("u0", "small1", _day(80), "M", True, _day(85)))  # the query: the usual size of a small brand
    rows.append(("u1", "small2", _day(80), "L", False, None))  # sized up for it
    orders = _orders(rows)
    feats = return_features(orders, products, np.array([len(orders) - 2, len(orders) - 1]))
    usual, sized_up = feats.iloc[0], feats.iloc[1]
    assert usual["size_offset"] == pytest.approx(0.0, abs=0.5) and sized_up["size_offset"] > 0.5
    # The brand's earlier orders at offset 0 came back, those one size up did not.
    assert usual["brand_offset_return_rate"] > 0.5 > sized_up["brand_offset_return_rate"]
    assert usual["brand_size_up"] > 0  # its shoppers size up on average
    # The query's own return (day 85) is not known at its order time (day 80): small1 had 10 returns of 10 before.
    assert usual["product_orders_before"] == 10
    first = return_features(orders, products, np.array([1]))  # u0's first small1 order: nothing before it
    assert first["product_orders_before"].iloc[0] == 0
    assert first["product_return_rate"].iloc[0] == pytest.approx(orders[C.RETURNED].mean())  # the prior only


def test_engagement_rates_count_only_earlier_events_and_shrink_towards_the_shop_rate():
    from prodvec.consumers.return_features import PRIOR_EVENTS, engagement_rates

    rows = []
    # "liked" is clicked at every one of its 20 impressions, "skipped" at none; both before day 10.
    for i in range(20):
        rows += [("liked", C.IMPRESSION, _day(1)), ("liked", C.CLICK, _day(1)), ("skipped", C.IMPRESSION, _day(2))]
    rows += [("skipped", C.CLICK, _day(12))] * 50  # after the query time: must not count
    events = pd.DataFrame(rows, columns=[C.PRODUCT_ID, C.EVENT_TYPE, C.TS])
    events[C.TS] = pd.to_datetime(events[C.TS], utc=True)
    out = engagement_rates(events, pd.Series(["liked", "skipped", "unseen"]), pd.Series([_day(10)] * 3))
    shop_rate = 70 / 40  # every click over every impression, later ones included
    assert out["click_rate"][0] == pytest.approx((20 + PRIOR_EVENTS * shop_rate) / (20 + PRIOR_EVENTS))
    assert out["click_rate"][1] == pytest.approx(PRIOR_EVENTS * shop_rate / (20 + PRIOR_EVENTS))
    assert out["click_rate"][2] == pytest.approx(shop_rate)  # nothing known: the shop's rate
    assert list(out["impressions_before"]) == [20, 20, 0]
    assert "buy_rate" not in out  # no purchases logged: the step is left out, not zero
    # The same day-12 clicks count for a query after them.
    later = engagement_rates(events, pd.Series(["skipped"]), pd.Series([_day(13)]))
    assert later["click_rate"][0] > out["click_rate"][1]


def test_the_content_score_finds_a_direction_of_the_vectors_and_never_reads_its_products_own_labels():
    from prodvec.consumers.returns import content_scores, product_folds

    rng = np.random.default_rng(0)
    n_products, dim = 400, 16
    vectors = rng.normal(size=(n_products, dim))
    trait = vectors[:, 3] > 0  # returns come from one direction of the space ...
    quirk = rng.normal(0, 1.5, n_products)  # ... and from a per-product cause the vectors do not show
    lines = rng.integers(0, n_products, 6000)
    p_return = 1 / (1 + np.exp(-(-1.0 + 1.5 * trait[lines] + quirk[lines])))
    y = rng.random(len(lines)) < p_return
    ids = pd.Series([f"p{i}" for i in lines])
    train, test = np.arange(4000), np.arange(4000, 6000)
    train_fold, test_fold = product_folds(ids.iloc[train], ids.iloc[test], seed=0)
    # Every line of a product sits in one fold.
    assert pd.Series(train_fold).groupby(ids.iloc[train].to_numpy()).nunique().max() == 1
    residual = y[train] - y[train].mean()
    s_train, s_test = content_scores(vectors[lines[train]], residual, vectors[lines[test]], train_fold, test_fold)
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(trait[lines[test]], s_test) > 0.9  # the direction, read from return labels alone
    # The quirk is each product's own and only its labels show it: a score that read them would track it.
    per_product = pd.Series(s_train).groupby(lines[train]).mean()
    trait_free = per_product - pd.Series(trait.astype(float)).reindex(per_product.index) * \
        np.polyfit(trait[per_product.index], per_product.to_numpy(), 1)[0]
    assert abs(np.corrcoef(trait_free, quirk[per_product.index])[0, 1]) < 0.15


def test_user_profile_rows_keep_bought_minus_returned_and_count_a_return_from_its_return_time():
    from prodvec.consumers.user_profiles import STAMP_DELAY, profile_rows

    orders = _orders([("a", "p1", _day(1), "M", True, _day(5)), ("a", "p2", _day(2), "M", False, None),
                      ("b", "p3", _day(3), "M", False, None)])
    matrix = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], np.float32)
    rows = profile_rows(orders, matrix, np.array([True, True, True]))
    a = rows[rows[C.USER_ID] == "a"].sort_values(C.EVENT_TIMESTAMP)
    assert list(a[C.EVENT_TIMESTAMP]) == [_day(1) + STAMP_DELAY, _day(2) + STAMP_DELAY, _day(5) + STAMP_DELAY]
    np.testing.assert_allclose(np.stack(a["kept"])[1], [0.5, 0.5])  # both bought, none returned yet (unit rows)
    np.testing.assert_allclose(np.stack(a["kept"])[2], [0.0, 1.0])  # p1 came back: p2 is what they kept
    np.testing.assert_allclose(np.stack(a["returned"])[2], [1.0, 0.0])
    assert list(a["n_returned"]) == [0, 0, 1] and list(a["n_bought"]) == [1, 2, 2]


def return_setup(served_home):
    """(shop, Feast store, served views, the report's return task) of the served test home."""
    from prodvec.consumers.returns import ReturnTask
    from prodvec.core import feast_ops
    from prodvec.core.snapshots import SnapshotStore, latest_views

    shop = served_home.shop
    return (shop, feast_ops.open_store(served_home.home), latest_views(SnapshotStore(served_home.home)),
            ReturnTask(eval_cutoff=served_home.schedule.eval_cutoff(shop)))


@pytest.mark.integration
def test_the_return_model_reads_user_profiles_through_feast_and_shows_the_oracle(served_home):
    from prodvec.consumers.returns import ORACLE, evaluate_returns
    from prodvec.consumers.user_profiles import historical_profiles
    from prodvec.core.snapshots import SnapshotStore

    shop, fs, views, task = return_setup(served_home)
    home = served_home.home
    frame = evaluate_returns(shop, fs, views, task).set_index("family")
    assert ORACLE in frame.index and frame.loc[ORACLE, "return_auc"] > 0.7  # the generator's own probabilities
    assert fs.get_feature_view("user_" + views["text_dae"].removeprefix("product_")).entities == ["user"]
    # Point-in-time: an order's own lines join the profile just after it, never at its own time.
    orders = shop.orders[shop.orders[C.ORDERED_AT] > min(SnapshotStore(home).snapshots("text_dae")[0].cutoff,
                                                         shop.end)]
    sample = orders.drop_duplicates(C.ORDER_ID).iloc[:30]
    at = pd.concat([sample.assign(**{C.EVENT_TIMESTAMP: sample[C.ORDERED_AT]}),
                    sample.assign(**{C.EVENT_TIMESTAMP: sample[C.ORDERED_AT] + pd.Timedelta(minutes=1)})])
    profile = historical_profiles(fs, at, [views["text_dae"]])[views["text_dae"]]
    added = profile["n_bought"][30:] - profile["n_bought"][:30]
    assert (added >= 0).all() and (added >= 1).mean() > 0.8


@pytest.mark.integration
def test_the_return_model_scores_the_same_fitted_side_by_side_as_one_after_another(served_home):
    from prodvec.consumers.returns import evaluate_returns

    shop, fs, views, task = return_setup(served_home)
    # Worker processes fit the families' models; the parent reads Feast. Nothing may depend on which does what.
    side_by_side = evaluate_returns(shop, fs, views, task, jobs=2)
    in_turn = evaluate_returns(shop, fs, views, task, jobs=1)
    assert len(side_by_side) == len(views) + 2  # every family, the baseline, the oracle
    pd.testing.assert_frame_equal(side_by_side, in_turn)
