"""clicks_bpr: Bayesian Personalised Ranking matrix factorisation on the clickstream.

Score x_up = α + β_u + β_p + γ_uᵀγ_p, trained on triples (u, p, q) where u
interacted with p (click, add-to-cart or purchase) and q is a sampled product,
minimising -log σ(x_up - x_uq) + λ‖θ‖². α and β_u cancel in the difference,
so only β_p and the factors are learned. γ_p is the product embedding.

Trained by mini-batch Adam in a compiled loop (bpr_kernel) on the CPU,
whatever `device` says: a step is a few thousand 64-float rows, and its cost
is the batch's, not the catalogue's (only the rows a batch touches move). It
can share the rows out to `threads` threads (at most numba's count, which the
family pool sets per worker) and gives the same vectors bit for bit on any
number of them; one by default (see `BPRConfig.threads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.core.shop.model import EVENTS, Shop

# Stronger signals count more: a purchase says more than a click.
EVENT_WEIGHTS = {C.CLICK: 1, C.ADD_TO_CART: 2, C.PURCHASE: 3}


@dataclass(frozen=True)
class BPRConfig(ProducerConfig):
    epochs: int = 25
    batch_size: int = 8192
    lr: float = 0.01
    l2: float = 1e-5
    # Products need this many positive interactions before the cutoff to get a vector.
    min_interactions: int = 1
    # Threads the kernel shares the rows out to (at most numba's count; the result is the same bit for bit).
    # One by default: on two idle cores two threads were faster in 15 rounds of 25 (default shop, 25 epochs,
    # fastest of 7 per round: two threads 0.36-0.75 s, one 0.43-0.59 s, `implicit` on two 0.26-0.44 s;
    # `benchmarks/producers_bench.py --stage bpr workspace/shop {1,2} {producer,implicit} 7`, 2026-12-02
    # 01:11-01:29 UTC), and with the other core busy two threads took 0.70 s against 0.48 s on one: their
    # phases wait for each other twice a batch. A family-pool worker gets one thread (NUMBA_NUM_THREADS) anyway.
    threads: int = 1


def interaction_pairs(shop: Shop, min_interactions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user index, product index, weight) of positive pairs, and the product ids: one pair per user and
    product, in the order the events first meet it, weighted by its strongest event; users and products
    indexed in sorted id order.

    The ids are hashed once each (a factorisation) and the rest is integer work: the same pairs as a pandas
    groupby on the two id columns (tests/test_bpr_pairs.py), which hashed them again, and the event kinds
    twice: 0.098 s CPU against 0.057 s on the default shop (165k positive events), serial work in a training
    of ~0.3-0.5 s.
    """
    events = shop.events
    kinds, names = pd.factorize(events[C.EVENT_TYPE].to_numpy())
    weight_of = np.array([EVENT_WEIGHTS.get(name, 0) for name in names] + [0], np.int64)  # [-1]: a missing kind
    weights = weight_of[kinds]
    positive = weights > 0
    users, user_ids = pd.factorize(events[C.USER_ID].to_numpy()[positive], sort=True)
    products, product_ids = pd.factorize(events[C.PRODUCT_ID].to_numpy()[positive], sort=True)
    known = (users >= 0) & (products >= 0)  # a missing id (code -1) makes no pair, as in a groupby
    users, products, weights = users[known], products[known], weights[positive][known]
    n_products = max(len(product_ids), 1)
    pair, keys = pd.factorize(users.astype(np.int64) * n_products + products)
    strongest = np.zeros(len(keys), np.int64)
    np.maximum.at(strongest, pair, weights)
    users, products = keys // n_products, keys % n_products
    keep = np.bincount(products, minlength=len(product_ids))[products] >= min_interactions
    users, _ = _renumbered(users[keep], len(user_ids))
    products, kept = _renumbered(products[keep], len(product_ids))
    return users, products, strongest[keep].astype(np.float32), np.asarray(product_ids[kept], dtype=str)


def _renumbered(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes in [0, n) renumbered 0, 1, ... over the values present, in order (what a factorisation of the
    kept pairs' sorted ids gives), and the old codes present. A table of n entries, not a sort."""
    present = np.zeros(n, bool)
    present[codes] = True
    return (np.cumsum(present) - 1)[codes], np.flatnonzero(present)


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
    relative_cost = 4
    smoke_settings = {"epochs": 60, "dim": 16, "lr": 0.05}
    requires = frozenset({EVENTS})
    Config = BPRConfig
    description = "BPR matrix factorisation on clicks, carts and purchases (Rendle et al. 2009)"
    min_coverage = 0.2

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        from prodvec.producers.bpr_kernel import shuffle_epoch, threads

        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        users, products, weights, product_ids = interaction_pairs(shop, cfg.min_interactions)
        if len(product_ids) == 0:
            raise InsufficientData("no click, add_to_cart or purchase events before the cutoff")
        n_users, n_products = users.max() + 1, len(product_ids)
        init_p = rng.normal(0, 0.1, (n_products, cfg.dim)).astype(np.float32)
        init_u = rng.normal(0, 0.1, (n_users, cfg.dim)).astype(np.float32)
        if context.previous is not None and context.previous.dim == cfg.dim:
            init_p, init_u = warm_start(context.previous, product_ids, users, products, init_p, init_u)
        trainer = Trainer(init_u, init_p, cfg.batch_size, cfg.lr, cfg.l2, parts=max(1, min(cfg.threads, threads())))
        users, products = users.astype(np.int64, copy=False), products.astype(np.int64, copy=False)
        weights = (weights / weights.mean()).astype(np.float32)
        n = len(users)
        # An epoch's triples (users, products, negatives, weights) and the shuffle's scratch, allocated once.
        triples = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32))
        order = np.empty(n, np.int64)
        for _ in tqdm(range(cfg.epochs), desc="clicks_bpr", disable=not context.progress, leave=False):
            # Shuffled into copies once per epoch: every batch is then a contiguous slice (a kernel that read
            # the pairs through the permutation took 1.6× the CPU: three random reads a triple, on every thread).
            shuffle_epoch(int(rng.integers(1 << 63)), users, products, weights, n_products, order, *triples)
            trainer.epoch(*triples)
        return Embeddings(product_ids, trainer.gamma_p)


