"""Nearest products by cosine: one code path for the served index, the evaluation and the producers.

`NeighbourIndex` wraps a FAISS index over unit vectors (inner product =
cosine) and the product ids of its rows. Small catalogues get an exact
`IndexFlatIP` (FAISS's blocked BLAS scan); from `LARGE_FROM` rows on an HNSW
graph. Chosen by measurement (`benchmarks/ann_bench.py`, shared 2-core
machine): at 1M x 64 HNSW (M=32, efSearch 64) and IVF-PQ with exact re-ranking
both reach recall@10 >= 0.99 at p99 under 1 ms per query; IVF-PQ built faster
there (53 s against 179 s, 283 against 504 MiB) but its k-means training
took 199 s at 50k rows where HNSW took 30 s, so HNSW, which has no training
step, is the default and `kind="ivfpq"` the option for very large snapshots.

Every promoted snapshot gets its index (`index/` beside `embeddings.parquet`,
written to a temporary directory and renamed) *before* `SnapshotStore`
records it as served, so the index users query always belongs to the
snapshot Feast serves: a rollback serves the previous snapshot's index again,
a snapshot that failed validation is never promoted and never gets one.

    hits = similar(home, "unified", product_id="P000123", k=10)
    hits.ids, hits.scores, hits.snapshot
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.core.snapshots import TMP_PREFIX, SnapshotError, SnapshotRef, SnapshotStore

INDEX_DIR = "index"
INDEX_FILE = "faiss.index"
META_FILE = "index.json"
# Below this many rows an exact scan costs about a millisecond per query or
# less and is exact, so no approximation is worth it.
LARGE_FROM = 50_000
# IVF-PQ: 4 sqrt(n) lists (FAISS's rule of thumb), 32-byte codes, 16 lists probed,
# 4k candidates re-ranked exactly; measured at 1M x 64 in benchmarks/ann_bench.py.
IVF_NPROBE = 16
IVF_PQ_BYTES = 32
REFINE_FACTOR = 4
# HNSW graph degree and beam widths (the alternative measured there).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 64


def unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length one (zero rows stay zero), float32 and contiguous as FAISS wants."""
    return np.ascontiguousarray(normalize(np.asarray(matrix, dtype=np.float32)), dtype=np.float32)


def build_faiss(vectors: np.ndarray, kind: str = "auto", seed: int = 0):
    """A FAISS index over the unit rows of `vectors`: "flat" (exact), "ivfpq", "hnsw", or "auto" by size."""
    import faiss

    x = unit(vectors)
    if kind == "auto":
        kind = "hnsw" if len(x) >= LARGE_FROM else "flat"
    dim = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivfpq":
        nlist = max(1, int(4 * np.sqrt(len(x))))
        pq = IVF_PQ_BYTES if dim % IVF_PQ_BYTES == 0 else dim  # PQ needs sub-vectors of equal width
        ivf = faiss.index_factory(dim, f"IVF{nlist},PQ{pq}", faiss.METRIC_INNER_PRODUCT)
        ivf.do_polysemous_training = False  # Hamming pre-filtering is unused; its training costs minutes
        ivf.nprobe = IVF_NPROBE
        sample = np.random.default_rng(seed).choice(len(x), min(len(x), 50 * nlist), replace=False)
        ivf.train(x[np.sort(sample)])
        index = faiss.IndexRefineFlat(ivf)  # keeps the raw vectors: exact re-ranking and reconstruct()
        index.k_factor = REFINE_FACTOR
        index.add(x)
        return index, kind
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"index kind {kind!r}: use 'flat', 'ivfpq', 'hnsw' or 'auto'")
    index.add(x)
    return index, kind


@dataclass(frozen=True)
class Neighbours:
    """The answer to one query: ids and cosines, best first, and the snapshot they came from."""

    ids: list[str]
    scores: list[float]
    snapshot: str | None

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({C.PRODUCT_ID: self.ids, "score": self.scores}).assign(snapshot=self.snapshot)


