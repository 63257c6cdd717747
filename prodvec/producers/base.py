"""The producer interface: one small base class every embedding method implements.

A producer turns a shop, as it was known at a cutoff, into an embedding table.
It does not write files, validate or register anything: the framework
(`prodvec.producers.run`) does that the same way for every producer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np
import pandas as pd

from prodvec import columns as C
from prodvec.shop.model import EVENTS, IMAGES

if TYPE_CHECKING:
    from prodvec.shop.model import Shop
    from prodvec.snapshots import SnapshotStore


class InsufficientData(ValueError):
    """The shop has the producer's inputs, but not enough of them before this cutoff."""


@dataclass(frozen=True)
class ProducerConfig:
    """Hyper-parameters shared by all producers; subclasses add their own fields."""

    seed: int = 0
    dim: int = 64
    # "auto" picks CUDA when torch sees a GPU, so nothing else changes on one.
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainContext:
    """What a producer may know besides the shop: the cutoff, the previous snapshot, the store."""

    cutoff: pd.Timestamp
    store: SnapshotStore | None = None
    # The newest earlier snapshot of this version. Producers start from it
    # (warm start) so that retrains stay in one space a downstream model can
    # keep reading; the framework then rotates the result onto it.
    previous: Embeddings | None = None

    def previous_rows(self, ids, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Previous vectors for `ids` and which were known, or None without a previous
        snapshot of this dimension (the one check every warm start needs)."""
        if self.previous is None or self.previous.dim != dim:
            return None
        return self.previous.lookup(ids)
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda msg: None)


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


class Producer(ABC):
    """Base of every embedding method.

    Subclasses set `name` (the family), `requires` (inputs from
    `prodvec.shop.model.INPUTS`), `Config`, and implement `train`. Bump
    `version` when the method changes incompatibly: the new version gets its
    own Feast feature view instead of overwriting the old one.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    requires: ClassVar[frozenset[str]] = frozenset()
    Config: ClassVar[type[ProducerConfig]] = ProducerConfig
    description: ClassVar[str] = ""
    # Share of the catalogue the validation gate demands: a clickstream
    # family only knows clicked products, a fusion must cover them all.
    min_coverage: ClassVar[float] = 0.0

    def __init__(self, config: ProducerConfig | None = None):
        self.config = config if config is not None else self.Config()

    def schema(self) -> dict:
        """What makes two snapshots comparable: same method version and dimension."""
        return {"producer": self.name, "producer_version": self.version, "dim": self.config.dim}

    def output_dim(self, card: dict) -> int:
        """The dimension a snapshot of this producer must have (the gate checks it), given its model card."""
        return self.config.dim

    def coverable(self, shop: Shop) -> np.ndarray:
        """Which of `shop`'s products this family can embed at all (bool per product row).

        The gate's `min_coverage` is a share of these: a photo family cannot
        embed a product without a photo, nor a click family one nobody clicked,
        so on a shop where few products have them the bar drops with them
        instead of failing every snapshot.
        """
        ok = np.ones(len(shop.products), dtype=bool)
        if IMAGES in self.requires and C.IMAGE_PATH in shop.products:
            ok &= shop.products[C.IMAGE_PATH].notna().to_numpy()
        if EVENTS in self.requires and shop.events is not None:
            ok &= shop.products[C.PRODUCT_ID].isin(shop.events[C.PRODUCT_ID]).to_numpy()
        return ok

    @abstractmethod
    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        """Fit on `shop` (already cut at `context.cutoff`) and embed its products."""


def torch_device(name: str):
    """The torch device for a config's `device` ("auto" = CUDA when available)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_torch(seed: int) -> np.random.Generator:
    """Seed torch for a reproducible run and return a numpy generator with the same seed.

    Deterministic algorithms matter even on a CPU: the backward pass of an
    embedding lookup accumulates gradients across threads in varying order.
    """
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
