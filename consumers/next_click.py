"""Next-click prediction, scored the way the session-recommendation literature scores it.

The protocol of GRU4Rec (Hidasi et al. 2016) and rn5l/session-rec's "next"
evaluation, so the numbers can be set beside published ones:

- Models learn from every event strictly before the split time; the test
  sessions are those whose first click is at or after it (for a YooChoose
  import the split the benchmark publishes, see
  `prodvec.importers.session_clicks.read_split`).
- Test clicks on items that never occur in training are removed from their
  session before anything is predicted (as the benchmarks' preprocessing
  does: no model can rank an item it never saw), and sessions left with
  fewer than two clicks are dropped. Repeated clicks on the same item stay:
  predicting them is part of the published task.
- For each test session and each position i >= 1, the model sees the prefix
  clicks[0..i-1] and ranks *all* items of the training data for click i.
  Recall@k (hit rate: the true click is in the top k) and MRR@k (1/rank,
  0 beyond k) are averaged over all predictions.
- Ties count against the model: an item's rank is 1 + the number of other
  items scoring at least as high, so a model that cannot tell items apart
  scores nothing. Items a model has no vector for (NaN scores) are never
  ranked, and a prediction whose target the model cannot score is a miss.

Models:
- `most_popular`: training clicks per item (ties broken by item id), the same
  ranking for every prefix;
- an item-embedding family (prod2vec, clicks_bpr, ...): cosine similarity to
  the last clicked item of the prefix that has a vector, the way item
  embeddings are used for next-click (item-to-item); the item itself
  scores 1 and so ranks first, which is right for the repeated clicks;
- `sasrec`: its full sequence model (`SASRec.next_item_scores_batch`) on
  the prefix, with consecutive repeats collapsed as in its training data.

Families train in memory at the split (`make_producer(...).train`), not
through snapshots and Feast: the split is one cutoff, and SASRec's sequence
model is not part of a served snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from sklearn.preprocessing import normalize

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import TrainContext
from prodvec.producers.sequences import INTEREST
from prodvec.core.shop.model import Shop, to_utc

POPULARITY = "most_popular"
BATCH = 1024  # predictions scored at once: (BATCH, items) float32 matrices

# Settings for click-only session data of roughly YooChoose-sample size
# (~70k clicks, 3k items, 18k sessions of ~4 clicks): a few minutes on 2 CPU
# cores in all. Chosen on a validation split inside the training data (its
# last day held out), never on the test sessions. Caller overrides win.
SESSION_OVERRIDES: dict[str, dict] = {
    # Short sessions: a small window, many passes over a small corpus, more
    # negatives; `sample` down-weights the bestsellers (it is a frequency
    # threshold: on a corpus of a few hundred items it would drop nearly all).
    "prod2vec": {"dim": 64, "epochs": 50, "window": 3, "negative": 20, "sample": 1e-4, "alpha": 0.025},
    # ~18k one-session "users" with ~4 clicks each: strong regularisation.
    "clicks_bpr": {"dim": 64, "epochs": 20, "batch_size": 1024, "lr": 0.01, "l2": 1e-2},
    # Sessions of ~4 clicks need no 20-step window; more dropout than the demo's against over-fitting.
    "sasrec": {"dim": 64, "epochs": 12, "batch_size": 256, "lr": 5e-3, "dropout": 0.4, "negatives": 256,
               "max_len": 10},
}


# -- the task: which predictions there are --------------------------------------
@dataclass(frozen=True)
class NextClickTask:
    """All next-click predictions of a split, as flat arrays.

    `items` are the candidate products (everything clicked in training, sorted)
    and `popularity` their training clicks. The test sessions are `sequence`
    (codes into `items`) cut at `offsets`; prediction p asks for click
    `sequence[target[p]]` given `sequence[start[p]:target[p]]`.
    """

    split: pd.Timestamp
    items: np.ndarray
    popularity: np.ndarray
    sequence: np.ndarray
    offsets: np.ndarray
    start: np.ndarray
    target: np.ndarray
    test_clicks_removed: int  # clicks on items unseen in training

    @property
    def n_predictions(self) -> int:
        return len(self.target)

    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    def repeat_share(self) -> float:
        """Share of targets that repeat the previous click (which item-to-item models rank first)."""
        return float((self.sequence[self.target] == self.sequence[self.target - 1]).mean()) if len(self.target) else 0.0


def next_click_task(shop: Shop, split: pd.Timestamp) -> NextClickTask:
    """The predictions of `shop`'s test sessions (first click at or after `split`)."""
    split = to_utc(split)
    events = shop.events
    events = events[events[C.EVENT_TYPE].isin(list(INTEREST))]
    before = events[C.TS] < split
    items, popularity = np.unique(events.loc[before, C.PRODUCT_ID].astype(str).to_numpy(), return_counts=True)
    later = events[~before.to_numpy()]
    first = events.groupby(C.SESSION_ID, observed=True)[C.TS].min()
    test = later[later[C.SESSION_ID].isin(first.index[first >= split])]
    test = test.sort_values([C.SESSION_ID, C.TS], kind="stable")
    codes = pd.Index(items).get_indexer(test[C.PRODUCT_ID].astype(str).to_numpy())
    known = codes >= 0
    session = test[C.SESSION_ID].to_numpy()[known]
    codes = codes[known]
    starts = np.r_[True, session[1:] != session[:-1]] if len(session) else np.zeros(0, bool)
    offsets = np.r_[np.flatnonzero(starts), len(codes)]
    lengths = np.diff(offsets)
    keep = np.repeat(lengths >= 2, lengths)
    codes, lengths = codes[keep], lengths[lengths >= 2]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    # Every position but the first of each session is a target.
    position = np.arange(len(codes))
    session_start = np.repeat(offsets[:-1], lengths)
    target = position[position > session_start]
    return NextClickTask(split=split, items=items, popularity=popularity, sequence=codes.astype(np.int64),
                         offsets=offsets, start=session_start[target], target=target,
                         test_clicks_removed=int((~known).sum()))


