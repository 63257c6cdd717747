"""unified: the weighted average of normalised modality embeddings (Myntra, eq. 9).

γ_p = Σ_m w_m γ_p^m / Σ_{m available for p} w_m, where each γ^m is a modality
snapshot centred and scaled to unit rows. A product missing a modality (a new
product nobody clicked) is carried by the modalities it has, so the fusion
covers the whole catalogue. The weights are chosen once, on validation
sessions no scored snapshot saw (see `_choose_weights`), and frozen: later
snapshots read them from the previous model card so that downstream models
see one space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.fusion import (block_scores, choose_weights, earlier_snapshots, modality_snapshots,
                                      normalise, own_previous_snapshot, validation_sessions)
from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class UnifiedConfig(ProducerConfig):
    # Comma-separated families to fuse; those absent at a cutoff are left out.
    modalities: str = "text_dae,clicks_bpr"
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
        if earlier is None or not earlier.card()["fusion"].get("frozen", True):
            return None  # a provisional snapshot froze nothing: choose again
        return earlier.card()["fusion"]["weights"]

    def _choose_weights(self, shop: Shop, parts: dict[str, Embeddings], context: TrainContext) -> dict[str, float]:
        """Weights by the clicked–purchased ranking of validation sessions that no scored snapshot saw.

        The modalities' snapshots of an earlier cutoff are scored on the
        sessions after it (fusion.earlier_snapshots): an earlier version of
        this search scored k-NN agreement of side-information columns that
        text_dae reads as input, so it rewarded the modality that had seen the
        answer. Without such sessions the weights are equal; before an earlier
        snapshot of every modality exists they are equal and provisional (the
        next snapshot chooses again).
        """
        families = sorted(parts)
        equal = {f: round(1 / len(families), 4) for f in families}
        if shop.events is None or shop.events.empty:
            self.selection_ = {"objective": "equal weights: no sessions to validate on", "frozen": True}
            return equal
        found = earlier_snapshots(context.store, families, context.cutoff)
        rows = validation_sessions(shop.events, found[0], context.cutoff) if found else pd.DataFrame()
        if rows.empty:
            self.selection_ = {"objective": "equal weights, provisional: no earlier snapshot of every modality "
                                            "with sessions after it", "frozen": False}
            return equal
        split, earlier = found
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        blocks = [Embeddings(earlier[f].ids, normalise(earlier[f].vectors)).lookup(ids)[0] for f in families]
        index = pd.Index(ids).get_indexer(rows[C.PRODUCT_ID].astype(str))
        rows, index = rows[index >= 0].reset_index(drop=True), index[index >= 0]
        session = pd.factorize(rows[C.SESSION_ID])[0]
        clicked, positive = rows["clicked"].to_numpy(bool), rows["purchased"].to_numpy(bool)
        scores = block_scores(blocks, index, session, clicked)
        # Every modality keeps at least 0.2/M of the weight: a product a weighted-out modality
        # covers alone (a never-clicked product, when clicks win) would otherwise get no vector,
        # and the fusion exists to cover the whole catalogue.
        weights, auc, tried = choose_weights(scores, session, positive, passes=2, floor=0.2)
        self.selection_ = {"objective": "clicked–purchased AUC of validation sessions (Σ w_m cos_m)",
                           "protocol": f"snapshots of {split.date()} scored on sessions in ({split.date()}, "
                                       f"{context.cutoff.date()}]", "score": round(auc, 4), "candidates": tried,
                           "frozen": True}
        return {f: round(float(w), 4) for f, w in zip(families, weights)}

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        if context.store is None:
            raise ValueError("unified reads modality snapshots and needs the snapshot store")
        self.selection_: dict = {}
        sources = modality_snapshots(context, self.config.modalities)
        parts = {family: emb for family, (_, emb) in sources.items()}
        if not parts:
            raise InsufficientData(f"no validated snapshot of {self.config.modalities} at or before {context.cutoff}")
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
        is_frozen = frozen is not None or self.selection_.get("frozen", True)
        # Provisional: equal weights held until validation sessions exist; the next snapshot chooses (and the
        # drift gate does not measure it against this one, validation.verdict.drift_reference).
        self.card_extras_ = {"fusion": {"weights": weights, "frozen": is_frozen, "provisional": not is_frozen,
                                        "sources": {f: ref.id for f, (ref, _) in sources.items()},
                                        "selection": self.selection_}}
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        return fuse(ids, parts, weights)
