"""Health metrics of an embedding table, in plain numpy.

Every metric is vectorised and memory-bounded so that a 1M x 128 table is
measured in a couple of seconds: full passes go through the matrix in chunks of a
few MiB, and the costly ones (SVD, pairwise cosine) look at a seeded random
sample. The evaluation report reuses `isotropy`, `singular_values`,
`mean_pairwise_cosine` and `centred_energy`, so they take any float matrix,
not only `Embeddings`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SVD_ROWS = 20_000
COSINE_PAIRS = 10_000
# Rows per chunk of a full pass: about 32 MiB of float64 whatever the dimension.
_CHUNK_VALUES = 1 << 22


def _chunks(n: int, dim: int):
    step = max(1, _CHUNK_VALUES // max(dim, 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def _sample(candidates: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(candidates) <= size:
        return candidates
    # Sorted so that the gather below reads the matrix front to back.
    return np.sort(rng.choice(candidates, size=size, replace=False))


def _candidates(vectors: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return np.arange(len(vectors)) if rows is None else np.asarray(rows)


def singular_values(
    vectors: np.ndarray,
    *,
    max_rows: int = SVD_ROWS,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Singular values of the centred matrix, largest first, on at most `max_rows` seeded rows.

    Only the first min(sampled rows - 1, dim) can be non-zero. An empty array
    for fewer than 2 rows. The report plots them; `isotropy` is their ratio.
    """
    vectors = np.asarray(vectors)
    rng = np.random.default_rng(seed)
    sample = _sample(_candidates(vectors, rows), max_rows, rng)
    if len(sample) < 2 or vectors.shape[1] == 0:
        return np.zeros(0)
    x = np.asarray(vectors[sample], dtype=np.float64)
    x -= x.mean(axis=0)
    # Singular values as square roots of the Gram matrix's eigenvalues: 4x
    # faster than an SVD of the tall matrix at d = 768, and in float64 its
    # error (~1e-8 of sigma_max) stays far below the gate's 1e-6.
    sigma = np.sqrt(np.clip(np.linalg.eigvalsh(x.T @ x), 0.0, None))[::-1]
    return sigma[: min(len(sample) - 1, x.shape[1])]