# -- scoring and ranking --------------------------------------------------------------
Scorer = Callable[[np.ndarray], np.ndarray]  # prediction indices -> (len, items) scores; NaN = cannot score


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target; ties count against it; inf where the target has no score."""
    rows = np.arange(len(targets))
    own = scores[rows, targets]
    # NaN compares False, so unscorable items never rank ahead; the target itself counts once in >=.
    ranks = (scores >= own[:, None]).sum(1).astype(np.float64)
    ranks[np.isnan(own)] = np.inf
    return ranks


def metrics(ranks: np.ndarray, k: int) -> dict[str, float]:
    hit = ranks <= k
    return {f"recall@{k}": float(hit.mean()) if len(ranks) else float("nan"),
            f"mrr@{k}": float(np.where(hit, 1.0 / ranks, 0.0).mean()) if len(ranks) else float("nan")}


def evaluate_scorer(task: NextClickTask, scorer: Scorer, k: int = 20, batch: int = BATCH) -> dict[str, float]:
    """Recall@k and MRR@k of `scorer` over every prediction of `task`, `batch` predictions at a time."""
    ranks = np.empty(task.n_predictions)
    for lo in range(0, task.n_predictions, batch):
        rows = np.arange(lo, min(lo + batch, task.n_predictions))
        ranks[rows] = target_ranks(scorer(rows), task.sequence[task.target[rows]])
    return metrics(ranks, k)


def popularity_scorer(task: NextClickTask) -> Scorer:
    """Most clicked first; equal counts in item-id order, so the ranking is strict."""
    order = np.lexsort((np.arange(len(task.items)), -task.popularity))
    score = np.empty(len(task.items), np.float32)
    score[order] = np.arange(len(task.items), 0, -1)
    return lambda rows: np.broadcast_to(score, (len(rows), len(score)))


def item_to_item_scorer(task: NextClickTask, embeddings: Embeddings) -> Scorer:
    """Cosine of every candidate to the prefix's last clicked item that has a vector."""
    vectors, found = embeddings.lookup(task.items)
    unit = normalize(vectors)
    has = found[task.sequence]
    # The latest position at or before each one whose item has a vector (-1: none yet in the session).
    latest = np.maximum.accumulate(np.where(has, np.arange(len(has)), -1))
    anchor = latest[task.target - 1]
    usable = anchor >= task.start

    def score(rows: np.ndarray) -> np.ndarray:
        out = unit[task.sequence[np.maximum(anchor[rows], 0)]] @ unit.T
        out[:, ~found] = np.nan
        out[~usable[rows]] = np.nan
        return out

    return score


