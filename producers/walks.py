"""The item-item co-occurrence graph and weighted random walks over it (DeepWalk, Perozzi et al. 2014).

Sessions are short and sparse; a walk over the platform-level graph joins
products that never shared a session but share neighbours, and gives rarely
seen products as many contexts as popular ones (every node starts walks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from prodvec.producers.word2vec import Word2VecConfig


@dataclass(frozen=True)
class WalkConfig(Word2VecConfig):
    # Walks are longer and more numerous than sessions, so fewer passes suffice.
    epochs: int = 2
    walks_per_node: int = 10
    walk_length: int = 20
    # Products up to this many steps apart in a sequence are joined by an edge.
    graph_window: int = 2


def cooccurrence_graph(items: np.ndarray, offsets: np.ndarray, window: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Symmetric CSR adjacency (weight = times two products were within `window` steps of each
    other in a sequence) over the sequences' products, and the product id of each node."""
    codes, nodes = pd.factorize(items, sort=True)
    sequence = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    src, dst = [], []
    for d in range(1, window + 1):
        same = sequence[d:] == sequence[:-d]
        a, b = codes[:-d][same], codes[d:][same]
        loop = a == b  # a product seen twice in one session is no edge to itself
        src += [a[~loop], b[~loop]]
        dst += [b[~loop], a[~loop]]
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=(len(nodes), len(nodes)))
    graph.sum_duplicates()  # duplicate (src, dst) pairs add up to the co-occurrence count
    return graph, np.asarray(nodes, dtype=str)


def random_walks(graph: sparse.csr_matrix, walks_per_node: int, walk_length: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(walks, walk_length) node indices: `walks_per_node` rounds, each starting once from every node
    with an edge (in random order); each step picks a neighbour with probability ∝ edge weight.

    All walks advance together: a step is one `searchsorted` of uniform draws,
    scaled to each current node's total weight, into the cumulative weights of
    the CSR rows, so the cost is O(walks · length · log edges) in numpy.
    """
    indptr, indices = graph.indptr, graph.indices
    cumulative = np.cumsum(graph.data, dtype=np.float64)
    before = np.r_[0.0, cumulative]
    row_start, row_total = before[indptr[:-1]], before[indptr[1:]] - before[indptr[:-1]]
    starts = np.flatnonzero(np.diff(indptr) > 0)
    walks = np.empty((walks_per_node * len(starts), walk_length), dtype=np.int64)
    walks[:, 0] = rng.permuted(np.tile(starts, (walks_per_node, 1)), axis=1).ravel()
    for step in range(1, walk_length):
        here = walks[:, step - 1]
        target = row_start[here] + rng.random(len(here)) * row_total[here]
        edge = np.searchsorted(cumulative, target, side="right")
        # Rounding may land a hair outside the row; the row's own edges are the only valid picks.
        edge = np.clip(edge, indptr[here], indptr[here + 1] - 1)
        walks[:, step] = indices[edge]
    return walks


def walk_sequences(items: np.ndarray, offsets: np.ndarray, cfg: WalkConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random walks over the co-occurrence graph of the sequences, as (items, offsets) like the sequences."""
    graph, nodes = cooccurrence_graph(items, offsets, cfg.graph_window)
    walks = random_walks(graph, cfg.walks_per_node, cfg.walk_length, rng)
    return nodes[walks].ravel(), np.arange(0, walks.size + 1, cfg.walk_length, dtype=np.int64)
