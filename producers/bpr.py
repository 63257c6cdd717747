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
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.torch_utils import seed_torch, torch_device
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
    smoke_settings = {"epochs": 60, "dim": 16, "lr": 0.05}
    requires = frozenset({EVENTS})
    Config = BPRConfig
    description = "BPR matrix factorisation on clicks, carts and purchases (Rendle et al. 2009)"
    min_coverage = 0.2

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        import torch

        cfg = self.config
        rng = seed_torch(cfg.seed)
        users, products, weights, product_ids = interaction_pairs(shop, cfg.min_interactions)
        if len(product_ids) == 0:
            raise InsufficientData("no click, add_to_cart or purchase events before the cutoff")
        device = torch_device(cfg.device)
        n_users, n_products = users.max() + 1, len(product_ids)
        init_p = rng.normal(0, 0.1, (n_products, cfg.dim)).astype(np.float32)
        init_u = rng.normal(0, 0.1, (n_users, cfg.dim)).astype(np.float32)
        if context.previous is not None and context.previous.dim == cfg.dim:
            init_p, init_u = warm_start(context.previous, product_ids, users, products, init_p, init_u)
        gamma_u = torch.nn.Parameter(torch.as_tensor(init_u, device=device))
        gamma_p = torch.nn.Parameter(torch.as_tensor(init_p, device=device))
        beta_p = torch.nn.Parameter(torch.zeros(n_products, device=device))
        optimiser = torch.optim.Adam([gamma_u, gamma_p, beta_p], lr=cfg.lr)

        u_all = torch.as_tensor(users, device=device)
        p_all = torch.as_tensor(products, device=device)
        w_all = torch.as_tensor(weights / weights.mean(), device=device)
        n = len(users)
        for _ in tqdm(range(cfg.epochs), desc="clicks_bpr", disable=not context.progress, leave=False):
            order = torch.as_tensor(rng.permutation(n), device=device)
            negatives = torch.as_tensor(rng.integers(0, n_products, n), device=device)
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                u, p, q, w = u_all[idx], p_all[idx], negatives[start : start + cfg.batch_size], w_all[idx]
                gu, gp, gq = gamma_u[u], gamma_p[p], gamma_p[q]
                diff = beta_p[p] - beta_p[q] + (gu * (gp - gq)).sum(1)
                loss = -(w * torch.nn.functional.logsigmoid(diff)).mean()
                loss = loss + cfg.l2 * (gu.pow(2).sum() + gp.pow(2).sum() + gq.pow(2).sum()) / len(idx)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        return Embeddings(product_ids, gamma_p.detach().cpu().numpy())
