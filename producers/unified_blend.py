"""unified_blend: every modality, weighted for cosine on unseen sessions, in one frozen 128-d basis.

x_p = [√α_1 γ_p^1; …; √α_M γ_p^M], each γ^m centred with unit rows and a
block a product lacks predicted from the blocks it has (a ridge map from
content to behaviour, `fusion.impute_blocks`), then each modality's own
principal axes reduce x to `dim` coordinates. Why each piece:

- the cosine of two such vectors is Σ_m α_m cos_m: the weights decide which
  modality's neighbourhoods a cosine task sees, while a linear probe on
  standardised coordinates (attributes, a return model) barely depends on
  them — so weights are chosen for the cosine task only;
- the weights maximise how well the mean cosine to a session's other clicks
  ranks its purchased products (the paper's task 2) on validation sessions
  that **none of the scored snapshots saw**: the modality snapshots of an
  earlier cutoff `s`, scored on sessions after `s` and before this cutoff.
  Until such an earlier snapshot exists the weights are equal and the
  snapshot is marked provisional; the first snapshot that can select
  without leaking freezes weights and basis for the version;
- the basis is block-diagonal (each modality's own principal axes, the
  `dim` of largest variance over all modalities, scaled by √α_m, frozen with
  the weights): every coordinate belongs to one modality, so a linear probe
  on standardised coordinates reads each modality whatever its weight;
- imputation instead of zero blocks: a product listed after the last click
  still gets a behaviour block (a cosine of 0 to everything otherwise), and
  no coordinate is empty at an early cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.core.shop.model import Shop
from prodvec.producers.fusion import (choose_weights, concatenate, block_scores, earlier_snapshots,
                                      modality_snapshots, own_previous_snapshot, session_auc, validation_sessions)


@dataclass(frozen=True)
class UnifiedBlendConfig(ProducerConfig):
    # Comma-separated families, or "auto": every validated non-fusion family.
    modalities: str = "auto"
    dim: int = 128
    # Fixed weights instead of the validation search, e.g. "text_dae=1,clicks_bpr=3" (normalised to sum 1).
    weights: str = ""
    # Passes of coordinate ascent over the weights (each tries halving, doubling and dropping a modality).
    passes: int = 3
    # A modality keeps at least this share of its equal weight, so the basis still carries it for linear probes.
    floor: float = 0.1


def block_basis(centred: np.ndarray, dims: list[int], weights: list[float], dim: int) -> np.ndarray:
    """A block-diagonal basis: each block's own principal axes, scaled by √weight, `dim` columns in all.

    Every coordinate belongs to one modality, so scaling a block changes
    cosines (Σ α_m cos_m) but not what a linear probe on standardised
    coordinates can read: the weights serve the cosine task without costing
    attributes or returns. The `dim` columns go to the (block, axis) pairs
    with the largest variance, blocks having unit rows: a modality whose
    rows spread over many directions keeps more of them than one that lives
    in a few.
    """
    bounds = np.cumsum([0] + dims)
    axes, variance = [], []
    for m, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        _, sigma, vt = np.linalg.svd(centred[:, a:b], full_matrices=False)
        for k in range(len(sigma)):
            axes.append((m, k, vt[k]))
            variance.append(sigma[k] ** 2)
    chosen = sorted(np.argsort(variance)[::-1][:dim], key=lambda i: (axes[i][0], axes[i][1]))
    basis = np.zeros((bounds[-1], len(chosen)))
    for column, i in enumerate(chosen):
        m, _, axis = axes[i]
        basis[bounds[m]:bounds[m + 1], column] = np.sqrt(weights[m]) * axis
    return basis


class UnifiedBlend(Producer):
    name = "unified_blend"
    is_fusion = True
    smoke_settings = {"dim": 16}
    Config = UnifiedBlendConfig
    description = ("Every modality weighted for cosine on sessions no input saw, gaps imputed, frozen per-modality principal axes "
                   "(dim 128)")
    min_coverage = 0.99

    def schema(self) -> dict:
        schema = {**super().schema(), "modalities": self.config.modalities}
        return {**schema, "weights": self.config.weights} if self.config.weights else schema

    def _blocks(self, ids: np.ndarray, parts: dict[str, Embeddings], order: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        dims = {f: parts[f].dim for f in order}
        x, present = concatenate(ids, parts, order, dims, impute=True)
        bounds = np.cumsum([0] + [dims[f] for f in order])
        return [x[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])], present

    def _select(self, shop: Shop, context: TrainContext, order: list[str]) -> tuple[dict[str, float], dict]:
        """Weights from the validation protocol, and how they were chosen (for the model card)."""
        equal = {f: 1.0 / len(order) for f in order}
        if self.config.weights:
            given = {f: 0.0 for f in order}
            for item in filter(None, (p.strip() for p in self.config.weights.split(","))):
                family, _, value = item.partition("=")
                if family.strip() in given:
                    given[family.strip()] = float(value)
            total = sum(given.values())
            if total <= 0:
                raise ValueError(f"unified_blend weights {self.config.weights!r} cover none of {order}")
            return {f: w / total for f, w in given.items()}, {"objective": "given by the user (config.weights)",
                                                              "frozen_because": "fixed weights"}
        store = context.store
        if shop.events is None or shop.events.empty:
            return equal, {"objective": "equal weights: the shop has no sessions to validate on",
                           "frozen_because": "no sessions"}
        found = earlier_snapshots(store, order, context.cutoff)
        if found is None:
            return equal, {"objective": "equal weights, provisional: no earlier snapshot of every modality yet "
                                        "to validate on without leaking"}
        split, earlier = found
        rows = validation_sessions(shop.events, split, context.cutoff)
        if rows.empty:
            return equal, {"objective": f"equal weights, provisional: no validation session after {split}"}
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        blocks, _ = self._blocks(ids, earlier, order)
        index = pd.Index(ids).get_indexer(rows[C.PRODUCT_ID].astype(str))
        rows, index = rows[index >= 0].reset_index(drop=True), index[index >= 0]
        session = pd.factorize(rows[C.SESSION_ID])[0]
        clicked, positive = rows["clicked"].to_numpy(bool), rows["purchased"].to_numpy(bool)
        scores = block_scores(blocks, index, session, clicked)
        weights, auc, tried = choose_weights(scores, session, positive, self.config.passes, self.config.floor)
        single = {f: round(session_auc(scores[:, m], session, positive), 4) for m, f in enumerate(order)}
        selection = {"objective": "mean per-session AUC of purchased vs seen products by mean cosine to the "
                                  "session's other clicks (paper task 2) on validation sessions",
                     "protocol": f"modality snapshots of {split.date()} scored on sessions in "
                                 f"({split.date()}, {context.cutoff.date()}]: no scored input saw them",
                     "validation_sessions": int(session.max() + 1), "validation_auc": round(auc, 4),
                     "equal_weights_auc": round(session_auc(scores.mean(1), session, positive), 4),
                     "single_modality_auc": single, "candidates": tried, "frozen_because": "selected"}
        return {f: float(w) for f, w in zip(order, weights)}, selection

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        if context.store is None:
            raise ValueError("unified_blend reads modality snapshots and needs the snapshot store")
        sources = modality_snapshots(context, self.config.modalities)
        if not sources:
            raise InsufficientData(f"no validated snapshot of {self.config.modalities} at or before {context.cutoff}")
        parts = {family: emb for family, (_, emb) in sources.items()}
        ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)
        earlier = own_previous_snapshot(self, context)
        frozen = earlier.card()["fusion"] if earlier is not None else None
        if frozen is not None and frozen.get("frozen"):
            order, weights, selection = frozen["modalities"], frozen["weights"], {"reused_from": earlier.id}
            parts = {f: e for f, e in parts.items() if f in order}
            if not parts:
                raise InsufficientData(f"none of the frozen modalities {order} has a snapshot at {context.cutoff}")
            artifacts = context.store.artifacts(earlier)
            mean, basis = artifacts["mean"], artifacts["basis"]
        else:
            order = sorted(parts)
            weights, selection = self._select(shop, context, order)
            mean = basis = None
        blocks, present = self._blocks(ids, parts, order)
        keep = present > 0
        x = np.hstack(blocks)[keep].astype(np.float64)
        if basis is None:
            if keep.sum() <= self.config.dim:
                raise InsufficientData(f"unified_blend: {keep.sum()} products cannot give {self.config.dim} dimensions")
            mean = x.mean(0)
            basis = block_basis(x - mean, [b.shape[1] for b in blocks], [weights[f] for f in order], self.config.dim)
        vectors = (x - mean) @ basis
        is_frozen = "frozen_because" in selection or "reused_from" in selection
        self.artifacts_ = {"mean": mean.astype(np.float32), "basis": basis.astype(np.float32)}
        self.card_extras_ = {"fusion": {"modalities": order, "weights": {f: round(w, 4) for f, w in weights.items()},
                                        "frozen": bool(is_frozen),
                                        "sources": {f: ref.id for f, (ref, _) in sources.items() if f in order},
                                        "selection": selection}}
        return Embeddings(ids[keep], vectors.astype(np.float32))