def sequence_scorer(task: NextClickTask, producer) -> Scorer:
    """The producer's own next-item scores (`next_item_scores_batch`) for each prefix."""
    ids = task.items[task.sequence]
    # Collapse consecutive repeats, as the training sequences were (a reload is not a new step).
    fresh = np.r_[True, task.sequence[1:] != task.sequence[:-1]]
    fresh[task.offsets[:-1]] = True
    columns = pd.Index(producer.product_ids_).get_indexer(task.items)
    known_item = np.zeros(len(task.items), bool)
    known_item[columns >= 0] = True
    # A prefix the model can read holds at least one item it was trained on.
    readable = np.maximum.accumulate(np.where(known_item[task.sequence], np.arange(len(ids)), -1))

    def score(rows: np.ndarray) -> np.ndarray:
        prefixes = [ids[a:b][fresh[a:b]] for a, b in zip(task.start[rows], task.target[rows])]
        raw = producer.next_item_scores_batch(prefixes)
        out = np.full((len(rows), len(task.items)), np.nan, np.float32)
        out[:, columns >= 0] = raw[:, columns[columns >= 0]]
        out[readable[task.target[rows] - 1] < task.start[rows]] = np.nan
        return out

    return score


# -- the evaluation ------------------------------------------------------------------
def evaluate_next_click(shop: Shop, split: pd.Timestamp, families: Sequence[str] = ("prod2vec", "clicks_bpr", "sasrec"),
                        k: int = 20, overrides: dict[str, dict] | None = None, log=print) -> pd.DataFrame:
    """Recall@k and MRR@k per family (plus `most_popular`), trained on `shop` before `split`.

    Returns a table indexed by family with columns recall@k, mrr@k,
    n_predictions, train_seconds, score_seconds and method; `attrs["notes"]`
    says what was predicted. `overrides` (family -> settings) are laid over
    `SESSION_OVERRIDES`. A family whose inputs the shop lacks is skipped with
    a log line.
    """
    from prodvec.producers import make_producer

    task = next_click_task(shop, split)
    if task.n_predictions == 0:
        raise ValueError(f"no test session after {task.split} has two clicks on items seen before it")
    notes = [(f"{task.n_sessions} test sessions (first click at or after {task.split}), {task.n_predictions} "
              f"predictions, each ranking all {len(task.items)} items clicked before the split"),
             (f"{task.test_clicks_removed} test clicks on items never clicked before the split were removed "
              "first, as the published benchmarks do"),
             (f"{task.repeat_share():.1%} of the clicks to predict repeat the previous click (item-to-item "
              "models rank that item first; SASRec learned from sessions with repeats collapsed)")]
    log("next-click: " + "; ".join(notes))
    # Strictly before the split: `Shop.until` keeps its cutoff, and the first test click sits on it.
    train_shop = shop.until(task.split - pd.Timedelta(1, "ns"))
    rows = {POPULARITY: _scored(task, partial(popularity_scorer, task), "popularity", k)}
    for family in families:
        settings = {**SESSION_OVERRIDES.get(family, {}), **(overrides or {}).get(family, {})}
        producer = make_producer(family, settings)
        missing = train_shop.missing(producer.requires)
        if missing:
            log(f"{family}: skipped: needs {', '.join(missing)}, which this shop does not have")
            continue
        started = time.perf_counter()
        embeddings = producer.train(train_shop, TrainContext(cutoff=task.split, progress=False))
        trained = time.perf_counter() - started
        if producer.scores_next_items:
            row = _scored(task, partial(sequence_scorer, task, producer), "sequence model", k)
        else:
            row = _scored(task, partial(item_to_item_scorer, task, embeddings), "item-to-item cosine", k)
        rows[family] = {**row, "train_seconds": round(trained, 1)}
        log(f"{family}: recall@{k} {row[f'recall@{k}']:.4f}, mrr@{k} {row[f'mrr@{k}']:.4f} "
            f"(trained {trained:.0f}s, scored {row['score_seconds']:.0f}s)")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "family"
    columns = [f"recall@{k}", f"mrr@{k}", "n_predictions", "train_seconds", "score_seconds", "method"]
    table = table.reindex(columns=columns)
    table.attrs["notes"] = notes  # plain sentences for a report
    return table


def _scored(task: NextClickTask, make_scorer: Callable[[], Scorer], method: str, k: int) -> dict:
    started = time.perf_counter()
    result = evaluate_scorer(task, make_scorer(), k)
    return {**result, "n_predictions": task.n_predictions, "train_seconds": 0.0,
            "score_seconds": round(time.perf_counter() - started, 1), "method": method}