class NeighbourIndex:
    """Product ids + a FAISS index over their unit vectors (row i is ids[i])."""

    def __init__(self, ids: np.ndarray, index, kind: str, snapshot: str | None = None):
        self.ids = np.asarray(ids).astype(str)
        self.index = index
        self.kind = kind
        self.snapshot = snapshot
        self._position = None

    @classmethod
    def from_vectors(cls, ids, vectors: np.ndarray, kind: str = "auto", snapshot: str | None = None) -> NeighbourIndex:
        index, kind = build_faiss(vectors, kind)
        return cls(np.asarray(ids), index, kind, snapshot)

    def __len__(self) -> int:
        return self.index.ntotal

    def position(self, product_ids) -> np.ndarray:
        """Row of each id, -1 where the index does not hold it."""
        import pandas as pd

        if self._position is None:
            self._position = pd.Series(np.arange(len(self.ids)), index=self.ids)
        return pd.Series(np.asarray(product_ids).astype(str)).map(self._position).fillna(-1).to_numpy(np.int64)

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The stored unit vectors of some rows (every kind keeps them exactly)."""
        positions = np.asarray(positions, dtype=np.int64)
        return np.stack([self.index.reconstruct(int(p)) for p in positions]) if len(positions) else \
            np.zeros((0, self.index.d), np.float32)

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cosines), each (queries, k), nearest first; -1 / -inf where fewer than k rows qualify.

        `exclude` holds row positions a query may not return: shape (queries,)
        for one each (the query's own row) or (queries, m) for several (a
        session's products), -1 for none.
        """
        q = unit(np.atleast_2d(queries))
        k_out = min(k, len(self))
        if exclude is None:
            exclude = np.full((len(q), 1), -1, dtype=np.int64)
        exclude = np.asarray(exclude, dtype=np.int64).reshape(len(q), -1)
        # Ask for enough extra rows that the excluded ones can be dropped.
        extra = int((exclude >= 0).sum(axis=1).max()) if len(q) else 0
        fetch = min(k_out + extra, len(self))
        if fetch == 0 or len(q) == 0:
            return np.full((len(q), k_out), -1, np.int64), np.full((len(q), k_out), -np.inf, np.float32)
        scores, rows = self.index.search(q, fetch)
        drop = ((rows[:, :, None] == exclude[:, None, :]) & (exclude[:, None, :] >= 0)).any(axis=2) | (rows < 0)
        # Stable: kept rows keep their order (best first), dropped ones go last.
        order = np.argsort(drop, axis=1, kind="stable")[:, :k_out]
        kept = ~np.take_along_axis(drop, order, axis=1)
        positions = np.where(kept, np.take_along_axis(rows, order, axis=1), -1)
        cosines = np.where(kept, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32)
        return positions, cosines

    def save(self, directory: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(directory / INDEX_FILE))
        (directory / META_FILE).write_text(json.dumps({"kind": self.kind, "rows": len(self), "dim": self.index.d,
                                                      "snapshot": self.snapshot}, indent=2))

    @classmethod
    def load(cls, directory: Path, ids: np.ndarray) -> NeighbourIndex:
        import faiss

        meta = json.loads((directory / META_FILE).read_text())
        index = faiss.read_index(str(directory / INDEX_FILE))
        if index.ntotal != len(ids):
            raise SnapshotError(f"{directory}: index holds {index.ntotal} rows, the snapshot {len(ids)}")
        if meta["kind"] == "hnsw":
            index.hnsw.efSearch = HNSW_EF_SEARCH
        elif meta["kind"] == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
            faiss.downcast_index(index).k_factor = REFINE_FACTOR
        return cls(ids, index, meta["kind"], meta.get("snapshot"))


