"""prodsi2vec: prod2vec with side information, in the manner of Meta-Prod2Vec (Vasile et al. 2016).

Side information is every value of the product's category and of every
side-info column of the shop, as tokens such as `brand=acme`; they get
vectors of their own. Meta-Prod2Vec adds to the product-product loss pairs of
a product with side information; gensim only knows sentences, so the corpus
realises those pairs with two kinds of sentence, redrawn at every pass:

1. Interleaved sequences. A sequence p1 p2 p3 becomes p1 m1 p2 m2 p3 m3,
   where m_i is ONE side-info token of p_i drawn at random (a different one
   at every epoch), and the window doubles to 2·window so it still spans
   `window` products. Skip-gram over it yields, for a centre p_i:
   (p_i, p_j) product-product pairs; (p_i, m_i) the product with its own side
   info; (p_i, m_j) the product with side info of its context, and, from the
   other end, (m_i, p_j) side info of the centre with context products; and
   (m_i, m_j) side info with side info of co-occurring products.
2. Catalogue sentences. For every catalogue product with two or more
   side-info values, the values in random order (all within one window):
   (m, m') pairs of values one product carries, e.g. `category=jeans` with
   `fabric=denim`. These include products nobody clicked.

Frequent values (a gender, a price band) would swamp the pairs; word2vec's
down-sampling of frequent words (`sample`) thins them, as it does bestsellers.

Cold start (`cold_start`): a catalogue product that never occurs in a
sequence but has side info is embedded as the mean of its side-info token
vectors, carried into the product space by a ridge-regularised linear map
fitted on the products that do occur (their side-info mean -> their vector).
So this family covers new products that prod2vec cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.producers.prod2vec import Prod2Vec
from prodvec.producers.word2vec import Word2VecConfig, centred_embeddings, product_rows
from prodvec.core.shop.model import Shop


@dataclass(frozen=True)
class ProdSi2VecConfig(Word2VecConfig):
    # Each pass holds twice the tokens, in twice the window, of prod2vec's.
    epochs: int = 3
    # Embed never-clicked products as the mean of their side-info vectors.
    cold_start: bool = True
    # Ridge penalty of the map from side-info means into the product space, relative to their variance.
    cold_ridge: float = 0.03


def side_info_tokens(shop: Shop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product ids, tokens, counts): row i holds product i's `column=value` tokens packed
    to the left (None after them) and counts[i] how many it has."""
    products = shop.products
    columns = shop.label_columns
    tokens = np.full((len(products), max(len(columns), 1)), None, dtype=object)
    for j, column in enumerate(columns):
        values = products[column]
        tokens[:, j] = np.where(values.notna(), column + "=" + values.astype(str), None)
    present = tokens != None
    # Stable sort of "missing" flags packs the present tokens to the left.
    order = np.argsort(~present, axis=1, kind="stable")
    tokens = np.take_along_axis(tokens, order, axis=1)
    return products[C.PRODUCT_ID].to_numpy().astype(str), tokens, present.sum(axis=1)


