"""text_dae: a denoising autoencoder over a product's catalogue record.

The input is a multi-hot vector: one-hot values of every side-information
column (whatever columns the shop has), the category, a price band, and the
title's tokens. Training reconstructs the clean vector from a copy with a
share of its active entries masked, J(θ) = Σ_p L(x_p, g(f(x̃_p))); the code
f(x_p) of the clean input is the embedding. It needs no clickstream, so it
covers new products from the moment they are listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.torch_utils import one_thread, seed_torch, torch_device
from prodvec.core.shop.model import TEXT, Shop

TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class DAEConfig(ProducerConfig):
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 256
    # Share of active inputs masked in the corrupted copy.
    corruption: float = 0.3
    # Title tokens seen in fewer products than this are dropped (typos, ids).
    min_token_count: int = 2
    max_tokens: int = 5000
    price_bands: int = 5
    # Weight of the pull towards the previous snapshot's vectors (warm start).
    anchor: float = 1.0
    # Inactive columns scored per step (reconstruction sampling); the full
    # reconstruction costs the whole vocabulary per product and dominated training.
    negatives: int = 512


def _one_hot_block(values: pd.Series, prefix: str) -> tuple[sparse.csr_matrix, list[str]]:
    codes, uniques = pd.factorize(values, sort=True)  # NaN -> -1: unknown stays all-zero
    rows = np.flatnonzero(codes >= 0)
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, codes[rows])), shape=(len(values), len(uniques))
    )
    return matrix, [f"{prefix}={u}" for u in uniques]


def _title_block(titles: pd.Series, min_count: int, max_tokens: int) -> tuple[sparse.csr_matrix, list[str]]:
    tokens = titles.reset_index(drop=True).fillna("").str.lower().str.findall(TOKEN)
    exploded = tokens.explode().dropna()
    # A token repeated in one title counts once, both in the vocabulary and the input.
    pairs = pd.DataFrame({"row": exploded.index.to_numpy(), "token": exploded.to_numpy()}).drop_duplicates()
    counts = pairs["token"].value_counts()
    vocab = counts[counts >= min_count].sort_values(ascending=False, kind="stable").index[:max_tokens]
    vocab = pd.Index(sorted(vocab))
    cols = vocab.get_indexer(pairs["token"].to_numpy())
    keep = cols >= 0
    matrix = sparse.csr_matrix(
        (np.ones(keep.sum(), np.float32), (pairs["row"].to_numpy()[keep], cols[keep])), shape=(len(titles), len(vocab))
    )
    return matrix, [f"title:{t}" for t in vocab]


def catalogue_features(shop: Shop, cfg: DAEConfig) -> tuple[sparse.csr_matrix, list[str]]:
    """The multi-hot catalogue matrix (products × features) and its feature names."""
    products = shop.products.reset_index(drop=True)
    blocks, names = [], []
    columns = shop.label_columns
    for column in columns:
        block, block_names = _one_hot_block(products[column], column)
        blocks.append(block)
        names += block_names
    if C.PRICE in products:
        bands = pd.qcut(np.log(products[C.PRICE]), q=cfg.price_bands, labels=False, duplicates="drop")
        block, block_names = _one_hot_block(pd.Series(bands).astype("Int64").astype(str).where(bands.notna()), "price_band_q")
        blocks.append(block)
        names += block_names
    block, block_names = _title_block(products[C.TITLE], cfg.min_token_count, cfg.max_tokens)
    blocks.append(block)
    names += block_names
    return sparse.hstack(blocks, format="csr", dtype=np.float32), names


class TextDAE(Producer):
    name = "text_dae"
    relative_cost = 43
    smoke_settings = {"epochs": 60, "dim": 16, "hidden": 64}
    requires = frozenset({TEXT})
    Config = DAEConfig
    description = "Denoising autoencoder on one-hot side information and title tokens"
    min_coverage = 0.99

    @one_thread()  # each step is small: a batch of sparse rows, a few hundred sampled columns
    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        import torch
        from torch import nn
        from torch.nn import functional as F

        cfg = self.config
        rng = seed_torch(cfg.seed)
        device = torch_device(cfg.device)
        x, _ = catalogue_features(shop, cfg)
        n, width = x.shape
        # The encoder's first layer is a Linear over the multi-hot input, computed
        # as a sum of the weight rows of the active entries (same function, cost
        # ∝ active entries instead of the vocabulary).
        bag = nn.EmbeddingBag(width, cfg.hidden, mode="sum").to(device)
        bag_bias = nn.Parameter(torch.empty(cfg.hidden, device=device))
        head = nn.Sequential(nn.ReLU(), nn.Linear(cfg.hidden, cfg.dim)).to(device)
        decoder = nn.Sequential(nn.Linear(cfg.dim, cfg.hidden), nn.ReLU()).to(device)
        # The decoder's output layer, read only at the columns a step scores.
        out_weight = nn.Parameter(torch.empty(width, cfg.hidden, device=device))
        out_bias = nn.Parameter(torch.empty(width, device=device))
        with torch.no_grad():  # nn.Linear's initialisation for both
            for weight, bias, fan_in in ((bag.weight, bag_bias, width), (out_weight, out_bias, cfg.hidden)):
                nn.init.uniform_(weight, -fan_in**-0.5, fan_in**-0.5)
                nn.init.uniform_(bias, -fan_in**-0.5, fan_in**-0.5)
        params = [*bag.parameters(), bag_bias, *head.parameters(), *decoder.parameters(), out_weight, out_bias]
        optimiser = torch.optim.Adam(params, lr=cfg.lr, fused=True)
        # Active entries are rare; weighting them up keeps the decoder from
        # predicting "all zero" and still learning a good loss.
        active = max(float(x.getnnz(axis=1).mean()), 1.0)
        pos_weight = max(1.0, (width - active) / active) ** 0.5
        samples = min(cfg.negatives, width)

        def encode(indices: np.ndarray, counts: np.ndarray) -> torch.Tensor:
            offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
            summed = bag(torch.as_tensor(indices, dtype=torch.long, device=device),
                         torch.as_tensor(offsets, dtype=torch.long, device=device))
            return head(summed + bag_bias)

        # Retrains see a new vocabulary, so weights cannot be reused; instead
        # products known last time are pulled towards their previous vectors.
        anchors = torch.zeros((n, cfg.dim), device=device)
        anchored = torch.zeros(n, dtype=torch.bool, device=device)
        warm = context.previous_rows(shop.products[C.PRODUCT_ID], cfg.dim)
        if warm is not None and cfg.anchor > 0:
            rows, found = warm
            anchors = torch.as_tensor(rows, device=device)
            anchored = torch.as_tensor(found, device=device)

        for _ in tqdm(range(cfg.epochs), desc="text_dae", disable=not context.progress, leave=False):
            order = rng.permutation(n)
            for start in range(0, n, cfg.batch_size):
                rows = np.sort(order[start : start + cfg.batch_size])
                clean = x[rows]
                counts = np.diff(clean.indptr)
                batch_row = np.repeat(np.arange(len(rows)), counts)
                keep = rng.random(clean.nnz) >= cfg.corruption
                code = encode(clean.indices[keep], np.bincount(batch_row[keep], minlength=len(rows)))
                hidden = decoder(code)
                # Reconstruction sampling (Dauphin et al., 2011): the loss over
                # all columns, J = Σ_active pw·softplus(-z) + Σ_inactive softplus(z),
                # with the inactive sum estimated from `samples` columns drawn
                # without replacement for the batch, weighted width/samples
                # (unbiased). The decoder then costs `samples` columns, not `width`.
                row_t = torch.as_tensor(batch_row, device=device)
                col_t = torch.as_tensor(clean.indices, dtype=torch.long, device=device)
                z_active = (hidden[row_t] * out_weight[col_t]).sum(1) + out_bias[col_t]
                drawn = np.sort(rng.choice(width, samples, replace=False))
                inactive = torch.as_tensor(clean[:, drawn].toarray() == 0, device=device)
                drawn_t = torch.as_tensor(drawn, device=device)
                z_drawn = torch.addmm(out_bias[drawn_t], hidden, out_weight[drawn_t].T)
                total = pos_weight * F.softplus(-z_active).sum() + (width / samples) * (F.softplus(z_drawn) * inactive).sum()
                loss = total / (len(rows) * width)
                index = torch.as_tensor(rows, device=device)
                pulled = anchored[index]
                if pulled.any():
                    loss = loss + cfg.anchor * (code[pulled] - anchors[index][pulled]).pow(2).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()

        out = np.empty((n, cfg.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, 4096):
                clean = x[start : start + 4096]
                out[start : start + clean.shape[0]] = encode(clean.indices, np.diff(clean.indptr)).cpu().numpy()
        # The codes share a large common offset; removing it makes cosine
        # neighbourhoods (and the isotropy the gate measures) meaningful.
        out -= out.mean(axis=0, keepdims=True)
        return Embeddings(shop.products[C.PRODUCT_ID].to_numpy(), out)
