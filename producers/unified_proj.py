"""unified_proj: concatenated modality embeddings through one frozen linear projection.

x_p = [γ_p^1; …; γ_p^M] (each modality centred and scaled to unit rows; a
modality a product lacks is its mean, i.e. zero) and the embedding is W x_p.
W is learned once, by the first snapshot of a version, on a validation split,
with task-agnostic objectives: predicting every side-information column and
the category from W x (one softmax head each), and bringing together products
clicked in the same held-out session (in-batch contrastive loss). Later
snapshots load W from their predecessor's artifacts and only apply it, so
every model downstream keeps reading one space. This is the Myntra paper's
answer to its reviewers: one projection for all tasks, not one per task.
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
from prodvec.producers.fusion import concatenate, frozen_blocks, modality_inputs
from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class UnifiedProjConfig(ProducerConfig):
    # Comma-separated families, or "auto": every validated non-fusion family.
    modalities: str = "auto"
    validation_days: int = 14
    steps: int = 300
    lr: float = 0.01
    batch_size: int = 512
    temperature: float = 0.1


def _coclick_pairs(shop: Shop, start: pd.Timestamp, index: pd.Index) -> np.ndarray:
    """Row pairs of products clicked in one held-out session."""
    if shop.events is None:
        return np.zeros((0, 2), dtype=np.int64)
    held = shop.events[(shop.events[C.TS] > start) & (shop.events[C.EVENT_TYPE] != C.IMPRESSION)]
    clicks = held[[C.SESSION_ID, C.PRODUCT_ID]].drop_duplicates()
    pairs = clicks.merge(clicks, on=C.SESSION_ID)
    pairs = pairs[pairs[f"{C.PRODUCT_ID}_x"] < pairs[f"{C.PRODUCT_ID}_y"]]
    a = index.get_indexer(pairs[f"{C.PRODUCT_ID}_x"])
    b = index.get_indexer(pairs[f"{C.PRODUCT_ID}_y"])
    keep = (a >= 0) & (b >= 0)
    return np.stack([a[keep], b[keep]], axis=1)


class UnifiedProj(Producer):
    name = "unified_proj"
    is_fusion = True
    smoke_settings = {"dim": 16, "steps": 100}
    Config = UnifiedProjConfig
    description = "Concatenated modality embeddings through one linear projection learned once and frozen"
    min_coverage = 0.99

    def schema(self) -> dict:
        return {**super().schema(), "modalities": self.config.modalities}

    def _learn_projection(self, shop: Shop, x: np.ndarray, ids: np.ndarray, context: TrainContext) -> np.ndarray:
        import torch
        from torch import nn

        cfg = self.config
        rng = seed_torch(cfg.seed)
        device = torch_device(cfg.device)
        products = shop.products.set_index(C.PRODUCT_ID).loc[ids]
        targets = []
        for column in shop.label_columns:
            codes, uniques = pd.factorize(products[column])
            if len(uniques) >= 2:
                targets.append((column, torch.as_tensor(codes, device=device), len(uniques)))
        split = context.cutoff - pd.Timedelta(days=cfg.validation_days)
        pairs = _coclick_pairs(shop, split, pd.Index(ids))
        if not targets and len(pairs) == 0:
            raise InsufficientData("no side information and no held-out sessions to learn a projection from")

        projection = nn.Linear(x.shape[1], cfg.dim, bias=False).to(device)
        heads = nn.ModuleList([nn.Linear(cfg.dim, n) for _, _, n in targets]).to(device)
        optimiser = torch.optim.Adam([*projection.parameters(), *heads.parameters()], lr=cfg.lr)
        features = torch.as_tensor(x, device=device)
        pair_tensor = torch.as_tensor(pairs, device=device)
        for _ in tqdm(range(cfg.steps), desc="unified_proj", disable=not context.progress, leave=False):
            rows = torch.as_tensor(rng.integers(0, len(ids), cfg.batch_size), device=device)
            code = projection(features[rows])
            losses = []
            for (_, labels, _), head in zip(targets, heads):
                known = labels[rows] >= 0  # unknown side information teaches nothing
                if known.any():
                    losses.append(nn.functional.cross_entropy(head(code[known]), labels[rows][known]))
            if len(pairs):
                batch = pair_tensor[torch.as_tensor(rng.integers(0, len(pairs), cfg.batch_size), device=device)]
                left = nn.functional.normalize(projection(features[batch[:, 0]]), dim=1)
                right = nn.functional.normalize(projection(features[batch[:, 1]]), dim=1)
                logits = left @ right.T / cfg.temperature
                losses.append(nn.functional.cross_entropy(logits, torch.arange(len(batch), device=device)))
            loss = torch.stack(losses).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        self.selection_ = {"objective": "side-information classification + held-out co-click contrast",
                           "tasks": [t[0] for t in targets], "coclick_pairs": int(len(pairs)),
                           "validation_split": str(split), "final_loss": round(float(loss.detach()), 4)}
        return projection.weight.detach().cpu().numpy().T.astype(np.float32)

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        parts, source_ids = modality_inputs(self, context)
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        self.selection_ = {}
        earlier, order, dims = frozen_blocks(self, context, parts)
        x, present = concatenate(ids, parts, order, dims)
        keep = present.any(1)
        if earlier is None:
            weights = self._learn_projection(shop, x[keep], ids[keep], context)
        else:
            weights = context.store.artifacts(earlier)["projection"]
        # Fewer modalities means a shorter concatenation; rescale so norms stay comparable.
        scale = np.sqrt(len(order) / np.maximum(present[keep].sum(1), 1))[:, None]
        vectors = (x[keep] * scale) @ weights
        self.artifacts_ = {"projection": weights}
        self.card_extras_ = {"fusion": {"modalities": order, "dims": dims, "frozen": earlier is not None,
                                        "sources": source_ids,
                                        "selection": self.selection_}}
        return Embeddings(ids[keep], vectors.astype(np.float32))
