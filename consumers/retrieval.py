"""Similar-product retrieval: from a clicked product, is the next one the shopper clicked among its neighbours?

Queries come from held-out sessions (clicks after `eval_cutoff`): the seed
is a clicked product, the target the next *different* product clicked in the
same session, the query time the seed's click. For each seed every product of
the index is ranked by cosine to the seed (the seed itself excluded), through
`prodvec.core.neighbours`, the code `prodvec similar` serves users with, and the
target's rank gives Recall@10 and NDCG@10, overall and for cold-start seeds.

Point-in-time: the index a query sees is the catalogue as served at the
query's time. Served snapshots change only at their cutoffs, so the held-out
period is cut into windows at those cutoffs; each window's index is read once
through Feast as of the window start (`ctx.embeddings(ctx.catalog_at(start))`)
and that window's queries are scored against it. A product missing from the
snapshot can't be retrieved, and a seed without an embedding scores 0: every
query counts, so families with lower coverage pay for it.

Beyond accuracy: catalogue coverage of the top-100 lists, novelty (mean
self-information of the recommended items' click popularity before the
cutoff) and diversity (share of top-10 pairs in different categories, so it
compares across families). A `most_popular` row recommends the same
most-clicked products to every seed; `random` is the chance row.

    result = evaluate_retrieval(ctx)            # ctx: an EvalContext
    result.table                                # family x metric
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.consumers.evaluation import RANDOM, EvalContext, Lookup, TaskResult
from prodvec.core.neighbours import top_k_cosine
from prodvec.core.shop.model import EVENTS

MOST_POPULAR = "most_popular"
REQUIRES = (EVENTS,)

SEED, TARGET, AT = "seed", "target", "at"


@dataclass(frozen=True)
class RetrievalConfig:
    k: int = 10
    # Catalogue coverage is measured on longer lists than accuracy.
    coverage_k: int = 100
    # Queries sampled (seeded) from all held-out pairs; each family sees the same ones.
    max_queries: int = 5000
    # A seed is cold-start with fewer than this many clicks before the cutoff.
    cold_clicks: int = 5
    seed: int = 0


# -- metric cores: plain arrays, no Feast ---------------------------------------------------------------


def session_pairs(events: pd.DataFrame, after: pd.Timestamp) -> pd.DataFrame:
    """(seed, target, at) for every click after `after` that a different click follows in its session.

    Repeated clicks on one product in a row are one click, so the target of
    a click is the next different product clicked in the same session.
    """
    clicks = events.loc[(events[C.EVENT_TYPE] == C.CLICK) & (events[C.TS] > after), [C.SESSION_ID, C.PRODUCT_ID, C.TS]]
    clicks = clicks.sort_values([C.SESSION_ID, C.TS], kind="stable")
    session, product = clicks[C.SESSION_ID].to_numpy(), clicks[C.PRODUCT_ID].astype(str).to_numpy()
    repeat = np.zeros(len(clicks), bool)
    repeat[1:] = (session[1:] == session[:-1]) & (product[1:] == product[:-1])
    clicks = clicks[~repeat]
    session, product = clicks[C.SESSION_ID].to_numpy(), clicks[C.PRODUCT_ID].astype(str).to_numpy()
    followed = np.zeros(len(clicks), bool)
    followed[:-1] = session[1:] == session[:-1]
    nxt = np.flatnonzero(followed) + 1
    return pd.DataFrame({SEED: product[followed], TARGET: product[nxt],
                         AT: clicks[C.TS].iloc[followed].reset_index(drop=True)})


def popular_top_k(ranking: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """The same list for every query: the first k of `ranking` (index positions) without the query's own."""
    head = np.asarray(ranking)[: k + 1]
    keep = head[None, :] != np.asarray(exclude)[:, None]
    # Stable sort moves at most one excluded entry to the end, keeping the order.
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    top = np.where(np.take_along_axis(keep, order, axis=1), head[order], -1)
    return np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)


