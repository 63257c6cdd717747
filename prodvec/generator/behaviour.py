"""Users, sessions, events, orders and returns, vectorised over sessions in chunks.

Behaviour is where `quality` becomes visible: half of the users are quality
seekers, who click, cart and buy high-quality products much more, so the
co-click and co-purchase structure encodes quality that no text states.

Returns are drawn from a logistic model whose causes live in different
sources (see `_return_logits`): fit (brand x ordered size: text + orders),
quality (behaviour), style mismatch (user history vs. product style) and the
visual trait (image only), plus a base rate and unexplained noise.

Sessions are processed in fixed-size chunks with one random stream per chunk,
so memory is bounded, cost is linear in the number of sessions, and the output
does not depend on anything but the seed and the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
from numpy.dtypes import StringDType

from prodvec.core import columns as C
from prodvec.generator import vocab as V
from prodvec.generator.catalog import (
    CATEGORY_GROUP,
    CATEGORY_NAMES,
    CATEGORY_SHARE,
    CATEGORY_SIZED,
    STYLE_DIM,
    Catalog,
    float_lists,
    gumbel_argmax,
)

USERS_PER_PRODUCT = 0.7
SESSIONS_PER_PRODUCT = 5.0
CHUNK_SESSIONS = 50_000
# Listing slots drawn by popularity per session, before the personal ranking
# keeps the best 8-15; the first MAIN_SLOTS come from the session's main category.
SLOTS, MAIN_SLOTS = 30, 22
MIN_SHOWN, MAX_SHOWN = 8, 15
SESSION_SECONDS = 3600  # sessions start at least this long before the end
MAX_RETURN_DAYS = 30
MIN_RETURN_DAYS = 2
_FOOTWEAR = V.GROUPS.index("footwear")

# Funnel intercepts (logits), calibrated so that at the default size the shop
# has ~60 events and ~5 order lines per product.
CLICK_BIAS, CART_BIAS, BUY_BIAS = 1.5, 0.4, 1.5
# Return model weights (logits); see _return_logits.
RETURN_BASE = -1.85
W_FIT, W_QUALITY, W_STYLE, W_VISUAL, NOISE_SD = 2.4, 4.0, 1.5, 1.5, 0.4


@dataclass(frozen=True)
class Users:
    ids: np.ndarray
    taste: np.ndarray  # (n, STYLE_DIM) float32, hidden
    size: np.ndarray  # index into vocab.SIZES
    budget: np.ndarray  # multiplier of a category's typical price
    quality_seeking: np.ndarray  # bool
    cluster: np.ndarray
    activity: np.ndarray  # relative session rate (heavy users exist)

    def __len__(self) -> int:
        return len(self.ids)


def make_users(n: int, cat: Catalog, rng: np.random.Generator) -> Users:
    """Tastes near a few style clusters, each cluster near a real category's style."""
    n_clusters = 8
    centre_cat = rng.choice(len(CATEGORY_NAMES), n_clusters, p=CATEGORY_SHARE)
    centres = cat.category_centroid[centre_cat] + rng.normal(0, 0.3, (n_clusters, STYLE_DIM))
    cluster = rng.integers(0, n_clusters, n)
    taste = centres[cluster] + rng.normal(0, 0.6, (n, STYLE_DIM))
    width = max(6, len(str(n - 1)))
    return Users(
        ids="U" + np.strings.zfill(np.arange(n).astype(StringDType()), width),
        taste=taste.astype(np.float32),
        size=rng.choice(len(V.SIZES), n, p=V.SIZE_SHARES),
        budget=np.exp(rng.normal(0, 0.35, n)),
        quality_seeking=rng.random(n) < 0.5,
        cluster=cluster,
        activity=np.exp(rng.normal(0, 0.8, n)),
    )


def users_truth_table(users: Users) -> pa.Table:
    return pa.table({
        C.USER_ID: pa.array(users.ids, pa.string()),
        "taste": float_lists(users.taste),
        "size": pa.array(np.array(V.SIZES)[users.size], pa.string()),
        "budget": pa.array(users.budget, pa.float64()),
        "quality_seeking": pa.array(users.quality_seeking, pa.bool_()),
        "cluster": pa.array(users.cluster, pa.int64()),
        "activity": pa.array(users.activity, pa.float64()),
    })


