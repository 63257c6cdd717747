"""unified_blend: every modality, weighted for cosine on sessions no input saw, in one frozen basis of ≤ 128 dims.

Each modality snapshot γ^m is centred with unit rows (a block a product
lacks is zero, its mean); x is their concatenation. The
served vector has two parts (`two_part_basis`), both frozen with the weights:

- a cosine part: principal axes of [√α_1 γ^1; …; √α_M γ^M]. A cosine there
  is about Σ_m α_m cos_m, so the weights decide which modality's
  neighbourhoods a cosine task sees. They maximise how well the mean cosine
  to a session's other clicks ranks its purchased products (the paper's
  task 2) on validation sessions that **none of the scored snapshots saw**:
  the modality snapshots of an earlier cutoff `s`, scored on sessions after
  `s` and up to this cutoff (`fusion.earlier_snapshots`). Until such an
  earlier snapshot exists the weights are equal and the snapshot is marked
  provisional; the first snapshot that can select without leaking freezes
  weights and basis for the version;
- a content part: principal axes of the unweighted blocks that (almost)
  every product has, scaled down by √β (β chosen on the same sessions):
  the content modalities' main directions, for linear probes (attributes, a
  return model), which standardise coordinates and so never see the
  weights; a probe trained on products with clicks reads the same axes on a
  cold product without them. It stops at the axes holding 99.9% of its
  variance, so the served dimension can be below `dim` (fixed per version).

The served vectors are neither rotated onto the previous snapshot (the frozen
basis keeps the space; a rotation would mix the two parts' scales) nor left at
the content part's tiny scale: one common factor (`probe_scale`) gives the
weakest coordinate a standard deviation of 1, so a probe that does not
standardise reads the content part too, and no cosine changes.

Every product with any modality is covered, including those listed after the
last click (their behaviour block is zero: they are placed by the others).
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


# The content part's weight in the cosine (the key beside the modalities' weights in the card), the values the
# validation search tries, and the one used without validation sessions.
CONTENT = "_content"
CONTENT_WEIGHTS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # never 0: the content axes would be empty
DEFAULT_CONTENT_WEIGHT = 0.2
# A block counts as complete, and feeds the content part, when it covers this share of the fused products.
COMPLETE = 0.99
# The content part keeps the principal axes that hold this share of its variance (see `two_part_basis`).
KEPT_VARIANCE = 0.999


@dataclass(frozen=True)
class UnifiedBlendConfig(ProducerConfig):
    # Comma-separated families, or "auto": every validated non-fusion family.
    modalities: str = "auto"
    dim: int = 128
    # Fixed weights instead of the validation search, e.g. "text_dae=1,clicks_bpr=3" (normalised to sum 1).
    weights: str = ""
    # Passes of coordinate ascent over the weights (each tries halving, doubling and dropping a modality).
    passes: int = 3
    # A modality keeps at least this share of its equal weight in the cosine part (the content part carries
    # every modality for probes anyway).
    floor: float = 0.0
    # Share of `dim` given to the content part (principal axes of all modalities, unweighted). Measured on the
    # default shop (attributes macro-F1 / similarity AUC): 0.5 -> 0.702 / 0.544, 0.625 -> 0.727 / 0.546,
    # 0.75 -> 0.738 / 0.533 (content axes from the residual of the cosine part: 0.625 -> 0.712 / 0.552,
    # 0.75 -> 0.735 / 0.545).
    content_share: float = 0.75
    # A block known for fewer than this share of the products is filled in from the blocks every product has
    # (fusion.impute_blocks). Off by default: a predicted block is a linear function of the content blocks, so
    # at an early cutoff the concatenation loses rank and the principal axes past it are empty (the gate's
    # isotropy); a zero block (its mean) keeps the product's other blocks and the rank.
    impute_below: float = 0.0


def two_part_basis(centred: np.ndarray, dims: list[int], weights: list[float], content_weight: float,
                   cosine_dims: int, content_dims: int, complete: list[bool],
                   kept_variance: float | None = KEPT_VARIANCE) -> np.ndarray:
    """Columns [cosine part | content part] applied to the centred concatenation of unit-row blocks.

    - cosine part (cosine_dims columns): principal axes of the
      concatenation with each block scaled by √α_m, times √(1 - β): what a
      cosine task is made of, dominated by the modalities the validation
      sessions favoured;
    - content part (at most content_dims columns): principal axes of the
      `complete` blocks alone (at least one; unweighted: directions several modalities
      share come first, so three text models cost one set of axes), taken
      orthogonal to the cosine axes within those blocks, times √β: what
      linear probes read, whatever the weights. With `kept_variance` the
      part stops at the axes that hold that share of its variance.

    A cosine of two served vectors is then about (1 − β) Σ α_m cos_m + β ×
    the complete modalities' mean cosine. A probe on standardised coordinates
    does not see the scales at all, so the weights cost attributes nothing:
    measured on the default shop, one block-diagonal basis whose axes went by
    variance left the heaviest block 10 of its 64 axes (cosine task −7%), and
    a joint PCA of the weighted concatenation lost the light text blocks
    (attributes −28%).

    Why only complete blocks (those almost every product has) feed the
    content part: a probe is trained on products that have every block and
    applied to cold ones that lack the behaviour blocks (zeros, their mean).
    An axis mixing text with clicks then moves for a cold product by what its
    missing clicks would have added, and the probe reads that as signal.
    Axes read from complete blocks only mean the same for every product.
    Measured with the report's attributes probe (a product listed after the
    cutoff, standardised logistic regression; `benchmarks/blend_content.py`)
    on the families of `make demo-full`: macro-F1 0.786 with the content part
    over all ten modalities, 0.853 over the five complete ones (the cosine
    part the same; text_dae alone 0.749).

    Why stop at `kept_variance`: a standardising probe scales every axis to
    one standard deviation, so an axis that holds almost nothing (text_dae
    keeps 99.9% of its variance in 31 of its 64 directions) comes back as
    loud as the main ones and the probe fits its noise. With text_dae and
    clicks_bpr alone (`make demo`'s families): 0.660 with all 64 text axes,
    0.715 with the 32 its version keeps (text_dae itself 0.749).
    """
    bounds = np.cumsum([0] + dims)
    scale = np.concatenate([np.full(b - a, np.sqrt(w)) for a, b, w in zip(bounds[:-1], bounds[1:], weights)])
    cosine_axes = scale[:, None] * np.linalg.svd(centred * scale, full_matrices=False)[2][:cosine_dims].T
    columns = np.concatenate([np.arange(a, b) for a, b, keep in zip(bounds[:-1], bounds[1:], complete) if keep])
    # Orthogonal to the cosine axes within the content columns: with equal weights both parts would otherwise
    # find the same axes, and a repeated axis is an empty direction (the gate's isotropy).
    u, s, _ = np.linalg.svd(cosine_axes[columns], full_matrices=False)
    taken = u[:, s > 1e-6 * s.max()] if s.size and s.max() > 0 else u[:, :0]
    part = centred[:, columns]
    part = part - (part @ taken) @ taken.T
    _, s, vt = np.linalg.svd(part, full_matrices=False)
    held = np.cumsum(s ** 2) / max(float((s ** 2).sum()), 1e-300)
    count = content_dims if kept_variance is None else int(np.searchsorted(held, kept_variance) + 1)
    content_axes = np.zeros((centred.shape[1], min(count, content_dims, len(vt))))
    content_axes[columns] = vt[: content_axes.shape[1]].T
    return np.hstack([np.sqrt(1 - content_weight) * cosine_axes, np.sqrt(content_weight) * content_axes])


def probe_scale(vectors: np.ndarray) -> float:
    """The factor that gives the served vectors' weakest coordinate a standard deviation of 1 (set by the
    version's first snapshot, then kept).

    The content part is scaled down by √β so that cosine barely sees it, and a
    probe that standardises its inputs undoes that. A probe that does not (a
    plain L2-regularised logistic regression) reads coordinates of standard
    deviation ~0.01 as noise its penalty should suppress: measured on the
    default shop, attributes macro-F1 0.457 for unscaled vectors against 0.740
    for text_dae. Cosine does not see a common factor, so scaling every
    coordinate by it costs the cosine part nothing and puts the weakest
    content axis at the scale a standardising probe would give it.
    """
    spread = vectors.std(axis=0)
    spread = spread[spread > 0]
    if not len(spread):
        raise InsufficientData("unified_blend: every served coordinate is constant")
    return float(1.0 / spread.min())


class UnifiedBlend(Producer):
    name = "unified_blend"
    # 2: served vectors scaled by `probe_scale` and never rotated (a v1 snapshot's frozen basis has no such
    # scale, and its vectors were rotated onto the provisional snapshot before them).
    # 3: the content part read from complete blocks only, up to the axes holding 99.9% of its variance (a v2
    # basis mixes every block into it, and its dimension is always `dim`).
    version = 3
    # The frozen basis keeps the version's snapshots in one space already, and its coordinates are the two
    # parts: a rotation onto the previous snapshot (the provisional one, in another basis) mixes the
    # large cosine axes into the small content axes, and a probe that standardises coordinates can then no
    # longer give the content axes back their scale.
    aligns = False
    is_fusion = True
    smoke_settings = {"dim": 16}
    Config = UnifiedBlendConfig
    description = ("Every modality weighted for cosine on sessions no input saw, plus the complete modalities' principal axes "
                   "for probes, frozen (dim ≤ 128)")
    min_coverage = 0.99

    def output_dim(self, card: dict) -> int:
        return card["fusion"]["dim"]

    def schema(self) -> dict:
        schema = {**super().schema(), "modalities": self.config.modalities}
        return {**schema, "weights": self.config.weights} if self.config.weights else schema

    def _blocks(self, ids: np.ndarray, parts: dict[str, Embeddings], order: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        dims = {f: parts[f].dim for f in order}
        x, present = concatenate(ids, parts, order, dims, impute=self.config.impute_below)
        bounds = np.cumsum([0] + [dims[f] for f in order])
        return [x[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])], present

    def _select(self, shop: Shop, context: TrainContext, order: list[str]) -> tuple[dict[str, float], dict]:
        """Weights from the validation protocol, and how they were chosen (for the model card)."""
        equal = {**{f: 1.0 / len(order) for f in order}, CONTENT: DEFAULT_CONTENT_WEIGHT}
        if self.config.weights:
            given = {f: 0.0 for f in order}
            for item in filter(None, (p.strip() for p in self.config.weights.split(","))):
                family, _, value = item.partition("=")
                if family.strip() in given:
                    given[family.strip()] = float(value)
            total = sum(given.values())
            if total <= 0:
                raise ValueError(f"unified_blend weights {self.config.weights!r} cover none of {order}")
            return {**{f: w / total for f, w in given.items()}, CONTENT: DEFAULT_CONTENT_WEIGHT}, {"objective": "given by the user (config.weights)",
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
        # How much the content part counts in the cosine: the same ranking, mixing in the modalities' mean cosine.
        fused, mean = scores @ weights, scores.mean(1)
        content = max(CONTENT_WEIGHTS, key=lambda b: session_auc((1 - b) * fused + b * mean, session, positive))
        weights = {**{f: float(w) for f, w in zip(order, weights)}, CONTENT: float(content)}
        single = {f: round(session_auc(scores[:, m], session, positive), 4) for m, f in enumerate(order)}
        selection = {"objective": "mean per-session AUC of purchased vs seen products by mean cosine to the "
                                  "session's other clicks (paper task 2) on validation sessions",
                     "protocol": f"modality snapshots of {split.date()} scored on sessions in "
                                 f"({split.date()}, {context.cutoff.date()}]: no scored input saw them",
                     "validation_sessions": int(session.max() + 1), "validation_auc": round(auc, 4),
                     "validation_auc_with_content": round(session_auc((1 - content) * fused + content * mean,
                                                                      session, positive), 4),
                     "equal_weights_auc": round(session_auc(scores.mean(1), session, positive), 4),
                     "single_modality_auc": single, "candidates": tried, "frozen_because": "selected"}
        return weights, selection

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
            content_from = frozen["content_modalities"]
        else:
            order = sorted(parts)
            weights, selection = self._select(shop, context, order)
            mean = basis = None
        blocks, present = self._blocks(ids, parts, order)
        keep = present.any(1)
        x = np.hstack(blocks)[keep].astype(np.float64)
        if basis is None:
            if keep.sum() <= self.config.dim:
                raise InsufficientData(f"unified_blend: {keep.sum()} products cannot give {self.config.dim} dimensions")
            mean = x.mean(0)
            content_dims = int(round(self.config.dim * self.config.content_share))
            cosine_dims = self.config.dim - content_dims
            # The served dimension (a Feast view's vector length) and the probe scale are fixed by the version's
            # first snapshot and kept from then on: a provisional snapshot and the one that freezes the weights
            # differ in basis already, and a different scale on top made the gate's displacement (after the best
            # rotation, relative to the old spread) 1.84 against 0.69 unscaled.
            first = context.store.artifacts(earlier) if earlier is not None else {}
            # No block covers (almost) every product: all of them, as the best left.
            content_from = [f for f, share in zip(order, present[keep].mean(0)) if share >= COMPLETE] or list(order)
            basis = two_part_basis(x - mean, [b.shape[1] for b in blocks], [weights[f] for f in order],
                                   weights[CONTENT], cosine_dims,
                                   first["basis"].shape[1] - cosine_dims if first else content_dims,
                                   [f in content_from for f in order], None if first else KEPT_VARIANCE)
            scale = float(first["scale"][0]) if first else probe_scale((x - mean) @ basis)
            basis = basis * scale
        else:
            scale = float(artifacts["scale"][0])
        vectors = (x - mean) @ basis
        is_frozen = "frozen_because" in selection or "reused_from" in selection
        self.artifacts_ = {"mean": mean.astype(np.float32), "basis": basis.astype(np.float32),
                           "scale": np.array([scale], dtype=np.float32)}
        self.card_extras_ = {"fusion": {"modalities": order, "weights": {f: round(w, 4) for f, w in weights.items()},
                                        "frozen": bool(is_frozen), "provisional": not is_frozen,
                                        "content_modalities": content_from, "dim": int(basis.shape[1]),
                                        "sources": {f: ref.id for f, (ref, _) in sources.items() if f in order},
                                        "selection": selection}}
        return Embeddings(ids[keep], vectors.astype(np.float32))
