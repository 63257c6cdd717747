"""Intrinsic quality: the geometry of each family's newest served snapshot, no downstream model.

Read through Feast as of the end of the shop (`ctx.catalog_at(ctx.shop.end)`),
so every family is measured on the snapshot a service would get now:

- isotropy (sigma_min / sigma_max of the centred matrix) and the mean cosine
  of 10k seeded random pairs, the validation gate's own functions;
- neighbourhood consistency: share of each product's 10 nearest neighbours
  (cosine) in its own leaf category; the issue's target is above 60%;
- coverage: share of the catalogue with a vector;
- agreement with the generator's true style vectors (linear CKA, see
  `linear_cka`), where `<shop>_truth/products_truth.parquet` lies beside
  the shop; skipped, with a note, for any other shop;
- the normalised singular-value spectrum per family, in `extra["spectrum"]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.consumers.evaluation import RANDOM, EvalContext, TaskResult
from prodvec.core.neighbours import top_k_cosine
from prodvec.core.shop.truth import PRODUCTS_TRUTH_FILE, TRUTH_SUFFIX, truth_dir
from prodvec.validation.metrics import COSINE_PAIRS, SVD_ROWS, isotropy, mean_pairwise_cosine, singular_values

STYLE = "style"


@dataclass(frozen=True)
class IntrinsicConfig:
    neighbours: int = 10
    # The bar for neighbourhood consistency.
    consistency_target: float = 0.6
    # Products whose neighbourhoods are checked (seeded sample), against the whole snapshot.
    max_queries: int = 5000
    cosine_pairs: int = COSINE_PAIRS
    svd_rows: int = SVD_ROWS
    seed: int = 0


# -- metric cores: plain arrays, no Feast ---------------------------------------------------------------


def neighbourhood_consistency(vectors: np.ndarray, labels: np.ndarray, k: int = 10,
                              queries: np.ndarray | None = None) -> float:
    """Mean share of each query row's k nearest other rows (cosine) with the query's label.

    `queries` are row positions to check (all rows when None); neighbours
    come from all rows. Rows with a negative label are neither checked nor
    counted as a match.
    """
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0) if queries is None else np.asarray(queries)
    rows = rows[labels[rows] >= 0]
    if len(rows) == 0 or len(vectors) < 2:
        return float("nan")
    top = top_k_cosine(vectors[rows], vectors, k, exclude=rows)
    valid = top >= 0
    same = (labels[np.maximum(top, 0)] == labels[rows][:, None]) & valid
    return float(np.mean(same.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations of the same rows (Kornblith et al., 2019).

    ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred X, Y:
    1 when one is a rotation (and uniform scaling) of the other, near 0 for
    unrelated ones. Chosen over a rank correlation of pairwise cosines because
    it needs no pair sampling (exact and deterministic on every product, in
    O(n d^2)), compares spaces of different dimension (8-d style, 64-d
    embedding) directly, and has exactly the invariances a product
    embedding has: orthogonal rotations (each retrain is Procrustes-aligned)
    and scale, not arbitrary linear maps, so a space that squashes the style
    directions into a few dominant ones scores lower, as it retrieves worse.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"linear_cka: {len(x)} and {len(y)} rows; both must describe the same rows")
    if len(x) < 2:
        return float("nan")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(x.T @ y) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else float("nan")


def normalised_spectrum(vectors: np.ndarray, max_rows: int = SVD_ROWS, seed: int = 0) -> np.ndarray:
    """sigma_i / sigma_max of the centred matrix, largest first (the gate's isotropy is the last one)."""
    sigma = singular_values(vectors, max_rows=max_rows, seed=seed)
    return sigma / sigma[0] if len(sigma) and sigma[0] > 0 else sigma


# -- the task ---------------------------------------------------------------------------------------------


def truth_styles(shop_root: Path) -> pd.DataFrame | None:
    """product_id -> true style vector (a (products, style_dim) frame), or None without a truth directory."""
    path = truth_dir(shop_root) / PRODUCTS_TRUTH_FILE
    if not path.exists():
        return None
    table = pd.read_parquet(path, columns=[C.PRODUCT_ID, STYLE])
    return pd.DataFrame(np.stack(table[STYLE].to_numpy()), index=table[C.PRODUCT_ID].astype(str).to_numpy())


def evaluate_intrinsic(ctx: EvalContext, config: IntrinsicConfig = IntrinsicConfig()) -> TaskResult:
    shop = ctx.shop
    catalog = ctx.catalog_at(shop.end)
    ids = catalog[C.PRODUCT_ID].to_numpy()
    lookups = ctx.embeddings(catalog)
    has_category = C.CATEGORY in shop.products
    if has_category:
        category = shop.products.set_index(shop.products[C.PRODUCT_ID].astype(str))[C.CATEGORY]
        labels_all = pd.Series(pd.factorize(category.reindex(ids))[0], index=ids)
    truth = truth_styles(shop.root)
    # One seeded sample of products whose neighbourhoods every family is checked on (those it has vectors for).
    rng = np.random.default_rng([config.seed, 13])
    checked = ids if len(ids) <= config.max_queries else rng.choice(ids, config.max_queries, replace=False)

    rows, spectra = [], {}
    families = [*ctx.families, RANDOM]
    for family in families:
        lookup = lookups[family]
        vectors = lookup.matrix[lookup.found]
        kept = ids[lookup.found]
        row = {
            "coverage": float(lookup.found.mean()) if len(ids) else np.nan,
            "isotropy": isotropy(vectors, max_rows=config.svd_rows, seed=config.seed),
            "mean_cos": mean_pairwise_cosine(vectors, config.cosine_pairs, config.seed),
        }
        if has_category:
            queries = np.flatnonzero(pd.Index(kept).isin(checked))
            row[f"consistency@{config.neighbours}"] = neighbourhood_consistency(
                vectors, labels_all.reindex(kept).to_numpy(), config.neighbours, queries)
        if truth is not None:
            both = pd.Index(kept).isin(truth.index)
            # linear_cka is NaN under two rows; normalize refuses zero rows, so it is not asked to.
            row["style_cka"] = (linear_cka(normalize(vectors[both]), truth.loc[kept[both]].to_numpy())
                                if both.sum() >= 2 else np.nan)
        rows.append(row)
        spectra[family] = normalised_spectrum(vectors, config.svd_rows, config.seed)

    table = pd.DataFrame(rows, index=pd.Index(families, name="family"))
    width = max((len(s) for s in spectra.values()), default=0)
    spectrum = pd.DataFrame([np.pad(s, (0, width - len(s)), constant_values=np.nan) for s in spectra.values()],
                            index=pd.Index(spectra, name="family"),
                            columns=pd.RangeIndex(1, width + 1, name="component"))

    notes = [(f"Newest served snapshot of each family as of {shop.end} ({len(ids)} catalogue products; one listed "
              "after a family's last cutoff counts as uncovered); isotropy on at most "
              f"{config.svd_rows} rows, mean_cos on {config.cosine_pairs} seeded random pairs.")]
    headline = "isotropy"
    if has_category:
        headline = f"consistency@{config.neighbours}"
        meets = [f for f in ctx.families if table.loc[f, headline] > config.consistency_target]
        shares = labels_all.value_counts(normalize=True)
        notes.append(
            f"{headline}: share of the {config.neighbours} nearest neighbours (cosine) in the product's own leaf "
            f"category, over at most {config.max_queries} seeded products; chance (same category at random) is "
            f"{float((shares ** 2).sum()):.3f}. Target above {config.consistency_target:.0%}: "
            + (f"met by {', '.join(meets)}." if meets else "met by no family.")
            + (f" Not met by {', '.join(f for f in ctx.families if f not in meets)}."
               if meets and len(meets) < len(ctx.families) else ""))
    else:
        notes.append("Neighbourhood consistency skipped: the shop has no category column.")
    if truth is not None:
        notes.append("style_cka: linear CKA between the unit-normalised embedding and the generator's true style "
                     "vectors (1 = same geometry up to rotation and scale; random vectors give the chance level).")
    else:
        notes.append(f"Agreement with true style vectors skipped: no {shop.root.name}{TRUTH_SUFFIX}/"
                     f"{PRODUCTS_TRUTH_FILE} beside the shop (only generated shops have one).")
    # Near 0 is healthy; a space where everything points one way scores high.
    return TaskResult(task="intrinsic", title="Intrinsic quality of the newest snapshot", table=table,
                      headline=headline, lower_is_better=frozenset({"mean_cos"}), notes=notes,
                      extra={"spectrum": spectrum})
