"""The prediction tasks of MRNet-Product2Vec, derived from whatever the shop has.

Nothing here names a shop column beyond the fixed contract: every side-information
column (`Shop.side_info_columns`) and the category become a classification task,
price and popularity regressions, and the title's TF-IDF a decoding task. A task
labels only some products (null = no label); training draws its batches from those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core.shop.model import Shop

TOKEN = re.compile(r"[a-z0-9]+")
CLASSIFY, REGRESS, DECODE = "classify", "regress", "decode"
# Events that mean the product was shown to someone: its popularity.
VIEWS = (C.IMPRESSION, C.CLICK)


@dataclass(frozen=True)
class Task:
    """One output of the network: `target[i]` is product i's label where `labelled[i]`."""

    name: str
    kind: str  # CLASSIFY (target: class codes), REGRESS (standardised floats), DECODE (unit rows)
    width: int  # output units of the task's head
    target: np.ndarray
    labelled: np.ndarray
    # What each output unit stands for: CLASSIFY the class value, DECODE the TF-IDF term
    # (a warm start matches a previous head's units to these by name).
    classes: tuple = ()


def tokenise(texts: pd.Series) -> list[list[str]]:
    return [TOKEN.findall(t.lower()) if isinstance(t, str) else [] for t in texts]


def classification_task(name: str, values: pd.Series, min_labelled: float, min_class_size: int) -> Task | None:
    """Classes seen in fewer than `min_class_size` products count as unlabelled: too rare to learn."""
    counts = values.value_counts()
    classes = sorted(counts.index[counts >= min_class_size])
    codes = pd.Index(classes).get_indexer(values.to_numpy())
    labelled = codes >= 0
    if len(classes) < 2 or labelled.mean() < min_labelled:
        return None
    return Task(name, CLASSIFY, len(classes), codes.astype(np.int64), labelled, tuple(classes))


def regression_task(name: str, values: np.ndarray) -> Task | None:
    labelled = np.isfinite(values)
    if labelled.sum() < 2 or values[labelled].std() == 0:
        return None
    scaled = np.where(labelled, (values - values[labelled].mean()) / values[labelled].std(), 0.0)
    return Task(name, REGRESS, 1, scaled.astype(np.float32), labelled)


def title_tfidf_task(titles: pd.Series, max_features: int) -> Task | None:
    """The title's L2-normalised TF-IDF vector, to be decoded from the embedding."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectoriser = TfidfVectorizer(token_pattern=TOKEN.pattern, lowercase=True, min_df=2,
                                 max_features=max_features, dtype=np.float32)
    try:
        matrix = vectoriser.fit_transform(titles.fillna(""))
    except ValueError:  # no token seen twice
        return None
    labelled = matrix.getnnz(axis=1) > 0
    return Task("title_tfidf", DECODE, matrix.shape[1], matrix.toarray(), labelled,
                tuple(vectoriser.get_feature_names_out()))


def view_counts(shop: Shop) -> np.ndarray:
    events = shop.events
    shown = events.loc[events[C.EVENT_TYPE].isin(list(VIEWS)), C.PRODUCT_ID].value_counts()
    return shop.products[C.PRODUCT_ID].map(shown).fillna(0).to_numpy(np.float64)


def build_tasks(shop: Shop, *, min_labelled: float = 0.25, min_class_size: int = 5,
                tfidf_features: int = 1024) -> list[Task]:
    """Every task the shop supports, rows aligned with `shop.products`.

    A column with fewer than two classes or labelled for less than
    `min_labelled` of the products teaches nothing and is left out.
    """
    products = shop.products.reset_index(drop=True)
    candidates = []
    for column in shop.label_columns:
        candidates.append(classification_task(column, products[column], min_labelled, min_class_size))
    if C.PRICE in products:
        price = products[C.PRICE].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            candidates.append(regression_task("log_price", np.where(price > 0, np.log(price), np.nan)))
    if shop.events is not None and len(shop.events):
        candidates.append(regression_task("log_views", np.log1p(view_counts(shop))))
    candidates.append(title_tfidf_task(products[C.TITLE], tfidf_features))
    return [task for task in candidates if task is not None]
