"""How far a retrain moved from the snapshot it replaces, up to a rotation.

A retrained embedding is only defined up to an orthogonal rotation, so a
naive distance between old and new coordinates measures nothing. Three
rotation-aware measures over the products both snapshots share:

- displacement: after orthogonal Procrustes alignment (the same fit the
  training loop applies), mean distance a product moved, in units of the
  reference's spread (mean distance of its rows from their centroid). A
  rotated copy scores 0; two unrelated embeddings about sqrt(2).
- knn_overlap: mean Jaccard overlap of each product's 10 nearest neighbours
  (cosine) in the old and in the new snapshot. Needs no alignment at all;
  1 for any rotation or rescaling, near 0 when neighbourhoods are reshuffled.
- classifier_auc: a classifier two-sample test (as Evidently does for
  embeddings): a linear classifier (LDA: closed form, no iterations) tries to tell aligned new vectors from
  old ones; cross-validated ROC-AUC about 0.5 when they come from one
  distribution, towards 1 when the space shifted. It sees distribution
  shifts the other two can miss (a global drift that keeps neighbours), and
  misses a pure permutation of rows, which knn_overlap sees.

Large catalogues are sampled (seeded): neighbours are searched among at most
`max_rows` shared products for at most `queries` of them.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes

from prodvec.validation.neighbours import top_k_cosine

# Shared products the neighbourhood and classifier measures look at (seeded sample).
MAX_ROWS = 20_000
QUERIES = 1_000
CLASSIFIER_ROWS = 4_000


def procrustes_displacement(new: np.ndarray, reference: np.ndarray) -> float:
    """Mean ||new_i R - ref_i|| / mean ||ref_i - mean(ref)|| after the best rotation R (0 = a rotated copy)."""
    a, b = np.asarray(new, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(a) < 2 or a.shape[1] != b.shape[1]:
        return float("nan")
    rotation, _ = orthogonal_procrustes(a, b)
    moved = np.linalg.norm(a @ rotation - b, axis=1).mean()
    spread = np.linalg.norm(b - b.mean(axis=0), axis=1).mean()
    return float(moved / spread) if spread > 0 else float("nan")


def knn_overlap(new: np.ndarray, reference: np.ndarray, k: int = 10, queries: int = QUERIES,
                max_rows: int = MAX_ROWS, seed: int = 0) -> float:
    """Mean Jaccard overlap of the k nearest neighbours (cosine) of shared rows in both spaces."""
    n = len(new)
    if n <= k:
        return float("nan")
    rng = np.random.default_rng(seed)
    pool = np.sort(rng.choice(n, size=min(max_rows, n), replace=False))
    asked = np.sort(rng.choice(len(pool), size=min(queries, len(pool)), replace=False))
    a = top_k_cosine(new[pool[asked]], new[pool], k, exclude=asked)
    b = top_k_cosine(reference[pool[asked]], reference[pool], k, exclude=asked)
    # |A ∩ B| per row by sorting both lists together: a shared id appears twice in a row.
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return float(np.mean(shared / (a.shape[1] + b.shape[1] - shared)))


def classifier_auc(new: np.ndarray, reference: np.ndarray, rows: int = CLASSIFIER_ROWS, seed: int = 0) -> float:
    """Cross-validated ROC-AUC of a linear classifier telling Procrustes-aligned new rows from old ones.

    Linear discriminant analysis rather than an iterative logistic
    regression: on two nearly inseparable clouds (the healthy case) L-BFGS
    runs to its iteration limit, while LDA is one closed-form fit per fold.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    a, b = np.asarray(new, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if len(a) < 20 or a.shape[1] != b.shape[1]:
        return float("nan")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(a), size=min(rows // 2, len(a)), replace=False))
    rotation, _ = orthogonal_procrustes(a[pick], b[pick])
    x = np.concatenate([a[pick] @ rotation, b[pick]])
    y = np.r_[np.ones(len(pick)), np.zeros(len(pick))]
    # A product's old and new vector sit in the same fold: the test asks whether
    # the two snapshots differ, not whether one product's two vectors do.
    groups = np.r_[pick, pick]
    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    scores = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(n_splits=4), method="decision_function")
    return float(roc_auc_score(y, scores))


def drift(new: np.ndarray, reference: np.ndarray, *, k: int = 10, queries: int = QUERIES,
          max_rows: int = MAX_ROWS, seed: int = 0) -> dict[str, float]:
    """All three measures over paired rows (row i of both is the same product)."""
    new, reference = np.asarray(new), np.asarray(reference)
    return {
        "shared": int(len(new)),
        "displacement": procrustes_displacement(new, reference),
        "knn_overlap": knn_overlap(new, reference, k, queries, max_rows, seed),
        "classifier_auc": classifier_auc(new, reference, seed=seed),
    }
