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
from prodvec.producers.torch_utils import one_thread, seed_torch, torch_device
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

    @one_thread()  # each step is a few thousand rows of 64 floats: too small to split across threads
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
        gamma_u = torch.as_tensor(init_u, device=device)
        gamma_p = torch.as_tensor(init_p, device=device)
        beta_p = torch.zeros(n_products, device=device)
        params = [gamma_u, gamma_p, beta_p]
        for param in params:
            param.grad = torch.zeros_like(param)
        # Fused Adam: one kernel per tensor instead of a dozen per step.
        optimiser = torch.optim.Adam(params, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))

        u_all = torch.as_tensor(users, device=device)
        p_all = torch.as_tensor(products, device=device)
        w_all = torch.as_tensor(weights / weights.mean(), device=device)
        n = len(users)
        gradients = BPRGradients(params, cfg.batch_size, cfg.l2)
        for _ in tqdm(range(cfg.epochs), desc="clicks_bpr", disable=not context.progress, leave=False):
            # Shuffled once per epoch: every batch is then a contiguous slice, not four gathers.
            order = torch.as_tensor(rng.permutation(n), device=device)
            u_epoch, p_epoch, w_epoch = u_all[order], p_all[order], w_all[order]
            negatives = torch.as_tensor(rng.integers(0, n_products, n), device=device)
            for start in range(0, n, cfg.batch_size):
                batch = slice(start, start + cfg.batch_size)
                gradients(u_epoch[batch], p_epoch[batch], negatives[batch], w_epoch[batch])
                optimiser.step()
        return Embeddings(product_ids, gamma_p.cpu().numpy())


class BPRGradients:
    """Writes into each parameter's .grad the gradient of the batch loss
    -mean(w · log σ(x_up - x_uq)) + l2 · (‖γ_u‖² + ‖γ_p‖² + ‖γ_q‖²) / batch.

    Written out by hand rather than with autograd: the loss is three dot
    products, and autograd's backward of an indexed lookup (a sorted scatter
    under deterministic algorithms) took 80% of the time. The batch-sized
    intermediates live in buffers allocated once: fresh multi-megabyte tensors
    every step went back to the OS and page-faulted in again, which cost more
    than the arithmetic.
    """

    def __init__(self, params, batch_size: int, l2: float):
        import torch

        self.params, self.l2 = params, l2
        dim = params[1].shape[1]
        self.gu, self.gp, self.gq, self.tmp = (torch.empty(batch_size, dim, device=params[1].device) for _ in range(4))
        self.ones = torch.ones(dim, device=params[1].device)

    def __call__(self, u, p, q, w) -> None:
        import torch

        gamma_u, gamma_p, beta_p = self.params
        n = len(u)
        gu, gp, gq, tmp = self.gu[:n], self.gp[:n], self.gq[:n], self.tmp[:n]
        torch.index_select(gamma_u, 0, u, out=gu)
        torch.index_select(gamma_p, 0, p, out=gp)
        torch.index_select(gamma_p, 0, q, out=gq)
        gp.sub_(gq)  # gp now holds γ_p - γ_q
        # Row sums as a matrix-vector product: BLAS beats a reduction over 64-wide rows.
        diff = torch.mul(gu, gp, out=tmp) @ self.ones + beta_p.index_select(0, p) - beta_p.index_select(0, q)
        # d/d diff of -w log σ(diff) / B is -w σ(-diff) / B.
        dd = (-w * torch.sigmoid(-diff) / n).unsqueeze(1)
        # The L2 term's gradient summed over the batch is 2·l2/B · (times a row was drawn) · row:
        # one pass over the tables instead of three over the batch.
        decay = 2 * self.l2 / n
        gamma_u.grad.copy_(gamma_u).mul_(torch.bincount(u, minlength=len(gamma_u)).unsqueeze(1) * decay)
        drawn = torch.bincount(p, minlength=len(gamma_p)) + torch.bincount(q, minlength=len(gamma_p))
        gamma_p.grad.copy_(gamma_p).mul_(drawn.unsqueeze(1) * decay)
        gamma_u.grad.index_add_(0, u, torch.mul(gp, dd, out=tmp))
        torch.mul(gu, dd, out=tmp)
        gamma_p.grad.index_add_(0, p, tmp)
        gamma_p.grad.index_add_(0, q, tmp.neg_())
        beta_p.grad.zero_()
        beta_p.grad.index_add_(0, p, dd.squeeze(1))
        beta_p.grad.index_add_(0, q, dd.squeeze(1).neg())
