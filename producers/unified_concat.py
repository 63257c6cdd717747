"""unified_concat: the modality embeddings side by side, optionally reduced by a frozen PCA.

x_p = [γ_p^1; …; γ_p^M] / √M, each modality centred with unit rows and a
modality the product lacks left at zero (its mean): for two products with
every modality the cosine is the mean of their per-modality cosines, so no
modality drowns another, and a downstream model can still read each
modality's coordinates apart (a weighted average sums unrelated axes into
one). A block keeps its scale whatever else the product has, so a model
trained on products with clicks reads a new product's text block the same way. With `dim` = 0 the concatenation is served whole; with `dim` > 0 a
PCA basis learned by the first snapshot of the version reduces it and is
frozen, like the layout, so downstream models keep reading one space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.fusion import concatenate, frozen_blocks, modality_inputs
from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class UnifiedConcatConfig(ProducerConfig):
    # Comma-separated families, or "auto": every validated non-fusion family.
    modalities: str = "text_dae,clicks_bpr"
    # 0 = the whole concatenation (sum of the modalities' dimensions); > 0 = frozen PCA to this many.
    dim: int = 0


class UnifiedConcat(Producer):
    name = "unified_concat"
    is_fusion = True
    smoke_settings = {"dim": 16}
    Config = UnifiedConcatConfig
    description = "Concatenated normalised modality embeddings (optionally a frozen PCA of them)"
    min_coverage = 0.99

    def schema(self) -> dict:
        return {**super().schema(), "modalities": self.config.modalities}

    def output_dim(self, card: dict) -> int:
        return self.config.dim or sum(card["fusion"]["dims"].values())

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        parts, source_ids = modality_inputs(self, context)
        earlier, order, dims = frozen_blocks(self, context, parts)
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        x, present = concatenate(ids, parts, order, dims)
        keep = present.any(1)
        vectors = x[keep] / np.sqrt(len(order))
        self.artifacts_ = {}
        if self.config.dim:
            if self.config.dim > vectors.shape[1]:
                raise ValueError(f"unified_concat: dim {self.config.dim} exceeds the concatenation's "
                                 f"{vectors.shape[1]} ({', '.join(order)})")
            if earlier is None:
                centred = vectors - vectors.mean(0)
                basis = np.linalg.svd(centred, full_matrices=False)[2][: self.config.dim].T.astype(np.float32)
            else:
                basis = context.store.artifacts(earlier)["basis"]
            vectors = vectors @ basis
            self.artifacts_ = {"basis": basis}
        self.card_extras_ = {"fusion": {"modalities": order, "dims": dims, "frozen": earlier is not None,
                                        "sources": source_ids}}
        return Embeddings(ids[keep], vectors.astype(np.float32))
