"""Return-model features a shop can compute from its own columns, each as of the order's time.

What a strong team adds to a return model besides product embeddings:

- size fit: the ordered size against the sizes this user ordered before
  (a user who orders one size up for one brand is compensating for its
  sizing), and how often earlier orders of the same brand came back at the
  same size offset (brands that run small come back when ordered in the
  usual size);
- rates: how often earlier orders of this product and of its brand came back,
  shrunk towards the shop's rate so that a product with two orders does not
  score 0 % or 100 %;
- engagement: how often shoppers who were shown the product clicked it, and
  who clicked it carted and bought it (impressions, clicks, carts and
  purchases in the clickstream, shrunk the same way). A product that people
  skip when they see it, or open and leave, is one they like less than its
  listing promises, and disappointment is what comes back; unlike the return
  rate these need no orders, so a product gets them after a few sessions.

Only what was known strictly before each order counts: an earlier order is
counted from its `ordered_at`, its return from its `returned_at`. Nothing here
reads labels of the row itself or of anything later.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.consumers.features import sums_before

# Letter sizes in increasing order; anything else numeric is ranked by value.
LETTER_SIZES = ("XXXS", "XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL", "4XL", "5XL")
_NUMBER = re.compile(r"^\s*(\d+(?:[.,]\d+)?)")
# Pseudo-counts of the shop-wide rate mixed into a rate (empirical-Bayes shrinkage).
PRIOR_ORDERS = 5.0
# The catalogue column naming the brand (optional: without it the brand features are left out).
BRAND = "brand"
# Pseudo-counts of the shop-wide rate mixed into an engagement rate: one listing page's worth of impressions.
PRIOR_EVENTS = 10.0
# (feature, event counted, per event of this type): each step of the funnel against the one before it.
ENGAGEMENT = (("click_rate", C.CLICK, C.IMPRESSION), ("cart_rate", C.ADD_TO_CART, C.CLICK),
              ("buy_rate", C.PURCHASE, C.CLICK))


def size_ranks(sizes: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(rank within its size system, system code) per label; NaN rank / -1 system where unknown.

    Letter sizes (system 0) are ranked by LETTER_SIZES; labels starting with a
    number (system 1: shoe sizes, waist inches) by the rank of that number among
    the shop's numeric sizes, so one step is one size either way.
    """
    text = sizes.astype("string").str.strip().str.upper()
    rank = np.full(len(sizes), np.nan)
    system = np.full(len(sizes), -1, dtype=np.int64)
    letter = text.isin(LETTER_SIZES).fillna(False).to_numpy(bool)
    rank[letter] = pd.Index(LETTER_SIZES).get_indexer(text[letter])
    system[letter] = 0
    number = pd.to_numeric(text.str.extract(_NUMBER)[0].str.replace(",", "."), errors="coerce").to_numpy(float)
    numeric = ~letter & ~np.isnan(number)
    if numeric.any():
        values = np.unique(number[numeric])
        rank[numeric] = np.searchsorted(values, number[numeric])
        system[numeric] = 1
    return rank, system


def _keyed(keys: pd.Series, times: pd.Series) -> pd.DataFrame:
    """The (key, t) frame `sums_before` reads, with any key standing in for the user column."""
    # Naive UTC datetime64: a tz-aware column's plain to_numpy() is an object array of Timestamps, built one by
    # one and parsed again by sums_before (0.9 s + 0.2 s per 400k times, ~5 s of the return model's step).
    return pd.DataFrame({C.USER_ID: keys.astype(str).to_numpy(),
                         "t": pd.to_datetime(times, utc=True).to_numpy(dtype="datetime64[ns]")})


def _rate_before(keys: pd.Series, orders: pd.DataFrame, query_keys: pd.Series, query_times: pd.Series,
                 prior: float) -> tuple[np.ndarray, np.ndarray]:
    """(shrunk return rate, earlier orders) of each query's key from orders strictly before its time."""
    query = _keyed(query_keys, query_times)
    placed = sums_before(_keyed(keys, orders[C.ORDERED_AT]), np.zeros((len(orders), 0)), query)[1]
    back = orders[C.RETURNED].to_numpy(bool)
    returned = sums_before(_keyed(keys[back], orders.loc[back, C.RETURNED_AT]), np.zeros((int(back.sum()), 0)),
                           query)[1]
    return (returned + PRIOR_ORDERS * prior) / (placed + PRIOR_ORDERS), placed.astype(float)