class Trainer:
    """BPR's parameters with their gradients and Adam's moments (bpr_kernel's row layout: (rows, 4, dim),
    β_p as dim 1) and the kernel's scratch space, allocated once; `epoch` trains.

    `parts`: how many threads share out the rows (default: numba's thread count). It sets the work split,
    not the result: any value gives the same parameters bit for bit.
    """

    def __init__(self, gamma_u: np.ndarray, gamma_p: np.ndarray, batch_size: int, lr: float, l2: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, parts: int | None = None):
        from prodvec.producers.bpr_kernel import PARAM, threads, workers

        parts = threads() if parts is None else parts
        if parts < 1:
            raise ValueError(f"parts must be at least 1, got {parts}")
        # The threads that run the parts (numba's threading layer and count), found once, not every epoch.
        self.workers = workers(parts) if parts > 1 else 1
        self.users = np.zeros((len(gamma_u), 4, gamma_u.shape[1]), np.float32)
        self.products = np.zeros((len(gamma_p), 4, gamma_p.shape[1]), np.float32)
        self.bias = np.zeros((len(gamma_p), 4, 1), np.float32)
        self.users[:, PARAM], self.products[:, PARAM] = gamma_u, gamma_p
        self.stamps = (np.zeros(len(gamma_u), np.int64), np.zeros(len(gamma_p), np.int64))
        # Each part lists the rows it owns that a batch touched: at most every user and two products a triple.
        self.rows_u, self.rows_p = np.empty((parts, batch_size), np.int64), np.empty((parts, 2 * batch_size), np.int64)
        self.touched = np.zeros((parts, 2), np.int64)
        # A batch's slopes, and each part's scratch: the triples of its users, the product terms of its products.
        self.slopes = np.empty(batch_size, np.float32)
        self.mine = (np.empty((parts, batch_size), np.int32), np.empty((parts, 2 * batch_size), np.int32))
        # The threaded kernel's barrier counter, alone on its cache lines.
        self.arrived = np.zeros(16, np.int64)
        self.batch_size, self.lr, self.l2, self.betas, self.eps = batch_size, lr, l2, betas, eps
        self.step = 0

    def part(self, table: str, what: str) -> np.ndarray:
        """A copy of one part of a table: `table` users/products/bias, `what` param/grad/m/v."""
        from prodvec.producers import bpr_kernel

        return getattr(self, table)[:, getattr(bpr_kernel, what.upper())].copy()

    @property
    def gamma_p(self) -> np.ndarray:
        return self.part("products", "param")

    def epoch(self, users: np.ndarray, products: np.ndarray, negatives: np.ndarray, weights: np.ndarray) -> None:
        """One pass over the triples (users[i], products[i], negatives[i]) weighted by weights[i], in batches
        of `batch_size`."""
        from prodvec.producers.bpr_kernel import train_epoch, train_epoch_one_thread

        if not len(users) == len(products) == len(negatives) == len(weights):
            raise ValueError(f"triples of unequal lengths: {len(users)} users, {len(products)} products, "
                             f"{len(negatives)} negatives, {len(weights)} weights")
        triples = (users.astype(np.int64, copy=False), products.astype(np.int64, copy=False),
                   negatives.astype(np.int64, copy=False), weights.astype(np.float32, copy=False))
        settings = (self.batch_size, self.lr, self.l2, self.betas[0], self.betas[1], self.eps, self.step)
        state = (self.users, self.products, self.bias, *self.stamps, self.rows_u, self.rows_p, self.touched,
                 self.slopes, *self.mine, *triples, *settings)
        if len(self.rows_u) == 1:
            self.step = train_epoch_one_thread(*state)
        else:
            self.arrived[0] = 0
            self.step = train_epoch(*state, self.workers, self.arrived)


def load_kernel() -> None:
    """Load (on a fresh installation: compile) the compiled code now, on a one-row problem: the epoch shuffle,
    the loop's one-thread entry and, where numba has more threads, the threaded one.

    A process pays this once, at its first clicks_bpr training; benchmarks
    call it before their clock starts, as they import `implicit` before it.
    """
    from prodvec.producers.bpr_kernel import shuffle_epoch, threads

    one = np.zeros(1, np.int64)
    shuffle_epoch(0, one, one, np.ones(1, np.float32), 1, one.copy(), one.copy(), one.copy(), one.copy(),
                  np.ones(1, np.float32))
    for parts in sorted({1, threads()}):
        Trainer(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), batch_size=1, lr=0.0, l2=0.0,
                parts=parts).epoch(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
                                   np.ones(1, np.float32))