class _Shelf:
    """Products grouped by category and listing time, for popularity draws among the listed.

    Draws are inverse-CDF lookups into one cumulative popularity array, so a
    session at time t only sees products created by t, without a loop.
    """

    def __init__(self, cat: Catalog):
        self.order = np.lexsort((cat.created_s, cat.category))
        self.key = cat.category[self.order].astype(np.int64) * 10**10 + cat.created_s[self.order]
        self.cum = np.concatenate([[0.0], np.cumsum(cat.popularity[self.order])])
        self.first = np.searchsorted(self.key, np.arange(len(CATEGORY_NAMES)) * 10**10)

    def draw(self, category: np.ndarray, t: np.ndarray, rng) -> np.ndarray:
        lo = self.first[category]
        hi = np.searchsorted(self.key, category.astype(np.int64) * 10**10 + t, side="right")
        u = self.cum[lo] + rng.random(category.shape) * (self.cum[hi] - self.cum[lo])
        pos = np.clip(np.searchsorted(self.cum, u, side="right") - 1, lo, hi - 1)
        return self.order[pos]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _mismatch(taste: np.ndarray, style: np.ndarray) -> np.ndarray:
    """RMS distance between a user's taste and a product's style."""
    return np.sqrt(((taste - style) ** 2).mean(-1))


