"""What the fusion producers share: finding modality snapshots and judging a fusion.

A fusion reads other families' snapshots instead of the shop's raw data, and
freezes what it learned (weights, a projection) in its first snapshot so that
every later snapshot of its version lives in the same space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import Producer, TrainContext
from prodvec.core.shop.model import Shop
from prodvec.producers import is_fusion
from prodvec.core.snapshots import SnapshotRef

def modality_snapshots(context: TrainContext, modalities: str) -> dict[str, tuple[SnapshotRef, Embeddings]]:
    """The newest snapshot at or before the cutoff that passed validation, per family.

    `modalities` is a comma-separated list, or "auto" for every non-fusion family in the store.
    """
    store = context.store
    if modalities.strip() == "auto":
        families = [f for f in store.families() if not is_fusion(f)]
    else:
        families = [f.strip() for f in modalities.split(",") if f.strip()]
    out = {}
    for family in families:
        passed = [r for r in store.snapshots(family)
                  if r.cutoff <= context.cutoff and r.card().get("validation", {}).get("success")]
        if passed:
            latest = max(passed, key=lambda r: (r.version, r.cutoff))
            out[family] = (latest, store.read(latest))
    return out


def own_previous_snapshot(producer: Producer, context: TrainContext) -> SnapshotRef | None:
    """The newest earlier snapshot of the producer's own version (where frozen state lives)."""
    store = context.store
    version = store.version_of(producer.name, producer.schema())
    if version is None:
        return None
    earlier = [r for r in store.snapshots(producer.name, version) if r.cutoff < context.cutoff]
    return earlier[-1] if earlier else None


def normalise(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


def coclick_auc(emb: Embeddings, events: pd.DataFrame, rng: np.random.Generator, n_pairs: int = 20000) -> float:
    """How much more similar products clicked in one session are than random pairs (AUC)."""
    clicks = events[events[C.EVENT_TYPE] != C.IMPRESSION][[C.SESSION_ID, C.PRODUCT_ID]].drop_duplicates()
    _, found = emb.lookup(clicks[C.PRODUCT_ID])
    clicks = clicks[found]
    pairs = clicks.merge(clicks, on=C.SESSION_ID)
    pairs = pairs[pairs[f"{C.PRODUCT_ID}_x"] < pairs[f"{C.PRODUCT_ID}_y"]]
    if len(pairs) < 50:
        return float("nan")
    pairs = pairs.sample(min(n_pairs, len(pairs)), random_state=int(rng.integers(1 << 31)))
    unit = normalise(emb.vectors)
    index = pd.Index(emb.ids)
    a, b = index.get_indexer(pairs[f"{C.PRODUCT_ID}_x"]), index.get_indexer(pairs[f"{C.PRODUCT_ID}_y"])
    positive = (unit[a] * unit[b]).sum(1)
    r1, r2 = rng.integers(0, len(unit), len(pairs)), rng.integers(0, len(unit), len(pairs))
    negative = (unit[r1] * unit[r2]).sum(1)
    ranks = pd.Series(np.concatenate([positive, negative])).rank().to_numpy()
    n_pos = len(positive)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * len(negative)))


def attribute_knn_accuracy(emb: Embeddings, shop: Shop, k: int, rng: np.random.Generator, sample: int = 2000) -> float:
    """Mean over side-information columns of leave-one-out k-NN majority-vote accuracy."""
    products = shop.products.set_index(C.PRODUCT_ID)
    columns = shop.label_columns
    # A hashed lookup: np.isin compares object strings pairwise (seconds per call on 6k products).
    ids = emb.ids[pd.Index(emb.ids).isin(products.index)]
    if not columns or len(ids) <= k:
        return float("nan")
    vectors, _ = emb.lookup(ids)
    unit = normalise(vectors)
    queries = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    sims = unit[queries] @ unit.T
    sims[np.arange(len(queries)), queries] = -np.inf
    neighbours = np.argpartition(-sims, k, axis=1)[:, :k]
    scores = []
    for column in columns:
        codes, _ = pd.factorize(products.loc[ids, column])  # unknown -> -1, never a vote
        truth = codes[queries]
        known = truth >= 0
        if not known.any():
            continue
        votes = np.zeros((len(queries), codes.max() + 2), dtype=np.int32)
        np.add.at(votes, (np.repeat(np.arange(len(queries)), k), codes[neighbours].ravel() + 1), 1)
        majority = votes[:, 1:].argmax(axis=1)
        scores.append(float(np.mean(majority[known] == truth[known])))
    return float(np.mean(scores)) if scores else float("nan")


def frozen_blocks(producer: Producer, context: TrainContext, parts: dict[str, Embeddings]):
    """(earlier snapshot or None, modality order, dims): the layout a concatenating fusion keeps.

    The first snapshot of a version fixes which modalities, in which order and
    of which width, make up the concatenation; later snapshots reuse it so the
    space (and its dimension, a Feast schema) never shifts.
    """
    earlier = own_previous_snapshot(producer, context)
    if earlier is None:
        order = sorted(parts)
        return None, order, {f: parts[f].dim for f in order}
    frozen = earlier.card()["fusion"]
    return earlier, frozen["modalities"], frozen["dims"]


def concatenate(ids: np.ndarray, parts: dict[str, Embeddings], order: list[str],
                dims: dict[str, int], impute: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """[γ^1; …; γ^M] per product, each block centred with unit rows; a block a product lacks is zero
    (or, with `impute`, predicted from the blocks every product has: see `impute_blocks`).

    Returns the matrix and how many modalities each product has.
    """
    blocks, masks, present = [], [], np.zeros(len(ids), dtype=np.int32)
    for family in order:
        if family in parts:
            rows, found = Embeddings(parts[family].ids, normalise(parts[family].vectors)).lookup(ids)
            present += found
        else:  # a frozen modality with no snapshot at this cutoff: its mean, zero
            rows, found = np.zeros((len(ids), dims[family]), dtype=np.float32), np.zeros(len(ids), bool)
        blocks.append(rows)
        masks.append(found)
    if impute:
        blocks = impute_blocks(blocks, masks)
    return np.hstack(blocks), present


def impute_blocks(blocks: list[np.ndarray], found: list[np.ndarray], alpha: float = 1.0) -> list[np.ndarray]:
    """Fill the rows a block lacks with a ridge prediction from the blocks every product has.

    A product nobody clicked yet has text and an image but no clickstream
    vector; left at zero, its cosine to everything in that block is 0 and a
    whole block of zeros at an early cutoff flattens the space (the gate's
    isotropy). A linear map from the complete blocks (content) to the
    incomplete one (behaviour), fitted on the products that have both, puts it
    where products like it sit, the usual cold-start mapping. Predicted rows
    are scaled to unit length like the observed ones. Blocks with no complete
    block to learn from, or too few rows, stay as they are.
    """
    from sklearn.linear_model import Ridge

    n = len(found[0]) if found else 0
    complete = [i for i, mask in enumerate(found) if mask.all()]
    if not complete or n == 0:
        return blocks
    source = np.hstack([blocks[i] for i in complete]).astype(np.float64)
    out = list(blocks)
    for i, mask in enumerate(found):
        if mask.all() or mask.sum() < max(20, source.shape[1] // 4):
            continue
        model = Ridge(alpha=alpha).fit(source[mask], blocks[i][mask])
        guess = model.predict(source[~mask])
        filled = blocks[i].astype(np.float32, copy=True)
        filled[~mask] = guess / np.maximum(np.linalg.norm(guess, axis=1, keepdims=True), 1e-12)
        out[i] = filled
    return out
