"""deepwalk_prod2vec: prod2vec trained on weighted random walks over the item-item graph.

The graph joins products that co-occur within `graph_window` steps in a
session (or in a user's purchases or carts); an edge weighs how often they
did. Walks over it (see `prodvec.producers.walks`) replace the sessions as
the skip-gram's sentences, so products are placed by their graph
neighbourhood, not only by the sessions they were seen in.
"""

from __future__ import annotations

import numpy as np

from prodvec.producers.prod2vec import Prod2Vec
from prodvec.producers.walks import WalkConfig, walk_sequences
from prodvec.producers.word2vec import interest_sequences
from prodvec.core.shop.model import Shop


class DeepWalkProd2Vec(Prod2Vec):
    name = "deepwalk_prod2vec"
    relative_cost = 34
    smoke_settings = {"dim": 16}
    Config = WalkConfig
    description = "Word2Vec skip-gram on weighted random walks over the session co-occurrence graph (DeepWalk)"

    def sequences(self, shop: Shop, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return walk_sequences(*interest_sequences(shop.events), self.config, rng)
