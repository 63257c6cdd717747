"""The table every stage passes around: one float32 vector per product id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


class InsufficientData(ValueError):
    """The shop has the producer's inputs, but not enough of them before this cutoff."""


@dataclass(frozen=True)
class Embeddings:
    """A trained table: one float32 row per product id."""

    ids: np.ndarray
    vectors: np.ndarray

    def __post_init__(self):
        ids = np.asarray(self.ids).astype(str)
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(ids) != len(vectors):
            raise ValueError(f"embeddings: {len(ids)} ids but vectors of shape {vectors.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("embeddings: product ids are not unique")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "vectors", vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Rows for `ids` and a mask of which ids were found (missing rows are zero)."""
        index = pd.Index(self.ids)
        pos = index.get_indexer(np.asarray(ids).astype(str))
        found = pos >= 0
        out = np.zeros((len(pos), self.dim), dtype=np.float32)
        out[found] = self.vectors[pos[found]]
        return out, found
