"""What the fusion producers share: finding modality snapshots and judging a fusion.

A fusion reads other families' snapshots instead of the shop's raw data, and
freezes what it learned (weights, a projection) in its first snapshot so that
every later snapshot of its version lives in the same space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.neighbours import top_k_cosine
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


def modality_inputs(producer: Producer, context: TrainContext) -> tuple[dict[str, Embeddings], dict[str, str]]:
    """What a fusion fuses at the cutoff: family -> embeddings, and family -> the snapshot id it came from (for
    the card). A clear error when there is no store to read them from or no validated snapshot of any."""
    modalities = producer.config.modalities
    if context.store is None:
        raise ValueError(f"{producer.name} reads modality snapshots and needs the snapshot store")
    sources = modality_snapshots(context, modalities)
    if not sources:
        raise InsufficientData(f"no validated snapshot of {modalities} at or before {context.cutoff}")
    return ({family: emb for family, (_, emb) in sources.items()},
            {family: ref.id for family, (ref, _) in sources.items()})


def own_previous_snapshot(producer: Producer, context: TrainContext) -> SnapshotRef | None:
    """The newest earlier snapshot of the producer's own version (where frozen state lives)."""
    store = context.store
    version = store.version_of(producer.name, producer.schema())
    if version is None:
        return None
    earlier = [r for r in store.snapshots(producer.name, version) if r.cutoff < context.cutoff]
    return earlier[-1] if earlier else None


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Centred, then unit rows: an offset every product shares would otherwise dominate cosine."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    return normalize(centred)


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
    truth = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(truth, np.concatenate([positive, negative])))


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
    neighbours = top_k_cosine(unit[queries], unit, k, exclude=queries)
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
                dims: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """[γ^1; …; γ^M] per product, each block centred with unit rows; a block a product lacks is zero.

    Returns the matrix and how many modalities each product has.
    """
    blocks, present = [], np.zeros(len(ids), dtype=np.int32)
    for family in order:
        if family in parts:
            rows, found = Embeddings(parts[family].ids, normalise(parts[family].vectors)).lookup(ids)
            present += found
        else:  # a frozen modality with no snapshot at this cutoff: its mean, zero
            rows = np.zeros((len(ids), dims[family]), dtype=np.float32)
        blocks.append(rows)
    return np.hstack(blocks), present
