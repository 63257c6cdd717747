"""unified: the weighted average of normalised modality embeddings (Myntra, eq. 9).

γ_p = Σ_m w_m γ_p^m / Σ_{m available for p} w_m, where each γ^m is a modality
snapshot centred and scaled to unit rows. A product missing a modality (a new
product nobody clicked) is carried by the modalities it has, so the fusion
covers the whole catalogue. The weights are chosen once, on a validation
split, by the first snapshot of a version, and frozen: later snapshots read
them from the previous model card so that downstream models see one space.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.fusion import (attribute_knn_accuracy, coclick_auc, modality_inputs, normalise,
                                      own_previous_snapshot)
from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class UnifiedConfig(ProducerConfig):
    # Comma-separated families to fuse; those absent at a cutoff are left out.
    modalities: str = "text_dae,clicks_bpr"
    # The validation split: sessions of the last `validation_days` before the cutoff.
    validation_days: int = 14
    grid_step: float = 0.1
    neighbours: int = 10
    # Fixed weights instead of the validation search, e.g. "text_dae=0.5,clicks_bpr=0.5".
    weights: str = ""


def fuse(ids: np.ndarray, parts: dict[str, Embeddings], weights: dict[str, float]) -> Embeddings:
    """Weighted average over the modalities each product has; products with none are dropped."""
    dim = next(iter(parts.values())).dim
    total = np.zeros((len(ids), dim), dtype=np.float64)
    mass = np.zeros(len(ids), dtype=np.float64)
    for family, emb in parts.items():
        rows, found = Embeddings(emb.ids, normalise(emb.vectors)).lookup(ids)
        total += weights[family] * rows
        mass += weights[family] * found
    keep = mass > 0
    return Embeddings(ids[keep], (total[keep] / mass[keep, None]).astype(np.float32))


def parse_weights(text: str) -> dict[str, float]:
    """"a=0.7,b=0.3" -> {"a": 0.7, "b": 0.3}."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        family, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"unified weights {text!r}: expected FAMILY=WEIGHT[,FAMILY=WEIGHT...]")
        weights[family.strip()] = float(value)
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ValueError(f"unified weights {text!r}: need non-negative weights, not all zero")
    return weights


def weight_grid(families: list[str], step: float) -> list[dict[str, float]]:
    ticks = np.round(np.arange(0, 1 + 1e-9, step), 6)
    grid = []
    for combo in itertools.product(ticks, repeat=len(families)):
        if abs(sum(combo) - 1) < 1e-6 and min(combo) > 0:
            grid.append(dict(zip(families, map(float, combo))))
    return grid or [{f: 1 / len(families) for f in families}]


class Unified(Producer):
    name = "unified"
    is_fusion = True
    smoke_settings = {"dim": 16}
    Config = UnifiedConfig
    description = "Weighted average of normalised modality embeddings, weights frozen after validation (Myntra eq. 9)"
    min_coverage = 0.99

    def schema(self) -> dict:
        # Fusing other modalities is another method: a new version, not a new snapshot.
        schema = {**super().schema(), "modalities": self.config.modalities}
        return {**schema, "weights": self.config.weights} if self.config.weights else schema

    def _frozen_weights(self, context: TrainContext) -> dict[str, float] | None:
        earlier = own_previous_snapshot(self, context)
        return earlier.card()["fusion"]["weights"] if earlier else None

    def _choose_weights(self, shop: Shop, parts: dict[str, Embeddings], context: TrainContext) -> dict[str, float]:
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        split = context.cutoff - pd.Timedelta(days=self.config.validation_days)
        held_out = shop.events[shop.events[C.TS] > split] if shop.events is not None else None
        seed = self.config.seed

        def score(weights: dict[str, float]) -> tuple[float, list[float]]:
            fused = fuse(ids, parts, weights)
            scores = [attribute_knn_accuracy(fused, shop, self.config.neighbours, np.random.default_rng(seed))]
            if held_out is not None and len(held_out):
                scores.append(coclick_auc(fused, held_out, np.random.default_rng(seed)))
            return float(np.nanmean(scores)), scores

        families = sorted(parts)
        if len(families) <= 3:
            trials = [(*score(w), w) for w in weight_grid(families, self.config.grid_step)]
            best = max(trials, key=lambda t: t[0])
            candidates = len(trials)
        else:
            # The grid grows exponentially with modalities: coordinate ascent
            # from equal weights instead, halving or doubling one at a time.
            weights = {f: 1 / len(families) for f in families}
            best, candidates = (*score(weights), weights), 1
            for _ in range(2):
                for family in families:
                    for factor in (0.0, 0.5, 2.0):
                        trial = {**best[2], family: best[2][family] * factor}
                        total = sum(trial.values())
                        if total <= 0:
                            continue
                        trial = {f: w / total for f, w in trial.items()}
                        result = (*score(trial), trial)
                        candidates += 1
                        if result[0] > best[0]:
                            best = result
        self.selection_ = {"objective": "mean of attribute k-NN accuracy and held-out co-click AUC",
                           "validation_split": str(split), "score": round(best[0], 4),
                           "components": [round(s, 4) for s in best[1]], "candidates": candidates}
        return {f: round(w, 4) for f, w in best[2].items()}

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        parts, source_ids = modality_inputs(self, context)
        self.selection_: dict = {}
        dims = {f: e.dim for f, e in parts.items()}
        if len(set(dims.values())) > 1 or self.config.dim not in dims.values():
            raise ValueError(f"unified averages embeddings of one dimension ({self.config.dim}); got {dims}")
        frozen = self._frozen_weights(context)
        if frozen is None and self.config.weights:
            weights = {f: w for f, w in parse_weights(self.config.weights).items() if f in parts}
            self.selection_ = {"objective": "given by the user (config.weights)"}
        elif frozen is None:
            weights = self._choose_weights(shop, parts, context)
        else:
            # A modality that appears later gets no weight until a new version is trained.
            weights = {f: frozen.get(f, 0.0) for f in parts}
            if not any(weights.values()):
                raise ValueError(f"unified: frozen weights {frozen} cover none of {sorted(parts)}")
        self.card_extras_ = {"fusion": {"weights": weights, "frozen": frozen is not None,
                                        "sources": source_ids,
                                        "selection": self.selection_}}
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        return fuse(ids, parts, weights)