class Behaviour:
    """Simulates all sessions; iterate `chunks()` to get arrow tables chunk by chunk."""

    def __init__(self, cat: Catalog, users: Users, n_sessions: int, seconds: int, start_ns: int, seed: int):
        self.cat, self.users, self.seconds, self.start_ns, self.seed = cat, users, seconds, start_ns, seed
        rng = np.random.default_rng([seed, 3])
        # Who shops when: heavy users hold more sessions; sessions get ids in time order.
        p = users.activity / users.activity.sum()
        self.session_user = rng.choice(len(users), n_sessions, p=p)
        self.session_start = np.sort(rng.integers(0, seconds - SESSION_SECONDS, n_sessions))
        self.session_width = max(7, len(str(n_sessions - 1)))
        self.shelf = _Shelf(cat)
        # Users browse categories near their taste; log share keeps big categories big.
        d2 = ((users.taste[:, None, :] - cat.category_centroid[None, :, :].astype(np.float32)) ** 2).mean(-1)
        self.category_logits = (-1.5 * d2 + np.log(CATEGORY_SHARE)).astype(np.float32)
        self.product_ids = pa.array(cat.ids, pa.string())
        self.user_ids = pa.array(users.ids, pa.string())
        self.event_types = pa.array(list(C.EVENT_TYPES), pa.string())
        self.rel_price = cat.relative_price
        self.n_orders = 0

    def chunks(self) -> Iterator[tuple[pa.Table, pa.Table, pa.Table]]:
        n = len(self.session_user)
        for i, lo in enumerate(range(0, n, CHUNK_SESSIONS)):
            rng = np.random.default_rng([self.seed, 4, i])
            yield self._chunk(lo, min(n, lo + CHUNK_SESSIONS), rng)

    def _affinity(self, u, p, qs_weight: float, taste_weight: float):
        """How much user u wants product p: taste, quality (seekers), popularity, budget."""
        cat, users = self.cat, self.users
        taste = -taste_weight * _mismatch(users.taste[u], cat.style[p])
        q = cat.quality[p] - 0.5
        quality = np.where(users.quality_seeking[u], qs_weight * q, 0.3 * q)
        over_budget = np.maximum(0.0, self.rel_price[p] - np.log(users.budget[u]))
        return taste + quality + 0.25 * np.log(cat.popularity[p]) - 1.5 * over_budget

    def _chunk(self, lo: int, hi: int, rng):
        cat, users = self.cat, self.users
        s = hi - lo
        user = self.session_user[lo:hi]
        t0 = self.session_start[lo:hi]

        # Listing: a main and a side category per session, popularity draws
        # among listed products, then a personal ranking by taste.
        logits = self.category_logits[user]
        main, side = gumbel_argmax(logits, rng), gumbel_argmax(logits, rng)
        slot_cat = np.where(np.arange(SLOTS) < MAIN_SLOTS, main[:, None], side[:, None])
        slot_t = np.broadcast_to(t0[:, None], slot_cat.shape)
        cand = self.shelf.draw(slot_cat, slot_t, rng)
        score = -2.0 * _mismatch(users.taste[user][:, None, :], cat.style[cand]) + rng.gumbel(size=cand.shape)
        # A product listed twice in one session is shown once.
        by_id = np.argsort(cand, axis=1, kind="stable")
        sorted_ids = np.take_along_axis(cand, by_id, 1)
        dup = np.zeros_like(cand, dtype=bool)
        np.put_along_axis(dup, by_id[:, 1:], sorted_ids[:, 1:] == sorted_ids[:, :-1], 1)
        score[dup] = -np.inf
        ranked = np.argsort(-score, axis=1, kind="stable")
        shown_n = rng.integers(MIN_SHOWN, MAX_SHOWN + 1, s)
        rank = np.arange(SLOTS)[None, :]
        keep = (rank < shown_n[:, None]) & np.isfinite(np.take_along_axis(score, ranked, 1))
        row, rk = np.nonzero(keep)  # row-major: by session, then rank
        prod = cand[row, ranked[row, rk]]
        u = user[row]

        # Funnel: click -> add to cart -> purchase, each a logistic in affinity.
        aff = self._affinity(u, prod, qs_weight=5.0, taste_weight=2.0)
        clicked = rng.random(len(prod)) < _sigmoid(CLICK_BIAS + aff)
        aff_cart = self._affinity(u, prod, qs_weight=4.0, taste_weight=1.0)
        carted = clicked & (rng.random(len(prod)) < _sigmoid(CART_BIAS + aff_cart))
        over_budget = np.maximum(0.0, self.rel_price[prod] - np.log(users.budget[u]))
        q = cat.quality[prod] - 0.5
        buy_logit = BUY_BIAS - 2.0 * over_budget + np.where(users.quality_seeking[u], 3.0 * q, 0.0)
        bought = carted & (rng.random(len(prod)) < _sigmoid(buy_logit))

        # Times (seconds after start): the listing scrolls by, clicks follow in
        # rank order, carts after clicks, one checkout after the last cart.
        t_row = t0[row]
        t_imp = t_row + 2 * rk
        t_click = t_row + 2 * MAX_SHOWN + 20 * rk + rng.integers(0, 15, len(rk))
        t_cart = t_click + rng.integers(5, 60, len(rk))
        checkout = np.zeros(s, dtype=np.int64)
        np.maximum.at(checkout, row[carted], t_cart[carted])
        t_buy = checkout[row] + rng.integers(30, 300, s)[row]

        ev_row = np.concatenate([row, row[clicked], row[carted], row[bought]])
        ev_prod = np.concatenate([prod, prod[clicked], prod[carted], prod[bought]])
        ev_type = np.concatenate([np.full(m, k, np.int8) for k, m in enumerate(
            [len(prod), clicked.sum(), carted.sum(), bought.sum()])])
        ev_t = np.concatenate([t_imp, t_click[clicked], t_cart[carted], t_buy[bought]])
        ev_rank = np.concatenate([rk, rk[clicked], rk[carted], rk[bought]])
        order = np.lexsort((ev_rank, ev_type, ev_t, ev_row))
        ev_row, ev_prod, ev_type, ev_t = ev_row[order], ev_prod[order], ev_type[order], ev_t[order]

        session_ids = pa.array("S" + np.strings.zfill(np.arange(lo, hi).astype(StringDType()), self.session_width))
        events = pa.table({
            C.SESSION_ID: session_ids.take(pa.array(ev_row)),
            C.USER_ID: self.user_ids.take(pa.array(user[ev_row])),
            C.PRODUCT_ID: self.product_ids.take(pa.array(ev_prod)),
            C.EVENT_TYPE: self.event_types.take(pa.array(ev_type)),
            C.TS: pa.array(self.start_ns + ev_t * 1_000_000_000, pa.timestamp("ns", tz="UTC")),
        })
        orders, truth = self._orders(row[bought], u[bought], prod[bought], t_buy[bought], rng)
        return events, orders, truth

    def _orders(self, row, u, prod, t, rng):
        """One order per buying session, one line per bought product, with its return."""
        cat, users = self.cat, self.users
        n = len(prod)
        first_line = np.concatenate([[True], row[1:] != row[:-1]])
        order_no = self.n_orders + np.cumsum(first_line) - 1
        self.n_orders += int(first_line.sum())

        # Sizes: shoppers order their size; some size up for brands that run
        # small, a few pick a neighbouring size. Accessories have no size.
        fit_offset = cat.brand_fit_offset[cat.brand[prod]]
        sized = CATEGORY_SIZED[cat.category[prod]]
        shift = np.where(fit_offset > 0.5, (rng.random(n) < 0.15).astype(np.int64), 0)
        shift += np.where(rng.random(n) < 0.1, rng.choice([-1, 1], n), 0)
        ordered = np.clip(users.size[u] + shift, 0, len(V.SIZES) - 1)
        labels = np.where(CATEGORY_GROUP[cat.category[prod]] == _FOOTWEAR,
                          np.array(V.SHOE_SIZES, dtype=object)[ordered], np.array(V.SIZES, dtype=object)[ordered])
        size_known = sized & (rng.random(n) >= 0.02)
        size = pa.array(np.where(size_known, labels, None), pa.string())

        # Misfit in sizes: what arrives (the ordered size, shrunk by the
        # brand's offset) against what the shopper wears.
        misfit = np.where(sized, np.abs(ordered - fit_offset - users.size[u]), 0.0)
        mismatch = _mismatch(users.taste[u], cat.style[prod])
        parts = _return_logits(misfit, cat.quality[prod], mismatch, cat.visual_trait[prod], rng.normal(0, NOISE_SD, n))
        p_return = _sigmoid(sum(parts.values()))
        returned = rng.random(n) < p_return
        delay = rng.integers(MIN_RETURN_DAYS * 86400, MAX_RETURN_DAYS * 86400 + 1, n)
        returned_at = np.where(returned, self.start_ns + (t + delay) * 1_000_000_000, 0)

        discount = np.where(rng.random(n) < 0.3, rng.uniform(0.05, 0.3, n), 0.0)
        price = np.maximum(0.01, np.round(cat.price[prod] * (1 - discount), 2))
        order_id = pa.array("O" + np.strings.zfill(order_no.astype(StringDType()), self.session_width))
        user_id = self.user_ids.take(pa.array(u))
        product_id = self.product_ids.take(pa.array(prod))
        orders = pa.table({
            C.ORDER_ID: order_id,
            C.USER_ID: user_id,
            C.PRODUCT_ID: product_id,
            C.ORDERED_AT: pa.array(self.start_ns + t * 1_000_000_000, pa.timestamp("ns", tz="UTC")),
            C.PRICE: pa.array(price, pa.float64()),
            C.SIZE: size,
            C.RETURNED: pa.array(returned, pa.bool_()),
            C.RETURNED_AT: pa.array(returned_at, pa.timestamp("ns", tz="UTC"), mask=~returned),
        })
        truth = pa.table({
            C.ORDER_ID: order_id,
            C.PRODUCT_ID: product_id,
            C.USER_ID: user_id,
            "return_probability": pa.array(p_return, pa.float64()),
            **{f"{k}_logit": pa.array(v.astype(np.float64), pa.float64()) for k, v in parts.items()},
            "misfit": pa.array(misfit, pa.float64()),
            "mismatch": pa.array(mismatch, pa.float64()),
            "user_size": pa.array(np.array(V.SIZES)[users.size[u]], pa.string()),
            C.RETURNED: pa.array(returned, pa.bool_()),
        })
        return orders, truth


def _return_logits(misfit, quality, mismatch, visual, noise) -> dict[str, np.ndarray]:
    """Additive logit parts of the return probability, one per cause.

    - fit: a small-running brand ordered in the shopper's usual size (or any
      wrong size) does not fit; learnable from brand + size columns.
    - quality: low quality comes back; learnable from behaviour only.
    - style: far from the shopper's taste comes back; needs user history.
    - visual: the trait only the image shows disappoints in person.
    """
    n = len(misfit)
    return {
        "base": np.full(n, RETURN_BASE),
        "fit": W_FIT * np.minimum(misfit, 2.0),
        "quality": W_QUALITY * (0.5 - quality),
        "style": W_STYLE * (mismatch - 1.0),
        "visual": W_VISUAL * visual.astype(np.float64),
        "noise": noise,
    }
