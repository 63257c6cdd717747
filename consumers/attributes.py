"""Embedding -> attribute (paper task 1): can a product's side information be read off its vector?

For every side-information column of the shop, and the category, one
classifier per family learns the attribute from the embedding of products
listed before the evaluation cutoff (as served at the cutoff) and is scored
on products listed after it (as served by the newest snapshot): the test set
is the cold-start products nobody trained on. A downstream team would use
the recipe the same way, e.g. to fill in missing attributes of new listings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodvec.core import columns as C
from prodvec.consumers.evaluation import EvalContext, Lookup, TaskResult, fit_side_by_side


@dataclass(frozen=True)
class AttributeConfig:
    # A class needs this many training products to be learnable; rarer ones are left out of both sides.
    min_class_train: int = 5
    # None = every side-information column plus the category.
    attributes: tuple[str, ...] | None = None
    # lbfgs to a loose tolerance: a third of the cost of full convergence for the same scores to ~0.005.
    max_iter: int = 200
    tol: float = 1e-3


def attribute_columns(ctx: EvalContext, config: AttributeConfig) -> list[str]:
    return list(config.attributes) if config.attributes is not None else ctx.shop.label_columns


def split_products(ctx: EvalContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) entity rows: listed before the cutoff as of the cutoff; listed after as of the end.

    Test products are those listed after the cutoff and before the newest
    snapshot: a product listed later has no embedding in any family yet.
    """
    products = ctx.shop.products
    listed = products[C.CREATED_AT]
    before = products[listed <= ctx.eval_cutoff]
    after = products[(listed > ctx.eval_cutoff) & (listed <= ctx.newest_snapshot)]
    train = before.assign(**{C.EVENT_TIMESTAMP: ctx.eval_cutoff})
    test = after.assign(**{C.EVENT_TIMESTAMP: ctx.shop.end})
    return train.reset_index(drop=True), test.reset_index(drop=True)


def score_attribute(x_train: np.ndarray, y_train: pd.Series, x_test: np.ndarray, y_test: pd.Series,
                    config: AttributeConfig, seed: int) -> dict[str, float] | None:
    """Macro-F1 and accuracy of a logistic regression on one attribute; None when untestable."""
    counts = y_train.value_counts()
    classes = counts[counts >= config.min_class_train].index
    keep_train, keep_test = y_train.isin(classes).to_numpy(), y_test.isin(classes).to_numpy()
    if len(classes) < 2 or keep_test.sum() == 0:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=config.max_iter, tol=config.tol,
                                                                random_state=seed))
    model.fit(x_train[keep_train], y_train[keep_train].to_numpy())
    predicted = model.predict(x_test[keep_test])
    truth = y_test[keep_test].to_numpy()
    return {"macro_f1": f1_score(truth, predicted, average="macro", labels=np.asarray(classes), zero_division=0),
            "accuracy": accuracy_score(truth, predicted), "classes": len(classes), "test": int(keep_test.sum())}


def evaluate_attributes(ctx: EvalContext, config: AttributeConfig = AttributeConfig()) -> TaskResult:
    train, test = split_products(ctx)
    if train.empty or test.empty:
        raise ValueError(f"attribute task: {len(train)} products listed before and {len(test)} after "
                         f"{ctx.eval_cutoff}; need both")
    train_emb, test_emb = ctx.embeddings(train), ctx.embeddings(test)
    coverage = {family: float(test_emb[family].found.mean()) for family in train_emb}
    columns = attribute_columns(ctx, config)
    pairs = [(family, column) for family in train_emb for column in columns]
    labelled = {column: (train[column].notna().to_numpy(), test[column].notna().to_numpy()) for column in columns}
    fitted = fit_side_by_side(
        delayed(score_attribute)(probe_features(train_emb[family])[labelled[column][0]], train.loc[labelled[column][0], column],
                                 probe_features(test_emb[family])[labelled[column][1]], test.loc[labelled[column][1], column],
                                 config, ctx.seed)
        for family, column in pairs)
    per_attribute = [{"family": family, "attribute": column, **scores}
                     for (family, column), scores in zip(pairs, fitted) if scores is not None]
    detail = pd.DataFrame(per_attribute)
    if detail.empty:
        raise ValueError("attribute task: no attribute with two learnable classes in both train and test")
    table = detail.groupby("family", sort=False)[["macro_f1", "accuracy"]].mean()
    table["test_coverage"] = pd.Series(coverage)
    f1 = detail.pivot(index="attribute", columns="family", values="macro_f1")
    notes = [f"{len(train)} products listed before {ctx.eval_cutoff.date()} train a logistic regression per "
             f"attribute; {len(test)} listed after it (cold start) are the test set.",
             f"Attributes: {', '.join(f1.index)} (macro-F1 and accuracy averaged over them).",
             "A test product without an embedding in its family's newest snapshot is scored from a zero vector."]
    return TaskResult("attributes", "Embedding → attribute (cold-start products)", table, headline="macro_f1",
                      notes=notes, extra={"macro-F1 per attribute": f1.T.rename_axis("family")})


def probe_features(lookup: Lookup) -> np.ndarray:
    """What the probe reads of a family's rows: the vectors and a found flag."""
    # Missing rows are zeros already; the flag lets the model tell "unknown" from "at the origin".
    return np.hstack([lookup.matrix, lookup.found[:, None].astype(np.float32)])
