"""YooChoose in the real-data report: `next_click.evaluate_next_click` on the split the benchmark publishes
(Recall@20, MRR@20), beside most-popular."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.report.output import records
from prodvec.report.real.common import YOOCHOOSE, DatasetOutcome, RealConfig, flags, import_sample
from prodvec.report.render import Section

NEXT_CLICK_FAMILIES = ("prod2vec", "clicks_bpr", "sasrec")
# Published size of the YooChoose (RecSys Challenge 2015) split of GRU4Rec (Hidasi et al. 2016).
PUBLISHED_RSC15 = "7,966,257 training sessions (31.6M clicks) on 37,483 items, 15,324 test sessions"


def sample_sessions(shop, split: pd.Timestamp, train: int | None, test: int | None, seed: int):
    """The shop with `train` random sessions wholly before `split` and `test` starting at or after it (None: all)."""
    events = shop.events
    first = events.groupby(C.SESSION_ID, observed=True)[C.TS].agg(["min", "max"])
    rng = np.random.default_rng([seed, 17])

    def pick(ids: pd.Index, n: int | None) -> pd.Index:
        return ids if n is None or n >= len(ids) else pd.Index(rng.choice(ids.to_numpy(), size=n, replace=False))

    keep = pick(first.index[first["max"] < split], train).append(pick(first.index[first["min"] >= split], test))
    return replace(shop, events=events[events[C.SESSION_ID].isin(keep)].reset_index(drop=True))


def run(source: Path, work: Path, plots: Path, config: RealConfig, log=print) -> DatasetOutcome:
    """Click log -> next-click Recall@20 / MRR@20 on the published split, beside most-popular."""
    from prodvec.consumers.next_click import POPULARITY, evaluate_next_click
    from prodvec.importers.session_clicks import read_split

    shop = import_sample("session-clicks", source, work / "yoochoose", log)
    split = read_split(work / "yoochoose")
    if split is None:
        raise ValueError(f"{source}: expected a *train_full* and a *test* file (the published split)")
    shop = sample_sessions(shop, split, config.train_sessions, config.test_sessions, config.seed)
    events = shop.events
    train = events[events[C.TS] < split]
    table = evaluate_next_click(shop, split, NEXT_CLICK_FAMILIES, overrides=config.session_overrides, log=log)
    recall = table["recall@20"]
    better = [f for f in ("sasrec", "prod2vec") if f in recall and recall[f] > recall[POPULARITY]]
    verdict = "HOLDS" if better else "DOES NOT HOLD"
    claim = (f"Claim (YooChoose): SASRec or prod2vec above most-popular on Recall@20 — {verdict}: "
             + ", ".join(f"{f} {recall[f]:.3f}" for f in ("sasrec", "prod2vec") if f in recall)
             + f" vs {POPULARITY} {recall[POPULARITY]:.3f}.")
    test_sessions = events.loc[events[C.TS] >= split, C.SESSION_ID].nunique()
    size = (f"Sample: {len(train):,} training clicks in {train[C.SESSION_ID].nunique():,} sessions on "
            f"{train[C.PRODUCT_ID].nunique():,} items, {test_sessions:,} test sessions "
            f"({int(table['n_predictions'].iloc[0]):,} predictions) — far smaller than the published split "
            f"({PUBLISHED_RSC15}), so set the numbers beside published ones as a check of the protocol, "
            "not as a like-for-like comparison: fewer items to rank makes Recall@20 easier.")
    shown = table.drop(columns=["method"]).astype({"n_predictions": "Int64"})
    section = Section("YooChoose: next click (session-based recommendation)",
                      notes=[claim, size, *table.attrs.get("notes", []),
                             "prod2vec and clicks_bpr score by item-to-item cosine from the last click; sasrec by its "
                             "own sequence model; trained in memory at the split (settings: next_click.SESSION_OVERRIDES)."],
                      tables=[("Recall@20 and MRR@20 over every next click of the test sessions", shown,
                               flags(shown, ["recall@20", "mrr@20"]))])
    return DatasetOutcome(YOOCHOOSE, [section], [claim, size],
                          numbers={"claim": bool(better), "table": records(shown),
                                   "train_clicks": len(train), "test_sessions": int(test_sessions)})