class SideInfoCorpus:
    """The interleaved and catalogue sentences of the module docstring.

    Re-iterable, as gensim needs (one pass for the vocabulary, one per epoch);
    pass k draws its side info with seed (seed, k), so a run is reproducible.
    """

    def __init__(self, items: np.ndarray, offsets: np.ndarray, product_ids: np.ndarray, tokens: np.ndarray,
                 counts: np.ndarray, seed: int):
        rows = pd.Index(product_ids).get_indexer(items)
        self.items = items.astype(object)
        self.lengths = np.diff(offsets)
        # A sequence item outside the catalogue (or without side info) simply gets no side token.
        self.counts = np.where(rows >= 0, counts[rows], 0)
        self.rows, self.tokens = np.maximum(rows, 0), tokens
        self.catalogue = tokens[counts >= 2]
        self.catalogue_counts = counts[counts >= 2]
        self.seed = seed
        self.passes = 0

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.passes])
        self.passes += 1
        # 1. p1 m1 p2 m2 ...: one random side-info token after each product.
        pick = np.floor(rng.random(len(self.items)) * self.counts).astype(np.int64)
        side = self.tokens[self.rows, np.minimum(pick, self.tokens.shape[1] - 1)]
        flat = np.column_stack([self.items, side]).ravel()
        keep = np.column_stack([np.ones(len(self.items), bool), self.counts > 0]).ravel()
        flat = flat[keep]
        sentence = np.repeat(np.arange(len(self.lengths)), self.lengths)
        lengths = 2 * self.lengths - np.bincount(sentence, weights=self.counts == 0,
                                                 minlength=len(self.lengths)).astype(np.int64)
        ends = np.cumsum(lengths)
        for start, end in zip(ends - lengths, ends):
            yield flat[start:end].tolist()
        # 2. Each product's own side-info values, shuffled.
        order = np.argsort(rng.random(self.catalogue.shape) + (np.arange(self.catalogue.shape[1])
                                                               >= self.catalogue_counts[:, None]), axis=1)
        shuffled = np.take_along_axis(self.catalogue, order, axis=1)
        for row, count in zip(shuffled, self.catalogue_counts):
            yield row[:count].tolist()


class ProdSi2Vec(Prod2Vec):
    name = "prodsi2vec"
    relative_cost = 23
    smoke_settings = {"dim": 16}
    Config = ProdSi2VecConfig
    description = ("Word2Vec skip-gram on sessions interleaved with side information (Meta-Prod2Vec style); "
                   "never-clicked products are placed by their side-info vectors")
    min_coverage = 0.2

    # Interleaved sentences hold a side-info token after each product.
    tokens_per_item = 2

    def corpus(self, shop: Shop, items: np.ndarray, offsets: np.ndarray, seed: int):
        return SideInfoCorpus(items, offsets, *side_info_tokens(shop), seed=seed)

    def embed(self, shop: Shop, wv) -> Embeddings:
        ids, vectors = product_rows(wv, shop.products[C.PRODUCT_ID])
        if self.config.cold_start:
            mean_ids, means = side_info_means(wv, shop)
            row = pd.Index(mean_ids).get_indexer(ids)
            cold = ~np.isin(mean_ids, ids)
            mapped = side_info_map(means[row[row >= 0]], vectors[row >= 0], self.config.cold_ridge)(means[cold])
            ids, vectors = np.r_[ids, mean_ids[cold]], np.vstack([vectors, mapped])
        return centred_embeddings(ids, vectors)


def side_info_means(wv, shop: Shop) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mean side-info token vector) of the catalogue products with any token the model knows."""
    product_ids, tokens, _ = side_info_tokens(shop)
    index = pd.Index(wv.index_to_key).get_indexer(tokens.ravel()).reshape(tokens.shape)
    known = index >= 0
    sums = (wv.vectors[np.maximum(index, 0)] * known[..., None]).sum(axis=1)
    counts = known.sum(axis=1)
    has = counts > 0
    return product_ids[has], sums[has] / counts[has, None]


def side_info_map(means: np.ndarray, vectors: np.ndarray, ridge: float):
    """Ridge least-squares map from side-info means to product vectors, fitted on the warm products.

    Raw side-info means sit apart from the product vectors (they are trained
    in another role of the skip-gram), so cold products would mostly be each
    other's neighbours; mapped, they land among the warm products they resemble.
    `ridge` is relative to the mean variance of the means.
    """
    if len(means) < 2:
        return lambda x: x
    x_mean, y_mean = means.mean(axis=0), vectors.mean(axis=0)
    x = means - x_mean
    gram = x.T @ x
    penalty = ridge * np.trace(gram) / len(gram) + 1e-9
    weights = np.linalg.solve(gram + penalty * np.eye(len(gram)), x.T @ (vectors - y_mean))
    return lambda new: (new - x_mean) @ weights + y_mean
