"""What every evaluation task shares: embeddings through Feast, baselines, one result shape.

A task is a function `evaluate_<task>(ctx: EvalContext) -> TaskResult`. It
asks `ctx.embeddings(entity_df)` for the embeddings each row would have
received at its own `event_timestamp` (Feast point-in-time join), so no number
in the report uses a snapshot trained on its test period. The `random`
pseudo-family (Gaussian vectors of the same dimension, fixed per product) is
added to every lookup, so each task carries a chance-level row for free.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from joblib import Parallel, cpu_count
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.consumers.features import historical_embeddings
from prodvec.core.shop.model import Shop

RANDOM = "random"
NO_EMBEDDING = "no_embedding"
BASELINES = (RANDOM, NO_EMBEDDING)


@dataclass
class Lookup:
    """Embeddings of one family for a batch of entity rows."""

    matrix: np.ndarray  # (rows, dim) float32; zeros where `found` is False
    found: np.ndarray  # (rows,) bool: the row's product had a snapshot row at that time

    def normalised(self) -> np.ndarray:
        return normalize(self.matrix)


@dataclass
class EvalContext:
    """One evaluation run: the shop, the Feast store, the families to score.

    `eval_cutoff` separates what models may learn from (before) and what they
    are scored on (after); `views` maps family -> Feast feature view.
    """

    shop: Shop
    fs: object
    views: dict[str, str]
    eval_cutoff: pd.Timestamp
    seed: int = 0
    random_dim: int = 64
    # Cutoffs of the snapshots the families were trained at (the schedule); empty = unknown.
    snapshot_times: tuple[pd.Timestamp, ...] = ()
    # Results a caller already computed for this very context, keyed by the task's parameters
    # (e.g. the pipeline's return model, which the report would otherwise fit a second time).
    known: dict = field(default_factory=dict, repr=False)
    _random: np.ndarray | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _served: tuple[pd.Timestamp, ...] | None = field(default=None, repr=False)

    @property
    def families(self) -> list[str]:
        return list(self.views)

    def served_times(self) -> tuple[pd.Timestamp, ...]:
        """Every cutoff a served snapshot was trained at: `snapshot_times`, or else read from the views' sources."""
        if self.snapshot_times:
            return self.snapshot_times
        if self._served is None:
            times: set[pd.Timestamp] = set()
            for view in self.views.values():
                path = self.fs.get_feature_view(view).batch_source.path
                stamps = pc.unique(pq.read_table(path, columns=[C.EVENT_TIMESTAMP]).column(0)).to_pandas()
                times |= set(pd.to_datetime(stamps, utc=True))
            self._served = tuple(sorted(times))
        return self._served

    @property
    def newest_snapshot(self) -> pd.Timestamp:
        """The last time any snapshot was trained: products listed later have no embedding anywhere."""
        return max(self.snapshot_times) if self.snapshot_times else self.shop.end

    def embeddings(self, entity_df: pd.DataFrame, with_random: bool = True) -> dict[str, Lookup]:
        """family -> Lookup aligned with `entity_df` (needs product_id, event_timestamp).

        Several tasks ask for the same rows (e.g. the catalogue at the cutoff):
        each distinct request goes to Feast once per context.
        """
        keys = entity_df[[C.PRODUCT_ID, C.EVENT_TIMESTAMP]]
        key = hashlib.sha1(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = (historical_embeddings(self.fs, entity_df, list(self.views.values()))
                                if len(entity_df) else {})
        fetched = self._cache[key]
        out = {}
        for family, view in self.views.items():
            if view in fetched:
                matrix, found = fetched[view]
            else:
                matrix, found = np.zeros((len(entity_df), 0), np.float32), np.zeros(len(entity_df), bool)
            out[family] = Lookup(matrix.astype(np.float32, copy=False), found)
        if with_random:
            out[RANDOM] = self.random_lookup(entity_df[C.PRODUCT_ID])
        return out

    def catalog_at(self, at: pd.Timestamp) -> pd.DataFrame:
        """Entity rows for every product listed by `at`, all asking for the snapshot served at `at`."""
        products = self.shop.products
        ids = products.loc[products[C.CREATED_AT] <= at, C.PRODUCT_ID].astype(str)
        return pd.DataFrame({C.PRODUCT_ID: ids.to_numpy(), C.EVENT_TIMESTAMP: at})

    def random_lookup(self, product_ids: pd.Series) -> Lookup:
        """The chance baseline: one fixed Gaussian vector per catalogue product."""
        if self._random is None:
            rng = np.random.default_rng([self.seed, 7])
            self._random = rng.standard_normal((len(self.shop.products), self.random_dim)).astype(np.float32)
        position = pd.Series(np.arange(len(self.shop.products)), index=self.shop.products[C.PRODUCT_ID].astype(str))
        idx = position.reindex(product_ids.astype(str).to_numpy()).to_numpy()
        found = ~np.isnan(idx)
        matrix = np.zeros((len(idx), self.random_dim), np.float32)
        matrix[found] = self._random[idx[found].astype(np.int64)]
        return Lookup(matrix, found)


def fit_side_by_side(calls, jobs: int | None = None) -> list:
    """Independent model fits (joblib `delayed(f)(...)` calls), one process per core; their results in order.

    The tasks fit many small models, each on one thread (`run_tasks` limits
    BLAS to one; joblib gives each worker process one), so the scores are
    those of fitting them one after another, while both cores work.
    """
    jobs = cpu_count() if jobs is None else jobs
    return Parallel(n_jobs=jobs, backend="loky" if jobs > 1 else "sequential")(calls)


@dataclass
class TaskResult:
    """One task's numbers: a table with one row per family (baselines included).

    `table` is indexed by family; its columns are metrics, higher is better
    unless listed in `lower_is_better`. `headline` names the metric the
    report's summary table quotes for this task. `notes` are plain sentences
    for the report (data sizes, caveats, what a claim came to).
    `extra` holds further tables (e.g. per attribute) keyed by a title.
    """

    task: str
    title: str
    table: pd.DataFrame
    headline: str
    lower_is_better: frozenset[str] = frozenset()
    notes: list[str] = field(default_factory=list)
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    def best(self, metric: str) -> str | None:
        column = self.table[metric].dropna()
        if column.empty:
            return None
        return column.idxmin() if metric in self.lower_is_better else column.idxmax()