def top_k_cosine(queries: np.ndarray, index: np.ndarray, k: int, exclude: np.ndarray | None = None,
                 kind: str = "auto") -> np.ndarray:
    """(queries, k) row positions into `index` of each query's k nearest rows by cosine, nearest first.

    The evaluation's neighbour search, through the same `NeighbourIndex` that
    `prodvec similar` queries. `exclude` as in `NeighbourIndex.search`; -1
    where fewer than k rows qualify.
    """
    return NeighbourIndex.from_vectors(np.arange(len(index)), index, kind).search(queries, k, exclude)[0]


# -- one index per promoted snapshot --------------------------------------------------------------------


def snapshot_ids(ref: SnapshotRef) -> np.ndarray:
    return pq.read_table(ref.data_file, columns=[C.PRODUCT_ID]).column(C.PRODUCT_ID).to_numpy(zero_copy_only=False)


def ensure_index(store: SnapshotStore, ref: SnapshotRef, kind: str = "auto") -> Path:
    """Build the neighbour index of a snapshot unless it has one; atomic (temp dir + rename)."""
    target = ref.path / INDEX_DIR
    if (target / META_FILE).exists():
        return target
    emb = store.read(ref)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{INDEX_DIR}-", dir=ref.path))
    try:
        NeighbourIndex.from_vectors(emb.ids, emb.vectors, kind, snapshot=ref.id).save(tmp)
        shutil.rmtree(target, ignore_errors=True)  # a half-written leftover without META_FILE
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def served_ref(store: SnapshotStore, family: str) -> SnapshotRef:
    """The snapshot `family` serves now: newest promoted snapshot of its newest served version."""
    versions = [number for fam, number, _ in store.served_versions() if fam == family]
    if not versions:
        served = sorted({fam for fam, _, _ in store.served_versions()})
        raise SnapshotError(f"family {family!r} serves nothing under {store.home}; served: {', '.join(served) or 'none'}")
    return store.get(f"{family}/v{versions[-1]}/{store.promoted(family, versions[-1])[-1]}")


def served_index(home: str | Path, family: str) -> NeighbourIndex:
    """The neighbour index of the snapshot `family` serves now (built here if an older home lacks it)."""
    store = SnapshotStore(home)
    ref = served_ref(store, family)
    return NeighbourIndex.load(ensure_index(store, ref), snapshot_ids(ref))


def similar(home: str | Path, family: str, product_id: str | None = None, *, vector=None, products=None,
            k: int = 10, index: NeighbourIndex | None = None) -> Neighbours:
    """The k products nearest (cosine) to one product, a query vector, or a session's products.

    A session's query is the mean of its products' unit vectors; the
    products themselves are never returned. A product the family has no
    vector for (a click family and a product nobody clicked yet) is an error
    that says which families cover it.
    """
    if sum(x is not None for x in (product_id, vector, products)) != 1:
        raise ValueError("give exactly one of product_id, vector, products")
    index = index if index is not None else served_index(home, family)
    if vector is not None:
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != index.index.d:
            raise ValueError(f"query vector has {query.shape[1]} values; {family} vectors have {index.index.d}")
        exclude = None
    else:
        wanted = [product_id] if product_id is not None else [str(p) for p in products]
        rows = index.position(wanted)
        if (rows < 0).all():
            raise SnapshotError(
                f"{family} snapshot {index.snapshot} has no vector for {', '.join(wanted[:5])}: "
                "a behavioural family only knows products that were clicked before its cutoff; "
                "ask a content or fused family (text_dae, unified, unified_concat) for new products")
        rows = rows[rows >= 0]
        query = unit(index.vectors(rows)).mean(axis=0, keepdims=True)
        exclude = rows.reshape(1, -1)
    positions, scores = index.search(query, k, exclude)
    keep = positions[0] >= 0
    return Neighbours(index.ids[positions[0][keep]].tolist(), scores[0][keep].astype(float).tolist(), index.snapshot)