def engagement_rates(events: pd.DataFrame, product_ids: pd.Series, times: pd.Series) -> dict[str, np.ndarray]:
    """Per query (product, time): the product's funnel rates from the events strictly before that time.

    Rates are shrunk towards the shop's own rate over the same events, so a
    product shown twice scores near the shop's rate, not 0 % or 100 %. A step
    whose event types the clickstream lacks (no impressions logged) is left out.
    """
    present = set(events[C.EVENT_TYPE].unique())
    needed = {kind for _, num, den in ENGAGEMENT if {num, den} <= present for kind in (num, den)}
    query = _keyed(product_ids, times)
    counts = {}
    # The shop's rate over the whole clickstream only sets the prior's centre (as for the return rates).
    for kind in needed:
        of_kind = events[events[C.EVENT_TYPE] == kind]
        counts[kind] = sums_before(_keyed(of_kind[C.PRODUCT_ID], of_kind[C.TS]), np.zeros((len(of_kind), 0)),
                                   query)[1].astype(float)
        counts[kind, "shop"] = float(len(of_kind))
    out = {}
    for name, num, den in ENGAGEMENT:
        if num in counts and den in counts and counts[den, "shop"] > 0:
            shop_rate = counts[num, "shop"] / counts[den, "shop"]
            out[name] = (counts[num] + PRIOR_EVENTS * shop_rate) / (counts[den] + PRIOR_EVENTS)
    if C.IMPRESSION in counts:
        out["impressions_before"] = counts[C.IMPRESSION]
    return out


def return_features(orders: pd.DataFrame, products: pd.DataFrame, rows: np.ndarray,
                    events: pd.DataFrame | None = None) -> pd.DataFrame:
    """Features of `orders.iloc[rows]` computed from every line of `orders` known before each one.

    `orders` are all order lines (with `returned`/`returned_at` as finally
    known: each is only counted once its time has passed), `products` the
    catalogue (its `brand` column is used where present), `events` the
    clickstream (engagement rates; left out where None).
    """
    orders = orders.reset_index(drop=True)
    query = orders.iloc[rows]
    times = query[C.ORDERED_AT]
    brand = (orders[C.PRODUCT_ID].map(products.set_index(C.PRODUCT_ID)[BRAND])
             if BRAND in products else pd.Series(np.nan, index=orders.index)).fillna("?").astype(str)
    # The shop's rate before the first test order would be fairer; the whole-history rate only sets the prior's centre.
    prior = float(orders[C.RETURNED].mean()) if len(orders) else 0.0
    out = {}
    out["product_return_rate"], out["product_orders_before"] = _rate_before(
        orders[C.PRODUCT_ID], orders, query[C.PRODUCT_ID], times, prior)
    out["brand_return_rate"], out["brand_orders_before"] = _rate_before(brand, orders, brand.iloc[rows], times, prior)
    if events is not None and len(events):
        out.update(engagement_rates(events, query[C.PRODUCT_ID], times))

    if C.SIZE in orders:
        rank, system = size_ranks(orders[C.SIZE])
        known = system >= 0
        # The user's usual size per size system: mean rank of their earlier orders in it.
        user_system = orders[C.USER_ID].astype(str) + "|" + pd.Series(system).astype(str)
        total, count = sums_before(_keyed(user_system[known], orders.loc[known, C.ORDERED_AT]),
                                   rank[known, None], _keyed(user_system.iloc[rows], times))
        usual = np.where(count > 0, total[:, 0] / np.maximum(count, 1), np.nan)
        offset = rank[rows] - usual
        out["size_rank"] = rank[rows]
        out["size_offset"] = offset
        out["size_history"] = count.astype(float)
        # How earlier orders of this brand came back at the same rounded offset from their user's usual size.
        all_total, all_count = sums_before(_keyed(user_system[known], orders.loc[known, C.ORDERED_AT]),
                                           rank[known, None], _keyed(user_system, orders[C.ORDERED_AT]))
        all_offset = np.where(all_count > 0, rank - all_total[:, 0] / np.maximum(all_count, 1), np.nan)
        bucket = lambda o: np.where(np.isnan(o), "?", np.clip(np.round(np.nan_to_num(o)), -1, 1).astype(int).astype(str))  # noqa: E731
        brand_offset = brand + "|" + bucket(all_offset)
        out["brand_offset_return_rate"], out["brand_offset_orders_before"] = _rate_before(
            pd.Series(brand_offset), orders, pd.Series(brand_offset).iloc[rows], times, prior)
        # Do this brand's shoppers size up? (label-free: the mean offset of its earlier orders)
        has = ~np.isnan(all_offset)
        up_total, up_count = sums_before(_keyed(brand[has], orders.loc[has, C.ORDERED_AT]),
                                         all_offset[has, None], _keyed(brand.iloc[rows], times))
        out["brand_size_up"] = np.where(up_count > 0, up_total[:, 0] / np.maximum(up_count, 1), np.nan)
    return pd.DataFrame(out, index=query.index)