def rank_metrics(top: np.ndarray, target: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query (recall@k, NDCG@k) with one relevant item: hit or not, 1/log2(1 + rank) or 0."""
    head = top[:, :k]
    hit = (head == np.asarray(target)[:, None]) & (head >= 0)
    found = hit.any(axis=1)
    rank = np.argmax(hit, axis=1) + 1
    return found.astype(float), np.where(found, 1.0 / np.log2(rank + 1.0), 0.0)


def intra_list_diversity(labels: np.ndarray) -> np.ndarray:
    """Per list: share of pairs of its items whose labels differ; labels < 0 are empty slots (NaN if < 2 items)."""
    valid = labels >= 0
    pair = valid[:, :, None] & valid[:, None, :]
    same = (labels[:, :, None] == labels[:, None, :]) & pair
    m = valid.sum(axis=1)
    pairs = m * (m - 1)
    differ = pairs - (same.sum(axis=(1, 2)) - m)
    return np.where(pairs > 0, differ / np.maximum(pairs, 1), np.nan)


def self_information(counts: np.ndarray) -> np.ndarray:
    """-log2 of each item's add-one smoothed share of the interactions (never-seen items stay finite)."""
    counts = np.asarray(counts, dtype=np.float64)
    return -np.log2((counts + 1.0) / (counts.sum() + len(counts)))


# -- the task ---------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    """One family's per-query numbers, filled window by window."""

    recall: np.ndarray
    ndcg: np.ndarray
    seed_found: np.ndarray
    target_found: np.ndarray
    novelty: list
    diversity: list
    recommended: set
    indexed: set

    @classmethod
    def empty(cls, n: int) -> _Tally:
        return cls(np.zeros(n), np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), [], [], set(), set())


def window_starts(times: list[pd.Timestamp], eval_cutoff: pd.Timestamp) -> list[pd.Timestamp]:
    """The cutoff itself and every snapshot time after it: no snapshot changes inside a window."""
    return [eval_cutoff] + [t for t in times if t > eval_cutoff]


def sample_pairs(pairs: pd.DataFrame, config: RetrievalConfig) -> pd.DataFrame:
    if len(pairs) > config.max_queries:
        rng = np.random.default_rng([config.seed, 11])
        pairs = pairs.iloc[np.sort(rng.choice(len(pairs), config.max_queries, replace=False))]
    return pairs.reset_index(drop=True)


