"""The gate's neighbourhood checks, on the project's one neighbour search.

The gate asks for the 10 nearest neighbours of a seeded sample of at most a
few thousand products: the exact (flat) index of `prodvec.core.neighbours`,
the same search `prodvec similar` and the evaluation use.
"""

from __future__ import annotations

import numpy as np

from prodvec.core import neighbours


def top_k_cosine(queries: np.ndarray, index: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """(len(queries), k) positions into `index` of each query's k nearest rows by cosine, nearest first.

    `exclude[i]` is a row query i may not return (itself), or -1. Always exact:
    a drift verdict must not depend on an approximate index.
    """
    k = min(k, len(index) - (0 if exclude is None else 1))
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), dtype=np.int64)
    return neighbours.top_k_cosine(queries, index, k, exclude=exclude, kind="flat")


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
