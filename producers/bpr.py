"""clicks_bpr: Bayesian Personalised Ranking matrix factorisation on the clickstream.

Score x_up = α + β_u + β_p + γ_uᵀγ_p, trained on triples (u, p, q) where u
interacted with p (click, add-to-cart or purchase) and q is a sampled product,
minimising -log σ(x_up - x_uq) + λ‖θ‖². α and β_u cancel in the difference,
so only β_p and the factors are learned. γ_p is the product embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.core.shop.model import EVENTS, Shop

# Stronger signals count more: a purchase says more than a click.
EVENT_WEIGHTS = {C.CLICK: 1, C.ADD_TO_CART: 2, C.PURCHASE: 3}


@dataclass(frozen=True)
class BPRConfig(ProducerConfig):
    epochs: int = 25
    # Plain SGD per sampled triple (implicit's update), not Adam over mini-batches.
    lr: float = 0.05
    l2: float = 0.001
    # Products need this many positive interactions before the cutoff to get a vector.
    min_interactions: int = 1
    # implicit's SGD is Hogwild: with more than one thread, updates race and
    # a seed no longer fixes the result. One thread keeps snapshots reproducible.
    threads: int = 1


def interaction_pairs(shop: Shop, min_interactions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user index, product index, weight) of positive pairs, and the product ids."""
    events = shop.events
    positive = events[events[C.EVENT_TYPE].isin(list(EVENT_WEIGHTS))]
    weights = positive[C.EVENT_TYPE].map(EVENT_WEIGHTS).to_numpy()
    pairs = pd.DataFrame({"u": positive[C.USER_ID].to_numpy(), "p": positive[C.PRODUCT_ID].to_numpy(), "w": weights})
    pairs = pairs.groupby(["u", "p"], sort=False, observed=True)["w"].max().reset_index()
    counts = pairs["p"].value_counts()
    keep = counts.index[counts >= min_interactions]
    pairs = pairs[pairs["p"].isin(keep)]
    user_codes, _ = pd.factorize(pairs["u"], sort=True)
    product_codes, product_ids = pd.factorize(pairs["p"], sort=True)
    return user_codes, product_codes, pairs["w"].to_numpy(np.float32), np.asarray(product_ids, dtype=str)


def weighted_matrix(users: np.ndarray, products: np.ndarray, weights: np.ndarray, shape) -> sparse.csr_matrix:
    """Users × products with each pair stored `weight` times.

    implicit's BPR treats entries as binary but draws the positive of each
    update uniformly among the stored entries, so a pair stored three times
    (a purchase) is trained three times as often as a click: the event
    weight, applied by sampling instead of by scaling the loss.
    """
    repeats = np.rint(weights).astype(np.int64)
    rows, cols = np.repeat(users, repeats), np.repeat(products, repeats)
    order = np.lexsort((cols, rows))  # implicit binary-searches a user's sorted products
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
    return sparse.csr_matrix((np.ones(len(rows), np.float32), cols[order].astype(np.int32), indptr), shape=shape)


def warm_start(previous, product_ids, users, products, init_p, init_u):
    """Start from last snapshot: known products keep their vectors, users start at the
    mean of the products they chose (a fold-in), so a retrain refines one space
    instead of drawing a new one."""
    known_rows, found = previous.lookup(product_ids)
    init_p = np.where(found[:, None], known_rows, init_p).astype(np.float32)
    sums = np.zeros_like(init_u)
    np.add.at(sums, users, init_p[products])
    counts = np.bincount(users, minlength=len(init_u))[:, None]
    init_u = np.where(counts > 0, sums / np.maximum(counts, 1), init_u).astype(np.float32)
    return init_p, init_u


class ClicksBPR(Producer):
    name = "clicks_bpr"
    smoke_settings = {"epochs": 60, "dim": 16}
    requires = frozenset({EVENTS})
    Config = BPRConfig
    description = "BPR matrix factorisation on clicks, carts and purchases (Rendle et al. 2009; implicit's SGD)"
    min_coverage = 0.2

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        # The `implicit` library's CPU BPR (Cython): the same model and loss as a
        # hand-written one, an order of magnitude faster (benchmarks/producers_bench.py).
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        users, products, weights, product_ids = interaction_pairs(shop, cfg.min_interactions)
        if len(product_ids) == 0:
            raise InsufficientData("no click, add_to_cart or purchase events before the cutoff")
        n_users, n_products = users.max() + 1, len(product_ids)
        model = BayesianPersonalizedRanking(factors=cfg.dim, learning_rate=cfg.lr, regularization=cfg.l2,
                                            iterations=cfg.epochs, num_threads=cfg.threads,
                                            random_state=cfg.seed)
        # implicit's own initialisation, drawn here so the warm start can replace
        # rows of it; the last column is the product bias (a constant 1 for users).
        init_p = ((rng.random((n_products, cfg.dim)) - 0.5) / cfg.dim).astype(np.float32)
        init_u = ((rng.random((n_users, cfg.dim)) - 0.5) / cfg.dim).astype(np.float32)
        if context.previous is not None and context.previous.dim == cfg.dim:
            init_p, init_u = warm_start(context.previous, product_ids, users, products, init_p, init_u)
        model.item_factors = np.hstack([init_p, np.zeros((n_products, 1), np.float32)])
        model.user_factors = np.hstack([init_u, np.ones((n_users, 1), np.float32)])
        model.fit(weighted_matrix(users, products, weights, (n_users, n_products)), show_progress=context.progress)
        return Embeddings(product_ids, np.ascontiguousarray(model.item_factors[:, : cfg.dim]))