def evaluate_retrieval(ctx: EvalContext, config: RetrievalConfig = RetrievalConfig()) -> TaskResult:
    shop = ctx.shop
    if not shop.has(EVENTS):
        raise ValueError("retrieval needs a clickstream (events.parquet); this shop has none")
    events = shop.events
    all_pairs = session_pairs(events, ctx.eval_cutoff)
    if all_pairs.empty:
        raise ValueError(f"retrieval: no session with two different clicks after {ctx.eval_cutoff}")
    pairs = sample_pairs(all_pairs, config)

    # Clicks before the cutoff: cold-start seeds, novelty and the popular baseline.
    products = shop.products[C.PRODUCT_ID].astype(str).to_numpy()
    before = events[(events[C.EVENT_TYPE] == C.CLICK) & (events[C.TS] <= ctx.eval_cutoff)]
    clicks = before[C.PRODUCT_ID].astype(str).value_counts().reindex(products, fill_value=0)
    info = pd.Series(self_information(clicks.to_numpy()), index=products)
    cold = pairs[SEED].map(clicks).fillna(0).to_numpy() < config.cold_clicks
    has_category = C.CATEGORY in shop.products
    category = pd.Series(pd.factorize(shop.products[C.CATEGORY])[0] if has_category else -1, index=products)

    starts = window_starts(list(ctx.served_times()), ctx.eval_cutoff)
    window = np.searchsorted(pd.DatetimeIndex(starts).asi8, pd.DatetimeIndex(pairs[AT]).asi8, side="right") - 1
    families = [*ctx.families, RANDOM, MOST_POPULAR]
    tally = {family: _Tally.empty(len(pairs)) for family in families}
    for w, start in enumerate(starts):
        rows = np.flatnonzero(window == w)
        if len(rows) == 0:
            continue
        catalog = ctx.catalog_at(start)
        ids = catalog[C.PRODUCT_ID].to_numpy()
        lookups = ctx.embeddings(catalog)
        lookups[MOST_POPULAR] = Lookup(np.zeros((len(ids), 0), np.float32), np.ones(len(ids), bool))
        for family in families:
            found = lookups[family].found
            index = ids[found]
            position = pd.Series(np.arange(len(index)), index=index)
            seed_pos = pairs[SEED].iloc[rows].map(position).fillna(-1).to_numpy(np.int64)
            target_pos = pairs[TARGET].iloc[rows].map(position).fillna(-1).to_numpy(np.int64)
            t = tally[family]
            t.indexed.update(index)
            t.seed_found[rows], t.target_found[rows] = seed_pos >= 0, target_pos >= 0
            ask = seed_pos >= 0
            if not ask.any():
                continue
            if family == MOST_POPULAR:
                ranking = np.lexsort((index, -clicks.reindex(index).to_numpy()))  # ties by product id
                top = popular_top_k(ranking, seed_pos[ask], config.coverage_k)
            else:
                matrix = lookups[family].matrix[found]
                top = top_k_cosine(matrix[seed_pos[ask]], matrix, config.coverage_k, exclude=seed_pos[ask])
            t.recall[rows[ask]], t.ndcg[rows[ask]] = rank_metrics(top, target_pos[ask], config.k)
            t.recommended.update(index[top[top >= 0]])
            head = top[:, : config.k]
            head_ids = np.where(head >= 0, index[np.maximum(head, 0)], None)
            t.novelty.append(_mean_over_lists(head_ids, info))
            if has_category:
                t.diversity.append(intra_list_diversity(_codes(head_ids, category)))

    table = pd.DataFrame([_row(tally[f], cold, config, has_category) for f in families],
                         index=pd.Index(families, name="family"))
    notes = [
        (f"{len(all_pairs)} (seed, next different click) pairs in sessions after {ctx.eval_cutoff.date()}; "
         f"{len(pairs)} sampled (seed {config.seed}), {int(cold.sum())} of them with a cold-start seed "
         f"(fewer than {config.cold_clicks} clicks before the cutoff)."),
        (f"Each query ranks the catalogue as served at its own time: {len(starts)} window(s) starting "
         f"{', '.join(str(s.date()) for s in starts)}. A seed without an embedding scores 0 "
         "(seed_coverage says how often); a target missing from the index cannot be found."),
        (f"catalog_coverage@{config.coverage_k}: share of the family's index (products with an embedding in any "
         f"window) that appears in some top-{config.coverage_k} list; novelty: mean -log2 of the top-{config.k} "
         "items' click share before the cutoff (add-one smoothed), higher = less mainstream."),
    ]
    notes.append(f"diversity@{config.k}: share of top-{config.k} pairs in different categories."
                 if has_category else "diversity skipped: the shop has no category column.")
    return TaskResult(task="retrieval", title="Similar-product retrieval (next click in session)", table=table,
                      headline=f"recall@{config.k}", notes=notes)


def _codes(ids: np.ndarray, code: pd.Series) -> np.ndarray:
    flat = pd.Series(ids.ravel()).map(code).fillna(-1).to_numpy(np.int64)
    return flat.reshape(ids.shape)


def _mean_over_lists(ids: np.ndarray, info: pd.Series) -> np.ndarray:
    """Per list, the mean of `info` over its items (empty slots are None and skipped)."""
    values = pd.Series(ids.ravel()).map(info).to_numpy(np.float64).reshape(ids.shape)
    filled = (~np.isnan(values)).sum(axis=1)
    return np.where(filled > 0, np.nansum(values, axis=1) / np.maximum(filled, 1), np.nan)


def _row(t: _Tally, cold: np.ndarray, config: RetrievalConfig, has_category: bool) -> dict:
    k, kk = config.k, config.coverage_k
    novelty = np.concatenate(t.novelty) if t.novelty else np.zeros(0)
    diversity = np.concatenate(t.diversity) if t.diversity else np.zeros(0)
    return {
        f"recall@{k}": t.recall.mean(),
        f"ndcg@{k}": t.ndcg.mean(),
        f"cold_recall@{k}": t.recall[cold].mean() if cold.any() else np.nan,
        f"cold_ndcg@{k}": t.ndcg[cold].mean() if cold.any() else np.nan,
        f"catalog_coverage@{kk}": len(t.recommended) / len(t.indexed) if t.indexed else np.nan,
        "novelty": float(np.nanmean(novelty)) if len(novelty) else np.nan,
        f"diversity@{k}": float(np.nanmean(diversity)) if has_category and len(diversity) else np.nan,
        "seed_coverage": t.seed_found.mean(),
        "target_in_index": t.target_found.mean(),
    }
