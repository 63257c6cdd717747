"""sasrec: a causal self-attention model of sessions (SASRec, Kang & McAuley 2018).

Each session's items (the last `max_len`, left-padded) go through an item
embedding plus a learned position embedding and two transformer blocks whose
attention only looks back. The output at step t scores the next item by a dot
product with the same item table, h_tᵀe_i, trained against a few sampled
negatives per step (a sampled softmax). That shared item table, not the
sequence outputs, is the product embedding: products that follow the same
contexts end up with similar rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.torch_utils import RowAdam, seed_torch, torch_device
from prodvec.producers.sequences import session_sequences
from prodvec.core.shop.model import EVENTS, Shop

PAD = 0  # item code 0 is padding; products are 1..n


@dataclass(frozen=True)
class SASRecConfig(ProducerConfig):
    max_len: int = 20
    blocks: int = 2
    heads: int = 2
    dropout: float = 0.2
    epochs: int = 5
    batch_size: int = 256
    lr: float = 5e-3
    # Sampled negatives per batch, shared by its positions; each step is a (1 + negatives)-way softmax.
    negatives: int = 128
    l2: float = 0.0


def sequence_matrix(codes: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """The last `width` codes of each sequence as rows of a matrix, left-padded with PAD."""
    lengths = np.diff(offsets)
    out = np.full((len(lengths), width), PAD, dtype=np.int64)
    ends = offsets[1:]
    # One vectorised step per column, from the right: column width-1-j holds the j-th item from the end.
    for j in range(width):
        has = lengths > j
        out[has, width - 1 - j] = codes[ends[has] - 1 - j]
    return out


def build_model(n_items: int, cfg: SASRecConfig):
    """The SASRec network; built inside a function so importing this module does not import torch."""
    import torch
    from torch import nn

    class Block(nn.Module):
        """Pre-norm causal self-attention and a point-wise feed-forward layer, both residual."""

        def __init__(self, dim: int, heads: int, dropout: float):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
            self.drop = nn.Dropout(dropout)

        def forward(self, x, allowed):
            b, length, dim = x.shape
            q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
            # Written out rather than scaled_dot_product_attention: at 20 steps
            # it costs nothing, and it stays deterministic on a GPU too.
            att = (q @ k.transpose(-1, -2)) * (dim // self.heads) ** -0.5
            att = att.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
            # Dropout on the two residual branches only: on a CPU drawing the masks is a real cost.
            x = x + self.drop(self.out((att @ v).transpose(1, 2).reshape(b, length, dim)))
            return x + self.drop(self.ffn(self.norm2(x)))

    class SASRecNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=PAD)
            self.positions = nn.Embedding(cfg.max_len, cfg.dim)
            self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.dropout) for _ in range(cfg.blocks))
            self.norm = nn.LayerNorm(cfg.dim)
            self.drop = nn.Dropout(cfg.dropout)
            nn.init.normal_(self.items.weight, std=cfg.dim**-0.5)
            nn.init.normal_(self.positions.weight, std=cfg.dim**-0.5)
            with torch.no_grad():
                self.items.weight[PAD].zero_()

        def forward(self, seq):
            """Hidden state after each step of left-padded `seq` (batch, max_len) -> (batch, max_len, dim)."""
            length = seq.shape[1]
            real = seq != PAD
            causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
            # Attend to earlier real items; a step may always see itself, so a
            # padding row has one key and the softmax never sees an empty row.
            allowed = (causal & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=seq.device)
            x = self.items(seq) * cfg.dim**0.5 + self.positions.weight[-length:]
            x = self.drop(x) * real[..., None]
            for block in self.blocks:
                x = block(x, allowed) * real[..., None]
            return self.norm(x)

        def scores(self, hidden):
            """Next-item scores over all products (column i-1 is item code i)."""
            return hidden @ self.items.weight[1:].T

    return SASRecNet()


class SASRec(Producer):
    name = "sasrec"
    relative_cost = 72
    smoke_settings = {"dim": 16, "epochs": 1, "batch_size": 128, "negatives": 16}
    requires = frozenset({EVENTS})
    Config = SASRecConfig
    description = "Causal self-attention next-item model over sessions; item table as embedding (Kang & McAuley 2018)"
    min_coverage = 0.2

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        import torch
        import torch.nn.functional as F

        cfg = self.config
        rng = seed_torch(cfg.seed)
        device = torch_device(cfg.device)
        items, offsets = session_sequences(shop.events)
        # Only catalogue products get a code; others are dropped from their session.
        known = pd.Index(shop.products[C.PRODUCT_ID].astype(str)).get_indexer(items) >= 0
        lengths = np.add.reduceat(known.astype(np.int64), offsets[:-1]) if len(items) else np.zeros(0, np.int64)
        keep = np.repeat(lengths >= 2, np.diff(offsets)) & known
        items, lengths = items[keep], lengths[lengths >= 2]
        if len(lengths) == 0:
            raise InsufficientData("no session with two or more products clicked before the cutoff")
        offsets = np.r_[0, np.cumsum(lengths)]
        codes, product_ids = pd.factorize(items, sort=True)
        codes = codes.astype(np.int64) + 1
        product_ids = np.asarray(product_ids, dtype=str)
        n_items = len(product_ids)
        # Rows of max_len + 1 items: the inputs are the first max_len, the targets the last max_len.
        windows = sequence_matrix(codes, offsets, cfg.max_len + 1)
        inputs_all = torch.as_tensor(windows[:, :-1], device=device)
        targets_all = torch.as_tensor(windows[:, 1:], device=device)

        model = build_model(n_items, cfg).to(device)
        warm = context.previous_rows(product_ids, cfg.dim)
        if warm is not None:
            rows, found = warm
            known = torch.as_tensor(found, device=device)
            with torch.no_grad():
                model.items.weight[1:][known] = torch.as_tensor(rows[found], device=device)
        n = len(windows)
        n_batches = -(-n // cfg.batch_size)
        if cfg.l2 > 0:  # an L2 penalty moves every row at every step by definition: dense Adam
            # fused: one kernel for all ~30 small tensors instead of a dozen ops each, on a CPU too.
            optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.l2, fused=True)
            table = None
        else:
            # Dense Adam over the item table wrote every product's row and moments at every step: at 100k
            # products that was +45% CPU per step, and steps grow with the catalogue too (O(products²) per
            # epoch). RowAdam gives the same updates touching only the rows a step reads.
            model.items.sparse = True
            rest = [p for name, p in model.named_parameters() if name != "items.weight"]
            optimiser = torch.optim.Adam(rest, lr=cfg.lr, fused=True)
            table = RowAdam(model.items.weight, steps=cfg.epochs * n_batches, lr=cfg.lr)
        steps_per_row = (windows[:, 1:] != PAD).sum(1)
        losses = []
        model.train()
        for _ in tqdm(range(cfg.epochs), desc="sasrec", disable=not context.progress, leave=False):
            # Batches of sessions of similar length (random within a length, in
            # random order) carry little padding; each is cut to its longest row.
            order = np.lexsort((rng.random(n), steps_per_row))
            batches = [order[start : start + cfg.batch_size] for start in range(0, n, cfg.batch_size)]
            total = torch.zeros((), device=device)
            for b in rng.permutation(len(batches)):
                width = int(steps_per_row[batches[b]].max())
                idx = torch.as_tensor(batches[b], device=device)
                seq, target = inputs_all[idx, -width:], targets_all[idx, -width:]
                step = target != PAD
                positive = target[step]
                # One set of sampled negatives shared by the whole batch: a single
                # matrix product instead of a gather per position.
                negative = torch.as_tensor(rng.integers(1, n_items + 1, cfg.negatives), device=device)
                if table is not None:  # the rows this step reads, as dense Adam's idle steps left them
                    table.catch_up(torch.cat([seq.reshape(-1), positive, negative]))
                hidden = model(seq)[step]  # (positions, dim)
                positive_logit = (hidden * model.items(positive)).sum(-1, keepdim=True)
                negative_logit = hidden @ model.items(negative).T
                # A negative that happens to be the positive is not a negative.
                negative_logit = negative_logit.masked_fill(negative[None, :] == positive[:, None], float("-inf"))
                logits = torch.cat([positive_logit, negative_logit], 1)
                loss = F.cross_entropy(logits, torch.zeros(len(positive), dtype=torch.long, device=device))
                optimiser.zero_grad(set_to_none=True)
                if table is not None:
                    table.zero_grad()
                loss.backward()
                optimiser.step()
                if table is not None:
                    table.step()
                total += loss.detach()
            losses.append(round(float(total) / len(batches), 4))

        if table is not None:
            table.finish()
        model.eval()
        self.model_ = model
        self.product_ids_ = product_ids
        self.card_extras_ = {"sasrec": {"sequences": int(n), "products": int(n_items), "epoch_loss": losses}}
        vectors = model.items.weight[1:].detach().cpu().numpy()
        # A product seen only early in a session longer than max_len + 1 was never trained: leave it out.
        trained = np.zeros(n_items + 1, bool)
        trained[windows.ravel()] = True
        return Embeddings(product_ids[trained[1:]], vectors[trained[1:]])

    def next_item_scores(self, prefix_ids: Sequence[str]) -> np.ndarray:
        """Scores of every product in `product_ids_` as the item after `prefix_ids` (oldest first)."""
        return self.next_item_scores_batch([prefix_ids])[0]

    def next_item_scores_batch(self, prefixes: Sequence[Sequence[str]], batch_size: int = 1024) -> np.ndarray:
        """Scores (len(prefixes), len(product_ids_)) for many prefixes at once, for evaluations.

        Unknown products in a prefix are skipped; a prefix with none known scores all zeros.
        """
        import torch

        if not hasattr(self, "model_"):
            raise RuntimeError("train the producer before scoring next items")
        index = pd.Index(self.product_ids_)
        lists = [index.get_indexer(np.asarray(p, dtype=str)) + 1 for p in prefixes]
        lists = [p[p > 0] for p in lists]
        lengths = np.array([len(p) for p in lists])
        codes = np.concatenate(lists) if lists else np.zeros(0, np.int64)
        seqs = sequence_matrix(codes.astype(np.int64), np.r_[0, np.cumsum(lengths)], self.config.max_len)
        device = self.model_.items.weight.device
        out = np.zeros((len(prefixes), len(self.product_ids_)), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(seqs), batch_size):
                seq = torch.as_tensor(seqs[start : start + batch_size], device=device)
                out[start : start + len(seq)] = self.model_.scores(self.model_(seq)[:, -1]).cpu().numpy()
        out[lengths == 0] = 0.0
        return out
