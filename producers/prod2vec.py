"""prod2vec: skip-gram with negative sampling over sequences of products (Grbovic et al. 2015).

The "sentences" are the clickstream's sequences: every session's clicks,
carts and purchases, plus each user's purchases and each user's carts in time
order (co-purchase, co-cart). Products that share contexts get close vectors;
a product's input vector is its embedding. Only products that occur in a
sequence of two or more get one.
"""

from __future__ import annotations

import numpy as np

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, TrainContext
from prodvec.producers.sequences import as_lists
from prodvec.producers.word2vec import (
    Word2VecConfig,
    centred_embeddings,
    fit_word2vec,
    interest_sequences,
    product_rows,
)
from prodvec.core.shop.model import EVENTS, Shop


class Prod2Vec(Producer):
    name = "prod2vec"
    relative_cost = 14
    smoke_settings = {"dim": 16}
    requires = frozenset({EVENTS})
    Config = Word2VecConfig
    description = "Word2Vec skip-gram on sessions, co-purchase and co-cart sequences (Prod2Vec)"
    min_coverage = 0.2
    # Corpus tokens per sequence item; the window scales with it to span `window` products.
    tokens_per_item = 1

    def sequences(self, shop: Shop, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The product sequences to learn from, as (items, offsets); the DeepWalk variants walk a graph instead."""
        return interest_sequences(shop.events)

    def corpus(self, shop: Shop, items: np.ndarray, offsets: np.ndarray, seed: int):
        return as_lists(items, offsets)

    def embed(self, shop: Shop, wv) -> Embeddings:
        return centred_embeddings(*product_rows(wv, shop.products[C.PRODUCT_ID]))

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        items, offsets = self.sequences(shop, rng)
        if len(items) == 0:
            raise InsufficientData("no session with two or more clicked, carted or bought products before the cutoff")
        corpus = self.corpus(shop, items, offsets, cfg.seed)
        wv = fit_word2vec(corpus, cfg, context, self.name, window=cfg.window * self.tokens_per_item)
        return self.embed(shop, wv)
