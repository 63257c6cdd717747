"""Tiny shops with a known right answer, built in memory, for producer tests.

Four categories; every user is loyal to one of them; titles name the
category with one of two synonyms. A producer that learned anything puts
products of one category together, even when they share no token or no user.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prodvec import columns as C
from prodvec.shop.model import Shop

CATEGORIES = ("tshirts", "jeans", "dresses", "shoes")
# Two words per category that never appear together in one title.
SYNONYMS = {"tshirts": ("tee", "tshirt"), "jeans": ("denim", "jeans"), "dresses": ("frock", "dress"),
            "shoes": ("sneaker", "trainer")}
FILLER = ("red", "blue", "green", "black", "white", "grey", "slim", "classic", "cotton", "new")
START = pd.Timestamp("2025-01-01", tz="UTC")


def known_answer_shop(n_products: int = 400, n_users: int = 160, clicks_per_user: int = 25, seed: int = 0,
                      unlabeled_share: float = 0.25) -> tuple[Shop, np.ndarray]:
    rng = np.random.default_rng(seed)
    category = np.array(CATEGORIES)[np.arange(n_products) % len(CATEGORIES)]
    synonym = rng.integers(0, 2, n_products)
    titles = [f"{SYNONYMS[c][s]} {' '.join(rng.choice(FILLER, 2, replace=False))}" for c, s in zip(category, synonym)]
    # Some records lack their category: only the title (or the clicks) can place them.
    known = np.where(rng.random(n_products) < unlabeled_share, None, category)
    products = pd.DataFrame({
        C.PRODUCT_ID: [f"P{i:04d}" for i in range(n_products)],
        C.CREATED_AT: START + pd.to_timedelta(rng.integers(0, 10, n_products), unit="D"),
        C.TITLE: titles,
        C.CATEGORY: known,
        C.PRICE: rng.uniform(10, 50, n_products).round(2),
        "synonym": synonym.astype(str),  # a side-information column (no category signal)
    })
    users = np.array([f"U{u:03d}" for u in range(n_users)])
    favourite = np.array(CATEGORIES)[np.arange(n_users) % len(CATEGORIES)]
    rows = []
    by_category = {c: products.loc[category == c, C.PRODUCT_ID].to_numpy() for c in CATEGORIES}
    # A quarter of each category is never clicked: cold products only content can place.
    clicked = {c: ids[: int(len(ids) * 0.75)] for c, ids in by_category.items()}
    for u, (user, fav) in enumerate(zip(users, favourite)):
        picks = rng.choice(clicked[fav], clicks_per_user)
        times = START + pd.Timedelta(days=12) + pd.to_timedelta(np.sort(rng.integers(0, 20 * 86400, clicks_per_user)), unit="s")
        for k, (pid, ts) in enumerate(zip(picks, times)):
            rows.append((f"S{u:03d}-{k // 5}", user, pid, C.CLICK, ts))
    events = pd.DataFrame(rows, columns=[C.SESSION_ID, C.USER_ID, C.PRODUCT_ID, C.EVENT_TYPE, C.TS])
    # The true categories are returned beside the shop, never inside it.
    return Shop(root=Path("."), products=products, events=events), category


def same_category_share(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each row's k nearest neighbours (cosine) with the row's label."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :k]
    return float((labels[neighbours] == labels[:, None]).mean())
