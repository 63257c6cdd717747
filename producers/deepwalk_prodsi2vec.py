"""deepwalk_prodsi2vec: prodsi2vec trained on weighted random walks over the item-item graph.

The walks of `deepwalk_prod2vec` take the place of the sessions; each walk is
interleaved with side information exactly as prodsi2vec does with a session
(see `prodvec.producers.prodsi2vec`), and never-walked products with side
info are embedded as the mean of their side-info vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodvec.producers.prodsi2vec import ProdSi2Vec, ProdSi2VecConfig
from prodvec.producers.walks import WalkConfig, walk_sequences
from prodvec.producers.word2vec import interest_sequences
from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class WalkSi2VecConfig(WalkConfig, ProdSi2VecConfig):
    # Interleaving quadruples the cost of a walk; half the walks keep the time of deepwalk_prod2vec.
    walks_per_node: int = 5


class DeepWalkProdSi2Vec(ProdSi2Vec):
    name = "deepwalk_prodsi2vec"
    relative_cost = 43
    smoke_settings = {"dim": 16}
    Config = WalkSi2VecConfig
    description = ("Word2Vec skip-gram on random walks over the session co-occurrence graph, interleaved with "
                   "side information (DeepWalk + Meta-Prod2Vec); never-clicked products get side-info means")

    def sequences(self, shop: Shop, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return walk_sequences(*interest_sequences(shop.events), self.config, rng)
