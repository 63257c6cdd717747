"""Clicked–purchased similarity (paper task 2): does the embedding know what a session was after?

In every held-out session (started after the evaluation cutoff) that ended in
a purchase, each product the user saw (impressed or clicked) is a candidate.
A candidate's score is its mean cosine to the *other* products clicked in the
session (leave-one-out, so a clicked product is never compared with itself);
the purchased products should rank above the rest. Per session we take the
ROC-AUC of purchased against not purchased and NDCG@10 of the purchased
products, then average over sessions. Embeddings are those served when the
session started (Feast point-in-time). The no-embedding row ranks candidates
by clicks before the cutoff (popularity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.consumers.evaluation import EvalContext, TaskResult

POPULARITY = "most_popular"


@dataclass(frozen=True)
class SimilarityConfig:
    # Sessions scored at most (sampled with the seed): Feast lookups grow with candidates.
    max_sessions: int = 3000
    k: int = 10


def session_candidates(events: pd.DataFrame, after: pd.Timestamp) -> pd.DataFrame:
    """One row per (session, product) seen in sessions after `after` with a purchase and two clicks.

    Columns: session_id, product_id, clicked, purchased, event_timestamp (the session's start).
    """
    held = events[events[C.TS] > after]
    flags = pd.DataFrame({C.SESSION_ID: held[C.SESSION_ID], C.PRODUCT_ID: held[C.PRODUCT_ID],
                          "clicked": (held[C.EVENT_TYPE] == C.CLICK).to_numpy(),
                          "purchased": (held[C.EVENT_TYPE] == C.PURCHASE).to_numpy()})
    seen = flags.groupby([C.SESSION_ID, C.PRODUCT_ID], sort=False, observed=True).max().reset_index()
    start = held.groupby(C.SESSION_ID, observed=True)[C.TS].min().rename(C.EVENT_TIMESTAMP)
    per_session = seen.groupby(C.SESSION_ID, observed=True).agg(
        buys=("purchased", "sum"), clicks=("clicked", "sum"), n=("purchased", "size"))
    # Needs a purchase, something not purchased to rank it against, and a click besides the purchase.
    usable = per_session[(per_session.buys > 0) & (per_session.buys < per_session.n) & (per_session.clicks >= 2)].index
    seen = seen[seen[C.SESSION_ID].isin(usable)]
    return seen.merge(start, left_on=C.SESSION_ID, right_index=True).reset_index(drop=True)


def leave_one_out_scores(vectors: np.ndarray, found: np.ndarray, session: np.ndarray, clicked: np.ndarray) -> np.ndarray:
    """Mean cosine of each row to the other clicked rows of its session (0 where there are none)."""
    unit = np.where(found[:, None], normalize(vectors), 0.0)
    contributes = (clicked & found).astype(np.float64)
    n_sessions = int(session.max()) + 1 if len(session) else 0
    sums = np.zeros((n_sessions, unit.shape[1]))
    np.add.at(sums, session, unit * contributes[:, None])
    counts = np.bincount(session, weights=contributes, minlength=n_sessions)
    context = sums[session] - unit * contributes[:, None]
    n = counts[session] - contributes
    return np.where(n > 0, (unit * context).sum(1) / np.maximum(n, 1), 0.0)


def ranking_metrics(session: np.ndarray, score: np.ndarray, positive: np.ndarray, k: int,
                    rng: np.random.Generator) -> dict[str, float]:
    """Mean per-session ROC-AUC and NDCG@k; ties broken at random so no order in the data leaks in."""
    frame = pd.DataFrame({"s": session, "score": score, "pos": positive, "tie": rng.random(len(score))})
    frame["rank"] = frame.groupby("s")["score"].rank(method="average")  # ascending, ties averaged
    grouped = frame.groupby("s")
    n_pos = grouped["pos"].sum()
    n_neg = grouped["pos"].size() - n_pos
    rank_sum = frame[frame.pos].groupby("s")["rank"].sum().reindex(n_pos.index, fill_value=0.0)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    frame = frame.sort_values(["s", "score", "tie"], ascending=[True, False, True])
    frame["position"] = frame.groupby("s").cumcount()
    gain = np.where(frame.pos & (frame.position < k), 1.0 / np.log2(frame.position + 2.0), 0.0)
    dcg = pd.Series(gain, index=frame.index).groupby(frame.s).sum()
    ideal = n_pos.clip(upper=k).map(lambda m: (1.0 / np.log2(np.arange(m) + 2.0)).sum())
    return {"auc": float(auc.mean()), f"ndcg@{k}": float((dcg / ideal).mean())}


def evaluate_similarity(ctx: EvalContext, config: SimilarityConfig = SimilarityConfig()) -> TaskResult:
    if ctx.shop.events is None or ctx.shop.events.empty:
        raise ValueError("clicked–purchased similarity needs events.parquet")
    rows = session_candidates(ctx.shop.events, ctx.eval_cutoff)
    sessions = rows[C.SESSION_ID].unique()
    if len(sessions) == 0:
        raise ValueError(f"no session after {ctx.eval_cutoff} has a purchase, a second click and a product not bought")
    rng = np.random.default_rng([ctx.seed, 11])
    if len(sessions) > config.max_sessions:
        sessions = rng.choice(sessions, config.max_sessions, replace=False)
        rows = rows[rows[C.SESSION_ID].isin(sessions)].reset_index(drop=True)
    session = pd.factorize(rows[C.SESSION_ID])[0]
    clicked, purchased = rows["clicked"].to_numpy(bool), rows["purchased"].to_numpy(bool)
    table = {}
    for family, lookup in ctx.embeddings(rows).items():
        scores = leave_one_out_scores(lookup.matrix, lookup.found, session, clicked)
        metrics = ranking_metrics(session, scores, purchased, config.k, np.random.default_rng([ctx.seed, 12]))
        table[family] = {**metrics, "candidates_with_embedding": float(lookup.found.mean())}
    before = ctx.shop.events[(ctx.shop.events[C.TS] <= ctx.eval_cutoff) & (ctx.shop.events[C.EVENT_TYPE] == C.CLICK)]
    popularity = rows[C.PRODUCT_ID].map(before[C.PRODUCT_ID].value_counts()).fillna(0).to_numpy(float)
    table[POPULARITY] = {**ranking_metrics(session, popularity, purchased, config.k,
                                           np.random.default_rng([ctx.seed, 12])),
                         "candidates_with_embedding": float("nan")}
    frame = pd.DataFrame.from_dict(table, orient="index")
    per_session = rows.groupby(C.SESSION_ID).size()
    notes = [f"{len(per_session)} held-out sessions with a purchase (after {ctx.eval_cutoff.date()}), "
             f"{per_session.mean():.1f} candidates each on average, {purchased.mean():.1%} of them purchased.",
             "Score of a candidate = mean cosine to the session's other clicked products; "
             f"AUC and NDCG@{config.k} of the purchased ones, averaged over sessions.",
             f"{POPULARITY}: candidates ranked by clicks before the cutoff (no embedding)."]
    return TaskResult("similarity", "Clicked–purchased similarity (held-out sessions)", frame, headline="auc",
                      notes=notes)