def isotropy(
    vectors: np.ndarray,
    *,
    max_rows: int = SVD_ROWS,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> float:
    """sigma_min / sigma_max of the centred matrix (1 = round cloud, 0 = flat in some direction).

    Computed on at most `max_rows` seeded random rows (of `rows`, when given).
    With fewer rows than dimensions the centred matrix has at most n - 1
    non-zero singular values, so sigma_min is taken among those: a 20-product
    shop with 64-d vectors is not "degenerate" merely for being small.
    Returns 0.0 when every sampled row is the same, NaN for fewer than 2 rows.
    """
    sigma = singular_values(vectors, max_rows=max_rows, seed=seed, rows=rows)
    if len(sigma) == 0:
        return float("nan")
    if sigma[0] <= 0:
        return 0.0
    return float(sigma[-1] / sigma[0])


def effective_rank(sigma: np.ndarray) -> float:
    """Roy & Vetterli's effective rank: exp of the entropy of the normalised singular values.

    Between 1 (one direction carries everything) and len(sigma) (a round
    cloud). Unlike sigma_min / sigma_max it is not set by the single weakest
    direction: one dead coordinate costs it one dimension, not everything.
    NaN when there are no singular values, 0 when all are zero.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if len(sigma) == 0:
        return float("nan")
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma[sigma > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def constant_coordinates(vectors: np.ndarray, *, max_rows: int = SVD_ROWS, seed: int = 0,
                         rows: np.ndarray | None = None) -> int:
    """How many coordinates do not vary over (a seeded sample of) the rows: dead dimensions or empty blocks."""
    vectors = np.asarray(vectors)
    sample = _sample(_candidates(vectors, rows), max_rows, np.random.default_rng(seed))
    if len(sample) < 2:
        return 0
    spread = np.asarray(vectors[sample], dtype=np.float64).std(axis=0)
    return int((spread <= 1e-9 * max(float(spread.max()), 1e-300)).sum())


def empty_blocks(vectors: np.ndarray, widths: list[int], rows: np.ndarray | None = None) -> int:
    """How many of the consecutive column blocks of `widths` are zero in every (given) row."""
    vectors = np.asarray(vectors)
    if sum(widths) != vectors.shape[1]:
        return 0
    x = vectors if rows is None else vectors[rows]
    bounds = np.cumsum([0] + list(widths))
    return int(sum(not np.any(x[:, lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])))


def mean_pairwise_cosine(
    vectors: np.ndarray,
    n_pairs: int = COSINE_PAIRS,
    seed: int = 0,
    *,
    rows: np.ndarray | None = None,
) -> float:
    """Mean cosine similarity of `n_pairs` seeded random pairs of distinct rows.

    About 0 for a healthy centred embedding, about 1 when every vector points
    the same way. A zero row counts as cosine 0. NaN for fewer than 2 rows.
    """
    vectors = np.asarray(vectors)
    candidates = _candidates(vectors, rows)
    m = len(candidates)
    if m < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, m, size=n_pairs)
    # An offset in [1, m) makes j != i without rejection sampling.
    j = (i + rng.integers(1, m, size=n_pairs)) % m
    a = np.asarray(vectors[candidates[i]], dtype=np.float64)
    b = np.asarray(vectors[candidates[j]], dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.einsum("ij,ij->i", a, b) / np.where(denom > 0, denom, 1.0)
    return float(np.mean(np.where(denom > 0, cos, 0.0)))


def _row_pass(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunked pass: squared row norms (NaN/inf for non-finite rows), the
    sum of the finite rows, and a cheap hash of each row's bytes (equal rows
    get equal hashes; `_duplicate_share` confirms candidates exactly)."""
    n, dim = vectors.shape
    sqnorm = np.empty(n, dtype=np.float64)
    total = np.zeros(dim, dtype=np.float64)
    hashes = np.empty(n, dtype=np.uint64)
    # Odd multipliers on the 32-bit words, wrapping mod 2**32, summed exactly.
    odd = np.random.default_rng(0x5EED).integers(0, 2**31, size=dim, dtype=np.uint32)
    weights = odd * np.uint32(2) + np.uint32(1)
    for rows in _chunks(n, dim):
        block32 = np.asarray(vectors[rows], dtype=np.float32) + np.float32(0)  # -0.0 -> +0.0
        block = block32.astype(np.float64)
        sq = np.einsum("ij,ij->i", block, block)
        sqnorm[rows] = sq
        finite = np.isfinite(sq)
        total += block.sum(axis=0) if finite.all() else block[finite].sum(axis=0)
        hashes[rows] = (block32.view(np.uint32) * weights).sum(axis=1, dtype=np.uint64)
    return sqnorm, total, hashes


def _duplicate_share(vectors: np.ndarray, rows: np.ndarray, hashes: np.ndarray) -> float:
    """Share of `rows` whose vector equals another row's, bit for bit."""
    if len(rows) == 0:
        return 0.0
    candidates = rows[pd.Series(hashes[rows]).duplicated(keep=False).to_numpy()]
    if len(candidates) == 0:
        return 0.0
    # Hash collisions are possible; compare the candidates' bytes exactly.
    block = np.ascontiguousarray(np.asarray(vectors[candidates], dtype=np.float32) + np.float32(0))
    keys = block.view(np.dtype((np.void, block.dtype.itemsize * block.shape[1]))).ravel()
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return float((counts[inverse] > 1).sum() / len(rows))


def duplicate_share(vectors: np.ndarray) -> float:
    """Share of rows whose vector equals another row's, bit for bit (on finite rows)."""
    vectors = np.asarray(vectors)
    sqnorm, _, hashes = _row_pass(vectors)
    return _duplicate_share(vectors, np.flatnonzero(np.isfinite(sqnorm)), hashes)


def centred_energy(vectors: np.ndarray) -> float:
    """mean ||x - mean||^2 / mean ||x||^2 over the rows: 0 when all rows are equal.

    A collapsed embedding (one vector plus tiny noise) has isotropic noise, so
    its isotropy looks fine; this ratio (and the mean cosine) is what sees it.
    """
    sqnorm, total, _ = _row_pass(np.asarray(vectors))
    return _centred_energy(sqnorm, total, len(sqnorm))


def _centred_energy(sqnorm: np.ndarray, total: np.ndarray, n: int) -> float:
    if n == 0:
        return float("nan")
    mean_sq = float(sqnorm.sum()) / n
    if mean_sq <= 0:
        return 0.0
    mean = total / n
    # E||x - mu||^2 = E||x||^2 - ||mu||^2, without materialising the centred matrix.
    return max(0.0, (mean_sq - float(mean @ mean)) / mean_sq)


def compute_metrics(
    vectors: np.ndarray,
    ids: np.ndarray,
    catalog_ids: np.ndarray,
    *,
    svd_rows: int = SVD_ROWS,
    cosine_pairs: int = COSINE_PAIRS,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """All gate metrics, and the per-row columns (norm, finite, known) they came from.

    Geometry metrics (norms, isotropy, cosine, energy, duplicates) use the
    finite rows only: non-finite rows are counted and refused on their own.
    """
    vectors = np.asarray(vectors)
    n, dim = vectors.shape
    sqnorm, total, hashes = _row_pass(vectors)
    finite = np.isfinite(sqnorm)
    finite_rows = np.flatnonzero(finite)
    norm = np.where(finite, np.sqrt(np.where(finite, sqnorm, 0.0)), np.nan)

    # One hash table over the catalogue; ids are unique (Embeddings checks),
    # so the distinct catalogue positions found are the covered products.
    catalog = pd.Index(np.asarray(catalog_ids).astype(str)).unique()
    position = catalog.get_indexer(pd.Index(np.asarray(ids).astype(str)))
    known = position >= 0
    coverage = len(np.unique(position[known])) / len(catalog) if len(catalog) else 1.0

    finite_norm = norm[finite]
    metrics: dict[str, float] = {
        "dimension": int(dim),
        "rows": int(n),
        "nonfinite_rows": int(n - len(finite_rows)),
        "unknown_ids": int((~known).sum()),
        "norm_min": float(finite_norm.min()) if len(finite_norm) else float("nan"),
        "norm_max": float(finite_norm.max()) if len(finite_norm) else float("nan"),
        "norm_mean": float(finite_norm.mean()) if len(finite_norm) else float("nan"),
        "coverage": float(coverage),
        "isotropy": isotropy(vectors, max_rows=svd_rows, seed=seed, rows=finite_rows),
        "mean_pairwise_cosine": mean_pairwise_cosine(vectors, cosine_pairs, seed, rows=finite_rows),
        "centred_energy": _centred_energy(sqnorm[finite], total, len(finite_rows)),
        "duplicate_share": _duplicate_share(vectors, finite_rows, hashes),
    }
    columns = {"norm": norm, "finite": finite, "known": np.asarray(known)}
    return metrics, columns


def plain(value):
    """A JSON-ready copy of a metric or GE value: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
