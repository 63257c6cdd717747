"""Exact k-nearest neighbours by cosine, in blocks, for the gate's neighbourhood checks.

A small exact top-k kept inside the validation stage (which may not import
consumers): the gate only asks for the 10 nearest neighbours of a seeded
sample of at most a few thousand products, so an exact blocked search costs
O(queries x rows x dim) with memory bounded by the block size. When the
project's shared top-k/ANN module lands, `top_k_cosine` is the one function
to point at it.
"""

from __future__ import annotations

import numpy as np

# Scores held at once: about 64 MiB of float32 whatever the catalogue size.
BLOCK_VALUES = 1 << 24


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero) as float32."""
    x = np.asarray(vectors, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def top_k_cosine(queries: np.ndarray, index: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(len(queries), k) positions into `index` of each query's k nearest rows by cosine, nearest first.

    `exclude[i]` is a row query i may not return (itself), or -1. Ties are
    broken by position so the answer is deterministic.
    """
    q, x = unit_rows(queries), unit_rows(index)
    k = min(k, len(x) - (0 if exclude is None else 1))
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), 0), dtype=np.int64)
    exclude = np.full(len(q), -1) if exclude is None else np.asarray(exclude)
    out = np.empty((len(q), k), dtype=np.int64)
    step = max(1, BLOCK_VALUES // max(len(x), 1))
    for lo in range(0, len(q), step):
        hi = min(lo + step, len(q))
        scores = q[lo:hi] @ x.T
        own = exclude[lo:hi]
        mask = own >= 0
        scores[np.flatnonzero(mask), own[mask]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
        out[lo:hi] = np.take_along_axis(part, order, axis=1)
    return out


def label_consistency(vectors: np.ndarray, labels: np.ndarray, k: int = 10, sample: int = 2000,
                      seed: int = 0) -> float:
    """Mean share of a seeded sample of rows' k nearest other rows (cosine) that carry the row's label.

    Rows whose label is missing (None/NaN) are neither queried nor counted as
    neighbours. NaN when fewer than k + 1 rows are labelled.
    """
    labels = np.asarray(labels, dtype=object)
    labelled = np.flatnonzero([label == label and label is not None for label in labels])
    if len(labelled) <= k:
        return float("nan")
    codes = np.unique(labels[labelled].astype(str), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(labelled), size=min(sample, len(labelled)), replace=False))
    top = top_k_cosine(vectors[labelled[queries]], vectors[labelled], k, exclude=queries)
    return float(np.mean(codes[top] == codes[queries][:, None]))
