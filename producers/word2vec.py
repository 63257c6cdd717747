"""Word2Vec plumbing shared by the clickstream skip-gram producers (prod2vec and kin).

One place builds and trains a gensim model reproducibly, warm-starts it from
the previous snapshot and pulls product vectors out, so that each producer
only says what its "sentences" are.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import ProducerConfig, TrainContext
from prodvec.producers.sequences import session_sequences


@dataclass(frozen=True)
class Word2VecConfig(ProducerConfig):
    epochs: int = 5
    # Context positions on each side of a word (gensim shrinks it at random per word).
    window: int = 5
    negative: int = 5
    # Shape of the negative-sampling distribution (count ** ns_exponent).
    ns_exponent: float = 0.75
    # Down-sampling threshold for frequent words: bestsellers and common side-info values.
    sample: float = 1e-3
    alpha: float = 0.05
    min_alpha: float = 1e-4
    # Learning-rate factor of products carried over from the previous snapshot
    # (gensim's lockf): below 1 they refine their old place instead of wandering
    # off, so a model trained on older snapshots keeps reading the new ones.
    warm_lock: float = 0.1


def stable_hash(text: str) -> int:
    """A hash that is the same in every process (the builtin `hash` of str is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def interest_sequences(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Sessions, plus each user's purchases and each user's carts in time order, as one flat array.

    A session says what was browsed together; the co-purchase and co-cart
    sequences tie together what one shopper committed to across sessions.
    Returns (items, offsets) in the format of `session_sequences`.
    """
    parts = [
        session_sequences(events),
        session_sequences(events, event_types=(C.PURCHASE,), by=C.USER_ID),
        session_sequences(events, event_types=(C.ADD_TO_CART,), by=C.USER_ID),
    ]
    items = np.concatenate([p[0] for p in parts])
    lengths = np.concatenate([np.diff(p[1]) for p in parts])
    return items, np.r_[0, np.cumsum(lengths)].astype(np.int64)


def fit_word2vec(corpus, cfg: Word2VecConfig, context: TrainContext, desc: str, window: int | None = None):
    """Train skip-gram with negative sampling on `corpus` (a re-iterable of token lists); returns its KeyedVectors.

    Deterministic: one worker thread, `seed` for the initial vectors, the
    sampling and the negatives, and a process-independent `hashfxn`. Tokens
    that are product ids known to `context.previous` start from their previous
    vectors (set after `build_vocab`, before `train`) and learn at `warm_lock`
    times the rate, so successive cutoffs refine one space instead of drawing
    a new one.
    """
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    model = Word2Vec(vector_size=cfg.dim, window=window or cfg.window, min_count=1, sg=1, hs=0, negative=cfg.negative,
                     ns_exponent=cfg.ns_exponent, sample=cfg.sample, alpha=cfg.alpha, min_alpha=cfg.min_alpha,
                     seed=cfg.seed, workers=1, hashfxn=stable_hash, epochs=cfg.epochs)
    model.build_vocab(corpus)
    previous = context.previous
    if previous is not None and previous.dim == cfg.dim:
        rows, found = previous.lookup(np.asarray(model.wv.index_to_key, dtype=object))
        model.wv.vectors[found] = rows[found]
        model.wv.vectors_lockf = np.where(found, cfg.warm_lock, 1.0).astype(np.float32)

    bar = tqdm(total=cfg.epochs, desc=desc, disable=not context.progress, leave=False)

    class EpochTick(CallbackAny2Vec):
        def on_epoch_end(self, _model):
            bar.update()

    try:
        model.train(corpus, total_examples=model.corpus_count, epochs=cfg.epochs, callbacks=[EpochTick()])
    finally:
        bar.close()
    return model.wv


def product_rows(wv, product_ids) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the catalogue products that are words of the model."""
    product_ids = np.asarray(product_ids).astype(str)
    index = np.fromiter((wv.key_to_index.get(p, -1) for p in product_ids), dtype=np.int64, count=len(product_ids))
    known = index >= 0
    return product_ids[known], wv.vectors[index[known]]


def centred_embeddings(ids: np.ndarray, vectors: np.ndarray) -> Embeddings:
    """Remove the offset all skip-gram vectors share (it makes every cosine look alike), drop null rows."""
    vectors = vectors.astype(np.float64)
    vectors -= vectors.mean(axis=0, keepdims=True)
    keep = np.linalg.norm(vectors, axis=1) > 1e-8
    return Embeddings(np.asarray(ids)[keep], vectors[keep].astype(np.float32))
