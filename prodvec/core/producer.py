"""The producer interface: one small base class every embedding method implements.

A producer turns a shop, as it was known at a cutoff, into an embedding table.
It does not write files, validate or register anything: the framework
(`prodvec.core.training`) does that the same way for every producer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.shop.model import EVENTS, IMAGES

if TYPE_CHECKING:
    from prodvec.core.shop.model import Shop
    from prodvec.core.snapshots import SnapshotStore


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
    # The arrays the producer stored beside that snapshot (`Producer.artifacts_`),
    # e.g. network weights to continue training from; empty without a previous snapshot.
    previous_artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    progress: bool = True
    log: Callable[[str], None] = field(default=lambda msg: None)

    def previous_rows(self, ids, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Previous vectors for `ids` and which were known, or None without a previous
        snapshot of this dimension (the one check every warm start needs)."""
        if self.previous is None or self.previous.dim != dim:
            return None
        return self.previous.lookup(ids)


class Producer(ABC):
    """Base of every embedding method.

    Subclasses set `name` (the family), `requires` (inputs from
    `prodvec.core.shop.model.INPUTS`), `Config`, and implement `train`. Bump
    `version` when the method changes incompatibly: the new version gets its
    own Feast feature view instead of overwriting the old one.

    Every other hook is declared here with a default, so the framework, the
    evaluation and the tests read them without knowing which producer is which:
    `is_fusion`, `smoke_settings`, and after `train` the learned state
    `card_extras_`, `artifacts_`, and for sequence models `product_ids_` with
    `next_item_scores_batch`.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    requires: ClassVar[frozenset[str]] = frozenset()
    Config: ClassVar[type[ProducerConfig]] = ProducerConfig
    description: ClassVar[str] = ""
    # Share of the catalogue the validation gate demands: a clickstream
    # family only knows clicked products, a fusion must cover them all.
    min_coverage: ClassVar[float] = 0.0
    # A fusion reads other families' snapshots (context.store) instead of the
    # shop's raw data: it trains after them and is never fused into another fusion.
    is_fusion: ClassVar[bool] = False
    # Whether the framework rotates each snapshot onto the previous one (core/training.align). A producer whose
    # coordinates mean something one by one (a frozen basis whose axes carry different scales) opts out: a
    # rotation would mix them.
    aligns: ClassVar[bool] = True
    # How long the family trains relative to the others (CPU seconds of its six snapshots in `make demo-full`
    # on 2026-12-01). Only the order of work reads it: families trained side by side start longest first,
    # so that none is left running alone at the end (`prodvec.family_pool`); any order gives the same snapshots.
    relative_cost: ClassVar[float] = 10.0
    # Settings that train in seconds on a tiny shop: the contract test runs
    # every registered producer with them, so a new producer needs no test table.
    smoke_settings: ClassVar[dict] = {}

    def __init__(self, config: ProducerConfig | None = None):
        self.config = config if config is not None else self.Config()
        # Learned state, set by `train` (scikit-learn's trailing underscore).
        # Written into the model card beside the framework's own fields.
        self.card_extras_: dict = {}
        # Arrays a later snapshot of this version needs (a frozen projection),
        # stored beside the snapshot as artifacts.npz.
        self.artifacts_: dict[str, np.ndarray] = {}
        # Sequence models: the products `next_item_scores_batch` scores, in column order.
        self.product_ids_: np.ndarray | None = None

    @property
    def scores_next_items(self) -> bool:
        """Whether this producer is a sequence model that scores the next item itself."""
        return type(self).next_item_scores_batch is not Producer.next_item_scores_batch

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

    def next_item_scores_batch(self, prefixes) -> np.ndarray:
        """Sequence models: scores (len(prefixes), len(product_ids_)) of every product as the
        next item after each prefix of product ids (oldest first). Others have none: a
        next-click evaluation then scores by cosine to the last item instead."""
        raise NotImplementedError(f"{self.name} is not a sequence model")
